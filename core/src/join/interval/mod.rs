//! [`IntervalJoinOperator`]: the operator behind [`Stream::interval_join`](crate::dataflow::Stream::interval_join).
//!
//! Input 0 is the left stream, input 1 the right one. Each side's rows are kept in the row
//! format (`arrow::row`) per key, in a row buffer; an arriving row is compared with the
//! other side's buffer of its key, every pair in the interval is emitted, and the row is
//! buffered while the watermark still allows a partner.

use std::sync::Arc;

use arrow::array::UInt32Array;
use arrow::compute::take_record_batch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::Rows;

mod label;
mod state;

use super::buffer::RowBuffer;
use super::side::{check_input, check_key_types, pair_fields, set_late_aside, Side};
use super::state::{KeyState, KeyedRows};
use super::{IntervalJoin, JoinOutput};
use crate::error::{Error, Result};
use crate::keys::key_group;
use crate::message::{Epoch, EventTime};
use crate::operator::{Collector, Operator, Redistribution, TaskInfo};

const KIND: &str = "interval-join";

/// The watermark and late count, checkpointed per subtask.
#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    watermark: i64,
    late: u64,
}

/// The watermark past which a row of side `s` at `ts` can match nothing more, for the interval
/// `[lower, upper]`.
fn expiry(s: usize, ts: i64, lower: i64, upper: i64) -> i64 {
    match s {
        0 => ts.saturating_add(upper),
        _ => ts.saturating_sub(lower),
    }
}

/// Pairs matched by one batch: the batch's rows and the other side's row bytes; a labelling
/// join's labelled rows with their delays.
#[derive(Default)]
struct Matches {
    here: Vec<u32>,
    other: RowBuffer,
    delays: Vec<i64>,
}

/// Joins two keyed streams on an event-time interval (see [the module docs](super)).
pub struct IntervalJoinOperator {
    name: String,
    spec: Arc<IntervalJoin>,
    task: TaskInfo,
    sides: [Option<Side>; 2],
    output: Option<SchemaRef>,
    state: KeyedRows,
    watermark: EventTime,
    late: u64,
    /// Some buffered row can no longer match once the watermark passes this.
    next_expiry: i64,
    times: Vec<i64>,
    hashes: Vec<u64>,
    matches: Matches,
    late_rows: Vec<u32>,
}

impl IntervalJoinOperator {
    /// The join `name` of `spec`; refuses a spec that cannot work.
    pub fn new(name: &str, spec: Arc<IntervalJoin>) -> Result<Self> {
        let bad = |m: &str| Err(Error::config(name, m));
        if spec.left_keys.is_empty() {
            return bad("an interval join needs key columns");
        }
        if spec.left_keys.len() != spec.right_keys.len() {
            return bad("the left and right sides need the same number of key columns");
        }
        if spec.lower_ms > spec.upper_ms {
            return bad("the interval's lower bound is above its upper bound");
        }
        Ok(IntervalJoinOperator {
            name: name.to_string(),
            spec,
            task: TaskInfo::new(name, 0, 1),
            sides: [None, None],
            output: None,
            state: KeyedRows::new(),
            watermark: i64::MIN,
            late: 0,
            next_expiry: i64::MAX,
            times: Vec::new(),
            hashes: Vec::new(),
            matches: Matches::default(),
            late_rows: Vec::new(),
        })
    }

    /// Rows that arrived behind the watermark so far.
    pub fn late_records(&self) -> u64 {
        self.late
    }

    /// Rows buffered on (left, right), waiting for a partner.
    pub fn buffered_rows(&self) -> (usize, usize) {
        super::state::buffered_rows(&self.state)
    }

    /// The watermark past which a row of side `s` at `ts` can match nothing more.
    fn expiry(&self, s: usize, ts: i64) -> i64 {
        expiry(s, ts, self.spec.lower_ms, self.spec.upper_ms)
    }

    /// The partner times of a row of side `s` at `ts`, inclusive.
    fn partners(&self, s: usize, ts: i64) -> (i64, i64) {
        let (lo, hi) = (self.spec.lower_ms, self.spec.upper_ms);
        match s {
            0 => (ts.saturating_add(lo), ts.saturating_add(hi)),
            _ => (ts.saturating_sub(hi), ts.saturating_sub(lo)),
        }
    }

    /// Learns side `s`'s schema from its first batch (or checks that it did not change).
    fn bind(&mut self, s: usize, schema: &SchemaRef) -> Result<()> {
        if let Some(side) = &self.sides[s] {
            return side.check(&self.name, s, schema);
        }
        let (time, keys) = match s {
            0 => (&self.spec.left_time, &self.spec.left_keys),
            _ => (&self.spec.right_time, &self.spec.right_keys),
        };
        self.sides[s] = Some(Side::bind(&self.name, s, schema, time.as_deref(), keys)?);
        self.check_keys()
    }

    /// Once both sides are known: their key types agree, and the output schema (a labelling
    /// join's as soon as the left side is known).
    fn check_keys(&mut self) -> Result<()> {
        if self.spec.output == JoinOutput::Label && self.output.is_none() {
            if let Some(left) = &self.sides[0] {
                self.output = Some(label::schema(&self.name, &left.schema)?);
            }
        }
        let (Some(left), Some(right)) = (&self.sides[0], &self.sides[1]) else {
            return Ok(());
        };
        check_key_types(&self.name, left, right)?;
        if self.spec.output == JoinOutput::Label {
            return Ok(());
        }
        let fields = pair_fields(&self.name, left, right, &self.spec.right_prefix, false, &[])?;
        self.output = Some(Arc::new(Schema::new(fields)));
        Ok(())
    }
}

impl IntervalJoinOperator {
    /// Reads `batch` of bound side `s`: event times into `times`, key hashes into `hashes`,
    /// and the keys and whole rows in the row format.
    fn read_rows(&mut self, s: usize, batch: &RecordBatch) -> Result<(Rows, Rows)> {
        let side = self.sides[s].as_ref().expect("bound before reading");
        side.read(&self.name, batch, &mut self.times, &mut self.hashes)
    }

    /// Joins the rows of `batch` from side `s` with the other side's buffered rows, then
    /// buffers them; late rows are set apart.
    fn join_batch(&mut self, s: usize, batch: &RecordBatch) -> Result<()> {
        let (keys, rows) = self.read_rows(s, batch)?;
        self.matches.here.clear();
        self.matches.other.clear();
        self.matches.delays.clear();
        self.late_rows.clear();
        for i in 0..batch.num_rows() {
            let ts = self.times[i];
            if ts < self.watermark {
                self.late_rows.push(i as u32);
                continue;
            }
            let expiry = self.expiry(s, ts);
            let key = keys.row(i);
            let labelled = match self.spec.output {
                JoinOutput::Pairs => {
                    self.pair_row(s, i, ts, key.as_ref());
                    false
                }
                JoinOutput::Label => self.label_row(s, i, ts, key.as_ref()),
            };
            if labelled || expiry < self.watermark {
                continue; // no later row can match it, or it needs none
            }
            if !self.state.contains_key(key.as_ref()) {
                let group = key_group(self.hashes[i], self.task.key_groups);
                let state = KeyState {
                    group,
                    buffers: Default::default(),
                };
                self.state.insert(key.as_ref().to_vec(), state);
            }
            if let Some(state) = self.state.get_mut(key.as_ref()) {
                state.buffers[s].push(ts, rows.row(i).as_ref());
            }
            self.next_expiry = self.next_expiry.min(expiry);
        }
        Ok(())
    }

    /// Pairs row `i` of side `s` (at `ts`, key `key`) with the other side's rows in its
    /// interval.
    fn pair_row(&mut self, s: usize, i: usize, ts: i64, key: &[u8]) {
        let (lo, hi) = self.partners(s, ts);
        if let Some(state) = self.state.get(key) {
            for (t, bytes) in state.buffers[1 - s].iter() {
                if (lo..=hi).contains(&t) {
                    self.matches.here.push(i as u32);
                    self.matches.other.push(t, bytes);
                }
            }
        }
    }

    /// Emits the pairs `join_batch` found, left columns first (or the labels it gave).
    fn emit_matches(&mut self, s: usize, batch: &RecordBatch, out: &mut Collector) -> Result<()> {
        if self.spec.output == JoinOutput::Label {
            return self.emit_labels(s, batch, out);
        }
        if self.matches.here.is_empty() {
            return Ok(());
        }
        let here = take_record_batch(batch, &UInt32Array::from(self.matches.here.clone()))?;
        let other = self.sides[1 - s]
            .as_ref()
            .expect("matched rows have a side");
        let other_columns = other.columns(self.matches.other.iter().map(|(_, b)| b))?;
        let (left, right) = match s {
            0 => (here.columns().to_vec(), other_columns),
            _ => (other_columns, here.columns().to_vec()),
        };
        let schema = self.output.clone().expect("both sides bound");
        out.emit(RecordBatch::try_new(schema, [left, right].concat())?);
        Ok(())
    }

    /// Drops the rows the watermark has made unmatchable (a labelling join emits the left ones
    /// with label 0).
    fn expire(&mut self, out: &mut Collector) -> Result<()> {
        let (lower, upper, wm) = (self.spec.lower_ms, self.spec.upper_ms, self.watermark);
        let label = self.spec.output == JoinOutput::Label;
        let mut next = i64::MAX;
        let unmatched = &mut self.matches;
        unmatched.other.clear();
        unmatched.delays.clear();
        // a left row expires once ts + upper < wm, a right one once ts - lower < wm
        let (left_cutoff, right_cutoff) = (wm.saturating_sub(upper), wm.saturating_add(lower));
        self.state.retain(|_, k| {
            let left = &mut k.buffers[0];
            if label && left.min_time().is_some_and(|t| t < left_cutoff) {
                for (ts, bytes) in left.iter() {
                    if ts < left_cutoff {
                        unmatched.other.push(ts, bytes);
                        unmatched.delays.push(upper);
                    }
                }
            }
            left.drop_before(left_cutoff);
            k.buffers[1].drop_before(right_cutoff);
            if let Some(t) = k.buffers[0].min_time() {
                next = next.min(t.saturating_add(upper));
            }
            if let Some(t) = k.buffers[1].min_time() {
                next = next.min(t.saturating_sub(lower));
            }
            !(k.buffers[0].is_empty() && k.buffers[1].is_empty())
        });
        self.next_expiry = next;
        if label {
            self.emit_buffered_labels(0, out)?;
        }
        Ok(())
    }
}

impl Operator for IntervalJoinOperator {
    fn on_start(&mut self, task: &TaskInfo) -> Result<()> {
        self.task = task.clone();
        Ok(())
    }

    fn process(&mut self, input: usize, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        check_input(&self.name, input)?;
        // an empty batch still tells the schema (a restarted task's first, see `rewire`)
        self.bind(input, &batch.schema())?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.join_batch(input, &batch)?;
        self.emit_matches(input, &batch, out)?;
        set_late_aside(input, &batch, &mut self.late_rows, &mut self.late, out)
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Collector) -> Result<()> {
        if watermark > self.watermark {
            self.watermark = watermark;
            if watermark > self.next_expiry {
                self.expire(out)?;
            }
        }
        out.emit_watermark(watermark);
        Ok(())
    }

    fn redistribution(&self) -> Redistribution {
        Redistribution::KeyGroups
    }

    fn snapshot(&mut self, _epoch: Epoch) -> Result<Option<Vec<u8>>> {
        self.snapshot_state().map(Some)
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        self.restore_state(bytes)
    }
}

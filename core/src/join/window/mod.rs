//! [`WindowJoinOperator`]: the operator behind
//! [`Stream::window_join`](crate::dataflow::Stream::window_join).
//!
//! Input 0 is the left stream, input 1 the right one. Rows are buffered per key and side, in
//! the row format, with their event time; windows are assigned by the window operators'
//! assigner ([`WindowSpec`](crate::window::WindowSpec), tumbling or sliding). When the
//! watermark reaches `end - 1` of a window, every left row of a key in it is paired with every
//! right row of the key in it, and a row leaves the buffer once its last window has fired.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

mod spec;
mod state;

pub use spec::WindowJoin;

use super::buffer::RowBuffer;
use super::side::{check_input, check_key_types, pair_fields, set_late_aside, Side};
use super::state::{KeyState, KeyedRows};
use crate::error::{Error, Result};
use crate::keys::key_group;
use crate::message::{Epoch, EventTime};
use crate::operator::{Collector, Operator, Redistribution, TaskInfo};
use crate::window::assigner::{Assigner, ValidKind};

const KIND: &str = "window-join";

/// Name of the window-start column of a window join's output.
pub const WINDOW_START: &str = "window_start";
/// Name of the window-end column (exclusive) of a window join's output.
pub const WINDOW_END: &str = "window_end";

/// The watermark and late count, checkpointed per subtask.
#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    watermark: i64,
    late: u64,
}

/// The pairs of one firing: left and right row bytes and their window, pair by pair.
#[derive(Default)]
struct Fired {
    left: RowBuffer,
    right: RowBuffer,
    starts: Vec<i64>,
    ends: Vec<i64>,
}

/// Joins two keyed streams on event-time windows (see [the module docs](crate::join)).
pub struct WindowJoinOperator {
    name: String,
    spec: Arc<WindowJoin>,
    assigner: Assigner,
    task: TaskInfo,
    sides: [Option<Side>; 2],
    output: Option<SchemaRef>,
    state: KeyedRows,
    watermark: EventTime,
    late: u64,
    times: Vec<i64>,
    hashes: Vec<u64>,
    fired: Fired,
    late_rows: Vec<u32>,
}

impl WindowJoinOperator {
    /// The join `name` of `spec`; refuses a spec that cannot work.
    pub fn new(name: &str, spec: Arc<WindowJoin>) -> Result<Self> {
        let bad = |m: &str| Err(Error::config(name, m));
        if spec.left_keys.is_empty() {
            return bad("a window join needs key columns");
        }
        if spec.left_keys.len() != spec.right_keys.len() {
            return bad("the left and right sides need the same number of key columns");
        }
        let window = spec.window.validate(name)?;
        let ValidKind::Fixed(assigner) = window.kind else {
            return bad("a window join takes tumbling or sliding windows, not sessions");
        };
        if window.lateness != 0 {
            return Err(Error::config(
                format!("{name}.allowed_lateness"),
                "a window join fires each window once: allowed lateness must be 0",
            ));
        }
        Ok(WindowJoinOperator {
            name: name.to_string(),
            spec,
            assigner,
            task: TaskInfo::new(name, 0, 1),
            sides: [None, None],
            output: None,
            state: KeyedRows::new(),
            watermark: i64::MIN,
            late: 0,
            times: Vec::new(),
            hashes: Vec::new(),
            fired: Fired::default(),
            late_rows: Vec::new(),
        })
    }

    /// Rows that arrived after every window they belong to had fired.
    pub fn late_records(&self) -> u64 {
        self.late
    }

    /// Rows buffered on (left, right), waiting for their windows to fire.
    pub fn buffered_rows(&self) -> (usize, usize) {
        super::state::buffered_rows(&self.state)
    }

    /// `end - 1` of the last window holding `ts`: once the watermark reaches it, the row is
    /// done.
    fn last_fire(&self, ts: i64) -> i64 {
        let a = self.assigner;
        a.last_start(ts).saturating_add(a.size).saturating_sub(1)
    }

    /// Whether some window fires as the watermark moves from `old` to `new`: a window end `e`
    /// (`e ≡ size` modulo the slide) with `old < e - 1 <= new`.
    fn some_window_ends(&self, old: i64, new: i64) -> bool {
        let (size, slide) = (
            i128::from(self.assigner.size),
            i128::from(self.assigner.slide),
        );
        let first = i128::from(old) + 2; // the least end e with e - 1 > old
        let next_end = first + (size - first).rem_euclid(slide);
        next_end - 1 <= i128::from(new)
    }

    /// Learns side `s`'s schema from its first batch (or checks that it did not change);
    /// once both are known, checks the key types and builds the output schema.
    fn bind(&mut self, s: usize, schema: &SchemaRef) -> Result<()> {
        if let Some(side) = &self.sides[s] {
            return side.check(&self.name, s, schema);
        }
        let keys = [&self.spec.left_keys, &self.spec.right_keys][s];
        self.sides[s] = Some(Side::bind(&self.name, s, schema, self.spec.time(s), keys)?);
        let (Some(left), Some(right)) = (&self.sides[0], &self.sides[1]) else {
            return Ok(());
        };
        check_key_types(&self.name, left, right)?;
        let window = [
            Field::new(WINDOW_START, DataType::Int64, false),
            Field::new(WINDOW_END, DataType::Int64, false),
        ];
        let prefix = &self.spec.right_prefix;
        let fields = pair_fields(&self.name, left, right, prefix, false, &window)?;
        self.output = Some(Arc::new(Schema::new(fields)));
        Ok(())
    }

    /// Buffers the rows of `batch` from side `s`; rows whose windows have all fired are set
    /// apart in `late_rows`.
    fn buffer_batch(&mut self, s: usize, batch: &RecordBatch) -> Result<()> {
        let side = self.sides[s].as_ref().expect("bound before reading");
        let (keys, rows) = side.read(&self.name, batch, &mut self.times, &mut self.hashes)?;
        self.late_rows.clear();
        for i in 0..batch.num_rows() {
            let ts = self.times[i];
            if self.last_fire(ts) <= self.watermark {
                self.late_rows.push(i as u32);
                continue;
            }
            let key = keys.row(i);
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
        }
        Ok(())
    }

    /// Fires the windows whose `end - 1` lies in `(old, new]`: pairs their rows key by key, then
    /// drops the rows whose last window has fired.
    fn fire(&mut self, old: i64, new: i64, out: &mut Collector) -> Result<()> {
        let assigner = self.assigner;
        let fired = &mut self.fired;
        fired.left.clear();
        fired.right.clear();
        fired.starts.clear();
        fired.ends.clear();
        let done = |ts: i64| {
            assigner
                .last_start(ts)
                .saturating_add(assigner.size)
                .saturating_sub(1)
                <= new
        };
        self.state.retain(|_, k| {
            let [left, right] = &k.buffers;
            if !right.is_empty() {
                for (tl, lb) in left.iter() {
                    assigner.for_each(tl, |start, end| {
                        let last = end.saturating_sub(1);
                        if last <= old || last > new {
                            return;
                        }
                        for (tr, rb) in right.iter() {
                            if (start..end).contains(&tr) {
                                fired.left.push(tl, lb);
                                fired.right.push(tr, rb);
                                fired.starts.push(start);
                                fired.ends.push(end);
                            }
                        }
                    });
                }
            }
            k.buffers[0].retain(|ts| !done(ts));
            k.buffers[1].retain(|ts| !done(ts));
            !(k.buffers[0].is_empty() && k.buffers[1].is_empty())
        });
        self.emit_fired(out)
    }

    /// Emits the pairs of the last firing: left columns, right columns, window start and end.
    fn emit_fired(&mut self, out: &mut Collector) -> Result<()> {
        if self.fired.starts.is_empty() {
            return Ok(());
        }
        let (Some(left), Some(right), Some(schema)) =
            (&self.sides[0], &self.sides[1], &self.output)
        else {
            return Err(Error::Internal(format!(
                "{}: pairs fired before both sides were bound",
                self.name
            )));
        };
        let mut columns = left.columns(self.fired.left.iter().map(|(_, b)| b))?;
        columns.extend(right.columns(self.fired.right.iter().map(|(_, b)| b))?);
        columns.push(Arc::new(Int64Array::from(self.fired.starts.clone())) as ArrayRef);
        columns.push(Arc::new(Int64Array::from(self.fired.ends.clone())) as ArrayRef);
        out.emit(RecordBatch::try_new(schema.clone(), columns)?);
        Ok(())
    }
}

impl Operator for WindowJoinOperator {
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
        self.buffer_batch(input, &batch)?;
        set_late_aside(input, &batch, &mut self.late_rows, &mut self.late, out)
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Collector) -> Result<()> {
        if watermark > self.watermark {
            let old = std::mem::replace(&mut self.watermark, watermark);
            if !self.state.is_empty() && self.some_window_ends(old, watermark) {
                self.fire(old, watermark, out)?;
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

//! [`TemporalJoinOperator`]: the operator behind
//! [`Stream::temporal_join`](crate::dataflow::Stream::temporal_join).
//!
//! Input 0 is the left (probe) stream, input 1 the right changelog. Per key, buffer 0 holds the
//! left rows waiting for the watermark to pass their time and buffer 1 the right versions
//! (in the row format, with the time each became current). When the watermark reaches a left
//! row's time every version at or before it is known: the row is emitted with the latest of
//! them (or, left outer, with nulls when there is none) and leaves the buffer. Then, per key,
//! the versions older than the latest one at or before the watermark are dropped: no left row
//! that may still come can need them, so a key keeps one version plus those newer than the
//! watermark.
//!
//! A pass visits only the *active* keys (left rows waiting, or more than one version); a key
//! left with one version and nothing waiting is *settled* into a second map, the table at rest,
//! and moves back (its key bytes moved, not copied) when a row of it arrives. So a large table
//! costs a watermark nothing.

use std::sync::Arc;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

mod spec;
mod state;

pub use spec::{TemporalJoin, TemporalKind};

use super::buffer::RowBuffer;
use super::side::{check_input, check_key_types, pair_fields, set_late_aside, Side};
use super::state::{KeyState, KeyedRows};
use crate::error::{Error, Result};
use crate::keys::key_group;
use crate::message::{Epoch, EventTime};
use crate::operator::{Collector, Operator, Redistribution, TaskInfo};

const KIND: &str = "temporal-join";

/// The watermark and late count, checkpointed per subtask.
#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    watermark: i64,
    late: u64,
}

/// The rows of one pass: left row bytes, the matched versions and, per left row, the index of
/// its version among them (`None`: no version was current).
#[derive(Default)]
struct Due {
    left: RowBuffer,
    versions: RowBuffer,
    index: Vec<Option<u32>>,
}

/// Joins a stream with a changing keyed table as of event time (see
/// [the module docs](crate::join)).
pub struct TemporalJoinOperator {
    name: String,
    spec: Arc<TemporalJoin>,
    task: TaskInfo,
    sides: [Option<Side>; 2],
    output: Option<SchemaRef>,
    /// Keys with left rows waiting or more than one version: what a pass visits.
    active: KeyedRows,
    /// Settled keys: one version, nothing waiting — the table at rest, which passes skip.
    table: KeyedRows,
    /// Empty between passes; a pass drains the active keys through it.
    spare: KeyedRows,
    watermark: EventTime,
    late: u64,
    /// The earliest time of a waiting left row.
    next_due: i64,
    /// The earliest watermark at which some key has a version to drop.
    next_prune: i64,
    times: Vec<i64>,
    hashes: Vec<u64>,
    due: Due,
    late_rows: Vec<u32>,
}

impl TemporalJoinOperator {
    /// The join `name` of `spec`; refuses a spec that cannot work.
    pub fn new(name: &str, spec: Arc<TemporalJoin>) -> Result<Self> {
        let bad = |m: &str| Err(Error::config(name, m));
        if spec.left_keys.is_empty() {
            return bad("a temporal join needs key columns");
        }
        if spec.left_keys.len() != spec.right_keys.len() {
            return bad("the left and right sides need the same number of key columns");
        }
        let right = spec.right_schema.clone();
        let mut op = TemporalJoinOperator {
            name: name.to_string(),
            spec,
            task: TaskInfo::new(name, 0, 1),
            sides: [None, None],
            output: None,
            active: KeyedRows::new(),
            table: KeyedRows::new(),
            spare: KeyedRows::new(),
            watermark: i64::MIN,
            late: 0,
            next_due: i64::MAX,
            next_prune: i64::MAX,
            times: Vec::new(),
            hashes: Vec::new(),
            due: Due::default(),
            late_rows: Vec::new(),
        };
        if let Some(schema) = right {
            op.bind(1, &schema)?;
        }
        Ok(op)
    }

    /// Rows that arrived too late: left rows behind the watermark, right versions at or
    /// behind it.
    pub fn late_records(&self) -> u64 {
        self.late
    }

    /// (left rows waiting for the watermark, right versions kept).
    pub fn buffered_rows(&self) -> (usize, usize) {
        let (a, t) = (
            super::state::buffered_rows(&self.active),
            super::state::buffered_rows(&self.table),
        );
        (a.0 + t.0, a.1 + t.1)
    }

    /// Learns side `s`'s schema from its first batch (or checks that it did not change);
    /// once both are known, checks the key types and builds the output schema.
    fn bind(&mut self, s: usize, schema: &SchemaRef) -> Result<()> {
        if let Some(side) = &self.sides[s] {
            return side.check(&self.name, s, schema);
        }
        let (time, keys) = match s {
            0 => (&self.spec.left_time, &self.spec.left_keys),
            _ => (&self.spec.right_time, &self.spec.right_keys),
        };
        self.sides[s] = Some(Side::bind(&self.name, s, schema, time.as_deref(), keys)?);
        let (Some(left), Some(right)) = (&self.sides[0], &self.sides[1]) else {
            return Ok(());
        };
        check_key_types(&self.name, left, right)?;
        let outer = self.spec.kind == TemporalKind::LeftOuter;
        let prefix = &self.spec.right_prefix;
        let fields = pair_fields(&self.name, left, right, prefix, outer, &[])?;
        self.output = Some(Arc::new(Schema::new(fields)));
        Ok(())
    }

    /// Whether a row of side `s` at `ts` comes too late: a left row behind the watermark (the
    /// versions it needed may be gone), a right version at or behind it (left rows up to the
    /// watermark have been answered without it).
    fn is_late(&self, s: usize, ts: i64) -> bool {
        match s {
            0 => ts < self.watermark,
            _ => ts <= self.watermark,
        }
    }

    /// Buffers the rows of `batch` from side `s`: left rows to wait, right rows as versions
    /// (replacing a version of the same key and time); late rows are set apart.
    fn buffer_batch(&mut self, s: usize, batch: &RecordBatch) -> Result<()> {
        let side = self.sides[s].as_ref().expect("bound before reading");
        let (keys, rows) = side.read(&self.name, batch, &mut self.times, &mut self.hashes)?;
        self.late_rows.clear();
        for i in 0..batch.num_rows() {
            let ts = self.times[i];
            if self.is_late(s, ts) {
                self.late_rows.push(i as u32);
                continue;
            }
            let key = keys.row(i);
            if !self.active.contains_key(key.as_ref()) {
                // a settled key becomes active again (its key bytes move, unallocated)
                let (bytes, state) = match self.table.remove_entry(key.as_ref()) {
                    Some(entry) => entry,
                    None => {
                        let group = key_group(self.hashes[i], self.task.key_groups);
                        let state = KeyState {
                            group,
                            buffers: Default::default(),
                        };
                        (key.as_ref().to_vec(), state)
                    }
                };
                self.active.insert(bytes, state);
            }
            let Some(state) = self.active.get_mut(key.as_ref()) else {
                continue;
            };
            let buffer = &mut state.buffers[s];
            if s == 0 {
                self.next_due = self.next_due.min(ts);
                buffer.push(ts, rows.row(i).as_ref());
                continue;
            }
            buffer.retain(|t| t != ts);
            buffer.push(ts, rows.row(i).as_ref());
            if let Some(second) = second_earliest(buffer) {
                self.next_prune = self.next_prune.min(second);
            }
        }
        Ok(())
    }

    /// Answers the left rows the watermark has reached, then drops the versions no later left
    /// row can need; recomputes when the next pass is due and settles the keys left with one
    /// version and nothing waiting. Visits the active keys only (moved through a spare map
    /// that keeps its capacity, so a pass allocates nothing once the maps have grown).
    fn pass(&mut self, out: &mut Collector) -> Result<()> {
        let wm = self.watermark;
        let outer = self.spec.kind == TemporalKind::LeftOuter;
        self.due.left.clear();
        self.due.versions.clear();
        self.due.index.clear();
        let mut next = (i64::MAX, i64::MAX);
        std::mem::swap(&mut self.active, &mut self.spare);
        for (key, mut k) in self.spare.drain() {
            answer_key(&mut k, wm, outer, &mut self.due, &mut next);
            match (k.buffers[0].len(), k.buffers[1].len()) {
                (0, 0) => {}
                (0, 1) => {
                    self.table.insert(key, k);
                }
                _ => {
                    self.active.insert(key, k);
                }
            }
        }
        (self.next_due, self.next_prune) = next;
        self.emit_due(out)
    }

    /// Emits the left rows of the last pass with their versions (nulls where none).
    fn emit_due(&mut self, out: &mut Collector) -> Result<()> {
        if self.due.index.is_empty() {
            return Ok(());
        }
        let (Some(left), Some(right), Some(schema)) =
            (&self.sides[0], &self.sides[1], &self.output)
        else {
            // only a left-outer join answers rows without a version
            return Err(Error::config(
                self.name.as_str(),
                "left rows are due but no right row has reached this subtask, so the right \
                 columns are unknown: declare them with `TemporalJoin::right_schema`",
            ));
        };
        let mut columns = left.columns(self.due.left.iter().map(|(_, b)| b))?;
        let versions = right.columns(self.due.versions.iter().map(|(_, b)| b))?;
        if self.due.versions.len() == self.due.index.len() {
            columns.extend(versions); // every row found its version, in order
        } else {
            let index = UInt32Array::from(self.due.index.clone());
            for v in versions {
                columns.push(take(&v, &index, None)? as ArrayRef);
            }
        }
        out.emit(RecordBatch::try_new(schema.clone(), columns)?);
        Ok(())
    }
}

/// Answers the left rows of key state `k` at or before `wm` into `due` (with the latest
/// version at or before each; left outer: also those with none), drops them and the versions
/// older than the latest one at or before `wm`, and lowers `next` (next due left row, next
/// prunable version) by what the key still holds.
fn answer_key(k: &mut KeyState, wm: i64, outer: bool, due: &mut Due, next: &mut (i64, i64)) {
    let [left, versions] = &mut k.buffers;
    for (tl, lb) in left.iter().filter(|(t, _)| *t <= wm) {
        let found = as_of(versions, tl);
        if found.is_none() && !outer {
            continue;
        }
        due.left.push(tl, lb);
        due.index.push(found.map(|i| {
            let (tv, vb) = versions.get(i);
            due.versions.push(tv, vb);
            (due.versions.len() - 1) as u32
        }));
    }
    left.retain(|t| t > wm);
    if let Some(current) = versions.iter().map(|(t, _)| t).filter(|&t| t <= wm).max() {
        versions.retain(|t| t >= current);
    }
    if let Some(t) = left.min_time() {
        next.0 = next.0.min(t);
    }
    if let Some(second) = second_earliest(versions) {
        next.1 = next.1.min(second);
    }
}

/// The index of the latest version at or before `ts`.
fn as_of(versions: &RowBuffer, ts: i64) -> Option<usize> {
    let mut best: Option<(usize, i64)> = None;
    for (i, (t, _)) in versions.iter().enumerate() {
        if t <= ts && best.is_none_or(|(_, b)| t > b) {
            best = Some((i, t));
        }
    }
    best.map(|(i, _)| i)
}

/// The second-earliest time among `versions` (whose times are distinct): once the watermark
/// reaches it, the earliest version can go.
fn second_earliest(versions: &RowBuffer) -> Option<i64> {
    let (mut first, mut second) = (i64::MAX, None::<i64>);
    for (t, _) in versions.iter() {
        if t < first {
            second = (first != i64::MAX).then_some(first);
            first = t;
        } else if second.is_none_or(|s| t < s) {
            second = Some(t);
        }
    }
    second
}

impl Operator for TemporalJoinOperator {
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
            self.watermark = watermark;
            if watermark >= self.next_due.min(self.next_prune) {
                self.pass(out)?;
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

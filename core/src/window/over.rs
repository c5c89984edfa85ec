//! [`OverOperator`]: per-key over windows — every row gets aggregates over the recent rows of
//! its key, at once (no waiting for watermarks): what windowed features are built from.
//!
//! - [`OverSpec::last_rows`]`(n)`: the row and the `n - 1` rows of its key before it (arrival order).
//! - [`OverSpec::last_time`]`(t)`: the rows of the key with event time in `(newest - t, newest]`,
//!   where `newest` is the latest event time seen for the key, the current row included. An
//!   out-of-order row (older than `newest`) is treated as if it happened at `newest`: it is in
//!   its own window and stays in the key's window until `t` after `newest`. This keeps every
//!   window a suffix of the key's arrival order, so eviction stays O(1).
//!
//! The output is the input batch with one column per aggregate appended (types as for windows,
//! see [`aggregate`](super::aggregate)); each value includes the current row. Per-key state lives
//! as long as the operator: an over window has no end.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use arrow::record_batch::RecordBatch;

use super::accumulator::ColumnBuilder;
use super::aggregate::{Agg, BoundAgg, Values};
use super::binding::{BindSpec, Binding, Shape};
use super::key_codec::{KeyCodec, SavedKeys};
use super::key_table::KeyTable;
use super::keyed::{keyed_factory, KeyedStream};
use super::over_acc::OverAcc;
use super::timestamps::read_event_times;
use crate::dataflow::Stream;
use crate::error::{Error, Result};
use crate::keys::key_group;
use crate::message::Epoch;
use crate::operator::{Collector, Operator, Redistribution, TaskInfo};

/// How far back an over window reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverRange {
    /// The current row and the rows before it, this many in all.
    Rows(usize),
    /// Rows within this much event time of the key's newest row.
    Time(Duration),
}

/// An over-window specification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverSpec {
    /// The window's reach.
    pub range: OverRange,
    /// The event-time column of time ranges; `None`: the one marked by `assign_timestamps`.
    pub time_column: Option<String>,
}

impl OverSpec {
    /// The last `n` rows of the key (the current one included).
    pub fn last_rows(n: usize) -> Self {
        OverSpec {
            range: OverRange::Rows(n),
            time_column: None,
        }
    }

    /// The rows of the key within `t` of its newest event time.
    pub fn last_time(t: Duration) -> Self {
        OverSpec {
            range: OverRange::Time(t),
            time_column: None,
        }
    }

    /// Reads event time from `column` instead of the one `assign_timestamps` marked.
    pub fn time_column(mut self, column: &str) -> Self {
        self.time_column = Some(column.to_string());
        self
    }
}

/// One key's window: rows `first..next`, and their (clamped) event times for time ranges.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct OverKey {
    newest: i64,
    first: u64,
    next: u64,
    times: VecDeque<i64>,
    accs: Vec<OverAcc>,
}

impl OverKey {
    fn new(aggs: &[BoundAgg]) -> Self {
        OverKey {
            newest: i64::MIN,
            first: 0,
            next: 0,
            times: VecDeque::new(),
            accs: aggs.iter().map(|a| OverAcc::new(a.kind)).collect(),
        }
    }

    fn evict_one(&mut self) {
        for a in &mut self.accs {
            a.evict(self.first);
        }
        self.first += 1;
    }
}

#[derive(Debug, Clone, Copy)]
enum Reach {
    Rows(u64),
    Time(i64),
}

/// Appends per-key over-window aggregates to every row (see [the module docs](self)).
#[derive(Debug)]
pub struct OverOperator {
    name: String,
    keys: Vec<String>,
    aggs: Vec<Agg>,
    reach: Reach,
    time_column: Option<String>,
    binding: Option<Binding>,
    table: KeyTable<OverKey>,
    times: Vec<i64>,
    /// This subtask (for its key groups in snapshots).
    task: TaskInfo,
}

/// The over windows of the keys of one key group.
#[derive(serde::Serialize, serde::Deserialize)]
struct Group {
    outputs: Vec<String>,
    keys: SavedKeys,
    windows: Vec<OverKey>,
}

impl OverOperator {
    /// An over-window operator `name` over the key columns `keys`.
    pub fn new(name: &str, keys: &[String], spec: &OverSpec, aggs: Vec<Agg>) -> Result<Self> {
        let reach = match spec.range {
            OverRange::Rows(0) => {
                return Err(Error::config(format!("{name}.rows"), "must be at least 1"))
            }
            OverRange::Rows(n) => Reach::Rows(n as u64),
            OverRange::Time(t) => {
                let ms = i64::try_from(t.as_millis()).unwrap_or(i64::MAX);
                if ms < 1 {
                    return Err(Error::config(
                        format!("{name}.time"),
                        "must be at least 1 ms",
                    ));
                }
                Reach::Time(ms)
            }
        };
        Ok(OverOperator {
            name: name.to_string(),
            keys: keys.to_vec(),
            aggs,
            reach,
            time_column: spec.time_column.clone(),
            binding: None,
            table: KeyTable::default(),
            times: Vec::new(),
            task: TaskInfo::new(name, 0, 1),
        })
    }

    /// Number of keys holding state.
    pub fn keys_held(&self) -> usize {
        self.table.len()
    }

    fn spec(&self) -> BindSpec<'_> {
        BindSpec {
            operator: &self.name,
            keys: &self.keys,
            aggs: &self.aggs,
            time_column: matches!(self.reach, Reach::Time(_))
                .then_some(self.time_column.as_deref()),
            shape: Shape::Over,
        }
    }
}

impl Operator for OverOperator {
    fn process(&mut self, _input: usize, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        let spec = BindSpec {
            operator: &self.name,
            keys: &self.keys,
            aggs: &self.aggs,
            time_column: matches!(self.reach, Reach::Time(_))
                .then_some(self.time_column.as_deref()),
            shape: Shape::Over,
        };
        Binding::ensure(&mut self.binding, &batch.schema(), &spec)?;
        let Some(b) = &mut self.binding else {
            return Ok(());
        };
        b.codec.encode(&batch)?;
        if let Some(t) = b.time {
            read_event_times(&batch, t, &self.name, &mut self.times)?;
        }
        let values = Values::of(&batch, &b.aggs);
        let mut builders = ColumnBuilder::for_aggs(&b.aggs);
        for row in 0..batch.num_rows() {
            let k = self
                .table
                .find_or_insert(b.codec.hash(row), b.codec.key(row), || {
                    OverKey::new(&b.aggs)
                });
            let w = &mut self.table.entries[k as usize].value;
            let seq = w.next;
            w.next += 1;
            for (acc, v) in w.accs.iter_mut().zip(&values) {
                acc.push(v, row, seq);
            }
            match self.reach {
                Reach::Rows(n) => {
                    while w.next - w.first > n {
                        w.evict_one();
                    }
                }
                Reach::Time(t) => {
                    let ts = self.times[row].max(w.newest);
                    w.newest = ts;
                    w.times.push_back(ts);
                    let horizon = ts.saturating_sub(t);
                    while w.times.front().is_some_and(|&f| f <= horizon) {
                        w.times.pop_front();
                        w.evict_one();
                    }
                }
            }
            for (acc, builder) in w.accs.iter().zip(&mut builders) {
                acc.append(w.first, w.next, builder);
            }
        }
        let mut columns = batch.columns().to_vec();
        columns.extend(builders.iter_mut().map(ColumnBuilder::finish));
        out.emit(RecordBatch::try_new(b.output.clone(), columns)?);
        Ok(())
    }

    fn on_start(&mut self, task: &TaskInfo) -> Result<()> {
        self.task = task.clone();
        Ok(())
    }

    fn redistribution(&self) -> Redistribution {
        Redistribution::KeyGroups
    }

    fn snapshot(&mut self, _epoch: Epoch) -> Result<Option<Vec<u8>>> {
        let entries = &self.table.entries;
        let mut by_group: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for k in self.table.live() {
            let group = key_group(entries[k as usize].hash, self.task.key_groups);
            by_group.entry(group).or_default().push(k);
        }
        let mut groups = BTreeMap::new();
        if let Some(b) = &self.binding {
            for (group, live) in by_group {
                let keys = b
                    .codec
                    .save(live.iter().map(|&k| entries[k as usize].key.as_slice()))?;
                let windows = live
                    .iter()
                    .map(|&k| entries[k as usize].value.clone())
                    .collect();
                let outputs = b.outputs();
                groups.insert(
                    group,
                    Group {
                        outputs,
                        keys,
                        windows,
                    },
                );
            }
        }
        super::snapshot::encode_groups("over-window", self.task.subtask, &(), &groups).map(Some)
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        let (_, groups): (Vec<(u32, ())>, Vec<Group>) =
            super::snapshot::decode_groups("over-window", &self.name, bytes)?;
        self.table = KeyTable::default();
        self.binding = None;
        for group in groups {
            let (codec, keys) =
                KeyCodec::load_paired(&group.keys, &self.name, group.windows.len(), "windows")?;
            if self.binding.is_none() {
                self.binding = Some(Binding::restored(codec, &group.outputs, &self.spec())?);
            }
            let Some(binding) = &self.binding else {
                continue;
            };
            let hashes = binding.codec.hash_stored(&keys)?;
            for ((key, hash), w) in keys.iter().zip(hashes).zip(group.windows) {
                if w.accs.len() != self.aggs.len() {
                    return Err(Error::config(
                        format!("{}.state", self.name),
                        "wrong number of accumulators",
                    ));
                }
                self.table.find_or_insert(hash, key, move || w);
            }
        }
        Ok(())
    }
}

impl KeyedStream {
    /// Appends per-key over-window aggregates to every row (see [`OverOperator`]).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use arrow::array::{AsArray, Int64Array, StringArray};
    /// use arrow::datatypes::Int64Type;
    /// use arrow::record_batch::RecordBatch;
    /// use eddy_core::prelude::*;
    /// use eddy_core::window::{Agg, OverSpec};
    ///
    /// let batch = RecordBatch::try_from_iter([
    ///     ("user", Arc::new(StringArray::from(vec!["a", "a", "b", "a"])) as _),
    ///     ("clicks", Arc::new(Int64Array::from(vec![1, 2, 3, 4])) as _),
    /// ])?;
    /// let out = MemorySink::new();
    /// let flow = Dataflow::new(DataflowConfig::default());
    /// flow.source("events", MemorySource::from_batches(vec![batch])?)
    ///     .key_by(["user"])
    ///     .over("last 2", OverSpec::last_rows(2), vec![Agg::sum("clicks", "clicks_2"), Agg::count("n")])
    ///     .sink("out", out.clone());
    /// flow.run()?;
    /// let b = &out.batches()[0];
    /// let n = b.column_by_name("n").unwrap().as_primitive::<Int64Type>();
    /// assert_eq!(n.values().to_vec(), vec![1, 2, 1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn over(&self, name: &str, spec: OverSpec, aggs: Vec<Agg>) -> Stream {
        let (keys, op) = (self.keys().to_vec(), name.to_string());
        self.stream().apply(
            name,
            keyed_factory(name, move || {
                OverOperator::new(&op, &keys, &spec, aggs.clone())
            }),
        )
    }
}

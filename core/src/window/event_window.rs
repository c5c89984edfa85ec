//! [`EventWindowOperator`]: keyed tumbling and sliding windows in event time.
//!
//! Per batch the key columns are hashed and encoded once; each row then costs one probe of the
//! window table (`window_table`) per window it belongs to, and no allocation unless its
//! (key, window) is new.
//! Fire timers are grouped by window end (a `BTreeMap` from end to the slots ending there, in
//! creation order), so a watermark fires windows by end, then by first appearance.
//!
//! Checkpoints are asynchronous: at a barrier the operator freezes its window table (its slots
//! and accumulators are in copy-on-write pages: O(pages)) and returns a deferred state; the
//! task's background writer encodes the frozen copy by key group while the operator goes on.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{ArrayRef, Int64Array, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::record_batch::RecordBatch;
use std::sync::Arc;

use super::accumulator::{new_accs, Acc, ColumnBuilder};
use super::aggregate::{Agg, Values};
use super::assigner::{Assigner, ValidKind, ValidWindow, WindowSpec};
use super::binding::{BindSpec, Binding, Shape};
use super::key_codec::{KeyCodec, SavedKeys};
use super::timestamps::read_event_times;
use super::window_table::{FrozenWindows, WindowTable};
use super::LATE;
use crate::error::{Error, Result};
use crate::keys::key_group;
use crate::message::{Epoch, EventTime, MAX_WATERMARK};
use crate::operator::{
    Collector, DeferredState, Operator, Redistribution, StateSnapshot, TaskInfo, WriteContext,
};

/// Keyed tumbling or sliding event-time windows (see [the module docs](crate::window)).
#[derive(Debug)]
pub struct EventWindowOperator {
    name: String,
    keys: Vec<String>,
    aggs: Vec<Agg>,
    window: ValidWindow,
    assigner: Assigner,
    binding: Option<Binding>,
    table: WindowTable,
    fire: BTreeMap<i64, Vec<u32>>,
    purge: BTreeMap<i64, Vec<u32>>,
    watermark: EventTime,
    late: u64,
    seq: u64,
    times: Vec<i64>,
    late_rows: Vec<u32>,
    dirty: Vec<u32>,
    /// This subtask (for its key groups in snapshots).
    task: TaskInfo,
}

/// What is not per key: one per subtask.
#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    watermark: EventTime,
    late: u64,
    seq: u64,
}

/// The windows of the keys of one key group.
#[derive(serde::Serialize, serde::Deserialize)]
struct Group {
    outputs: Vec<String>,
    keys: SavedKeys,
    /// (start, end, fired, creation order, accumulators); keys in `keys`, same order.
    windows: Vec<(i64, i64, bool, u64, Vec<Acc>)>,
}

impl EventWindowOperator {
    /// A window operator `name` over the key columns `keys`; `spec` must be tumbling or sliding
    /// (sessions: [`SessionWindowOperator`](super::SessionWindowOperator)).
    pub fn new(name: &str, keys: &[String], spec: &WindowSpec, aggs: Vec<Agg>) -> Result<Self> {
        let window = spec.validate(name)?;
        let ValidKind::Fixed(assigner) = window.kind else {
            return Err(Error::config(
                format!("{name}.kind"),
                "session windows are built by SessionWindowOperator",
            ));
        };
        Ok(EventWindowOperator {
            name: name.to_string(),
            keys: keys.to_vec(),
            table: WindowTable::new(Vec::new()),
            aggs,
            window,
            assigner,
            binding: None,
            fire: BTreeMap::new(),
            purge: BTreeMap::new(),
            watermark: i64::MIN,
            late: 0,
            seq: 0,
            times: Vec::new(),
            late_rows: Vec::new(),
            dirty: Vec::new(),
            task: TaskInfo::new(name, 0, 1),
        })
    }

    /// Records sent to the [`LATE`] side output so far.
    pub fn late_records(&self) -> u64 {
        self.late
    }

    /// Number of windows holding state.
    pub fn open_windows(&self) -> usize {
        self.table.len()
    }

    fn spec(&self) -> BindSpec<'_> {
        BindSpec {
            operator: &self.name,
            keys: &self.keys,
            aggs: &self.aggs,
            time_column: Some(self.window.time_column.as_deref()),
            shape: Shape::Window,
        }
    }

    /// Emits one output row per slot, in order.
    fn emit(&self, slots: &[u32], out: &mut Collector) -> Result<()> {
        let Some(b) = &self.binding else {
            return Ok(());
        };
        if slots.is_empty() {
            return Ok(());
        }
        let mut columns: Vec<ArrayRef> = b.codec.decode(
            slots
                .iter()
                .map(|&s| self.table.slots[s as usize].key.as_slice()),
        )?;
        let starts: Int64Array = slots
            .iter()
            .map(|&s| Some(self.table.slots[s as usize].start))
            .collect();
        let ends: Int64Array = slots
            .iter()
            .map(|&s| Some(self.table.slots[s as usize].end))
            .collect();
        columns.push(Arc::new(starts));
        columns.push(Arc::new(ends));
        let mut builders = ColumnBuilder::for_aggs(&b.aggs);
        for &s in slots {
            for (acc, builder) in self.table.accs(s).iter().zip(&mut builders) {
                acc.append(builder);
            }
        }
        columns.extend(builders.iter_mut().map(ColumnBuilder::finish));
        out.emit(RecordBatch::try_new(b.output.clone(), columns)?);
        Ok(())
    }

    /// Fires windows whose end is at most `watermark + 1`, then purges expired state.
    fn advance(&mut self, watermark: EventTime, out: &mut Collector) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        let limit = watermark.saturating_add(1);
        let mut fired = Vec::new();
        while let Some(entry) = self.fire.first_entry() {
            if *entry.key() > limit {
                break;
            }
            fired.extend(entry.remove());
        }
        for &s in &fired {
            self.table.slots[s as usize].fired = true;
        }
        self.emit(&fired, out)?;
        if self.window.lateness == 0 {
            for s in fired {
                self.table.remove(s);
            }
        } else {
            while let Some(entry) = self.purge.first_entry() {
                if *entry.key() > watermark {
                    break;
                }
                for s in entry.remove() {
                    self.table.remove(s);
                }
            }
        }
        Ok(())
    }
}

impl EventWindowOperator {
    /// The state as it is now, in O(pages) (see `window_table`): serialized later by
    /// [`FrozenState::encode`], at the barrier ([`Operator::snapshot`]) or off the data path
    /// ([`Operator::snapshot_async`]).
    fn freeze(&mut self) -> Result<FrozenState> {
        let keys = match &self.binding {
            Some(b) => Some((b.codec.copy_for_saving()?, b.outputs())),
            None => None,
        };
        Ok(FrozenState {
            meta: Meta {
                watermark: self.watermark,
                late: self.late,
                seq: self.seq,
            },
            windows: self.table.freeze(),
            keys,
            task: self.task.clone(),
        })
    }
}

/// An [`EventWindowOperator`]'s state frozen at a barrier.
struct FrozenState {
    meta: Meta,
    windows: FrozenWindows,
    /// The key codec (a copy) and the output names; `None` before the first batch.
    keys: Option<(KeyCodec, Vec<String>)>,
    task: TaskInfo,
}

impl FrozenState {
    /// The snapshot's bytes: the live windows by key group, keys in a typed form.
    fn encode(&self) -> Result<Vec<u8>> {
        let windows = &self.windows;
        let mut by_group: HashMap<u32, Vec<u32>> = HashMap::new();
        for s in windows.live_slots() {
            let group = key_group(windows.slots[s as usize].hash, self.task.key_groups);
            by_group.entry(group).or_default().push(s);
        }
        let mut groups = BTreeMap::new();
        if let Some((codec, outputs)) = &self.keys {
            for (group, slots) in by_group {
                let keys = codec.save(
                    slots
                        .iter()
                        .map(|&s| windows.slots[s as usize].key.as_slice()),
                )?;
                let windows = slots
                    .iter()
                    .map(|&s| {
                        let slot = &windows.slots[s as usize];
                        let accs = windows.accs(s).to_vec();
                        (slot.start, slot.end, slot.fired, slot.seq, accs)
                    })
                    .collect();
                let outputs = outputs.clone();
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
        super::snapshot::encode_groups("event-window", self.task.subtask, &self.meta, &groups)
    }
}

impl DeferredState for FrozenState {
    fn write(self: Box<Self>, _ctx: &WriteContext) -> Result<Vec<u8>> {
        self.encode()
    }
}

impl Operator for EventWindowOperator {
    fn process(&mut self, _input: usize, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        let spec = BindSpec {
            operator: &self.name,
            keys: &self.keys,
            aggs: &self.aggs,
            time_column: Some(self.window.time_column.as_deref()),
            shape: Shape::Window,
        };
        Binding::ensure(&mut self.binding, &batch.schema(), &spec)?;
        let Some(b) = &mut self.binding else {
            return Ok(());
        };
        if self.table.slots.is_empty() && self.table.len() == 0 {
            self.table = WindowTable::new(new_accs(&b.aggs));
        }
        b.codec.encode(&batch)?;
        let time = b
            .time
            .ok_or_else(|| Error::Internal("window without event time".into()))?;
        read_event_times(&batch, time, &self.name, &mut self.times)?;
        let values = Values::of(&batch, &b.aggs);
        let (wm, window, table) = (self.watermark, &self.window, &mut self.table);
        let (fire, purge, dirty) = (&mut self.fire, &mut self.purge, &mut self.dirty);
        let (codec, seq) = (&b.codec, &mut self.seq);
        self.late_rows.clear();
        for (row, &ts) in self.times.iter().enumerate() {
            let (hash, key) = (codec.hash(row), codec.key(row));
            let mut assigned = false;
            self.assigner.for_each(ts, |start, end| {
                let cleanup = window.cleanup_time(end);
                if cleanup <= wm {
                    return; // this window is purged
                }
                assigned = true;
                let (slot, created) = table.find_or_insert(hash, start, end, key);
                if created {
                    if end - 1 > wm {
                        fire.entry(end).or_default().push(slot);
                    }
                    if window.lateness > 0 {
                        purge.entry(cleanup).or_default().push(slot);
                    }
                }
                if end - 1 <= wm {
                    let s = &mut table.slots[slot as usize];
                    if !s.dirty {
                        s.dirty = true;
                        dirty.push(slot);
                    }
                }
                *seq += 1;
                for (acc, v) in table.accs_mut(slot).iter_mut().zip(&values) {
                    acc.update(v, row, *seq);
                }
            });
            if !assigned {
                self.late_rows.push(row as u32);
            }
        }
        if !self.late_rows.is_empty() {
            self.late += self.late_rows.len() as u64;
            let idx = UInt32Array::from(std::mem::take(&mut self.late_rows));
            out.emit_side(LATE, take_record_batch(&batch, &idx)?);
        }
        if !self.dirty.is_empty() {
            let dirty = std::mem::take(&mut self.dirty);
            for &s in &dirty {
                let slot = &mut self.table.slots[s as usize];
                slot.dirty = false;
                slot.fired = true;
            }
            self.emit(&dirty, out)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Collector) -> Result<()> {
        self.advance(watermark, out)?;
        out.emit_watermark(watermark);
        Ok(())
    }

    fn on_end(&mut self, out: &mut Collector) -> Result<()> {
        self.advance(MAX_WATERMARK, out)
    }

    fn on_start(&mut self, task: &TaskInfo) -> Result<()> {
        self.task = task.clone();
        Ok(())
    }

    fn redistribution(&self) -> Redistribution {
        Redistribution::KeyGroups
    }

    fn snapshot(&mut self, _epoch: Epoch) -> Result<Option<Vec<u8>>> {
        self.freeze()?.encode().map(Some)
    }

    fn snapshot_async(&mut self, _epoch: Epoch) -> Result<Option<StateSnapshot>> {
        Ok(Some(StateSnapshot::Deferred(Box::new(self.freeze()?))))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        let (metas, groups): (Vec<(u32, Meta)>, Vec<Group>) =
            super::snapshot::decode_groups("event-window", &self.name, bytes)?;
        (self.watermark, self.late) =
            super::snapshot::restored_clock(&metas, &self.task, |m| (m.watermark, m.late));
        self.seq = metas.iter().map(|(_, m)| m.seq).max().unwrap_or(0);
        self.fire.clear();
        self.purge.clear();
        self.binding = None;
        self.table = WindowTable::new(Vec::new());
        let mut windows = Vec::new();
        for group in groups {
            let (codec, keys) =
                KeyCodec::load_paired(&group.keys, &self.name, group.windows.len(), "windows")?;
            if self.binding.is_none() {
                let binding = Binding::restored(codec, &group.outputs, &self.spec())?;
                self.table = WindowTable::new(new_accs(&binding.aggs));
                self.binding = Some(binding);
            }
            windows.extend(keys.into_iter().zip(group.windows));
        }
        let Some(binding) = &self.binding else {
            return Ok(());
        };
        // creation order within each end, as the windows fire
        windows.sort_by_key(|(_, (_, end, _, seq, _))| (*end, *seq));
        let keys: Vec<Vec<u8>> = windows.iter().map(|(k, _)| k.clone()).collect();
        let hashes = binding.codec.hash_stored(&keys)?;
        for ((key, (start, end, fired, _, accs)), hash) in windows.into_iter().zip(hashes) {
            let (slot, _) = self.table.find_or_insert(hash, start, end, &key);
            if accs.len() != self.aggs.len() {
                return Err(Error::config(
                    format!("{}.state", self.name),
                    "wrong number of accumulators",
                ));
            }
            self.table.accs_mut(slot).clone_from_slice(&accs);
            self.table.slots[slot as usize].fired = fired;
            if !fired {
                self.fire.entry(end).or_default().push(slot);
            }
            if self.window.lateness > 0 {
                self.purge
                    .entry(self.window.cleanup_time(end))
                    .or_default()
                    .push(slot);
            }
        }
        Ok(())
    }
}

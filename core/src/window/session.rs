//! [`SessionWindowOperator`]: keyed session windows in event time.
//!
//! Each key holds its open sessions (disjoint intervals, usually one or two). A record at `t`
//! covers `[t, t + gap)`; every session overlapping that interval merges with it into one
//! session, whose accumulators are merged. If the merged session is already past its cleanup
//! time (`end - 1 + lateness <= watermark`) the record is late and nothing changes. Sessions
//! fire when the watermark reaches `end - 1`, in order of end, then of first appearance.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::record_batch::RecordBatch;

use super::accumulator::{new_accs, Acc, ColumnBuilder};
use super::aggregate::{Agg, Values};
use super::assigner::{ValidKind, ValidWindow, WindowSpec};
use super::binding::{BindSpec, Binding, Shape};
use super::key_codec::{KeyCodec, SavedKeys};
use super::key_table::KeyTable;
use super::timestamps::read_event_times;
use super::LATE;
use crate::error::{Error, Result};
use crate::keys::key_group;
use crate::message::{Epoch, EventTime, MAX_WATERMARK};
use crate::operator::{Collector, Operator, Redistribution, TaskInfo};

/// One session of one key.
#[derive(Debug, Clone)]
struct Session {
    start: i64,
    end: i64,
    /// Unique id and tie-break order: the smallest of the merged sessions' ids.
    seq: u64,
    fired: bool,
    dirty: bool,
    accs: Vec<Acc>,
}

/// Keyed session windows (see [the module docs](crate::window)).
#[derive(Debug)]
pub struct SessionWindowOperator {
    name: String,
    keys: Vec<String>,
    aggs: Vec<Agg>,
    window: ValidWindow,
    gap: i64,
    binding: Option<Binding>,
    table: KeyTable<Vec<Session>>,
    /// (end, seq, key) of sessions waiting to fire.
    fire: BTreeSet<(i64, u64, u32)>,
    /// (cleanup time, seq, key) of every session.
    purge: BTreeSet<(i64, u64, u32)>,
    watermark: EventTime,
    late: u64,
    next_seq: u64,
    arrivals: u64,
    times: Vec<i64>,
    late_rows: Vec<u32>,
    dirty: Vec<(u32, u64)>,
    /// This subtask (for its key groups in snapshots).
    task: TaskInfo,
}

/// What is not per key: one per subtask.
#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    watermark: EventTime,
    late: u64,
    next_seq: u64,
    arrivals: u64,
}

/// The sessions of the keys of one key group.
#[derive(serde::Serialize, serde::Deserialize)]
struct Group {
    outputs: Vec<String>,
    keys: SavedKeys,
    /// (start, end, seq, fired, accumulators); keys in `keys`, same order.
    sessions: Vec<(i64, i64, u64, bool, Vec<Acc>)>,
}

impl SessionWindowOperator {
    /// A session window operator `name` over the key columns `keys`; `spec` must be a session.
    pub fn new(name: &str, keys: &[String], spec: &WindowSpec, aggs: Vec<Agg>) -> Result<Self> {
        let window = spec.validate(name)?;
        let ValidKind::Session { gap } = window.kind else {
            return Err(Error::config(
                format!("{name}.kind"),
                "tumbling and sliding windows are built by EventWindowOperator",
            ));
        };
        Ok(SessionWindowOperator {
            name: name.to_string(),
            keys: keys.to_vec(),
            aggs,
            window,
            gap,
            binding: None,
            table: KeyTable::default(),
            fire: BTreeSet::new(),
            purge: BTreeSet::new(),
            watermark: i64::MIN,
            late: 0,
            next_seq: 0,
            arrivals: 0,
            task: TaskInfo::new(name, 0, 1),
            times: Vec::new(),
            late_rows: Vec::new(),
            dirty: Vec::new(),
        })
    }

    /// Records sent to the [`LATE`] side output so far.
    pub fn late_records(&self) -> u64 {
        self.late
    }

    /// Number of sessions holding state.
    pub fn open_sessions(&self) -> usize {
        self.purge.len()
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

    /// Emits the sessions `(key, seq)` that are still there and pass `pick`, marking them fired.
    fn emit(
        &mut self,
        which: &[(u32, u64)],
        out: &mut Collector,
        pick: fn(&Session) -> bool,
    ) -> Result<()> {
        let Some(b) = &self.binding else {
            return Ok(());
        };
        let mut found: Vec<(u32, usize)> = Vec::with_capacity(which.len());
        for &(k, seq) in which {
            let sessions = &mut self.table.entries[k as usize].value;
            if let Some(i) = sessions.iter().position(|s| s.seq == seq && pick(s)) {
                sessions[i].fired = true;
                sessions[i].dirty = false;
                found.push((k, i));
            }
        }
        if found.is_empty() {
            return Ok(());
        }
        let entries = &self.table.entries;
        let session = |&(k, i): &(u32, usize)| &entries[k as usize].value[i];
        let mut columns: Vec<ArrayRef> = b.codec.decode(
            found
                .iter()
                .map(|&(k, _)| entries[k as usize].key.as_slice()),
        )?;
        columns.push(Arc::new(
            found
                .iter()
                .map(|f| Some(session(f).start))
                .collect::<Int64Array>(),
        ));
        columns.push(Arc::new(
            found
                .iter()
                .map(|f| Some(session(f).end))
                .collect::<Int64Array>(),
        ));
        let mut builders = ColumnBuilder::for_aggs(&b.aggs);
        for f in &found {
            for (acc, builder) in session(f).accs.iter().zip(&mut builders) {
                acc.append(builder);
            }
        }
        columns.extend(builders.iter_mut().map(ColumnBuilder::finish));
        out.emit(RecordBatch::try_new(b.output.clone(), columns)?);
        Ok(())
    }

    fn advance(&mut self, watermark: EventTime, out: &mut Collector) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        let limit = watermark.saturating_add(1);
        let mut due = Vec::new();
        while self.fire.first().is_some_and(|f| f.0 <= limit) {
            if let Some((_, seq, k)) = self.fire.pop_first() {
                due.push((k, seq));
            }
        }
        self.emit(&due, out, |_| true)?;
        while self.purge.first().is_some_and(|p| p.0 <= watermark) {
            if let Some((_, seq, k)) = self.purge.pop_first() {
                let sessions = &mut self.table.entries[k as usize].value;
                sessions.retain(|s| s.seq != seq);
                if sessions.is_empty() {
                    self.table.remove(k);
                }
            }
        }
        Ok(())
    }

    /// Adds the rows of `batch`, collecting late rows in `late_rows`.
    fn add_rows(&mut self, b: &mut Binding, batch: &RecordBatch) -> Result<()> {
        b.codec.encode(batch)?;
        let time = b
            .time
            .ok_or_else(|| Error::Internal("session window without event time".into()))?;
        read_event_times(batch, time, &self.name, &mut self.times)?;
        let values = Values::of(batch, &b.aggs);
        self.late_rows.clear();
        for row in 0..self.times.len() {
            let k = self
                .table
                .find_or_insert(b.codec.hash(row), b.codec.key(row), Vec::new);
            if !self.add(k, self.times[row], row, &values, b) {
                self.late_rows.push(row as u32);
                if self.table.entries[k as usize].value.is_empty() {
                    self.table.remove(k);
                }
            }
        }
        Ok(())
    }

    /// Adds row `row` at time `ts` to key `k`; returns false when the row is late.
    fn add(&mut self, k: u32, ts: i64, row: usize, values: &[Values<'_>], b: &Binding) -> bool {
        let (mut start, mut end) = (ts, ts.saturating_add(self.gap));
        let sessions = &mut self.table.entries[k as usize].value;
        let mut overlapping = 0;
        for s in sessions.iter() {
            if s.start < end && ts < s.end {
                overlapping += 1;
                start = start.min(s.start);
                end = end.max(s.end);
            }
        }
        if self.window.cleanup_time(end) <= self.watermark {
            return false;
        }
        let overlaps = |s: &Session| s.start < ts.saturating_add(self.gap) && ts < s.end;
        let mut merged: Option<Session> = None;
        let mut i = 0;
        while overlapping > 0 && i < sessions.len() {
            if !overlaps(&sessions[i]) {
                i += 1;
                continue;
            }
            overlapping -= 1;
            let s = sessions.swap_remove(i);
            self.fire.remove(&(s.end, s.seq, k));
            self.purge
                .remove(&(self.window.cleanup_time(s.end), s.seq, k));
            merged = Some(match merged {
                None => s,
                Some(m) => {
                    let (mut keep, other) = if m.seq < s.seq { (m, s) } else { (s, m) };
                    for (a, b) in keep.accs.iter_mut().zip(other.accs) {
                        a.merge(b);
                    }
                    keep
                }
            });
        }
        let mut session = merged.unwrap_or_else(|| {
            self.next_seq += 1;
            Session {
                start,
                end,
                seq: self.next_seq,
                fired: false,
                dirty: false,
                accs: new_accs(&b.aggs),
            }
        });
        (session.start, session.end, session.dirty) = (start, end, false);
        self.arrivals += 1;
        for (acc, v) in session.accs.iter_mut().zip(values) {
            acc.update(v, row, self.arrivals);
        }
        if end - 1 <= self.watermark {
            session.dirty = true;
            self.dirty.push((k, session.seq));
        } else {
            session.fired = false;
            self.fire.insert((end, session.seq, k));
        }
        self.purge
            .insert((self.window.cleanup_time(end), session.seq, k));
        sessions.push(session);
        true
    }
}

impl Operator for SessionWindowOperator {
    fn process(&mut self, _input: usize, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        let spec = BindSpec {
            operator: &self.name,
            keys: &self.keys,
            aggs: &self.aggs,
            time_column: Some(self.window.time_column.as_deref()),
            shape: Shape::Window,
        };
        Binding::ensure(&mut self.binding, &batch.schema(), &spec)?;
        let Some(mut b) = self.binding.take() else {
            return Ok(());
        };
        let r = self.add_rows(&mut b, &batch);
        self.binding = Some(b);
        r?;
        if !self.late_rows.is_empty() {
            self.late += self.late_rows.len() as u64;
            let idx = UInt32Array::from(std::mem::take(&mut self.late_rows));
            out.emit_side(LATE, take_record_batch(&batch, &idx)?);
        }
        let dirty = std::mem::take(&mut self.dirty);
        self.emit(&dirty, out, |s| s.dirty)
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
        let meta = Meta {
            watermark: self.watermark,
            late: self.late,
            next_seq: self.next_seq,
            arrivals: self.arrivals,
        };
        let entries = &self.table.entries;
        let mut by_group: BTreeMap<u32, Vec<(u32, usize)>> = BTreeMap::new();
        for k in self.table.live() {
            let group = key_group(entries[k as usize].hash, self.task.key_groups);
            let all = by_group.entry(group).or_default();
            all.extend((0..entries[k as usize].value.len()).map(|i| (k, i)));
        }
        let mut groups = BTreeMap::new();
        if let Some(b) = &self.binding {
            for (group, all) in by_group {
                let keys = b
                    .codec
                    .save(all.iter().map(|&(k, _)| entries[k as usize].key.as_slice()))?;
                let sessions = all
                    .iter()
                    .map(|&(k, i)| {
                        let s = &entries[k as usize].value[i];
                        (s.start, s.end, s.seq, s.fired, s.accs.clone())
                    })
                    .collect();
                let outputs = b.outputs();
                groups.insert(
                    group,
                    Group {
                        outputs,
                        keys,
                        sessions,
                    },
                );
            }
        }
        super::snapshot::encode_groups("session-window", self.task.subtask, &meta, &groups)
            .map(Some)
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        let (metas, groups): (Vec<(u32, Meta)>, Vec<Group>) =
            super::snapshot::decode_groups("session-window", &self.name, bytes)?;
        (self.watermark, self.late) =
            super::snapshot::restored_clock(&metas, &self.task, |m| (m.watermark, m.late));
        self.next_seq = metas.iter().map(|(_, m)| m.next_seq).max().unwrap_or(0);
        self.arrivals = metas.iter().map(|(_, m)| m.arrivals).max().unwrap_or(0);
        self.table = KeyTable::default();
        self.fire.clear();
        self.purge.clear();
        self.binding = None;
        let mut sessions = Vec::new();
        for group in groups {
            let (codec, keys) =
                KeyCodec::load_paired(&group.keys, &self.name, group.sessions.len(), "sessions")?;
            if self.binding.is_none() {
                self.binding = Some(Binding::restored(codec, &group.outputs, &self.spec())?);
            }
            sessions.extend(keys.into_iter().zip(group.sessions));
        }
        let Some(binding) = &self.binding else {
            return Ok(());
        };
        sessions.sort_by_key(|(_, (_, _, seq, _, _))| *seq);
        let keys: Vec<Vec<u8>> = sessions.iter().map(|(k, _)| k.clone()).collect();
        let hashes = binding.codec.hash_stored(&keys)?;
        for ((key, (start, end, seq, fired, accs)), hash) in sessions.into_iter().zip(hashes) {
            let k = self.table.find_or_insert(hash, &key, Vec::new);
            if !fired {
                self.fire.insert((end, seq, k));
            }
            self.purge.insert((self.window.cleanup_time(end), seq, k));
            self.table.entries[k as usize].value.push(Session {
                start,
                end,
                seq,
                fired,
                dirty: false,
                accs,
            });
        }
        Ok(())
    }
}

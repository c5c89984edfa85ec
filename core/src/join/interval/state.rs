//! The interval join's checkpointed state: per key group, each side's buffered rows as an Arrow
//! IPC stream (with the side's schema), length-prefixed; the watermark and late count per
//! subtask as a meta entry.

use std::collections::BTreeMap;
use std::io::Cursor;

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;

use super::{IntervalJoinOperator, KeyState, Meta, Side, KIND, SIDES};
use crate::checkpoint::StateParts;
use crate::error::{Error, Result};
use crate::join::buffer::RowBuffer;
use crate::keys::key_group;
use crate::window::snapshot;

impl IntervalJoinOperator {
    /// The buffered rows per key group (Arrow IPC per side) and the clock, as [`StateParts`].
    pub(super) fn snapshot_state(&self) -> Result<Vec<u8>> {
        let meta = Meta {
            watermark: self.watermark,
            late: self.late,
        };
        let mut parts = StateParts::default();
        parts
            .meta
            .push((self.task.subtask as u32, snapshot::encode(KIND, &meta)?));
        let mut groups: BTreeMap<u32, Vec<&KeyState>> = BTreeMap::new();
        for k in self.state.values() {
            groups.entry(k.group).or_default().push(k);
        }
        for (group, states) in groups {
            let mut part = Vec::new();
            for s in 0..2 {
                let ipc = match &self.sides[s] {
                    Some(side) => side_rows_ipc(side, states.iter().map(|k| &k.buffers[s]))?,
                    None => Vec::new(),
                };
                part.extend_from_slice(&(ipc.len() as u64).to_le_bytes());
                part.extend_from_slice(&ipc);
            }
            parts.parts.push((group, part));
        }
        Ok(parts.encode())
    }

    /// Reads back what [`snapshot_state`](Self::snapshot_state) wrote, possibly the key groups
    /// of several old subtasks.
    pub(super) fn restore_state(&mut self, bytes: &[u8]) -> Result<()> {
        let parts = StateParts::decode(bytes, &self.name)?;
        let metas = parts
            .meta
            .iter()
            .map(|(tag, b)| Ok((*tag, snapshot::decode::<Meta>(KIND, &self.name, b)?)))
            .collect::<Result<Vec<_>>>()?;
        (self.watermark, self.late) =
            snapshot::restored_clock(&metas, &self.task, |m| (m.watermark, m.late));
        self.state.clear();
        self.next_expiry = i64::MAX;
        for (group, part) in &parts.parts {
            let mut rest = part.as_slice();
            for (s, side) in SIDES.iter().enumerate() {
                let ipc = take_chunk(&mut rest).ok_or_else(|| {
                    Error::config(
                        format!("{}.state", self.name),
                        format!("key group {group}: truncated {side} rows"),
                    )
                })?;
                if !ipc.is_empty() {
                    self.restore_rows(s, ipc)?;
                }
            }
            if !rest.is_empty() {
                return Err(Error::config(
                    format!("{}.state", self.name),
                    format!("key group {group}: {} trailing bytes", rest.len()),
                ));
            }
        }
        Ok(())
    }

    /// Buffers the rows of side `s` read back from a snapshot (they were matched already).
    fn restore_rows(&mut self, s: usize, ipc: &[u8]) -> Result<()> {
        let reader = StreamReader::try_new(Cursor::new(ipc), None)?;
        for batch in reader {
            let batch = batch?;
            self.bind(s, &batch.schema())?;
            let (keys, rows) = self.read_rows(s, &batch)?;
            for i in 0..batch.num_rows() {
                let ts = self.times[i];
                let group = key_group(self.hashes[i], self.task.key_groups);
                let state = self
                    .state
                    .entry(keys.row(i).as_ref().to_vec())
                    .or_insert_with(|| KeyState {
                        group,
                        buffers: Default::default(),
                    });
                state.buffers[s].push(ts, rows.row(i).as_ref());
                self.next_expiry = self.next_expiry.min(self.expiry(s, ts));
            }
        }
        Ok(())
    }
}

/// The rows of `buffers` (one side) as an Arrow IPC stream with the side's schema; empty when
/// there are none.
fn side_rows_ipc<'a>(side: &Side, buffers: impl Iterator<Item = &'a RowBuffer>) -> Result<Vec<u8>> {
    let parser = side.rows.parser();
    let rows: Vec<_> = buffers
        .flat_map(|b| b.iter().map(|(_, bytes)| parser.parse(bytes)))
        .collect();
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let columns = side.rows.convert_rows(rows)?;
    let batch = RecordBatch::try_new(side.schema.clone(), columns)?;
    let mut ipc = Vec::new();
    let mut writer = StreamWriter::try_new(&mut ipc, &batch.schema())?;
    writer.write(&batch)?;
    writer.finish()?;
    drop(writer);
    Ok(ipc)
}

/// The next length-prefixed chunk of `rest`.
fn take_chunk<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(u64::from_le_bytes(rest.get(..8)?.try_into().ok()?)).ok()?;
    let chunk = rest.get(8..8 + len)?;
    *rest = &rest[8 + len..];
    Some(chunk)
}

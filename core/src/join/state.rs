//! The keyed state every join keeps, and its checkpoint format.
//!
//! A join buffers rows per key and side ([`KeyState`]: two [`RowBuffer`]s and the key's key
//! group). A snapshot is a [`StateParts`]: per key group, each side's buffered rows as an Arrow
//! IPC stream with the side's schema, length-prefixed (an empty chunk when the side holds none);
//! per subtask, a meta entry in the window operators' versioned envelope
//! ([`snapshot::encode`]) with what is not per key (watermark, counters). So a restored subtask
//! gets exactly the key groups it owns, at any parallelism, and a corrupt part is refused.

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::buffer::RowBuffer;
use super::side::{Side, SIDES};
use crate::checkpoint::StateParts;
use crate::error::{Error, Result};
use crate::keys::key_group;
use crate::window::snapshot;

/// The buffered rows of one key: its key group, and per side.
#[derive(Default)]
pub(crate) struct KeyState {
    pub(crate) group: u32,
    pub(crate) buffers: [RowBuffer; 2],
}

/// Key (in the row format) → its buffered rows.
pub(crate) type KeyedRows = HashMap<Vec<u8>, KeyState>;

/// Rows buffered on (left, right) over all keys.
pub(crate) fn buffered_rows(state: &KeyedRows) -> (usize, usize) {
    state.values().fold((0, 0), |(l, r), k| {
        (l + k.buffers[0].len(), r + k.buffers[1].len())
    })
}

/// The snapshot of a join of `kind`: `meta` tagged with `subtask`, and the rows of `states`
/// per key group and side.
pub(crate) fn encode<'a, M: Serialize>(
    kind: &str,
    subtask: usize,
    meta: &M,
    sides: &[Option<Side>; 2],
    states: impl IntoIterator<Item = &'a KeyState>,
) -> Result<Vec<u8>> {
    let mut parts = StateParts::default();
    parts
        .meta
        .push((subtask as u32, snapshot::encode(kind, meta)?));
    let mut groups: BTreeMap<u32, Vec<&KeyState>> = BTreeMap::new();
    for k in states {
        groups.entry(k.group).or_default().push(k);
    }
    for (group, states) in groups {
        let mut part = Vec::new();
        for (s, side) in sides.iter().enumerate() {
            let ipc = match side {
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

/// What [`decode`] reads back: the meta entries (with the subtask that wrote each) and the
/// buffered rows as batches, with their side.
pub(crate) type Decoded<M> = (Vec<(u32, M)>, Vec<(usize, RecordBatch)>);

/// Reads back what [`encode`] wrote, possibly the key groups of several old subtasks; errors
/// name `operator`'s state and the key group.
pub(crate) fn decode<M: DeserializeOwned>(
    kind: &str,
    operator: &str,
    bytes: &[u8],
) -> Result<Decoded<M>> {
    let parts = StateParts::decode(bytes, operator)?;
    let metas = parts
        .meta
        .iter()
        .map(|(tag, b)| Ok((*tag, snapshot::decode::<M>(kind, operator, b)?)))
        .collect::<Result<Vec<_>>>()?;
    let bad = |group: u32, m: String| {
        Error::config(
            format!("{operator}.state"),
            format!("key group {group}: {m}"),
        )
    };
    let mut batches = Vec::new();
    for (group, part) in &parts.parts {
        let mut rest = part.as_slice();
        for (s, side) in SIDES.iter().enumerate() {
            let ipc = take_chunk(&mut rest)
                .ok_or_else(|| bad(*group, format!("truncated {side} rows")))?;
            if ipc.is_empty() {
                continue;
            }
            let reader = StreamReader::try_new(Cursor::new(ipc), None)
                .map_err(|e| bad(*group, format!("{side} rows: {e}")))?;
            let (schema, before) = (reader.schema(), batches.len());
            for batch in reader {
                let batch = batch.map_err(|e| bad(*group, format!("{side} rows: {e}")))?;
                batches.push((s, batch));
            }
            if batches.len() == before {
                // a side with no rows here still gives its schema, as an empty batch
                batches.push((s, RecordBatch::new_empty(schema)));
            }
        }
        if !rest.is_empty() {
            return Err(bad(*group, format!("{} trailing bytes", rest.len())));
        }
    }
    Ok((metas, batches))
}

/// Buffers the rows of `batch` (side `s`, read with `side`) in `state` under their keys,
/// calling `each(ts)` for every row.
#[allow(clippy::too_many_arguments)] // the scratch vectors are the caller's, to reuse them
pub(crate) fn insert_rows(
    state: &mut KeyedRows,
    s: usize,
    side: &Side,
    operator: &str,
    batch: &RecordBatch,
    key_groups: u32,
    scratch: (&mut Vec<i64>, &mut Vec<u64>),
    mut each: impl FnMut(i64),
) -> Result<()> {
    let (times, hashes) = scratch;
    let (keys, rows) = side.read(operator, batch, times, hashes)?;
    for i in 0..batch.num_rows() {
        let ts = times[i];
        let group = key_group(hashes[i], key_groups);
        let key = state
            .entry(keys.row(i).as_ref().to_vec())
            .or_insert_with(|| KeyState {
                group,
                buffers: Default::default(),
            });
        key.buffers[s].push(ts, rows.row(i).as_ref());
        each(ts);
    }
    Ok(())
}

/// The rows of `buffers` (one side) as an Arrow IPC stream with the side's schema (the schema
/// alone when there are none).
fn side_rows_ipc<'a>(side: &Side, buffers: impl Iterator<Item = &'a RowBuffer>) -> Result<Vec<u8>> {
    let parser = side.rows.parser();
    let rows: Vec<_> = buffers
        .flat_map(|b| b.iter().map(|(_, bytes)| parser.parse(bytes)))
        .collect();
    let mut ipc = Vec::new();
    // a side without rows in this group still writes its schema: a restored operator must
    // know both sides even when the other one sends nothing more (it ended)
    let mut writer = StreamWriter::try_new(&mut ipc, &side.schema)?;
    if !rows.is_empty() {
        let columns = side.rows.convert_rows(rows)?;
        writer.write(&RecordBatch::try_new(side.schema.clone(), columns)?)?;
    }
    writer.finish()?;
    drop(writer);
    Ok(ipc)
}

/// The next length-prefixed chunk of `rest`.
fn take_chunk<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(u64::from_le_bytes(rest.get(..8)?.try_into().ok()?)).ok()?;
    let end = len.checked_add(8)?;
    let chunk = rest.get(8..end)?;
    *rest = &rest[end..];
    Some(chunk)
}

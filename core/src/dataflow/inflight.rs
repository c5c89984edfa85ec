//! In-flight data of unaligned checkpoints: the barrier on the priority lane, and the encoding
//! of the input a task had taken but not processed when it snapshotted.
//!
//! Every channel is two lanes: the bounded data lane (`Data | Watermark | End`, in order) and
//! an unbounded priority lane that carries only barriers — at most one per checkpoint in
//! progress. A barrier carries its **position**: how many data-lane messages its producer had
//! sent on that channel before it. Consumers count what they take from the data lane, so the
//! position says exactly which messages precede the barrier, whatever order the two lanes are
//! observed in. That is what lets a barrier overtake the queue.
//!
//! The in-flight log of a task is, per input channel, the messages before the barrier that were
//! not processed when the task snapshotted. Encoding (little endian): magic `EDDYIFL1`, `u32`
//! inputs; per input a `u32` message count; per message a tag (`0` data: `u64` length and an
//! Arrow IPC stream holding the batch; `1` watermark: `i64`).

use std::io::Cursor;

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

use crate::error::{Error, Result};
use crate::message::{Barrier, Message};

const MAGIC: &[u8; 8] = b"EDDYIFL1";

/// A barrier on the priority lane, with its position on the data lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Positioned {
    pub(crate) barrier: Barrier,
    /// Data-lane messages sent on this channel before the barrier.
    pub(crate) position: u64,
}

/// Encodes per-input logs of data and watermark messages (other messages are never logged).
pub(crate) fn encode(logs: &[Vec<Message>]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&u32::try_from(logs.len()).map_err(too_big)?.to_le_bytes());
    for log in logs {
        out.extend_from_slice(&u32::try_from(log.len()).map_err(too_big)?.to_le_bytes());
        for m in log {
            match m {
                Message::Data(batch) => {
                    let mut ipc = Vec::new();
                    {
                        let mut w = StreamWriter::try_new(&mut ipc, &batch.schema())?;
                        w.write(batch)?;
                        w.finish()?;
                    }
                    out.push(0);
                    out.extend_from_slice(&(ipc.len() as u64).to_le_bytes());
                    out.extend_from_slice(&ipc);
                }
                Message::Watermark(wm) => {
                    out.push(1);
                    out.extend_from_slice(&wm.to_le_bytes());
                }
                other => {
                    return Err(Error::Internal(format!(
                        "in-flight logs hold data and watermarks, not {other:?}"
                    )))
                }
            }
        }
    }
    Ok(out)
}

fn too_big(_: std::num::TryFromIntError) -> Error {
    Error::Internal("in-flight log too large".into())
}

/// Decodes what [`encode`] wrote.
pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<Vec<Message>>> {
    let bad = |what: &str| Error::Internal(format!("in-flight log: {what}"));
    let mut rest = bytes
        .strip_prefix(&MAGIC[..])
        .ok_or_else(|| bad("bad magic"))?;
    let mut take = |n: usize| -> Result<&[u8]> {
        if rest.len() < n {
            return Err(bad("truncated"));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let u32_of = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let inputs = u32_of(take(4)?);
    let mut logs = Vec::new();
    for _ in 0..inputs {
        let count = u32_of(take(4)?);
        let mut log = Vec::new();
        for _ in 0..count {
            match take(1)?[0] {
                0 => {
                    let mut len = [0u8; 8];
                    len.copy_from_slice(take(8)?);
                    let len =
                        usize::try_from(u64::from_le_bytes(len)).map_err(|_| bad("length"))?;
                    let ipc = take(len)?;
                    let reader = StreamReader::try_new(Cursor::new(ipc), None)?;
                    for batch in reader {
                        log.push(Message::Data(batch?));
                    }
                }
                1 => {
                    let mut wm = [0u8; 8];
                    wm.copy_from_slice(take(8)?);
                    log.push(Message::Watermark(i64::from_le_bytes(wm)));
                }
                _ => return Err(bad("unknown message tag")),
            }
        }
        logs.push(log);
    }
    Ok(logs)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::record_batch::RecordBatch;

    use super::*;

    #[test]
    fn logs_round_trip_and_damage_is_an_error() -> Result<()> {
        let batch =
            RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![1, 2, 3])) as _)])?;
        let logs = vec![
            vec![Message::Data(batch.clone()), Message::Watermark(42)],
            vec![],
            vec![Message::Data(batch.slice(1, 2))],
        ];
        let bytes = encode(&logs)?;
        let back = decode(&bytes)?;
        assert_eq!(back.len(), 3);
        assert!(matches!(&back[0][0], Message::Data(b) if *b == batch));
        assert!(matches!(back[0][1], Message::Watermark(42)));
        assert!(back[1].is_empty());
        assert!(matches!(&back[2][0], Message::Data(b) if *b == batch.slice(1, 2)));
        assert!(decode(&bytes[..bytes.len() - 3]).is_err());
        assert!(encode(&[vec![Message::End]]).is_err());
        Ok(())
    }
}

//! The bytes of a chunked state: what [`DeferredState::write`](crate::operator::DeferredState)
//! produces for state kept in [`ChunkedTable`](super::ChunkedTable)s, and what
//! [`Operator::restore`](crate::operator::Operator::restore) gets back.
//!
//! Layout (little endian): magic `EDDYCST2`, a flag byte (bit 0: a full snapshot), `u64`
//! length and the operator's own small state (the *head*), `u32` entry count, then the
//! entries, each a tag byte and:
//! - `0`, one chunk inline: its `u64` length and the bytes;
//! - `1`, a run of references to chunks an earlier checkpoint of the same task and stage wrote:
//!   that checkpoint's `u64` epoch, the `u64` offset of the first chunk in its segment, the
//!   `u32` number of chunks and the `u64` length of each (the chunks lie back to back).
//!
//! The writer gives each inline chunk its offset in the segment the checkpoint store will
//! write for this state (the inline chunks back to back, in order), so that a later snapshot
//! can reference it as *(epoch, offset, length)* before the store ever answers. The store
//! writes a state's inline chunks into one segment file per task, stage and checkpoint and
//! keeps only runs of references; on load it resolves every reference (the segment's checksum
//! verified), so a restored operator sees every chunk inline. Runs keep an unchanged table's
//! references a few bytes long, whatever its number of chunks.
//!
//! A state whose deferred write failed is recorded as *declined* (magic `EDDYDCL1` and the
//! reason): the store refuses to write a checkpoint holding one, so the checkpoint fails
//! through the usual write-failure path and never becomes visible.

use crate::checkpoint::parts::take;
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"EDDYCST2";
const DECLINED: &[u8; 8] = b"EDDYDCL1";
const FULL: u8 = 1;
const INLINE: u8 = 0;
const RUN: u8 = 1;
/// The most chunks a state may have (a corrupt count cannot make a parse allocate more).
const MAX_CHUNKS: u64 = 1 << 27;

/// Where an earlier checkpoint wrote a chunk: in the segment of checkpoint `epoch` of the
/// same task and stage, at byte `offset` of the segment's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkAt {
    /// The checkpoint whose segment holds the chunk.
    pub epoch: u64,
    /// The chunk's first byte in that segment's data.
    pub offset: u64,
}

/// One chunk of a chunked state: its length, with the bytes when inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkEntry<'a> {
    /// The chunk's length in bytes.
    pub len: u64,
    /// The bytes (`None`: a reference, see `at`).
    pub bytes: Option<&'a [u8]>,
    /// Where the chunk is (a reference), or will be (inline: this checkpoint's segment at
    /// `offset`, with `epoch` 0 for "this checkpoint").
    pub at: ChunkAt,
}

/// A chunked state parsed in place (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedBlob<'a> {
    /// A full snapshot: every chunk inline.
    pub full: bool,
    /// The operator's own state besides its chunks.
    pub head: &'a [u8],
    /// The chunks, in the operator's order.
    pub chunks: Vec<ChunkEntry<'a>>,
}

/// Whether `bytes` is a chunked state.
pub fn is_chunked(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// The reason of a declined state, if `bytes` is one.
pub fn declined_reason(bytes: &[u8]) -> Option<String> {
    bytes
        .strip_prefix(DECLINED.as_slice())
        .map(|r| String::from_utf8_lossy(r).into_owned())
}

/// The bytes of a declined state (a deferred write that failed with `reason`).
pub fn declined(reason: &str) -> Vec<u8> {
    let mut out = DECLINED.to_vec();
    out.extend_from_slice(reason.as_bytes());
    out
}

/// A run of references not yet written out.
#[derive(Debug, Clone, Copy)]
struct Run {
    at: ChunkAt,
    count: u32,
    len: u64,
}

/// Writes chunked states: the head first, then the chunks one by one (references to
/// consecutive chunks of one segment merge into one run).
#[derive(Debug)]
pub struct BlobWriter {
    out: Vec<u8>,
    entries: u32,
    count_at: usize,
    /// Bytes of the inline chunks so far: the next one's offset in this state's segment.
    inline_bytes: u64,
    run: Option<Run>,
}

impl BlobWriter {
    /// A state with the operator's own state `head`; `full` marks a full snapshot.
    pub fn new(full: bool, head: &[u8], capacity: usize) -> Self {
        let mut out = Vec::with_capacity(MAGIC.len() + 13 + head.len() + capacity);
        out.extend_from_slice(MAGIC);
        out.push(if full { FULL } else { 0 });
        out.extend_from_slice(&(head.len() as u64).to_le_bytes());
        out.extend_from_slice(head);
        let count_at = out.len();
        out.extend_from_slice(&0u32.to_le_bytes());
        BlobWriter {
            out,
            entries: 0,
            count_at,
            inline_bytes: 0,
            run: None,
        }
    }

    /// Appends a chunk whose bytes follow; returns its offset in the segment the store writes
    /// for this state (what a later snapshot references it by, with this checkpoint's epoch).
    pub fn inline(&mut self, bytes: &[u8]) -> u64 {
        self.flush_run();
        self.entries += 1;
        self.out.push(INLINE);
        self.out
            .extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        self.out.extend_from_slice(bytes);
        let offset = self.inline_bytes;
        self.inline_bytes += bytes.len() as u64;
        offset
    }

    /// Appends a reference to a chunk of `len` bytes that checkpoint `at.epoch` of this task
    /// and stage wrote at `at.offset` of its segment.
    pub fn reference(&mut self, at: ChunkAt, len: u64) {
        if let Some(run) = &mut self.run {
            let next = run.at.offset + u64::from(run.count) * run.len;
            if run.at.epoch == at.epoch && next == at.offset && run.len == len {
                if let Some(count) = run.count.checked_add(1) {
                    run.count = count;
                    return;
                }
            }
        }
        self.flush_run();
        self.run = Some(Run { at, count: 1, len });
    }

    fn flush_run(&mut self) {
        if let Some(run) = self.run.take() {
            self.entries += 1;
            self.out.push(RUN);
            self.out.extend_from_slice(&run.at.epoch.to_le_bytes());
            self.out.extend_from_slice(&run.at.offset.to_le_bytes());
            self.out.extend_from_slice(&run.count.to_le_bytes());
            self.out.extend_from_slice(&run.len.to_le_bytes());
        }
    }

    /// The state's bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.flush_run();
        let count = self.entries.to_le_bytes();
        self.out[self.count_at..self.count_at + 4].copy_from_slice(&count);
        self.out
    }
}

impl<'a> ChunkedBlob<'a> {
    /// Parses a chunked state; the error names `what` (the operator or file) and the fault.
    pub fn parse(bytes: &'a [u8], what: &str) -> Result<Self> {
        let bad = |m: String| Error::config(format!("{what}.state"), m);
        let mut rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| bad("not a chunked state (bad magic)".into()))?;
        let [flags] = take::<1>(&mut rest).map_err(|m| bad(m.into()))?;
        let head_len = u64::from_le_bytes(take::<8>(&mut rest).map_err(|m| bad(m.into()))?);
        let head = split(&mut rest, head_len).map_err(|m| bad(format!("head: {m}")))?;
        let count = u32::from_le_bytes(take::<4>(&mut rest).map_err(|m| bad(m.into()))?);
        let mut chunks = Vec::with_capacity(count.min(1 << 16) as usize);
        let mut inline_bytes = 0u64;
        for i in 0..count {
            let what = |m: &str| bad(format!("entry {i}: {m}"));
            let [tag] = take::<1>(&mut rest).map_err(what)?;
            let u64_of = |rest: &mut &[u8]| take::<8>(rest).map(u64::from_le_bytes);
            match tag {
                INLINE => {
                    let len = u64_of(&mut rest).map_err(what)?;
                    let bytes = split(&mut rest, len).map_err(|m| what(&m))?;
                    let at = ChunkAt {
                        epoch: 0,
                        offset: inline_bytes,
                    };
                    inline_bytes += len;
                    chunks.push(ChunkEntry {
                        len,
                        bytes: Some(bytes),
                        at,
                    });
                }
                RUN => {
                    let epoch = u64_of(&mut rest).map_err(what)?;
                    let offset = u64_of(&mut rest).map_err(what)?;
                    let n = u32::from_le_bytes(take::<4>(&mut rest).map_err(what)?);
                    let len = u64_of(&mut rest).map_err(what)?;
                    let total = chunks.len() as u64 + u64::from(n);
                    let end = u64::from(n)
                        .checked_mul(len)
                        .and_then(|b| b.checked_add(offset));
                    if epoch == 0 || total > MAX_CHUNKS || end.is_none() {
                        return Err(what(&format!(
                            "a run of {n} chunks of {len} bytes at {offset} of checkpoint \
                             {epoch} is not a reference"
                        )));
                    }
                    chunks.extend((0..u64::from(n)).map(|k| ChunkEntry {
                        len,
                        bytes: None,
                        at: ChunkAt {
                            epoch,
                            offset: offset + k * len,
                        },
                    }));
                }
                t => return Err(what(&format!("unknown tag {t}"))),
            }
        }
        if !rest.is_empty() {
            return Err(bad(format!("{} trailing bytes", rest.len())));
        }
        Ok(ChunkedBlob {
            full: flags & FULL != 0,
            head,
            chunks,
        })
    }

    /// The inline chunks' bytes back to back: the data of this state's segment (each inline
    /// chunk's [`at`](ChunkEntry::at) offset points into it).
    pub fn inline_bytes(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.chunks.iter().filter_map(|c| c.bytes)
    }
}

fn split<'a>(rest: &mut &'a [u8], len: u64) -> std::result::Result<&'a [u8], String> {
    let n = usize::try_from(len)
        .ok()
        .filter(|&l| l <= rest.len())
        .ok_or_else(|| format!("{len} bytes, only {} left", rest.len()))?;
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_inline_and_runs_and_refuses_every_cut() -> Result<()> {
        let mut w = BlobWriter::new(true, b"head", 0);
        assert_eq!(w.inline(b"abc"), 0);
        let at = |offset| ChunkAt { epoch: 4, offset };
        w.reference(at(12), 4);
        w.reference(at(16), 4);
        w.reference(at(20), 4);
        w.reference(at(40), 4);
        assert_eq!(w.inline(b"de"), 3);
        let bytes = w.finish();
        let blob = ChunkedBlob::parse(&bytes, "op")?;
        assert!(blob.full);
        assert_eq!(blob.head, b"head");
        assert_eq!(blob.chunks.len(), 6);
        assert_eq!(blob.chunks[0].bytes, Some(&b"abc"[..]));
        let refs: Vec<_> = blob.chunks[1..5].iter().map(|c| c.at).collect();
        assert_eq!(refs, vec![at(12), at(16), at(20), at(40)]);
        assert!(blob.chunks[1..5].iter().all(|c| c.bytes.is_none()));
        assert_eq!(blob.chunks[5].at.offset, 3);
        assert_eq!(
            blob.inline_bytes().collect::<Vec<_>>(),
            [&b"abc"[..], b"de"]
        );
        // two runs (12..24 and 40), not four references
        assert_eq!(
            bytes.len(),
            8 + 1 + 8 + 4 + 4 + (1 + 8 + 3) + 2 * (1 + 8 + 8 + 4 + 8) + (1 + 8 + 2)
        );
        for cut in 0..bytes.len() {
            assert!(
                ChunkedBlob::parse(&bytes[..cut], "op").is_err(),
                "cut {cut}"
            );
        }
        assert!(declined_reason(&declined("disk full")).is_some_and(|r| r == "disk full"));
        Ok(())
    }

    #[test]
    fn a_run_of_absurd_size_is_refused_before_allocating() {
        let mut w = BlobWriter::new(false, b"", 0);
        w.reference(
            ChunkAt {
                epoch: 1,
                offset: 0,
            },
            8,
        );
        let mut bytes = w.finish();
        let n = bytes.len() - 12;
        bytes[n..n + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = ChunkedBlob::parse(&bytes, "op")
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("not a reference")));
    }
}

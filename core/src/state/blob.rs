//! The bytes of a chunked state: what [`DeferredState::write`](crate::operator::DeferredState)
//! produces for state kept in [`ChunkedTable`](super::ChunkedTable)s, and what
//! [`Operator::restore`](crate::operator::Operator::restore) gets back.
//!
//! Layout (little endian): magic `EDDYCST1`, a flag byte (bit 0: a full snapshot, which the
//! store rewrites every chunk of), `u64` length and the operator's own small state (the
//! *head*), `u32` chunk count, then per chunk a tag byte (`0` = the bytes follow, `1` = a
//! reference to a chunk an earlier checkpoint wrote), its xxh3-128 hash (16 bytes), its `u64`
//! length and, inline, the bytes. The checkpoint store writes inline chunks to shared chunk
//! files named by their hash and keeps only references in the checkpoint; on load it resolves
//! every reference (verifying length and hash), so a restored operator sees every chunk inline.
//!
//! A state whose deferred write failed is recorded as *declined* (magic `EDDYDCL1` and the
//! reason): the store refuses to write a checkpoint holding one, so the checkpoint fails
//! through the usual write-failure path and never becomes visible.

use xxhash_rust::xxh3::xxh3_128;

use crate::checkpoint::parts::take;
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"EDDYCST1";
const DECLINED: &[u8; 8] = b"EDDYDCL1";
const FULL: u8 = 1;

/// The xxh3-128 hash that names a chunk.
pub fn chunk_hash(bytes: &[u8]) -> u128 {
    xxh3_128(bytes)
}

/// One chunk of a chunked state: its hash and length, with the bytes when inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkEntry<'a> {
    /// xxh3-128 of the chunk's bytes.
    pub hash: u128,
    /// The chunk's length in bytes.
    pub len: u64,
    /// The bytes (`None`: a reference to a chunk written by an earlier checkpoint).
    pub bytes: Option<&'a [u8]>,
}

/// A chunked state parsed in place (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedBlob<'a> {
    /// A full snapshot: every chunk inline, rewritten by the store.
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

/// Writes chunked states: the head first, then the chunks one by one.
#[derive(Debug)]
pub struct BlobWriter {
    out: Vec<u8>,
    count: u32,
    count_at: usize,
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
            count: 0,
            count_at,
        }
    }

    /// Appends a chunk whose bytes follow.
    pub fn inline(&mut self, hash: u128, bytes: &[u8]) {
        self.entry(0, hash, bytes.len() as u64);
        self.out.extend_from_slice(bytes);
    }

    /// Appends a reference to a chunk an earlier checkpoint wrote.
    pub fn reference(&mut self, hash: u128, len: u64) {
        self.entry(1, hash, len);
    }

    fn entry(&mut self, tag: u8, hash: u128, len: u64) {
        self.count += 1;
        self.out.push(tag);
        self.out.extend_from_slice(&hash.to_le_bytes());
        self.out.extend_from_slice(&len.to_le_bytes());
    }

    /// The state's bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.out[self.count_at..self.count_at + 4].copy_from_slice(&self.count.to_le_bytes());
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
        let mut chunks = Vec::with_capacity(count.min(1 << 20) as usize);
        for i in 0..count {
            let what = |m: &str| bad(format!("chunk {i}: {m}"));
            let [tag] = take::<1>(&mut rest).map_err(what)?;
            let hash = u128::from_le_bytes(take::<16>(&mut rest).map_err(what)?);
            let len = u64::from_le_bytes(take::<8>(&mut rest).map_err(what)?);
            let bytes = match tag {
                0 => Some(split(&mut rest, len).map_err(|m| what(&m))?),
                1 => None,
                t => return Err(what(&format!("unknown tag {t}"))),
            };
            chunks.push(ChunkEntry { hash, len, bytes });
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

    /// Re-encodes this state with the chunk bytes given by `bytes_of` (`None`: a reference).
    pub fn encode_with<'b>(
        &self,
        full: bool,
        mut bytes_of: impl FnMut(usize, &ChunkEntry<'a>) -> Option<&'b [u8]>,
    ) -> Vec<u8> {
        let mut w = BlobWriter::new(full, self.head, 0);
        for (i, c) in self.chunks.iter().enumerate() {
            match bytes_of(i, c) {
                Some(bytes) => w.inline(c.hash, bytes),
                None => w.reference(c.hash, c.len),
            }
        }
        w.finish()
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
    fn round_trips_inline_and_references_and_refuses_every_cut() -> Result<()> {
        let mut w = BlobWriter::new(true, b"head", 0);
        w.inline(chunk_hash(b"abc"), b"abc");
        w.reference(7, 12);
        let bytes = w.finish();
        let blob = ChunkedBlob::parse(&bytes, "op")?;
        assert!(blob.full);
        assert_eq!(blob.head, b"head");
        assert_eq!(blob.chunks[0].bytes, Some(&b"abc"[..]));
        assert_eq!((blob.chunks[1].hash, blob.chunks[1].len), (7, 12));
        assert_eq!(blob.chunks[1].bytes, None);
        assert_eq!(blob.encode_with(true, |_, c| c.bytes), bytes);
        for cut in 0..bytes.len() {
            assert!(
                ChunkedBlob::parse(&bytes[..cut], "op").is_err(),
                "cut {cut}"
            );
        }
        assert!(declined_reason(&declined("disk full")).is_some_and(|r| r == "disk full"));
        Ok(())
    }
}

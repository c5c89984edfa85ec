//! The snapshot container: a versioned, checksummed byte format.
//!
//! ```text
//! magic "EDDY-PS\0" (8) | version u32 | body length u64 | body | xxh3-64 of all before (u64)
//! ```
//!
//! Integers and floats are little-endian. The body's layout belongs to the store that wrote it
//! (see [`LocalPs`](crate::LocalPs)); this module only frames it and reads it back with bounds
//! checks, so a truncated or corrupted snapshot is an [`Error::Snapshot`], never a panic.
//!
//! **Versions.** This build writes [`VERSION`] and reads [`OLDEST_READABLE`]`..=`[`VERSION`];
//! any other version is refused with an error naming it. Version 2 added the push-dedup table
//! at the end of a [`LocalPs`](crate::LocalPs) body; a version-1 body still loads, with an
//! empty dedup table (replays of pushes acknowledged before the upgrade are not recognized —
//! nothing recognized them before either). Version 3 added the job id and checkpoint epoch at
//! the end of a shard file ([`grpc::files`](crate::grpc::files)); older shard files load with
//! no job and epoch 0. The other bodies framed here (a [`LocalPs`](crate::LocalPs) body from
//! version 2 on, a [`PsClient`](crate::PsClient)'s multi-shard snapshot) are the same in
//! every version.

use xxhash_rust::xxh3::xxh3_64;

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"EDDY-PS\0";
/// The body layout version this crate writes.
pub const VERSION: u32 = 3;
/// The oldest body layout version this crate still reads.
pub const OLDEST_READABLE: u32 = 1;
const HEADER: usize = 8 + 4 + 8;

/// Builds a snapshot: write the body, then [`finish`](Writer::finish).
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Self {
        Self::versioned(VERSION)
    }

    /// A writer of an older (or, to test refusals, unknown) body version.
    pub(crate) fn versioned(version: u32) -> Self {
        let mut buf = Vec::with_capacity(1024);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&version.to_le_bytes());
        buf.extend_from_slice(&0u64.to_le_bytes());
        Writer { buf }
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn f32s(&mut self, v: &[f32]) {
        for x in v {
            self.buf.extend_from_slice(&x.to_le_bytes());
        }
    }

    /// Length-prefixed bytes.
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.u64(v.len() as u64);
        self.buf.extend_from_slice(v);
    }

    /// Fills in the body length and appends the checksum.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let body = (self.buf.len() - HEADER) as u64;
        self.buf[12..HEADER].copy_from_slice(&body.to_le_bytes());
        let sum = xxh3_64(&self.buf);
        self.buf.extend_from_slice(&sum.to_le_bytes());
        self.buf
    }
}

/// Reads a snapshot's body after [`open`] verified its frame.
pub(crate) struct Reader<'a> {
    body: &'a [u8],
    pos: usize,
    version: u32,
}

/// Verifies magic, version, length and checksum; returns a reader over the body.
pub(crate) fn open(bytes: &[u8]) -> Result<Reader<'_>> {
    if bytes.len() < HEADER + 8 {
        return Err(Error::Snapshot(format!(
            "{} bytes is too short",
            bytes.len()
        )));
    }
    if &bytes[..8] != MAGIC {
        return Err(Error::Snapshot(
            "not an eddy-ps snapshot (bad magic)".into(),
        ));
    }
    let (framed, sum) = bytes.split_at(bytes.len() - 8);
    let mut want = [0u8; 8];
    want.copy_from_slice(sum);
    if xxh3_64(framed) != u64::from_le_bytes(want) {
        return Err(Error::Snapshot(
            "checksum mismatch (corrupt snapshot)".into(),
        ));
    }
    let mut r = Reader {
        body: &framed[8..],
        pos: 0,
        version: 0,
    };
    let version = r.u32()?;
    if !(OLDEST_READABLE..=VERSION).contains(&version) {
        return Err(Error::Snapshot(format!(
            "unknown version {version} (this build reads {OLDEST_READABLE}..={VERSION})"
        )));
    }
    let len = r.u64()?;
    if len != (framed.len() - HEADER) as u64 {
        return Err(Error::Snapshot(format!(
            "body length {len} but {} bytes follow",
            framed.len() - HEADER
        )));
    }
    Ok(Reader {
        body: &framed[HEADER..],
        pos: 0,
        version,
    })
}

impl<'a> Reader<'a> {
    /// The body layout version of the snapshot being read.
    pub(crate) fn version(&self) -> u32 {
        self.version
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.body.len())
            .ok_or_else(|| Error::Snapshot(format!("truncated at byte {}", self.pos)))?;
        let s = &self.body[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A count of items of at least `item_bytes` each, checked against the bytes left so a
    /// corrupt count cannot make the reader allocate without bound.
    pub(crate) fn count(&mut self, item_bytes: usize) -> Result<usize> {
        let n = self.u64()?;
        let left = (self.body.len() - self.pos) as u64;
        if n.saturating_mul(item_bytes.max(1) as u64) > left {
            return Err(Error::Snapshot(format!("count {n} exceeds the bytes left")));
        }
        Ok(n as usize)
    }

    pub(crate) fn f32s(&mut self, out: &mut [f32]) -> Result<()> {
        let raw = self.take(out.len() * 4)?;
        for (o, c) in out.iter_mut().zip(raw.chunks_exact(4)) {
            *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        Ok(())
    }

    /// Length-prefixed bytes.
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.count(1)?;
        self.take(n)
    }

    /// Fails unless the whole body was read.
    pub(crate) fn end(&self) -> Result<()> {
        if self.pos == self.body.len() {
            Ok(())
        } else {
            Err(Error::Snapshot(format!(
                "{} trailing bytes",
                self.body.len() - self.pos
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_corruption_is_refused() {
        let mut w = Writer::new();
        w.u32(7);
        w.u64(1 << 40);
        w.f32s(&[1.5, -2.0]);
        w.bytes(b"hello");
        let bytes = w.finish();
        let mut r = open(&bytes).unwrap();
        assert_eq!(r.u32().unwrap(), 7);
        assert_eq!(r.u64().unwrap(), 1 << 40);
        let mut f = [0.0; 2];
        r.f32s(&mut f).unwrap();
        assert_eq!(f, [1.5, -2.0]);
        assert_eq!(r.bytes().unwrap(), b"hello");
        r.end().unwrap();
        assert!(r.u32().is_err(), "reading past the end");
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(open(&bad).is_err(), "flipped byte {i} accepted");
        }
        for n in 0..bytes.len() {
            assert!(open(&bytes[..n]).is_err(), "truncated to {n} accepted");
        }
    }

    #[test]
    fn older_versions_open_and_unknown_ones_are_refused() {
        for v in OLDEST_READABLE..=VERSION {
            let mut w = Writer::versioned(v);
            w.u32(5);
            let bytes = w.finish();
            let mut r = open(&bytes).unwrap();
            assert_eq!((r.version(), r.u32().unwrap()), (v, 5));
        }
        for v in [0, VERSION + 1, u32::MAX] {
            let bytes = Writer::versioned(v).finish();
            match open(&bytes) {
                Err(Error::Snapshot(m)) => assert!(m.contains(&format!("version {v}")), "{m}"),
                other => panic!("version {v}: {:?}", other.map(|r| r.version())),
            }
        }
    }
}

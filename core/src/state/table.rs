//! [`ChunkedTable`]: a fixed-length table of `W`-word slots in copy-on-write chunks.
//!
//! A snapshot ([`ChunkedTable::snapshot`]) clones the chunk pointers and freezes every chunk:
//! O(number of chunks), whatever the bytes. The first write to a frozen chunk after it copies
//! that chunk alone (or takes it back in place once the snapshot let go of it), so the
//! snapshot keeps the values of its barrier while the operator goes on. Writes to a chunk that
//! is not frozen cost one flag test: slots are relaxed atomics (plain loads and stores), which
//! lets a chunk be shared with a snapshot being written without a lock.
//!
//! Incremental: a chunk whose bytes a snapshot wrote is *sealed* with its hash and that
//! snapshot's epoch; a write clears the seal. A later snapshot references a sealed chunk
//! instead of writing it again once a checkpoint at or after the seal's epoch completed (the
//! chunk is then in that checkpoint, which the store keeps until a newer one references it).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::blob::{chunk_hash, BlobWriter, ChunkEntry};
use crate::error::{Error, Result};
use crate::operator::WriteContext;

/// The default number of slots per chunk.
pub const DEFAULT_CHUNK_SLOTS: usize = 1024;

/// One chunk's slots (inline after the reference counts: one pointer from the table).
type Chunk<const W: usize> = Arc<[[AtomicU32; W]]>;

/// Where a chunk's bytes were written: the chunk's generation then, their hash and the epoch
/// of the snapshot.
#[derive(Debug, Clone, Copy)]
struct Seal {
    generation: u64,
    hash: u128,
    epoch: u64,
}

fn zeroed<const W: usize>(n: usize) -> Chunk<W> {
    (0..n)
        .map(|_| std::array::from_fn(|_| AtomicU32::new(0)))
        .collect()
}

fn copy<const W: usize>(chunk: &[[AtomicU32; W]]) -> Chunk<W> {
    chunk
        .iter()
        .map(|s| std::array::from_fn(|w| AtomicU32::new(s[w].load(Ordering::Relaxed))))
        .collect()
}

fn bytes<const W: usize>(chunk: &[[AtomicU32; W]], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(chunk.len() * W * 4);
    for s in chunk {
        for w in s {
            out.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
    }
}

/// A table of `len` slots of `W` `u32` words, in copy-on-write chunks (see the
/// [module docs](self)).
#[derive(Debug)]
pub struct ChunkedTable<const W: usize> {
    chunks: Vec<Chunk<W>>,
    /// Chunk `c` may be shared with a snapshot: copy (or reclaim) it before writing.
    frozen: Vec<bool>,
    /// Chunk `c`'s generation, new at each first write after a snapshot.
    generations: Vec<u64>,
    next_generation: u64,
    /// The seals the snapshots' writers left, by chunk (valid for the generation they name).
    seals: Arc<Mutex<Vec<Option<Seal>>>>,
    len: usize,
    shift: u32,
}

impl<const W: usize> Clone for ChunkedTable<W> {
    /// A deep copy, unsealed (its snapshots write every chunk once).
    fn clone(&self) -> Self {
        let n = self.chunks.len();
        ChunkedTable {
            chunks: self.chunks.iter().map(|c| copy(c)).collect(),
            frozen: vec![false; n],
            generations: vec![0; n],
            next_generation: 1,
            seals: Arc::new(Mutex::new(vec![None; n])),
            len: self.len,
            shift: self.shift,
        }
    }
}

impl<const W: usize> PartialEq for ChunkedTable<W> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && (0..self.len).all(|i| self.get(i) == other.get(i))
    }
}

impl<const W: usize> ChunkedTable<W> {
    /// `len` zero slots in chunks of `chunk_slots` (rounded up to a power of two).
    pub fn new(len: usize, chunk_slots: usize) -> Self {
        let per = chunk_slots.max(1).next_power_of_two();
        let shift = per.trailing_zeros();
        // every full chunk starts as one shared zero chunk, frozen: a chunk's memory is
        // allocated at its first write (a large sparse table costs what it holds)
        let count = len.div_ceil(per);
        let zero = zeroed::<W>(per.min(len));
        let chunks = (0..count)
            .map(|c| match len - c * per {
                rest if rest < per => zeroed::<W>(rest),
                _ => zero.clone(),
            })
            .collect::<Vec<_>>();
        ChunkedTable {
            frozen: vec![true; count],
            generations: vec![0; count],
            next_generation: 1,
            seals: Arc::new(Mutex::new(vec![None; count])),
            chunks,
            len,
            shift,
        }
    }

    /// The number of slots.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table has no slots.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of chunks.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Slot `i` (panics past `len`, like a slice).
    #[inline(always)]
    pub fn get(&self, i: usize) -> [u32; W] {
        let s = &self.chunks[i >> self.shift][i & ((1 << self.shift) - 1)];
        std::array::from_fn(|w| s[w].load(Ordering::Relaxed))
    }

    /// Word `w` of slot `i` (panics past `len` or `W`, like a slice).
    #[inline(always)]
    pub fn get_word(&self, i: usize, w: usize) -> u32 {
        self.chunks[i >> self.shift][i & ((1 << self.shift) - 1)][w].load(Ordering::Relaxed)
    }

    /// Sets slot `i` (panics past `len`, like a slice).
    #[inline(always)]
    pub fn set(&mut self, i: usize, value: [u32; W]) {
        let c = i >> self.shift;
        if self.frozen[c] {
            self.thaw(c);
        }
        let s = &self.chunks[c][i & ((1 << self.shift) - 1)];
        for (w, v) in s.iter().zip(value) {
            w.store(v, Ordering::Relaxed);
        }
    }

    /// Makes chunk `c` the table's own, of a new generation (which no seal names): in place
    /// when no snapshot holds it any more, else as a copy.
    #[cold]
    fn thaw(&mut self, c: usize) {
        self.frozen[c] = false;
        self.generations[c] = self.next_generation;
        self.next_generation += 1;
        if Arc::get_mut(&mut self.chunks[c]).is_none() {
            self.chunks[c] = copy(&self.chunks[c]);
        }
    }

    /// Marks every chunk as changed (the next snapshot writes it), e.g. after the slots were
    /// rewritten wholesale.
    pub fn touch_all(&mut self) {
        for c in 0..self.chunks.len() {
            self.thaw(c);
        }
    }

    /// The table as of now, for a snapshot written later: O(number of chunks).
    pub fn snapshot(&mut self) -> TableSnapshot<W> {
        self.frozen.iter_mut().for_each(|f| *f = true);
        TableSnapshot {
            chunks: self.chunks.clone(),
            generations: self.generations.clone(),
            seals: self.seals.clone(),
        }
    }

    /// The table restored from the chunks of a chunked state (every one inline), which were
    /// written by [`TableSnapshot::write`] of a table of `len` slots in chunks of
    /// `chunk_slots`. Restored chunks are sealed: they are in the checkpoint restored from.
    /// The error names `what` and the chunk that does not fit.
    pub fn restore(
        len: usize,
        chunk_slots: usize,
        chunks: &[ChunkEntry<'_>],
        what: &str,
    ) -> Result<Self> {
        let mut table = ChunkedTable::<W>::new(len, chunk_slots);
        if chunks.len() != table.chunks.len() {
            return Err(Error::config(
                format!("{what}.state"),
                format!(
                    "{} chunks for a table of {} slots in chunks of {} (expected {})",
                    chunks.len(),
                    len,
                    1usize << table.shift,
                    table.chunks.len()
                ),
            ));
        }
        table.touch_all();
        let mut seals = Vec::with_capacity(chunks.len());
        for (c, entry) in chunks.iter().enumerate() {
            let own = &table.chunks[c];
            let bytes = entry.bytes.filter(|b| b.len() == own.len() * W * 4);
            let Some(bytes) = bytes else {
                return Err(Error::config(
                    format!("{what}.state"),
                    format!(
                        "chunk {c}: {} bytes, expected {} (a reference left unresolved?)",
                        entry.len,
                        own.len() * W * 4
                    ),
                ));
            };
            for (slot, words) in own.iter().zip(bytes.chunks_exact(W * 4)) {
                for (w, b) in slot.iter().zip(words.chunks_exact(4)) {
                    w.store(
                        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                        Ordering::Relaxed,
                    );
                }
            }
            seals.push(Some(Seal {
                generation: table.generations[c],
                hash: entry.hash,
                epoch: 0,
            }));
        }
        table.seals = Arc::new(Mutex::new(seals));
        Ok(table)
    }
}

/// A table frozen at a barrier (see [`ChunkedTable::snapshot`]).
#[derive(Debug, Clone)]
pub struct TableSnapshot<const W: usize> {
    chunks: Vec<Chunk<W>>,
    generations: Vec<u64>,
    seals: Arc<Mutex<Vec<Option<Seal>>>>,
}

impl<const W: usize> TableSnapshot<W> {
    /// Writes the chunks: a chunk sealed at or before the newest completed checkpoint
    /// ([`WriteContext::durable`]) as a reference, unless the snapshot is full; every other
    /// chunk inline, sealing it with its hash and `ctx.epoch`. Returns the chunks written
    /// inline. Runs off the data path.
    pub fn write(&self, ctx: &WriteContext, out: &mut BlobWriter) -> usize {
        let mut buf = Vec::new();
        let mut written = 0;
        let mut seals = self.seals.lock().unwrap_or_else(|p| p.into_inner());
        for (c, chunk) in self.chunks.iter().enumerate() {
            let len = (chunk.len() * W * 4) as u64;
            let generation = self.generations[c];
            let seal = seals
                .get(c)
                .copied()
                .flatten()
                .filter(|s| s.generation == generation);
            match seal {
                Some(seal) if !ctx.full && seal.epoch <= ctx.durable.0 => {
                    out.reference(seal.hash, len)
                }
                _ => {
                    bytes(chunk, &mut buf);
                    let hash = chunk_hash(&buf);
                    out.inline(hash, &buf);
                    written += 1;
                    // a chunk sealed already keeps its older epoch: it is durable from then
                    if seal.is_none() {
                        if let Some(slot) = seals.get_mut(c) {
                            *slot = Some(Seal {
                                generation,
                                hash,
                                epoch: ctx.epoch.0,
                            });
                        }
                    }
                }
            }
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Epoch;
    use crate::state::ChunkedBlob;

    fn ctx(epoch: u64, durable: u64, full: bool) -> WriteContext {
        WriteContext {
            epoch: Epoch(epoch),
            durable: Epoch(durable),
            full,
        }
    }

    fn write(s: &TableSnapshot<2>, c: &WriteContext) -> (Vec<u8>, usize) {
        let mut w = BlobWriter::new(c.full, b"", 0);
        let n = s.write(c, &mut w);
        (w.finish(), n)
    }

    #[test]
    fn a_snapshot_keeps_its_values_while_the_table_changes() -> Result<()> {
        let mut t = ChunkedTable::<2>::new(10, 4);
        t.set(1, [1, 2]);
        let snap = t.snapshot();
        t.set(1, [9, 9]);
        t.set(9, [5, 5]);
        let (bytes, n) = write(&snap, &ctx(1, 0, false));
        assert_eq!(n, 3);
        let blob = ChunkedBlob::parse(&bytes, "t")?;
        let back = ChunkedTable::<2>::restore(10, 4, &blob.chunks, "t")?;
        assert_eq!(back.get(1), [1, 2]);
        assert_eq!(back.get(9), [0, 0]);
        assert_eq!(t.get(1), [9, 9]);
        Ok(())
    }

    #[test]
    fn only_chunks_written_since_a_durable_snapshot_are_written_again() -> Result<()> {
        let mut t = ChunkedTable::<2>::new(16, 4);
        let (_, n) = write(&t.snapshot(), &ctx(1, 0, false));
        assert_eq!(n, 4);
        t.set(5, [1, 1]);
        // checkpoint 1 not known complete: everything is written again
        assert_eq!(write(&t.snapshot(), &ctx(2, 0, false)).1, 4);
        t.set(6, [1, 1]);
        assert_eq!(write(&t.snapshot(), &ctx(3, 2, false)).1, 1);
        assert_eq!(write(&t.snapshot(), &ctx(4, 3, false)).1, 0);
        assert_eq!(write(&t.snapshot(), &ctx(5, 4, true)).1, 4);
        Ok(())
    }

    #[test]
    fn restore_refuses_a_wrong_shape() {
        let mut t = ChunkedTable::<2>::new(8, 4);
        let (bytes, _) = write(&t.snapshot(), &ctx(1, 0, false));
        let blob = ChunkedBlob::parse(&bytes, "t").ok();
        let chunks = blob.map(|b| b.chunks).unwrap_or_default();
        let e = ChunkedTable::<2>::restore(12, 4, &chunks, "t").err();
        assert!(e.is_some_and(|e| e.to_string().contains("2 chunks")));
    }
}

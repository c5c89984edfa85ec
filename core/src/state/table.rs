//! [`ChunkedTable`]: a fixed-length table of `W`-word slots in copy-on-write chunks, reached
//! through copy-on-write pages.
//!
//! Two levels: the table holds *pages* (`Arc`s of [`PAGE_CHUNKS`] chunk entries), each entry a
//! *chunk* (`Arc` of slots) and the snapshot period it was last made the table's own in. A
//! snapshot ([`ChunkedTable::snapshot`]) clones the page pointers and starts a new period:
//! O(number of pages), whatever the number of chunks, so small chunks (small incremental
//! checkpoints) do not make the barrier slower. The first write to a chunk after a snapshot
//! copies its page's chunk pointers if the snapshot still holds the page, then copies the
//! chunk if the snapshot still holds it (or takes either back in place once the snapshot let
//! go), so the snapshot keeps the values of its barrier while the operator goes on. Writes to
//! a chunk owned in the current period cost one compare: slots are relaxed atomics (plain
//! loads and stores), which lets a chunk be shared with a snapshot being written without a
//! lock.
//!
//! Incremental: the period a chunk was made the table's own in is its *generation* (its bytes
//! change only in that period). A snapshot that writes a chunk inline *seals* it with its
//! generation and where the store will put it (the checkpoint's epoch and the offset in its
//! segment, see [`blob`](super::blob)). A later snapshot references a sealed chunk of the same
//! generation instead of writing it again once a checkpoint at or after the seal's epoch
//! completed (every checkpoint since then references the same place, so the newest one keeps
//! it in the store).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::blob::{BlobWriter, ChunkAt, ChunkEntry};
use crate::error::{Error, Result};
use crate::operator::WriteContext;

/// The default number of slots per chunk (1 KiB chunks of 2-word slots): small enough that a
/// sparse update rewrites little, the chunk count being free at the barrier.
pub const DEFAULT_CHUNK_SLOTS: usize = 128;

/// Slots per chunk for tables written densely (a learner's weights: a batch touches chunks all
/// over the table anyway), where fewer, larger chunks keep the chunk pointers in cache on the
/// hot path.
pub const DENSE_CHUNK_SLOTS: usize = 1024;

/// Chunks per page: a snapshot costs one pointer per page.
pub const PAGE_CHUNKS: usize = 64;
const PAGE_SHIFT: u32 = PAGE_CHUNKS.trailing_zeros();

/// One chunk's slots (inline after the reference counts: one pointer from its entry).
type Chunk<const W: usize> = Arc<[[AtomicU32; W]]>;

/// A chunk and the period it was made the table's own in (its generation).
#[derive(Debug, Clone)]
struct Entry<const W: usize> {
    chunk: Chunk<W>,
    owned: u64,
}

/// Up to [`PAGE_CHUNKS`] entries, shared with the snapshots taken since it was last copied.
type Page<const W: usize> = Arc<[Entry<W>]>;

/// Where a snapshot wrote a chunk's bytes: the chunk's generation then, and the place.
#[derive(Debug, Clone, Copy)]
struct Seal {
    generation: u64,
    at: ChunkAt,
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

/// A table of `len` slots of `W` `u32` words, in copy-on-write chunks and pages (see the
/// [module docs](self)).
#[derive(Debug)]
pub struct ChunkedTable<const W: usize> {
    pages: Vec<Page<W>>,
    /// The current snapshot period (starts at 1; a snapshot begins the next one).
    period: u64,
    /// The seals the snapshots' writers left, by chunk (valid for the generation they name).
    seals: Arc<Mutex<Vec<Option<Seal>>>>,
    chunks: usize,
    len: usize,
    shift: u32,
}

impl<const W: usize> Clone for ChunkedTable<W> {
    /// A deep copy, unsealed (its snapshots write every chunk once).
    fn clone(&self) -> Self {
        let pages = self
            .pages
            .iter()
            .map(|p| {
                p.iter()
                    .map(|e| Entry {
                        chunk: copy(&e.chunk),
                        owned: 0,
                    })
                    .collect()
            })
            .collect();
        ChunkedTable {
            pages,
            period: 1,
            seals: Arc::new(Mutex::new(vec![None; self.chunks])),
            chunks: self.chunks,
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
        // every full chunk starts as one shared zero chunk of period 0 (not the table's own):
        // a chunk's memory is allocated at its first write (a sparse table costs what it holds)
        let count = len.div_ceil(per);
        let zero = zeroed::<W>(per.min(len));
        let entry = |c: usize| Entry {
            chunk: match len - c * per {
                rest if rest < per => zeroed::<W>(rest),
                _ => zero.clone(),
            },
            owned: 0,
        };
        let pages = (0..count)
            .step_by(PAGE_CHUNKS)
            .map(|first| {
                (first..count.min(first + PAGE_CHUNKS))
                    .map(&entry)
                    .collect()
            })
            .collect();
        ChunkedTable {
            pages,
            period: 1,
            seals: Arc::new(Mutex::new(vec![None; count])),
            chunks: count,
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
        self.chunks
    }

    /// The number of pages (what a snapshot costs).
    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    #[inline(always)]
    fn entry(&self, i: usize) -> &Entry<W> {
        let c = i >> self.shift;
        &self.pages[c >> PAGE_SHIFT][c & (PAGE_CHUNKS - 1)]
    }

    /// Slot `i` (panics past `len`, like a slice).
    #[inline(always)]
    pub fn get(&self, i: usize) -> [u32; W] {
        let s = &self.entry(i).chunk[i & ((1 << self.shift) - 1)];
        std::array::from_fn(|w| s[w].load(Ordering::Relaxed))
    }

    /// Word `w` of slot `i` (panics past `len` or `W`, like a slice).
    #[inline(always)]
    pub fn get_word(&self, i: usize, w: usize) -> u32 {
        self.entry(i).chunk[i & ((1 << self.shift) - 1)][w].load(Ordering::Relaxed)
    }

    /// Sets slot `i` (panics past `len`, like a slice).
    #[inline(always)]
    pub fn set(&mut self, i: usize, value: [u32; W]) {
        if self.entry(i).owned != self.period {
            self.thaw(i >> self.shift);
        }
        let s = &self.entry(i).chunk[i & ((1 << self.shift) - 1)];
        for (w, v) in s.iter().zip(value) {
            w.store(v, Ordering::Relaxed);
        }
    }

    /// Makes chunk `c` the table's own in this period (a new generation, which no seal
    /// names): its page and then the chunk in place when no snapshot holds them any more, else
    /// as copies.
    #[cold]
    fn thaw(&mut self, c: usize) {
        let entries = Arc::make_mut(&mut self.pages[c >> PAGE_SHIFT]);
        let entry = &mut entries[c & (PAGE_CHUNKS - 1)];
        if Arc::get_mut(&mut entry.chunk).is_none() {
            entry.chunk = copy(&entry.chunk);
        }
        entry.owned = self.period;
    }

    /// Marks every chunk as changed (the next snapshot writes it), e.g. after the slots were
    /// rewritten wholesale.
    pub fn touch_all(&mut self) {
        for c in 0..self.chunks {
            self.thaw(c);
        }
    }

    /// The table as of now, for a snapshot written later: O(number of pages).
    pub fn snapshot(&mut self) -> TableSnapshot<W> {
        let snapshot = TableSnapshot {
            pages: self.pages.clone(),
            seals: self.seals.clone(),
        };
        self.period += 1;
        snapshot
    }

    /// The table restored from the chunks of a chunked state (every one inline), which were
    /// written by [`TableSnapshot::write`] of a table of `len` slots in chunks of
    /// `chunk_slots`. The restored table is unsealed: its first snapshot writes every chunk
    /// (the checkpoint it came from may be in another store). The error names `what` and the
    /// chunk that does not fit.
    pub fn restore(
        len: usize,
        chunk_slots: usize,
        chunks: &[ChunkEntry<'_>],
        what: &str,
    ) -> Result<Self> {
        let mut table = ChunkedTable::<W>::new(len, chunk_slots);
        if chunks.len() != table.chunks {
            return Err(Error::config(
                format!("{what}.state"),
                format!(
                    "{} chunks for a table of {} slots in chunks of {} (expected {})",
                    chunks.len(),
                    len,
                    1usize << table.shift,
                    table.chunks
                ),
            ));
        }
        table.touch_all();
        for (c, entry) in chunks.iter().enumerate() {
            let own = &table.pages[c >> PAGE_SHIFT][c & (PAGE_CHUNKS - 1)].chunk;
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
        }
        Ok(table)
    }
}

/// A table frozen at a barrier (see [`ChunkedTable::snapshot`]).
#[derive(Debug, Clone)]
pub struct TableSnapshot<const W: usize> {
    pages: Vec<Page<W>>,
    seals: Arc<Mutex<Vec<Option<Seal>>>>,
}

impl<const W: usize> TableSnapshot<W> {
    /// Writes the chunks: a chunk sealed at or before the newest completed checkpoint
    /// ([`WriteContext::durable`]) as a reference, unless the snapshot is full; every other
    /// chunk inline, sealing it with its place in `ctx.epoch`'s segment. Returns the chunks
    /// written inline. Runs off the data path.
    pub fn write(&self, ctx: &WriteContext, out: &mut BlobWriter) -> usize {
        let mut buf = Vec::new();
        let mut written = 0;
        let mut seals = self.seals.lock().unwrap_or_else(|p| p.into_inner());
        let entries = self.pages.iter().flat_map(|p| p.iter());
        for (entry, seal) in entries.zip(seals.iter_mut()) {
            let len = (entry.chunk.len() * W * 4) as u64;
            match seal.filter(|s| s.generation == entry.owned) {
                Some(s) if !ctx.full && s.at.epoch <= ctx.durable.0 => out.reference(s.at, len),
                _ => {
                    bytes(&entry.chunk, &mut buf);
                    let offset = out.inline(&buf);
                    written += 1;
                    *seal = Some(Seal {
                        generation: entry.owned,
                        at: ChunkAt {
                            epoch: ctx.epoch.0,
                            offset,
                        },
                    });
                }
            }
        }
        written
    }
}

#[cfg(test)]
mod tests;

//! Large operator state, snapshotted asynchronously and incrementally (ARCHITECTURE §3
//! "Checkpoints").
//!
//! An operator keeps its large state in [`ChunkedTable`]s. At a barrier its
//! [`snapshot_async`](crate::operator::Operator::snapshot_async) takes a [`TableSnapshot`] of
//! each (O(number of pages): a page holds [`PAGE_CHUNKS`] chunks) and returns a
//! [`DeferredState`](crate::operator::DeferredState); the task hands it to its background
//! writer (`dataflow::state_writer`) and goes on processing. The writer serializes it — chunks
//! unchanged since a completed checkpoint as references *(epoch, offset, length)*, the others
//! inline (a [`blob`] of the chunked state) — and only then acknowledges the task's part of
//! the checkpoint, which therefore completes only once every deferred part is written. The
//! checkpoint store packs a state's inline chunks into one checksummed segment file per task,
//! stage and checkpoint, referenced by the manifests (see
//! [`checkpoint::store`](crate::checkpoint::store)).
//!
//! | module | what |
//! |---|---|
//! | [`table`] | [`ChunkedTable`]: copy-on-write pages of copy-on-write chunks of fixed-width slots, sealed when written |
//! | [`blob`] | the bytes of a chunked state: head, inline chunks and runs of references |
//! | [`pages`] | [`CowPages`]: rows of any cloneable element in copy-on-write pages (a window's slots and accumulators), frozen by a clone |
//!
//! State of variable-size rows (the keyed windows') lives in [`CowPages`] instead: the barrier
//! clones the page pointers and the writer serializes the clone — asynchronous, not
//! incremental.

pub mod blob;
pub mod pages;
pub mod table;

pub use blob::{BlobWriter, ChunkAt, ChunkEntry, ChunkedBlob};
pub use pages::{CowPages, FrozenPages, PAGE_ROWS};
pub use table::{ChunkedTable, TableSnapshot, DEFAULT_CHUNK_SLOTS, DENSE_CHUNK_SLOTS, PAGE_CHUNKS};

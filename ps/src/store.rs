//! [`ParamStore`]: the parameter-server contract every store (in-process or remote) implements.
//!
//! A training step of a [`GradientModel`](eddy_algorithms::learner::GradientModel): `keys` →
//! [`pull`](ParamStore::pull) → `gradients` → [`push`](ParamStore::push). Methods return
//! futures (`Send`, so a store can be driven from any tokio task): a remote store awaits the
//! network, the local one completes them at once.

use std::future::Future;

use crate::clock::WorkerId;
use crate::error::Result;
use crate::local::{Delta, DeltaCursor};

/// A sharded table store that applies the tables' update rules on the server.
///
/// Tables are declared up front with [`TableConfig`](crate::TableConfig); see
/// [`table`](crate::table) for admission, initialization and expiry.
pub trait ParamStore: Send + Sync {
    /// Pulls the rows of `keys` from `table` into `out` (cleared first): `dim` floats per key,
    /// in key order (a repeated key is answered each time). Only weights are answered, never
    /// optimizer state. Keys without a row answer the initializer's values, or zeros while not
    /// yet admitted. A pull never creates a row.
    fn pull(
        &self,
        table: &str,
        keys: &[u64],
        out: &mut Vec<f32>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Pushes gradients: `grads` holds `dim` floats per key, in key order; `xs` (same shape,
    /// default all 1) the feature values the gradients came from, for normalized rules. For
    /// each key in order the server applies the table's
    /// [`UpdateRule`](eddy_algorithms::learner::UpdateRule) to the row's weights and state with
    /// `t` = the row's own update count including this one (1 on a fresh row), so a key
    /// repeated in one push is stepped once per occurrence. The shapes are checked before any
    /// row changes.
    fn push(
        &self,
        table: &str,
        keys: &[u64],
        grads: &[f32],
        xs: Option<&[f32]>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Registers `worker` with the consistency clocks at the slowest worker's clock; returns it.
    fn register(&self, worker: WorkerId) -> impl Future<Output = Result<u64>> + Send;

    /// Removes `worker` from the clocks (it finished), so it no longer holds the others back.
    fn deregister(&self, worker: WorkerId) -> impl Future<Output = Result<()>> + Send;

    /// Advances `worker`'s clock by one (once per iteration, after its pushes); returns the new
    /// clock.
    fn clock(&self, worker: WorkerId) -> impl Future<Output = Result<u64>> + Send;

    /// Waits while `worker` is more than `staleness` clocks ahead of the slowest registered
    /// worker (SSP; 0 is BSP). Jobs with `async` consistency do not call it.
    fn wait_bounded(
        &self,
        worker: WorkerId,
        staleness: u64,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The delta feed: appends to `out` the rows of `table` changed since `cursor` (their
    /// current weights, `dim` per key) and the keys expiry removed since it (in
    /// [`Delta::removed`]), and advances `cursor` past them. Following the cursor never misses
    /// a change (a row changed twice may be answered twice). A cursor older than the store
    /// remembers removals — a fresh one ([`DeltaCursor::default`]), one from before a restore
    /// or a shard restart, or one so old that the removals after it were forgotten — gets a
    /// full resync instead: `out` is cleared and holds every row, with [`Delta::resync`] set.
    /// See [`local::delta`](crate::local::delta) for the bound on remembered removals.
    fn delta(
        &self,
        table: &str,
        cursor: &mut DeltaCursor,
        out: &mut Delta,
    ) -> impl Future<Output = Result<()>> + Send;

    /// A self-checking snapshot of every table's rows (weights, optimizer state, counters).
    fn snapshot(&self) -> impl Future<Output = Result<Vec<u8>>> + Send;

    /// Replaces every table's rows with a snapshot's. Refuses (changing nothing) a corrupt or
    /// truncated snapshot, an unknown version, or one whose tables differ from the store's.
    fn restore(&self, bytes: &[u8]) -> impl Future<Output = Result<()>> + Send;
}

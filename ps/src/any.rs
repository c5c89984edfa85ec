//! [`AnyStore`]: the in-process store or the gRPC client behind one type, for callers that
//! choose the store at run time (the training engine: `ps = "local"` or shard addresses).

use crate::clock::WorkerId;
use crate::error::Result;
use crate::grpc::PsClient;
use crate::local::{Delta, DeltaCursor, LocalPs};
use crate::store::ParamStore;

/// A [`LocalPs`] or a [`PsClient`] to gRPC shards.
pub enum AnyStore {
    /// The in-process store.
    Local(LocalPs),
    /// Shards over gRPC.
    Remote(PsClient),
}

/// What a remote store's client counted (all zero for the local store).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCounters {
    /// Requests retried after a timeout or a broken connection.
    pub retries: u64,
    /// Retried pushes the shards had applied already (and did not apply again).
    pub duplicate_pushes: u64,
    /// Shard restarts the client noticed.
    pub shard_restarts: u64,
    /// Key updates a restarted shard had acknowledged but its snapshot did not hold.
    pub lost_updates: u64,
}

impl AnyStore {
    /// The client's counters (zeros for the local store).
    pub fn counters(&self) -> StoreCounters {
        match self {
            AnyStore::Local(_) => StoreCounters::default(),
            AnyStore::Remote(c) => StoreCounters {
                retries: c.retries(),
                duplicate_pushes: c.duplicate_acks(),
                shard_restarts: c.restarts(),
                lost_updates: c.lost_updates(),
            },
        }
    }
}

/// Forwards a [`ParamStore`] method to whichever store this is.
macro_rules! either {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Local($s) => $call.await,
            AnyStore::Remote($s) => $call.await,
        }
    };
}

impl ParamStore for AnyStore {
    async fn pull(&self, table: &str, keys: &[u64], out: &mut Vec<f32>) -> Result<()> {
        either!(self, s => s.pull(table, keys, out))
    }

    async fn push(
        &self,
        table: &str,
        keys: &[u64],
        grads: &[f32],
        xs: Option<&[f32]>,
    ) -> Result<()> {
        either!(self, s => s.push(table, keys, grads, xs))
    }

    async fn register(&self, worker: WorkerId) -> Result<u64> {
        either!(self, s => s.register(worker))
    }

    async fn deregister(&self, worker: WorkerId) -> Result<()> {
        either!(self, s => s.deregister(worker))
    }

    async fn clock(&self, worker: WorkerId) -> Result<u64> {
        either!(self, s => s.clock(worker))
    }

    async fn wait_bounded(&self, worker: WorkerId, staleness: u64) -> Result<()> {
        either!(self, s => s.wait_bounded(worker, staleness))
    }

    async fn delta(&self, table: &str, cursor: &mut DeltaCursor, out: &mut Delta) -> Result<()> {
        either!(self, s => s.delta(table, cursor, out))
    }

    async fn snapshot(&self) -> Result<Vec<u8>> {
        either!(self, s => s.snapshot())
    }

    async fn restore(&self, bytes: &[u8]) -> Result<()> {
        either!(self, s => s.restore(bytes))
    }
}

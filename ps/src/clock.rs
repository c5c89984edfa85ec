//! Consistency clocks for bounded staleness (SSP, Ho et al. 2013).
//!
//! Every worker registers, then calls `clock` once per iteration (after its pushes). Before an
//! iteration a worker calls `wait_bounded(worker, s)`, which waits while the worker's clock is
//! more than `s` ahead of the slowest registered worker. [`Consistency`] names the three
//! settings: `sync` (BSP, `s = 0`), `bounded(s)` (SSP) and `async` (no wait).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::error::{Error, Result};

/// A training worker's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkerId(pub u32);

impl std::fmt::Display for WorkerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How far workers may drift apart, per job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Consistency {
    /// No waiting at all (Hogwild-style).
    #[default]
    Async,
    /// Stale synchronous parallel: at most this many clocks ahead of the slowest worker.
    Bounded(u64),
    /// Bulk synchronous: never ahead of the slowest worker (`Bounded(0)`).
    Sync,
}

impl std::str::FromStr for Consistency {
    type Err = String;

    /// `async`, `sync` or `bounded:S` (the CLI's and the workflow TOML's spelling).
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text.trim() {
            "async" => Ok(Consistency::Async),
            "sync" => Ok(Consistency::Sync),
            other => other
                .strip_prefix("bounded:")
                .and_then(|s| s.parse::<u64>().ok())
                .map(Consistency::Bounded)
                .ok_or_else(|| format!("`{text}`: expected async, bounded:S or sync")),
        }
    }
}

impl Consistency {
    /// The staleness bound, `None` for `Async`.
    pub fn staleness(&self) -> Option<u64> {
        match *self {
            Consistency::Async => None,
            Consistency::Bounded(s) => Some(s),
            Consistency::Sync => Some(0),
        }
    }
}

/// Per-worker clocks with waiting: the in-process implementation behind
/// [`ParamStore`](crate::ParamStore)'s clock methods.
#[derive(Debug, Default)]
pub struct Clocks {
    clocks: Mutex<HashMap<WorkerId, u64>>,
    changed: Notify,
}

impl Clocks {
    /// No workers.
    pub fn new() -> Self {
        Clocks::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<WorkerId, u64>> {
        self.clocks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers `worker` at the slowest worker's clock (0 when it is the first), so a late
    /// joiner neither blocks the others nor runs ahead; returns that clock. Registering again
    /// keeps the worker's clock.
    pub fn register(&self, worker: WorkerId) -> u64 {
        let mut clocks = self.lock();
        let min = clocks.values().copied().min().unwrap_or(0);
        let c = *clocks.entry(worker).or_insert(min);
        drop(clocks);
        self.changed.notify_waiters();
        c
    }

    /// Removes `worker` (it finished or failed), so it no longer holds the others back.
    pub fn deregister(&self, worker: WorkerId) -> Result<()> {
        self.lock()
            .remove(&worker)
            .ok_or(Error::UnknownWorker(worker))?;
        self.changed.notify_waiters();
        Ok(())
    }

    /// Advances `worker`'s clock by one and returns the new value.
    pub fn clock(&self, worker: WorkerId) -> Result<u64> {
        let mut clocks = self.lock();
        let c = clocks
            .get_mut(&worker)
            .ok_or(Error::UnknownWorker(worker))?;
        *c += 1;
        let now = *c;
        drop(clocks);
        self.changed.notify_waiters();
        Ok(now)
    }

    /// `worker`'s clock, if registered.
    pub fn get(&self, worker: WorkerId) -> Option<u64> {
        self.lock().get(&worker).copied()
    }

    /// Whether `worker` may proceed: its clock is at most `staleness` ahead of the slowest.
    fn may_proceed(&self, worker: WorkerId, staleness: u64) -> Result<bool> {
        let clocks = self.lock();
        let mine = *clocks.get(&worker).ok_or(Error::UnknownWorker(worker))?;
        let min = clocks.values().copied().min().unwrap_or(mine);
        Ok(mine <= min.saturating_add(staleness))
    }

    /// Waits while `worker` is more than `staleness` clocks ahead of the slowest registered
    /// worker. Fails at once (or when woken) if `worker` is not registered.
    pub async fn wait_bounded(&self, worker: WorkerId, staleness: u64) -> Result<()> {
        loop {
            // Subscribe before checking, so a clock between the check and the await is seen.
            let mut notified = std::pin::pin!(self.changed.notified());
            notified.as_mut().enable();
            if self.may_proceed(worker, staleness)? {
                return Ok(());
            }
            notified.await;
        }
    }

    /// [`wait_bounded`](Clocks::wait_bounded) with the job's [`Consistency`] (`Async` returns
    /// at once).
    pub async fn wait(&self, worker: WorkerId, consistency: Consistency) -> Result<()> {
        match consistency.staleness() {
            Some(s) => self.wait_bounded(worker, s).await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_spelling() {
        assert_eq!("async".parse(), Ok(Consistency::Async));
        assert_eq!(" sync ".parse(), Ok(Consistency::Sync));
        assert_eq!("bounded:3".parse(), Ok(Consistency::Bounded(3)));
        assert!("bounded:".parse::<Consistency>().is_err());
        assert!("bounded".parse::<Consistency>().is_err());
        assert!("bounded:-1".parse::<Consistency>().is_err());
        assert!("eventually".parse::<Consistency>().is_err());
    }

    #[test]
    fn register_clock_and_unknown_workers() {
        let c = Clocks::new();
        assert_eq!(c.register(WorkerId(0)), 0);
        assert_eq!(c.clock(WorkerId(0)).unwrap(), 1);
        assert_eq!(c.clock(WorkerId(0)).unwrap(), 2);
        // a late joiner starts at the slowest clock
        assert_eq!(c.register(WorkerId(1)), 2);
        assert_eq!(c.register(WorkerId(1)), 2);
        assert!(matches!(
            c.clock(WorkerId(9)),
            Err(Error::UnknownWorker(WorkerId(9)))
        ));
        c.deregister(WorkerId(1)).unwrap();
        assert!(c.deregister(WorkerId(1)).is_err());
        assert_eq!(c.get(WorkerId(1)), None);
        assert_eq!(Consistency::Sync.staleness(), Some(0));
        assert_eq!(Consistency::Bounded(3).staleness(), Some(3));
        assert_eq!(Consistency::Async.staleness(), None);
    }
}

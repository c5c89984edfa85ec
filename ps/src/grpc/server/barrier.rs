//! The epoch barrier of a job of several worker processes (see the [server docs](super)):
//! which workers reported which checkpoint epoch, which finished, and the newest epoch whose
//! snapshot is durable.
//!
//! A worker reports epoch `e` (`SnapshotEpoch` with `workers > 0`) once its pushes up to its
//! checkpoint `e` are applied, and pushes nothing more until every shard answers that `e` is
//! complete. A shard snapshots `e` when every worker of the job reported it or finished, so the
//! snapshot holds exactly the pushes of every worker up to its checkpoint `e`: a consistent cut
//! of the job. `RestoreEpoch` rolls the barrier back with the tables.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{MutexGuard, PoisonError};
use std::time::Duration;

use super::Shared;
use crate::error::{Error, Result};

/// The barrier's state, behind [`Shared::barrier`].
#[derive(Debug, Default)]
pub(super) struct Barrier {
    /// The job's worker processes (0: no report yet).
    workers: u32,
    /// Epochs being gathered, and the workers that reported each.
    reported: BTreeMap<u64, BTreeSet<u32>>,
    /// Workers whose input ended: they count as reported for every epoch.
    finished: BTreeSet<u32>,
}

/// How long a `SnapshotEpoch` call waits for the barrier before it answers "not complete" (the
/// client asks again): below the client's request timeout.
pub(super) const BARRIER_WAIT: Duration = Duration::from_secs(2);

impl Shared {
    fn barrier(&self) -> MutexGuard<'_, Barrier> {
        self.barrier.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Worker `worker` of `workers` of job `job` reached checkpoint `epoch` (or, `finished`,
    /// its input ended after it). Snapshots every epoch now reported by all the job's workers,
    /// oldest first; returns whether `epoch` is complete.
    pub(super) fn report_epoch(
        &self,
        job: &str,
        epoch: u64,
        worker: u32,
        workers: u32,
        finished: bool,
    ) -> Result<bool> {
        self.check_job(job)?;
        let shard = self.cfg.shard as usize;
        let mut b = self.barrier();
        if b.workers == 0 {
            b.workers = workers;
        }
        if b.workers != workers || worker >= workers {
            return Err(Error::config(
                "",
                "workers",
                format!(
                    "shard {shard}: worker {worker} of {workers} reported epoch {epoch}, but \
                     the job's barrier has {} workers",
                    b.workers
                ),
            ));
        }
        let complete = *self.complete.borrow();
        if finished {
            b.finished.insert(worker);
        } else if epoch > complete {
            b.reported.entry(epoch).or_default().insert(worker);
        }
        while let Some((&next, who)) = b.reported.first_key_value() {
            let all = (0..b.workers).all(|w| who.contains(&w) || b.finished.contains(&w));
            if !all {
                break;
            }
            self.snapshot_epoch(job, next)?;
            b.reported.remove(&next);
            self.complete.send_replace(next);
        }
        Ok(epoch <= *self.complete.borrow())
    }

    /// Rolls the barrier back to epoch `epoch` (complete), with `finished` the workers whose
    /// input had ended by then.
    pub(super) fn reset_barrier(&self, epoch: u64, workers: u32, finished: &[u32]) {
        let mut b = self.barrier();
        *b = Barrier {
            workers,
            reported: BTreeMap::new(),
            finished: finished.iter().copied().collect(),
        };
        self.complete.send_replace(epoch);
    }

    /// Waits (up to [`BARRIER_WAIT`]) for epoch `epoch` to be complete; whether it is.
    pub(super) async fn wait_complete(&self, epoch: u64) -> bool {
        let mut rx = self.complete.subscribe();
        let waited = tokio::time::timeout(BARRIER_WAIT, rx.wait_for(|c| *c >= epoch)).await;
        matches!(waited, Ok(Ok(_)))
    }
}

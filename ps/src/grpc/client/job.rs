//! [`PsClient`]'s side of the shards' job identity: the health each reply carries checked
//! against the job (a shard marked lost fails every call until a restore), and the epoch
//! snapshots (see the [client docs](super)).

use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use futures::future::try_join_all;

use super::super::proto::*;
use super::PsClient;
use crate::error::{Error, Result};

impl PsClient {
    /// Records a shard's health; a new incarnation means it restarted from its snapshot. With
    /// a job, a shard that no longer holds the job's state is marked lost (see the module
    /// docs) and the error returned.
    pub(super) fn observe(&self, shard: usize, health: Option<Health>) -> Result<()> {
        let Some(h) = health else { return Ok(()) };
        let mut seen = self.conns[shard]
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut lost = None;
        *seen = Some(match *seen {
            Some((inc, acked)) if inc == h.incarnation => (inc, acked.max(h.applied)),
            Some((_, acked)) => {
                self.restarts.fetch_add(1, Ordering::Relaxed);
                self.lost
                    .fetch_add(acked.saturating_sub(h.applied_at_start), Ordering::Relaxed);
                let last = self.last_epoch.load(Ordering::SeqCst);
                if self.cfg.strict {
                    lost = Some(format!(
                        "restarted; exactly-once: its state since epoch {last} is not the \
                         job's (it restarted from epoch {})",
                        h.epoch
                    ));
                } else if !self.cfg.job.is_empty() && h.epoch < last {
                    lost = Some(format!(
                        "restarted from a snapshot of epoch {}, older than the job's last \
                         epoch {last}",
                        h.epoch
                    ));
                }
                (h.incarnation, h.applied)
            }
            None => (h.incarnation, h.applied),
        });
        drop(seen);
        if !self.cfg.job.is_empty() && !h.job.is_empty() && h.job != self.cfg.job {
            lost = Some(format!("now holds the tables of job `{}`", h.job));
        }
        match lost {
            Some(reason) => Err(self.mark_lost(shard, reason)),
            None => Ok(()),
        }
    }

    /// Marks `shard` as having lost the job's state; returns the error calls now fail with.
    pub(super) fn mark_lost(&self, shard: usize, reason: String) -> Error {
        let mut lost = self.conns[shard]
            .lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let reason = lost.get_or_insert(reason).clone();
        Error::ShardLost {
            shard,
            addr: self.conns[shard].addr.clone(),
            reason,
        }
    }

    /// The error of a shard marked lost, if it is.
    pub(super) fn check_lost(&self, shard: usize) -> Result<()> {
        let lost = self.conns[shard]
            .lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match &*lost {
            Some(reason) => Err(Error::ShardLost {
                shard,
                addr: self.conns[shard].addr.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Whether the client has had an answer from `shard` (so it knows the job's tables).
    pub(super) fn knows(&self, shard: usize) -> bool {
        self.conns[shard]
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Has every shard write a snapshot labelled with checkpoint epoch `epoch` of the
    /// client's job; returns once every shard answered that it is durable. Fails (changing
    /// no label the client keeps) if any shard lost the job's state.
    pub async fn snapshot_epoch(&self, epoch: u64) -> Result<()> {
        let job = self.cfg.job.clone();
        let replies = try_join_all((0..self.conns.len()).map(|s| {
            let job = job.clone();
            self.call(s, "snapshot-epoch", move |mut c| {
                let job = job.clone();
                async move { c.snapshot_epoch(EpochRequest { job, epoch }).await }
            })
        }))
        .await?;
        for (s, r) in replies.into_iter().enumerate() {
            self.observe(s, r.health)?;
        }
        self.last_epoch.fetch_max(epoch, Ordering::SeqCst);
        Ok(())
    }

    /// Rolls every shard back to its snapshot of checkpoint epoch `epoch` of the client's job
    /// (waiting, within `retry_for`, for a restarting shard), and takes each shard as it now
    /// is: a shard marked lost is the job's again.
    pub async fn restore_epoch(&self, epoch: u64) -> Result<()> {
        let job = self.cfg.job.clone();
        let replies = try_join_all((0..self.conns.len()).map(|s| {
            let job = job.clone();
            self.call(s, "restore-epoch", move |mut c| {
                let job = job.clone();
                async move { c.restore_epoch(EpochRequest { job, epoch }).await }
            })
        }))
        .await?;
        for (s, r) in replies.into_iter().enumerate() {
            let conn = &self.conns[s];
            *conn.seen.lock().unwrap_or_else(PoisonError::into_inner) =
                r.health.map(|h| (h.incarnation, h.applied));
            *conn.lost.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
        self.last_epoch.store(epoch, Ordering::SeqCst);
        Ok(())
    }

    /// The first of the [`lease_workers`](super::PsClientConfig::lease_workers) worker ids shard 0
    /// leased to this client (0 without a lease).
    pub fn worker_base(&self) -> u32 {
        self.worker_base
    }

    /// The client's job id (empty: none).
    pub fn job(&self) -> &str {
        &self.cfg.job
    }
}

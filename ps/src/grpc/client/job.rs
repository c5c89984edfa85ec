//! [`PsClient`]'s side of the shards' job identity: the health each reply carries checked
//! against the job (a shard marked lost fails every call until a restore), and the epoch
//! snapshots (see the [client docs](super)).

use std::sync::atomic::Ordering;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use eddy_core::backoff::Backoff;
use futures::future::try_join_all;
use tonic::transport::Endpoint;

use super::super::proto::ps_shard_client::PsShardClient;
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
                async move {
                    let req = EpochRequest {
                        job,
                        epoch,
                        ..EpochRequest::default()
                    };
                    c.snapshot_epoch(req).await
                }
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
                async move {
                    let req = EpochRequest {
                        job,
                        epoch,
                        ..EpochRequest::default()
                    };
                    c.restore_epoch(req).await
                }
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

    /// The epoch barrier of a job of `workers` worker processes (see the [server
    /// docs](crate::grpc::server)): reports to every shard that worker `worker` reached
    /// checkpoint `epoch` with its pushes applied, and returns once every shard snapshotted
    /// the epoch (every worker of the job reported it or finished), or fails after `wait`.
    /// The caller pushes nothing in between: the snapshots are a consistent cut of the job.
    pub async fn barrier_epoch(
        &self,
        epoch: u64,
        worker: u32,
        workers: u32,
        wait: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + wait;
        let job = self.cfg.job.clone();
        try_join_all((0..self.conns.len()).map(|s| {
            let job = job.clone();
            async move {
                loop {
                    let req = EpochRequest {
                        job: job.clone(),
                        epoch,
                        worker,
                        workers,
                        ..EpochRequest::default()
                    };
                    let reply = self
                        .call(s, "barrier-epoch", move |mut c| {
                            let req = req.clone();
                            async move { c.snapshot_epoch(req).await }
                        })
                        .await?;
                    self.observe(s, reply.health)?;
                    if reply.complete {
                        return Ok(());
                    }
                    if Instant::now() >= deadline {
                        return Err(Error::ShardLost {
                            shard: s,
                            addr: self.conns[s].addr.clone(),
                            reason: format!(
                                "epoch {epoch} incomplete after {wait:?}: a worker of the job \
                                 never reached it"
                            ),
                        });
                    }
                }
            }
        }))
        .await?;
        self.last_epoch.fetch_max(epoch, Ordering::SeqCst);
        Ok(())
    }

    /// Tells every shard's epoch barrier that worker `worker` of `workers` has pushed its
    /// last rows (after checkpoint `epoch`): no later epoch waits for it.
    pub async fn finish_barrier(&self, epoch: u64, worker: u32, workers: u32) -> Result<()> {
        let job = self.cfg.job.clone();
        let replies = try_join_all((0..self.conns.len()).map(|s| {
            let req = EpochRequest {
                job: job.clone(),
                epoch,
                worker,
                workers,
                finished: true,
                ..EpochRequest::default()
            };
            self.call(s, "finish-barrier", move |mut c| {
                let req = req.clone();
                async move { c.snapshot_epoch(req).await }
            })
        }))
        .await?;
        for (s, r) in replies.into_iter().enumerate() {
            self.observe(s, r.health)?;
        }
        Ok(())
    }

    /// The first of the [`lease_workers`](super::PsClientConfig::lease_workers) worker ids shard 0
    /// leased to this client (0 without a lease).
    pub fn worker_base(&self) -> u32 {
        self.worker_base
    }

    /// The newest checkpoint epoch snapshotted or restored through this client (0: none).
    pub fn last_epoch(&self) -> u64 {
        self.last_epoch.load(Ordering::SeqCst)
    }

    /// The client's job id (empty: none).
    pub fn job(&self) -> &str {
        &self.cfg.job
    }
}

/// Rolls the shards at `addrs` (in shard order) back to job `job`'s checkpoint epoch `epoch`
/// (0: the job's start, every row cleared) and resets their epoch barrier for `workers`
/// worker processes, `finished` those whose input had ended by then. Needs no tables: the
/// job's coordinator (the supervisor of its worker processes) calls it with every worker
/// stopped. A shard that does not answer is retried (it may be restarting) for `retry_for`.
pub async fn restore_job_epoch(
    addrs: &[String],
    job: &str,
    epoch: u64,
    workers: u32,
    finished: &[u32],
    retry_for: Duration,
) -> Result<()> {
    let deadline = Instant::now() + retry_for;
    let backoff = Backoff::new(Duration::from_millis(20), Duration::from_secs(1));
    for (shard, addr) in addrs.iter().enumerate() {
        let uri = if addr.contains("://") {
            addr.clone()
        } else {
            format!("http://{addr}")
        };
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|e| Error::config("", &format!("shards[{shard}]"), format!("`{addr}`: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60));
        let req = EpochRequest {
            job: job.to_owned(),
            epoch,
            workers,
            finished_workers: finished.to_vec(),
            ..EpochRequest::default()
        };
        let mut attempt = 0;
        loop {
            let tried = match endpoint.connect().await {
                Ok(channel) => PsShardClient::new(channel)
                    .restore_epoch(req.clone())
                    .await
                    .map(drop),
                Err(e) => Err(tonic::Status::unavailable(e.to_string())),
            };
            let status = match tried {
                Ok(()) => break,
                Err(status) => status,
            };
            if let Some(refused) = super::super::from_status(&status) {
                return Err(refused);
            }
            if Instant::now() >= deadline {
                return Err(Error::ShardLost {
                    shard,
                    addr: addr.clone(),
                    reason: format!("restoring epoch {epoch}: {}", status.message()),
                });
            }
            tokio::time::sleep(backoff.delay(attempt)).await;
            attempt += 1;
        }
    }
    Ok(())
}

//! The shard's job identity, epoch snapshots and worker-id leases (see the [server
//! docs](super)): which job's tables it holds, `SnapshotEpoch` / `RestoreEpoch`, and the
//! worker ids shard 0 leases out.

use std::sync::atomic::Ordering;
use std::sync::{MutexGuard, PoisonError};

use super::super::files;
use super::super::job_hash;
use super::super::proto::JobPolicy;
use super::Shared;
use crate::error::{Error, Result};
use crate::local::{LocalPs, LocalPsConfig};

/// The job whose tables a shard holds (empty: none) and the newest checkpoint epoch it
/// snapshotted for it (0: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Label {
    pub(super) job: String,
    pub(super) epoch: u64,
}

impl Shared {
    /// The job label, locked.
    pub(super) fn label(&self) -> MutexGuard<'_, Label> {
        self.label.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Relabels the shard (and the tag pushes are checked against).
    pub(super) fn set_label(&self, label: Label) {
        let mut held = self.label();
        self.job_hash.store(job_hash(&label.job), Ordering::SeqCst);
        *held = label;
    }

    /// Reserves `n` worker ids (shard 0): returns the first. The new next id is written to
    /// the data directory before the answer, so a restarted shard never leases them again.
    pub(super) fn lease_workers(&self, n: u32) -> Result<u32> {
        if self.cfg.shard != 0 {
            return Err(Error::config(
                "",
                "shard",
                format!("worker ids are leased by shard 0, not {}", self.cfg.shard),
            ));
        }
        let base = self.next_worker.fetch_add(u64::from(n), Ordering::SeqCst);
        let base = u32::try_from(base)
            .ok()
            .filter(|b| b.checked_add(n).is_some())
            .ok_or_else(|| Error::config("", "lease-workers", "worker ids are exhausted"))?;
        self.snapshotted.store(u64::MAX, Ordering::SeqCst);
        self.snapshot_to_disk()?;
        Ok(base)
    }

    /// Snapshots the store as job `job`'s checkpoint epoch `epoch`: to a file (synced) in
    /// the data directory, or in memory without one.
    pub(super) fn snapshot_epoch(&self, job: &str, epoch: u64) -> Result<()> {
        let store = self.store.get().ok_or(Error::Unconfigured {
            shard: self.cfg.shard as usize,
        })?;
        self.check_job(job)?;
        let label = Label {
            job: job.to_owned(),
            epoch,
        };
        let snap = self.shard_snapshot(store, label.clone())?;
        match &self.cfg.data_dir {
            Some(dir) => {
                files::write(dir, &snap, self.cfg.keep, true)?;
            }
            None => {
                let mut kept = self
                    .in_memory
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                kept.push_back((label.job.clone(), epoch, snap.store));
                while kept.len() > self.cfg.keep.max(1) {
                    kept.pop_front();
                }
            }
        }
        self.set_label(label);
        Ok(())
    }

    /// Rolls the store back to job `job`'s snapshot of checkpoint epoch `epoch`; epoch 0 is
    /// the job's start: every row cleared.
    pub(super) fn restore_epoch(&self, job: &str, epoch: u64) -> Result<()> {
        if epoch == 0 {
            // a shard that never held a job is the job's start already
            let free =
                *self.label() == Label::default() && self.applied.load(Ordering::SeqCst) == 0;
            if !free {
                self.check_job(job)?;
            }
            if let Some(store) = self.store.get() {
                store.restore_now(&empty_snapshot(store)?)?;
            }
            self.set_label(Label {
                job: job.to_owned(),
                epoch,
            });
            self.snapshotted.store(u64::MAX, Ordering::SeqCst);
            return Ok(());
        }
        let shard = self.cfg.shard as usize;
        let missing = || Error::NoEpoch {
            shard,
            job: job.to_owned(),
            epoch,
        };
        let bytes = match &self.cfg.data_dir {
            Some(dir) => files::at_epoch(dir, self.cfg.shard, self.cfg.shards, job, epoch)?
                .map(|snap| (snap.tables, snap.store)),
            None => {
                let kept = self
                    .in_memory
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let found = kept.iter().rev().find(|(j, e, _)| j == job && *e == epoch);
                match (found, self.store.get()) {
                    (Some((_, _, bytes)), Some(store)) => Some((
                        store.tables().map(|t| t.config().clone()).collect(),
                        bytes.clone(),
                    )),
                    _ => None,
                }
            }
        };
        let (tables, bytes) = bytes.ok_or_else(missing)?;
        let store = match self.store.get() {
            Some(store) => store,
            None => self.build(&tables)?,
        };
        store.restore_now(&bytes)?;
        self.set_label(Label {
            job: job.to_owned(),
            epoch,
        });
        // The rows changed without pushes: make the next tick write them.
        self.snapshotted.store(u64::MAX, Ordering::SeqCst);
        Ok(())
    }

    /// Refuses a job other than the one whose tables the shard holds.
    pub(super) fn check_job(&self, job: &str) -> Result<()> {
        let label = self.label();
        if job.is_empty() || label.job == job {
            return Ok(());
        }
        Err(Error::JobMismatch {
            shard: self.cfg.shard as usize,
            held: label.job.clone(),
            epoch: label.epoch,
            job: job.to_owned(),
        })
    }

    /// Decides whether job `job` may train the tables the shard holds (see the module docs).
    pub(super) fn adopt(&self, store: &LocalPs, job: &str, policy: JobPolicy) -> Result<()> {
        if job.is_empty() {
            return Ok(());
        }
        let mut label = self.label();
        let never_updated = self.applied.load(Ordering::SeqCst) == 0;
        if label.job == job {
            return Ok(());
        }
        match policy {
            _ if never_updated && label.epoch == 0 => {}
            JobPolicy::Resume => {}
            JobPolicy::Fresh => {
                store.restore_now(&empty_snapshot(store)?)?;
                self.snapshotted.store(u64::MAX, Ordering::SeqCst);
            }
            JobPolicy::Refuse => {
                return Err(Error::JobMismatch {
                    shard: self.cfg.shard as usize,
                    held: label.job.clone(),
                    epoch: label.epoch,
                    job: job.to_owned(),
                })
            }
        }
        *label = Label {
            job: job.to_owned(),
            epoch: 0,
        };
        self.job_hash.store(job_hash(job), Ordering::SeqCst);
        Ok(())
    }
}

/// A snapshot of `store`'s tables without a row.
fn empty_snapshot(store: &LocalPs) -> Result<Vec<u8>> {
    let tables = store.tables().map(|t| t.config().clone()).collect();
    LocalPsConfig::new(tables).build()?.snapshot_now()
}

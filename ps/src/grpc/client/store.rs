//! [`ParamStore`] for [`PsClient`]: pull / push fan out to the shards in parallel; clocks go to
//! shard 0; snapshots frame every shard's part.

use std::sync::PoisonError;

use futures::future::try_join_all;

use super::super::proto::*;
use super::PsClient;
use crate::clock::WorkerId;
use crate::error::{Error, Result};
use crate::local::{Delta, DeltaCursor};
use crate::snapshot;
use crate::store::ParamStore;

impl ParamStore for PsClient {
    async fn pull(&self, table: &str, keys: &[u64], out: &mut Vec<f32>) -> Result<()> {
        let dim = self.dim(table)?;
        let (per_keys, per_pos) = self.route(keys);
        let calls = per_keys
            .into_iter()
            .enumerate()
            .filter(|(_, k)| !k.is_empty())
            .map(|(s, keys)| {
                let req = PullRequest {
                    table: table.to_owned(),
                    keys,
                };
                async move {
                    let reply = self
                        .call(s, "pull", |mut c| {
                            let req = req.clone();
                            async move { c.pull(req).await }
                        })
                        .await?;
                    Ok::<_, Error>((s, reply.values))
                }
            });
        let replies = try_join_all(calls).await?;
        out.clear();
        out.resize(keys.len() * dim, 0.0);
        for (s, values) in replies {
            let pos = &per_pos[s];
            if values.len() != pos.len() * dim {
                return Err(self.remote(
                    s,
                    "pull",
                    format!(
                        "{} values for {} keys of dim {dim}",
                        values.len(),
                        pos.len()
                    ),
                ));
            }
            if dim == 1 {
                for (&i, &v) in pos.iter().zip(&values) {
                    out[i as usize] = v;
                }
            } else {
                for (j, &i) in pos.iter().enumerate() {
                    let i = i as usize;
                    out[i * dim..(i + 1) * dim].copy_from_slice(&values[j * dim..(j + 1) * dim]);
                }
            }
        }
        Ok(())
    }

    async fn push(
        &self,
        table: &str,
        keys: &[u64],
        grads: &[f32],
        xs: Option<&[f32]>,
    ) -> Result<()> {
        self.push_parts(table, keys, grads, xs, 0).await
    }

    async fn register(&self, worker: WorkerId) -> Result<u64> {
        let clock = self.register_on_shard(worker).await?;
        self.registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(worker.0);
        Ok(clock)
    }

    async fn deregister(&self, worker: WorkerId) -> Result<()> {
        self.registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&worker.0);
        self.call(0, "deregister", |mut c| async move {
            c.deregister(WorkerRequest { worker: worker.0 }).await
        })
        .await?;
        Ok(())
    }

    async fn clock(&self, worker: WorkerId) -> Result<u64> {
        let r = self
            .clock_call(worker, "clock", |mut c| async move {
                c.clock(WorkerRequest { worker: worker.0 }).await
            })
            .await?;
        Ok(r.clock)
    }

    async fn wait_bounded(&self, worker: WorkerId, staleness: u64) -> Result<()> {
        // The shard waits at most half an attempt's timeout, then the client asks again.
        let max_wait_ms = (self.cfg.timeout.as_millis() / 2).clamp(1, u128::from(u32::MAX)) as u32;
        loop {
            let r = self
                .clock_call(worker, "wait-bounded", |mut c| async move {
                    c.wait_bounded(WaitRequest {
                        worker: worker.0,
                        staleness,
                        max_wait_ms,
                    })
                    .await
                })
                .await?;
            if r.ready {
                return Ok(());
            }
        }
    }

    /// Asks every shard for its delta. When any shard answers a resync, the shards that did
    /// not are asked again from scratch, so the merged delta is a resync of the whole table.
    async fn delta(&self, table: &str, cursor: &mut DeltaCursor, out: &mut Delta) -> Result<()> {
        let dim = self.dim(table)?;
        let n = self.conns.len();
        let ask = |s: usize, since: u64| {
            self.call(s, "delta", move |mut c| async move {
                c.delta(DeltaRequest {
                    table: table.to_owned(),
                    since,
                })
                .await
            })
        };
        let mut replies = try_join_all((0..n).map(|s| ask(s, cursor.seen(s, n)))).await?;
        if replies.iter().any(|r| r.resync) {
            let partial: Vec<usize> = (0..n).filter(|&s| !replies[s].resync).collect();
            let full = try_join_all(partial.iter().map(|&s| ask(s, 0))).await?;
            for (s, r) in partial.into_iter().zip(full) {
                replies[s] = r;
            }
            out.clear();
            out.resync = true;
        }
        for (s, r) in replies.iter().enumerate() {
            if r.values.len() != r.keys.len() * dim {
                return Err(self.remote(s, "delta", "values do not match the keys".into()));
            }
        }
        for (s, r) in replies.into_iter().enumerate() {
            out.keys.extend_from_slice(&r.keys);
            out.values.extend_from_slice(&r.values);
            out.removed.extend_from_slice(&r.removed);
            cursor.0[s] = r.version;
        }
        Ok(())
    }

    async fn snapshot(&self) -> Result<Vec<u8>> {
        let parts = try_join_all((0..self.conns.len()).map(|s| {
            self.call(s, "snapshot", |mut c| async move {
                c.snapshot(SnapshotRequest {}).await
            })
        }))
        .await?;
        let mut w = snapshot::Writer::new();
        w.u32(parts.len() as u32);
        for p in &parts {
            w.bytes(&p.data);
        }
        Ok(w.finish())
    }

    async fn restore(&self, bytes: &[u8]) -> Result<()> {
        let mut r = snapshot::open(bytes)?;
        let n = r.u32()? as usize;
        if n != self.conns.len() {
            return Err(Error::Snapshot(format!(
                "{n} shards in the snapshot, but the client has {}",
                self.conns.len()
            )));
        }
        let mut parts = Vec::with_capacity(n);
        for _ in 0..n {
            let part = r.bytes()?;
            snapshot::open(part)?; // each shard's part checks out before any shard changes
            parts.push(part.to_vec());
        }
        r.end()?;
        try_join_all(parts.into_iter().enumerate().map(|(s, data)| {
            self.call(s, "restore", move |mut c| {
                let data = data.clone();
                async move { c.restore(RestoreRequest { data }).await }
            })
        }))
        .await?;
        Ok(())
    }
}

//! [`LocalPs`]: the in-process [`ParamStore`], the default.
//!
//! Each table is split into lock-striped shards by key hash (xxh3), each a `Mutex` over a
//! `HashMap` of rows; a row holds `dim` weights, then `dim × state_len` floats of rule state,
//! its update count and when it was last pushed to. A request locks one shard at a time (the
//! keys of a request are grouped by shard, so each shard is locked once per request), and no
//! lock is held across an `.await`. The futures of the [`ParamStore`] methods do their work
//! when first polled and complete at once; the `*_now` methods are the same calls, sync.

mod persist;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eddy_algorithms::learner::UpdateRule;
use serde::{Deserialize, Serialize};

use crate::clock::{Clocks, WorkerId};
use crate::error::{Error, Result};
use crate::store::ParamStore;
use crate::table::{TableConfig, ValidTableConfig};

/// Configuration of a [`LocalPs`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LocalPsConfig {
    /// Lock stripes per table (1..=4096). Default 16.
    #[serde(default = "default_shards")]
    pub shards: usize,
    /// The tables, with unique names.
    pub tables: Vec<TableConfig>,
}

fn default_shards() -> usize {
    16
}

impl LocalPsConfig {
    /// `tables` with the default shard count.
    pub fn new(tables: Vec<TableConfig>) -> Self {
        LocalPsConfig {
            shards: default_shards(),
            tables,
        }
    }

    /// Checks every table and builds an empty store.
    pub fn build(&self) -> Result<LocalPs> {
        if !(1..=4096).contains(&self.shards) {
            return Err(Error::config(
                "",
                "shards",
                format!("{} is not in 1..=4096", self.shards),
            ));
        }
        let mut tables = BTreeMap::new();
        for c in &self.tables {
            let cfg = c.check()?;
            let state_len = cfg.rule().state_len();
            let shards = (0..self.shards).map(|_| Mutex::default()).collect();
            let table = Table {
                cfg,
                state_len,
                shards,
            };
            if tables.insert(c.name.clone(), table).is_some() {
                return Err(Error::config(&c.name, "name", "declared twice"));
            }
        }
        Ok(LocalPs {
            tables,
            clocks: Clocks::new(),
        })
    }
}

/// One row: `dim` weights then `dim × state_len` state.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    data: Box<[f32]>,
    updates: u64,
    touched_ms: u64,
}

/// Pushes counted toward admission for a key without a row.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pending {
    count: u32,
    touched_ms: u64,
}

#[derive(Debug, Default)]
struct Shard {
    rows: HashMap<u64, Row>,
    pending: HashMap<u64, Pending>,
}

#[derive(Debug)]
struct Table {
    cfg: ValidTableConfig,
    state_len: usize,
    shards: Box<[Mutex<Shard>]>,
}

impl Table {
    fn shard_of(&self, key: u64) -> usize {
        (xxhash_rust::xxh3::xxh3_64(&key.to_le_bytes()) % self.shards.len() as u64) as usize
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        // A panic cannot leave a row half-written (updates are plain float arithmetic), so a
        // poisoned lock is still consistent.
        self.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f(shard, key positions)` once per shard that `keys` touch, positions in order.
    fn by_shard(&self, keys: &[u64], mut f: impl FnMut(&mut Shard, &[usize])) {
        let mut order: Vec<(usize, usize)> = keys
            .iter()
            .enumerate()
            .map(|(i, &k)| (self.shard_of(k), i))
            .collect();
        order.sort_unstable();
        let mut positions = Vec::with_capacity(order.len());
        for group in order.chunk_by(|a, b| a.0 == b.0) {
            positions.clear();
            positions.extend(group.iter().map(|&(_, i)| i));
            f(&mut self.lock(group[0].0), &positions);
        }
    }

    fn fresh_row(&self, key: u64, now_ms: u64) -> Row {
        let dim = self.cfg.dim();
        let mut data = vec![0.0; dim * (1 + self.state_len)].into_boxed_slice();
        let (w, state) = data.split_at_mut(dim);
        self.cfg.config().init.fill(key, w);
        if self.state_len > 0 {
            for s in state.chunks_exact_mut(self.state_len) {
                self.cfg.rule().init_state(s);
            }
        }
        Row {
            data,
            updates: 0,
            touched_ms: now_ms,
        }
    }
}

/// Milliseconds since the Unix epoch (0 for a clock before it).
fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

/// The in-process parameter server; build it with [`LocalPsConfig::build`].
#[derive(Debug)]
pub struct LocalPs {
    tables: BTreeMap<String, Table>,
    clocks: Clocks,
}

impl LocalPs {
    fn table(&self, name: &str) -> Result<&Table> {
        self.tables
            .get(name)
            .ok_or_else(|| Error::UnknownTable(name.to_owned()))
    }

    /// The checked declarations of the tables, by name.
    pub fn tables(&self) -> impl Iterator<Item = &ValidTableConfig> {
        self.tables.values().map(|t| &t.cfg)
    }

    /// The consistency clocks.
    pub fn clocks(&self) -> &Clocks {
        &self.clocks
    }

    /// Rows in `table` (admitted keys).
    pub fn row_count(&self, table: &str) -> Result<usize> {
        let t = self.table(table)?;
        Ok((0..t.shards.len()).map(|s| t.lock(s).rows.len()).sum())
    }

    /// How many updates the row of `key` has had (`None`: no row).
    pub fn row_updates(&self, table: &str, key: u64) -> Result<Option<u64>> {
        let t = self.table(table)?;
        Ok(t.lock(t.shard_of(key)).rows.get(&key).map(|r| r.updates))
    }

    /// [`ParamStore::pull`], sync.
    pub fn pull_now(&self, table: &str, keys: &[u64], out: &mut Vec<f32>) -> Result<()> {
        let t = self.table(table)?;
        let (dim, admit_now) = (t.cfg.dim(), t.cfg.admission() <= 1);
        out.clear();
        out.resize(keys.len() * dim, 0.0);
        t.by_shard(keys, |shard, positions| {
            for &i in positions {
                let dst = &mut out[i * dim..(i + 1) * dim];
                match shard.rows.get(&keys[i]) {
                    Some(row) => dst.copy_from_slice(&row.data[..dim]),
                    None if admit_now => t.cfg.config().init.fill(keys[i], dst),
                    None => {} // not admitted: zeros
                }
            }
        });
        Ok(())
    }

    /// [`ParamStore::push`], sync; the rows are stamped as pushed at the current time.
    pub fn push_now(
        &self,
        table: &str,
        keys: &[u64],
        grads: &[f32],
        xs: Option<&[f32]>,
    ) -> Result<()> {
        self.push_at(table, keys, grads, xs, SystemTime::now())
    }

    /// [`push_now`](LocalPs::push_now) with the rows stamped as pushed at `now` (for expiry).
    pub fn push_at(
        &self,
        table: &str,
        keys: &[u64],
        grads: &[f32],
        xs: Option<&[f32]>,
        now: SystemTime,
    ) -> Result<()> {
        let t = self.table(table)?;
        let (dim, k, admission) = (t.cfg.dim(), t.state_len, t.cfg.admission());
        if grads.len() != keys.len() * dim {
            return Err(Error::shape(
                table,
                format!(
                    "{} gradients for {} keys of dim {dim}",
                    grads.len(),
                    keys.len()
                ),
            ));
        }
        if xs.is_some_and(|xs| xs.len() != grads.len()) {
            return Err(Error::shape(table, "xs must have one value per gradient"));
        }
        if let Some(i) = grads.iter().position(|g| !g.is_finite()) {
            return Err(Error::shape(
                table,
                format!(
                    "gradient {} of key {} is not finite",
                    i % dim,
                    keys[i / dim]
                ),
            ));
        }
        let now_ms = unix_ms(now);
        let rule = t.cfg.rule();
        t.by_shard(keys, |shard, positions| {
            for &i in positions {
                let key = keys[i];
                if !shard.rows.contains_key(&key) {
                    if admission > 1 {
                        let p = shard.pending.entry(key).or_insert(Pending {
                            count: 0,
                            touched_ms: now_ms,
                        });
                        p.count += 1;
                        p.touched_ms = now_ms;
                        if p.count < admission {
                            continue;
                        }
                        shard.pending.remove(&key);
                    }
                    shard.rows.insert(key, t.fresh_row(key, now_ms));
                }
                let Some(row) = shard.rows.get_mut(&key) else {
                    continue;
                };
                row.updates += 1;
                row.touched_ms = now_ms;
                let (w, state) = row.data.split_at_mut(dim);
                for j in 0..dim {
                    let x = xs.map_or(1.0, |xs| xs[i * dim + j]);
                    let s = &mut state[j * k..(j + 1) * k];
                    rule.update(&mut w[j], s, grads[i * dim + j], x, row.updates);
                }
            }
        });
        Ok(())
    }

    /// Drops, in every table with an expiry, the rows not pushed to for that long before `now`,
    /// and the pending admission counts not bumped for that long; returns the rows dropped.
    pub fn expire(&self, now: SystemTime) -> usize {
        let now_ms = unix_ms(now);
        let mut dropped = 0;
        for t in self.tables.values() {
            let Some(expiry) = t.cfg.config().expiry else {
                continue;
            };
            let cutoff = now_ms.saturating_sub(expiry.as_millis() as u64);
            for s in 0..t.shards.len() {
                let mut shard = t.lock(s);
                let before = shard.rows.len();
                shard.rows.retain(|_, r| r.touched_ms > cutoff);
                shard.pending.retain(|_, p| p.touched_ms > cutoff);
                dropped += before - shard.rows.len();
            }
        }
        dropped
    }
}

impl ParamStore for LocalPs {
    async fn pull(&self, table: &str, keys: &[u64], out: &mut Vec<f32>) -> Result<()> {
        self.pull_now(table, keys, out)
    }

    async fn push(
        &self,
        table: &str,
        keys: &[u64],
        grads: &[f32],
        xs: Option<&[f32]>,
    ) -> Result<()> {
        self.push_now(table, keys, grads, xs)
    }

    async fn register(&self, worker: WorkerId) -> Result<u64> {
        Ok(self.clocks.register(worker))
    }

    async fn clock(&self, worker: WorkerId) -> Result<u64> {
        self.clocks.clock(worker)
    }

    async fn wait_bounded(&self, worker: WorkerId, staleness: u64) -> Result<()> {
        self.clocks.wait_bounded(worker, staleness).await
    }

    async fn snapshot(&self) -> Result<Vec<u8>> {
        self.snapshot_now()
    }

    async fn restore(&self, bytes: &[u8]) -> Result<()> {
        self.restore_now(bytes)
    }
}

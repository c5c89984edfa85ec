//! [`LocalPs`]: the in-process [`ParamStore`], the default.
//!
//! Each table is split into lock-striped shards by key hash (xxh3), each a `Mutex` over a
//! `HashMap` of rows; a row holds `dim` weights, then `dim × state_len` floats of rule state,
//! its update count and when it was last pushed to. A request locks one shard at a time (the
//! keys of a request are grouped by shard, so each shard is locked once per request), and no
//! lock is held across an `.await`. The futures of the [`ParamStore`] methods do their work
//! when first polled and complete at once; the `*_now` methods are the same calls, sync.
//!
//! Hot path: keys are hashed with one folded multiply (no per-key allocation), bucketed by
//! stripe with a counting sort into per-request scratch, and each stripe is locked once.
//! Every row carries the store [`version`](LocalPs::version) of its last change, and every
//! stripe keeps the keys expiry removed (bounded), for the [delta feed](LocalPs::delta_since).
//! Stamped pushes ([`LocalPs::push_stamped`]) are applied once per stamp ([`dedup`]).

pub mod dedup;
pub mod delta;
mod persist;

pub use dedup::{DedupConfig, PushOutcome, PushStamp};
pub use delta::{Delta, DeltaCursor};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eddy_algorithms::learner::UpdateRule;
use eddy_algorithms::optim::Rule;
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
    /// Keys removed by expiry that each table remembers for the delta feed (split evenly over
    /// the stripes, each keeping its newest); a delta cursor older than a forgotten removal
    /// gets a full resync (0: none kept, so any cursor older than an expiry that removed rows
    /// resyncs). Default 65536 (16 bytes each).
    #[serde(default = "default_tombstones")]
    pub tombstones: usize,
    /// The push-dedup table's bounds (see [`dedup`]).
    #[serde(default)]
    pub dedup: DedupConfig,
}

fn default_shards() -> usize {
    16
}

/// The default of [`LocalPsConfig::tombstones`].
pub(crate) fn default_tombstones() -> usize {
    1 << 16
}

impl LocalPsConfig {
    /// `tables` with every other field at its default.
    pub fn new(tables: Vec<TableConfig>) -> Self {
        LocalPsConfig {
            shards: default_shards(),
            tables,
            tombstones: default_tombstones(),
            dedup: DedupConfig::default(),
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
        self.dedup.check()?;
        // Versions start at the build time in nanoseconds, so they keep increasing across a
        // process restart (while the wall clock does, and changes come slower than one per
        // nanosecond) and delta cursors stay valid. Removals before the build are unknown:
        // older cursors resync.
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut tables = BTreeMap::new();
        for c in &self.tables {
            let cfg = c.check()?;
            let state_len = cfg.rule().state_len();
            let shards = (0..self.shards)
                .map(|_| Mutex::new(Shard::empty(start)))
                .collect();
            let table = Table {
                cfg,
                state_len,
                shards,
                tombstone_cap: self.tombstones.div_ceil(self.shards),
            };
            if tables.insert(c.name.clone(), table).is_some() {
                return Err(Error::config(&c.name, "name", "declared twice"));
            }
        }
        Ok(LocalPs {
            tables,
            clocks: Clocks::new(),
            version: AtomicU64::new(start),
            dedup: dedup::Dedup::new(self.dedup.clone()),
        })
    }
}

/// One row: `dim` weights then `dim × state_len` state.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    data: RowData,
    updates: u64,
    touched_ms: u64,
    /// The store version of the row's last change.
    version: u64,
}

/// Floats kept in the row itself (no allocation, no pointer to chase): enough for a
/// dimension-1 row under any rule (weight plus at most 2 state floats).
const INLINE: usize = 4;

/// A row's floats: inline up to [`INLINE`], else on the heap.
#[derive(Debug, Clone, PartialEq)]
enum RowData {
    Inline(u8, [f32; INLINE]),
    Heap(Box<[f32]>),
}

impl RowData {
    fn zeros(n: usize) -> Self {
        if n <= INLINE {
            RowData::Inline(n as u8, [0.0; INLINE])
        } else {
            RowData::Heap(vec![0.0; n].into_boxed_slice())
        }
    }
}

impl std::ops::Deref for RowData {
    type Target = [f32];
    #[inline(always)]
    fn deref(&self) -> &[f32] {
        match self {
            RowData::Inline(n, a) => &a[..usize::from(*n)],
            RowData::Heap(b) => b,
        }
    }
}

impl std::ops::DerefMut for RowData {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [f32] {
        match self {
            RowData::Inline(n, a) => &mut a[..usize::from(*n)],
            RowData::Heap(b) => b,
        }
    }
}

/// Pushes counted toward admission for a key without a row.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pending {
    count: u32,
    touched_ms: u64,
}

/// Hashes a `u64` key with one folded 128-bit multiply: fast, and every key bit reaches the
/// low bits hashbrown indexes with.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = fold_mul(self.0 ^ u64::from(b), 0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, k: u64) {
        self.0 = fold_mul(k, 0x9E37_79B9_7F4A_7C15);
    }
}

/// The [`BuildHasher`] of [`KeyHasher`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KeyHash;

impl BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

/// `a × b` as 128 bits, high half xor low half.
#[inline(always)]
pub(crate) fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// `hash` reduced to `0..n` by a multiply-shift (no division).
#[inline(always)]
pub(crate) fn reduce(hash: u64, n: usize) -> usize {
    ((u128::from(hash) * n as u128) >> 64) as usize
}

#[derive(Debug)]
struct Shard {
    rows: HashMap<u64, Row, KeyHash>,
    pending: HashMap<u64, Pending, KeyHash>,
    /// `(version, key)` of the rows expiry removed, oldest first (a key removed twice can be
    /// here twice; one re-admitted since is skipped by the delta feed).
    tombstones: VecDeque<(u64, u64)>,
    /// Removals at or below this version may be forgotten (the newest tombstone dropped to
    /// keep the bound, or the build or restore of the stripe): older cursors resync.
    horizon: u64,
}

impl Shard {
    fn empty(horizon: u64) -> Self {
        Shard {
            rows: HashMap::default(),
            pending: HashMap::default(),
            tombstones: VecDeque::new(),
            horizon,
        }
    }
}

#[derive(Debug)]
struct Table {
    cfg: ValidTableConfig,
    state_len: usize,
    shards: Box<[Mutex<Shard>]>,
    /// Tombstones kept per stripe.
    tombstone_cap: usize,
}

impl Table {
    #[inline(always)]
    fn shard_of(&self, key: u64) -> usize {
        reduce(fold_mul(key, 0xD6E8_FEB8_6659_FD93), self.shards.len())
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        // A panic cannot leave a row half-written (updates are plain float arithmetic), so a
        // poisoned lock is still consistent.
        self.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f(shard, key positions)` once per shard that `keys` touch, positions in order
    /// (a counting sort by shard: two passes over the keys, two scratch vectors per request).
    fn by_shard(&self, keys: &[u64], mut f: impl FnMut(&mut Shard, &[u32])) {
        let n = self.shards.len();
        if n == 1 || keys.len() <= 1 {
            if let Some(&k) = keys.first() {
                let positions: Vec<u32> = (0..keys.len() as u32).collect();
                f(&mut self.lock(self.shard_of(k)), &positions);
            }
            return;
        }
        let mut starts = vec![0u32; n + 1];
        let mut of: Vec<u16> = Vec::with_capacity(keys.len());
        for &k in keys {
            let s = self.shard_of(k);
            of.push(s as u16);
            starts[s + 1] += 1;
        }
        for s in 0..n {
            starts[s + 1] += starts[s];
        }
        let mut positions = vec![0u32; keys.len()];
        let mut next = starts.clone();
        for (i, &s) in of.iter().enumerate() {
            positions[next[s as usize] as usize] = i as u32;
            next[s as usize] += 1;
        }
        for s in 0..n {
            let (a, b) = (starts[s] as usize, starts[s + 1] as usize);
            if a < b {
                f(&mut self.lock(s), &positions[a..b]);
            }
        }
    }

    fn fresh_row(&self, key: u64, now_ms: u64) -> Row {
        let dim = self.cfg.dim();
        let mut data = RowData::zeros(dim * (1 + self.state_len));
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
            version: 0,
        }
    }
}

/// A push checked against its table, ready to apply.
struct PushBatch<'a> {
    keys: &'a [u64],
    grads: &'a [f32],
    xs: Option<&'a [f32]>,
    now_ms: u64,
    dim: usize,
    state_len: usize,
    admission: u32,
}

/// Milliseconds since the Unix epoch (0 for a clock before it).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

/// Checks a push's shapes and values before any row changes: `dim` gradients per key, one
/// feature value per gradient, every gradient finite.
pub(crate) fn check_push(
    table: &str,
    dim: usize,
    keys: &[u64],
    grads: &[f32],
    xs: Option<&[f32]>,
) -> Result<()> {
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
    Ok(())
}

/// The in-process parameter server; build it with [`LocalPsConfig::build`].
#[derive(Debug)]
pub struct LocalPs {
    tables: BTreeMap<String, Table>,
    clocks: Clocks,
    /// The latest version handed out (see the delta feed).
    version: AtomicU64,
    dedup: dedup::Dedup,
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
                let i = i as usize;
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
        check_push(table, t.cfg.dim(), keys, grads, xs)?;
        self.push_checked(t, keys, grads, xs, unix_ms(now));
        Ok(())
    }

    /// Applies a push already checked against `t`.
    #[inline]
    fn push_checked(
        &self,
        t: &Table,
        keys: &[u64],
        grads: &[f32],
        xs: Option<&[f32]>,
        now_ms: u64,
    ) {
        let batch = PushBatch {
            keys,
            grads,
            xs,
            now_ms,
            dim: t.cfg.dim(),
            state_len: t.state_len,
            admission: t.cfg.admission(),
        };
        // Dispatch on the rule once per request, so the per-key loop calls it directly.
        match t.cfg.rule() {
            Rule::Sgd(r) => self.apply(t, r, &batch),
            Rule::AdaGrad(r) => self.apply(t, r, &batch),
            Rule::NormalizedAdaptive(r) => self.apply(t, r, &batch),
            Rule::Adam(r) => self.apply(t, r, &batch),
            Rule::Ftrl(r) => self.apply(t, r, &batch),
        }
    }

    /// Applies a checked push to `t`'s rows with the concrete rule `rule`.
    fn apply<R: UpdateRule>(&self, t: &Table, rule: &R, b: &PushBatch<'_>) {
        let (dim, k) = (b.dim, b.state_len);
        t.by_shard(b.keys, |shard, positions| {
            // Taken under the stripe's lock, so a delta read that sees this version also sees
            // the rows (see `delta_since`).
            let version = self.next_version();
            for &i in positions {
                let i = i as usize;
                let key = b.keys[i];
                let row = match shard.rows.get_mut(&key) {
                    Some(row) => row,
                    None => {
                        if b.admission > 1 {
                            let p = shard.pending.entry(key).or_insert(Pending {
                                count: 0,
                                touched_ms: b.now_ms,
                            });
                            p.count += 1;
                            p.touched_ms = b.now_ms;
                            if p.count < b.admission {
                                continue;
                            }
                            shard.pending.remove(&key);
                        }
                        shard
                            .rows
                            .entry(key)
                            .or_insert_with(|| t.fresh_row(key, b.now_ms))
                    }
                };
                row.updates += 1;
                row.touched_ms = b.now_ms;
                row.version = version;
                let (w, state) = row.data.split_at_mut(dim);
                let g = &b.grads[i * dim..(i + 1) * dim];
                match b.xs {
                    None if dim == 1 => rule.update(&mut w[0], state, g[0], 1.0, row.updates),
                    _ => {
                        for j in 0..dim {
                            let x = b.xs.map_or(1.0, |xs| xs[i * dim + j]);
                            let s = &mut state[j * k..(j + 1) * k];
                            rule.update(&mut w[j], s, g[j], x, row.updates);
                        }
                    }
                }
            }
        });
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

    async fn deregister(&self, worker: WorkerId) -> Result<()> {
        self.clocks.deregister(worker)
    }

    async fn delta(&self, table: &str, cursor: &mut DeltaCursor, out: &mut Delta) -> Result<()> {
        let since = cursor.seen(0, 1);
        cursor.0[0] = self.delta_since(table, since, out)?;
        Ok(())
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

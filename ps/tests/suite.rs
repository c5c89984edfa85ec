//! One conformance suite, run against every [`ParamStore`]: the in-process `LocalPs` and the
//! gRPC `PsClient` over one and over two shard servers (in-process, 127.0.0.1 port 0). Pull and
//! push semantics, server-side rules equal to the local learner's, admission and expiry,
//! snapshot / restore, the delta feed (changes, removals by expiry, resyncs) and the clocks.

mod common;
use common::{sgd, table, NORMAL};

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use eddy_algorithms::learner::{GradientModel, OnlineLearner, UpdateRule};
use eddy_algorithms::online::linear::{FtrlLogisticParams, BIAS_KEY};
use eddy_algorithms::optim::{AdamParams, FtrlProximalParams, RuleParams};
use eddy_algorithms::transform::Params;
use eddy_ps::{
    Delta, DeltaCursor, Error, Initializer, LocalPs, LocalPsConfig, ParamStore, PsClient,
    PsClientConfig, PsServerConfig, TableConfig, WorkerId,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What the suite needs beyond [`ParamStore`]: a way to build a store (with a bound on the
/// removals the delta feed remembers), stamped pushes, expiry and row counts.
trait Harness: ParamStore + Sized {
    async fn make(tables: Vec<TableConfig>) -> Self;
    async fn make_bounded(tables: Vec<TableConfig>, tombstones: usize) -> Self;
    async fn push_at_time(&self, table: &str, keys: &[u64], g: &[f32], at: SystemTime);
    async fn expire_at(&self, now: SystemTime) -> usize;
    async fn rows(&self, table: &str) -> usize;
}

impl Harness for LocalPs {
    async fn make(tables: Vec<TableConfig>) -> Self {
        Self::make_bounded(tables, LocalPsConfig::new(Vec::new()).tombstones).await
    }
    async fn make_bounded(tables: Vec<TableConfig>, tombstones: usize) -> Self {
        LocalPsConfig {
            shards: 5,
            tombstones,
            ..LocalPsConfig::new(tables)
        }
        .build()
        .unwrap()
    }
    async fn push_at_time(&self, table: &str, keys: &[u64], g: &[f32], at: SystemTime) {
        self.push_at(table, keys, g, None, at).unwrap();
    }
    async fn expire_at(&self, now: SystemTime) -> usize {
        self.expire(now)
    }
    async fn rows(&self, table: &str) -> usize {
        self.row_count(table).unwrap()
    }
}

/// `PsClient` over `N` in-process shards.
struct Grpc<const N: u32>(PsClient);

impl<const N: u32> ParamStore for Grpc<N> {
    async fn pull(&self, table: &str, keys: &[u64], out: &mut Vec<f32>) -> eddy_ps::Result<()> {
        self.0.pull(table, keys, out).await
    }
    async fn push(
        &self,
        table: &str,
        keys: &[u64],
        grads: &[f32],
        xs: Option<&[f32]>,
    ) -> eddy_ps::Result<()> {
        self.0.push(table, keys, grads, xs).await
    }
    async fn register(&self, worker: WorkerId) -> eddy_ps::Result<u64> {
        self.0.register(worker).await
    }
    async fn deregister(&self, worker: WorkerId) -> eddy_ps::Result<()> {
        self.0.deregister(worker).await
    }
    async fn clock(&self, worker: WorkerId) -> eddy_ps::Result<u64> {
        self.0.clock(worker).await
    }
    async fn wait_bounded(&self, worker: WorkerId, staleness: u64) -> eddy_ps::Result<()> {
        self.0.wait_bounded(worker, staleness).await
    }
    async fn delta(
        &self,
        table: &str,
        cursor: &mut DeltaCursor,
        out: &mut Delta,
    ) -> eddy_ps::Result<()> {
        self.0.delta(table, cursor, out).await
    }
    async fn snapshot(&self) -> eddy_ps::Result<Vec<u8>> {
        self.0.snapshot().await
    }
    async fn restore(&self, bytes: &[u8]) -> eddy_ps::Result<()> {
        self.0.restore(bytes).await
    }
}

impl<const N: u32> Harness for Grpc<N> {
    async fn make(tables: Vec<TableConfig>) -> Self {
        Grpc(common::grpc_store(N, tables).await)
    }
    async fn make_bounded(tables: Vec<TableConfig>, tombstones: usize) -> Self {
        let addrs = common::spawn_shards_with(N, |i| PsServerConfig {
            tombstones,
            ..PsServerConfig::new(i, N)
        })
        .await;
        Grpc(PsClientConfig::new(addrs, tables).connect().await.unwrap())
    }
    async fn push_at_time(&self, table: &str, keys: &[u64], g: &[f32], at: SystemTime) {
        self.0.push_at(table, keys, g, None, at).await.unwrap();
    }
    async fn expire_at(&self, now: SystemTime) -> usize {
        self.0.expire(now).await.unwrap()
    }
    async fn rows(&self, table: &str) -> usize {
        self.0.row_count(table).await.unwrap()
    }
}

async fn pull_and_push_semantics<S: Harness>() {
    let ps = S::make(vec![
        table("e", 3, sgd(0.5), NORMAL),
        TableConfig::new("z", 2),
    ])
    .await;
    let keys = [5, 6, 5, u64::MAX, 1 << 40];
    let (mut got, mut want) = (Vec::new(), vec![0.0; 15]);
    ps.pull("e", &keys, &mut got).await.unwrap();
    for (i, &k) in keys.iter().enumerate() {
        NORMAL.fill(k, &mut want[i * 3..(i + 1) * 3]);
    }
    assert_eq!(
        got, want,
        "unseen keys answer the initializer, in key order"
    );
    ps.pull("z", &[1, 2], &mut got).await.unwrap();
    assert_eq!(got, vec![0.0; 4]);
    assert_eq!(ps.rows("e").await, 0, "a pull creates no row");
    ps.pull("e", &[], &mut got).await.unwrap();
    assert!(got.is_empty());
    assert!(matches!(
        ps.pull("nope", &[1], &mut got).await,
        Err(Error::UnknownTable(_))
    ));
    // malformed pushes are refused whole, before any shard changes
    type Push<'a> = (&'a [u64], &'a [f32], Option<&'a [f32]>);
    let bad: [Push<'_>; 3] = [
        (&[1, 2], &[0.1; 5], None),
        (&[1], &[0.1; 3], Some(&[1.0])),
        (
            &[1, 2, 3, 4],
            &[
                0.1,
                0.1,
                0.1,
                0.1,
                0.1,
                0.1,
                f32::NAN,
                0.1,
                0.1,
                0.1,
                0.1,
                0.1,
            ],
            None,
        ),
    ];
    for (keys, grads, xs) in bad {
        let e = ps.push("e", keys, grads, xs).await.unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
    }
    assert_eq!(ps.rows("e").await, 0);
    // a key repeated in one push is stepped once per occurrence (plain SGD: w -= 0.5 g)
    let keys: Vec<u64> = (0..50).chain([7, 7]).collect();
    let grads = vec![1.0; keys.len() * 3];
    ps.push("e", &keys, &grads, None).await.unwrap();
    assert_eq!(ps.rows("e").await, 50);
    ps.pull("e", &[7, 8], &mut got).await.unwrap();
    let (mut w7, mut w8) = ([0.0; 3], [0.0; 3]);
    NORMAL.fill(7, &mut w7);
    NORMAL.fill(8, &mut w8);
    let want: Vec<f32> = w7
        .iter()
        .map(|w| w - 0.5 - 0.5 - 0.5)
        .chain(w8.iter().map(|w| w - 0.5))
        .collect();
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() < 1e-6, "{got:?} vs {want:?}");
    }
}

async fn rules_match_the_local_learner<S: Harness>() {
    // every rule applied on the server equals `UpdateRule::update` by hand
    for params in [
        RuleParams::Adam(AdamParams::default()),
        RuleParams::Ftrl(FtrlProximalParams::default()),
    ] {
        let ps = S::make(vec![table("e", 2, params, NORMAL)]).await;
        let rule = params.check().unwrap();
        let k = rule.state_len();
        let mut w = [0.0f32; 2];
        NORMAL.fill(9, &mut w);
        let mut state = vec![0.0f32; 2 * k];
        for s in state.chunks_exact_mut(k) {
            rule.init_state(s);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for t in 1..=20 {
            let g: Vec<f32> = (0..4).map(|_| rng.random_range(-1.0..1.0)).collect();
            ps.push("e", &[9, 4], &g, None).await.unwrap();
            for j in 0..2 {
                rule.update(&mut w[j], &mut state[j * k..(j + 1) * k], g[j], 1.0, t);
            }
        }
        let mut got = Vec::new();
        ps.pull("e", &[9], &mut got).await.unwrap();
        assert_eq!(got, w.to_vec(), "{params:?}");
    }
    // FTRL through the store, one row at a time, predicts and learns like the local learner
    let data = common::sparse_data(5, 300, 64, 8);
    let ftrl = FtrlProximalParams {
        alpha: 0.3,
        beta: 1.0,
        l1: 2.0,
        l2: 0.1,
    };
    let mut local = FtrlLogisticParams {
        ftrl,
        bits: 6,
        ..Default::default()
    }
    .build()
    .unwrap();
    let model = local.gradient_model();
    let ps = S::make(eddy_ps::train::ftrl_tables(ftrl)).await;
    let (mut keys, mut rows, mut grads) = (vec![Vec::new()], vec![Vec::new()], vec![Vec::new()]);
    let (mut remote, mut one) = (Vec::new(), Vec::new());
    for r in 0..data.len() {
        let ex = data.slice(r, r + 1);
        model.keys(&ex.features, &mut keys);
        ps.pull("w", &keys[0], &mut rows[0]).await.unwrap();
        model
            .predict_with(&ex.features, &keys, &rows, &mut remote)
            .unwrap();
        model.gradients(&ex, &keys, &rows, &mut grads).unwrap();
        ps.push("w", &keys[0], &grads[0], None).await.unwrap();
        local.predict_learn(&ex, &mut one).unwrap();
        assert!(
            (remote[0] - one[0]).abs() <= 1e-6,
            "row {r}: {} vs {}",
            remote[0],
            one[0]
        );
    }
    let all: Vec<u64> = (0..64).chain([BIAS_KEY]).collect();
    let mut weights = Vec::new();
    ps.pull("w", &all, &mut weights).await.unwrap();
    for (i, w) in local.weights().chain([local.intercept()]).enumerate() {
        assert!(
            (weights[i] - w).abs() <= 1e-6,
            "weight {i}: {} vs {w}",
            weights[i]
        );
    }
    assert!(weights.contains(&0.0) && weights.iter().any(|&w| w != 0.0));
}

async fn admission_and_expiry<S: Harness>() {
    let admitted = TableConfig {
        admission_min_count: 3,
        ..table("a", 2, sgd(0.5), NORMAL)
    };
    let expiring = TableConfig {
        expiry: Some(Duration::from_secs(60)),
        ..table("e", 1, sgd(1.0), Initializer::Zeros)
    };
    let ps = S::make(vec![admitted, expiring]).await;
    let mut got = Vec::new();
    for _ in 0..2 {
        ps.push("a", &[42], &[1.0, -1.0], None).await.unwrap();
        ps.pull("a", &[42], &mut got).await.unwrap();
        assert_eq!(got, vec![0.0; 2], "not admitted: zeros");
        assert_eq!(ps.rows("a").await, 0);
    }
    ps.push("a", &[42], &[1.0, -1.0], None).await.unwrap();
    let mut w = [0.0; 2];
    NORMAL.fill(42, &mut w);
    ps.pull("a", &[42], &mut got).await.unwrap();
    assert_eq!(
        got,
        vec![w[0] - 0.5, w[1] + 0.5],
        "admitted on the third push"
    );
    let t0 = SystemTime::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    ps.push_at_time("e", &[1, 2, 3], &[1.0; 3], at(0)).await;
    ps.push_at_time("e", &[2], &[1.0], at(30)).await;
    assert_eq!(ps.expire_at(at(59)).await, 0);
    assert_eq!(ps.expire_at(at(61)).await, 2, "keys 1 and 3");
    assert_eq!(ps.rows("e").await, 1);
    ps.pull("e", &[1, 2], &mut got).await.unwrap();
    assert_eq!(got, vec![0.0, -2.0], "an expired key starts over");
    assert_eq!(ps.rows("a").await, 1, "no expiry declared");
}

async fn snapshot_and_restore<S: Harness>() {
    let cfg = || {
        vec![
            table("e", 4, RuleParams::Adam(AdamParams::default()), NORMAL),
            TableConfig {
                admission_min_count: 2,
                ..eddy_ps::train::ftrl_tables(FtrlProximalParams::default()).remove(0)
            },
        ]
    };
    let a = S::make(cfg()).await;
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let keys: Vec<u64> = (0..40).collect();
    let mut push = async |ps: &S| {
        let k: Vec<u64> = (0..6).map(|_| rng.random_range(0..40)).collect();
        let g: Vec<f32> = (0..24).map(|_| rng.random_range(-1.0..1.0)).collect();
        ps.push("e", &k, &g, None).await.unwrap();
        ps.push("w", &k, &g[..6], None).await.unwrap();
    };
    for _ in 0..30 {
        push(&a).await;
    }
    let bytes = a.snapshot().await.unwrap();
    let (mut before, mut after) = (BTreeMap::new(), BTreeMap::new());
    for name in ["e", "w"] {
        let mut v = Vec::new();
        a.pull(name, &keys, &mut v).await.unwrap();
        before.insert(name, v);
    }
    for _ in 0..10 {
        push(&a).await;
    }
    a.restore(&bytes).await.unwrap();
    for name in ["e", "w"] {
        let mut v = Vec::new();
        a.pull(name, &keys, &mut v).await.unwrap();
        after.insert(name, v);
    }
    assert_eq!(before, after, "restored to the snapshot");
    assert_eq!(a.snapshot().await.unwrap(), bytes, "same rows, same bytes");
    for i in (0..bytes.len()).step_by(11) {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        assert!(
            matches!(a.restore(&bad).await, Err(Error::Snapshot(_))),
            "byte {i}"
        );
    }
    assert_eq!(
        a.snapshot().await.unwrap(),
        bytes,
        "a refused restore changes nothing"
    );
    let other = S::make(vec![TableConfig::new("e", 4)]).await;
    assert!(other.restore(&bytes).await.is_err(), "other tables");
}

async fn delta_feed<S: Harness>() {
    let ps = S::make(vec![table("e", 2, sgd(1.0), Initializer::Zeros)]).await;
    let (mut cursor, mut d) = (DeltaCursor::default(), Delta::default());
    ps.delta("e", &mut cursor, &mut d).await.unwrap();
    assert!(d.resync, "a fresh cursor reads everything");
    assert!(d.keys.is_empty() && d.removed.is_empty(), "nothing yet");
    d.clear();
    ps.delta("e", &mut cursor, &mut d).await.unwrap();
    assert!(d.is_empty(), "nothing since");
    let keys: Vec<u64> = (0..30).collect();
    ps.push("e", &keys, &vec![1.0; 60], None).await.unwrap();
    ps.delta("e", &mut cursor, &mut d).await.unwrap();
    let mut got: Vec<u64> = d.keys.clone();
    got.sort_unstable();
    assert_eq!(got, keys, "every row is new");
    assert_eq!(d.values, vec![-1.0; 60]);
    d.clear();
    ps.delta("e", &mut cursor, &mut d).await.unwrap();
    assert!(d.is_empty(), "nothing changed since");
    ps.push("e", &[3, 17], &[1.0, 2.0, 0.5, 0.5], None)
        .await
        .unwrap();
    ps.delta("e", &mut cursor, &mut d).await.unwrap();
    let rows: BTreeMap<u64, Vec<f32>> = d
        .keys
        .iter()
        .enumerate()
        .map(|(i, &k)| (k, d.values[i * 2..i * 2 + 2].to_vec()))
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[&3], vec![-2.0, -3.0]);
    assert_eq!(rows[&17], vec![-1.5, -1.5]);
    d.clear();
    let bytes = ps.snapshot().await.unwrap();
    ps.restore(&bytes).await.unwrap();
    ps.delta("e", &mut cursor, &mut d).await.unwrap();
    assert_eq!(d.len(), 30, "a restore re-sends every row");
    assert!(
        d.resync,
        "rows may have vanished in a restore: the reader resyncs"
    );
    assert!(matches!(
        ps.delta("nope", &mut cursor, &mut d).await,
        Err(Error::UnknownTable(_))
    ));
}

/// Sorted.
fn sorted(keys: &[u64]) -> Vec<u64> {
    let mut k = keys.to_vec();
    k.sort_unstable();
    k
}

async fn delta_reports_removals<S: Harness>() {
    let expiring = || {
        vec![TableConfig {
            expiry: Some(Duration::from_secs(60)),
            ..table("e", 1, sgd(1.0), Initializer::Zeros)
        }]
    };
    let ps = S::make(expiring()).await;
    let t0 = SystemTime::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let (mut cursor, mut d) = (DeltaCursor::default(), Delta::default());
    ps.push_at_time("e", &[1, 2, 3, 4, 5, 6], &[1.0; 6], at(0))
        .await;
    ps.push_at_time("e", &[2, 4], &[1.0; 2], at(30)).await;
    ps.delta("e", &mut cursor, &mut d).await.unwrap();
    assert!(d.resync && d.removed.is_empty());
    assert_eq!(sorted(&d.keys), vec![1, 2, 3, 4, 5, 6]);
    let early = cursor.clone();
    d.clear();
    assert_eq!(ps.expire_at(at(61)).await, 4);
    ps.delta("e", &mut cursor, &mut d).await.unwrap();
    assert_eq!(sorted(&d.removed), vec![1, 3, 5, 6], "the expired keys");
    assert!(d.keys.is_empty() && !d.resync);
    d.clear();
    ps.delta("e", &mut cursor, &mut d).await.unwrap();
    assert!(d.is_empty(), "a removal is reported once");
    // a removed key pushed again is a changed row, not a removal
    ps.push_at_time("e", &[3], &[1.0], at(62)).await;
    ps.delta("e", &mut cursor, &mut d).await.unwrap();
    assert_eq!((d.keys.clone(), d.values.clone()), (vec![3], vec![-1.0]));
    assert!(d.removed.is_empty() && !d.resync);
    d.clear();
    // a cursor from before the removal and the re-admission sees both as their outcome
    let mut old = early.clone();
    ps.delta("e", &mut old, &mut d).await.unwrap();
    assert_eq!(sorted(&d.removed), vec![1, 5, 6]);
    assert_eq!(d.keys, vec![3]);
    d.clear();
    // removed again (3 twice since `early`): reported once
    assert_eq!(ps.expire_at(at(200)).await, 3);
    let mut old = early.clone();
    ps.delta("e", &mut old, &mut d).await.unwrap();
    assert_eq!(sorted(&d.removed), vec![1, 2, 3, 4, 5, 6]);
    assert!(d.keys.is_empty() && !d.resync);
    d.clear();
    ps.delta("e", &mut cursor, &mut d).await.unwrap();
    assert_eq!(sorted(&d.removed), vec![2, 3, 4]);
    d.clear();

    // A store that remembers no removal: a cursor older than one gets a full resync. The keys
    // that expire live on shard 0 of 2, the ones that stay on shard 1, so over two shards one
    // answers a resync and the client asks the other again from scratch.
    let on = |shard: usize| (1u64..).filter(move |&k| eddy_ps::grpc::shard_of(k, 2) == shard);
    let gone: Vec<u64> = on(0).take(3).collect();
    let kept: Vec<u64> = on(1).take(3).collect();
    let ps = S::make_bounded(expiring(), 0).await;
    let (mut cursor, mut d) = (DeltaCursor::default(), Delta::default());
    ps.push_at_time("e", &gone, &[1.0; 3], at(0)).await;
    ps.push_at_time("e", &kept, &[1.0; 3], at(30)).await;
    ps.delta("e", &mut cursor, &mut d).await.unwrap();
    d.clear();
    assert_eq!(ps.expire_at(at(61)).await, 3);
    ps.push_at_time("e", &kept[..1], &[1.0], at(62)).await;
    d.keys.push(12345); // left over from an earlier delta: a resync replaces it
    ps.delta("e", &mut cursor, &mut d).await.unwrap();
    assert!(d.resync, "the removals after the cursor were forgotten");
    assert!(d.removed.is_empty());
    assert_eq!(sorted(&d.keys), sorted(&kept), "every row of the table");
    d.clear();
    ps.delta("e", &mut cursor, &mut d).await.unwrap();
    assert!(d.is_empty(), "the cursor after a resync is current");
}

async fn clocks<S: Harness>() {
    let ps = S::make(vec![TableConfig::new("e", 1)]).await;
    let (a, b) = (WorkerId(0), WorkerId(1));
    assert_eq!(ps.register(a).await.unwrap(), 0);
    assert_eq!(ps.clock(a).await.unwrap(), 1);
    assert_eq!(
        ps.register(b).await.unwrap(),
        1,
        "a late joiner starts at the slowest"
    );
    assert_eq!(ps.clock(a).await.unwrap(), 2);
    ps.wait_bounded(a, 1).await.unwrap();
    ps.wait_bounded(b, 0).await.unwrap();
    assert!(matches!(
        ps.clock(WorkerId(9)).await,
        Err(Error::UnknownWorker(WorkerId(9)))
    ));
    // a is 1 ahead of b: with s = 0 it waits until b clocks
    let waiting = ps.wait_bounded(a, 0);
    let clocking = async {
        tokio::task::yield_now().await;
        ps.clock(b).await.unwrap()
    };
    let ((), c) = tokio::join!(async { waiting.await.unwrap() }, clocking);
    assert_eq!(c, 2);
    ps.deregister(b).await.unwrap();
    ps.clock(a).await.unwrap();
    ps.wait_bounded(a, 0).await.unwrap();
}

macro_rules! suite {
    ($name:ident, $store:ty) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pull_and_push_semantics() {
                super::pull_and_push_semantics::<$store>().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rules_match_the_local_learner() {
                super::rules_match_the_local_learner::<$store>().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn admission_and_expiry() {
                super::admission_and_expiry::<$store>().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn snapshot_and_restore() {
                super::snapshot_and_restore::<$store>().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn delta_feed() {
                super::delta_feed::<$store>().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn delta_reports_removals() {
                super::delta_reports_removals::<$store>().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn clocks() {
                super::clocks::<$store>().await
            }
        }
    };
}

suite!(local, LocalPs);
suite!(grpc_one_shard, Grpc<1>);
suite!(grpc_two_shards, Grpc<2>);

//! `LocalPs` end to end: initialization, server-side rules, FTRL parity with the local learner,
//! admission, expiry, snapshots and concurrent pushes.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use eddy_algorithms::learner::{GradientModel, OnlineLearner, UpdateRule};
use eddy_algorithms::online::linear::{FtrlLogisticParams, BIAS_KEY};
use eddy_algorithms::optim::NormalizedAdaptiveParams;
use eddy_algorithms::optim::{AdamParams, FtrlProximalParams, RuleParams};
use eddy_algorithms::transform::Params;
use eddy_ps::{Error, Initializer, LocalPs, LocalPsConfig, ParamStore, TableConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod common;
use common::{sgd, sparse_data, table, NORMAL};

fn store(shards: usize, tables: Vec<TableConfig>) -> LocalPs {
    LocalPsConfig {
        shards,
        ..LocalPsConfig::new(tables)
    }
    .build()
    .unwrap()
}

#[tokio::test]
async fn unseen_keys_pull_the_initializer_values_on_any_shard_count() {
    let cfg = || vec![table("e", 3, sgd(0.1), NORMAL), TableConfig::new("z", 2)];
    let (a, b) = (store(1, cfg()), store(7, cfg()));
    let keys = [5, 6, 5, u64::MAX];
    let (mut got_a, mut got_b, mut want) = (Vec::new(), Vec::new(), vec![0.0; 12]);
    a.pull("e", &keys, &mut got_a).await.unwrap();
    b.pull("e", &keys, &mut got_b).await.unwrap();
    for (i, &k) in keys.iter().enumerate() {
        NORMAL.fill(k, &mut want[i * 3..(i + 1) * 3]);
    }
    assert_eq!(got_a, want);
    assert_eq!(got_b, want);
    assert_ne!(want[0..3], want[3..6], "keys differ");
    a.pull("z", &[1, 2], &mut got_a).await.unwrap();
    assert_eq!(got_a, vec![0.0; 4]);
    assert_eq!(a.row_count("e").unwrap(), 0, "a pull creates no row");
    assert!(matches!(
        a.pull("nope", &[1], &mut got_a).await,
        Err(Error::UnknownTable(_))
    ));
    assert!(
        LocalPsConfig::new(vec![TableConfig::new("w", 1), TableConfig::new("w", 2)])
            .build()
            .is_err()
    );
}

#[tokio::test]
async fn push_applies_the_rule_exactly_as_update_rule_does() {
    let rules = [
        RuleParams::Adam(AdamParams::default()),
        RuleParams::NormalizedAdaptive(NormalizedAdaptiveParams::default()),
        RuleParams::Ftrl(FtrlProximalParams::default()),
    ];
    for params in rules {
        let ps = store(4, vec![table("e", 2, params, NORMAL)]);
        let rule = params.check().unwrap();
        let k = rule.state_len();
        // by hand: key 9 starts from its initial weights and the rule's fresh state
        let mut w = [0.0f32; 2];
        NORMAL.fill(9, &mut w);
        let mut state = vec![0.0f32; 2 * k];
        for s in state.chunks_exact_mut(k) {
            rule.init_state(s);
        }
        let mut t = 0;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for step in 0..20 {
            let g: Vec<f32> = (0..4).map(|_| rng.random_range(-1.0..1.0)).collect();
            let x: Vec<f32> = (0..4).map(|_| rng.random_range(0.5..3.0)).collect();
            // key 9 twice in one push: stepped once per occurrence, t counting per row
            let (keys, gs, xs): (Vec<u64>, Vec<f32>, Vec<f32>) = if step % 2 == 0 {
                (vec![9], g[..2].to_vec(), x[..2].to_vec())
            } else {
                let gs = [&g[..2], &g[2..], &g[..2]].concat();
                (vec![9, 4, 9], gs, [&x[..2], &x[2..], &x[..2]].concat())
            };
            ps.push("e", &keys, &gs, Some(&xs)).await.unwrap();
            let times = keys.iter().filter(|&&k| k == 9).count();
            for _ in 0..times {
                t += 1;
                for j in 0..2 {
                    rule.update(&mut w[j], &mut state[j * k..(j + 1) * k], g[j], x[j], t);
                }
            }
        }
        let mut got = Vec::new();
        ps.pull("e", &[9], &mut got).await.unwrap();
        assert_eq!(got, w.to_vec(), "{params:?}");
        assert_eq!(ps.row_updates("e", 9).unwrap(), Some(t));
        assert_eq!(ps.row_updates("e", 4).unwrap(), Some(10));
    }
}

#[tokio::test]
async fn malformed_pushes_are_refused_and_change_nothing() {
    let ps = store(2, vec![TableConfig::new("e", 2)]);
    type Push<'a> = (&'a [u64], &'a [f32], Option<&'a [f32]>);
    let bad: [Push<'_>; 3] = [
        (&[1, 2], &[0.1; 3], None),
        (&[1], &[0.1; 2], Some(&[1.0])),
        (&[1, 2], &[0.1, 0.1, f32::NAN, 0.1], None),
    ];
    for (keys, grads, xs) in bad {
        let e = ps.push("e", keys, grads, xs).await.unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
    }
    assert_eq!(ps.row_count("e").unwrap(), 0);
}

#[tokio::test]
async fn ftrl_through_local_ps_matches_ftrl_logistic_regression() {
    let data = sparse_data(5, 600, 64, 8);
    let ftrl = FtrlProximalParams {
        alpha: 0.3,
        beta: 1.0,
        l1: 2.0, // large enough that some weights are exact zeros
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
    let name = model.tables()[0].name.clone();
    let ps = store(
        8,
        vec![table(&name, 1, RuleParams::Ftrl(ftrl), Initializer::Zeros)],
    );
    let (mut keys, mut rows, mut grads) = (vec![Vec::new()], vec![Vec::new()], vec![Vec::new()]);
    let (mut remote, mut want, mut one) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..data.len() {
        let ex = data.slice(r, r + 1);
        model.keys(&ex.features, &mut keys);
        ps.pull(&name, &keys[0], &mut rows[0]).await.unwrap();
        model
            .predict_with(&ex.features, &keys, &rows, &mut one)
            .unwrap();
        remote.extend_from_slice(&one);
        model.gradients(&ex, &keys, &rows, &mut grads).unwrap();
        ps.push(&name, &keys[0], &grads[0], None).await.unwrap();
        local.predict_learn(&ex, &mut one).unwrap();
        want.extend_from_slice(&one);
    }
    assert_eq!(remote.len(), want.len());
    for (i, (a, b)) in remote.iter().zip(&want).enumerate() {
        assert!((a - b).abs() <= 1e-6, "prediction {i}: {a} vs {b}");
    }
    let all: Vec<u64> = (0..64).chain([BIAS_KEY]).collect();
    let mut weights = Vec::new();
    ps.pull(&name, &all, &mut weights).await.unwrap();
    for (i, w) in local.weights().chain([local.intercept()]).enumerate() {
        assert!(
            (weights[i] - w).abs() <= 1e-6,
            "weight {i}: {} vs {w}",
            weights[i]
        );
    }
    assert!(weights.contains(&0.0) && weights.iter().any(|&w| w != 0.0));
}

#[tokio::test]
async fn admission_counts_pushes_and_unadmitted_keys_pull_zeros() {
    let cfg = TableConfig {
        admission_min_count: 3,
        ..table("e", 2, sgd(0.5), NORMAL)
    };
    let ps = store(4, vec![cfg]);
    let mut got = Vec::new();
    for _ in 0..5 {
        ps.pull("e", &[42], &mut got).await.unwrap();
        assert_eq!(
            got,
            vec![0.0; 2],
            "not admitted: zeros, and pulls do not count"
        );
    }
    for _ in 0..2 {
        ps.push("e", &[42], &[1.0, -1.0], None).await.unwrap();
        assert_eq!(ps.row_updates("e", 42).unwrap(), None);
        ps.pull("e", &[42], &mut got).await.unwrap();
        assert_eq!(got, vec![0.0; 2]);
    }
    // the third push admits the key: a fresh row from the initializer, stepped once
    ps.push("e", &[42], &[1.0, -1.0], None).await.unwrap();
    assert_eq!(ps.row_updates("e", 42).unwrap(), Some(1));
    let mut w = [0.0; 2];
    NORMAL.fill(42, &mut w);
    ps.pull("e", &[42], &mut got).await.unwrap();
    assert_eq!(got, vec![w[0] - 0.5, w[1] + 0.5]);
    assert_eq!(ps.row_count("e").unwrap(), 1);
}

#[tokio::test]
async fn expiry_drops_rows_not_pushed_to() {
    let expiring = TableConfig {
        expiry: Some(Duration::from_secs(60)),
        admission_min_count: 2,
        ..table("e", 1, sgd(1.0), NORMAL)
    };
    let ps = store(
        3,
        vec![expiring, table("keep", 1, sgd(1.0), Initializer::Zeros)],
    );
    let t0 = SystemTime::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    for key in [1, 2] {
        ps.push_at("e", &[key], &[1.0], None, at(0)).unwrap();
        ps.push_at("e", &[key], &[1.0], None, at(key * 30)).unwrap(); // admitted
    }
    ps.push_at("e", &[3], &[1.0], None, at(0)).unwrap(); // pending only
    ps.push_at("keep", &[1], &[1.0], None, at(0)).unwrap();
    assert_eq!(ps.row_count("e").unwrap(), 2);
    assert_eq!(ps.expire(at(59)), 0);
    assert_eq!(ps.expire(at(91)), 1, "key 1, last pushed at 30 s");
    assert_eq!(ps.row_updates("e", 1).unwrap(), None);
    assert_eq!(ps.row_updates("e", 2).unwrap(), Some(1));
    assert_eq!(
        ps.row_updates("keep", 1).unwrap(),
        Some(1),
        "no expiry declared"
    );
    // key 3's pending count expired too: one more push does not admit it
    ps.push_at("e", &[3], &[1.0], None, at(100)).unwrap();
    assert_eq!(ps.row_updates("e", 3).unwrap(), None);
    // an expired key starts over
    let mut got = Vec::new();
    ps.pull("e", &[1], &mut got).await.unwrap();
    assert_eq!(got, vec![0.0], "not admitted again yet");
    assert_eq!(ps.expire(at(1000)), 1);
    assert_eq!(ps.row_count("e").unwrap(), 0);
}

#[test]
fn removals_are_bounded_and_only_a_cursor_older_than_a_forgotten_one_resyncs() {
    let expiring = TableConfig {
        expiry: Some(Duration::from_secs(60)),
        ..table("e", 1, sgd(1.0), Initializer::Zeros)
    };
    let ps = LocalPsConfig {
        shards: 1,
        tombstones: 2,
        ..LocalPsConfig::new(vec![expiring])
    }
    .build()
    .unwrap();
    let t0 = SystemTime::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut d = eddy_ps::Delta::default();
    ps.push_at("e", &[1, 2], &[1.0; 2], None, at(0)).unwrap();
    let c0 = ps.delta_since("e", 0, &mut d).unwrap();
    assert!(d.resync && d.len() == 2);
    d.clear();
    assert_eq!(ps.expire(at(61)), 2);
    let c1 = ps.delta_since("e", c0, &mut d).unwrap();
    assert_eq!((d.removed.len(), d.resync), (2, false), "both remembered");
    d.clear();
    // a third removal: the oldest of the three is forgotten
    ps.push_at("e", &[3], &[1.0], None, at(100)).unwrap();
    assert_eq!(ps.expire(at(161)), 1);
    let c2 = ps.delta_since("e", c1, &mut d).unwrap();
    assert_eq!(
        d.removed,
        vec![3],
        "a cursor past the forgotten removal misses nothing"
    );
    assert!(!d.resync);
    d.clear();
    let c0_again = ps.delta_since("e", c0, &mut d).unwrap();
    assert!(d.resync, "a cursor before it is told to resync");
    assert!(!d.is_empty() && d.keys.is_empty() && d.removed.is_empty());
    assert!(c0_again >= c2);
}

#[tokio::test]
async fn snapshot_restore_gives_identical_pulls_and_refuses_corruption() {
    let cfg = || {
        vec![
            table("e", 4, RuleParams::Adam(AdamParams::default()), NORMAL),
            TableConfig {
                admission_min_count: 2,
                ..table(
                    "w",
                    1,
                    RuleParams::Ftrl(FtrlProximalParams::default()),
                    Initializer::Zeros,
                )
            },
        ]
    };
    let a = store(5, cfg());
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let push = |ps: &LocalPs, rng: &mut ChaCha8Rng| {
        let keys: Vec<u64> = (0..6).map(|_| rng.random_range(0..40)).collect();
        let g: Vec<f32> = (0..24).map(|_| rng.random_range(-1.0..1.0)).collect();
        ps.push_now("e", &keys, &g, None).unwrap();
        ps.push_now("w", &keys, &g[..6], None).unwrap();
    };
    for _ in 0..50 {
        push(&a, &mut rng);
    }
    let bytes = a.snapshot().await.unwrap();
    let b = store(2, cfg());
    b.restore(&bytes).await.unwrap();
    assert_eq!(b.snapshot().await.unwrap(), bytes, "same rows, same bytes");
    let keys: Vec<u64> = (0..40).collect();
    let (mut pa, mut pb) = (Vec::new(), Vec::new());
    // training continues identically: optimizer state and counts were restored
    let mut rng_b = rng.clone();
    for _ in 0..10 {
        push(&a, &mut rng);
        push(&b, &mut rng_b);
    }
    for name in ["e", "w"] {
        a.pull(name, &keys, &mut pa).await.unwrap();
        b.pull(name, &keys, &mut pb).await.unwrap();
        assert_eq!(pa, pb, "table {name}");
    }
    // a flipped byte anywhere is refused and leaves the store as it was
    let before = b.snapshot_now().unwrap();
    for i in (0..bytes.len()).step_by(7) {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        assert!(
            matches!(b.restore(&bad).await, Err(Error::Snapshot(_))),
            "byte {i}"
        );
    }
    assert_eq!(b.snapshot_now().unwrap(), before);
    // a snapshot of other tables is refused
    let other = store(2, vec![TableConfig::new("e", 4)]);
    assert!(other.restore(&bytes).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pushes_lose_no_update() {
    let ps = Arc::new(store(4, vec![table("w", 2, sgd(1.0), Initializer::Zeros)]));
    let (tasks, pushes) = (8u64, 500u64);
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let ps = Arc::clone(&ps);
            tokio::spawn(async move {
                for _ in 0..pushes {
                    ps.push("w", &[0, 1, 2, 3], &[1.0; 8], None).await.unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let mut got = Vec::new();
    ps.pull("w", &[0, 1, 2, 3], &mut got).await.unwrap();
    assert_eq!(got, vec![-((tasks * pushes) as f32); 8]);
    for key in 0..4 {
        assert_eq!(ps.row_updates("w", key).unwrap(), Some(tasks * pushes));
    }
}

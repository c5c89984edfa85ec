use std::collections::HashMap;

use ndarray::Array2;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::conformance::check_online_learner;
use crate::features::CsrMatrix;
use crate::learner::GradientModel;
use crate::optim::{RuleParams, SgdParams};
use crate::transform::Params;

fn fm(dim: u64, task: FmTask, k: usize, std: f32, seed: u64) -> FactorizationMachine {
    let mut p = FmParams::new(dim, task);
    p.factors = k;
    p.init_std = std;
    p.seed = seed;
    p.l2_w = 1e-4;
    p.l2_v = 1e-4;
    FactorizationMachine::new(p.check().unwrap())
}

/// Random sparse rows over `dim` features with distinct indices; labels by `label`.
fn random_rows(n: usize, dim: u32, seed: u64, label: impl Fn(&[(u32, f32)]) -> f32) -> Examples {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut m = CsrMatrix::with_capacity(u64::from(dim), n, 4);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let mut entries: Vec<(u32, f32)> = Vec::new();
        for i in 0..dim {
            if rng.random_bool(0.4) {
                entries.push((i, rng.random_range(-1.0..1.0f32)));
            }
        }
        entries.iter().for_each(|&(i, v)| m.push(i, v));
        m.finish_row();
        y.push(label(&entries));
    }
    Examples::new(Features::Sparse(m), y, None).unwrap()
}

/// XOR: features (a, b) ∈ {±1}², label 1 when a·b > 0.
fn xor(n: usize, seed: u64) -> Examples {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Array2::zeros((n, 2));
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let (a, b) = (rng.random_bool(0.5), rng.random_bool(0.5));
        x[[i, 0]] = if a { 1.0 } else { -1.0 };
        x[[i, 1]] = if b { 1.0 } else { -1.0 };
        y.push(if a == b { 1.0 } else { 0.0 });
    }
    Examples::new(Features::Dense(x), y, None).unwrap()
}

fn accuracy(m: &FactorizationMachine, ex: &Examples) -> f32 {
    let mut out = Vec::new();
    m.predict(&ex.features, &mut out).unwrap();
    let hits = out
        .iter()
        .zip(&ex.labels)
        .filter(|(p, y)| (**p > 0.5) == (**y == 1.0));
    hits.count() as f32 / ex.len() as f32
}

proptest! {
    #[test]
    fn sum_square_trick_equals_naive_pairwise(seed in 0u64..1000, k in 1usize..6) {
        let train = random_rows(20, 12, seed, |e| e.iter().map(|p| p.1).sum());
        let mut m = fm(12, FmTask::Regression, k, 0.5, seed);
        m.learn(&train).unwrap();
        let probe = random_rows(10, 12, seed + 1, |_| 0.0);
        let mut out = Vec::new();
        m.predict(&probe.features, &mut out).unwrap();
        let Features::Sparse(x) = &probe.features else { unreachable!() };
        for (r, &got) in out.iter().enumerate() {
            let (idx, val) = x.row(r);
            let mut naive = f64::from(m.bias());
            for a in 0..idx.len() {
                let (i, xi) = (idx[a] as usize, f64::from(val[a]));
                naive += f64::from(m.weight(i)) * xi;
                for b in a + 1..idx.len() {
                    let (j, xj) = (idx[b] as usize, f64::from(val[b]));
                    let dot: f64 = m.factors(i).iter().zip(m.factors(j))
                        .map(|(p, q)| f64::from(*p) * f64::from(*q)).sum();
                    naive += dot * xi * xj;
                }
            }
            prop_assert!((f64::from(got) - naive).abs() < 1e-4 * (1.0 + naive.abs()),
                "row {}: {} vs {}", r, got, naive);
        }
    }
}

#[test]
fn learns_xor_that_a_linear_model_cannot() {
    let (train, test) = (xor(2000, 1), xor(400, 2));
    let mut interactions = fm(2, FmTask::Binary, 4, 0.1, 3);
    interactions.learn(&train).unwrap();
    assert!(accuracy(&interactions, &test) == 1.0);
    // With V = 0 the factor gradients vanish and the FM stays linear: chance level on XOR.
    let mut linear = fm(2, FmTask::Binary, 4, 0.0, 3);
    linear.learn(&train).unwrap();
    assert!(linear.factors(0).iter().all(|&v| v == 0.0));
    assert!(
        accuracy(&linear, &test) < 0.8,
        "{}",
        accuracy(&linear, &test)
    );
}

#[test]
fn store_with_the_same_rules_reproduces_the_local_learner() {
    let data = random_rows(40, 10, 5, |e| {
        if e.iter().map(|p| p.1).product::<f32>() > 0.0 {
            1.0
        } else {
            0.0
        }
    });
    let mut p = FmParams::new(10, FmTask::Binary);
    (p.factors, p.seed, p.l2_w0, p.l2_w, p.l2_v) = (3, 9, 1e-3, 1e-3, 1e-3);
    p.rule_w = RuleParams::Sgd(SgdParams::constant(0.2));
    let valid = p.check().unwrap();
    let mut local = FactorizationMachine::new(valid);
    let model = FmGradientModel::new(valid);
    let rules = [valid.rule_w, valid.rule_v];
    let tables = model.tables();
    assert_eq!((tables[0].dim, tables[1].dim), (1, 3));
    // The store: (table, key) → (row, state), created on first pull like a PS table.
    let mut store: HashMap<(usize, u64), (Vec<f32>, Vec<f32>)> = HashMap::new();
    let (mut keys, mut rows, mut grads) = (
        vec![Vec::new(), Vec::new()],
        vec![Vec::new(); 2],
        vec![Vec::new(); 2],
    );
    for t in 0..data.len() {
        let ex = data.slice(t, t + 1);
        model.keys(&ex.features, &mut keys);
        for (tab, spec) in tables.iter().enumerate() {
            rows[tab].clear();
            for &key in &keys[tab] {
                let entry = store.entry((tab, key)).or_insert_with(|| {
                    let mut row = vec![0.0; spec.dim];
                    if tab == 1 {
                        init_factors(9, key, 0.1, &mut row);
                    }
                    let mut state = vec![0.0; spec.dim * rules[tab].state_len()];
                    rules[tab].init_state(&mut state);
                    (row, state)
                });
                rows[tab].extend_from_slice(&entry.0);
            }
        }
        let loss = model.gradients(&ex, &keys, &rows, &mut grads).unwrap();
        assert!(loss > 0.0);
        for tab in 0..2 {
            let (dim, sl) = (tables[tab].dim, rules[tab].state_len());
            for (n, &key) in keys[tab].iter().enumerate() {
                let Some((row, state)) = store.get_mut(&(tab, key)) else {
                    unreachable!()
                };
                for f in 0..dim {
                    let g = grads[tab][n * dim + f];
                    rules[tab].update(
                        &mut row[f],
                        &mut state[f * sl..(f + 1) * sl],
                        g,
                        1.0,
                        t as u64 + 1,
                    );
                }
            }
        }
        local.learn(&ex).unwrap();
    }
    assert_eq!(store[&(0, BIAS_KEY)].0[0], local.bias());
    for i in 0..10u64 {
        assert_eq!(store[&(0, i)].0[0], local.weight(i as usize), "w{i}");
        assert_eq!(store[&(1, i)].0, local.factors(i as usize), "v{i}");
    }
    // predict_with over pulled rows equals the local prediction.
    model.keys(&data.features, &mut keys);
    for tab in 0..2 {
        rows[tab] = keys[tab]
            .iter()
            .flat_map(|k| store[&(tab, *k)].0.clone())
            .collect();
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    model
        .predict_with(&data.features, &keys, &rows, &mut a)
        .unwrap();
    local.predict(&data.features, &mut b).unwrap();
    assert_eq!(a, b);
    keys[1].pop();
    assert!(model
        .predict_with(&data.features, &keys, &rows, &mut a)
        .is_err());
}

#[test]
fn init_is_seeded_per_key_and_dense_equals_sparse() {
    let (mut a, mut b) = ([0.0f32; 5], [0.0f32; 5]);
    init_factors(1, 7, 1.0, &mut a);
    init_factors(1, 7, 1.0, &mut b);
    assert_eq!(a, b);
    init_factors(1, 8, 1.0, &mut b);
    assert_ne!(a, b);
    assert_eq!(
        fm(4, FmTask::Binary, 5, 1.0, 1).factors(3),
        fm(9, FmTask::Binary, 5, 1.0, 1).factors(3)
    );
    let sparse = random_rows(30, 6, 2, |e| e.len() as f32);
    let Features::Sparse(x) = &sparse.features else {
        unreachable!()
    };
    let mut d = Array2::zeros((30, 6));
    for r in 0..30 {
        let (idx, val) = x.row(r);
        idx.iter()
            .zip(val)
            .for_each(|(&i, &v)| d[[r, i as usize]] = v);
    }
    let dense = Examples::new(Features::Dense(d), sparse.labels.clone(), None).unwrap();
    let (mut s, mut t) = (
        fm(6, FmTask::Regression, 3, 0.1, 4),
        fm(6, FmTask::Regression, 3, 0.1, 4),
    );
    s.learn(&sparse).unwrap();
    t.learn(&dense).unwrap();
    assert_eq!(s, t);
}

#[test]
fn params_and_labels_are_checked() {
    let mut p = FmParams::new(4, FmTask::Binary);
    p.factors = 0;
    assert!(p.check().unwrap_err().to_string().contains("fm.factors"));
    p.factors = 2;
    p.l2_v = f32::NAN;
    assert!(p.check().unwrap_err().to_string().contains("fm.l2_v"));
    p.l2_v = 0.0;
    p.rule_v = serde_json::from_str(r#"{"kind": "adam", "beta1": 2}"#).unwrap();
    assert!(p
        .check()
        .unwrap_err()
        .to_string()
        .contains("fm.rule_v.adam.beta1"));
    let p: FmParams = serde_json::from_str(r#"{"dim": 4, "rule_w": {"kind": "ftrl"}}"#).unwrap();
    assert!(matches!(p.rule_w, RuleParams::Ftrl(_)) && p.factors == 8);
    let mut m = fm(2, FmTask::Binary, 2, 0.1, 0);
    let mut bad = xor(4, 0);
    bad.labels[1] = 2.0;
    assert!(m.learn(&bad).is_err());
}

#[test]
fn conformance() {
    let ftrl: RuleParams = serde_json::from_str(r#"{"kind": "ftrl"}"#).unwrap();
    check_online_learner(|s| fm(2, FmTask::Binary, 3, 0.1, s), &xor(60, 4), 1e-5);
    let reg = random_rows(60, 8, 6, |e| e.iter().map(|p| p.1).sum::<f32>() * 2.0);
    check_online_learner(|s| fm(8, FmTask::Regression, 4, 0.1, s), &reg, 1e-5);
    let make = |s| {
        let mut p = FmParams::new(8, FmTask::Regression);
        (p.seed, p.rule_w) = (s, ftrl);
        FactorizationMachine::new(p.check().unwrap())
    };
    check_online_learner(make, &reg, 1e-5);
}

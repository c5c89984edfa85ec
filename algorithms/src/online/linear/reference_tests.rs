//! Oracle tests: the learners against naive f64 implementations written straight from the
//! papers (one row at a time, weights in a `HashMap`), and the parameter-server loop of
//! [`LogisticGradientModel`] against [`FtrlLogisticRegression`].

use std::collections::HashMap;

use super::tests::{sparse_data, to_dense};
use super::*;
use crate::features::{Examples, FeatureRow};
use crate::learner::{GradientModel, OnlineLearner, UpdateRule};
use crate::optim::{FtrlProximalParams, RuleParams, SgdParams};
use crate::transform::Params;

const BIAS: usize = usize::MAX;

fn entries(row: FeatureRow<'_>) -> Vec<(usize, f64)> {
    let mut v = Vec::new();
    for_each_entry(&row, |i, x| v.push((i, f64::from(x))));
    v.push((BIAS, 1.0));
    v
}

fn sigmoid64(m: f64) -> f64 {
    1.0 / (1.0 + (-m.clamp(-35.0, 35.0)).exp())
}

/// McMahan et al. 2013, algorithm 1, per coordinate, with lazily computed weights.
fn naive_ftrl(ex: &Examples, p: FtrlProximalParams) -> Vec<f64> {
    let (a, b, l1, l2) = (p.alpha as f64, p.beta as f64, p.l1 as f64, p.l2 as f64);
    let mut zn: HashMap<usize, (f64, f64)> = HashMap::new();
    let weight = |z: f64, n: f64| {
        if z.abs() <= l1 {
            0.0
        } else {
            -(z - z.signum() * l1) / ((b + n.sqrt()) / a + l2)
        }
    };
    let mut out = Vec::new();
    for r in 0..ex.len() {
        let xs = entries(ex.features.row(r));
        let ws: Vec<f64> = xs
            .iter()
            .map(|(i, _)| zn.get(i).map_or(0.0, |&(z, n)| weight(z, n)))
            .collect();
        let p = sigmoid64(xs.iter().zip(&ws).map(|((_, x), w)| w * x).sum());
        out.push(p);
        let y = if ex.labels[r] > 0.5 { 1.0 } else { 0.0 };
        for ((i, x), w) in xs.iter().zip(&ws) {
            let g = (p - y) * x;
            let (z, n) = zn.entry(*i).or_insert((0.0, 0.0));
            let sigma = ((*n + g * g).sqrt() - n.sqrt()) / a;
            *z += g - sigma * w;
            *n += g * g;
        }
    }
    out
}

/// Plain SGD, `w ← w − η_t ℓ' x`, with `η_t = η / t^p`.
fn naive_sgd(ex: &Examples, eta: f64, power_t: f64, logistic: bool) -> Vec<f64> {
    let mut w: HashMap<usize, f64> = HashMap::new();
    let mut out = Vec::new();
    for r in 0..ex.len() {
        let xs = entries(ex.features.row(r));
        let m: f64 = xs.iter().map(|(i, x)| w.get(i).unwrap_or(&0.0) * x).sum();
        let pred = if logistic { sigmoid64(m) } else { m };
        out.push(pred);
        let y = f64::from(ex.labels[r]);
        let y = if logistic {
            f64::from(u8::from(y > 0.5))
        } else {
            y
        };
        let eta_t = eta / ((r + 1) as f64).powf(power_t);
        for (i, x) in xs {
            *w.entry(i).or_insert(0.0) -= eta_t * (pred - y) * x;
        }
    }
    out
}

fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (r, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(*g) - w).abs() <= tol,
            "{what}: row {r}: {g} vs {w}"
        );
    }
}

#[test]
fn ftrl_matches_the_paper() {
    for (seed, l1, l2) in [(1, 0.0, 0.0), (2, 0.5, 0.0), (3, 0.2, 1.0), (4, 1.5, 0.3)] {
        let data = sparse_data(seed, 1500, 128, 12, false);
        let params = FtrlProximalParams {
            alpha: 0.2,
            beta: 1.0,
            l1,
            l2,
        };
        let want = naive_ftrl(&data, params);
        for ex in [data.clone(), to_dense(&data)] {
            let mut m = FtrlLogisticParams {
                ftrl: params,
                bits: 7,
                ..Default::default()
            }
            .build()
            .unwrap();
            let mut got = Vec::new();
            m.predict_learn(&ex, &mut got).unwrap();
            assert_close(&format!("ftrl seed {seed}"), &got, &want, 2e-4);
        }
    }
}

#[test]
fn sgd_matches_plain_sgd() {
    for (seed, logistic) in [(5, true), (6, false)] {
        let data = sparse_data(seed, 1500, 128, 12, !logistic);
        for params in [SgdParams::constant(0.02), SgdParams::default()] {
            let want = naive_sgd(
                &data,
                f64::from(params.eta),
                f64::from(params.power_t),
                logistic,
            );
            let p = SgdLinearParams {
                rule: RuleParams::Sgd(params),
                bits: 7,
                ..Default::default()
            };
            let mut got = Vec::new();
            if logistic {
                p.build_logistic()
                    .unwrap()
                    .predict_learn(&data, &mut got)
                    .unwrap();
            } else {
                p.build_regression()
                    .unwrap()
                    .predict_learn(&data, &mut got)
                    .unwrap();
            }
            assert_close(&format!("sgd {params:?}"), &got, &want, 2e-4);
        }
    }
}

#[test]
fn parameter_server_loop_matches_the_local_learner() {
    let data = sparse_data(7, 800, 64, 10, false);
    let params = FtrlProximalParams {
        alpha: 0.3,
        beta: 1.0,
        l1: 0.1,
        l2: 0.2,
    };
    let rule = params.check().unwrap();
    let mut local = FtrlLogisticParams {
        ftrl: params,
        bits: 6,
        ..Default::default()
    }
    .build()
    .unwrap();
    let model = local.gradient_model();
    assert_eq!(model.tables()[0].name, "w");
    // the "store": key → (w, [z, n]), applying the rule on push
    let mut store: HashMap<u64, (f32, [f32; 2])> = HashMap::new();
    let (mut keys, mut rows, mut grads) = (vec![Vec::new()], vec![Vec::new()], vec![Vec::new()]);
    let (mut remote_pred, mut local_pred, mut one) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..data.len() {
        let row = data.slice(r, r + 1);
        model.keys(&row.features, &mut keys);
        rows[0] = keys[0]
            .iter()
            .map(|k| store.get(k).map_or(0.0, |s| s.0))
            .collect();
        model
            .predict_with(&row.features, &keys, &rows, &mut one)
            .unwrap();
        remote_pred.extend_from_slice(&one);
        let loss = model.gradients(&row, &keys, &rows, &mut grads).unwrap();
        assert!(loss > 0.0);
        for (k, g) in keys[0].iter().zip(&grads[0]) {
            let (w, state) = store.entry(*k).or_insert((0.0, [0.0; 2]));
            rule.update(w, state, *g, 1.0, r as u64 + 1);
        }
        local.predict_learn(&row, &mut one).unwrap();
        local_pred.extend_from_slice(&one);
    }
    assert_eq!(remote_pred, local_pred, "progressive predictions");
    for (i, w) in local.weights().enumerate() {
        assert_eq!(store.get(&(i as u64)).map_or(0.0, |s| s.0), w, "weight {i}");
    }
    assert_eq!(store[&BIAS_KEY].0, local.intercept());
    // a whole batch: its keys are sorted and distinct, and the loss is the summed log loss
    model.keys(&data.features, &mut keys);
    assert!(keys[0].windows(2).all(|w| w[0] < w[1]));
    rows[0] = keys[0]
        .iter()
        .map(|k| store.get(k).map_or(0.0, |s| s.0))
        .collect();
    let mut batch_pred = Vec::new();
    model
        .predict_with(&data.features, &keys, &rows, &mut batch_pred)
        .unwrap();
    let mut want = Vec::new();
    crate::learner::Predictor::predict(&local, &data.features, &mut want).unwrap();
    assert_eq!(batch_pred, want);
    let loss = model.gradients(&data, &keys, &rows, &mut grads).unwrap();
    let direct: f64 = want
        .iter()
        .zip(&data.labels)
        .map(|(&p, &y)| {
            let p = f64::from(p).clamp(1e-7, 1.0 - 1e-7);
            if y > 0.5 {
                -p.ln()
            } else {
                -(1.0 - p).ln()
            }
        })
        .sum();
    assert!((loss - direct).abs() < 1e-6 * direct, "{loss} vs {direct}");
    // keys that were not pulled are an error, not a panic
    let short = vec![keys[0][..1].to_vec()];
    assert!(model
        .gradients(&data, &short, &[vec![0.0]], &mut grads)
        .is_err());
}

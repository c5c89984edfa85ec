//! Conformance, properties and behaviour of the linear learners. The oracle tests against naive
//! implementations are in `reference_tests`.

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::conformance::check_online_learner;
use crate::features::{CsrMatrix, Examples, Features};
use crate::learner::{OnlineLearner, Predictor};
use crate::optim::{
    AdaGradParams, AdamParams, FtrlProximalParams, NormalizedAdaptiveParams, RuleParams, SgdParams,
};

/// Random sparse rows (distinct indices below `dim`, `1..=max_nnz` entries, values in
/// `[-2, 2]` or 1) labelled by a hidden linear model: 0/1 labels, or the noisy value when
/// `regression`.
pub(super) fn sparse_data(
    seed: u64,
    rows: usize,
    dim: u32,
    max_nnz: usize,
    regression: bool,
) -> Examples {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let truth: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut m = CsrMatrix::with_capacity(u64::from(dim), rows, max_nnz);
    let mut labels = Vec::with_capacity(rows);
    let mut row: Vec<u32> = Vec::new();
    for _ in 0..rows {
        row.clear();
        let nnz = rng.random_range(1..=max_nnz);
        while row.len() < nnz {
            let i = rng.random_range(0..dim);
            if !row.contains(&i) {
                row.push(i);
            }
        }
        let mut margin = 0.3;
        for &i in &row {
            let v = if rng.random_bool(0.5) {
                1.0
            } else {
                rng.random_range(-2.0..2.0)
            };
            m.push(i, v);
            margin += truth[i as usize] * v;
        }
        m.finish_row();
        labels.push(if regression {
            margin + rng.random_range(-0.1..0.1)
        } else {
            f32::from(rng.random::<f32>() < sigmoid(2.0 * margin))
        });
    }
    Examples::new(Features::Sparse(m), labels, None).unwrap()
}

/// The same rows as a dense matrix.
pub(super) fn to_dense(ex: &Examples) -> Examples {
    let Features::Sparse(m) = &ex.features else {
        return ex.clone();
    };
    let mut a = Array2::zeros((m.rows(), m.dim() as usize));
    for r in 0..m.rows() {
        let (idx, val) = m.row(r);
        for (&i, &v) in idx.iter().zip(val) {
            a[[r, i as usize]] = v;
        }
    }
    Examples::new(Features::Dense(a), ex.labels.clone(), ex.weights.clone()).unwrap()
}

fn ftrl(bits: u32, l1: f32, l2: f32) -> FtrlLogisticRegression {
    FtrlLogisticParams {
        ftrl: FtrlProximalParams {
            alpha: 0.3,
            beta: 1.0,
            l1,
            l2,
        },
        bits,
        ..Default::default()
    }
    .build()
    .unwrap()
}

fn sgd_params(rule: RuleParams, bits: u32) -> SgdLinearParams {
    SgdLinearParams {
        rule,
        bits,
        ..Default::default()
    }
}

fn all_rules() -> Vec<RuleParams> {
    vec![
        RuleParams::Sgd(SgdParams::default()),
        RuleParams::Sgd(SgdParams::constant(0.05)),
        RuleParams::AdaGrad(AdaGradParams::default()),
        RuleParams::NormalizedAdaptive(NormalizedAdaptiveParams::default()),
        RuleParams::Adam(AdamParams {
            eta: 0.05,
            ..Default::default()
        }),
        RuleParams::Ftrl(FtrlProximalParams::default()),
    ]
}

#[test]
fn conformance_ftrl_sparse_and_dense() {
    let data = sparse_data(1, 200, 64, 8, false);
    check_online_learner(|_| ftrl(6, 0.1, 0.5), &data, 1e-6);
    check_online_learner(|_| ftrl(6, 0.0, 0.0), &to_dense(&data), 1e-6);
}

#[test]
fn conformance_sgd_every_rule() {
    let cls = sparse_data(2, 150, 64, 8, false);
    let reg = sparse_data(3, 150, 64, 8, true);
    for rule in all_rules() {
        let p = sgd_params(rule, 6);
        check_online_learner(|_| p.build_logistic().unwrap(), &cls, 1e-6);
        check_online_learner(|_| p.build_regression().unwrap(), &reg, 1e-6);
        check_online_learner(|_| p.build_logistic().unwrap(), &to_dense(&cls), 1e-6);
    }
}

#[test]
fn sparse_and_dense_train_identically() {
    let data = sparse_data(4, 300, 32, 6, false);
    let (mut a, mut b) = (ftrl(5, 0.1, 0.1), ftrl(5, 0.1, 0.1));
    let (mut pa, mut pb) = (Vec::new(), Vec::new());
    a.predict_learn(&data, &mut pa).unwrap();
    b.predict_learn(&to_dense(&data), &mut pb).unwrap();
    // the same arithmetic, summed in another order (dense goes by column)
    for (x, y) in pa.iter().zip(&pb) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }
}

#[test]
fn ftrl_l1_gives_exact_zeros() {
    let data = sparse_data(5, 2000, 256, 10, false);
    let mut m = ftrl(8, 4.0, 0.0);
    m.learn(&data).unwrap();
    let zeros = m.weights().filter(|&w| w == 0.0).count();
    let nonzeros = m.weights().filter(|&w| w != 0.0).count();
    assert!(zeros > 64, "only {zeros} exact zeros");
    assert!(nonzeros > 5, "l1 zeroed everything");
    let mut dense = ftrl(8, 0.0, 0.0);
    dense.learn(&data).unwrap();
    assert!(dense.weights().filter(|&w| w == 0.0).count() < zeros);
}

#[test]
fn separable_data_reaches_high_accuracy() {
    // label = [x_0 > x_1] on two dense features, plus noise features
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let n = 4000;
    let a = Array2::from_shape_fn((n, 6), |_| rng.random_range(-1.0f32..1.0));
    let labels: Vec<f32> = (0..n).map(|r| f32::from(a[[r, 0]] > a[[r, 1]])).collect();
    let data = Examples::new(Features::Dense(a), labels, None).unwrap();
    let accuracy = |l: &mut dyn OnlineLearner| {
        let mut out = Vec::new();
        l.predict_learn(&data, &mut out).unwrap();
        let tail = n / 2..n;
        let right = tail
            .clone()
            .filter(|&r| (out[r] > 0.5) == (data.labels[r] > 0.5))
            .count();
        right as f64 / tail.len() as f64
    };
    let mut f = FtrlLogisticParams {
        ftrl: FtrlProximalParams {
            alpha: 1.0,
            ..Default::default()
        },
        bits: 3,
        ..Default::default()
    }
    .build()
    .unwrap();
    assert!(accuracy(&mut f) > 0.97);
    for rule in all_rules() {
        let mut s = sgd_params(rule, 3).build_logistic().unwrap();
        let acc = accuracy(&mut s);
        assert!(acc > 0.95, "{rule:?}: {acc}");
    }
}

#[test]
fn regression_fits_a_linear_target() {
    let data = sparse_data(7, 6000, 16, 4, true);
    let mut m = sgd_params(
        RuleParams::AdaGrad(AdaGradParams {
            eta: 0.5,
            epsilon: 1e-8,
        }),
        4,
    )
    .build_regression()
    .unwrap();
    let mut out = Vec::new();
    m.predict_learn(&data, &mut out).unwrap();
    let tail = 5000..6000;
    let mse: f32 = tail
        .clone()
        .map(|r| (out[r] - data.labels[r]).powi(2))
        .sum::<f32>()
        / 1000.0;
    let var: f32 = {
        let mean = data.labels[tail.clone()].iter().sum::<f32>() / 1000.0;
        data.labels[tail]
            .iter()
            .map(|y| (y - mean).powi(2))
            .sum::<f32>()
            / 1000.0
    };
    assert!(mse < 0.05 * var, "mse {mse} vs variance {var}");
}

#[test]
fn warm_start_reproduces_the_given_model() {
    let data = sparse_data(8, 100, 32, 6, false);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let w: Vec<f32> = (0..32).map(|_| rng.random_range(-1.0..1.0)).collect();
    let expected: Vec<f32> = (0..data.len())
        .map(|r| sigmoid(0.25 + data.features.row(r).dot(&w)))
        .collect();
    let check = |got: &[f32]| {
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() < 1e-5, "{g} vs {e}");
        }
    };
    let mut out = Vec::new();
    let mut f = ftrl(5, 0.5, 0.3);
    f.warm_start(&w, 0.25).unwrap();
    f.predict(&data.features, &mut out).unwrap();
    check(&out);
    let mut s = sgd_params(RuleParams::default(), 5)
        .build_logistic()
        .unwrap();
    s.warm_start(&w, 0.25).unwrap();
    s.predict(&data.features, &mut out).unwrap();
    check(&out);
    // learning moves on from the warm start
    f.learn(&data).unwrap();
    f.predict(&data.features, &mut out).unwrap();
    assert!(out.iter().zip(&expected).any(|(g, e)| (g - e).abs() > 1e-3));
    assert!(
        ftrl(4, 0.0, 0.0).warm_start(&w, 0.0).is_err(),
        "32 weights for dim 16"
    );
    assert!(s.warm_start(&[f32::NAN], 0.0).is_err());
}

#[test]
fn out_of_range_indices_are_refused_before_learning() {
    let data = sparse_data(10, 50, 64, 4, false);
    let mut m = ftrl(4, 0.0, 0.0); // dim 16 < 64
    let e = m.learn(&data).unwrap_err().to_string();
    assert!(e.contains("out of range") && e.contains("dim 16"), "{e}");
    assert_eq!(m.rows_seen(), 0);
    assert!(m.weights().all(|w| w == 0.0));
    let s = sgd_params(RuleParams::default(), 4)
        .build_regression()
        .unwrap();
    assert!(s
        .predict(&to_dense(&data).features, &mut Vec::new())
        .is_err());
    // an explicit dim, e.g. a hasher's 2^bits + 1 with its bias column
    let p = FtrlLogisticParams {
        dim: Some(65),
        ..Default::default()
    };
    assert_eq!(p.build().unwrap().dim(), 65);
}

#[test]
fn invalid_params_are_named() {
    let e = FtrlLogisticParams {
        bits: 40,
        ..Default::default()
    }
    .build()
    .unwrap_err();
    assert!(
        e.to_string().contains("ftrl-logistic-regression.bits"),
        "{e}"
    );
    let e = FtrlLogisticParams {
        dim: Some(0),
        ..Default::default()
    }
    .build()
    .unwrap_err();
    assert!(e.to_string().contains(".dim"), "{e}");
    let p = SgdLinearParams {
        rule: RuleParams::AdaGrad(AdaGradParams {
            eta: -1.0,
            epsilon: 0.0,
        }),
        ..Default::default()
    };
    assert!(p
        .build_logistic()
        .unwrap_err()
        .to_string()
        .contains("adagrad.eta"));
    let p: SgdLinearParams =
        serde_json::from_str(r#"{"rule":{"kind":"adam","eta":0.01},"bits":12}"#).unwrap();
    assert_eq!(p.build_regression().unwrap().dim(), 4096);
}

#[test]
fn importance_weights_scale_the_step() {
    let data = sparse_data(11, 1, 8, 3, false);
    let doubled =
        Examples::new(data.features.clone(), data.labels.clone(), Some(vec![2.0])).unwrap();
    let p = sgd_params(RuleParams::Sgd(SgdParams::constant(0.1)), 3);
    let (mut a, mut b) = (p.build_logistic().unwrap(), p.build_logistic().unwrap());
    a.learn(&data).unwrap();
    b.learn(&doubled).unwrap();
    assert!((b.intercept() - 2.0 * a.intercept()).abs() < 1e-7);
}

#[test]
fn learners_are_send_and_sync() {
    fn is<T: Send + Sync>() {}
    is::<FtrlLogisticRegression>();
    is::<SgdLogisticRegression>();
    is::<SgdLinearRegression>();
    is::<LogisticGradientModel>();
}

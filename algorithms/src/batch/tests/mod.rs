//! Tests of the batch learners: linear models here, k-means and trees in [`other`], params and
//! input checks in [`inputs`].

mod inputs;
mod other;

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::error::Error;
use crate::features::{CsrMatrix, Examples, Features};
use crate::learner::{BatchLearner, Predictor, Task};
use crate::transform::Params;

/// Dense examples from rows of `D` features.
pub(super) fn dense<const D: usize>(rows: &[[f32; D]], labels: Vec<f32>) -> Examples {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let x = Array2::from_shape_vec((rows.len(), D), flat).unwrap();
    Examples::new(Features::Dense(x), labels, None).unwrap()
}

/// The same matrix as CSR of dimension `dim` (zeros left out).
pub(super) fn to_sparse(x: &Features, dim: u64) -> Features {
    let Features::Dense(a) = x else {
        panic!("dense expected")
    };
    let mut m = CsrMatrix::with_capacity(dim, a.nrows(), a.ncols());
    for row in a.rows() {
        for (j, &v) in row.iter().enumerate() {
            if v != 0.0 {
                m.push(j as u32, v);
            }
        }
        m.finish_row();
    }
    Features::Sparse(m)
}

pub(super) fn predict(model: &impl Predictor, x: &Features) -> Vec<f32> {
    let mut out = Vec::new();
    model.predict(x, &mut out).unwrap();
    out
}

/// The parameter an `InvalidParam` error names.
pub(super) fn param_of<T: std::fmt::Debug>(r: crate::error::Result<T>) -> String {
    match r {
        Err(Error::InvalidParam { param, .. }) => param,
        other => panic!("expected InvalidParam, got {other:?}"),
    }
}

/// Two classes separated by the line `x0 + 2 x1 = 0.5` with a gap of 0.2, positives a
/// `positive_share` of the rows.
pub(super) fn separable(n: usize, positive_share: f64, seed: u64) -> Examples {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut rows, mut labels) = (Vec::new(), Vec::new());
    while rows.len() < n {
        let x = [
            rng.random_range(-2.0..2.0f32),
            rng.random_range(-2.0..2.0f32),
        ];
        let s = x[0] + 2.0 * x[1] - 0.5;
        let want_positive = rng.random_bool(positive_share);
        if s.abs() > 0.2 && (s > 0.0) == want_positive {
            rows.push(x);
            labels.push(if s > 0.0 { 1.0 } else { 0.0 });
        }
    }
    dense(&rows, labels)
}

fn accuracy(p: &[f32], labels: &[f32]) -> f64 {
    let hits = p
        .iter()
        .zip(labels)
        .filter(|(p, y)| (**p > 0.5) == (**y > 0.5))
        .count();
    hits as f64 / labels.len() as f64
}

#[test]
fn logistic_separable_is_accurate_with_probabilities() {
    let ex = separable(300, 0.5, 1);
    let model = LogisticRegressionParams::default()
        .check()
        .unwrap()
        .fit(&ex)
        .unwrap();
    assert_eq!(model.task(), Task::BinaryClassification);
    let p = predict(&model, &ex.features);
    assert!(
        accuracy(&p, &ex.labels) >= 0.95,
        "accuracy {}",
        accuracy(&p, &ex.labels)
    );
    assert!(p.iter().all(|&p| p > 0.0 && p < 1.0), "{p:?}");
    // Sparse input of the same dimension predicts the same.
    assert_eq!(predict(&model, &to_sparse(&ex.features, 2)), p);
    // The exported weights give the same probabilities and point along (1, 2).
    let w = model.linear_weights();
    assert_eq!((w.dim, w.weights.len()), (2, 2));
    assert!(w.weights[0] > 0.0 && w.weights[1] > w.weights[0]);
    let mut margins = Vec::new();
    w.margins(&ex.features, &mut margins).unwrap();
    for (m, p) in margins.iter().zip(&p) {
        assert!((1.0 / (1.0 + (-m).exp()) - p).abs() < 1e-5);
    }
}

#[test]
fn logistic_predicts_label_one_when_it_is_the_minority() {
    // linfa calls the majority class "positive"; P(label = 1) must not flip with the counts.
    for share in [0.15, 0.85] {
        let ex = separable(300, share, 2);
        let model = LogisticRegressionParams::default()
            .check()
            .unwrap()
            .fit(&ex)
            .unwrap();
        let p = predict(&model, &ex.features);
        assert!(accuracy(&p, &ex.labels) >= 0.95, "share {share}");
        assert!(model.linear_weights().weights[1] > 0.0, "share {share}");
    }
}

#[test]
fn logistic_refuses_one_class_and_weights() {
    let learner = LogisticRegressionParams::default().check().unwrap();
    let ex = dense(&[[1.0], [2.0]], vec![1.0, 1.0]);
    assert!(
        matches!(learner.fit(&ex), Err(Error::InvalidValue { column, .. }) if column == "label")
    );
    let mut ex = dense(&[[1.0], [2.0], [3.0]], vec![0.0, 1.0, 1.0]);
    ex.weights = Some(vec![1.0, 1.0, 1.0]);
    assert!(learner.fit(&ex).is_ok(), "unit weights are no weights");
    ex.weights = Some(vec![1.0, 2.0, 1.0]);
    let err = learner.fit(&ex);
    assert!(
        matches!(err, Err(Error::InvalidValue { ref column, row: 1, .. }) if column == "weight"),
        "{err:?}"
    );
}

/// `y = 3 − 2 x0 + 0.5 x1 + 4 x2` on random `x`.
pub(super) fn noiseless(n: usize) -> Examples {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let rows: Vec<[f32; 3]> = (0..n)
        .map(|_| [0; 3].map(|_| rng.random_range(-1.0..1.0f32)))
        .collect();
    let labels = rows
        .iter()
        .map(|x| 3.0 - 2.0 * x[0] + 0.5 * x[1] + 4.0 * x[2])
        .collect();
    dense(&rows, labels)
}

fn assert_coefficients(w: &LinearModelWeights, want: &[f32], intercept: f32, tol: f32) {
    assert_eq!(w.dim, want.len() as u64);
    for (got, want) in w.weights.iter().zip(want) {
        assert!((got - want).abs() < tol, "{:?} vs {want:?}", w.weights);
    }
    assert!(
        (w.intercept - intercept).abs() < tol,
        "intercept {}",
        w.intercept
    );
}

#[test]
fn linear_and_ridge_recover_noiseless_coefficients() {
    let ex = noiseless(100);
    let ols = LinearRegressionParams::default()
        .check()
        .unwrap()
        .fit(&ex)
        .unwrap();
    assert_eq!(ols.task(), Task::Regression);
    assert_coefficients(&ols.linear_weights(), &[-2.0, 0.5, 4.0], 3.0, 1e-4);
    let p = predict(&ols, &ex.features);
    assert!(p.iter().zip(&ex.labels).all(|(p, y)| (p - y).abs() < 1e-4));
    let ridge = RidgeParams {
        alpha: 1e-6,
        ..Default::default()
    };
    let ridge = ridge.check().unwrap().fit(&ex).unwrap();
    assert_coefficients(&ridge.linear_weights(), &[-2.0, 0.5, 4.0], 3.0, 1e-4);
    // Through the origin: no intercept, and the data has one, so the fit differs.
    let no_b = LinearRegressionParams {
        fit_intercept: false,
    }
    .check()
    .unwrap()
    .fit(&ex)
    .unwrap();
    assert_eq!(no_b.linear_weights().intercept, 0.0);
}

/// Solves `a z = b` by Gaussian elimination with partial pivoting (the naive oracle).
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap();
        a.swap(c, p);
        b.swap(c, p);
        let (top, below) = a.split_at_mut(c + 1);
        let pivot = &top[c];
        for (r, row) in (c + 1..).zip(below.iter_mut()) {
            let f = row[c] / pivot[c];
            for (x, p) in row[c..].iter_mut().zip(&pivot[c..]) {
                *x -= f * p;
            }
            b[r] -= f * b[c];
        }
    }
    let mut z = vec![0.0; n];
    for r in (0..n).rev() {
        z[r] = (b[r] - (r + 1..n).map(|k| a[r][k] * z[k]).sum::<f64>()) / a[r][r];
    }
    z
}

#[test]
fn weighted_ridge_matches_the_normal_equations() {
    // Oracle: with weights ω and an intercept column, minimize Σ ω (y − b − w·x)² + α‖w‖²:
    // (AᵀΩA + αI') z = AᵀΩy with A = [x, 1] and I' leaving the intercept unpenalized.
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let n = 60;
    let rows: Vec<[f32; 2]> = (0..n)
        .map(|_| [rng.random_range(-1.0..1.0), rng.random_range(0.0..3.0)])
        .collect();
    let labels: Vec<f32> = rows
        .iter()
        .map(|x| x[0] - x[1] + rng.random_range(-0.5..0.5f32))
        .collect();
    let weights: Vec<f32> = (0..n).map(|_| rng.random_range(0.0..3.0)).collect();
    let mut ex = dense(&rows, labels.clone());
    ex.weights = Some(weights.clone());
    let alpha = 5.0;
    let model = RidgeParams {
        alpha,
        fit_intercept: true,
    }
    .check()
    .unwrap()
    .fit(&ex)
    .unwrap();
    let (mut a, mut b) = (vec![vec![0.0; 3]; 3], vec![0.0; 3]);
    for ((x, &y), &w) in rows.iter().zip(&labels).zip(&weights) {
        let v = [f64::from(x[0]), f64::from(x[1]), 1.0];
        for i in 0..3 {
            b[i] += f64::from(w) * v[i] * f64::from(y);
            for j in 0..3 {
                a[i][j] += f64::from(w) * v[i] * v[j];
            }
        }
    }
    a[0][0] += alpha;
    a[1][1] += alpha;
    let z = solve(a, b);
    let want = [z[0] as f32, z[1] as f32];
    assert_coefficients(&model.linear_weights(), &want, z[2] as f32, 1e-4);
}

#[test]
fn integer_weights_equal_repeated_rows() {
    let rows = [
        [0.0f32, 1.0],
        [1.0, 0.5],
        [2.0, -1.0],
        [3.0, 2.0],
        [4.0, 0.0],
    ];
    let labels = vec![1.0, 2.5, 2.0, 7.0, 4.5];
    let mut weighted = dense(&rows, labels.clone());
    weighted.weights = Some(vec![1.0, 3.0, 1.0, 2.0, 1.0]);
    let repeated_rows = [
        rows[0], rows[1], rows[1], rows[1], rows[2], rows[3], rows[3], rows[4],
    ];
    let l = &labels;
    let repeated = dense(
        &repeated_rows,
        vec![l[0], l[1], l[1], l[1], l[2], l[3], l[3], l[4]],
    );
    let learner = LinearRegressionParams::default().check().unwrap();
    let (a, b) = (
        learner.fit(&weighted).unwrap(),
        learner.fit(&repeated).unwrap(),
    );
    let (a, b) = (a.linear_weights(), b.linear_weights());
    assert_coefficients(&a, &b.weights, b.intercept, 1e-4);
}

#[test]
fn singular_least_squares_is_an_error_and_ridge_fixes_it() {
    let rows: Vec<[f32; 2]> = (0..10).map(|i| [i as f32, 2.0 * i as f32]).collect();
    let ex = dense(&rows, (0..10).map(|i| i as f32).collect());
    let ols = LinearRegressionParams::default().check().unwrap().fit(&ex);
    assert!(
        matches!(ols, Err(Error::InvalidParam { ref param, ref message }) if param == "linear-regression" && message.contains("column 1")),
        "{ols:?}"
    );
    // A constant column is dependent on the intercept.
    let constant = dense(&[[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]], vec![0.0, 1.0, 2.0]);
    assert!(LinearRegressionParams::default()
        .check()
        .unwrap()
        .fit(&constant)
        .is_err());
    let ridge = RidgeParams::default().check().unwrap().fit(&ex).unwrap();
    let p = predict(&ridge, &ex.features);
    assert!(
        p.iter().zip(&ex.labels).all(|(p, y)| (p - y).abs() < 0.05),
        "{p:?}"
    );
}

#[test]
fn linear_models_round_trip_through_serde() {
    let ex = separable(100, 0.5, 5);
    let logistic = LogisticRegressionParams::default()
        .check()
        .unwrap()
        .fit(&ex)
        .unwrap();
    let back: LogisticRegressionModel =
        serde_json::from_str(&serde_json::to_string(&logistic).unwrap()).unwrap();
    assert_eq!(
        predict(&back, &ex.features),
        predict(&logistic, &ex.features)
    );
    let ridge = RidgeParams::default()
        .check()
        .unwrap()
        .fit(&noiseless(50))
        .unwrap();
    let back: LinearRegressionModel =
        serde_json::from_str(&serde_json::to_string(&ridge).unwrap()).unwrap();
    let x = noiseless(20).features;
    assert_eq!(predict(&back, &x), predict(&ridge, &x));
    let w = ridge.linear_weights();
    let back: LinearModelWeights =
        serde_json::from_str(&serde_json::to_string(&w).unwrap()).unwrap();
    assert_eq!(back, w);
    let lying = r#"{"weights": [1.0, 2.0], "intercept": 0.0, "dim": 3}"#;
    assert!(serde_json::from_str::<LinearModelWeights>(lying).is_err());
}

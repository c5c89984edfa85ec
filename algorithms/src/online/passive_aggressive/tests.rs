use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::conformance::check_online_learner;
use crate::features::CsrMatrix;

fn dense(rows: &[&[f32]], labels: &[f32]) -> Examples {
    let d = rows[0].len();
    let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    let x = Array2::from_shape_vec((rows.len(), d), flat).unwrap();
    Examples::new(Features::Dense(x), labels.to_vec(), None).unwrap()
}

fn model(task: PaTask, variant: PaVariant, c: f32) -> PassiveAggressive {
    let mut p = PassiveAggressiveParams::new(2, task);
    p.variant = variant;
    p.c = c;
    p.epsilon = 0.5;
    PassiveAggressive::new(p.check().unwrap())
}

fn close(a: f32, b: f64) {
    assert!((f64::from(a) - b).abs() < 1e-6, "{a} vs {b}");
}

/// Linearly separable points (label = x0 + x1 > 0) with a margin, as dense or sparse rows.
fn separable(n: usize, seed: u64, sparse: bool) -> Examples {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows = Vec::with_capacity(n);
    let mut y = Vec::with_capacity(n);
    while rows.len() < n {
        let (a, b) = (
            rng.random_range(-2.0..2.0f32),
            rng.random_range(-2.0..2.0f32),
        );
        if (a + b).abs() < 0.3 {
            continue;
        }
        rows.push([a, b]);
        y.push(if a + b > 0.0 { 1.0 } else { 0.0 });
    }
    let features = if sparse {
        let mut m = CsrMatrix::with_capacity(2, n, 2);
        for r in &rows {
            m.push(0, r[0]);
            m.push(1, r[1]);
            m.finish_row();
        }
        Features::Sparse(m)
    } else {
        Features::Dense(Array2::from_shape_fn((n, 2), |(i, j)| rows[i][j]))
    };
    Examples::new(features, y, None).unwrap()
}

#[test]
fn pa_ii_matches_hand_computed_steps() {
    let mut m = model(PaTask::Classification, PaVariant::PaII, 1.0);
    // x = (1, 2), y = +1, m = 0: ℓ = 1, q = 1 + 4 + 1 = 6, τ = 1 / (6 + ½) = 2/13.
    m.learn(&dense(&[&[1.0, 2.0]], &[1.0])).unwrap();
    close(m.weights()[0], 2.0 / 13.0);
    close(m.weights()[1], 4.0 / 13.0);
    close(m.intercept(), 2.0 / 13.0);
    // x = (2, 0), y = −1, m = 4/13 + 2/13 = 6/13: ℓ = 19/13, q = 5, τ = (19/13) / 5.5 = 38/143.
    m.learn(&dense(&[&[2.0, 0.0]], &[0.0])).unwrap();
    close(m.weights()[0], -54.0 / 143.0);
    close(m.weights()[1], 44.0 / 143.0);
    close(m.intercept(), -16.0 / 143.0);
    // predict is σ(margin): at (0, 0) the margin is the intercept.
    let mut out = Vec::new();
    m.predict(&dense(&[&[0.0, 0.0]], &[0.0]).features, &mut out)
        .unwrap();
    close(out[0], 1.0 / (1.0 + (16.0f64 / 143.0).exp()));
}

#[test]
fn pa_and_pa_i_steps() {
    // Plain PA makes the hinge loss exactly 0: after one step y·m = 1.
    let mut m = model(PaTask::Classification, PaVariant::Pa, 1.0);
    let x = dense(&[&[3.0, -1.0]], &[1.0]);
    m.learn(&x).unwrap();
    let margin = m.weights()[0] * 3.0 - m.weights()[1] + m.intercept();
    close(margin, 1.0);
    // PA-I with a small C clips τ: ℓ = 1, q = 11, ℓ/q = 1/11 > C = 0.01.
    let mut m = model(PaTask::Classification, PaVariant::PaI, 0.01);
    m.learn(&x).unwrap();
    close(m.weights()[0], 0.03);
    close(m.intercept(), 0.01);
    // A weight of 2 doubles C, and a weight of 0 leaves the model alone.
    let mut w = x.clone();
    w.weights = Some(vec![2.0]);
    let mut m = model(PaTask::Classification, PaVariant::PaI, 0.01);
    m.learn(&w).unwrap();
    close(m.weights()[0], 0.06);
    w.weights = Some(vec![0.0]);
    let mut m = model(PaTask::Classification, PaVariant::Pa, 1.0);
    m.learn(&w).unwrap();
    assert_eq!(m.weights(), &[0.0, 0.0]);
    assert_eq!(m.rows_seen(), 1);
}

#[test]
fn regression_step_lands_on_the_epsilon_tube() {
    // x = (1, 1), y = 3, ε = 0.5, m = 0: ℓ = 2.5, q = 3, τ = 5/6 → prediction 2.5 = y − ε.
    let mut m = model(PaTask::Regression, PaVariant::Pa, 1.0);
    let x = dense(&[&[1.0, 1.0]], &[3.0]);
    m.learn(&x).unwrap();
    close(m.weights()[0], 5.0 / 6.0);
    let mut out = Vec::new();
    m.predict(&x.features, &mut out).unwrap();
    close(out[0], 2.5);
    // Inside the tube nothing moves.
    m.learn(&dense(&[&[1.0, 1.0]], &[2.9])).unwrap();
    close(m.weights()[0], 5.0 / 6.0);
}

#[test]
fn separates_separable_data_and_rejects_bad_labels() {
    let train = separable(400, 1, false);
    let test = separable(200, 2, false);
    let mut m = model(PaTask::Classification, PaVariant::PaI, 1.0);
    m.learn(&train).unwrap();
    let mut out = Vec::new();
    m.predict(&test.features, &mut out).unwrap();
    let correct = out
        .iter()
        .zip(&test.labels)
        .filter(|(p, y)| (**p > 0.5) == (**y == 1.0))
        .count();
    assert!(correct >= 190, "{correct}/200");
    assert!(m.learn(&dense(&[&[1.0, 1.0]], &[0.5])).is_err());
    assert!(m.learn(&dense(&[&[f32::INFINITY, 1.0]], &[1.0])).is_err());
    let wrong_dim = Examples::new(Features::Dense(Array2::zeros((1, 3))), vec![1.0], None);
    assert!(m.learn(&wrong_dim.unwrap()).is_err());
}

#[test]
fn params_name_the_bad_field() {
    let mut p = PassiveAggressiveParams::new(2, PaTask::Regression);
    p.c = 0.0;
    assert!(p
        .check()
        .unwrap_err()
        .to_string()
        .contains("passive-aggressive.c"));
    p.c = 1.0;
    p.epsilon = -1.0;
    assert!(p
        .check()
        .unwrap_err()
        .to_string()
        .contains("passive-aggressive.epsilon"));
    let p: PassiveAggressiveParams =
        serde_json::from_str(r#"{"dim": 4, "variant": "pa-ii"}"#).unwrap();
    assert_eq!(
        (p.variant, p.task, p.c),
        (PaVariant::PaII, PaTask::Classification, 1.0)
    );
}

#[test]
fn conformance() {
    for variant in [PaVariant::Pa, PaVariant::PaI, PaVariant::PaII] {
        let make = |_| model(PaTask::Classification, variant, 0.5);
        check_online_learner(make, &separable(60, 3, false), 1e-5);
        check_online_learner(make, &separable(60, 4, true), 1e-5);
    }
    let mut reg = separable(60, 5, true);
    let Features::Sparse(m) = &reg.features else {
        unreachable!()
    };
    reg.labels = (0..60)
        .map(|i| m.row(i).1.iter().sum::<f32>() * 2.0 + 1.0)
        .collect();
    check_online_learner(
        |_| model(PaTask::Regression, PaVariant::PaII, 1.0),
        &reg,
        1e-5,
    );
}

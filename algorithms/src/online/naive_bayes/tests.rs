use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::conformance::check_online_learner;
use crate::features::CsrMatrix;
use crate::learner::{OnlineLearner, Predictor};
use crate::transform::Params;

fn dense(rows: &[&[f32]], labels: &[f32]) -> Examples {
    let d = rows[0].len();
    let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    let x = Array2::from_shape_vec((rows.len(), d), flat).unwrap();
    Examples::new(Features::Dense(x), labels.to_vec(), None).unwrap()
}

fn sparse(dim: u64, rows: &[&[(u32, f32)]], labels: &[f32]) -> Examples {
    let mut m = CsrMatrix::with_capacity(dim, rows.len(), 4);
    for r in rows {
        for &(i, v) in *r {
            m.push(i, v);
        }
        m.finish_row();
    }
    Examples::new(Features::Sparse(m), labels.to_vec(), None).unwrap()
}

/// Gaussian blobs: class c centred at (2c, −c) plus noise; `d` features.
fn blobs(n: usize, classes: usize, d: usize, seed: u64) -> Examples {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Array2::zeros((n, d));
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let c = rng.random_range(0..classes);
        for j in 0..d {
            let centre = if j % 2 == 0 {
                2.0 * c as f32
            } else {
                -(c as f32)
            };
            x[[i, j]] = centre + rng.random_range(-1.0..1.0f32);
        }
        y.push(c as f32);
    }
    Examples::new(Features::Dense(x), y, None).unwrap()
}

/// Word counts over a vocabulary of 16: class c favours words 4c..4c+4.
fn docs(n: usize, classes: usize, seed: u64) -> Examples {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut m = CsrMatrix::with_capacity(16, n, 4);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let c = rng.random_range(0..classes);
        for w in 0..16u32 {
            let favoured = (w as usize) / 4 == c;
            if rng.random_bool(if favoured { 0.7 } else { 0.05 }) {
                m.push(w, rng.random_range(1..4) as f32);
            }
        }
        m.finish_row();
        y.push(c as f32);
    }
    Examples::new(Features::Sparse(m), y, None).unwrap()
}

fn gaussian(dim: u64, classes: usize) -> GaussianNb {
    GaussianNb::new(GaussianNbParams::new(dim, classes).check().unwrap())
}

fn multinomial(dim: u64, classes: usize) -> MultinomialNb {
    MultinomialNb::new(MultinomialNbParams::new(dim, classes).check().unwrap())
}

fn predict<P: Predictor>(m: &P, x: &Examples) -> Vec<f32> {
    let mut out = Vec::new();
    m.predict(&x.features, &mut out).unwrap();
    out
}

#[test]
fn gaussian_matches_hand_computed_posterior() {
    // Class 0: {1, 3} → μ 2, σ² 1. Class 1: {5, 7, 9} → μ 7, σ² 8/3. All: σ² 8, so ε = 8e-9.
    let mut m = gaussian(1, 2);
    m.learn(&dense(
        &[&[1.0], &[5.0], &[3.0], &[9.0], &[7.0]],
        &[0., 1., 0., 1., 1.],
    ))
    .unwrap();
    assert!((m.mean(0, 0) - 2.0).abs() < 1e-12 && (m.mean(1, 0) - 7.0).abs() < 1e-12);
    assert!((m.variance(0, 0) - 1.0).abs() < 1e-12);
    assert!((m.variance(1, 0) - 8.0 / 3.0).abs() < 1e-12);
    assert!((m.epsilon() - 8e-9).abs() < 1e-20);
    // P(y=1 | x=4) = 0.6·N(4; 7, 8/3) / (0.4·N(4; 2, 1) + 0.6·N(4; 7, 8/3)), by hand.
    let p = predict(&m, &dense(&[&[4.0]], &[0.0]))[0];
    assert!((p - 0.556_643_4).abs() < 1e-6, "{p}");
}

#[test]
fn gaussian_multiclass_matches_first_principles() {
    let data = blobs(60, 3, 2, 3);
    let mut m = gaussian(2, 3);
    m.learn(&data).unwrap();
    let Features::Dense(x) = &data.features else {
        unreachable!()
    };
    // Two-pass statistics straight from the definition.
    let mut jll = [[0.0f64; 3]; 1];
    let probe = [1.0f64, -0.5];
    let mut max_var = 0.0f64;
    for j in 0..2 {
        let col: Vec<f64> = x.column(j).iter().map(|&v| f64::from(v)).collect();
        let mu = col.iter().sum::<f64>() / 60.0;
        max_var = max_var.max(col.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / 60.0);
    }
    let eps = 1e-9 * max_var;
    for (c, slot) in jll[0].iter_mut().enumerate() {
        let rows: Vec<usize> = (0..60).filter(|&i| data.labels[i] as usize == c).collect();
        let n = rows.len() as f64;
        let mut s = (n / 60.0).ln();
        for (j, &pj) in probe.iter().enumerate() {
            let vals: Vec<f64> = rows.iter().map(|&i| f64::from(x[[i, j]])).collect();
            let mu = vals.iter().sum::<f64>() / n;
            let var = vals.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / n + eps;
            s += -0.5 * (2.0 * std::f64::consts::PI * var).ln() - (pj - mu).powi(2) / (2.0 * var);
        }
        *slot = s;
    }
    let z: f64 = jll[0].iter().map(|v| v.exp()).sum();
    let mut scores = Vec::new();
    let probe_x = dense(&[&[1.0, -0.5]], &[0.0]);
    assert_eq!(m.predict_scores(&probe_x.features, &mut scores).unwrap(), 3);
    for c in 0..3 {
        assert!((f64::from(scores[c]) - jll[0][c].exp() / z).abs() < 1e-5);
    }
}

#[test]
fn gaussian_sparse_equals_dense_and_weights_count_as_copies() {
    let d = dense(
        &[&[0.0, 2.0], &[1.0, 0.0], &[3.0, 3.0], &[0.0, 0.0]],
        &[0., 1., 1., 0.],
    );
    let s = sparse(
        2,
        &[&[(1, 2.0)], &[(0, 1.0)], &[(0, 3.0), (1, 3.0)], &[]],
        &[0., 1., 1., 0.],
    );
    let (mut a, mut b) = (gaussian(2, 2), gaussian(2, 2));
    a.learn(&d).unwrap();
    b.learn(&s).unwrap();
    assert_eq!(predict(&a, &d), predict(&b, &s));
    let mut w = d.clone();
    w.weights = Some(vec![2.0, 1.0, 1.0, 1.0]);
    let mut c = gaussian(2, 2);
    c.learn(&w).unwrap();
    let mut dup = gaussian(2, 2);
    dup.learn(&d.slice(0, 1)).unwrap();
    dup.learn(&d).unwrap();
    for (p, q) in predict(&c, &d).iter().zip(predict(&dup, &d)) {
        assert!((p - q).abs() < 1e-6);
    }
}

#[test]
fn multinomial_tiny_corpus_by_hand() {
    // Vocabulary a, b, c. Class 0: "a a b", "a c"; class 1: "b c c". α = 1:
    // θ0 = (4, 2, 2)/8, θ1 = (1, 2, 3)/6, priors 2/3 and 1/3.
    // "a b": class 0 ∝ 2/3·1/2·1/4 = 1/12, class 1 ∝ 1/3·1/6·1/3 = 1/54 → P(1) = 2/11.
    let corpus = sparse(
        3,
        &[
            &[(0, 2.0), (1, 1.0)],
            &[(0, 1.0), (2, 1.0)],
            &[(1, 1.0), (2, 2.0)],
        ],
        &[0., 0., 1.],
    );
    let mut m = multinomial(3, 2);
    m.learn(&corpus).unwrap();
    assert!((m.feature_log_prob(0, 0) - 0.5f64.ln()).abs() < 1e-12);
    assert!((m.feature_log_prob(1, 2) - 0.5f64.ln()).abs() < 1e-12);
    let p = predict(&m, &sparse(3, &[&[(0, 1.0), (1, 1.0)]], &[0.0]))[0];
    assert!((p - 2.0 / 11.0).abs() < 1e-6, "{p}");
    // The same question in dense form.
    let p = predict(&m, &dense(&[&[1.0, 1.0, 0.0]], &[0.0]))[0];
    assert!((p - 2.0 / 11.0).abs() < 1e-6, "{p}");
}

#[test]
fn multinomial_multiclass_learns_topics() {
    let train = docs(300, 4, 1);
    let test = docs(200, 4, 2);
    let mut m = multinomial(16, 4);
    m.learn(&train).unwrap();
    let pred = predict(&m, &test);
    let acc = pred
        .iter()
        .zip(&test.labels)
        .filter(|(p, y)| p == y)
        .count() as f32
        / 200.0;
    assert!(acc > 0.9, "accuracy {acc}");
    let mut scores = Vec::new();
    assert_eq!(m.predict_scores(&test.features, &mut scores).unwrap(), 4);
    assert!((scores[..4].iter().sum::<f32>() - 1.0).abs() < 1e-5);
}

#[test]
fn unseen_model_is_uniform_and_bad_input_is_rejected() {
    let m = multinomial(3, 2);
    assert_eq!(predict(&m, &sparse(3, &[&[(0, 1.0)]], &[0.0])), vec![0.5]);
    let mut m = multinomial(3, 2);
    assert!(m.learn(&sparse(3, &[&[(0, -1.0)]], &[0.0])).is_err());
    assert!(m.learn(&sparse(3, &[&[(0, 1.0)]], &[2.0])).is_err());
    assert!(m.learn(&sparse(3, &[&[(0, 1.0)]], &[0.5])).is_err());
    assert!(m.learn(&sparse(4, &[&[(0, 1.0)]], &[0.0])).is_err());
    let mut g = gaussian(1, 3);
    assert!(g.learn(&dense(&[&[f32::NAN]], &[0.0])).is_err());
    assert_eq!(g.rows_seen(), 0);
}

#[test]
fn params_name_the_bad_field() {
    let err = |e: Error| e.to_string();
    assert!(err(GaussianNbParams::new(0, 2).check().unwrap_err()).contains("gaussian-nb.dim"));
    let mut p = GaussianNbParams::new(2, 2);
    p.var_smoothing = 0.0;
    assert!(err(p.check().unwrap_err()).contains("var_smoothing"));
    assert!(err(MultinomialNbParams::new(2, 1).check().unwrap_err()).contains("classes"));
    let mut p = MultinomialNbParams::new(2, 2);
    p.alpha = -1.0;
    assert!(err(p.check().unwrap_err()).contains("multinomial-nb.alpha"));
}

#[test]
fn conformance() {
    check_online_learner(|_| gaussian(3, 2), &blobs(50, 2, 3, 7), 1e-5);
    check_online_learner(|_| gaussian(2, 3), &blobs(50, 3, 2, 8), 1e-5);
    check_online_learner(|_| multinomial(16, 2), &docs(50, 2, 9), 1e-5);
    check_online_learner(|_| multinomial(16, 4), &docs(60, 4, 10), 1e-5);
}

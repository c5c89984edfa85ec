use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::conformance::check_online_learner;
use crate::features::CsrMatrix;
use crate::optim::SgdParams;

/// Four well-separated 2-d blobs (class c at angle c·90°, radius 4), dense or sparse.
fn blobs(n: usize, classes: usize, seed: u64, sparse: bool) -> Examples {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Array2::zeros((n, 2));
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let c = rng.random_range(0..classes);
        let angle = c as f32 * std::f32::consts::TAU / classes as f32;
        x[[i, 0]] = 4.0 * angle.cos() + rng.random_range(-1.0..1.0f32);
        x[[i, 1]] = 4.0 * angle.sin() + rng.random_range(-1.0..1.0f32);
        y.push(c as f32);
    }
    let features = if sparse {
        let mut m = CsrMatrix::with_capacity(2, n, 2);
        for r in x.rows() {
            m.push(0, r[0]);
            m.push(1, r[1]);
            m.finish_row();
        }
        Features::Sparse(m)
    } else {
        Features::Dense(x)
    };
    Examples::new(features, y, None).unwrap()
}

fn model(classes: usize, rule: RuleParams, l2: f32) -> Softmax {
    let mut p = SoftmaxParams::new(2, classes);
    p.rule = rule;
    p.l2 = l2;
    Softmax::new(p.check().unwrap())
}

#[test]
fn separates_well_separated_classes() {
    let sgd = RuleParams::Sgd(SgdParams::constant(0.1));
    for rule in [adagrad(), sgd] {
        let mut m = model(4, rule, 1e-4);
        m.learn(&blobs(2000, 4, 1, false)).unwrap();
        let test = blobs(500, 4, 2, true);
        let mut pred = Vec::new();
        m.predict(&test.features, &mut pred).unwrap();
        let acc = pred
            .iter()
            .zip(&test.labels)
            .filter(|(p, y)| p == y)
            .count() as f32
            / 500.0;
        assert!(acc >= 0.95, "{rule:?}: accuracy {acc}");
        let mut scores = Vec::new();
        assert_eq!(m.predict_scores(&test.features, &mut scores).unwrap(), 4);
        for (i, p) in scores.chunks(4).enumerate() {
            assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            assert_eq!(argmax(p) as f32, pred[i]);
        }
    }
}

#[test]
fn one_sgd_step_by_hand_and_stable_softmax() {
    // Fresh model: p = (1/3, 1/3, 1/3). Row x = (2, 0), y = 1, η = 0.5 constant:
    // W[0·3 + c] −= 0.5 · (p_c − [c = 1]) · 2, b_c −= 0.5 · (p_c − [c = 1]).
    let mut m = model(3, RuleParams::Sgd(SgdParams::constant(0.5)), 0.0);
    let x = Array2::from_shape_vec((1, 2), vec![2.0, 0.0]).unwrap();
    m.learn(&Examples::new(Features::Dense(x), vec![1.0], None).unwrap())
        .unwrap();
    assert!((m.weight(0, 0) + 1.0 / 3.0).abs() < 1e-6);
    assert!((m.weight(0, 1) - 2.0 / 3.0).abs() < 1e-6);
    assert_eq!(m.weight(1, 1), 0.0);
    // Huge logits do not overflow.
    let mut p = [0.0; 3];
    let big = Array2::from_shape_vec((1, 2), vec![1e6, 0.0]).unwrap();
    m.probabilities(&Features::Dense(big).row(0), &mut p);
    assert!(
        p.iter().all(|v| v.is_finite()) && (p[1] - 1.0).abs() < 1e-6,
        "{p:?}"
    );
}

#[test]
fn params_and_labels_are_checked() {
    let mut p = SoftmaxParams::new(2, 1);
    assert!(p
        .check()
        .unwrap_err()
        .to_string()
        .contains("softmax.classes"));
    p.classes = 3;
    p.l2 = -1.0;
    assert!(p.check().unwrap_err().to_string().contains("softmax.l2"));
    p.l2 = 0.0;
    p.rule = RuleParams::AdaGrad(AdaGradParams {
        eta: 0.0,
        epsilon: 0.0,
    });
    assert!(p
        .check()
        .unwrap_err()
        .to_string()
        .contains("softmax.rule.adagrad.eta"));
    let mut m = model(3, adagrad(), 0.0);
    let mut bad = blobs(4, 3, 1, false);
    bad.labels[2] = 3.0;
    assert!(m.learn(&bad).is_err());
    let p: SoftmaxParams =
        serde_json::from_str(r#"{"dim": 8, "classes": 3, "rule": {"kind": "adam"}}"#).unwrap();
    assert!(matches!(p.rule, RuleParams::Adam(_)));
}

#[test]
fn conformance() {
    let ftrl: RuleParams = serde_json::from_str(r#"{"kind": "ftrl"}"#).unwrap();
    for rule in [adagrad(), ftrl, RuleParams::default()] {
        check_online_learner(|_| model(3, rule, 1e-3), &blobs(60, 3, 3, false), 1e-5);
        check_online_learner(|_| model(2, rule, 0.0), &blobs(60, 2, 4, true), 1e-5);
    }
}

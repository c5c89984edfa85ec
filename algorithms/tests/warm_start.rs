//! The cold-start path: a batch logistic regression trained on history (through linfa) seeds
//! the online FTRL learner, which then follows the stream.

use eddy_algorithms::batch::LogisticRegressionParams;
use eddy_algorithms::eval::{ProgressiveConfig, Report};
use eddy_algorithms::features::{Examples, Features};
use eddy_algorithms::learner::{BatchLearner, OnlineLearner, Predictor, Task};
use eddy_algorithms::online::linear::FtrlLogisticParams;
use eddy_algorithms::transform::Params;
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A noisy linear concept over 6 dense features.
fn data(rows: usize, seed: u64) -> Examples {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let w = [1.5f32, -2.0, 0.7, 0.0, 1.1, -0.4];
    let mut x = Array2::<f32>::zeros((rows, w.len()));
    let mut y = Vec::with_capacity(rows);
    for i in 0..rows {
        let mut z = -0.3;
        for (j, wj) in w.iter().enumerate() {
            let v: f32 = rng.random_range(-1.0..1.0);
            x[[i, j]] = v;
            z += wj * v;
        }
        let p = 1.0 / (1.0 + (-z).exp());
        y.push(if rng.random::<f32>() < p { 1.0 } else { 0.0 });
    }
    Examples::new(Features::Dense(x), y, None).unwrap()
}

fn progressive(learner: &mut dyn OnlineLearner, stream: &Examples) -> Report {
    let mut eval = ProgressiveConfig::default()
        .build(Task::BinaryClassification)
        .unwrap();
    for start in (0..stream.len()).step_by(100) {
        let end = (start + 100).min(stream.len());
        eval.process(learner, &stream.slice(start, end)).unwrap();
    }
    eval.finish(learner).unwrap()
}

#[test]
fn batch_model_warm_starts_ftrl_and_beats_a_cold_start() {
    let history = data(5000, 1);
    let stream = data(2000, 2);
    let batch = LogisticRegressionParams {
        alpha: 0.01,
        ..Default::default()
    }
    .check()
    .unwrap()
    .fit(&history)
    .unwrap();
    let weights = batch.linear_weights();
    assert_eq!(weights.dim, 6);

    let params = FtrlLogisticParams {
        dim: Some(6),
        ..Default::default()
    };
    let mut warm = params.build().unwrap();
    warm.warm_start(&weights.weights, weights.intercept)
        .unwrap();

    // before learning anything, the warm learner predicts what the batch model predicts
    let (mut a, mut b) = (Vec::new(), Vec::new());
    warm.predict(&stream.features, &mut a).unwrap();
    batch.predict(&stream.features, &mut b).unwrap();
    for (p, q) in a.iter().zip(&b) {
        assert!((p - q).abs() < 1e-4, "{p} vs {q}");
    }

    // following the stream from there beats starting cold
    let mut cold = params.build().unwrap();
    let warm_report = progressive(&mut warm, &stream);
    let cold_report = progressive(&mut cold, &stream);
    let (w, c) = (
        warm_report.get("logloss").unwrap(),
        cold_report.get("logloss").unwrap(),
    );
    assert!(w < c - 0.01, "warm {w} vs cold {c}");
}

//! The deep learners end to end through the public API (cargo feature `torch`): the standard
//! pipeline over the synthetic click stream → a learner from the registry → progressive
//! validation → a checksummed model file that loads into identical predictions.
#![cfg(feature = "torch")]

use eddy_algorithms::features::{Examples, Features};
use eddy_algorithms::learner::OnlineLearner;
use eddy_algorithms::learners::{LearnerKind, LearnerSpec};
use eddy_algorithms::pipeline::StandardPipeline;
use eddy_algorithms::trained::{OnlineModel, TrainedModel};
use eddy_core::datagen::ctr::{CtrGenerator, DEFAULT_SEED};

fn pipeline() -> eddy_algorithms::pipeline::Pipeline {
    StandardPipeline {
        label: "label".into(),
        numeric: (0..5).map(|j| format!("f{j}")).collect(),
        categorical: (0..10).map(|k| format!("c{k}")).collect(),
        crosses: Vec::new(),
        scale: true,
        dense: false,
        hash_bits: 18,
    }
    .build()
    .unwrap()
}

fn logloss(p: &[f32], y: &[f32]) -> f64 {
    let s: f64 = p
        .iter()
        .zip(y)
        .map(|(&p, &y)| {
            let q = f64::from(p).clamp(1e-7, 1.0 - 1e-7);
            if y > 0.5 {
                -q.ln()
            } else {
                -(1.0 - q).ln()
            }
        })
        .sum();
    s / p.len() as f64
}

#[test]
fn deep_learners_train_on_the_click_stream_and_round_trip_their_model_file() {
    let generator = CtrGenerator::new(DEFAULT_SEED, false);
    let rows = 20_000usize;
    let base_rate = {
        let b = generator.batch(0, rows).unwrap();
        let y = b
            .column_by_name("label")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .iter()
            .map(|v| v.unwrap_or(0) as f64)
            .sum::<f64>();
        y / rows as f64
    };
    // logloss of always predicting the base rate: what a model must beat
    let constant = -(base_rate * base_rate.ln() + (1.0 - base_rate) * (1.0 - base_rate).ln());
    let dir = tempfile::tempdir().unwrap();
    for kind in [LearnerKind::DeepFm, LearnerKind::WideDeep, LearnerKind::Dcn] {
        let mut pipe = pipeline();
        let mut spec = LearnerSpec::new(kind);
        spec.set("seed", serde_json::json!(7)).unwrap();
        spec.check().unwrap();
        let mut model = spec.online(pipe.dim(), false).unwrap();
        let mut ex = Examples::new(Features::Sparse(Default::default()), vec![], None).unwrap();
        let (mut preds, mut labels, mut out) = (Vec::new(), Vec::new(), Vec::new());
        for start in (0..rows).step_by(1000) {
            let batch = generator.batch(start as u64, 1000).unwrap();
            pipe.learn_examples_into(&batch, &mut ex).unwrap();
            model.predict_learn(&ex, &mut out).unwrap();
            preds.extend_from_slice(&out);
            labels.extend_from_slice(&ex.labels);
        }
        assert_eq!(model.rows_seen(), rows as u64);
        let tail = logloss(&preds[rows / 2..], &labels[rows / 2..]);
        assert!(
            tail < constant - 0.01,
            "{kind}: progressive logloss {tail} vs constant {constant}"
        );

        let trained = TrainedModel {
            pipeline: pipe,
            model,
        };
        let path = dir.path().join(format!("{kind}.eddy"));
        trained.save(&path).unwrap();
        let back = TrainedModel::load(&path).unwrap();
        assert!(matches!(back.model, OnlineModel::Deep(_)));
        assert_eq!(back.model.name(), kind.name());
        let probe = generator.batch(rows as u64, 500).unwrap();
        let (mut f1, mut f2) = (
            Features::Sparse(Default::default()),
            Features::Sparse(Default::default()),
        );
        let (mut p1, mut p2) = (Vec::new(), Vec::new());
        trained.predict_batch(&probe, &mut f1, &mut p1).unwrap();
        back.predict_batch(&probe, &mut f2, &mut p2).unwrap();
        assert_eq!(
            p1, p2,
            "{kind}: predictions after the model file round trip"
        );

        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 3;
        bytes[at] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        assert!(
            TrainedModel::load(&path).is_err(),
            "{kind}: corrupt file loaded"
        );
    }
}

//! Tests of the deep learners: the conformance suite for each network, learning a pairwise
//! interaction a linear model cannot, params checked by key, corrupt snapshots refused.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::conformance::check_online_learner;
use crate::features::{CsrMatrix, Examples, Features};
use crate::learner::{OnlineLearner, Predictor};
use crate::learners::{LearnerKind, LearnerSpec};
use crate::transform::Params;

const DIM: u64 = 1 << 10;
const KINDS: [DeepKind; 3] = [DeepKind::WideDeep, DeepKind::DeepFm, DeepKind::Dcn];

/// Rows of one numeric feature (index 0) and two categorical fields `a` (8 values, indices
/// 1..9) and `b` (8 values, indices 9..17); the label follows `a XOR b` parity (flipped with
/// probability 0.1), which no linear model over the fields can learn.
fn xor_data(n: usize, seed: u64) -> Examples {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut indptr = vec![0u32];
    let (mut indices, mut values, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let (a, b) = (rng.random_range(0..8u32), rng.random_range(0..8u32));
        let x: f32 = rng.random_range(-1.0..1.0);
        indices.extend([0, 1 + a, 9 + b]);
        values.extend([x, 1.0, 1.0]);
        indptr.push(indices.len() as u32);
        let y = ((a ^ b) & 1 == 1) != (rng.random::<f32>() < 0.1);
        labels.push(f32::from(y));
    }
    let m = CsrMatrix::from_parts(DIM, indptr, indices, values).unwrap();
    Examples::new(Features::Sparse(m), labels, None).unwrap()
}

fn params(kind: DeepKind, seed: u64, batch: usize) -> DeepValidParams {
    let mut p = DeepParams::new(kind, DIM);
    p.seed = seed;
    p.batch_size = batch;
    p.slots = 4;
    p.hidden = vec![16, 8];
    p.table_bits = 8;
    p.check().unwrap()
}

/// Seeded runs and snapshot → restore are held to exact equality by the suite itself; the
/// batch-shape comparisons (a mini-batch of 4 against single rows) get a relative 1e-5, because
/// libtorch's matmul kernels sum in a shape- and CPU-dependent order (seen: 0.51227653 vs
/// 0.5122766 on one CI machine and exact on another).
const BATCH_SHAPE_TOLERANCE: f32 = 1e-5;

#[test]
fn every_network_passes_the_conformance_suite() {
    let data = xor_data(40, 1);
    for kind in KINDS {
        check_online_learner(
            |seed| DeepModel::new(params(kind, seed, 4)).unwrap(),
            &data,
            BATCH_SHAPE_TOLERANCE,
        );
    }
}

fn tail_logloss(model: &mut DeepModel, data: &Examples) -> f64 {
    let mut p = Vec::new();
    model.predict_learn(data, &mut p).unwrap();
    let n = data.len();
    let tail = n / 2..n;
    let sum: f64 = tail
        .clone()
        .map(|i| {
            let q = f64::from(p[i]).clamp(1e-7, 1.0 - 1e-7);
            if data.labels[i] > 0.5 {
                -q.ln()
            } else {
                -(1.0 - q).ln()
            }
        })
        .sum();
    sum / tail.len() as f64
}

#[test]
fn every_network_learns_an_interaction_the_wide_part_cannot() {
    let data = xor_data(30_000, 2);
    // the label noise puts the floor at H(0.1) = 0.325; a linear model stays near ln 2 = 0.693
    for kind in KINDS {
        let mut m = DeepModel::new(params(kind, 3, 64)).unwrap();
        let loss = tail_logloss(&mut m, &data);
        assert!(loss < 0.45, "{}: progressive logloss {loss}", kind.name());
        assert_eq!(m.steps(), 30_000 / 64);
    }
}

#[test]
fn the_network_matters_a_wide_only_model_cannot_learn_xor() {
    // mutation check: with every embedding slot dropped (slots carry nothing), the same
    // learner is linear and stays near ln 2
    let data = xor_data(30_000, 2);
    let mut p = DeepParams::new(DeepKind::DeepFm, DIM);
    p.batch_size = 64;
    p.slots = 1; // only the numeric feature reaches the network
    p.hidden = vec![16, 8];
    let mut m = DeepModel::new(p.check().unwrap()).unwrap();
    let loss = tail_logloss(&mut m, &data);
    assert!(loss > 0.6, "a linear model learned XOR? logloss {loss}");
}

#[test]
fn params_are_checked_by_key_name() {
    let mut spec = LearnerSpec::new(LearnerKind::DeepFm);
    spec.set("embeding-dim", serde_json::json!(4)).unwrap();
    let e = spec.check().unwrap_err().to_string();
    assert!(e.contains("embeding-dim"), "{e}");

    let mut spec = LearnerSpec::new(LearnerKind::DeepFm);
    spec.set("cross-layers", serde_json::json!(2)).unwrap();
    let e = spec.check().unwrap_err().to_string();
    assert!(e.contains("cross-layers"), "{e}");

    let mut spec = LearnerSpec::new(LearnerKind::Dcn);
    spec.set("kind", serde_json::json!("deepfm")).unwrap();
    let e = spec.check().unwrap_err().to_string();
    assert!(e.contains("kind"), "{e}");

    let mut spec = LearnerSpec::new(LearnerKind::WideDeep);
    spec.set("hidden", serde_json::json!([64, 0])).unwrap();
    let e = spec.check().unwrap_err().to_string();
    assert!(e.contains("deep.hidden"), "{e}");

    let mut spec = LearnerSpec::new(LearnerKind::Dcn);
    spec.set("dense-rule.kind", serde_json::json!("adagrad"))
        .unwrap();
    spec.set("dense-rule.eta", serde_json::json!(-1.0)).unwrap();
    let e = spec.check().unwrap_err().to_string();
    assert!(e.contains("dense-rule"), "{e}");

    for kind in [LearnerKind::DeepFm, LearnerKind::WideDeep, LearnerKind::Dcn] {
        let model = LearnerSpec::new(kind).online(DIM, false).unwrap();
        assert_eq!(model.name(), kind.name());
    }
}

#[test]
fn cuda_is_refused_where_libtorch_has_none() {
    let mut p = DeepParams::new(DeepKind::DeepFm, DIM);
    p.device = DeviceChoice::Cuda;
    let built = DeepModel::new(p.check().unwrap());
    if tch::Cuda::is_available() {
        assert!(built.is_ok());
    } else {
        let e = built.unwrap_err().to_string();
        assert!(e.contains("deep.device"), "{e}");
    }
    p.device = DeviceChoice::Auto;
    assert!(DeepModel::new(p.check().unwrap()).is_ok());
}

#[test]
fn a_corrupt_snapshot_is_refused() {
    let mut m = DeepModel::new(params(DeepKind::Dcn, 1, 4)).unwrap();
    m.learn(&xor_data(10, 4)).unwrap();
    let mut v = serde_json::to_value(&m).unwrap();
    v["emb"].as_array_mut().unwrap().pop();
    let e = serde_json::from_value::<DeepModel>(v)
        .unwrap_err()
        .to_string();
    assert!(e.contains("emb"), "{e}");

    let mut v = serde_json::to_value(&m).unwrap();
    v["pending"]["indices"][0] = serde_json::json!(DIM + 5);
    assert!(serde_json::from_value::<DeepModel>(v).is_err());

    let mut v = serde_json::to_value(&m).unwrap();
    let mut p: serde_json::Value = serde_json::from_str(v["params"].as_str().unwrap()).unwrap();
    p["slots"] = serde_json::json!(0);
    v["params"] = serde_json::json!(p.to_string());
    let e = serde_json::from_value::<DeepModel>(v)
        .unwrap_err()
        .to_string();
    assert!(e.contains("slots"), "{e}");
}

#[test]
fn bad_input_is_refused_and_leaves_no_trace() {
    let mut m = DeepModel::new(params(DeepKind::DeepFm, 1, 8)).unwrap();
    let mut data = xor_data(6, 5);
    m.learn(&data.slice(0, 3)).unwrap();
    let before = serde_json::to_vec(&m).unwrap();
    data.labels[4] = 2.0;
    let e = m.learn(&data.slice(3, 6)).unwrap_err().to_string();
    assert!(e.contains("label") && e.contains("row 1"), "{e}");
    assert_eq!(serde_json::to_vec(&m).unwrap(), before);
    assert_eq!(m.rows_seen(), 3);

    let wide = Features::Sparse(CsrMatrix::with_capacity(DIM * 2, 0, 0));
    let mut out = Vec::new();
    let e = m.predict(&wide, &mut out).unwrap_err().to_string();
    assert!(e.contains("dim"), "{e}");
}

//! The conformance suite every online learner passes (STYLE habit 8, River's `checks`):
//!
//! 1. empty input neither panics nor errors, and gives empty output;
//! 2. seeded runs are deterministic;
//! 3. learning a batch equals learning its rows one at a time;
//! 4. `predict_learn` equals predict-then-learn row by row;
//! 5. snapshot → restore → continue gives identical predictions to an uninterrupted run;
//! 6. `predict` does not change the model.
//!
//! Call [`check_online_learner`] from a learner's tests with a constructor and some examples.

use serde::{de::DeserializeOwned, Serialize};

use crate::features::Examples;
use crate::learner::OnlineLearner;

fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let ok = (x.is_nan() && y.is_nan()) || (x - y).abs() <= tol * (1.0 + x.abs().max(y.abs()));
        assert!(ok, "{what}: row {i}: {x} vs {y}");
    }
}

fn predictions<L: OnlineLearner>(l: &L, ex: &Examples) -> Vec<f32> {
    let mut out = Vec::new();
    l.predict(&ex.features, &mut out).expect("predict");
    out
}

/// Runs the whole suite. `make(seed)` builds a fresh learner; `data` should have at least a
/// few dozen rows with both labels (or a spread of targets). `tol` is the relative tolerance
/// for comparing predictions (0 asks for exact equality).
pub fn check_online_learner<L, F>(make: F, data: &Examples, tol: f32)
where
    L: OnlineLearner + Serialize + DeserializeOwned + 'static,
    F: Fn(u64) -> L,
{
    let n = data.len();
    assert!(n >= 4, "conformance needs at least 4 examples");

    // 1. empty input
    let mut l = make(7);
    let empty = data.slice(0, 0);
    l.learn(&empty).expect("learn on empty input");
    let mut out = vec![1.0];
    l.predict(&empty.features, &mut out)
        .expect("predict on empty input");
    assert!(
        out.is_empty(),
        "predict on empty input must clear the output"
    );
    l.predict_learn(&empty, &mut out)
        .expect("predict_learn on empty input");
    assert!(out.is_empty());
    assert_eq!(l.rows_seen(), 0);

    // 2. determinism
    let mut a = make(42);
    let mut b = make(42);
    a.learn(data).expect("learn");
    b.learn(data).expect("learn");
    assert_close(
        "seeded runs",
        &predictions(&a, data),
        &predictions(&b, data),
        0.0,
    );
    assert_eq!(a.rows_seen(), n as u64);

    // 3. batch == one row at a time
    let mut one = make(42);
    for i in 0..n {
        one.learn(&data.slice(i, i + 1)).expect("learn one row");
    }
    assert_close(
        "batch vs one row at a time",
        &predictions(&a, data),
        &predictions(&one, data),
        tol,
    );

    // 4. predict_learn == predict then learn, row by row
    let mut pl = make(42);
    let mut progressive = Vec::new();
    pl.predict_learn(data, &mut progressive)
        .expect("predict_learn");
    let mut manual = make(42);
    let mut expected = Vec::with_capacity(n);
    for i in 0..n {
        let row = data.slice(i, i + 1);
        expected.extend(predictions(&manual, &row));
        manual.learn(&row).expect("learn");
    }
    assert_close("predict_learn", &progressive, &expected, tol);
    assert_close(
        "model after predict_learn",
        &predictions(&pl, data),
        &predictions(&a, data),
        tol,
    );

    // 5. snapshot → restore → continue
    let half = n / 2;
    let mut first = make(42);
    first.learn(&data.slice(0, half)).expect("learn");
    let bytes = serde_json::to_vec(&first).expect("snapshot");
    let mut restored: L = serde_json::from_slice(&bytes).expect("restore");
    assert_close(
        "restored predictions",
        &predictions(&first, data),
        &predictions(&restored, data),
        0.0,
    );
    first.learn(&data.slice(half, n)).expect("learn");
    restored.learn(&data.slice(half, n)).expect("learn");
    assert_close(
        "continued after restore",
        &predictions(&first, data),
        &predictions(&restored, data),
        0.0,
    );

    // 5b. the model file (bincode payload) round-trips too: bincode is not self-describing, so
    // a learner whose state holds an internally tagged enum would save but never load.
    let file = crate::model::encode("conformance", &first).expect("encode model file");
    let loaded: L = crate::model::decode(&file, "conformance").expect("decode model file");
    assert_close(
        "predictions after the model file round trip",
        &predictions(&first, data),
        &predictions(&loaded, data),
        0.0,
    );

    // 6. predict does not mutate
    let before = serde_json::to_vec(&first).expect("snapshot");
    let _ = predictions(&first, data);
    let after = serde_json::to_vec(&first).expect("snapshot");
    assert!(before == after, "predict changed the model");
}

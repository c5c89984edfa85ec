//! Params and input checks shared by the batch learners.

use ndarray::Array2;

use super::{dense, param_of, separable, to_sparse};
use crate::batch::*;
use crate::error::Error;
use crate::features::{Examples, Features};
use crate::learner::{BatchLearner, Predictor};
use crate::transform::Params;

#[test]
fn bad_linear_params_name_the_field() {
    let bad = LogisticRegressionParams {
        alpha: -1.0,
        ..Default::default()
    };
    assert_eq!(param_of(bad.check()), "logistic-regression.alpha");
    let bad = LogisticRegressionParams {
        max_iterations: 0,
        ..Default::default()
    };
    assert_eq!(param_of(bad.check()), "logistic-regression.max-iterations");
    let bad = LogisticRegressionParams {
        gradient_tolerance: f64::NAN,
        ..Default::default()
    };
    assert_eq!(
        param_of(bad.check()),
        "logistic-regression.gradient-tolerance"
    );
    let bad = RidgeParams {
        alpha: f64::INFINITY,
        ..Default::default()
    };
    assert_eq!(param_of(bad.check()), "ridge.alpha");
    let unknown = serde_json::from_str::<RidgeParams>(r#"{"alpha": 1.0, "lambda": 2.0}"#);
    assert!(unknown.unwrap_err().to_string().contains("lambda"));
    let partial: LogisticRegressionParams = serde_json::from_str(r#"{"alpha": 0.5}"#).unwrap();
    assert_eq!(
        partial,
        LogisticRegressionParams {
            alpha: 0.5,
            ..Default::default()
        }
    );
}

#[test]
fn sparse_input_is_densified_up_to_the_limit() {
    let ex = separable(100, 0.5, 6);
    let learner = LogisticRegressionParams::default().check().unwrap();
    let dense_model = learner.fit(&ex).unwrap();
    // The same data as sparse rows of dimension 2 trains the same model.
    let sparse = Examples::new(to_sparse(&ex.features, 2), ex.labels.clone(), None).unwrap();
    assert_eq!(learner.fit(&sparse).unwrap(), dense_model);
    // At the limit it trains (weights past column 1 are 0); one past it is refused, by name.
    let at_limit = Examples::new(
        to_sparse(&ex.features, MAX_DENSE_DIM),
        ex.labels.clone(),
        None,
    )
    .unwrap();
    assert_eq!(
        learner.fit(&at_limit).unwrap().linear_weights().dim,
        MAX_DENSE_DIM
    );
    let wide = Examples::new(to_sparse(&ex.features, 1 << 22), ex.labels.clone(), None).unwrap();
    for err in [
        learner.fit(&wide).map(|_| ()),
        RidgeParams::default()
            .check()
            .unwrap()
            .fit(&wide)
            .map(|_| ()),
    ] {
        match err {
            Err(Error::Shape(m)) => assert!(m.contains("4194304") && m.contains("4096"), "{m}"),
            other => panic!("expected a shape error, got {other:?}"),
        }
    }
    // A model refuses features of another dimension.
    assert!(matches!(
        dense_model.predict(&wide.features, &mut Vec::new()),
        Err(Error::Shape(_))
    ));
}

#[test]
fn bad_training_data_is_refused() {
    let learner = RidgeParams::default().check().unwrap();
    let empty = Examples::new(Features::Dense(Array2::zeros((0, 2))), vec![], None).unwrap();
    assert!(matches!(learner.fit(&empty), Err(Error::Shape(_))));
    let nan = dense(&[[1.0], [f32::NAN]], vec![0.0, 1.0]);
    assert!(matches!(
        learner.fit(&nan),
        Err(Error::InvalidValue { row: 1, .. })
    ));
    let mut negative = dense(&[[1.0], [2.0]], vec![0.0, 1.0]);
    negative.weights = Some(vec![1.0, -1.0]);
    assert!(matches!(
        learner.fit(&negative),
        Err(Error::InvalidValue { row: 1, .. })
    ));
}

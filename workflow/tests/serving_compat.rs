//! Hot-swap compatibility (#14 case 11): a new version that answers something else (another
//! task or output kind) or reads other columns is refused, counted and logged, while the
//! serving version keeps answering — unless the server allows incompatible swaps.

mod serving_support;

use std::time::Duration;

use eddy_algorithms::feature::categorical::{
    FeatureHasher, FeatureHasherParams, Featurizer, LabelSpec,
};
use eddy_algorithms::online::linear::SgdLinearParams;
use eddy_algorithms::pipeline::Pipeline;
use eddy_algorithms::trained::{OnlineModel, TrainedModel};
use eddy_algorithms::transform::Params;
use eddy_workflow::registry::{NewVersion, Registry};
use eddy_workflow::serving::{LoadedModel, ServeConfig, ServingState};
use serde_json::json;
use serving_support::{client, predict, publish, start, trained};

fn config(allow_incompatible_swap: bool) -> ServeConfig {
    ServeConfig {
        poll: Duration::from_millis(20),
        allow_incompatible_swap,
        ..ServeConfig::default()
    }
}

/// The pipeline of `trained` in front of a regression learner: same inputs, another task.
fn regression() -> TrainedModel {
    let mut t = trained(50);
    t.model = OnlineModel::SgdLinear(
        SgdLinearParams {
            dim: Some(t.pipeline.dim()),
            ..Default::default()
        }
        .build_regression()
        .unwrap(),
    );
    t
}

/// The learner of `trained` behind a hasher of other columns: same task, other inputs.
fn other_inputs() -> TrainedModel {
    let mut t = trained(0);
    let hasher = FeatureHasherParams {
        numeric: vec!["g".into()],
        categorical: vec!["d".into()],
        bits: 12,
        ..Default::default()
    };
    t.pipeline = Pipeline::new(
        vec![],
        Featurizer::Hasher(FeatureHasher::new(hasher.check().unwrap())),
        Some(LabelSpec::new("label")),
    );
    t
}

fn put(registry: &Registry, model: &TrainedModel) -> u64 {
    registry
        .publish("ctr", &model.to_bytes().unwrap(), NewVersion::default())
        .unwrap()
        .version
}

/// Resolves the model now (the follower may be doing the same: refreshes are serialized and a
/// refused version is never retried, so the counts are exact either way).
async fn refresh(state: &std::sync::Arc<ServingState>) {
    let st = state.clone();
    tokio::task::spawn_blocking(move || st.refresh_model("ctr").unwrap())
        .await
        .unwrap();
}

fn load_failures(state: &ServingState) -> u64 {
    let mut text = String::new();
    state.render_model_metrics(&mut text);
    let line = text
        .lines()
        .find(|l| l.starts_with("eddy_serving_model_load_failures_total{model=\"ctr\"}"))
        .unwrap_or_else(|| panic!("no load-failure counter in:\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn serving_version(state: &ServingState) -> u64 {
    state.model("ctr").unwrap().current().unwrap().version()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_version_is_refused_and_counted_while_the_old_one_serves() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    assert_eq!(publish(&registry, "ctr", 50).version, 1);
    let server = start(registry.clone(), config(false), false).await;
    let c = client();
    let row = json!([{"f": 1.0, "c": "v1"}]);

    assert_eq!(put(&registry, &regression()), 2);
    refresh(&server.state).await;
    assert_eq!(serving_version(&server.state), 1);
    assert_eq!(load_failures(&server.state), 1);

    assert_eq!(put(&registry, &other_inputs()), 3);
    // Both load on their own: what refuses them is the comparison with the serving version.
    for v in [2, 3] {
        LoadedModel::load(&registry, "ctr", v).unwrap();
    }
    refresh(&server.state).await;
    refresh(&server.state).await;
    assert_eq!(serving_version(&server.state), 1);
    assert_eq!(
        load_failures(&server.state),
        2,
        "each refused version counts once"
    );

    let (status, body) = predict(&c, server.http, "ctr", row.clone()).await;
    assert_eq!((status, body["version"].as_u64()), (200, Some(1)), "{body}");
    assert!(
        body["probabilities"].is_array(),
        "still a classifier: {body}"
    );

    // A compatible version (same task, same inputs) swaps in as before.
    assert_eq!(publish(&registry, "ctr", 90).version, 4);
    refresh(&server.state).await;
    assert_eq!(serving_version(&server.state), 4);
    assert_eq!(load_failures(&server.state), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_option_allows_an_incompatible_swap() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    publish(&registry, "ctr", 50);
    let server = start(registry.clone(), config(true), false).await;
    assert_eq!(put(&registry, &regression()), 2);
    refresh(&server.state).await;
    assert_eq!(serving_version(&server.state), 2);
    assert_eq!(load_failures(&server.state), 0);
    let (status, body) = predict(
        &client(),
        server.http,
        "ctr",
        json!([{"f": 1.0, "c": "v1"}]),
    )
    .await;
    assert_eq!((status, body["version"].as_u64()), (200, Some(2)), "{body}");
    assert!(
        body.get("probabilities").is_none(),
        "a regression answer: {body}"
    );
    server.stop().await;
}

//! An online trainer publishing through a `ModelStream` while a server follows it.

mod serving_support;

use std::collections::BTreeMap;
use std::time::Duration;

use eddy_algorithms::features::{Examples, Features};
use eddy_algorithms::learner::OnlineLearner;
use eddy_algorithms::trained::TrainedModel;
use eddy_workflow::model_stream::{ModelStream, PublishEvery};
use eddy_workflow::registry::{Lineage, NewVersion, Registry};
use eddy_workflow::serving::ServeConfig;
use serde_json::json;
use serving_support::{batch, client, predict, start, trained};

fn template() -> NewVersion {
    NewVersion {
        producer: "test-trainer".into(),
        lineage: Lineage {
            data: Some("stream://clicks".into()),
            parent: None,
        },
        ..NewVersion::default()
    }
}

/// Learns `rows` more rows into `model` (its pipeline statistics too).
fn learn(model: &mut TrainedModel, rows: usize, offset: usize) {
    let mut ex = Examples::new(Features::Sparse(Default::default()), vec![], None).unwrap();
    model
        .pipeline
        .learn_examples_into(&batch(rows, offset), &mut ex)
        .unwrap();
    model.model.learn(&ex).unwrap();
}

#[test]
fn publishes_every_n_rows_with_lineage_and_a_final_version() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    let mut stream =
        ModelStream::new(registry.clone(), "ctr", PublishEvery::rows(250), template()).unwrap();
    let mut model = trained(0);
    let mut seen = 0u64;
    let mut versions = Vec::new();
    for step in 0..10 {
        learn(&mut model, 100, step * 100);
        seen += 100;
        let metrics = || BTreeMap::from([("rows".to_string(), seen as f64)]);
        if let Some(meta) = stream.on_progress(&model, seen, metrics).unwrap() {
            versions.push((meta.version, meta.training_rows, meta.lineage.parent));
        }
    }
    // Due at 300 (≥250 since 0), 600, 900 rows.
    assert_eq!(
        versions,
        vec![(1, 300, None), (2, 600, Some(1)), (3, 900, Some(2))]
    );
    let last = stream.finish(&model, seen, BTreeMap::new()).unwrap();
    assert_eq!((last.version, last.training_rows), (4, 1000));
    // Nothing learned since: finishing again publishes nothing.
    assert_eq!(
        stream
            .finish(&model, seen, BTreeMap::new())
            .unwrap()
            .version,
        4
    );
    let meta = registry.get("ctr", 2).unwrap();
    assert_eq!(meta.producer, "test-trainer");
    assert_eq!(meta.lineage.data.as_deref(), Some("stream://clicks"));
    assert_eq!(meta.metrics.get("rows"), Some(&600.0));
    // Each version is a full snapshot: it loads on its own and predicts as the model did.
    let v4: TrainedModel =
        TrainedModel::from_bytes(&registry.load_bytes("ctr", 4).unwrap()).unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let rows = batch(5, 0);
    model
        .predict_batch(&rows, &mut Features::Sparse(Default::default()), &mut a)
        .unwrap();
    v4.predict_batch(&rows, &mut Features::Sparse(Default::default()), &mut b)
        .unwrap();
    assert_eq!(a, b);
}

#[test]
fn interval_policy_publishes_only_after_new_rows() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    let every = PublishEvery::interval(Duration::from_millis(1));
    let mut stream = ModelStream::new(registry, "ctr", every, template()).unwrap();
    let model = trained(50);
    std::thread::sleep(Duration::from_millis(5));
    assert!(
        stream
            .on_progress(&model, 0, BTreeMap::new)
            .unwrap()
            .is_none(),
        "no rows yet"
    );
    assert!(stream
        .on_progress(&model, 50, BTreeMap::new)
        .unwrap()
        .is_some());
    std::thread::sleep(Duration::from_millis(5));
    assert!(
        stream
            .on_progress(&model, 50, BTreeMap::new)
            .unwrap()
            .is_none(),
        "no new rows"
    );
    assert!(ModelStream::new(
        Registry::open(dir.path()).unwrap(),
        "bad/name",
        every,
        template()
    )
    .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_follows_a_model_stream() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    let server = start(registry.clone(), ServeConfig::default(), false).await;
    let mut stream =
        ModelStream::new(registry, "live", PublishEvery::rows(100), template()).unwrap();
    let mut model = trained(0);
    let trainer = tokio::task::spawn_blocking(move || {
        for step in 0..5 {
            learn(&mut model, 100, step * 100);
            stream
                .on_progress(&model, (step as u64 + 1) * 100, BTreeMap::new)
                .unwrap();
        }
        stream.published()
    });
    assert_eq!(trainer.await.unwrap(), 5);
    let c = client();
    let mut served = None;
    for _ in 0..20_000 {
        let (status, body) = predict(&c, server.http, "live", json!([{"f": 1, "c": "v1"}])).await;
        if status == 200 && body["version"] == 5 {
            served = Some(5);
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(served, Some(5));
    server.stop().await;
}

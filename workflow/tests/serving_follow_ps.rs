//! Serving follows a parameter server (`ServeConfig::follow_ps`): two gRPC shards on
//! 127.0.0.1 port 0, updates pushed to their FTRL weight table, and the served predictions
//! become the shards' model's within a bounded wait (the measured staleness is printed); a new
//! published version replaces the revisions and is itself brought back to the shards' weights.

mod serving_support;

use std::time::{Duration, Instant};

use eddy_algorithms::features::Features;
use eddy_algorithms::learner::Predictor;
use eddy_algorithms::online::linear::BIAS_KEY;
use eddy_algorithms::optim::FtrlProximalParams;
use eddy_algorithms::trained::{OnlineModel, TrainedModel};
use eddy_ps::store::ParamStore;
use eddy_ps::train::{ftrl_model, ftrl_tables};
use eddy_ps::{PsClient, PsClientConfig, PsServerConfig};
use eddy_workflow::registry::Registry;
use eddy_workflow::serving::ServeConfig;
use serde_json::json;
use serving_support::{batch, client, predict, publish, start, trained};

/// The longest a served model may take to catch up (a bound on the test, not a figure).
const CATCH_UP: Duration = Duration::from_secs(20);

async fn shards(n: u32) -> Vec<String> {
    let mut addrs = Vec::new();
    for i in 0..n {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap().to_string());
        let server = PsServerConfig::new(i, n).open().unwrap();
        tokio::spawn(server.serve(listener, std::future::pending()));
    }
    addrs
}

/// Pushes one gradient to every key of the model's table (features and intercept), varying
/// with `round`.
async fn train(client: &PsClient, dim: u64, round: u64) {
    let mut keys: Vec<u64> = (0..dim).collect();
    keys.push(BIAS_KEY);
    let grads: Vec<f32> = keys
        .iter()
        .map(|&k| ((k.wrapping_mul(31).wrapping_add(round * 7)) % 13) as f32 / 13.0 - 0.45)
        .collect();
    client.push("w", &keys, &grads, None).await.unwrap();
}

/// The shards' model behind the served model's pipeline, predicting the rows of `batch`.
async fn expected(
    client: &PsClient,
    served: &TrainedModel,
    rows: &arrow::record_batch::RecordBatch,
) -> Vec<f32> {
    let OnlineModel::Ftrl(m) = &served.model else {
        panic!("an FTRL model")
    };
    let params = eddy_algorithms::online::linear::FtrlLogisticParams {
        dim: Some(m.dim()),
        ftrl: *m.rule().params(),
        ..Default::default()
    };
    let model = ftrl_model(client, &params).await.unwrap();
    let features = features_of(served, rows);
    let mut out = Vec::new();
    model.predict(&features, &mut out).unwrap();
    out
}

fn features_of(model: &TrainedModel, rows: &arrow::record_batch::RecordBatch) -> Features {
    let mut features = Features::Sparse(Default::default());
    model.pipeline.features(rows, &mut features).unwrap();
    features
}

fn rows_json(n: usize) -> serde_json::Value {
    json!((0..n)
        .map(|i| json!({ "f": (i % 7) as f64, "c": format!("v{}", i % 4) }))
        .collect::<Vec<_>>())
}

/// Waits until the served predictions equal `want`; the wait.
async fn served_equals(addr: std::net::SocketAddr, want: &[f32]) -> Duration {
    let http = client();
    let start = Instant::now();
    loop {
        let (status, answer) = predict(&http, addr, "ctr", rows_json(want.len())).await;
        if status == 200 {
            let got: Vec<f32> = answer["predictions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_f64().unwrap() as f32)
                .collect();
            if got.iter().zip(want).all(|(g, w)| (g - w).abs() <= 1e-6) {
                return start.elapsed();
            }
        }
        assert!(
            start.elapsed() < CATCH_UP,
            "served predictions never reached the shards' model"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn served_predictions_follow_the_shards_and_a_new_version_resyncs() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    publish(&registry, "ctr", 50);
    let addrs = shards(2).await;
    let trainer = PsClientConfig::new(addrs.clone(), ftrl_tables(FtrlProximalParams::default()))
        .connect()
        .await
        .unwrap();
    let config = ServeConfig {
        poll: Duration::from_millis(20),
        follow_ps: addrs,
        follow_every: Duration::from_millis(20),
        ..ServeConfig::default()
    };
    let running = start(registry.clone(), config, false).await;
    let served = trained(50);
    let dim = served.pipeline.dim();
    let rows = batch(8, 0);

    // nothing trained yet: after several polls the published version still serves
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mut own = Vec::new();
    served
        .model
        .predict(&features_of(&served, &rows), &mut own)
        .unwrap();
    served_equals(running.http, &own).await;

    let mut waits = Vec::new();
    for round in 0..8 {
        train(&trainer, dim, round).await;
        let want = expected(&trainer, &served, &rows).await;
        assert_ne!(want, own, "round {round}: the pushes changed the model");
        waits.push(served_equals(running.http, &want).await);
    }
    let model = running.state.model("ctr").unwrap();
    let current = model.current().unwrap();
    assert_eq!(current.version(), 1);
    assert!(current.revision() >= 1, "revisions of version 1 serve");
    waits.sort();
    eprintln!(
        "served behind the shards: median {:?}, max {:?} (follow-every 20 ms)",
        waits[waits.len() / 2],
        waits[waits.len() - 1]
    );

    // a new version replaces the revisions, then is brought to the shards' weights
    publish(&registry, "ctr", 80);
    let want = expected(&trainer, &trained(80), &rows).await;
    served_equals(running.http, &want).await;
    let current = model.current().unwrap();
    assert_eq!(current.version(), 2);
    assert!(current.revision() >= 1);

    let (_, metrics) = serving_support::send(&client(), "GET", running.http, "/metrics", "").await;
    assert!(
        metrics.contains("eddy_serving_model_ps_behind_seconds{model=\"ctr\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("eddy_serving_model_ps_revisions_total{model=\"ctr\"}"));
    running.stop().await;
}

//! Shared helpers of the serving tests: a small trained model, a server on 127.0.0.1:0 with a
//! shutdown handle, and an HTTP client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use eddy_algorithms::feature::categorical::{
    FeatureHasher, FeatureHasherParams, Featurizer, LabelSpec,
};
use eddy_algorithms::feature::numeric::{StandardScaler, StandardScalerParams};
use eddy_algorithms::features::{Examples, Features};
use eddy_algorithms::learner::OnlineLearner;
use eddy_algorithms::online::linear::FtrlLogisticParams;
use eddy_algorithms::pipeline::Pipeline;
use eddy_algorithms::trained::{OnlineModel, TrainedModel};
use eddy_algorithms::transform::{FeatureStep, Params};
use eddy_workflow::registry::{NewVersion, Registry, VersionMeta};
use eddy_workflow::serving::{ServeConfig, Server, ServingState};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Training rows: numeric `f`, text `c`, label `label` (1 when `c` is `v1`).
pub fn batch(rows: usize, offset: usize) -> RecordBatch {
    let f: Vec<f64> = (0..rows).map(|i| ((i + offset) % 7) as f64).collect();
    let c: Vec<String> = (0..rows)
        .map(|i| format!("v{}", (i + offset) % 4))
        .collect();
    let y: Vec<i64> = (0..rows)
        .map(|i| i64::from((i + offset) % 4 == 1))
        .collect();
    RecordBatch::try_from_iter([
        ("f", Arc::new(Float64Array::from(f)) as ArrayRef),
        ("c", Arc::new(StringArray::from(c)) as ArrayRef),
        ("label", Arc::new(Int64Array::from(y)) as ArrayRef),
    ])
    .unwrap()
}

/// A scaler + hasher + FTRL model trained on `rows` rows (different row counts give different
/// models).
pub fn trained(rows: usize) -> TrainedModel {
    let scaler = StandardScalerParams {
        input_cols: vec!["f".into()],
        ..Default::default()
    };
    let steps: Vec<Box<dyn FeatureStep>> =
        vec![Box::new(StandardScaler::new(scaler.check().unwrap()))];
    let hasher = FeatureHasherParams {
        numeric: vec!["f".into()],
        categorical: vec!["c".into()],
        bits: 12,
        ..Default::default()
    };
    let mut pipeline = Pipeline::new(
        steps,
        Featurizer::Hasher(FeatureHasher::new(hasher.check().unwrap())),
        Some(LabelSpec::new("label")),
    );
    let mut model = OnlineModel::Ftrl(
        FtrlLogisticParams {
            dim: Some(pipeline.dim()),
            ..Default::default()
        }
        .build()
        .unwrap(),
    );
    let mut ex = Examples::new(Features::Sparse(Default::default()), vec![], None).unwrap();
    if rows > 0 {
        pipeline
            .learn_examples_into(&batch(rows, 0), &mut ex)
            .unwrap();
        model.learn(&ex).unwrap();
    }
    TrainedModel { pipeline, model }
}

/// Publishes `trained(rows)` as the next version of `name`.
pub fn publish(registry: &Registry, name: &str, rows: usize) -> VersionMeta {
    registry
        .publish(
            name,
            &trained(rows).to_bytes().unwrap(),
            NewVersion::default(),
        )
        .unwrap()
}

/// A server running in this process.
pub struct Running {
    /// The HTTP address.
    pub http: SocketAddr,
    /// The gRPC address, if started with one.
    pub grpc: Option<SocketAddr>,
    /// The shared serving state.
    pub state: Arc<ServingState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<eddy_workflow::Result<()>>>,
}

impl Running {
    /// Shuts the server down and waits for it; panics if it failed.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

/// Starts a server on 127.0.0.1:0 (and gRPC too when `grpc`).
pub async fn start(registry: Registry, config: ServeConfig, grpc: bool) -> Running {
    let server = Server::new(registry, config).await.unwrap();
    let state = server.state();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap();
    let grpc_listener = if grpc {
        Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
    } else {
        None
    };
    let grpc_addr = grpc_listener.as_ref().map(|l| l.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(http, grpc_listener, async {
        let _ = stopped.await;
    }));
    Running {
        http: http_addr,
        grpc: grpc_addr,
        state,
        stop: Some(stop),
        task: Some(task),
    }
}

/// A keep-alive HTTP/1.1 client.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends a request and returns the status and the body.
pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: &str,
    addr: SocketAddr,
    path: &str,
    body: impl Into<Bytes>,
) -> (u16, String) {
    let request = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

/// POSTs rows to a model and returns the status and the parsed answer.
pub async fn predict(
    client: &Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    model: &str,
    rows: serde_json::Value,
) -> (u16, serde_json::Value) {
    let body = serde_json::json!({ "rows": rows }).to_string();
    let (status, text) = send(
        client,
        "POST",
        addr,
        &format!("/v1/models/{model}/predict"),
        body,
    )
    .await;
    (status, serde_json::from_str(&text).unwrap())
}

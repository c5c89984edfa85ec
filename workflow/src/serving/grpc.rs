//! The gRPC front end (tonic): the operations of the HTTP API over `proto/serving.proto`,
//! answered by the same [`ServingState`] — a row scored over gRPC gets the same prediction as
//! over HTTP.
//!
//! The same port also answers the standard health service `grpc.health.v1.Health`
//! ([`health`]), for load balancers and Kubernetes gRPC probes: the server (`""`) and
//! `eddy.serving.v1.Serving` are SERVING when every served model has a version loaded (what
//! `GET /healthz` answers 200 for), NOT_SERVING otherwise.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tonic::{Code, Request, Response, Status};

use super::input::Row;
use super::metrics::Protocol;
use super::state::{ServedModel, ServingState};
use super::{http, model_info, ModelInfo, BLOCKING_ROWS};
use crate::error::Error;

/// The generated protobuf messages and the client and server of `eddy.serving.v1`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("eddy.serving.v1");
}

use pb::serving_server::{Serving, ServingServer};
use tonic::server::NamedService;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::ServingStatus;

/// The `grpc.health.v1.Health` service of the serving port, and a future that keeps its
/// status in step with the served models, re-checked every `poll`; the future never ends (run
/// it beside the server and drop it with the server).
pub fn health(
    state: Arc<ServingState>,
    poll: Duration,
) -> (HealthServer<impl Health>, impl Future<Output = ()>) {
    let (reporter, service) = tonic_health::server::health_reporter();
    let update = async move {
        let mut last = None;
        let mut tick = tokio::time::interval(poll.max(Duration::from_millis(1)));
        loop {
            tick.tick().await;
            let status = if state.is_ready() {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            if last != Some(status) {
                for name in ["", <ServingServer<GrpcService> as NamedService>::NAME] {
                    reporter.set_service_status(name, status).await;
                }
                last = Some(status);
            }
        }
    };
    (service, update)
}

/// The gRPC service over a [`ServingState`].
#[derive(Debug, Clone)]
pub struct GrpcService {
    state: Arc<ServingState>,
}

/// The tonic service to add to a `tonic::transport::Server`, refusing messages over
/// `max_message_bytes`.
pub fn service(state: Arc<ServingState>, max_message_bytes: usize) -> ServingServer<GrpcService> {
    ServingServer::new(GrpcService { state }).max_decoding_message_size(max_message_bytes)
}

fn status(e: &Error) -> Status {
    let code = match http::status_of(e).as_u16() {
        400 | 422 => Code::InvalidArgument,
        404 => Code::NotFound,
        413 => Code::ResourceExhausted,
        503 => Code::Unavailable,
        _ => Code::Internal,
    };
    Status::new(code, e.to_string())
}

fn http_status(code: Code) -> u16 {
    match code {
        Code::InvalidArgument => 422,
        Code::NotFound => 404,
        Code::ResourceExhausted => 413,
        Code::Unavailable => 503,
        _ => 500,
    }
}

/// A protobuf value as the JSON value the HTTP API would have received: integral numbers
/// become JSON integers, so a text column reads `3` as `"3"` over both protocols.
fn json_value(v: &pb::Value) -> Value {
    match &v.kind {
        None => Value::Null,
        Some(pb::value::Kind::Text(s)) => Value::String(s.clone()),
        Some(pb::value::Kind::Flag(b)) => Value::Bool(*b),
        Some(pb::value::Kind::Number(x)) => {
            if x.fract() == 0.0 && x.abs() < 9.0e15 {
                Value::from(*x as i64)
            } else {
                Value::from(*x)
            }
        }
    }
}

fn rows_of(rows: &[pb::Row]) -> Vec<Row> {
    rows.iter()
        .map(|r| {
            r.fields
                .iter()
                .map(|(k, v)| (k.clone(), json_value(v)))
                .collect()
        })
        .collect()
}

fn info_message(m: &ModelInfo) -> pb::ModelInfo {
    pb::ModelInfo {
        name: m.name.clone(),
        version: m.version.unwrap_or(0),
        policy: m.policy.clone(),
        stage: m.stage.clone().unwrap_or_default(),
        created_ms: m.created_ms.unwrap_or(0),
        training_rows: m.training_rows.unwrap_or(0),
        learner: m.learner.clone().unwrap_or_default(),
        inputs: m.inputs.clone(),
        metrics: m.metrics.clone().into_iter().collect(),
    }
}

impl GrpcService {
    async fn score(&self, req: pb::PredictRequest) -> Result<pb::PredictResponse, Error> {
        let model: Arc<ServedModel> = if req.model.is_empty() {
            self.state.route(&req.key)?
        } else {
            self.state.model(&req.model)?
        };
        let rows = rows_of(&req.rows);
        let prediction = if rows.len() <= BLOCKING_ROWS {
            self.state.predict(&model, &rows)?
        } else {
            let st = self.state.clone();
            tokio::task::spawn_blocking(move || st.predict(&model, &rows))
                .await
                .map_err(|e| Error::Serve {
                    addr: "grpc".into(),
                    message: format!("predict task failed: {e}"),
                })??
        };
        Ok(pb::PredictResponse {
            model: prediction.model,
            version: prediction.version,
            predictions: prediction.predictions,
            probabilities: prediction
                .probabilities
                .unwrap_or_default()
                .into_iter()
                .map(|values| pb::Scores { values })
                .collect(),
        })
    }
}

#[tonic::async_trait]
impl Serving for GrpcService {
    async fn predict(
        &self,
        request: Request<pb::PredictRequest>,
    ) -> Result<Response<pb::PredictResponse>, Status> {
        let start = Instant::now();
        let result = self
            .score(request.into_inner())
            .await
            .map_err(|e| status(&e));
        let failed = result.as_ref().err().map(|s| http_status(s.code()));
        if let (Err(e), Some(code)) = (&result, failed) {
            self.state
                .metrics()
                .log_failure(Protocol::Grpc, code, &e.message());
        }
        self.state
            .metrics()
            .record(Protocol::Grpc, start.elapsed(), failed);
        result.map(Response::new)
    }

    async fn list_models(
        &self,
        _request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let models = self
            .state
            .models()
            .iter()
            .map(|m| info_message(&model_info(m)))
            .collect();
        Ok(Response::new(pb::ListModelsResponse { models }))
    }

    async fn get_model(
        &self,
        request: Request<pb::GetModelRequest>,
    ) -> Result<Response<pb::ModelInfo>, Status> {
        let m = self
            .state
            .model(&request.into_inner().name)
            .map_err(|e| status(&e))?;
        Ok(Response::new(info_message(&model_info(&m))))
    }

    async fn health(
        &self,
        _request: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        let models = self.state.models();
        let ready = models.iter().filter(|m| m.current().is_some()).count();
        Ok(Response::new(pb::HealthResponse {
            ok: ready == models.len() && ready > 0,
            models: u32::try_from(models.len()).unwrap_or(u32::MAX),
        }))
    }
}

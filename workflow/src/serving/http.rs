//! The HTTP/JSON front end (axum).
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/models/{name}/predict` | `{"rows":[{col: value, …}, …]}` → `{"model","version","predictions","probabilities"?}` |
//! | `POST /v1/predict` | per-key routing: `{"key": K, "rows": […]}` goes to the model `<route prefix>K` |
//! | `GET /v1/models` | the served models, versions, policies, stages and metrics |
//! | `GET /v1/models/{name}` | one served model |
//! | `GET /healthz` | 200 when every served model has a version loaded, 503 otherwise |
//! | `GET /metrics` | Prometheus text: requests, latency, connections, served models; under `eddy run`, each training job's restarts, records lost and replayed, and checkpoints (`eddy_job_*{job="<node>"}`) |
//!
//! Errors answer `{"error": message, "field"?: name}`: malformed JSON 400, unknown model 404,
//! oversized body 413, a missing or mistyped column 422 (naming the field), a model with no
//! loadable version yet 503.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};

use super::input::Row;
use super::metrics::Protocol;
use super::state::{ServedModel, ServingState};
use super::{model_info, ModelInfo, BLOCKING_ROWS};
use crate::error::Error;

/// The body of a predict request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictBody {
    rows: Vec<Row>,
    #[serde(default)]
    key: Option<String>,
}

/// An error answer.
#[derive(Debug, Serialize)]
struct ErrorBody {
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

/// The HTTP status an error answers with.
pub fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::UnknownModel { .. } => StatusCode::NOT_FOUND,
        Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
        Error::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Error::InvalidField { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        Error::NotReady { .. } => StatusCode::SERVICE_UNAVAILABLE,
        Error::Predict { source, .. } if field_of_source(source).is_some() => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The request field an error is about, if any.
pub fn field_of(e: &Error) -> Option<String> {
    match e {
        Error::InvalidField { field, .. } => Some(field.clone()),
        Error::Predict { source, .. } => field_of_source(source),
        _ => None,
    }
}

fn field_of_source(e: &eddy_algorithms::Error) -> Option<String> {
    match e {
        eddy_algorithms::Error::MissingColumn { column, .. }
        | eddy_algorithms::Error::ColumnType { column, .. }
        | eddy_algorithms::Error::InvalidValue { column, .. } => Some(column.clone()),
        _ => None,
    }
}

fn error_response(e: &Error) -> Response {
    let status = status_of(e);
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %e, "request failed");
    }
    let body = ErrorBody {
        error: e.to_string(),
        field: field_of(e),
    };
    (status, json(&body)).into_response()
}

fn json<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The router of the HTTP API over `state`, refusing bodies over `max_body_bytes` with 413.
pub fn router(state: Arc<ServingState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/models/{name}/predict", post(predict_named))
        .route("/v1/predict", post(predict_routed))
        .route("/v1/models", get(list))
        .route("/v1/models/{name}", get(info))
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn predict_named(
    State(state): State<Arc<ServingState>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let start = Instant::now();
    let result = match body.map_err(rejected).and_then(|b| parse(&b)) {
        Ok(body) => match state.model(&name) {
            Ok(model) => score(&state, model, body.rows).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    finish(&state, start, result)
}

async fn predict_routed(
    State(state): State<Arc<ServingState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let start = Instant::now();
    let result = match body.map_err(rejected).and_then(|b| parse(&b)) {
        Ok(PredictBody {
            rows,
            key: Some(key),
        }) => match state.route(&key) {
            Ok(model) => score(&state, model, rows).await,
            Err(e) => Err(e),
        },
        Ok(PredictBody { key: None, .. }) => Err(Error::BadRequest {
            message: "field `key` is required by /v1/predict (it picks the model)".into(),
        }),
        Err(e) => Err(e),
    };
    finish(&state, start, result)
}

/// A body the extractor refused (over the size limit, or unreadable) as an error the request
/// metrics count like any other.
fn rejected(r: BytesRejection) -> Error {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::BodyTooLarge {
            message: r.body_text(),
        }
    } else {
        Error::BadRequest {
            message: r.body_text(),
        }
    }
}

fn parse(body: &[u8]) -> Result<PredictBody, Error> {
    serde_json::from_slice(body).map_err(|e| Error::BadRequest {
        message: format!("expected {{\"rows\": [{{column: value, …}}, …]}}: {e}"),
    })
}

/// Scores on the reactor for small requests; large ones go to a blocking thread so they do not
/// stall other connections.
async fn score(
    state: &Arc<ServingState>,
    model: Arc<ServedModel>,
    rows: Vec<Row>,
) -> Result<super::model::Prediction, Error> {
    if rows.len() <= BLOCKING_ROWS {
        return state.predict(&model, &rows);
    }
    let st = state.clone();
    tokio::task::spawn_blocking(move || st.predict(&model, &rows))
        .await
        .map_err(|e| Error::Serve {
            addr: "http".into(),
            message: format!("predict task failed: {e}"),
        })?
}

fn finish(
    state: &ServingState,
    start: Instant,
    result: Result<super::model::Prediction, Error>,
) -> Response {
    let response = match &result {
        Ok(p) => json(p),
        Err(e) => error_response(e),
    };
    let failed = (!response.status().is_success()).then(|| response.status().as_u16());
    if let (Err(e), Some(status)) = (&result, failed) {
        state.metrics().log_failure(Protocol::Http, status, e);
    }
    state
        .metrics()
        .record(Protocol::Http, start.elapsed(), failed);
    response
}

async fn list(State(state): State<Arc<ServingState>>) -> Response {
    let models: Vec<ModelInfo> = state.models().iter().map(|m| model_info(m)).collect();
    json(&serde_json::json!({ "models": models }))
}

async fn info(State(state): State<Arc<ServingState>>, Path(name): Path<String>) -> Response {
    match state.model(&name) {
        Ok(m) => json(&model_info(&m)),
        Err(e) => error_response(&e),
    }
}

async fn health(State(state): State<Arc<ServingState>>) -> Response {
    let models = state.models();
    let ready = models.iter().filter(|m| m.current().is_some()).count();
    let ok = ready == models.len() && ready > 0;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({ "ok": ok, "models": models.len(), "ready": ready });
    (status, json(&body)).into_response()
}

async fn metrics(State(state): State<Arc<ServingState>>) -> Response {
    let mut out = String::with_capacity(4096);
    render_metrics(&state, &mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// Appends a server's figures in the Prometheus text format: requests, latency, connections,
/// served models and the jobs it shows (what `GET /metrics` answers; the dashboard's renderer,
/// [`crate::ui::metrics::render`], calls it for its model server).
pub fn render_metrics(state: &ServingState, out: &mut String) {
    state.metrics().render(out);
    state.render_model_metrics(out);
    state.render_job_metrics(out);
}

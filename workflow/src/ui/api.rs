//! The dashboard's routes: the pages, the JSON API, the live feed and the actions
//! (documented in `docs/dashboard.md`).
//!
//! | route | what |
//! |---|---|
//! | `GET /` `GET /app.js` `GET /app.css` | the page (embedded static files) |
//! | `GET /api/overview` | title, which pages have data, sampling period |
//! | `GET /api/run` | run state, DAG nodes and trigger edges, node timings (from the state) |
//! | `GET /api/models` | registry models: versions (stage, metrics, lineage), pin |
//! | `POST /api/models/{name}/promote` `{"version": N}` | version N → production (previous archived) |
//! | `POST /api/models/{name}/rollback` | the newest archived version older than production → production |
//! | `POST /api/models/{name}/pin` `{"version": N}` / `POST /api/models/{name}/unpin` | pin for `@pinned` servers |
//! | `GET /api/serving` | served models: server, version, policy, stage, metrics |
//! | `GET /api/ps` | the PS shard: tables, rows, pushes, pulls, snapshot |
//! | `GET /api/series?prefix=P` | kept samples of the series starting with P |
//! | `GET /api/events` | server-sent events: one `sample` (the newest sampling) per period |
//! | `GET /metrics` | Prometheus text ([`metrics::render`]); not mounted beside a model server, whose `/metrics` renders the same |
//!
//! Actions answer 401 without `Authorization: Bearer <token>`, 404 for an unknown model or
//! version, 409 when there is nothing to roll back to.

use std::convert::Infallible;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::{history, metrics, Dashboard, SAMPLE_EVERY};
use crate::error::Error;
use crate::registry::Stage;

const INDEX: &str = include_str!("../../assets/dashboard/index.html");
const APP_JS: &str = include_str!("../../assets/dashboard/app.js");
const APP_CSS: &str = include_str!("../../assets/dashboard/app.css");

/// The dashboard's router; with `with_metrics`, `/metrics` too. Starts the sampler (call it
/// inside a tokio runtime), which ends when the dashboard is dropped.
pub fn router(dashboard: Arc<Dashboard>, with_metrics: bool) -> Router {
    tokio::spawn(history::sample(Arc::downgrade(&dashboard)));
    let mut r = Router::new()
        .route(
            "/",
            get(|| async { page(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/app.js",
            get(|| async { page(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/app.css",
            get(|| async { page(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route("/api/overview", get(overview))
        .route("/api/run", get(run))
        .route("/api/models", get(models))
        .route("/api/models/{name}/{action}", post(action))
        .route("/api/serving", get(serving))
        .route("/api/ps", get(ps))
        .route("/api/series", get(series))
        .route("/api/events", get(events));
    if with_metrics {
        r = r.route("/metrics", get(prometheus));
    }
    r.with_state(dashboard)
}

/// Serves the dashboard (with `/metrics`) on `listener` until `shutdown` completes, then
/// closes every connection at once (an open page holds its event stream forever, so waiting
/// for connections to finish would never end).
pub async fn serve(
    dashboard: Arc<Dashboard>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> crate::Result<()> {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "dashboard".to_string(), |a| a.to_string());
    tokio::select! {
        served = axum::serve(listener, router(dashboard, true)).into_future() => {
            served.map_err(|e| Error::Serve {
                addr,
                message: e.to_string(),
            })
        }
        () = shutdown => Ok(()),
    }
}

fn page(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn fail(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

fn error(e: &Error) -> Response {
    fail(crate::serving::http::status_of(e), e.to_string())
}

async fn overview(State(d): State<Arc<Dashboard>>) -> Response {
    Json(serde_json::json!({
        "title": d.title,
        "pages": {
            "dag": d.run.is_some(),
            "training": d.run.is_some() || d.jobs.is_some() || !d.trainings.is_empty(),
            "models": d.registry.is_some(),
            "serving": d.servers.is_some(),
            "ps": d.ps.is_some(),
        },
        "sample_ms": SAMPLE_EVERY.as_millis() as u64,
        "kept_samples": history::KEEP,
        "dropped_samples": d.history.dropped_samples(),
    }))
    .into_response()
}

async fn run(State(d): State<Arc<Dashboard>>) -> Response {
    let Some(src) = &d.run else {
        return fail(StatusCode::NOT_FOUND, "this process runs no workflow");
    };
    let state = d.run_state();
    let timings: serde_json::Map<String, serde_json::Value> = state
        .iter()
        .flat_map(|s| &s.nodes)
        .map(|(name, n)| {
            let t = serde_json::json!({ "started_ms": n.started_ms, "finished_ms": n.finished_ms });
            (name.clone(), t)
        })
        .collect();
    Json(serde_json::json!({
        "dir": src.dir,
        "state": state,
        "nodes": src.nodes,
        "edges": src.edges,
        "timings": timings,
    }))
    .into_response()
}

async fn models(State(d): State<Arc<Dashboard>>) -> Response {
    let Some(registry) = d.registry.clone() else {
        return fail(StatusCode::NOT_FOUND, "this process has no model registry");
    };
    let listed = tokio::task::spawn_blocking(move || -> crate::Result<serde_json::Value> {
        let mut out = Vec::new();
        for m in registry.models()? {
            let versions = registry.versions(&m)?;
            let pinned = registry.pinned(&m)?;
            out.push(serde_json::json!({ "name": m, "pinned": pinned, "versions": versions }));
        }
        Ok(serde_json::json!({ "models": out }))
    })
    .await;
    match listed {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => error(&e),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The body of an action that names a version.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    version: Option<u64>,
}

async fn action(
    State(d): State<Arc<Dashboard>>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&headers, &d.token) {
        return fail(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token (Authorization: Bearer <token>, printed at start)",
        );
    }
    let body: ActionBody = if body.is_empty() {
        ActionBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return fail(
                    StatusCode::BAD_REQUEST,
                    format!("expected {{\"version\": N}}: {e}"),
                )
            }
        }
    };
    let Some(registry) = d.registry.clone() else {
        return fail(StatusCode::NOT_FOUND, "this process has no model registry");
    };
    let dash = d.clone();
    let done = tokio::task::spawn_blocking(move || -> Result<serde_json::Value, Refusal> {
        let need = |v: Option<u64>| {
            v.ok_or_else(|| Refusal::new(StatusCode::BAD_REQUEST, format!("`{action}` needs {{\"version\": N}}")))
        };
        let version = match action.as_str() {
            "promote" => {
                let v = need(body.version)?;
                known(&registry, &name, v)?;
                registry.promote(&name, v, Stage::Production).map_err(|e| refusal(&e))?;
                Some(v)
            }
            "rollback" => Some(rollback(&registry, &name)?),
            "pin" => {
                let v = need(body.version)?;
                known(&registry, &name, v)?;
                registry.pin(&name, v).map_err(|e| refusal(&e))?;
                Some(v)
            }
            "unpin" => {
                registry.unpin(&name).map_err(|e| refusal(&e))?;
                None
            }
            other => return Err(Refusal::new(StatusCode::NOT_FOUND, format!("no action `{other}` (promote, rollback, pin, unpin)"))),
        };
        // a server in this process swaps at once rather than at its next poll
        for (_, s) in dash.servers.iter().flat_map(|s| s.list()) {
            if s.models().iter().all(|m| m.name() != name) {
                continue;
            }
            if let Err(e) = s.refresh_model(&name) {
                tracing::warn!(model = %name, error = %e, "refreshing the served model after `{action}` failed");
            }
        }
        tracing::info!(model = %name, ?version, "dashboard action `{action}`");
        Ok(serde_json::json!({ "model": name, "action": action, "version": version }))
    })
    .await;
    match done {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(r)) => r.into_response(),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// 404 unless `name` has version `v`.
fn known(registry: &crate::registry::Registry, name: &str, v: u64) -> Result<(), Refusal> {
    let versions = registry.versions(name).map_err(|e| refusal(&e))?;
    if versions.iter().any(|m| m.version == v) {
        return Ok(());
    }
    Err(Refusal::new(
        StatusCode::NOT_FOUND,
        format!("model `{name}` has no version {v}"),
    ))
}

/// Promotes the newest archived version older than the production one; returns it.
fn rollback(registry: &crate::registry::Registry, name: &str) -> Result<u64, Refusal> {
    let versions = registry.versions(name).map_err(|e| refusal(&e))?;
    let Some(prod) = versions
        .iter()
        .filter(|v| v.stage == Stage::Production)
        .map(|v| v.version)
        .max()
    else {
        return Err(Refusal::new(
            StatusCode::CONFLICT,
            format!("model `{name}` has no production version to roll back"),
        ));
    };
    let Some(back) = versions
        .iter()
        .filter(|v| v.stage == Stage::Archived && v.version < prod)
        .map(|v| v.version)
        .max()
    else {
        return Err(Refusal::new(
            StatusCode::CONFLICT,
            format!("model `{name}` has no archived version older than production version {prod}"),
        ));
    };
    registry
        .promote(name, back, Stage::Production)
        .map_err(|e| refusal(&e))?;
    Ok(back)
}

/// Why an action was refused: the status and the message answered.
#[derive(Debug)]
struct Refusal(StatusCode, String);

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal(status, message.into())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        fail(self.0, self.1)
    }
}

fn refusal(e: &Error) -> Refusal {
    Refusal::new(crate::serving::http::status_of(e), e.to_string())
}

/// Whether `headers` carry `Authorization: Bearer <token>` (compared in constant time).
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn serving(State(d): State<Arc<Dashboard>>) -> Response {
    let Some(servers) = &d.servers else {
        return fail(StatusCode::NOT_FOUND, "this process serves no model");
    };
    let mut models = Vec::new();
    for (server, s) in servers.list() {
        for m in s.models() {
            let mut info = serde_json::to_value(crate::serving::model_info(&m))
                .unwrap_or(serde_json::Value::Null);
            if let Some(o) = info.as_object_mut() {
                o.insert("server".into(), serde_json::json!(server));
            }
            models.push(info);
        }
    }
    Json(serde_json::json!({ "models": models })).into_response()
}

async fn ps(State(d): State<Arc<Dashboard>>) -> Response {
    match &d.ps {
        Some(ps) => Json(ps.read()).into_response(),
        None => fail(
            StatusCode::NOT_FOUND,
            "this process holds no parameter-server shard",
        ),
    }
}

/// The query of `/api/series`.
#[derive(Debug, Deserialize)]
struct SeriesQuery {
    #[serde(default)]
    prefix: String,
}

async fn series(State(d): State<Arc<Dashboard>>, Query(q): Query<SeriesQuery>) -> Response {
    Json(serde_json::json!({ "series": d.history.series(&q.prefix) })).into_response()
}

async fn events(
    State(d): State<Arc<Dashboard>>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let stream = futures::stream::unfold((d, 0u64), |(d, last)| async move {
        loop {
            let sample = d.history.last();
            if sample.t != last {
                let event = Event::default()
                    .event("sample")
                    .json_data(&sample)
                    .unwrap_or_else(|_| Event::default().comment("unencodable sample"));
                let t = sample.t;
                return Some((Ok(event), (d, t)));
            }
            tokio::time::sleep(SAMPLE_EVERY / 4).await;
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn prometheus(State(d): State<Arc<Dashboard>>) -> Response {
    let text = tokio::task::spawn_blocking(move || {
        let mut out = String::with_capacity(8192);
        metrics::render(&d, &mut out);
        out
    })
    .await;
    match text {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rendering the metrics failed: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_is_authorized() {
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, "abc"));
        h.insert(header::AUTHORIZATION, "Bearer abd".parse().unwrap());
        assert!(!authorized(&h, "abc"));
        h.insert(header::AUTHORIZATION, "Bearer abcd".parse().unwrap());
        assert!(!authorized(&h, "abc"));
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert!(authorized(&h, "abc"));
    }
}

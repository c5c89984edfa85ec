//! Online serving: registry models answered over HTTP/JSON (axum) and gRPC (tonic), with new
//! versions swapped in while requests keep flowing.
//!
//! ```no_run
//! # async fn demo() -> eddy_workflow::Result<()> {
//! use eddy_workflow::registry::Registry;
//! use eddy_workflow::serving::{ServeConfig, Server};
//!
//! let registry = Registry::open("models")?;
//! let config = ServeConfig {
//!     models: vec!["ctr@production".parse()?],
//!     ..ServeConfig::default()
//! };
//! let server = Server::new(registry, config).await?;
//! let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! # drop(stop);
//! server.run(http, None, async { let _ = stopped.await; }).await
//! # }
//! ```
//!
//! The server takes bound listeners and a shutdown future (mini-redis style), so tests and the
//! workflow runner start it in-process on port 0. A row is featurized by the model's own
//! pipeline ([`input`]), so serving and training see the same features. New versions arrive by
//! [`Registry::subscribe`] (publishes in this process, at once) and by polling the directory
//! every [`ServeConfig::poll`] (other processes, and pins and stage changes made there); each
//! is loaded and warmed beside the serving one and swapped in atomically ([`state`]).
//!
//! ## Modules
//! | module | what |
//! |---|---|
//! | [`board`] | [`ServerBoard`]: the servers of a process, for its dashboard |
//! | [`follow_ps`] | revisions of a served version from a parameter server's delta feed |
//! | [`input`] | the pipeline's raw input columns (probed) and JSON rows → Arrow batch |
//! | [`model`] | [`LoadedModel`]: one decoded, warmed version; predict |
//! | [`policy`] | [`VersionPolicy`] (latest / pinned / version / stage) and `name@policy` |
//! | [`state`] | [`ServingState`]: served models, hot swap, per-key routing |
//! | [`metrics`] | request counters and latency histogram, Prometheus text |
//! | [`http`] | the axum router |
//! | [`listen`] | the HTTP accept loop: connection limit with eviction of never-sent connections, header-read and idle timeouts |
//! | [`grpc`] | the tonic service (`proto/serving.proto`) and the `grpc.health.v1` service |

pub mod board;
pub mod follow_ps;
pub mod grpc;
pub mod http;
pub mod input;
pub mod listen;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod state;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::broadcast::error::RecvError;

use crate::error::{Error, Result};
use crate::registry::{Registry, Watcher, DEFAULT_POLL};
pub use board::ServerBoard;
pub use model::{LoadedModel, Prediction};
pub use policy::{ModelSelector, VersionPolicy};
pub use state::{ServedModel, ServingState};

/// Requests with more rows than this are scored on a blocking thread rather than the reactor.
pub(crate) const BLOCKING_ROWS: usize = 256;

/// How a server serves (serde, kebab-case; every field has a default).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ServeConfig {
    /// The served models and their version policies, as `name[@version|@pinned|@stage]`.
    /// Default: none, which serves every model of the registry (new ones too) at its latest
    /// version.
    #[serde(deserialize_with = "selectors")]
    pub models: Vec<ModelSelector>,
    /// Per-key routing: a request to `POST /v1/predict` with `"key": K` goes to the model
    /// named `<route-prefix>K`. Default: none (routing off).
    pub route_prefix: Option<String>,
    /// How often the registry directory is polled for versions written by other processes
    /// (`"500ms"`, `"1s"`, ... or milliseconds). Default 1 s.
    #[serde(with = "duration")]
    pub poll: Duration,
    /// Request bodies (and gRPC messages) above this many bytes are refused (413). Default
    /// 4 MiB.
    pub max_body_bytes: usize,
    /// Swap in a new version even when its task, output kind or input columns differ from
    /// the serving version's (`allow-incompatible-swap = true`). Default false: such a version
    /// is refused, logged and counted in `eddy_serving_model_load_failures_total`.
    pub allow_incompatible_swap: bool,
    /// A request head must arrive within this time of the server waiting for it (a new
    /// connection, or a keep-alive one after its last answer); else the connection is closed.
    /// Default 10 s.
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// A connection that moves no byte either way for this long is closed. Default 60 s.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Open HTTP connections at most, lowered to the process's soft open-file limit minus
    /// 256 ([`listen::effective_max_connections`]). At the limit a new connection takes the
    /// slot of the one that has waited longest for its first byte, which is closed; when every
    /// open connection has sent a byte, new ones wait to be accepted. Default 32768. A
    /// connection that has sent nothing costs about 1.6 kB of server memory (measured: 19,744
    /// of them, RSS 26 MB -> 58 MB).
    pub max_connections: usize,
    /// The request log: one `info` line every this many predict requests, with the counts so
    /// far (0: none); failed requests are logged one by one regardless. Default 10000.
    pub log_every: u64,
    /// Parameter-server shards (`HOST:PORT`, shard `i` at the `i`-th) whose weights the
    /// served FTRL models follow between versions ([`follow_ps`]). Default: none.
    pub follow_ps: Vec<String>,
    /// How often the shards are asked for changed rows. Default 200 ms.
    #[serde(with = "duration")]
    pub follow_every: Duration,
}

impl ServeConfig {
    /// The connection limits of the HTTP server.
    pub fn http_limits(&self) -> listen::HttpLimits {
        listen::HttpLimits {
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            models: Vec::new(),
            route_prefix: None,
            poll: DEFAULT_POLL,
            max_body_bytes: 4 << 20,
            allow_incompatible_swap: false,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 32_768,
            log_every: 10_000,
            follow_ps: Vec::new(),
            follow_every: Duration::from_millis(200),
        }
    }
}

fn selectors<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ModelSelector>, D::Error> {
    let names: Vec<String> = serde::Deserialize::deserialize(d)?;
    let selectors: Vec<ModelSelector> = names
        .iter()
        .map(|n| n.parse().map_err(serde::de::Error::custom))
        .collect::<Result<_, _>>()?;
    check_selectors(&selectors).map_err(serde::de::Error::custom)?;
    Ok(selectors)
}

/// Refuses two selectors of one model name (`ctr@production` and `ctr@pinned`): a server
/// serves one version policy per name, so the second would silently replace the first.
pub fn check_selectors(selectors: &[ModelSelector]) -> Result<()> {
    for (i, s) in selectors.iter().enumerate() {
        if let Some(first) = selectors[..i].iter().find(|f| f.name == s.name) {
            return Err(Error::InvalidArgument(format!(
                "model `{}` is selected twice (`{}` and `{}`): a server serves one version \
                 policy per model name",
                s.name, first, s
            )));
        }
    }
    Ok(())
}

/// A duration as `"500ms"`, `"1s"`, `"2m"`, `"1h"`, or a number of milliseconds.
mod duration {
    use std::time::Duration;

    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Millis(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match <Raw as serde::Deserialize>::deserialize(d)? {
            Raw::Millis(ms) => Ok(Duration::from_millis(ms)),
            Raw::Text(t) => {
                eddy_core::duration::parse_duration(&t).map_err(serde::de::Error::custom)
            }
        }
    }
}

/// What `GET /v1/models` and gRPC `ListModels` say about a served model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    /// The model name.
    pub name: String,
    /// The version serving now (none before one loads).
    pub version: Option<u64>,
    /// Its revision from a parameter server (0: as published; see [`follow_ps`]).
    pub revision: Option<u64>,
    /// The version policy.
    pub policy: String,
    /// The serving version's stage.
    pub stage: Option<String>,
    /// When the serving version was published (ms since the Unix epoch).
    pub created_ms: Option<u64>,
    /// Rows the serving version was trained on.
    pub training_rows: Option<u64>,
    /// The learner.
    pub learner: Option<String>,
    /// The raw input columns a row must provide.
    pub inputs: Vec<String>,
    /// The serving version's metrics.
    pub metrics: BTreeMap<String, f64>,
}

/// What a served model is serving now.
pub fn model_info(m: &ServedModel) -> ModelInfo {
    let current = m.current();
    let meta = current.as_ref().map(|c| c.meta());
    ModelInfo {
        name: m.name().to_string(),
        version: meta.map(|m| m.version),
        revision: current.as_ref().map(|c| c.revision()),
        policy: m.policy().to_string(),
        stage: meta.map(|m| policy::stage_name(m.stage).to_string()),
        created_ms: meta.map(|m| m.created_ms),
        training_rows: meta.map(|m| m.training_rows),
        learner: current
            .as_ref()
            .map(|c| c.trained().model.name().to_string()),
        inputs: current
            .as_ref()
            .map(|c| c.inputs().names())
            .unwrap_or_default(),
        metrics: meta.map(|m| m.metrics.clone()).unwrap_or_default(),
    }
}

/// A model server: the state plus the configuration it was started with.
#[derive(Debug)]
pub struct Server {
    state: Arc<ServingState>,
    config: ServeConfig,
}

impl Server {
    /// Opens a server on `registry` and loads the version each served model's policy names
    /// (models with no loadable version yet answer 503 until one appears).
    /// Two selectors of one model name are refused ([`check_selectors`]).
    pub async fn new(registry: Registry, config: ServeConfig) -> Result<Self> {
        check_selectors(&config.models)?;
        let state = Arc::new(ServingState::new(
            registry,
            config.models.clone(),
            config.route_prefix.clone(),
            config.allow_incompatible_swap,
        ));
        state.metrics().set_log_every(config.log_every);
        let st = state.clone();
        tokio::task::spawn_blocking(move || st.refresh_all())
            .await
            .map_err(|e| join_error("loading models", e))??;
        Ok(Server { state, config })
    }

    /// The shared state (served models, metrics).
    pub fn state(&self) -> Arc<ServingState> {
        self.state.clone()
    }

    /// Serves HTTP on `http` and, if given, gRPC on `grpc` until `shutdown` completes, while
    /// following the registry for new versions. In-flight requests finish before it returns.
    pub async fn run(
        self,
        http: TcpListener,
        grpc: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        self.run_with(http, grpc, None, shutdown).await
    }

    /// [`run`](Self::run), with `extra` routes (the dashboard, [`crate::ui::router`]) merged
    /// into the HTTP router.
    pub async fn run_with(
        self,
        http: TcpListener,
        grpc: Option<TcpListener>,
        extra: Option<axum::Router>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let shutdown = shutdown.shared();
        let follower = tokio::spawn(follow(
            self.state.clone(),
            self.config.poll,
            shutdown.clone(),
        ));
        let ps_follower = (!self.config.follow_ps.is_empty()).then(|| {
            tokio::spawn(follow_ps::follow_ps(
                self.state.clone(),
                self.config.follow_ps.clone(),
                self.config.follow_every,
                shutdown.clone(),
            ))
        });
        let mut router = http::router(self.state.clone(), self.config.max_body_bytes);
        if let Some(extra) = extra {
            router = router.merge(extra);
        }
        let http_server = async {
            let limits = self.config.http_limits();
            let counters = self.state.metrics().connections().clone();
            listen::serve_http(http, router, limits, counters, shutdown.clone()).await;
            Ok::<(), Error>(())
        };
        let grpc_server = async {
            let Some(listener) = grpc else {
                return Ok(());
            };
            let gaddr = listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "grpc".into());
            let (health, health_updates) = grpc::health(self.state.clone(), self.config.poll);
            let served = tonic::transport::Server::builder()
                .add_service(health)
                .add_service(grpc::service(
                    self.state.clone(),
                    self.config.max_body_bytes,
                ))
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    shutdown.clone(),
                );
            let served = tokio::select! {
                served = served => served,
                // The updates loop forever; this arm only completes the select's types.
                () = health_updates => Ok(()),
            };
            served.map_err(|e| Error::Serve {
                addr: gaddr,
                message: e.to_string(),
            })
        };
        let (h, g) = tokio::join!(http_server, grpc_server);
        follower.abort();
        if let Some(f) = ps_follower {
            f.abort();
        }
        h.and(g)
    }
}

fn join_error(what: &str, e: tokio::task::JoinError) -> Error {
    Error::Serve {
        addr: "registry".into(),
        message: format!("{what}: {e}"),
    }
}

/// Follows the registry until `shutdown`: in-process events refresh the model they name at
/// once; every `poll` the directory is listed for versions from other processes, and models
/// whose policy is not "latest" are re-resolved (pins and stages may change elsewhere).
async fn follow(
    state: Arc<ServingState>,
    poll: Duration,
    shutdown: impl Future<Output = ()> + Unpin,
) {
    let mut events = state.registry().subscribe();
    let registry = state.registry().clone();
    // The first poll lists the registry: off the reactor.
    let watcher = tokio::task::spawn_blocking(move || Watcher::for_registry(registry, poll)).await;
    let watcher = match watcher.map_err(|e| join_error("watching the registry", e)) {
        Ok(Ok(w)) => Some(Arc::new(Mutex::new(w))),
        Ok(Err(e)) | Err(e) => {
            tracing::error!(error = %e, "cannot watch the registry; only in-process publishes are followed");
            None
        }
    };
    // Versions published between the initial load and the subscription (or the watcher's
    // first listing) reach neither: resolve every model once more now that both are set up.
    let st = state.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || log(st.refresh_all())).await {
        tracing::error!(error = %e, "registry refresh task failed");
    }
    let mut tick = tokio::time::interval(poll.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut events_open = true;
    let mut shutdown = shutdown;
    loop {
        let st = state.clone();
        let job: Box<dyn FnOnce() + Send> = tokio::select! {
            _ = &mut shutdown => return,
            ev = events.recv(), if events_open => match ev {
                Ok(ev) => Box::new(move || log(st.refresh_model(&ev.model))),
                Err(RecvError::Lagged(_)) => Box::new(move || log(st.refresh_all())),
                Err(RecvError::Closed) => {
                    events_open = false;
                    continue;
                }
            },
            _ = tick.tick() => {
                let watcher = watcher.clone();
                Box::new(move || poll_once(&st, watcher.as_deref()))
            }
        };
        if let Err(e) = tokio::task::spawn_blocking(job).await {
            tracing::error!(error = %e, "registry refresh task failed");
        }
    }
}

fn poll_once(state: &ServingState, watcher: Option<&Mutex<Watcher>>) {
    let fresh = match watcher {
        Some(w) => match w.lock().unwrap_or_else(|p| p.into_inner()).poll_once() {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::warn!(error = %e, "polling the registry failed");
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let mut names: Vec<String> = fresh.into_iter().map(|m| m.model).collect();
    names.extend(
        state
            .models()
            .iter()
            .filter(|m| m.policy() != VersionPolicy::Latest || m.current().is_none())
            .map(|m| m.name().to_string()),
    );
    names.sort();
    names.dedup();
    for name in names {
        log(state.refresh_model(&name));
    }
}

fn log(result: Result<()>) {
    if let Err(e) = result {
        tracing::error!(error = %e, "refreshing served models failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_kebab_case_toml_with_defaults() {
        let c: ServeConfig = toml::from_str(
            "models = [\"ctr@production\", \"fraud\"]\nroute-prefix = \"seg-\"\npoll = \"250ms\"\n",
        )
        .unwrap();
        assert_eq!(
            c.models[0].policy,
            VersionPolicy::Stage(crate::registry::Stage::Production)
        );
        assert_eq!(c.models[1], ModelSelector::latest("fraud"));
        assert_eq!(c.route_prefix.as_deref(), Some("seg-"));
        assert_eq!(c.poll, Duration::from_millis(250));
        assert_eq!(c.max_body_bytes, ServeConfig::default().max_body_bytes);
        let e = toml::from_str::<ServeConfig>("pol = 3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pol"), "{e}");
        let e = toml::from_str::<ServeConfig>("models = [\"a@nope\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
        let e = toml::from_str::<ServeConfig>("poll = \"5 parsecs\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("parsecs"), "{e}");
    }

    #[test]
    fn two_selectors_of_one_model_are_refused() {
        let e = toml::from_str::<ServeConfig>("models = [\"ctr@production\", \"ctr@pinned\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`ctr` is selected twice"), "{e}");
        assert!(
            e.contains("ctr@production") && e.contains("ctr@pinned"),
            "{e}"
        );
        let selectors: Vec<ModelSelector> = ["ctr@production", "fraud", "ctr@3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let e = check_selectors(&selectors).unwrap_err().to_string();
        assert!(e.contains("ctr@production") && e.contains("ctr@3"), "{e}");
        assert!(check_selectors(&selectors[..2]).is_ok());

        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let config = ServeConfig {
            models: selectors,
            ..ServeConfig::default()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = runtime
            .block_on(Server::new(registry, config))
            .unwrap_err()
            .to_string();
        assert!(e.contains("selected twice"), "{e}");
    }
}

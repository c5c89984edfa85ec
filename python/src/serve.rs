//! `eddy.serve(...)`: a model served over HTTP/JSON by the workflow crate's serving module —
//! the server `eddy serve` runs ([`Server`]), started in this process on its own async
//! runtime — returning an `eddy.Server` handle with the URL and `stop()`.
//!
//! What is served:
//! - a registry (an `eddy.Registry` or its directory): its models, each at the version its
//!   selector names (`models=["ctr@production"]`; default every model at its latest version),
//!   following new versions as `eddy serve` does;
//! - a trained `eddy.Pipeline` or a model file (`eddy learn --save`, `Pipeline.save`):
//!   published as the production version of `name` into a fresh registry under the system's
//!   temporary directory, removed again by `stop()`.
//!
//! `POST {url}/v1/models/{name}/predict` with `{"rows": [{…}, …]}` answers
//! `{"model", "version", "predictions", "probabilities"}`; `GET {url}/v1/models`,
//! `/healthz` and `/metrics` as `eddy serve` answers them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use eddy_algorithms::learner::OnlineLearner;
use eddy_algorithms::trained::TrainedModel;
use eddy_workflow::registry::{NewVersion, Registry, Stage};
use eddy_workflow::serving::{ModelSelector, ServeConfig, Server};
use pyo3::prelude::*;
use tokio::sync::oneshot;

use crate::error::eddy_err;
use crate::model::PyPipeline;
use crate::registry::PyRegistry;

/// A running model server.
#[pyclass(module = "eddy._eddy", name = "Server")]
pub struct PyServer {
    addr: SocketAddr,
    models: Vec<String>,
    running: Option<Running>,
    /// The temporary registry of a served pipeline or model file (removed on stop).
    scratch: Option<PathBuf>,
}

/// The runtime, the server task and its shutdown trigger.
struct Running {
    runtime: tokio::runtime::Runtime,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<eddy_workflow::Result<()>>,
}

impl PyServer {
    /// Stops the server (in-flight requests finish) and removes a temporary registry.
    fn shut_down(&mut self) -> eddy_workflow::Result<()> {
        let mut result = Ok(());
        if let Some(Running {
            runtime,
            stop,
            task,
        }) = self.running.take()
        {
            let _ = stop.send(());
            result = match runtime.block_on(task) {
                Ok(r) => r,
                Err(e) => Err(eddy_workflow::Error::Serve {
                    addr: self.addr.to_string(),
                    message: format!("the server task failed: {e}"),
                }),
            };
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
        if let Some(dir) = self.scratch.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        result
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

/// A fresh directory for the registry of a served pipeline.
fn scratch_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!(
        "eddy-serve-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Publishes `trained` as the production version of `name` into a fresh registry.
fn scratch_registry(trained: &TrainedModel, name: &str) -> PyResult<(Registry, PathBuf)> {
    let dir = scratch_dir();
    let registry = Registry::open(&dir).map_err(eddy_err)?;
    let bytes = trained.to_bytes().map_err(eddy_err)?;
    let new = NewVersion {
        producer: "python".into(),
        training_rows: trained.model.rows_seen(),
        stage: Stage::Production,
        ..NewVersion::default()
    };
    if let Err(e) = registry.publish(name, &bytes, new) {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(eddy_err(e));
    }
    Ok((registry, dir))
}

/// What `source` names: a registry and its selectors, plus a temporary directory to remove.
fn resolve(
    source: &Bound<'_, PyAny>,
    name: &str,
    models: Vec<String>,
) -> PyResult<(Registry, Vec<ModelSelector>, Option<PathBuf>)> {
    let parse = |names: &[String]| -> PyResult<Vec<ModelSelector>> {
        names
            .iter()
            .map(|m| m.parse::<ModelSelector>().map_err(eddy_err))
            .collect()
    };
    let single = |trained: &TrainedModel| -> PyResult<_> {
        if !models.is_empty() {
            return Err(eddy_err(
                "models: a single model is served as `name`; models= selects a registry's models",
            ));
        }
        let (registry, dir) = scratch_registry(trained, name)?;
        Ok((registry, parse(&[format!("{name}@production")])?, Some(dir)))
    };
    if let Ok(p) = source.cast::<PyPipeline>() {
        return single(p.borrow().trained()?);
    }
    if let Ok(r) = source.cast::<PyRegistry>() {
        return Ok((r.get().inner().clone(), parse(&models)?, None));
    }
    let path: PathBuf = source.extract().map_err(|_| {
        eddy_err("serve: expected an eddy.Pipeline, an eddy.Registry, a model file or a registry directory")
    })?;
    if path.is_dir() {
        let registry = Registry::open_existing(&path).map_err(eddy_err)?;
        return Ok((registry, parse(&models)?, None));
    }
    single(&TrainedModel::load(&path).map_err(eddy_err)?)
}

/// Binds `host:port` and starts the server on `registry`, in its own runtime.
fn start(
    registry: Registry,
    config: ServeConfig,
    host: &str,
    port: u16,
) -> eddy_workflow::Result<(SocketAddr, Running)> {
    let serve_error = |message: String| eddy_workflow::Error::Serve {
        addr: format!("{host}:{port}"),
        message,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("eddy-serve")
        .enable_all()
        .build()
        .map_err(|e| serve_error(format!("starting the async runtime: {e}")))?;
    let (server, listener) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((host, port))
            .await
            .map_err(|e| serve_error(format!("binding: {e}")))?;
        let server = Server::new(registry, config).await?;
        Ok::<_, eddy_workflow::Error>((server, listener))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| serve_error(e.to_string()))?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = runtime.spawn(server.run(listener, None, async {
        let _ = stopped.await;
    }));
    Ok((
        addr,
        Running {
            runtime,
            stop,
            task,
        },
    ))
}

/// Serves `source` over HTTP on `host:port` (port 0: a free one) until the returned
/// server's `stop()`: an `eddy.Pipeline` or a model file as the model `name`, or an
/// `eddy.Registry` / registry directory with its `models` (selectors `name[@version|@stage]`;
/// default every model at its latest version). The serving code is `eddy serve`'s.
#[pyfunction]
#[pyo3(signature = (source, *, name = "model", models = Vec::new(), host = "127.0.0.1", port = 0, poll_ms = 1000))]
pub fn serve(
    py: Python<'_>,
    source: &Bound<'_, PyAny>,
    name: &str,
    models: Vec<String>,
    host: &str,
    port: u16,
    poll_ms: u64,
) -> PyResult<PyServer> {
    let (registry, selectors, scratch) = resolve(source, name, models)?;
    let served: Vec<String> = selectors.iter().map(|s| s.name.clone()).collect();
    let config = ServeConfig {
        models: selectors,
        poll: Duration::from_millis(poll_ms.max(1)),
        ..ServeConfig::default()
    };
    let started = py.detach(|| start(registry, config, host, port));
    match started {
        Ok((addr, running)) => Ok(PyServer {
            addr,
            models: served,
            running: Some(running),
            scratch,
        }),
        Err(e) => {
            if let Some(dir) = scratch {
                let _ = std::fs::remove_dir_all(dir);
            }
            Err(eddy_err(e))
        }
    }
}

#[pymethods]
impl PyServer {
    /// The base URL, `http://HOST:PORT`.
    #[getter]
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound host.
    #[getter]
    fn host(&self) -> String {
        self.addr.ip().to_string()
    }

    /// The bound port.
    #[getter]
    fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The served model names (empty: every model of the registry).
    #[getter]
    fn models(&self) -> Vec<String> {
        self.models.clone()
    }

    /// Whether the server is running.
    #[getter]
    fn running(&self) -> bool {
        self.running.as_ref().is_some_and(|r| !r.task.is_finished())
    }

    /// The URL of a model's predict endpoint.
    fn predict_url(&self, model: &str) -> String {
        format!("http://{}/v1/models/{model}/predict", self.addr)
    }

    /// Stops the server: in-flight requests finish, then it closes (idempotent). The GIL is
    /// released while it waits.
    fn stop(&mut self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.shut_down()).map_err(eddy_err)
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __exit__(
        &mut self,
        py: Python<'_>,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.stop(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let state = if self.running() { "running" } else { "stopped" };
        format!("eddy.Server(url={:?}, {state})", self.url())
    }
}

//! `eddy.Registry(path)`: the model registry a workflow run or `eddy learn --publish` writes —
//! versions, stages, promotion, and loading a version as an `eddy.Pipeline`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use eddy_algorithms::trained::TrainedModel;
use eddy_workflow::registry::{NewVersion, Registry, Stage, VersionMeta};
use pyo3::prelude::*;

use crate::error::eddy_err;
use crate::model::PyPipeline;
use crate::params::to_python;

/// A model registry directory.
#[pyclass(module = "eddy._eddy", name = "Registry", frozen)]
pub struct PyRegistry {
    inner: Registry,
}

impl PyRegistry {
    /// The registry.
    pub fn inner(&self) -> &Registry {
        &self.inner
    }
}

fn stage(name: &str) -> PyResult<Stage> {
    serde_json::from_value(serde_json::Value::String(name.into())).map_err(|_| {
        eddy_err(format!(
            "stage `{name}`: expected candidate, validated, production or archived"
        ))
    })
}

fn meta<'py>(py: Python<'py>, m: &VersionMeta) -> PyResult<Bound<'py, PyAny>> {
    to_python(py, m)
}

#[pymethods]
impl PyRegistry {
    /// Opens the registry at `path`; a missing directory is refused unless `create=True`.
    #[new]
    #[pyo3(signature = (path, *, create = false))]
    fn new(path: PathBuf, create: bool) -> PyResult<Self> {
        let inner = if create {
            Registry::open(path)
        } else {
            Registry::open_existing(path)
        };
        inner.map(|inner| PyRegistry { inner }).map_err(eddy_err)
    }

    /// The model names.
    fn models(&self) -> PyResult<Vec<String>> {
        self.inner.models().map_err(eddy_err)
    }

    /// Every version of `model` (oldest first), as dicts of its metadata (version, stage,
    /// metrics, training rows, lineage, …).
    fn versions<'py>(&self, py: Python<'py>, model: &str) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let versions = self.inner.versions(model).map_err(eddy_err)?;
        versions.iter().map(|m| meta(py, m)).collect()
    }

    /// The newest version's metadata, or None.
    fn latest<'py>(&self, py: Python<'py>, model: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        let latest = self.inner.latest(model).map_err(eddy_err)?;
        latest.as_ref().map(|m| meta(py, m)).transpose()
    }

    /// The production version's metadata, or None.
    fn production<'py>(&self, py: Python<'py>, model: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        let production = self.inner.production(model).map_err(eddy_err)?;
        production.as_ref().map(|m| meta(py, m)).transpose()
    }

    /// Moves `version` of `model` to `stage` (`"candidate"`, `"validated"`, `"production"`,
    /// `"archived"`); promoting to production archives the previous production version.
    /// Returns the new metadata.
    fn promote<'py>(
        &self,
        py: Python<'py>,
        model: &str,
        version: u64,
        stage: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let m = self
            .inner
            .promote(model, version, self::stage(stage)?)
            .map_err(eddy_err)?;
        meta(py, &m)
    }

    /// Publishes `pipeline`'s model as the next version of `model` (stage candidate unless
    /// `stage` says otherwise) and returns its metadata.
    #[pyo3(signature = (model, pipeline, *, metrics = BTreeMap::new(), stage = "candidate", producer = "python"))]
    fn publish<'py>(
        &self,
        py: Python<'py>,
        model: &str,
        pipeline: PyRef<'_, PyPipeline>,
        metrics: BTreeMap<String, f64>,
        stage: &str,
        producer: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let trained = pipeline.trained()?;
        let bytes = trained.to_bytes().map_err(eddy_err)?;
        let new = NewVersion {
            producer: producer.to_string(),
            training_rows: eddy_algorithms::learner::OnlineLearner::rows_seen(&trained.model),
            metrics,
            stage: self::stage(stage)?,
            ..NewVersion::default()
        };
        let m = self.inner.publish(model, &bytes, new).map_err(eddy_err)?;
        meta(py, &m)
    }

    /// Version `version` of `model` as a Pipeline (default: the production version, else the
    /// newest). A corrupt version is refused.
    #[pyo3(signature = (model, version = None))]
    fn load(&self, model: &str, version: Option<u64>) -> PyResult<PyPipeline> {
        let version = match version {
            Some(v) => v,
            None => {
                let chosen = match self.inner.production(model).map_err(eddy_err)? {
                    Some(m) => Some(m),
                    None => self.inner.latest(model).map_err(eddy_err)?,
                };
                chosen
                    .ok_or_else(|| eddy_err(format!("model `{model}` has no versions")))?
                    .version
            }
        };
        let bytes = self.inner.load_bytes(model, version).map_err(eddy_err)?;
        TrainedModel::from_bytes(&bytes)
            .map(PyPipeline::of)
            .map_err(eddy_err)
    }

    /// The registry's directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.root().to_path_buf()
    }

    fn __repr__(&self) -> String {
        format!("eddy.Registry({:?})", self.inner.root())
    }
}

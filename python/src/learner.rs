//! `eddy.learner(name, **params)`: a learner of the registry by the names and params of the
//! CLI (`--model`, `--param`) and of workflow TOML (`learner`, `params`).

use eddy_algorithms::learners::LearnerSpec;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::params;

/// A checked learner spec: a registry name and its params.
#[pyclass(module = "eddy._eddy", name = "Learner", frozen)]
pub struct PyLearner {
    /// The spec.
    pub spec: LearnerSpec,
}

#[pymethods]
impl PyLearner {
    /// The registry name.
    #[getter]
    fn name(&self) -> &'static str {
        self.spec.kind.name()
    }

    /// The params table, as TOML spells it.
    #[getter]
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        params::to_python(py, &self.spec.params)
    }

    fn __repr__(&self) -> String {
        format!(
            "eddy.learner({:?}, {})",
            self.spec.kind.name(),
            serde_json::Value::Object(self.spec.params.clone())
        )
    }
}

/// The learner `name` (`"ftrl"`, `"sgd"`, `"fm"`, `"pa"`, `"nb"`, `"softmax"`, …) with its
/// params as keywords: `eddy.learner("ftrl", alpha=0.05)`, `eddy.learner("fm", factors=8)`,
/// `eddy.learner("sgd", rule={"kind": "adagrad", "eta": 0.1})`. A misspelt, mistyped or
/// out-of-range param raises `EddyError` naming it.
#[pyfunction]
#[pyo3(signature = (name, **params))]
pub fn learner(name: &str, params: Option<&Bound<'_, PyDict>>) -> PyResult<PyLearner> {
    Ok(PyLearner {
        spec: params::learner_spec(name, params)?,
    })
}

//! Python values to the JSON params tables of the learner registry, and JSON back to Python.
//!
//! Keyword names become table keys with `_` written `-` (every params type spells its keys
//! in kebab-case: `fit_intercept=False` is `fit-intercept = false`); a bare name that the
//! learner nests in a table stands for the dotted key
//! ([`LearnerKind::nested_key`]: `alpha` is `ftrl.alpha`); a dict value is a nested table.

use eddy_algorithms::learners::{LearnerKind, LearnerSpec};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Value};

use crate::error::eddy_err;

/// `name` and keyword `params` as a checked learner spec.
pub fn learner_spec(name: &str, params: Option<&Bound<'_, PyDict>>) -> PyResult<LearnerSpec> {
    let kind: LearnerKind = name.parse().map_err(eddy_err)?;
    let mut spec = LearnerSpec::new(kind);
    if let Some(params) = params {
        for (key, value) in params.iter() {
            let key: String = key.extract()?;
            let key = kebab(&key);
            let key = kind.nested_key(&key).unwrap_or(key);
            spec.set(&key, to_json(&value)?).map_err(eddy_err)?;
        }
    }
    spec.check().map_err(eddy_err)?;
    Ok(spec)
}

fn kebab(key: &str) -> String {
    key.replace('_', "-")
}

/// A Python value (None, bool, int, float, str, list, tuple, dict) as JSON; dict keys are
/// written in kebab-case.
pub fn to_json(value: &Bound<'_, PyAny>) -> PyResult<Value> {
    if value.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = value.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if value.is_instance_of::<PyInt>() {
        return Ok(Value::from(value.extract::<i64>()?));
    }
    if value.is_instance_of::<PyFloat>() {
        let f: f64 = value.extract()?;
        return serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| eddy_err(format!("{f} is not a finite number")));
    }
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if let Ok(d) = value.cast::<PyDict>() {
        let mut table = Map::new();
        for (k, v) in d.iter() {
            let k: String = k.extract()?;
            table.insert(kebab(&k), to_json(&v)?);
        }
        return Ok(Value::Object(table));
    }
    if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
        let items: Vec<Bound<'_, PyAny>> = value.extract()?;
        return items
            .iter()
            .map(to_json)
            .collect::<PyResult<_>>()
            .map(Value::Array);
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "a parameter value must be None, bool, int, float, str, list or dict, not {}",
        value.get_type().name()?
    )))
}

/// A serializable value as Python objects (through `json.loads`).
pub fn to_python<'py>(
    py: Python<'py>,
    value: &impl serde::Serialize,
) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value).map_err(eddy_err)?;
    py.import("json")?.call_method1("loads", (text,))
}

//! `eddy.run(workflow)`: runs a TOML workflow as `eddy run` does and returns its summary.

use std::path::PathBuf;

use eddy_workflow::runner::{self, RunOptions};
use eddy_workflow::spec::Workflow;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::eddy_err;
use crate::params::to_python;

/// Runs the workflow spec at `workflow` (a TOML file) in `run_dir` (default
/// `eddy-runs/<workflow name>`, resuming a run already there) until every node finished, and
/// returns the summary: `workflow`, `run_dir`, `registry`, `interrupted`, `failed` (node
/// names) and `state` (every node's status, attempts, versions, metrics — `state.json`).
/// A spec error raises `EddyError` with the file, line and key. The GIL is released while
/// the workflow runs; serving nodes stop when the rest has finished.
#[pyfunction]
#[pyo3(signature = (workflow, run_dir = None))]
pub fn run<'py>(
    py: Python<'py>,
    workflow: PathBuf,
    run_dir: Option<PathBuf>,
) -> PyResult<Bound<'py, PyDict>> {
    let text = std::fs::read_to_string(&workflow)
        .map_err(|e| eddy_err(format!("reading {}: {e}", workflow.display())))?;
    let wf = Workflow::load(&workflow).map_err(eddy_err)?;
    let run_dir = run_dir.unwrap_or_else(|| PathBuf::from("eddy-runs").join(&wf.name));
    let opts = RunOptions {
        run_dir: run_dir.clone(),
        spec_path: workflow,
        spec_hash: runner::state::spec_hash(&text),
        on_update: None,
        serve_forever: false,
        program: None,
    };
    let summary = py.detach(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| eddy_err(format!("starting the async runtime: {e}")))?;
        rt.block_on(runner::run(wf, opts, std::future::pending()))
            .map_err(eddy_err)
    })?;
    let out = PyDict::new(py);
    out.set_item("workflow", &summary.state.workflow)?;
    out.set_item("run_dir", run_dir)?;
    out.set_item("registry", &summary.registry)?;
    out.set_item("interrupted", summary.interrupted)?;
    out.set_item("failed", summary.failed())?;
    out.set_item("state", to_python(py, &summary.state)?)?;
    Ok(out)
}

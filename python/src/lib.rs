//! `eddy._eddy`: the native module of the Python package `eddy-ml` (import name `eddy`),
//! thin over the workspace's crates — the learner registry, the feature pipeline, the model
//! files, the model registry and the workflow runner — with no training loop, featurizer or
//! file format of its own.
//!
//! | module | Python | what |
//! |---|---|---|
//! | [`learner`] | `eddy.learner(name, **params)`, `eddy.Learner` | registry names and params, as the CLI and TOML spell them |
//! | [`params`] | — | keywords ↔ JSON params tables |
//! | [`model`] | `eddy.Pipeline` (= `eddy.Model`) | River's `learn_one`/`predict_one`/`predict_proba_one`, `learn_batch`/`predict_batch`, `save`/`load` |
//! | [`rows`] | — | a River row (dict) read into reused buffers: the pipeline's per-row path, or a one-row Arrow batch |
//! | [`batches`] | — | `learn_batch`'s loop: micro-batches featurized on one thread while the previous one is learned |
//! | [`arrow_io`] | — | pyarrow / pandas in (zero-copy C data interface), numpy / pyarrow out |
//! | [`registry`] | `eddy.Registry(path)` | versions, stages, promote, publish, load |
//! | [`run`] | `eddy.run(workflow, run_dir=None)` | a TOML workflow's run summary |
//! | [`serve`] | `eddy.serve(source, ...)`, `eddy.Server` | a pipeline, model file or registry served over HTTP by `eddy serve`'s server |
//! | [`error`] | `eddy.EddyError` | the library's messages as one exception (a `ValueError`) |
//!
//! The crate is its own workspace (see `Cargo.toml`) and is built by maturin as an abi3 wheel
//! for CPython ≥ 3.9.

mod arrow_io;
mod batches;
mod error;
mod learner;
mod model;
mod params;
mod registry;
mod rows;
mod run;
mod serve;

use pyo3::prelude::*;

/// The native module.
#[pymodule]
fn _eddy(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("EddyError", m.py().get_type::<error::EddyError>())?;
    m.add_class::<learner::PyLearner>()?;
    m.add_class::<model::PyPipeline>()?;
    m.add_class::<registry::PyRegistry>()?;
    m.add_class::<serve::PyServer>()?;
    m.add_function(wrap_pyfunction!(learner::learner, m)?)?;
    m.add_function(wrap_pyfunction!(run::run, m)?)?;
    m.add_function(wrap_pyfunction!(serve::serve, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

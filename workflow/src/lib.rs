//! # eddy-workflow — TOML workflows, model registry, serving
//!
//! One TOML file declares batch training, online training, evaluation gates, model versions and
//! online serving as one DAG; `eddy run` executes it. The model registry and the HTTP/gRPC
//! serving layer live here too.
//!
//! ## Modules
//! | module | what |
//! |---|---|
//! | [`registry`] | versioned model files with metadata and stages, written atomically; in-process subscribers and a cross-process [`Watcher`](registry::Watcher) |
//! | [`error`] | the crate's [`Error`] and [`Result`] |
//!
//! The workflow DAG and the serving layer arrive with their issues (ARCHITECTURE §6).

pub mod error;
pub mod registry;

pub use error::{Error, Result};

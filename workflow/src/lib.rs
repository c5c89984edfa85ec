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
//! | [`runner`] | `eddy run`: the scheduler, node kinds, run state in the run directory |
//! | [`spec`] | workflow specs: TOML → checked [`Workflow`](spec::Workflow), errors with line, column and hint |
//! | [`model_stream`] | an online trainer publishes a version every T seconds or N rows ([`ModelStream`](model_stream::ModelStream)) |
//! | [`labels`] | delayed labels: impressions ⋈ clicks in label mode, in event-time order, as a training source ([`labelled_stream`](labels::labelled_stream)) |
//! | [`train`] | the one training engine: source → pipeline → learner → progressive evaluation → publisher as a checkpointed dataflow ([`TrainJob`](train::TrainJob)) |
//! | [`serving`] | HTTP/JSON and gRPC predict over registry models, hot swap, version policies, per-key routing, Prometheus metrics ([`Server`](serving::Server)) |
//! | [`ui`] | the dashboard (DAG, training, models, serving, PS pages over a JSON API and server-sent events) and the one Prometheus renderer of every long-running command ([`Dashboard`](ui::Dashboard)) |
//! | [`error`] | the crate's [`Error`] and [`Result`] |
//!
//! See ARCHITECTURE §6 for how the pieces fit.

pub mod error;
pub mod labels;
pub mod model_stream;
pub mod registry;
pub mod runner;
pub mod serving;
pub mod spec;
pub mod train;
pub mod ui;

pub use error::{Error, Result};

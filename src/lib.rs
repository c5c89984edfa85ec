//! # eddy — online machine-learning pipelines
//!
//! One native system for learning from event streams: a streaming dataflow core, feature
//! engineering, incremental learners, a parameter server and a workflow manager. This facade
//! re-exports the workspace crates:
//!
//! | path | crate | what |
//! |---|---|---|
//! | [`eddy::core`](crate::core) | `eddy-core` | dataflow runtime: micro-batches, windows, sources, sinks |
//! | [`eddy::algorithms`](crate::algorithms) | `eddy-algorithms` | feature operators, learners, evaluation |
//! | [`eddy::ps`](crate::ps) | `eddy-ps` | sharded parameter server |
//! | [`eddy::workflow`](crate::workflow) | `eddy-workflow` | TOML workflows, registry, serving |
//!
//! [`prelude`] gathers what an embedding program needs to train, publish and serve;
//! `examples/embed.rs` does all three in a page. The `eddy` binary (`src/main.rs`) is the
//! command line over all of them.

pub use eddy_algorithms as algorithms;
pub use eddy_core as core;
pub use eddy_ps as ps;
pub use eddy_workflow as workflow;

/// What a program embedding eddy needs to train, publish and serve (see `examples/embed.rs`).
pub mod prelude {
    pub use eddy_algorithms::learners::{LearnerKind, LearnerSpec};
    pub use eddy_algorithms::pipeline::{Pipeline, StandardPipeline};
    pub use eddy_algorithms::trained::TrainedModel;
    pub use eddy_core::dataflow::{CheckpointMode, FailoverMode};
    pub use eddy_core::datagen::ctr::CtrGenerator;
    pub use eddy_core::source::file::{CsvOptions, CsvSource, JsonLinesOptions, JsonLinesSource};
    pub use eddy_workflow::model_stream::PublishEvery;
    pub use eddy_workflow::registry::{NewVersion, Registry};
    pub use eddy_workflow::serving::{ServeConfig, Server};
    pub use eddy_workflow::train::{PublishTo, TrainConfig, TrainJob, TrainOutcome};
}

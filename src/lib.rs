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
//! The `eddy` binary (`src/main.rs`) is the command line over all of them.

pub use eddy_algorithms as algorithms;
pub use eddy_core as core;
pub use eddy_ps as ps;
pub use eddy_workflow as workflow;

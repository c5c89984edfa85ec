//! # eddy-workflow — TOML workflows, model registry, serving
//!
//! One TOML file declares batch training, online training, evaluation gates, model versions and
//! online serving as one DAG; `eddy run` executes it. The model registry and the HTTP/gRPC
//! serving layer live here too.
//!
//! The crate is part of the workspace layout from the start (ARCHITECTURE §1); its modules
//! arrive with the registry/serving and workflow issues.

//! # eddy-ps — the sharded parameter server
//!
//! `ParamStore` with server-side update rules, `LocalPs` (in-process, lock-striped shards) and
//! gRPC shards (`PsServer` / `PsClient`). It depends on `eddy-algorithms` for the update rules it
//! applies on the server, so local learners and shards train identically.
//!
//! The crate is part of the workspace layout from the start (ARCHITECTURE §1); its modules
//! arrive with the parameter-server issue.

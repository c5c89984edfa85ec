//! # eddy-ps — the sharded parameter server
//!
//! [`ParamStore`] with server-side update rules, and [`LocalPs`] (in-process, lock-striped
//! shards). It depends on `eddy-algorithms` for the update rules it applies on the server, so
//! local learners and shards train identically.
//!
//! ```
//! use eddy_ps::{LocalPsConfig, ParamStore, TableConfig};
//! # fn main() -> eddy_ps::Result<()> {
//! let ps = LocalPsConfig::new(vec![TableConfig::new("w", 2)]).build()?;
//! let mut rows = Vec::new();
//! ps.pull_now("w", &[7, 9], &mut rows)?; // unseen keys: the initializer's values
//! assert_eq!(rows, vec![0.0; 4]);
//! ps.push_now("w", &[7], &[0.5, -0.5], None)?; // the table's rule runs on the server
//! assert_eq!(ps.row_updates("w", 7)?, Some(1));
//! # Ok(())
//! # }
//! ```
//!
//! ## Modules
//! | module | what |
//! |---|---|
//! | [`store`] | [`ParamStore`]: pull / push / clocks / snapshot, the contract every store keeps |
//! | [`table`] | [`TableConfig`] → [`ValidTableConfig`]: dim, rule, [`Initializer`], admission, expiry |
//! | [`local`] | [`LocalPs`], [`LocalPsConfig`]: the in-process store; [`Delta`] feed |
//! | [`clock`] | [`Clocks`], [`Consistency`], [`WorkerId`]: `async` / `bounded(s)` (SSP) / `sync` |
//! | [`grpc`] | [`PsServer`] / [`PsClient`]: shards as processes over gRPC, snapshots on disk |
//! | [`train`] | [`PsWorker`]: PS-backed online training with progressive validation; [`train::ftrl_model`] reads an FTRL store back into a local model |
//! | [`snapshot`] | the versioned, checksummed snapshot frame |
//! | [`error`] | [`Error`], [`Result`] |

pub mod clock;
pub mod error;
pub mod grpc;
pub mod local;
pub mod snapshot;
pub mod store;
pub mod table;
pub mod train;

pub use clock::{Clocks, Consistency, WorkerId};
pub use error::{Error, Result};
pub use grpc::{PsClient, PsClientConfig, PsServer, PsServerConfig};
pub use local::{Delta, DeltaCursor, LocalPs, LocalPsConfig};
pub use store::ParamStore;
pub use table::{Initializer, TableConfig, ValidTableConfig};
pub use train::{PsWorker, PsWorkerConfig, WorkerReport};

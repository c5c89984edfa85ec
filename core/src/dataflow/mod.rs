//! The dataflow: a builder for the logical graph, the plan that chains and wires it into tasks,
//! and the runtime that runs them.
//!
//! | module | what |
//! |---|---|
//! | `builder` | [`Dataflow`], [`Stream`], [`DataflowConfig`] |
//! | `plan` | parallelism, edges, chaining, channel wiring |
//! | `chain` | the synchronous operator chain inside one task |
//! | `runtime` | task loops, [`JobHandle`], barrier alignment, the summary |
//! | `control` | job-wide flags, failures and checkpoint acknowledgements |
//! | [`checkpointing`] | the checkpoint coordinator and exactly-once restore, [`CheckpointConfig`] |

mod builder;
mod chain;
pub mod checkpointing;
mod control;
mod plan;
mod runtime;

pub use builder::{Dataflow, DataflowConfig, Stream};
pub use checkpointing::CheckpointConfig;
pub use control::TaskAck;
pub use runtime::JobHandle;

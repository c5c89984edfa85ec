//! The dataflow: a builder for the logical graph, the plan that chains and wires it into tasks,
//! and the runtime that runs them.
//!
//! | module | what |
//! |---|---|
//! | `builder` | [`Dataflow`], [`Stream`], [`DataflowConfig`] |
//! | `plan` | parallelism, edges, chaining, channel wiring |
//! | `chain` | the synchronous operator chain inside one task |
//! | `runtime` | job start, [`JobHandle`], the summary |
//! | `task` | one task attempt: its environment, flushing onto data and priority lanes |
//! | `operator_task` | the operator loop: input lanes, barriers, processing |
//! | `source_task` | the source loop: polling, barrier injection (unaligned while blocked) |
//! | `supervisor` | runs the tasks, restarts what failed (exactly-once or approximate) |
//! | `rewire` | reconnects a task restarted alone to its running peers |
//! | `inflight` | priority-lane barriers with positions; encoding of in-flight data |
//! | `barrier_align` | per-input lanes and the aligned/unaligned barrier state machine |
//! | `control` | job-wide flags, failures, checkpoint acknowledgements, finished tasks |
//! | [`checkpointing`] | [`CheckpointConfig`], exactly-once restore |
//! | `coordinator` | the checkpoint coordinator: triggers, completes, times out, final checkpoint |
//! | `finished` | tasks that finish while the job goes on (FLIP-147) and their final commit |
//! | `state_writer` | a task's background writer of deferred (asynchronous) snapshots, which acknowledges them once written |
//! | `accounting` | exact `records_lost` / `records_replayed` of approximate failover |
//! | [`failover`] | [`FailoverMode`], [`RestartPolicy`], [`FaultInjection`] at a [`FaultPoint`] |

mod accounting;
mod barrier_align;
mod builder;
mod chain;
pub mod checkpointing;
mod control;
mod coordinator;
pub mod failover;
mod finished;
mod inflight;
mod operator_task;
mod plan;
mod rewire;
mod runtime;
mod source_task;
mod state_writer;
mod supervisor;
mod task;

pub use builder::{Dataflow, DataflowConfig, Stream};
pub use checkpointing::{CheckpointConfig, CheckpointMode};
pub use control::TaskAck;
pub use failover::{
    FailoverConfig, FailoverMode, FaultInjection, FaultKind, FaultPoint, RestartPolicy,
};
pub use runtime::JobHandle;

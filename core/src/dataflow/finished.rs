//! Tasks that finish while the job goes on (Flink's FLIP-147): a task whose input ended no
//! longer blocks checkpoints, and a finished job's two-phase sinks are committed by a final
//! checkpoint rather than published unchecked.
//!
//! In a checkpointed job a task at the end of its input flushes its operators, lets its sink
//! pre-commit the rest as the epoch after the last barrier it passed, sends `End`, and tells
//! the coordinator it finished (after that barrier). Checkpoints after it complete without its
//! ack and record it as finished; a downstream task treats the ended input as aligned. A task
//! with a sink then waits for a checkpoint that covers it — the coordinator takes a final one
//! once every task finished — commits and closes.
//!
//! A task restored from a checkpoint that records it as finished does not run again: its sink
//! reconciles (publishing what is pre-committed up to the restored epoch), it sends `End` on
//! its outputs and reports itself finished again.

use std::time::Duration;

use crate::dataflow::chain::{guard, Chain, Pending};
use crate::dataflow::control::{JobControl, TaskFinished};
use crate::dataflow::plan::Task;
use crate::dataflow::task::{flush, TaskEnv};
use crate::error::Result;
use crate::message::{Epoch, Message};
use crate::source::SourcePosition;

/// How often a finished task waiting for its commit looks for a cancelled attempt.
const WAIT_STEP: Duration = Duration::from_millis(2);

/// Reports a finished task to the coordinator.
pub(crate) fn report(env: &TaskEnv, task: &str, after: Epoch, position: Option<SourcePosition>) {
    env.control.finished(TaskFinished {
        task: task.to_string(),
        after,
        position,
    });
}

/// Waits (on a blocking thread) until a checkpoint at or after `epoch` completed; `None` when
/// the attempt is torn down first.
pub(crate) fn wait_commit_blocking(control: &JobControl, epoch: Epoch) -> Option<Epoch> {
    let rx = control.committed.subscribe();
    loop {
        let committed = *rx.borrow();
        if committed >= epoch.0 {
            return Some(Epoch(committed));
        }
        if control.is_cancelled() {
            return None;
        }
        std::thread::sleep(WAIT_STEP);
    }
}

/// Waits until a checkpoint at or after `epoch` completed; `None` when the attempt is torn
/// down first.
pub(crate) async fn wait_commit(control: &JobControl, epoch: Epoch) -> Option<Epoch> {
    let mut rx = control.committed.subscribe();
    loop {
        let committed = *rx.borrow_and_update();
        if committed >= epoch.0 {
            return Some(Epoch(committed));
        }
        if control.is_cancelled() {
            return None;
        }
        // a dropped sender means the job is gone; the cancel check then ends the wait
        let _ = tokio::time::timeout(WAIT_STEP, rx.changed()).await;
    }
}

/// The end of an operator task's input in a checkpointed job, after barrier `last`.
pub(crate) async fn finish_operator_task(
    chain: &mut Chain,
    name: &str,
    last: Epoch,
    env: &TaskEnv,
) -> Result<()> {
    let mut pending = Vec::new();
    guard(name, || chain.finish(last, &mut pending))?;
    flush(chain, &mut pending, env).await?;
    report(env, name, last, None);
    if chain.sink.is_some() {
        if let Some(epoch) = wait_commit(&env.control, Epoch(last.0 + 1)).await {
            guard(name, || chain.close_committed(epoch))?;
        }
    }
    Ok(())
}

/// Runs a task restored as finished (see the module docs).
pub(crate) async fn run_restored(mut t: Task, env: &TaskEnv) -> Result<()> {
    let name = t.name.clone();
    let position = t.restore.take().and_then(|s| s.position);
    if let Some(restored) = t.restored_epoch {
        guard(&name, || t.chain.reconcile_finished(restored))?;
    }
    let mut pending: Vec<Pending> = Vec::new();
    t.chain.broadcast_all(&Message::End, &mut pending);
    flush(&mut t.chain, &mut pending, env).await?;
    report(env, &name, Epoch(env.epoch_base), position);
    Ok(())
}

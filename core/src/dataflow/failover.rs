//! What a job does when a task fails (ARCHITECTURE §3 "Failover"): the strategy, the restart
//! policy, and fault injection for tests and benchmarks — per job, at a [`FaultPoint`]: before
//! a batch, during a snapshot, `pre_commit` or `commit`, while the checkpoint store writes a
//! checkpoint or its manifest; as an error, a panic or a hang ([`FaultKind`]).
//!
//! - [`FailoverMode::ExactlyOnce`]: any task failure stops every task; the job restarts from
//!   the last completed checkpoint (sources seek back, operators restore, two-phase sinks
//!   discard what was not committed). Nothing lost, nothing duplicated, everyone pauses.
//! - [`FailoverMode::Approximate`]: only the failed task restarts, from its own snapshot in
//!   the last completed checkpoint (fresh without one); its peers never stop. What it loses
//!   and what it does twice is counted exactly (below).
//!
//! ## What approximate failover counts
//!
//! `records_lost` + `records_replayed` make the loss exact: for a job whose sinks are
//! two-phase, *rows at the sinks + `records_lost` − `records_replayed` = rows at the sinks of
//! an uninterrupted run*. Rows are counted where the loss happens, as rows **entering the task
//! that loses them**; in a job whose operators emit one row per input row up to that task
//! (stateless operators, over-aggregates) that is exactly source rows, and an aggregate (a
//! window) chained with its sink counts in the source rows it aggregates. `records_lost` is
//! the sum of:
//!
//! - rows in flight to a task that is down: the batch it failed on, what its input lanes had
//!   queued, what its channels held, and every send to it until it is back;
//! - **rolled back**: a task restored from checkpoint `R` gives up the rows it took in since
//!   its snapshot for `R` (its start, when it took none) whose effect was only in its operator
//!   state — they were neither passed on over a channel nor written to its sink;
//! - **withdrawn**: rows in sink output a two-phase sink
//!   ([`Sink::withdraws_uncommitted`](crate::sink::Sink::withdraws_uncommitted)) deletes
//!   uncommitted. A task with operator state recovers its sink at `R`, so everything it staged
//!   after `R` goes (its restored state produces it again where it can); a stateless task
//!   keeps every part its sink pre-committed and loses only the in-progress part (rows since
//!   its last barrier).
//!
//! `records_replayed` counts rows a restarted **source task** sends a second time: it seeks
//! back to its position at `R`, with the output it had in flight there, and its sink withdraws
//! what it staged after `R`; the rows it had passed on over channels since `R` go out again
//! and are counted as they do. It also counts rows a **restored operator** emits again: rows
//! its state held at `R` that it emitted after `R` (a join's buffered rows a watermark
//! flushed), when it delivered more than it took since `R`. The bookkeeping is in
//! `accounting`.
//!
//! Rows of a **lookup input** ([`Stream::lookup_input`](crate::dataflow::Stream::lookup_input):
//! a temporal join's table, the clicks of a labelling join) are not the job's rows, nor is
//! anything of a stream that reaches the sinks only through lookup inputs (the click source,
//! operators on its path): their loss and replay change which rows match, not how many rows
//! there are, and are not counted. The identity then holds in the rows of the other inputs.
//!
//! Not exact: a task whose chain turns several rows into one (an aggregate) and sends the
//! result over a channel counts its rolled-back rows in input rows but what it passed on in
//! output rows; a sink that publishes on write (not two-phase) keeps rows a restored operator
//! emits again; a checkpoint completed from the acks of a failed attempt after its restart
//! (a second failure of the same task restores rows counted lost by the first).
//!
//! Without a checkpoint directory there is nothing to restore: an exactly-once restart starts
//! every task afresh (sources from the beginning), so only idempotent output stays exact.
//!
//! Either way the [`RestartPolicy`] decides whether a failure is restarted: errors whose
//! [domain](crate::error::ErrorDomain) is `User` (bad input or configuration) fail the job at
//! once, the others are restarted after a backoff that doubles per restart, until more than
//! `max_restarts` restarts fall within `window`: then the job fails with the root cause. The
//! default policy restarts nothing, so a job without a policy fails as before.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dataflow::control::JobControl;
use crate::error::{Error, ErrorDomain, Result};

/// How a job recovers from a task failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailoverMode {
    /// Every task rolls back to the last completed checkpoint (default).
    #[default]
    ExactlyOnce,
    /// Only the failed task restarts; records routed to it while down are lost and counted.
    Approximate,
}

/// When and how often failed tasks are restarted.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartPolicy {
    /// Most restarts within `window`; one more fails the job. Default 0: never restart.
    pub max_restarts: usize,
    /// The sliding window restarts are counted in. Default 60 s.
    pub window: Duration,
    /// Wait before the first restart; doubles per restart within the window. Each wait is
    /// jittered to between half and all of it ([`crate::backoff`]). Default 100 ms.
    pub initial_backoff: Duration,
    /// Longest wait before a restart. Default 10 s.
    pub max_backoff: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            max_restarts: 0,
            window: Duration::from_secs(60),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RestartPolicy {
    /// Restarts up to `max_restarts` times per minute with the default backoff.
    pub fn restarts(max_restarts: usize) -> Self {
        RestartPolicy {
            max_restarts,
            ..RestartPolicy::default()
        }
    }
}

/// Failover settings of a job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FailoverConfig {
    /// The strategy.
    pub mode: FailoverMode,
    /// The restart policy.
    pub restart: RestartPolicy,
}

/// How an injected fault fails its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The operator panics.
    Panic,
    /// The operator returns an error of the `External` domain (retryable).
    Error,
    /// The stage stops answering: it blocks for the duration (`None`: until the attempt is
    /// cancelled or torn down), then carries on as if nothing happened. A hung operator blocks
    /// the thread it runs on, as a real one would; a hung store write delays the checkpoint.
    Hang(Option<Duration>),
}

/// Where in its stage an injected fault fires. The fault fires the `after + 1`-th time the
/// stage reaches that point in the current attempt (for the store points: the `after + 1`-th
/// checkpoint the job writes, counted over the whole job).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultPoint {
    /// Before a batch is processed (a source: after it produced the batch). The default.
    #[default]
    Batch,
    /// During an operator's `snapshot` at a barrier (a source: when it records its position).
    Snapshot,
    /// During a sink's `pre_commit`.
    PreCommit,
    /// During a sink's `commit` (the recovery commit on restore included).
    Commit,
    /// While the coordinator writes a checkpoint to the store: after the first task file,
    /// before the manifest (the checkpoint is left incomplete). `operator` is ignored.
    StoreWrite,
    /// While the coordinator writes a checkpoint's manifest (the manifest never lands).
    /// `operator` is ignored.
    ManifestWrite,
}

impl FaultPoint {
    /// Whether the point belongs to the checkpoint coordinator rather than to a task.
    pub fn in_store(self) -> bool {
        matches!(self, FaultPoint::StoreWrite | FaultPoint::ManifestWrite)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Makes one task (or the checkpoint store) fail once, for tests and benchmarks: the stage
/// named `operator` (an operator, a sink or a source) in subtask `subtask` fails at `point`
/// (by default: when it is handed its `after_batches + 1`-th batch of the current attempt, a
/// source when it produced that many batches, before processing it). Each injection fires once
/// per job; give several to fail several times. Faults belong to one job (its
/// [`DataflowConfig`](crate::dataflow::DataflowConfig)), never to the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultInjection {
    /// Operator, sink or source name as given to the builder.
    pub operator: String,
    /// The subtask to fail.
    pub subtask: usize,
    /// How many times the stage passes `point` normally in the attempt before it fails
    /// (batches, for [`FaultPoint::Batch`]).
    pub after_batches: u64,
    /// Panic, error or hang.
    pub kind: FaultKind,
    /// Where the fault fires.
    pub point: FaultPoint,
}

impl FaultInjection {
    /// An injected error in `operator[subtask]` after `after_batches` batches.
    pub fn error(operator: &str, subtask: usize, after_batches: u64) -> Self {
        FaultInjection {
            operator: operator.into(),
            subtask,
            after_batches,
            kind: FaultKind::Error,
            point: FaultPoint::Batch,
        }
    }

    /// An injected panic in `operator[subtask]` after `after_batches` batches.
    pub fn panic(operator: &str, subtask: usize, after_batches: u64) -> Self {
        FaultInjection {
            kind: FaultKind::Panic,
            ..FaultInjection::error(operator, subtask, after_batches)
        }
    }

    /// `operator[subtask]` stops answering after `after_batches` batches, for `duration`
    /// (`None`: until the attempt is torn down).
    pub fn hang(
        operator: &str,
        subtask: usize,
        after_batches: u64,
        duration: Option<Duration>,
    ) -> Self {
        FaultInjection {
            kind: FaultKind::Hang(duration),
            ..FaultInjection::error(operator, subtask, after_batches)
        }
    }

    /// The same fault, fired at `point` instead, after `after` passes of it.
    pub fn at(self, point: FaultPoint, after: u64) -> Self {
        FaultInjection {
            point,
            after_batches: after,
            ..self
        }
    }

    /// An injected error while the `after + 1`-th checkpoint is written (`point` is
    /// [`FaultPoint::StoreWrite`] or [`FaultPoint::ManifestWrite`]).
    pub fn store(point: FaultPoint, after: u64) -> Self {
        FaultInjection::error("checkpoint-store", 0, 0).at(point, after)
    }
}

/// A fault of the job, with whether it fired already (shared by every attempt).
#[derive(Debug)]
pub(crate) struct ArmedFault {
    spec: FaultInjection,
    fired: AtomicBool,
    control: Arc<JobControl>,
}

impl ArmedFault {
    pub(crate) fn arm(specs: &[FaultInjection], control: &Arc<JobControl>) -> Vec<Arc<ArmedFault>> {
        specs
            .iter()
            .map(|spec| {
                Arc::new(ArmedFault {
                    spec: spec.clone(),
                    fired: AtomicBool::new(false),
                    control: control.clone(),
                })
            })
            .collect()
    }

    /// Fires the fault: panics, errs, or blocks (see [`FaultKind::Hang`]).
    fn fire(&self) -> Result<()> {
        let spec = &self.spec;
        let what = format!(
            "injected fault in {}[{}] at {:?} after {}",
            spec.operator, spec.subtask, spec.point, spec.after_batches
        );
        match spec.kind {
            FaultKind::Panic => panic!("{what}"),
            FaultKind::Error => Err(Error::Operator {
                operator: spec.operator.clone(),
                subtask: spec.subtask,
                message: what,
                domain: ErrorDomain::External,
            }),
            FaultKind::Hang(duration) => {
                tracing::warn!("{what}: hanging for {duration:?}");
                let until = duration.map(|d| Instant::now() + d);
                while !self.control.is_cancelled() && until.is_none_or(|t| Instant::now() < t) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(())
            }
        }
    }
}

/// The faults aimed at one stage of one task attempt, counting how often it passed each point.
#[derive(Debug)]
pub(crate) struct StageFault {
    faults: Vec<Arc<ArmedFault>>,
    seen: [u64; 6],
}

impl StageFault {
    /// The faults aimed at `operator[subtask]`, if any.
    pub(crate) fn find(faults: &[Arc<ArmedFault>], operator: &str, subtask: usize) -> Option<Self> {
        let mine: Vec<_> = faults
            .iter()
            .filter(|f| {
                !f.spec.point.in_store() && f.spec.operator == operator && f.spec.subtask == subtask
            })
            .cloned()
            .collect();
        (!mine.is_empty()).then_some(StageFault {
            faults: mine,
            seen: [0; 6],
        })
    }

    /// The faults at the checkpoint store's points (one set per job).
    pub(crate) fn store(faults: &[Arc<ArmedFault>]) -> Self {
        StageFault {
            faults: faults
                .iter()
                .filter(|f| f.spec.point.in_store())
                .cloned()
                .collect(),
            seen: [0; 6],
        }
    }

    /// Counts one batch handed to the stage; fails (panics, errs or hangs) when a fault is due.
    pub(crate) fn on_batch(&mut self) -> Result<()> {
        self.on(FaultPoint::Batch)
    }

    /// Counts one pass of `point`; fails when a fault at it is due.
    pub(crate) fn on(&mut self, point: FaultPoint) -> Result<()> {
        let seen = &mut self.seen[point.index()];
        *seen += 1;
        for f in &self.faults {
            if f.spec.point == point
                && *seen > f.spec.after_batches
                && !f.fired.swap(true, Ordering::SeqCst)
            {
                f.fire()?;
            }
        }
        Ok(())
    }

    /// Whether a fault at `point` is due on its next pass (store faults: the write step that
    /// fails is chosen by the writer). Counts the pass and marks the fault fired.
    pub(crate) fn due(&mut self, point: FaultPoint) -> Option<FaultKind> {
        let seen = &mut self.seen[point.index()];
        *seen += 1;
        self.faults
            .iter()
            .find(|f| {
                f.spec.point == point
                    && *seen > f.spec.after_batches
                    && !f.fired.swap(true, Ordering::SeqCst)
            })
            .map(|f| f.spec.kind)
    }
}

/// Counts a pass of `point` at a stage that may have faults (see [`StageFault::on`]).
pub(crate) fn at(fault: &mut Option<StageFault>, point: FaultPoint) -> Result<()> {
    match fault {
        Some(f) => f.on(point),
        None => Ok(()),
    }
}

/// The restart decisions of one job: a sliding window of restart times.
#[derive(Debug)]
pub(crate) struct RestartTracker {
    policy: RestartPolicy,
    recent: Vec<Instant>,
}

impl RestartTracker {
    pub(crate) fn new(policy: RestartPolicy) -> Self {
        RestartTracker {
            policy,
            recent: Vec::new(),
        }
    }

    /// Records a failure at `now`: the ceiling of the backoff before restarting (the
    /// supervisor waits a jittered time below it), or `None` when the policy allows no more
    /// restarts in the window.
    pub(crate) fn on_failure(&mut self, now: Instant) -> Option<Duration> {
        let window = self.policy.window;
        self.recent
            .retain(|t| now.saturating_duration_since(*t) < window);
        if self.recent.len() >= self.policy.max_restarts {
            return None;
        }
        let attempt = u32::try_from(self.recent.len()).unwrap_or(u32::MAX);
        self.recent.push(now);
        // The ceiling; the supervisor jitters it.
        Some(
            crate::backoff::Backoff::new(self.policy.initial_backoff, self.policy.max_backoff)
                .ceiling(attempt),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_and_stop_at_the_limit_within_the_window() {
        let mut t = RestartTracker::new(RestartPolicy {
            max_restarts: 3,
            window: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(250),
        });
        let t0 = Instant::now();
        assert_eq!(t.on_failure(t0), Some(Duration::from_millis(100)));
        assert_eq!(t.on_failure(t0), Some(Duration::from_millis(200)));
        assert_eq!(t.on_failure(t0), Some(Duration::from_millis(250)));
        assert_eq!(t.on_failure(t0), None);
        // after the window the count starts over
        let later = t0 + Duration::from_secs(11);
        assert_eq!(t.on_failure(later), Some(Duration::from_millis(100)));
    }

    #[test]
    fn the_default_policy_never_restarts() {
        assert_eq!(
            RestartTracker::new(RestartPolicy::default()).on_failure(Instant::now()),
            None
        );
    }
}

//! What a job does when a task fails (ARCHITECTURE §3 "Failover"): the strategy, the restart
//! policy, and fault injection for tests and benchmarks.
//!
//! - [`FailoverMode::ExactlyOnce`]: any task failure stops every task; the job restarts from
//!   the last completed checkpoint (sources seek back, operators restore, two-phase sinks
//!   discard what was not committed). Nothing lost, nothing duplicated, everyone pauses.
//! - [`FailoverMode::Approximate`]: only the failed task restarts, from its own snapshot in
//!   the last completed checkpoint (fresh without one); its peers never stop. Records routed
//!   to it while it is down — including those queued in its input channels when it failed and
//!   the batch it was processing — are dropped and counted in `records_lost`.
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
}

/// Makes one task fail once, for tests and benchmarks: the stage named `operator` (an operator,
/// a sink or a source) in subtask `subtask` fails when it is handed its `after_batches + 1`-th
/// batch of the current attempt (a source: when it produced that many batches), before
/// processing it. Each injection fires once per job; give several to fail several times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultInjection {
    /// Operator, sink or source name as given to the builder.
    pub operator: String,
    /// The subtask to fail.
    pub subtask: usize,
    /// Batches handled normally by that stage in the attempt before it fails.
    pub after_batches: u64,
    /// Panic or error.
    pub kind: FaultKind,
}

impl FaultInjection {
    /// An injected error in `operator[subtask]` after `after_batches` batches.
    pub fn error(operator: &str, subtask: usize, after_batches: u64) -> Self {
        FaultInjection {
            operator: operator.into(),
            subtask,
            after_batches,
            kind: FaultKind::Error,
        }
    }

    /// An injected panic in `operator[subtask]` after `after_batches` batches.
    pub fn panic(operator: &str, subtask: usize, after_batches: u64) -> Self {
        FaultInjection {
            kind: FaultKind::Panic,
            ..FaultInjection::error(operator, subtask, after_batches)
        }
    }
}

/// A fault of the job, with whether it fired already (shared by every attempt).
#[derive(Debug)]
pub(crate) struct ArmedFault {
    spec: FaultInjection,
    fired: AtomicBool,
}

impl ArmedFault {
    pub(crate) fn arm(specs: &[FaultInjection]) -> Vec<Arc<ArmedFault>> {
        specs
            .iter()
            .map(|spec| {
                Arc::new(ArmedFault {
                    spec: spec.clone(),
                    fired: AtomicBool::new(false),
                })
            })
            .collect()
    }
}

/// The faults aimed at one stage of one task attempt, counting its batches.
#[derive(Debug)]
pub(crate) struct StageFault {
    faults: Vec<Arc<ArmedFault>>,
    seen: u64,
}

impl StageFault {
    /// The faults aimed at `operator[subtask]`, if any.
    pub(crate) fn find(faults: &[Arc<ArmedFault>], operator: &str, subtask: usize) -> Option<Self> {
        let mine: Vec<_> = faults
            .iter()
            .filter(|f| f.spec.operator == operator && f.spec.subtask == subtask)
            .cloned()
            .collect();
        (!mine.is_empty()).then_some(StageFault {
            faults: mine,
            seen: 0,
        })
    }

    /// Counts one batch handed to the stage; fails (panics or errs) when a fault is due.
    pub(crate) fn on_batch(&mut self) -> Result<()> {
        self.seen += 1;
        for f in &self.faults {
            if self.seen > f.spec.after_batches && !f.fired.swap(true, Ordering::SeqCst) {
                let what = format!(
                    "injected fault in {}[{}] after {} batches",
                    f.spec.operator, f.spec.subtask, f.spec.after_batches
                );
                match f.spec.kind {
                    FaultKind::Panic => panic!("{what}"),
                    FaultKind::Error => {
                        return Err(Error::Operator {
                            operator: f.spec.operator.clone(),
                            subtask: f.spec.subtask,
                            message: what,
                            domain: ErrorDomain::External,
                        })
                    }
                }
            }
        }
        Ok(())
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

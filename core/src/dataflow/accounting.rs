//! Exact loss and replay accounting of approximate failover (see [`failover`](super::failover)
//! for the definitions of `records_lost` and `records_replayed`).
//!
//! Every task attempt keeps a [`Ledger`]: rows it took in (an operator task: input rows its
//! chain processed; a source task: rows its source produced and its chain processed), rows it
//! passed on over channels, and rows its sink received — running totals, plus a [`Mark`] of
//! the three at every barrier it snapshotted (and one at its start). When the attempt fails
//! and is restarted alone from checkpoint `R`, [`Ledger::settle`] compares the totals at the
//! failure with the mark of `R` (the attempt's start when it did not snapshot `R` itself):
//!
//! - an operator task whose chain holds state (or may: it never snapshotted) is rolled back
//!   to `R` and its two-phase sink withdraws what it staged after `R`; the rows it took in
//!   since `R` and did not deliver for good (pass on, or sink into a sink that keeps them) are
//!   lost — the part its sink had received as *withdrawn*, the rest as *rolled back*. When it
//!   delivered more than it took since `R` (rows buffered at `R` that a watermark flushed
//!   later: a join's, a session window's), the restored state emits the difference again:
//!   that many are replayed. Either way `lost − replayed` = taken − delivered since `R`,
//!   which is what the identity in [`failover`](super::failover) needs, exact for operators
//!   that emit one row per row taken (maps, over-aggregates, a labelling join, a left-outer
//!   temporal join) and for any chain whose sink withdraws;
//! - rows on a *lookup input* (`Stream::lookup_input`: a temporal join's table, a labelling
//!   join's clicks) and every row of a stream that reaches the sinks only through lookup
//!   inputs are not the job's rows: nothing counts them (their channels are not counted);
//! - a stateless operator task keeps every part its sink pre-committed: only the sink's
//!   in-progress part (rows since its last barrier) is withdrawn and lost;
//! - a source task seeks back to `R` (with the output it had in flight there) and sends again
//!   what it passed on since `R`: that many rows become its next attempt's replay budget,
//!   counted as `records_replayed` as they go out again ([`Ledger::passed`]).
//!
//! Counting is a few relaxed atomic adds per batch and message; marks are pruned to the
//! newest completed checkpoint, so a ledger stays small.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use crate::message::Epoch;
use crate::metrics::{JobMetrics, OperatorMetrics};

/// The running totals of one attempt at one point: a barrier's snapshot, or its start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Mark {
    /// The checkpoint whose barrier the attempt snapshotted (0: the attempt's start).
    pub(crate) epoch: u64,
    /// Rows taken in by the chain.
    pub(crate) taken: u64,
    /// Rows passed on over channels (output queued before the barrier included).
    pub(crate) passed: u64,
    /// Rows the chain's sink had received (over every attempt of the task).
    pub(crate) sunk: u64,
}

impl Mark {
    /// What happened since `earlier`.
    fn since(self, earlier: Mark) -> Mark {
        Mark {
            epoch: self.epoch,
            taken: self.taken.saturating_sub(earlier.taken),
            passed: self.passed.saturating_sub(earlier.passed),
            sunk: self.sunk.saturating_sub(earlier.sunk),
        }
    }
}

const STATE_UNKNOWN: u8 = 0;
const STATELESS: u8 = 1;
const STATEFUL: u8 = 2;

/// What one task attempt took in, passed on and sank, with a mark per snapshot.
#[derive(Debug)]
pub(crate) struct Ledger {
    job: Arc<JobMetrics>,
    /// The chain's sink counters (records in), if it has a sink.
    sink: Mutex<Option<Arc<OperatorMetrics>>>,
    taken: AtomicU64,
    passed: AtomicU64,
    /// Whether a snapshot of the chain held state.
    state: AtomicU8,
    /// Rows still to be sent again by a restarted source task.
    replay_budget: AtomicU64,
    marks: Mutex<Vec<Mark>>,
}

/// What a failed attempt lost, and what its restart will send again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Settlement {
    /// Rows whose effect was only in operator state restored away.
    pub(crate) rolled_back: u64,
    /// Rows in sink output withdrawn (staged, never to be committed).
    pub(crate) withdrawn: u64,
    /// Rows the restored state will emit a second time: it had emitted them since `R` (state
    /// at `R` that a watermark or a trigger flushed later) and will again (counted at once).
    pub(crate) emitted_again: u64,
    /// Rows the restarted source task will pass on a second time (counted as they go out).
    pub(crate) replay: u64,
}

/// The kind of task a ledger settles for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rollback {
    /// A source task: seeks back to `R` and reads again.
    Source,
    /// An operator task restored to `R`, its sink recovering at `R`.
    Restored,
    /// A stateless operator task whose sink keeps what it pre-committed.
    Stateless,
}

impl Ledger {
    /// A fresh ledger for one attempt, replaying `replay_budget` rows first.
    pub(crate) fn new(job: Arc<JobMetrics>, replay_budget: u64) -> Self {
        Ledger {
            job,
            sink: Mutex::new(None),
            taken: AtomicU64::new(0),
            passed: AtomicU64::new(0),
            state: AtomicU8::new(STATE_UNKNOWN),
            replay_budget: AtomicU64::new(replay_budget),
            marks: Mutex::new(Vec::new()),
        }
    }

    /// The attempt starts; `sink` are its chain's sink counters.
    pub(crate) fn start(&self, sink: Option<Arc<OperatorMetrics>>) {
        *self.sink.lock().unwrap_or_else(|p| p.into_inner()) = sink;
        let start = self.now(0);
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        marks.clear();
        marks.push(start);
    }

    /// The chain processed `rows` input rows.
    #[inline]
    pub(crate) fn taken(&self, rows: usize) {
        self.taken.fetch_add(rows as u64, Ordering::Relaxed);
    }

    /// `rows` rows went out on a channel; those a restarted source sends again are counted
    /// as replayed.
    #[inline]
    pub(crate) fn passed(&self, rows: usize) {
        if rows == 0 {
            return;
        }
        let rows = rows as u64;
        self.passed.fetch_add(rows, Ordering::Relaxed);
        if self.replay_budget.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut again = 0;
        let _ = self
            .replay_budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                again = left.min(rows);
                Some(left - again)
            });
        OperatorMetrics::add(&self.job.records_replayed, again);
    }

    fn now(&self, epoch: u64) -> Mark {
        let sunk = self
            .sink
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(0, |m| m.records_in.load(Ordering::Relaxed));
        Mark {
            epoch,
            taken: self.taken.load(Ordering::Relaxed),
            passed: self.passed.load(Ordering::Relaxed),
            sunk,
        }
    }

    /// The chain snapshotted for `epoch` with `states`; `queued` rows it emitted before the
    /// barrier are still to go out. Marks older than `completed` (the newest completed
    /// checkpoint) are dropped.
    pub(crate) fn snapshot(
        &self,
        epoch: Epoch,
        states: &[Option<Vec<u8>>],
        queued: usize,
        completed: u64,
    ) {
        let flag = if states.iter().any(Option::is_some) {
            STATEFUL
        } else {
            STATELESS
        };
        self.state.fetch_max(flag, Ordering::Relaxed);
        let mut mark = self.now(epoch.0);
        mark.passed += queued as u64;
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        // keep the start, the newest completed mark and everything after it
        let keep_from = marks
            .iter()
            .rposition(|m| m.epoch != 0 && m.epoch <= completed)
            .unwrap_or(0);
        if keep_from > 1 {
            marks.drain(1..keep_from);
        }
        marks.push(mark);
    }

    /// Whether the chain is known to hold no state (it snapshotted, and every state was empty).
    pub(crate) fn stateless(&self) -> bool {
        self.state.load(Ordering::Relaxed) == STATELESS
    }

    /// The mark of `epoch`, or the attempt's start when it did not snapshot it.
    fn mark_of(&self, epoch: Option<Epoch>) -> Mark {
        let marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        epoch
            .and_then(|e| marks.iter().rev().find(|m| m.epoch == e.0 && e.0 != 0))
            .or_else(|| marks.first())
            .copied()
            .unwrap_or_default()
    }

    /// The newest mark: the last snapshot, or the start.
    fn last_mark(&self) -> Mark {
        let marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        marks.last().copied().unwrap_or_default()
    }

    /// The attempt failed and its task is restarted from checkpoint `restored` (`None`: from
    /// nothing) as `kind`; `withdraws` says whether its sink withdraws staged rows. Counts
    /// the loss in the job metrics and returns the settlement (its `replay` is the next
    /// attempt's budget).
    pub(crate) fn settle(
        &self,
        kind: Rollback,
        restored: Option<Epoch>,
        withdraws: bool,
    ) -> Settlement {
        let now = self.now(u64::MAX);
        let s = match kind {
            Rollback::Source => Settlement {
                replay: now.since(self.mark_of(restored)).passed,
                ..Settlement::default()
            },
            Rollback::Restored => {
                let d = now.since(self.mark_of(restored));
                // what left the task since `R` for good: passed on, and kept by its sink
                let delivered = d.passed + if withdraws { 0 } else { d.sunk };
                let lost = d.taken.saturating_sub(delivered);
                let withdrawn = if withdraws { d.sunk.min(lost) } else { 0 };
                Settlement {
                    rolled_back: lost - withdrawn,
                    withdrawn,
                    emitted_again: delivered.saturating_sub(d.taken),
                    replay: 0,
                }
            }
            Rollback::Stateless => Settlement {
                withdrawn: if withdraws {
                    now.since(self.last_mark()).sunk
                } else {
                    0
                },
                ..Settlement::default()
            },
        };
        OperatorMetrics::add(&self.job.records_lost, s.rolled_back + s.withdrawn);
        OperatorMetrics::add(&self.job.records_replayed, s.emitted_again);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> (Ledger, Arc<OperatorMetrics>) {
        let l = Ledger::new(Arc::new(JobMetrics::default()), 0);
        let sink = Arc::new(OperatorMetrics::default());
        l.start(Some(sink.clone()));
        (l, sink)
    }

    #[test]
    fn a_restored_task_loses_what_it_took_in_since_the_checkpoint_and_did_not_pass_on() {
        let (l, sink) = ledger();
        l.taken(100);
        l.passed(40);
        OperatorMetrics::add(&sink.records_in, 50);
        l.snapshot(Epoch(3), &[Some(vec![1])], 0, 0);
        l.taken(30); // 10 passed on, 15 sunk, 5 held in state
        l.passed(10);
        OperatorMetrics::add(&sink.records_in, 15);
        let s = l.settle(Rollback::Restored, Some(Epoch(3)), true);
        assert_eq!((s.rolled_back, s.withdrawn, s.replay), (5, 15, 0));
        assert_eq!(l.job.records_lost.load(Ordering::SeqCst), 20);
        // restored from nothing: everything since the start; a sink that published on write
        // keeps its 65 rows
        let s = l.settle(Rollback::Restored, None, false);
        assert_eq!((s.rolled_back, s.withdrawn), (15, 0));
        let s = l.settle(Rollback::Restored, None, true);
        assert_eq!((s.rolled_back, s.withdrawn), (15, 65));
    }

    /// A join held 30 rows at the checkpoint; after it, it took 10 and a watermark flushed 25
    /// on: restored, it emits the 30 again (15 a second time) and never sees the 10 (of which 5
    /// went out): lost − replayed = 10 − 25.
    #[test]
    fn a_restored_task_that_passed_on_more_than_it_took_emits_the_difference_again() {
        let (l, _) = ledger();
        l.taken(30);
        l.snapshot(Epoch(1), &[Some(vec![1])], 0, 0);
        l.taken(10);
        l.passed(25);
        let s = l.settle(Rollback::Restored, Some(Epoch(1)), true);
        assert_eq!((s.rolled_back, s.withdrawn, s.emitted_again), (0, 0, 15));
        assert_eq!(l.job.records_replayed.load(Ordering::SeqCst), 15);
        assert_eq!(l.job.records_lost.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_stateless_task_loses_only_its_sinks_in_progress_part() {
        let (l, sink) = ledger();
        OperatorMetrics::add(&sink.records_in, 50);
        l.snapshot(Epoch(1), &[None], 0, 0);
        OperatorMetrics::add(&sink.records_in, 7);
        l.snapshot(Epoch(2), &[None], 0, 1);
        OperatorMetrics::add(&sink.records_in, 3);
        assert!(l.stateless());
        let s = l.settle(Rollback::Stateless, Some(Epoch(1)), true);
        assert_eq!(s.withdrawn, 3);
    }

    #[test]
    fn a_source_replays_what_it_passed_on_since_the_checkpoint_as_it_sends_it_again() {
        let (l, _) = ledger();
        l.passed(10);
        // 4 rows in flight at an unaligned barrier: restored with the snapshot, sent again
        l.snapshot(Epoch(1), &[], 0, 0);
        l.passed(4 + 6);
        let s = l.settle(Rollback::Source, Some(Epoch(1)), true);
        assert_eq!(s.replay, 10);
        let next = Ledger::new(l.job.clone(), s.replay);
        for _ in 0..3 {
            next.passed(4);
        }
        assert_eq!(l.job.records_replayed.load(Ordering::SeqCst), 10);
    }

    #[test]
    fn marks_are_pruned_to_the_newest_completed_checkpoint() {
        let (l, _) = ledger();
        for e in 1..=10 {
            l.taken(1);
            l.snapshot(Epoch(e), &[None], 0, e.saturating_sub(1));
        }
        let marks = l.marks.lock().unwrap().len();
        assert!(marks <= 3, "{marks} marks kept");
        assert_eq!(l.mark_of(Some(Epoch(9))).taken, 9);
    }
}

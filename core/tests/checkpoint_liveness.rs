//! Checkpoints after tasks finish (FLIP-147): a bounded input that ends in a union with a live
//! one no longer stops checkpoints, a failure after it ended restores from a checkpoint taken
//! after it, exactly once; and a final checkpoint commits the two-phase sinks of a job that
//! ends.
//!
//! Mutations seen to fail these tests: the coordinator ignoring finished tasks (no checkpoint
//! completes after the bounded input ended: the wait for one fails), no final checkpoint (the
//! sinks wait for a commit that never comes: the wait for the job fails).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use eddy_core::dataflow::{CheckpointMode, FaultInjection, FaultPoint};
use eddy_core::operator::factory_from_clone;
use eddy_core::prelude::*;
use eddy_core::source::generator::GeneratorSource;
use eddy_core::source::BatchBounds;
use rand::{Rng, SeedableRng};

mod common;
use common::keyed_events;
use common::txn::{assert_same_rows, faulty_config, RunningCount, TxSink};

const BOUNDED_ROWS: u64 = 1_000;
const LIVE_ROWS: u64 = 3_000;
const BATCH_ROWS: usize = 20;
/// Batches the live source produces before it waits for its gate.
const BEFORE_GATE: u64 = 20;

/// A live source: produces `BEFORE_GATE` batches, then nothing (idle) until its gate opens,
/// then the rest. Its position is the generator's, so it replays exactly.
#[derive(Clone)]
struct GatedSource {
    inner: GeneratorSource,
    gate: Arc<AtomicBool>,
    produced: u64,
}

impl Source for GatedSource {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn poll_next(&mut self, ctx: &SourceContext) -> Result<SourcePoll> {
        if self.produced >= BEFORE_GATE && !self.gate.load(Ordering::SeqCst) {
            return Ok(SourcePoll::Idle);
        }
        let poll = self.inner.poll_next(ctx)?;
        if matches!(poll, SourcePoll::Batch(_)) {
            self.produced += 1;
        }
        Ok(poll)
    }

    fn position(&self) -> SourcePosition {
        self.inner.position()
    }

    fn seek(&mut self, position: &SourcePosition) -> Result<()> {
        self.inner.seek(position)
    }
}

/// bounded (7 keys) and live (13 keys) into a two-input running count of parallelism `p`,
/// chained to a transactional sink.
fn union_job(config: DataflowConfig, p: usize, gate: &Arc<AtomicBool>, sink: &TxSink) -> Dataflow {
    let flow = Dataflow::new(DataflowConfig {
        bounds: BatchBounds {
            max_rows: BATCH_ROWS,
            ..BatchBounds::default()
        },
        idle_poll: Duration::from_millis(1),
        ..config
    });
    let live = GatedSource {
        inner: keyed_events(LIVE_ROWS, 13),
        gate: gate.clone(),
        produced: 0,
    };
    let live = flow.source("live", live).partition_by(["k"]);
    flow.source("bounded", keyed_events(BOUNDED_ROWS, 7))
        .partition_by(["k"])
        .connect(
            &[live],
            "count",
            factory_from_clone(RunningCount::new(Duration::from_micros(200))),
        )
        .parallelism(p)
        .sink("out", sink.clone())
        .parallelism(p);
    flow
}

fn wait(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Fails the live source after the bounded one ended and a checkpoint recorded it finished:
/// the job restores from a checkpoint at or after that one and its output equals an
/// uninterrupted run's (nothing lost, nothing duplicated), at parallelism 1 and 2.
#[test]
fn checkpoints_go_on_after_a_bounded_input_ends_and_a_later_failure_restores_after_it() {
    let reference = TxSink::new();
    union_job(
        DataflowConfig::default(),
        1,
        &Arc::new(AtomicBool::new(true)),
        &reference,
    )
    .run()
    .unwrap();
    let want = reference.committed();
    assert_eq!(want.len() as u64, BOUNDED_ROWS + LIVE_ROWS);

    let tmp = tempfile::tempdir().unwrap();
    for p in [1, 2] {
        for seed in 1..=2u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed * 10 + p as u64);
            // both fire only after the gate opened: the count sees every bounded batch and
            // the live ones before the gate first (a piece of each, at parallelism 2)
            let extra = rng.random_range(5..60);
            let fault = if rng.random_bool(0.5) {
                FaultInjection::error("live", 0, BEFORE_GATE + extra)
            } else {
                let before = BOUNDED_ROWS / BATCH_ROWS as u64 + BEFORE_GATE;
                FaultInjection::panic("count", rng.random_range(0..p), before + extra)
            };
            let gate = Arc::new(AtomicBool::new(false));
            let sink = TxSink::new();
            let config = DataflowConfig {
                faults: vec![fault.clone()],
                ..faulty_config(
                    &tmp.path().join(format!("{p}-{seed}")),
                    CheckpointMode::Aligned,
                    8,
                )
            };
            let handle = union_job(config, p, &gate, &sink).start().unwrap();
            // a checkpoint completes with the bounded source recorded as finished
            let finished_in = || {
                handle
                    .metrics()
                    .job()
                    .checkpoints()
                    .iter()
                    .find(|c| c.finished_tasks >= 1)
                    .map(|c| c.epoch)
            };
            wait(
                "a checkpoint after the bounded input ended",
                Duration::from_secs(20),
                || finished_in().is_some(),
            );
            let first = finished_in().unwrap_or(u64::MAX);
            gate.store(true, Ordering::SeqCst);
            wait("the job", Duration::from_secs(60), || handle.is_finished());
            let restored = handle.restored_checkpoint();
            let summary = handle.join().unwrap();
            assert_eq!(summary.restarts, 1, "p {p}: {fault:?} did not fire");
            assert!(
                restored.is_some_and(|e| e.0 >= first),
                "p {p}: restored {restored:?}, the bounded input was finished in {first}"
            );
            assert_same_rows(&sink.committed(), &want, &format!("p {p}: {fault:?}"));
            assert_eq!(sink.prepared(), 0, "p {p}: prepared, never committed");
        }
    }
}

/// A bounded job with checkpoints only on demand: its sinks pre-commit their last rows when
/// the input ends and a final checkpoint, taken once every task finished, commits them.
#[test]
fn a_final_checkpoint_commits_the_sinks_of_a_job_that_ends() {
    let tmp = tempfile::tempdir().unwrap();
    for p in [1, 2] {
        let sink = TxSink::new();
        let mut config =
            faulty_config(&tmp.path().join(format!("{p}")), CheckpointMode::Aligned, 8);
        config.checkpoint.interval = None;
        let gate = Arc::new(AtomicBool::new(true));
        let handle = union_job(config, p, &gate, &sink).start().unwrap();
        wait("the job", Duration::from_secs(30), || handle.is_finished());
        let summary = handle.join().unwrap();
        assert_eq!(
            sink.committed().len() as u64,
            BOUNDED_ROWS + LIVE_ROWS,
            "p {p}"
        );
        assert_eq!(sink.prepared(), 0, "p {p}");
        let last = summary.checkpoints.last().cloned();
        assert!(
            last.is_some_and(|c| c.job_finished && c.finished_tasks == 2 + p),
            "p {p}: {:?}",
            summary.checkpoints
        );
    }
}

/// A job that ended leaves a final checkpoint; a new job with the same checkpoint directory
/// resumes from the newest checkpoint before it (every task of the final one finished, with no
/// state to restore), replays from there, and its file output equals an uninterrupted run —
/// also when it fails and restarts before its own first checkpoint. Catches: a new job or its
/// restart restoring the earlier job's final checkpoint (nothing runs, rows go missing).
#[test]
fn a_new_job_resumes_from_before_the_final_checkpoint() {
    use eddy_core::checkpoint::CheckpointStore;
    use eddy_core::sink::csv::{CsvSink, CsvSinkOptions};

    let reference = TxSink::new();
    let gate = Arc::new(AtomicBool::new(true));
    union_job(DataflowConfig::default(), 1, &gate, &reference)
        .run()
        .unwrap();
    let want = reference.committed();

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.csv");
    let job = |p: usize, faults: Vec<FaultInjection>| {
        let flow = Dataflow::new(DataflowConfig {
            faults,
            bounds: BatchBounds {
                max_rows: BATCH_ROWS,
                ..BatchBounds::default()
            },
            ..faulty_config(&tmp.path().join("checkpoints"), CheckpointMode::Aligned, 8)
        });
        let live = GatedSource {
            inner: keyed_events(LIVE_ROWS, 13),
            gate: gate.clone(),
            produced: 0,
        };
        let live = flow.source("live", live).partition_by(["k"]);
        let out = out.clone();
        flow.source("bounded", keyed_events(BOUNDED_ROWS, 7))
            .partition_by(["k"])
            .connect(
                &[live],
                "count",
                factory_from_clone(RunningCount::new(Duration::from_micros(200))),
            )
            .parallelism(p)
            .sink_with(
                "out",
                Arc::new(move |_: &TaskInfo| {
                    Ok(Box::new(CsvSink::new(CsvSinkOptions::new(&out))?) as Box<dyn Sink>)
                }),
            )
            .parallelism(p);
        flow
    };
    let first = job(2, Vec::new()).run().unwrap();
    let store = CheckpointStore::open(tmp.path().join("checkpoints"), 3).unwrap();
    let final_epoch = first.checkpoints.last().map(|c| c.epoch).unwrap();
    assert!(store.latest().unwrap().is_some_and(|c| c.is_final()));
    let resumable = store.latest_resumable().unwrap().map(|c| c.epoch);
    eprintln!(
        "store {:?}, first {:?}",
        store.list().unwrap(),
        first
            .checkpoints
            .iter()
            .map(|c| (c.epoch, c.finished_tasks, c.job_finished))
            .collect::<Vec<_>>()
    );
    assert!(
        resumable.is_some_and(|e| e.0 < final_epoch),
        "{resumable:?}"
    );

    // a failure early in the second job (at its recovery commit) restores the first job's checkpoint before its end
    // again, not the first job's final one
    let handle = job(
        2,
        vec![FaultInjection::error("out", 0, 0).at(FaultPoint::Commit, 0)],
    )
    .start()
    .unwrap();
    wait("the second job", Duration::from_secs(60), || {
        handle.is_finished()
    });
    assert_eq!(handle.restored_checkpoint(), resumable);
    let second = handle.join().unwrap();
    assert_eq!(second.restarts, 1);
    // the second job re-reads what the restored checkpoint did not hold: some rows when it was
    // taken before any task finished (whether one was depends on timing)
    let mid_input = first
        .checkpoints
        .iter()
        .find(|c| resumable.is_some_and(|e| e.0 == c.epoch))
        .is_some_and(|c| c.finished_tasks == 0);
    if mid_input {
        assert!(second.operator("count").is_some_and(|o| o.records_in > 0));
    }
    let rows = common::csv_rows(&tmp.path().join("out"), "part-");
    assert_same_rows(&rows, &want, "resumed job");
}

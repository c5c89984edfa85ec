//! Fault injection at every point of a checkpoint, per job: during an operator's (or a
//! source's) snapshot, a sink's `pre_commit` and `commit`, the checkpoint store's write and
//! its manifest write, and hung tasks — each recovering to exactly the output of an
//! uninterrupted run. Hangs also exercise the checkpoint timeout and the tolerable count of
//! failed checkpoints.
//!
//! Mutations each test was seen to catch are named in its doc comment.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_core::dataflow::{CheckpointMode, FaultInjection, FaultPoint};
use eddy_core::metrics::JobSummary;
use eddy_core::prelude::*;
use eddy_core::sink::csv::{CsvSink, CsvSinkOptions};
use rand::{Rng, SeedableRng};

mod common;
use common::csv_rows;
use common::txn::{
    assert_same_rows, assert_spread, faulty_config, reference, two_input_job, two_input_job_with,
    TxSink,
};

/// Runs the two-input job with `faults` (and `tune` applied to its config) at parallelism `p`
/// and checks the committed rows against `want`. Fails, rather than hangs, after 60 s.
fn run_with(
    dir: &Path,
    p: usize,
    faults: Vec<FaultInjection>,
    tune: impl FnOnce(&mut DataflowConfig),
    want: &[String],
) -> JobSummary {
    let sink = TxSink::new();
    let mut config = DataflowConfig {
        faults: faults.clone(),
        ..faulty_config(dir, CheckpointMode::Aligned, 8)
    };
    tune(&mut config);
    let handle = two_input_job(config, p, &sink).start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !handle.is_finished() {
        assert!(Instant::now() < deadline, "p {p}: hung with {faults:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_spread(&handle, p);
    let summary = handle.join().unwrap();
    assert_same_rows(&sink.committed(), want, &format!("p {p}: {faults:?}"));
    assert_eq!(
        sink.prepared(),
        0,
        "p {p}: prepared, never committed: {faults:?}"
    );
    summary
}

/// For seeds 1..=4 at parallelism 1 and 2: one fault made by `fault(rng, p)`, which must fire
/// (a restart), and an output equal to the uninterrupted run's.
fn each_seed_recovers(fault: impl Fn(&mut rand_chacha::ChaCha8Rng, usize) -> FaultInjection) {
    let want = reference();
    let tmp = tempfile::tempdir().unwrap();
    for p in [1, 2] {
        for seed in 1..=4u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed * 10 + p as u64);
            let f = fault(&mut rng, p);
            let dir = tmp.path().join(format!("{p}-{seed}"));
            let summary = run_with(&dir, p, vec![f.clone()], |_| {}, &want);
            assert_eq!(
                summary.restarts, 1,
                "p {p}, seed {seed}: {f:?} did not fire"
            );
        }
    }
}

/// An error or a panic in a random subtask of `op` (of parallelism `par`).
fn error_or_panic(rng: &mut rand_chacha::ChaCha8Rng, op: &str, par: usize) -> FaultInjection {
    let subtask = rng.random_range(0..par);
    if rng.random_bool(0.5) {
        FaultInjection::error(op, subtask, 0)
    } else {
        FaultInjection::panic(op, subtask, 0)
    }
}

/// Catches (each tried): restore disabled (duplicates), operator state not restored (wrong
/// counts), the recovery commit skipped (rows never published).
#[test]
fn a_fault_during_a_snapshot_recovers_exactly_once() {
    each_seed_recovers(|rng, p| {
        let (op, par) = [("count", p), ("left", 1), ("right", 1)][rng.random_range(0..3)];
        error_or_panic(rng, op, par).at(FaultPoint::Snapshot, rng.random_range(1..3))
    });
}

/// Catches: restore disabled, operator state not restored, the recovery commit skipped.
#[test]
fn a_fault_during_pre_commit_recovers_exactly_once() {
    each_seed_recovers(|rng, p| {
        error_or_panic(rng, "out", p).at(FaultPoint::PreCommit, rng.random_range(1..3))
    });
}

/// Catches: the recovery commit skipped (a completed checkpoint's rows never published),
/// restore disabled, operator state not restored.
#[test]
fn a_fault_during_commit_recovers_exactly_once() {
    each_seed_recovers(|rng, p| {
        error_or_panic(rng, "out", p).at(FaultPoint::Commit, rng.random_range(1..3))
    });
}

/// A checkpoint write that fails after the first task file, or at the manifest, leaves an
/// incomplete checkpoint: with no failure tolerated the job fails over and restores the
/// checkpoint before it. Catches: restore disabled, operator state not restored, the recovery
/// commit skipped.
#[test]
fn a_failed_checkpoint_write_fails_the_job_over_and_recovers_exactly_once() {
    let want = reference();
    let tmp = tempfile::tempdir().unwrap();
    for (i, point) in [FaultPoint::StoreWrite, FaultPoint::ManifestWrite]
        .into_iter()
        .enumerate()
    {
        for p in [1, 2] {
            for after in [0, 2] {
                let dir = tmp.path().join(format!("{i}-{p}-{after}"));
                let f = FaultInjection::store(point, after);
                let summary = run_with(&dir, p, vec![f.clone()], |_| {}, &want);
                assert_eq!(summary.restarts, 1, "{f:?}");
                assert_eq!(summary.checkpoints_failed, 1, "{f:?}");
                assert_eq!(summary.checkpoints_timed_out, 0, "{f:?}");
            }
        }
    }
}

/// Catches: `tolerable_failures` ignored (the job fails over).
#[test]
fn tolerated_checkpoint_failures_do_not_fail_the_job_over() {
    let want = reference();
    let tmp = tempfile::tempdir().unwrap();
    let faults = vec![
        FaultInjection::store(FaultPoint::StoreWrite, 0),
        FaultInjection::store(FaultPoint::ManifestWrite, 1),
    ];
    let summary = run_with(
        tmp.path(),
        2,
        faults,
        |c| c.checkpoint.tolerable_failures = 2,
        &want,
    );
    assert_eq!(summary.restarts, 0);
    assert_eq!(summary.checkpoints_failed, 2);
}

/// A task that stops answering holds every checkpoint up: each times out, and one more than
/// the tolerable count fails the job over, which cancels the hang and recovers exactly.
/// Catches: no checkpoint timeout (the job hangs), the tolerable count ignored (more restarts),
/// restore disabled, the recovery commit skipped.
#[test]
fn a_hung_task_times_checkpoints_out_and_fails_the_job_over_past_the_tolerable_count() {
    let want = reference();
    let tmp = tempfile::tempdir().unwrap();
    for p in [1, 2] {
        let dir = tmp.path().join(format!("{p}"));
        let hang = FaultInjection::hang("count", p - 1, 30, None);
        let summary = run_with(
            &dir,
            p,
            vec![hang],
            |c| {
                // far above a checkpoint's time on a loaded machine (tens of ms)
                c.checkpoint.timeout = Some(Duration::from_secs(1));
                c.checkpoint.tolerable_failures = 2;
            },
            &want,
        );
        eprintln!(
            "p {p}: {} restarts, {} checkpoints timed out, {} completed",
            summary.restarts,
            summary.checkpoints_timed_out,
            summary.checkpoints.len()
        );
        assert_eq!(summary.restarts, 1, "p {p}: {summary:?}");
        assert!(summary.checkpoints_timed_out >= 3, "p {p}: {summary:?}");
        assert_eq!(summary.checkpoints_failed, summary.checkpoints_timed_out);
    }
}

/// Without restarts, a hung task fails the job with the checkpoint timeout as the root cause,
/// and the hung task is cancelled (the job ends). Catches: no checkpoint timeout (the job
/// hangs).
#[test]
fn a_hung_task_fails_a_job_without_restarts_with_the_checkpoint_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = TxSink::new();
    let mut config = DataflowConfig {
        faults: vec![FaultInjection::hang("count", 0, 10, None)],
        ..faulty_config(tmp.path(), CheckpointMode::Aligned, 8)
    };
    config.failover = Default::default();
    config.checkpoint.timeout = Some(Duration::from_millis(100));
    let handle = two_input_job(config, 1, &sink).start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !handle.is_finished() {
        assert!(Instant::now() < deadline, "the hung job never failed");
        std::thread::sleep(Duration::from_millis(2));
    }
    let err = handle.join().unwrap_err();
    assert!(
        matches!(err, Error::Checkpoint { .. }) && err.to_string().contains("timed out"),
        "{err}"
    );
}

/// A task hung for a while makes the checkpoints of that while time out; within the tolerable
/// count the job goes on and later checkpoints complete. Catches: no checkpoint timeout (none
/// times out), the tolerable count ignored (the job fails over).
#[test]
fn a_task_hung_for_a_while_times_checkpoints_out_within_the_tolerable_count() {
    let want = reference();
    let tmp = tempfile::tempdir().unwrap();
    let hang = FaultInjection::hang("left", 0, 40, Some(Duration::from_millis(500)));
    let summary = run_with(
        tmp.path(),
        2,
        vec![hang],
        |c| {
            c.checkpoint.timeout = Some(Duration::from_millis(50));
            c.checkpoint.tolerable_failures = 1_000;
        },
        &want,
    );
    assert_eq!(summary.restarts, 0);
    assert!(summary.checkpoints_timed_out >= 1, "{summary:?}");
    let expired_then_completed = summary
        .checkpoints
        .windows(2)
        .any(|w| w[1].epoch > w[0].epoch + 1);
    assert!(
        expired_then_completed,
        "no checkpoint completed after the expired ones"
    );
}

/// The file sinks' two-phase reconcile: faults at `pre_commit` and `commit` of a CSV sink in
/// epoch parts; the published parts equal the uninterrupted run, nothing else is left.
/// Catches: `EpochParts::reconcile` skipped (pending parts of the restored checkpoint never
/// published), operator state not restored. (Restore disabled passes here: without a restored
/// checkpoint the file sink starts its output afresh, by design.)
#[test]
fn csv_parts_are_reconciled_after_faults_at_pre_commit_and_commit() {
    let want = reference();
    let tmp = tempfile::tempdir().unwrap();
    for p in [1, 2] {
        for seed in 1..=4u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed * 10 + p as u64);
            let point = [FaultPoint::PreCommit, FaultPoint::Commit][rng.random_range(0..2)];
            let f = error_or_panic(&mut rng, "out", p).at(point, rng.random_range(1..3));
            let dir = tmp.path().join(format!("{p}-{seed}"));
            let out = dir.join("out.csv");
            let config = DataflowConfig {
                faults: vec![f.clone()],
                ..faulty_config(&dir.join("checkpoints"), CheckpointMode::Aligned, 8)
            };
            let sink = Arc::new(move |_: &TaskInfo| {
                Ok(Box::new(CsvSink::new(CsvSinkOptions::new(&out))?) as Box<dyn Sink>)
            });
            let summary = two_input_job_with(config, p, sink).run().unwrap();
            assert_eq!(summary.restarts, 1, "{f:?} did not fire");
            let parts = dir.join("out");
            assert_same_rows(&csv_rows(&parts, "part-"), &want, &format!("p {p}: {f:?}"));
            let leftovers: Vec<_> = std::fs::read_dir(&parts)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with("part-"))
                .collect();
            assert!(leftovers.is_empty(), "p {p}, {f:?}: {leftovers:?}");
        }
    }
}

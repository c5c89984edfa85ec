//! Unaligned checkpoints: barriers overtake a backlog on the priority lane, so a checkpoint
//! completes without waiting for queued data to be processed; aligned checkpoints that wait too
//! long turn unaligned; and a restore from an unaligned checkpoint is still exactly-once.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use eddy_core::dataflow::{
    CheckpointConfig, CheckpointMode, FailoverConfig, FaultInjection, RestartPolicy,
};
use eddy_core::prelude::*;
use eddy_core::sink::csv::{CsvSink, CsvSinkOptions};
use eddy_core::source::BatchBounds;
use eddy_core::window::{Agg, WindowSpec};
use rand::{Rng, SeedableRng};

mod common;
use common::{csv_rows, keyed_events, wait_for};

/// A sink that takes `delay` per batch, counts the batches it finished, and records that
/// count when it takes its snapshot (`pre_commit` runs at the barrier).
#[derive(Clone)]
struct SlowSink {
    delay: Duration,
    done: Arc<AtomicU64>,
    at_snapshot: Arc<AtomicU64>,
}

impl Sink for SlowSink {
    fn write(&mut self, _batch: &RecordBatch) -> Result<()> {
        std::thread::sleep(self.delay);
        self.done.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn pre_commit(&mut self, _epoch: Epoch) -> Result<()> {
        self.at_snapshot
            .store(self.done.load(Ordering::SeqCst), Ordering::SeqCst);
        Ok(())
    }
}

struct Measured {
    /// Most batches the slow sink processed between a trigger and its snapshot (measured at
    /// the snapshot, not at the checkpoint's completion, which a loaded machine delays).
    processed_during: u64,
    unaligned: bool,
    inflight_bytes: u64,
}

/// source → (rebalance) → slow sink with a channel of `capacity` batches, filled before one
/// checkpoint is triggered.
fn checkpoint_under_backlog(
    dir: &Path,
    capacity: usize,
    mode: CheckpointMode,
    alignment_timeout: Option<Duration>,
) -> Measured {
    let done = Arc::new(AtomicU64::new(0));
    let at_snapshot = Arc::new(AtomicU64::new(0));
    let flow = Dataflow::new(DataflowConfig {
        channel_capacity: capacity,
        bounds: BatchBounds {
            max_rows: 10,
            ..BatchBounds::default()
        },
        checkpoint: CheckpointConfig {
            dir: Some(dir.to_path_buf()),
            mode,
            alignment_timeout,
            ..CheckpointConfig::default()
        },
        ..DataflowConfig::default()
    });
    flow.source("events", keyed_events(10_000_000, 7))
        .rebalance()
        .sink(
            "slow",
            SlowSink {
                delay: Duration::from_millis(20),
                done: done.clone(),
                at_snapshot: at_snapshot.clone(),
            },
        )
        .parallelism(1);
    let handle = flow.start().unwrap();
    // a logical backlog: more batches emitted than the channel holds
    let emitted = |h: &JobHandle| {
        h.metrics()
            .subtask("events", 0)
            .map_or(0, |m| m.batches_in.load(Ordering::SeqCst))
    };
    // several checkpoints in a row: the later ones start with data left from the earlier ones
    let mut processed_during = 0;
    let mut epoch = Epoch(0);
    for _ in 0..3 {
        wait_for("the backlog", || {
            emitted(&handle) >= done.load(Ordering::SeqCst) + capacity as u64
        });
        let before = done.load(Ordering::SeqCst);
        epoch = handle.trigger_checkpoint();
        wait_for("the checkpoint", || {
            handle.completed_checkpoints().contains(&epoch)
        });
        processed_during = processed_during.max(at_snapshot.load(Ordering::SeqCst) - before);
    }
    let stats = handle.metrics().job().checkpoints();
    eprintln!("{mode:?}, timeout {alignment_timeout:?}: {stats:?}");
    let last = stats.last().cloned().unwrap();
    assert_eq!(last.epoch, epoch.0);
    assert!(stats.iter().all(|s| s.unaligned == last.unaligned));
    handle.cancel();
    assert!(matches!(handle.join(), Err(Error::Cancelled)));
    Measured {
        processed_during,
        unaligned: last.unaligned,
        inflight_bytes: last.inflight_bytes,
    }
}

#[test]
fn aligned_checkpoints_wait_for_the_backlog_unaligned_ones_overtake_it() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, capacity, mode| {
        checkpoint_under_backlog(&tmp.path().join(name), capacity, mode, None)
    };
    let aligned_small = run("a8", 8, CheckpointMode::Aligned);
    let aligned_large = run("a32", 32, CheckpointMode::Aligned);
    let unaligned_large = run("u32", 32, CheckpointMode::Unaligned);
    // the aligned barrier sits behind every queued batch: the sink processes the backlog first
    assert!(!aligned_small.unaligned && !aligned_large.unaligned);
    assert!(
        aligned_small.processed_during >= 7,
        "{}",
        aligned_small.processed_during
    );
    assert!(
        aligned_large.processed_during >= 31,
        "{}",
        aligned_large.processed_during
    );
    assert_eq!(aligned_large.inflight_bytes, 0);
    // the unaligned one does not wait for it: bounded by less than even the small backlog
    assert!(unaligned_large.unaligned);
    assert!(
        unaligned_large.processed_during < 7,
        "unaligned checkpoint waited for {} batches",
        unaligned_large.processed_during
    );
    assert!(
        unaligned_large.inflight_bytes > 0,
        "the backlog was persisted"
    );
}

#[test]
fn a_slow_alignment_turns_unaligned_after_the_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let m = checkpoint_under_backlog(
        tmp.path(),
        32,
        CheckpointMode::Aligned,
        Some(Duration::from_millis(30)),
    );
    assert!(m.unaligned, "the checkpoint stayed aligned");
    assert!(m.inflight_bytes > 0);
    assert!(
        m.processed_during < 31,
        "switched only after the backlog: {}",
        m.processed_during
    );
}

const ROWS: u64 = 12_000;

/// events → time → (rebalance) slow, parallelism 2, a backlog in front of it → key_by(k) →
/// tumbling 250 ms counts (parallelism 2) → CSV.
fn backlogged_windows(config: DataflowConfig, out: &Path) -> Dataflow {
    let flow = Dataflow::new(DataflowConfig {
        bounds: BatchBounds {
            max_rows: 60,
            ..BatchBounds::default()
        },
        channel_capacity: 16,
        ..config
    });
    flow.source("events", keyed_events(ROWS, 7))
        .assign_timestamps("time", "ts", Duration::ZERO)
        .rebalance()
        .map("slow", |b| {
            std::thread::sleep(Duration::from_micros(300));
            Ok(b)
        })
        .parallelism(2)
        .key_by(["k"])
        .window(
            "counts",
            WindowSpec::tumbling(Duration::from_millis(250)),
            vec![Agg::count("n")],
        )
        .parallelism(2)
        .sink("out", CsvSink::new(CsvSinkOptions::new(out)).unwrap());
    flow
}

#[test]
fn restores_from_unaligned_checkpoints_are_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    backlogged_windows(DataflowConfig::default(), &reference.join("out.csv"))
        .run()
        .unwrap();
    let want = csv_rows(&reference, "out-");
    assert_eq!(want.len(), (ROWS as usize / 250) * 7);

    let targets = [("slow", 2), ("counts", 2), ("out", 2)];
    let mut inflight_seen = false;
    for seed in 1..=3u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let faults: Vec<FaultInjection> = (0..2)
            .map(|_| {
                let (op, par) = targets[rng.random_range(0..targets.len())];
                FaultInjection::error(op, rng.random_range(0..par), rng.random_range(10..60))
            })
            .collect();
        let dir = tmp.path().join(format!("seed-{seed}"));
        let config = DataflowConfig {
            checkpoint: CheckpointConfig {
                dir: Some(dir.join("checkpoints")),
                interval: Some(Duration::from_millis(3)),
                mode: CheckpointMode::Unaligned,
                ..CheckpointConfig::default()
            },
            failover: FailoverConfig {
                restart: RestartPolicy {
                    initial_backoff: Duration::from_millis(1),
                    ..RestartPolicy::restarts(10)
                },
                ..FailoverConfig::default()
            },
            faults: faults.clone(),
            ..DataflowConfig::default()
        };
        let summary = backlogged_windows(config, &dir.join("out.csv"))
            .run()
            .unwrap();
        assert!(summary.restarts >= 1, "seed {seed}: {faults:?}");
        assert!(summary
            .checkpoints
            .iter()
            .all(|c| c.unaligned || c.job_finished));
        inflight_seen |= summary.checkpoints.iter().any(|c| c.inflight_bytes > 0);
        let got = csv_rows(&dir.join("out"), "part-");
        assert_eq!(got, want, "seed {seed}: {faults:?}");
    }
    assert!(inflight_seen, "no checkpoint persisted in-flight data");
}

//! Failover end to end: exactly-once restarts with two-phase file sinks (CSV and Parquet) under
//! injected faults,
//! and approximate failover where only the failed task restarts.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use arrow::util::display::array_value_to_string;
use eddy_core::dataflow::{
    CheckpointConfig, CheckpointMode, FailoverConfig, FailoverMode, FaultInjection, RestartPolicy,
};
use eddy_core::metrics::JobSummary;
use eddy_core::prelude::*;
use eddy_core::sink::csv::{CsvSink, CsvSinkOptions};
use eddy_core::sink::parquet::{ParquetSink, ParquetSinkOptions};
use eddy_core::source::BatchBounds;
use eddy_core::window::{Agg, WindowSpec};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rand::{Rng, SeedableRng};

mod common;
use common::{csv_rows, keyed_events, wait_for};

const ROWS: u64 = 12_000;
const BATCH_ROWS: usize = 60; // 200 batches

/// The file format a windowed job writes.
#[derive(Debug, Clone, Copy)]
enum Format {
    Csv,
    Parquet,
}

impl Format {
    /// A sink writing `out.<ext>` in `dir`.
    fn sink(self, dir: &Path) -> Box<dyn Sink> {
        match self {
            Format::Csv => {
                Box::new(CsvSink::new(CsvSinkOptions::new(dir.join("out.csv"))).unwrap())
            }
            Format::Parquet => Box::new(
                ParquetSink::new(ParquetSinkOptions::new(dir.join("out.parquet"))).unwrap(),
            ),
        }
    }

    /// The rows, sorted, of the files in `dir` whose names start with `prefix`.
    fn rows(self, dir: &Path, prefix: &str) -> Vec<String> {
        match self {
            Format::Csv => csv_rows(dir, prefix),
            Format::Parquet => parquet_rows(dir, prefix),
        }
    }
}

fn parquet_rows(dir: &Path, prefix: &str) -> Vec<String> {
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(prefix)
        {
            continue;
        }
        let file = std::fs::File::open(&path).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            rows.extend((0..batch.num_rows()).map(|r| {
                let fields: Vec<String> = batch
                    .columns()
                    .iter()
                    .map(|c| array_value_to_string(c, r).unwrap())
                    .collect();
                fields.join(",")
            }));
        }
    }
    rows.sort();
    rows
}

/// events → time → slow (a little work per batch, so that checkpoints fall in between) →
/// key_by(k) → tumbling 250 ms counts (parallelism 2) → a file sink in `format` in `out`.
fn windowed_job(config: DataflowConfig, format: Format, out: &Path) -> Dataflow {
    let flow = Dataflow::new(DataflowConfig {
        bounds: BatchBounds {
            max_rows: BATCH_ROWS,
            ..BatchBounds::default()
        },
        idle_poll: Duration::from_millis(1),
        ..config
    });
    flow.source("events", keyed_events(ROWS, 7))
        .assign_timestamps("time", "ts", Duration::ZERO)
        .map("slow", |b| {
            std::thread::sleep(Duration::from_micros(150));
            Ok(b)
        })
        .key_by(["k"])
        .window(
            "counts",
            WindowSpec::tumbling(Duration::from_millis(250)),
            vec![Agg::count("n")],
        )
        .parallelism(2)
        .sink_with("out", {
            let out = out.to_path_buf();
            Arc::new(move |_: &TaskInfo| Ok(format.sink(&out)))
        });
    flow
}

#[test]
fn exactly_once_output_survives_random_faults_identical_to_a_clean_run() {
    survives_random_faults(Format::Csv, 1..=4);
}

#[test]
fn exactly_once_parquet_parts_survive_random_faults_identical_to_a_clean_run() {
    survives_random_faults(Format::Parquet, 5..=6);
}

/// Runs the windowed job once cleanly, then once per seed with three random faults (errors
/// and panics in the source, operators, window and sink) under exactly-once failover, and
/// compares the committed part files with the clean run's output.
fn survives_random_faults(format: Format, seeds: std::ops::RangeInclusive<u64>) {
    let tmp = tempfile::tempdir().unwrap();
    let reference_dir = tmp.path().join("reference");
    windowed_job(DataflowConfig::default(), format, &reference_dir)
        .run()
        .unwrap();
    let want = format.rows(&reference_dir, "out-");
    assert_eq!(want.len(), (ROWS as usize / 250) * 7, "windows × keys");

    let targets = [
        ("events", 1),
        ("time", 1),
        ("slow", 1),
        ("counts", 2),
        ("out", 2),
    ];
    for seed in seeds {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let faults: Vec<FaultInjection> = (0..3)
            .map(|i| {
                let (op, par) = targets[rng.random_range(0..targets.len())];
                let subtask = rng.random_range(0..par);
                let after = rng.random_range(5..60);
                if i % 2 == 0 {
                    FaultInjection::error(op, subtask, after)
                } else {
                    FaultInjection::panic(op, subtask, after)
                }
            })
            .collect();
        let dir = tmp.path().join(format!("seed-{seed}"));
        let config = DataflowConfig {
            checkpoint: CheckpointConfig {
                dir: Some(dir.join("checkpoints")),
                interval: Some(Duration::from_millis(2)),
                ..CheckpointConfig::default()
            },
            failover: FailoverConfig {
                mode: FailoverMode::ExactlyOnce,
                restart: RestartPolicy {
                    initial_backoff: Duration::from_millis(1),
                    max_backoff: Duration::from_millis(5),
                    ..RestartPolicy::restarts(10)
                },
            },
            faults: faults.clone(),
            ..DataflowConfig::default()
        };
        let summary = windowed_job(config, format, &dir).run().unwrap();
        // the first fault always fires (attempt 1 sees every batch); later ones fire when the
        // restored attempt still has enough batches left for them
        assert!(
            (1..=3).contains(&summary.restarts),
            "seed {seed}: {} restarts for {faults:?}",
            summary.restarts
        );
        let parts = dir.join("out");
        let got = format.rows(&parts, "part-");
        assert_eq!(got, want, "seed {seed}: {faults:?}");
        let leftovers: Vec<_> = std::fs::read_dir(&parts)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("part-"))
            .collect();
        assert!(leftovers.is_empty(), "seed {seed}: {leftovers:?}");
    }
}

#[test]
fn a_user_error_fails_fast_and_a_recurring_failure_fails_with_its_root_cause() {
    // a schema error is the user's: no restart even though the policy allows many
    let flow = Dataflow::new(DataflowConfig {
        failover: FailoverConfig {
            restart: RestartPolicy::restarts(5),
            ..FailoverConfig::default()
        },
        ..DataflowConfig::default()
    });
    flow.source("events", keyed_events(100, 7))
        .map("bad", |_| Err(Error::schema("bad", "no such column `z`")))
        .sink("out", MemorySink::new());
    let err = flow.start().unwrap().join().unwrap_err();
    assert!(matches!(err, Error::Schema { .. }), "{err}");

    // a fault that fires on every attempt exhausts the policy; the root cause is reported
    let flow = Dataflow::new(DataflowConfig {
        failover: FailoverConfig {
            restart: RestartPolicy {
                initial_backoff: Duration::from_millis(1),
                ..RestartPolicy::restarts(2)
            },
            ..FailoverConfig::default()
        },
        ..DataflowConfig::default()
    });
    for _ in 0..3 {
        flow.inject_fault(FaultInjection::error("pass", 0, 0));
    }
    flow.source("events", keyed_events(100, 7))
        .map("pass", Ok)
        .sink("out", MemorySink::new());
    let handle = flow.start().unwrap();
    let err = handle.join().unwrap_err();
    assert!(
        err.to_string().contains("injected fault in pass[0]"),
        "{err}"
    );
}

/// Counts, per subtask, the attempts started and the rows processed, and passes rows on.
#[derive(Clone)]
struct Work {
    processed: Arc<Vec<AtomicU64>>,
    starts: Arc<Vec<AtomicU64>>,
    subtask: usize,
}

impl Operator for Work {
    fn on_start(&mut self, task: &TaskInfo) -> Result<()> {
        self.subtask = task.subtask;
        self.starts[task.subtask].fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn process(&mut self, _input: usize, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        self.processed[self.subtask].fetch_add(batch.num_rows() as u64, Ordering::SeqCst);
        out.emit(batch);
        Ok(())
    }
}

fn counters(n: usize) -> Arc<Vec<AtomicU64>> {
    Arc::new((0..n).map(|_| AtomicU64::new(0)).collect())
}

fn load(v: &[AtomicU64]) -> Vec<u64> {
    v.iter().map(|c| c.load(Ordering::SeqCst)).collect()
}

#[test]
fn approximate_failover_restarts_one_task_while_its_peers_keep_flowing_and_counts_the_loss() {
    approximate_failover(CheckpointConfig::default());
}

#[test]
fn approximate_failover_works_with_unaligned_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let summary = approximate_failover(CheckpointConfig {
        dir: Some(tmp.path().to_path_buf()),
        interval: Some(Duration::from_millis(20)),
        mode: CheckpointMode::Unaligned,
        ..CheckpointConfig::default()
    });
    assert!(!summary.checkpoints.is_empty());
    // the final checkpoint of the finished job has no snapshot to take, aligned or not
    assert!(summary
        .checkpoints
        .iter()
        .all(|c| c.unaligned || c.job_finished));
}

fn approximate_failover(checkpoint: CheckpointConfig) -> JobSummary {
    const ROWS: u64 = 120_000;
    let processed = counters(4);
    let starts = counters(4);
    let backoff = Duration::from_millis(400);
    let flow = Dataflow::new(DataflowConfig {
        bounds: BatchBounds {
            max_rows: 100,
            ..BatchBounds::default()
        },
        failover: FailoverConfig {
            mode: FailoverMode::Approximate,
            restart: RestartPolicy {
                initial_backoff: backoff,
                ..RestartPolicy::restarts(3)
            },
        },
        checkpoint,
        ..DataflowConfig::default()
    });
    flow.inject_fault(FaultInjection::error("work", 2, 50));
    let out = MemorySink::new();
    flow.source("events", keyed_events(ROWS, 7))
        .map("pace", |b| {
            std::thread::sleep(Duration::from_micros(800));
            Ok(b)
        })
        .rebalance()
        .operator(
            "work",
            Work {
                processed: processed.clone(),
                starts: starts.clone(),
                subtask: 0,
            },
        )
        .parallelism(4)
        .rebalance()
        .sink("out", out.clone())
        .parallelism(1);
    let handle = flow.start().unwrap();

    // the fault fired: work[2] is down for the backoff
    wait_for("the failure", || {
        handle.metrics().job().restarts.load(Ordering::SeqCst) == 1
    });
    let down_at = Instant::now();
    let before = load(&processed);
    let sunk_before = out.num_rows();
    // its peers and the downstream sink keep going while it is down
    wait_for("the peers to progress", || {
        let now = load(&processed);
        [0, 1, 3].iter().all(|&i| now[i] > before[i]) && out.num_rows() > sunk_before
    });
    assert_eq!(
        starts[2].load(Ordering::SeqCst),
        1,
        "the peers progressed only after work[2] was back"
    );
    assert_eq!(
        load(&processed)[2],
        before[2],
        "work[2] processed while down"
    );
    // and it is back within a second
    wait_for("the restart", || starts[2].load(Ordering::SeqCst) == 2);
    let back_after = down_at.elapsed();
    assert!(
        back_after < Duration::from_secs(1),
        "back after {back_after:?}"
    );
    let resumed = load(&processed)[2];
    wait_for("work[2] to process again", || {
        load(&processed)[2] > resumed || handle.is_finished()
    });

    let summary = handle.join().unwrap();
    assert_eq!(summary.restarts, 1);
    let total: u64 = load(&processed).iter().sum();
    assert!(
        summary.records_lost > 0,
        "nothing was routed to work[2] while down"
    );
    assert_eq!(
        summary.records_lost,
        ROWS - total,
        "lost must be exactly what was routed to work[2] and not processed"
    );
    assert_eq!(out.num_rows() as u64, total, "the sink lost nothing");
    assert!(
        load(&processed)[2] > resumed,
        "work[2] processed after its restart"
    );
    summary
}

//! Exactly-once failover end to end: a keyed window job checkpoints, fails, restarts from its
//! checkpoint directory, and the output its two-phase sink committed across both runs equals
//! the output of one uninterrupted run.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use arrow::util::display::array_value_to_string;
use eddy_core::dataflow::CheckpointConfig;
use eddy_core::prelude::*;
use eddy_core::source::generator::GeneratorSource;
use eddy_core::source::BatchBounds;
use eddy_core::window::{Agg, WindowSpec};

mod common;
use common::{keyed_events, wait_for};

const ROWS: u64 = 2000;
const BATCH_ROWS: usize = 50; // 40 batches
const BATCHES_PER_CHECKPOINT: usize = 5;

/// Controls how many batches the source may emit, and counts what it did.
#[derive(Default)]
struct Gate {
    allowed: AtomicUsize,
    emitted: AtomicUsize,
}

/// The generator, optionally held back by a gate so that barriers fall at known batches.
#[derive(Clone)]
struct GatedSource {
    inner: GeneratorSource,
    gate: Option<Arc<Gate>>,
}

impl Source for GatedSource {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        self.inner.schema()
    }

    fn poll_next(&mut self, ctx: &SourceContext) -> Result<SourcePoll> {
        if let Some(g) = &self.gate {
            if g.emitted.load(Ordering::SeqCst) >= g.allowed.load(Ordering::SeqCst) {
                return Ok(SourcePoll::Idle);
            }
        }
        let poll = self.inner.poll_next(ctx)?;
        if let (Some(g), SourcePoll::Batch(_)) = (&self.gate, &poll) {
            g.emitted.fetch_add(1, Ordering::SeqCst);
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

/// Fails on its `at`-th batch (1-based); `None` never fails.
#[derive(Clone)]
struct Fault {
    at: Option<usize>,
    seen: usize,
}

impl Operator for Fault {
    fn process(&mut self, _input: usize, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        self.seen += 1;
        if Some(self.seen) == self.at {
            return Err(Error::Internal(format!(
                "injected fault at batch {}",
                self.seen
            )));
        }
        out.emit(batch);
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Published {
    attempt: usize,
    /// The epoch the row was pre-committed in; `u64::MAX` for rows published by `close`.
    epoch: u64,
    row: String,
}

struct Staged {
    attempt: usize,
    subtask: usize,
    epoch: u64,
    rows: Vec<String>,
}

#[derive(Default)]
struct Shared {
    staged: Vec<Staged>,
    published: Vec<Published>,
}

/// A two-phase in-memory sink: rows are buffered, staged per epoch on `pre_commit`, published
/// on `commit`; `close` publishes the rest. A `commit` before this instance staged anything is
/// the runtime's recovery commit: it publishes what earlier attempts staged up to that epoch
/// and aborts the rest. Staging survives a failed attempt, like an external transaction.
#[derive(Clone)]
struct TwoPhaseSink {
    shared: Arc<Mutex<Shared>>,
    attempt: usize,
    subtask: usize,
    buffer: Vec<String>,
    staged_any: bool,
}

impl TwoPhaseSink {
    fn new() -> Self {
        TwoPhaseSink {
            shared: Arc::default(),
            attempt: 0,
            subtask: 0,
            buffer: Vec::new(),
            staged_any: false,
        }
    }

    /// A handle for the next run of the job.
    fn attempt(&self, attempt: usize) -> Self {
        TwoPhaseSink {
            attempt,
            ..self.clone()
        }
    }

    fn published(&self) -> Vec<Published> {
        self.shared.lock().unwrap().published.clone()
    }

    fn publish(shared: &mut Shared, staged: Staged) {
        for row in staged.rows {
            shared.published.push(Published {
                attempt: staged.attempt,
                epoch: staged.epoch,
                row,
            });
        }
    }
}

impl Sink for TwoPhaseSink {
    fn open(&mut self, task: &TaskInfo) -> Result<()> {
        self.subtask = task.subtask;
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.buffer.extend(rows(batch));
        Ok(())
    }

    fn pre_commit(&mut self, epoch: Epoch) -> Result<()> {
        let rows = std::mem::take(&mut self.buffer);
        self.shared.lock().unwrap().staged.push(Staged {
            attempt: self.attempt,
            subtask: self.subtask,
            epoch: epoch.0,
            rows,
        });
        self.staged_any = true;
        Ok(())
    }

    fn commit(&mut self, epoch: Epoch) -> Result<()> {
        let mut shared = self.shared.lock().unwrap();
        let recovery = !self.staged_any;
        let (mine, keep): (Vec<Staged>, Vec<Staged>) = std::mem::take(&mut shared.staged)
            .into_iter()
            .partition(|s| {
                s.subtask == self.subtask
                    && if recovery {
                        s.attempt != self.attempt
                    } else {
                        s.attempt == self.attempt && s.epoch <= epoch.0
                    }
            });
        shared.staged = keep;
        for s in mine {
            if s.epoch <= epoch.0 {
                Self::publish(&mut shared, s);
            }
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        let mut shared = self.shared.lock().unwrap();
        let (mine, keep): (Vec<Staged>, Vec<Staged>) = std::mem::take(&mut shared.staged)
            .into_iter()
            .partition(|s| s.subtask == self.subtask && s.attempt == self.attempt);
        shared.staged = keep;
        for s in mine {
            Self::publish(&mut shared, s);
        }
        Self::publish(
            &mut shared,
            Staged {
                attempt: self.attempt,
                subtask: self.subtask,
                epoch: u64::MAX,
                rows: std::mem::take(&mut self.buffer),
            },
        );
        Ok(())
    }
}

fn rows(batch: &RecordBatch) -> Vec<String> {
    (0..batch.num_rows())
        .map(|r| {
            batch
                .columns()
                .iter()
                .map(|c| array_value_to_string(c, r).unwrap())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

/// source → timestamps → fault → key_by(k) → tumbling 100 ms count (parallelism 2) → sink
fn job<S: Sink + Clone + Sync>(
    checkpoint: CheckpointConfig,
    fault: Option<usize>,
    gate: Option<Arc<Gate>>,
    sink: S,
) -> Dataflow {
    let flow = Dataflow::new(DataflowConfig {
        bounds: BatchBounds {
            max_rows: BATCH_ROWS,
            ..BatchBounds::default()
        },
        idle_poll: Duration::from_millis(1),
        checkpoint,
        ..DataflowConfig::default()
    });
    flow.source(
        "events",
        GatedSource {
            inner: keyed_events(ROWS, 5),
            gate,
        },
    )
    .assign_timestamps("time", "ts", Duration::ZERO)
    .operator("fault", Fault { at: fault, seen: 0 })
    .key_by(["k"])
    .window(
        "counts",
        WindowSpec::tumbling(Duration::from_millis(100)),
        vec![Agg::count("n")],
    )
    .parallelism(2)
    .sink("out", sink);
    flow
}

fn checkpoints_in(dir: &Path, interval: Option<Duration>) -> CheckpointConfig {
    CheckpointConfig {
        dir: Some(dir.to_path_buf()),
        interval,
        retain: 3,
        ..CheckpointConfig::default()
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The output of one uninterrupted run without checkpoints.
fn reference() -> Vec<String> {
    let out = MemorySink::new();
    job(CheckpointConfig::default(), None, None, out.clone())
        .run()
        .unwrap();
    let all = sorted(out.batches().iter().flat_map(rows).collect());
    assert_eq!(all.len(), 20 * 5, "20 windows of 5 keys");
    all
}

/// Runs the gated job, taking a checkpoint after every `BATCHES_PER_CHECKPOINT` batches,
/// until it finishes or `steps` checkpoints were taken; returns the handle.
fn run_gated(
    dir: &Path,
    fault: Option<usize>,
    sink: TwoPhaseSink,
    steps: usize,
) -> (JobHandle, Vec<Epoch>) {
    let gate = Arc::new(Gate::default());
    let handle = job(checkpoints_in(dir, None), fault, Some(gate.clone()), sink)
        .start()
        .unwrap();
    for step in 1..=steps {
        let target = step * BATCHES_PER_CHECKPOINT;
        gate.allowed.store(target, Ordering::SeqCst);
        wait_for("the source", || {
            gate.emitted.load(Ordering::SeqCst) >= target || handle.is_finished()
        });
        if handle.is_finished() {
            break;
        }
        let epoch = handle.trigger_checkpoint();
        wait_for("the checkpoint", || {
            handle.completed_checkpoints().contains(&epoch) || handle.is_finished()
        });
    }
    let completed = handle.completed_checkpoints();
    (handle, completed)
}

#[test]
fn committed_output_across_a_failure_and_a_restart_equals_one_clean_run() {
    let want = reference();
    for k in [3, 12, 23] {
        let dir = tempfile::tempdir().unwrap();
        let sink = TwoPhaseSink::new();

        // run 1: checkpoints after batches 5, 10, ...; fails on batch k
        let (handle, completed) = run_gated(dir.path(), Some(k), sink.attempt(1), usize::MAX);
        let err = handle.join().unwrap_err().to_string();
        assert!(err.contains("injected fault"), "k={k}: {err}");
        let expected_restore = (k - 1) / BATCHES_PER_CHECKPOINT;
        let expected: Vec<Epoch> = (1..=expected_restore as u64).map(Epoch).collect();
        assert_eq!(completed, expected, "k={k}");

        // run 2: no fault, periodic checkpoints, restored from run 1's last checkpoint
        let handle = job(
            checkpoints_in(dir.path(), Some(Duration::from_millis(1))),
            None,
            None,
            sink.attempt(2),
        )
        .start()
        .unwrap();
        let restored = handle.restored_checkpoint();
        wait_for("the restarted job", || handle.is_finished());
        let later = handle.completed_checkpoints();
        handle.join().unwrap();
        assert_eq!(restored, expected.last().copied(), "k={k}");
        // epochs continue after the restored one
        assert!(
            later.iter().all(|e| Some(*e) > restored),
            "k={k}: {later:?} after {restored:?}"
        );

        let got = sorted(sink.published().into_iter().map(|p| p.row).collect());
        assert_eq!(
            got, want,
            "k={k}: committed output differs from a clean run"
        );
    }
}

#[test]
fn restore_skips_a_corrupt_newest_checkpoint_for_the_latest_good_one() {
    let want = reference();
    let dir = tempfile::tempdir().unwrap();
    let sink = TwoPhaseSink::new();
    let (handle, completed) = run_gated(dir.path(), None, sink.attempt(1), 3);
    assert_eq!(completed, vec![Epoch(1), Epoch(2), Epoch(3)]);
    handle.cancel();
    assert!(matches!(handle.join(), Err(Error::Cancelled)));

    // flip a byte in a state file of the newest checkpoint
    let chk3 = dir.path().join("chk-3");
    let mut files: Vec<_> = std::fs::read_dir(&chk3)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("task-")
        })
        .collect();
    files.sort();
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x5a;
    std::fs::write(&files[0], bytes).unwrap();

    let handle = job(
        checkpoints_in(dir.path(), None),
        None,
        None,
        sink.attempt(2),
    )
    .start()
    .unwrap();
    assert_eq!(handle.restored_checkpoint(), Some(Epoch(2)));
    handle.join().unwrap();

    // run 1 up to epoch 2 (what checkpoint 2 covers) plus run 2 is exactly one clean run
    let got = sorted(
        sink.published()
            .into_iter()
            .filter(|p| p.attempt == 2 || p.epoch <= 2)
            .map(|p| p.row)
            .collect(),
    );
    assert_eq!(got, want);
}

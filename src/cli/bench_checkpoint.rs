//! `eddy bench checkpoint`: what checkpoints and failover cost, as JSON lines.
//!
//! 1. **Checkpoint under backpressure** (`"bench": "checkpoint"`): a fast generator feeds a sink
//!    slowed to `--sink-delay` per batch through a channel of `--capacity` batches. Once the
//!    channel is full, `--checkpoints` checkpoints are triggered one after another, aligned and
//!    unaligned; reported are the median duration (trigger → written), the alignment time, the
//!    in-flight bytes persisted and the batches the slow sink processed meanwhile.
//! 2. **Recovery** (`"bench": "recovery"`): a paced source feeds four `work` subtasks; one fails
//!    once. Reported per failover mode: the time from the failure until the failed subtask
//!    processes again (recovery), and the throughput of the three healthy subtasks before the
//!    failure and while it is down (exactly-once pauses everyone; approximate does not).
//! 3. **Large state** (`"bench": "state"`): an operator holding `--state-mb` of state (50 and
//!    500 MB by default) chained to a fast generator. After each checkpoint it applies one batch
//!    of `--sparse-updates` random writes. Reported per snapshot kind — `sync` (the state
//!    serialized at the barrier, as `Operator::snapshot` does) and `async-incremental` (a
//!    `ChunkedTable` snapshot written off the data path) — the median **pause on the data
//!    path** (barrier reached the operator → it processes the next record), the bytes and files
//!    the first (full) checkpoint wrote to disk, the median bytes of the following ones and the
//!    median time of the batch of random writes after a barrier (copy-on-write included).
//!    `ftrl`: the time the 2^22-weight FTRL learner's synchronous snapshot encoding takes (what
//!    the training operator did at each barrier) against its chunked slot snapshot. `window`:
//!    a keyed tumbling-window operator holding `--window-keys` keys (10 M by default): the time
//!    its snapshot takes at the barrier, its bytes, and the bytes of the next snapshot after
//!    `--sparse-updates` more rows.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use arrow::array::{ArrayRef, Int64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use clap::Args;
use eddy_core::dataflow::{
    CheckpointConfig, CheckpointMode, Dataflow, DataflowConfig, FailoverConfig, FailoverMode,
    FaultInjection, JobHandle, RestartPolicy,
};
use eddy_core::operator::{
    Collector, DeferredState, Operator, StateSnapshot, TaskInfo, WriteContext,
};
use eddy_core::sink::Sink;
use eddy_core::source::generator::GeneratorSource;
use eddy_core::source::BatchBounds;
use eddy_core::state::{BlobWriter, ChunkedTable, TableSnapshot, DEFAULT_CHUNK_SLOTS};

mod window_state;

/// Arguments of `eddy bench checkpoint`.
#[derive(Debug, Args)]
pub struct CheckpointBenchArgs {
    /// Working directory for checkpoints.
    #[arg(long, default_value = "target/eddy-bench/checkpoint")]
    dir: PathBuf,
    /// Channel capacities (the backlog, in batches) to measure.
    #[arg(long, value_delimiter = ',', default_value = "8,32")]
    capacity: Vec<usize>,
    /// Time the slow sink takes per batch.
    #[arg(long, default_value = "5ms", value_parser = super::duration::parse)]
    sink_delay: Duration,
    /// Checkpoints per configuration (the median is reported).
    #[arg(long, default_value_t = 5)]
    checkpoints: usize,
    /// State sizes of the large-state benchmark, in MB.
    #[arg(long, value_delimiter = ',', default_value = "50,500")]
    state_mb: Vec<usize>,
    /// Random writes applied after each checkpoint in the large-state benchmark.
    #[arg(long, default_value_t = 1000)]
    sparse_updates: usize,
    /// Keys of the window-state benchmark (0: skip it).
    #[arg(long, default_value_t = 10_000_000)]
    window_keys: usize,
    /// Run only the large-state benchmark.
    #[arg(long)]
    state_only: bool,
    /// Restart backoff in the recovery benchmark.
    #[arg(long, default_value = "200ms", value_parser = super::duration::parse)]
    backoff: Duration,
}

/// Runs `eddy bench checkpoint`.
pub fn run(args: CheckpointBenchArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    for &mb in &args.state_mb {
        for kind in [StateKind::Sync, StateKind::AsyncIncremental] {
            large_state(&args, mb, kind)?;
        }
    }
    ftrl_snapshot()?;
    if args.window_keys > 0 {
        window_state::window_state(args.window_keys, args.sparse_updates)?;
    }
    if args.state_only {
        return Ok(());
    }
    for &capacity in &args.capacity {
        for mode in [CheckpointMode::Aligned, CheckpointMode::Unaligned] {
            under_backpressure(&args, capacity, mode)?;
        }
    }
    for mode in [FailoverMode::ExactlyOnce, FailoverMode::Approximate] {
        recovery(&args, mode)?;
    }
    Ok(())
}

fn numbers(rows: u64) -> GeneratorSource {
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    GeneratorSource::new(
        schema,
        Some(rows),
        Arc::new(|start, len| {
            let x: Vec<i64> = (start as i64..(start + len as u64) as i64).collect();
            Ok(RecordBatch::try_from_iter([(
                "x",
                Arc::new(Int64Array::from(x)) as ArrayRef,
            )])?)
        }),
    )
}

#[derive(Clone)]
struct SlowSink {
    delay: Duration,
    done: Arc<AtomicU64>,
}

impl Sink for SlowSink {
    fn write(&mut self, _batch: &RecordBatch) -> eddy_core::Result<()> {
        std::thread::sleep(self.delay);
        self.done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn emitted(h: &JobHandle) -> u64 {
    h.metrics()
        .subtask("events", 0)
        .map_or(0, |m| m.batches_in.load(Ordering::Relaxed))
}

fn under_backpressure(
    args: &CheckpointBenchArgs,
    capacity: usize,
    mode: CheckpointMode,
) -> anyhow::Result<()> {
    let dir = args.dir.join(format!("bp-{capacity}-{mode:?}"));
    let _ = std::fs::remove_dir_all(&dir);
    let done = Arc::new(AtomicU64::new(0));
    let flow = Dataflow::new(DataflowConfig {
        channel_capacity: capacity,
        bounds: BatchBounds {
            max_rows: 100,
            ..BatchBounds::default()
        },
        checkpoint: CheckpointConfig {
            dir: Some(dir.clone()),
            mode,
            ..CheckpointConfig::default()
        },
        ..DataflowConfig::default()
    });
    flow.source("events", numbers(u64::MAX / 2))
        .rebalance()
        .sink(
            "slow",
            SlowSink {
                delay: args.sink_delay,
                done: done.clone(),
            },
        )
        .parallelism(1);
    let handle = flow.start()?;
    let mut processed = Vec::new();
    for _ in 0..args.checkpoints.max(1) {
        wait_for("the backlog", || {
            emitted(&handle) >= done.load(Ordering::Relaxed) + capacity as u64
        })?;
        let before = done.load(Ordering::Relaxed);
        let epoch = handle.trigger_checkpoint();
        wait_for("the checkpoint", || {
            handle.completed_checkpoints().contains(&epoch)
        })?;
        processed.push((done.load(Ordering::Relaxed) - before) as f64);
    }
    let stats = handle.metrics().job().checkpoints();
    handle.cancel();
    let _ = handle.join();
    let secs: Vec<f64> = stats.iter().map(|s| s.duration.as_secs_f64()).collect();
    let align: Vec<f64> = stats.iter().map(|s| s.alignment.as_secs_f64()).collect();
    let inflight: Vec<f64> = stats.iter().map(|s| s.inflight_bytes as f64).collect();
    println!(
        "{}",
        serde_json::json!({
            "bench": "checkpoint",
            "mode": format!("{mode:?}").to_lowercase(),
            "backlog_batches": capacity,
            "sink_delay_ms": args.sink_delay.as_secs_f64() * 1e3,
            "checkpoints": stats.len(),
            "median_duration_ms": median(secs) * 1e3,
            "median_alignment_ms": median(align) * 1e3,
            "median_inflight_bytes": median(inflight),
            "median_batches_processed_meanwhile": median(processed),
        })
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Counts the rows each subtask processed.
#[derive(Clone)]
struct Work {
    processed: Arc<Vec<AtomicU64>>,
    subtask: usize,
}

impl Operator for Work {
    fn on_start(&mut self, task: &TaskInfo) -> eddy_core::Result<()> {
        self.subtask = task.subtask;
        Ok(())
    }

    fn process(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Collector,
    ) -> eddy_core::Result<()> {
        self.processed[self.subtask].fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        out.emit(batch);
        Ok(())
    }
}

fn recovery(args: &CheckpointBenchArgs, mode: FailoverMode) -> anyhow::Result<()> {
    let dir: &Path = &args.dir.join(format!("recovery-{mode:?}"));
    let _ = std::fs::remove_dir_all(dir);
    let processed: Arc<Vec<AtomicU64>> = Arc::new((0..4).map(|_| AtomicU64::new(0)).collect());
    let healthy = |p: &[AtomicU64]| -> u64 {
        [0, 1, 3]
            .iter()
            .map(|&i| p[i].load(Ordering::Relaxed))
            .sum()
    };
    let flow = Dataflow::new(DataflowConfig {
        bounds: BatchBounds {
            max_rows: 100,
            ..BatchBounds::default()
        },
        checkpoint: CheckpointConfig {
            dir: Some(dir.to_path_buf()),
            interval: Some(Duration::from_millis(50)),
            mode: CheckpointMode::Unaligned,
            ..CheckpointConfig::default()
        },
        failover: FailoverConfig {
            mode,
            restart: RestartPolicy {
                initial_backoff: args.backoff,
                ..RestartPolicy::restarts(3)
            },
        },
        ..DataflowConfig::default()
    });
    flow.inject_fault(FaultInjection::error("work", 2, 200));
    flow.source("events", numbers(600_000))
        .map("pace", |b| {
            std::thread::sleep(Duration::from_micros(200));
            Ok(b)
        })
        .rebalance()
        .operator(
            "work",
            Work {
                processed: processed.clone(),
                subtask: 0,
            },
        )
        .parallelism(4)
        .sink("out", eddy_core::sink::memory::MemorySink::new());
    let started = Instant::now();
    let handle = flow.start()?;
    wait_for("the failure", || {
        handle.metrics().job().restarts.load(Ordering::Relaxed) >= 1
    })?;
    let failed_at = Instant::now();
    let healthy_before = healthy(&processed) as f64 / (failed_at - started).as_secs_f64();
    let (h0, p2) = (healthy(&processed), processed[2].load(Ordering::Relaxed));
    // recovered once the failed subtask processes again (it restarts from its snapshot in
    // exactly-once mode, so its counter may first catch up on replayed rows)
    wait_for("the recovery", || {
        processed[2].load(Ordering::Relaxed) > p2 || handle.is_finished()
    })?;
    let recovery = failed_at.elapsed();
    let healthy_during = (healthy(&processed) - h0) as f64 / recovery.as_secs_f64();
    let summary = handle.join()?;
    println!(
        "{}",
        serde_json::json!({
            "bench": "recovery",
            "failover": format!("{mode:?}").to_lowercase(),
            "backoff_ms": args.backoff.as_secs_f64() * 1e3,
            "recovery_ms": recovery.as_secs_f64() * 1e3,
            "healthy_rows_per_s_before": healthy_before,
            "healthy_rows_per_s_during_failure": healthy_during,
            "restarts": summary.restarts,
            "records_lost": summary.records_lost,
            "checkpoints": summary.checkpoints.len(),
        })
    );
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StateKind {
    Sync,
    AsyncIncremental,
}

/// Holds `words` u64 of state; times the pause after each barrier; writes `updates` random
/// words in the first batch after each barrier.
struct Holder {
    kind: StateKind,
    plain: Vec<u64>,
    table: ChunkedTable<2>,
    updates: usize,
    rng: u64,
    barrier_at: Option<Instant>,
    update_next: bool,
    pauses: Arc<std::sync::Mutex<Vec<f64>>>,
    /// Time of each batch of random writes after a barrier (copy-on-write included).
    updates_s: Arc<std::sync::Mutex<Vec<f64>>>,
}

struct HeldTable(TableSnapshot<2>);

impl DeferredState for HeldTable {
    fn write(self: Box<Self>, ctx: &WriteContext) -> eddy_core::Result<Vec<u8>> {
        let mut w = BlobWriter::new(ctx.full, b"holder", 0);
        self.0.write(ctx, &mut w);
        Ok(w.finish())
    }
}

impl Holder {
    fn next(&mut self) -> usize {
        // xorshift64: a fixed sequence of random slots
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng as usize
    }
}

impl Operator for Holder {
    fn process(&mut self, _: usize, _: RecordBatch, _: &mut Collector) -> eddy_core::Result<()> {
        if let Some(t) = self.barrier_at.take() {
            self.pauses
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(t.elapsed().as_secs_f64());
        }
        if self.update_next {
            self.update_next = false;
            let t = Instant::now();
            for _ in 0..self.updates {
                let r = self.next();
                match self.kind {
                    StateKind::Sync => {
                        let n = self.plain.len();
                        self.plain[r % n] = r as u64;
                    }
                    StateKind::AsyncIncremental => {
                        let n = self.table.len();
                        self.table.set(r % n, [r as u32, (r >> 32) as u32]);
                    }
                }
            }
            self.updates_s
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(t.elapsed().as_secs_f64());
        }
        Ok(())
    }

    fn on_barrier(
        &mut self,
        _: eddy_core::message::Epoch,
        _: &mut Collector,
    ) -> eddy_core::Result<()> {
        self.barrier_at = Some(Instant::now());
        self.update_next = true;
        Ok(())
    }

    fn snapshot_async(
        &mut self,
        _: eddy_core::message::Epoch,
    ) -> eddy_core::Result<Option<StateSnapshot>> {
        Ok(Some(match self.kind {
            StateKind::Sync => {
                let mut bytes = Vec::with_capacity(self.plain.len() * 8);
                for w in &self.plain {
                    bytes.extend_from_slice(&w.to_le_bytes());
                }
                StateSnapshot::Ready(bytes)
            }
            StateKind::AsyncIncremental => {
                StateSnapshot::Deferred(Box::new(HeldTable(self.table.snapshot())))
            }
        }))
    }
}

#[derive(Clone)]
struct NullSink;

impl Sink for NullSink {
    fn write(&mut self, _batch: &RecordBatch) -> eddy_core::Result<()> {
        Ok(())
    }
}

/// Bytes and number of the files under `dir` whose paths are not in `seen` (added to it).
fn new_bytes(dir: &Path, seen: &mut std::collections::HashSet<PathBuf>) -> (u64, u64) {
    let (mut total, mut files) = (0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            let (b, f) = new_bytes(&path, seen);
            (total, files) = (total + b, files + f);
        } else if seen.insert(path.clone()) {
            total += e.metadata().map(|m| m.len()).unwrap_or(0);
            files += 1;
        }
    }
    (total, files)
}

fn large_state(args: &CheckpointBenchArgs, mb: usize, kind: StateKind) -> anyhow::Result<()> {
    let dir = args.dir.join(format!("state-{mb}-{kind:?}"));
    let _ = std::fs::remove_dir_all(&dir);
    let words = mb * 1_000_000 / 8;
    let pauses = Arc::new(std::sync::Mutex::new(Vec::new()));
    let updates_s = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut holder = Holder {
        kind,
        plain: Vec::new(),
        table: ChunkedTable::new(0, DEFAULT_CHUNK_SLOTS),
        updates: args.sparse_updates,
        rng: 0x9E37_79B9_7F4A_7C15,
        barrier_at: None,
        update_next: false,
        pauses: pauses.clone(),
        updates_s: updates_s.clone(),
    };
    match kind {
        StateKind::Sync => holder.plain = (0..words as u64).collect(),
        StateKind::AsyncIncremental => {
            holder.table = ChunkedTable::new(words, DEFAULT_CHUNK_SLOTS);
            for i in 0..words {
                holder.table.set(i, [i as u32, (i >> 32) as u32]);
            }
        }
    }
    let holder = std::sync::Mutex::new(Some(holder));
    let flow = Dataflow::new(DataflowConfig {
        bounds: BatchBounds {
            max_rows: 100,
            ..BatchBounds::default()
        },
        checkpoint: CheckpointConfig {
            dir: Some(dir.clone()),
            ..CheckpointConfig::default()
        },
        ..DataflowConfig::default()
    });
    flow.source("events", numbers(u64::MAX / 2))
        .apply(
            "state",
            Arc::new(move |_| {
                let h = holder.lock().unwrap_or_else(|p| p.into_inner()).take();
                match h {
                    Some(h) => Box::new(h) as Box<dyn Operator>,
                    None => Box::new(Work {
                        processed: Arc::new(vec![AtomicU64::new(0)]),
                        subtask: 0,
                    }),
                }
            }),
        )
        .sink("null", NullSink);
    let handle = flow.start()?;
    let mut seen = std::collections::HashSet::new();
    let (mut sizes, mut files) = (Vec::new(), Vec::new());
    for _ in 0..args.checkpoints.max(2) {
        let epoch = handle.trigger_checkpoint();
        wait_for("the checkpoint", || {
            handle.completed_checkpoints().contains(&epoch)
        })?;
        let (b, f) = new_bytes(&dir, &mut seen);
        sizes.push(b as f64);
        files.push(f);
    }
    handle.cancel();
    let _ = handle.join();
    let pauses = pauses.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let updates_s = updates_s.lock().unwrap_or_else(|p| p.into_inner()).clone();
    println!(
        "{}",
        serde_json::json!({
            "bench": "state",
            "snapshot": match kind { StateKind::Sync => "sync", StateKind::AsyncIncremental => "async-incremental" },
            "state_mb": mb,
            "sparse_updates_per_checkpoint": args.sparse_updates,
            "checkpoints": sizes.len(),
            "median_pause_ms": median(pauses.iter().map(|p| p * 1e3).collect()),
            "max_pause_ms": pauses.iter().copied().fold(0.0, f64::max) * 1e3,
            "median_update_batch_ms": median(updates_s.iter().map(|p| p * 1e3).collect()),
            "full_checkpoint_bytes": sizes.first().copied().unwrap_or(0.0),
            "full_checkpoint_files": files.first().copied().unwrap_or(0),
            "median_next_checkpoint_bytes": median(sizes.iter().skip(1).copied().collect()),
        })
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A 2^22-weight FTRL learner with every weight set: the time its synchronous snapshot
/// encoding takes at a barrier (what the training operator did before) against the time its
/// chunked slot snapshot takes (what it does now), and the time the background writer then
/// takes to write every chunk (a full snapshot, off the data path).
fn ftrl_snapshot() -> anyhow::Result<()> {
    let mut model = eddy_algorithms::online::linear::FtrlLogisticParams::default().build()?;
    let weights: Vec<f32> = (0..model.dim())
        .map(|i| 0.01 * (i % 7 + 1) as f32)
        .collect();
    model.warm_start(&weights, 0.1)?;
    let (mut sync, mut pause, mut write) = (Vec::new(), Vec::new(), Vec::new());
    let (mut sync_bytes, mut chunk_bytes) = (0, 0);
    for epoch in 1..=3u64 {
        let t = Instant::now();
        sync_bytes = eddy_algorithms::model::encode("bench", &model)?.len();
        sync.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let snapshot = model.slot_snapshot();
        pause.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let ctx = WriteContext {
            epoch: eddy_core::message::Epoch(epoch),
            durable: eddy_core::message::Epoch(0),
            full: true,
        };
        let mut w = BlobWriter::new(true, b"", 0);
        snapshot.write(&ctx, &mut w);
        chunk_bytes = w.finish().len();
        write.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "{}",
        serde_json::json!({
            "bench": "state",
            "snapshot": "ftrl-2^22",
            "weights": model.dim(),
            "sync_encode_pause_ms": median(sync),
            "sync_bytes": sync_bytes,
            "async_pause_ms": median(pause),
            "async_full_write_ms_off_path": median(write),
            "async_full_bytes": chunk_bytes,
        })
    );
    Ok(())
}

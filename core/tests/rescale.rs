//! Rescaled restore: a keyed job checkpointed at one parallelism and restored at another gives
//! the output of one uninterrupted run; state that declares no redistribution rule, a changed
//! key-group count or a rescaled source is refused with an error naming it.
//!
//! The jobs read two gated sources (keys `a*` and `b*`, each with its own event time, joined by
//! a union whose watermark is the minimum of both), so a checkpoint falls at a random batch of
//! each source (several seeds). Run 1 stops right after that checkpoint; run 2 restores it at
//! another parallelism and runs to the end. Run 1's output before the checkpoint plus run 2's
//! output must equal the reference, row for row.
//!
//! Mutation (run by hand, see the report): mapping key group `g` to subtask `(g + 1) % p`
//! in `checkpoint/rescale.rs` — a restored window then fires apart from the rows of its key
//! and the row sets differ.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use arrow::util::display::array_value_to_string;
use eddy_core::dataflow::CheckpointConfig;
use eddy_core::join::IntervalJoin;
use eddy_core::prelude::*;
use eddy_core::source::generator::GeneratorSource;
use eddy_core::source::BatchBounds;
use eddy_core::window::{Agg, OverSpec, WindowSpec};

mod common;
use common::wait_for;

const ROWS: u64 = 4000;
const BATCH_ROWS: usize = 100; // 40 batches per source
const BATCHES: usize = ROWS as usize / BATCH_ROWS;

/// How many batches a gated source may emit, and how many it did.
#[derive(Default)]
struct Gate {
    allowed: AtomicUsize,
    emitted: AtomicUsize,
}

/// A generator held back by a gate (none: runs freely).
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

/// `ROWS` events `(k, ts, v)` of keys `{prefix}0..{prefix}{keys-1}`; `ts` counts up (ms, 8
/// rows a millisecond), so every 100 ms window holds nearly every key: with ~280 keys over
/// 128 key groups, nearly every group holds state at a checkpoint.
fn events(prefix: &'static str, keys: i64) -> GeneratorSource {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
    ]));
    GeneratorSource::new(
        schema,
        Some(ROWS),
        Arc::new(move |start, len| {
            let row: Vec<i64> = (start as i64..(start + len as u64) as i64).collect();
            let ts: Vec<i64> = row.iter().map(|r| r / 8).collect();
            let k: Vec<String> = row
                .iter()
                .map(|r| format!("{prefix}{}", (r * 7 + r / 13) % keys))
                .collect();
            let v: Vec<i64> = row.iter().map(|r| r % 11).collect();
            Ok(RecordBatch::try_from_iter([
                ("k", Arc::new(StringArray::from(k)) as ArrayRef),
                ("ts", Arc::new(Int64Array::from(ts)) as ArrayRef),
                ("v", Arc::new(Int64Array::from(v)) as ArrayRef),
            ])?)
        }),
    )
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Shape {
    /// Tumbling 100 ms count and sum per key.
    Window,
    /// Per-row sum and count over the last 4 rows of the key.
    Over,
    /// a ⋈ b on `v` (11 values) where b's time is within a's ± 1 ms.
    Join,
}

fn config(dir: Option<&Path>) -> DataflowConfig {
    DataflowConfig {
        bounds: BatchBounds {
            max_rows: BATCH_ROWS,
            ..BatchBounds::default()
        },
        idle_poll: Duration::from_millis(1),
        checkpoint: CheckpointConfig {
            dir: dir.map(Path::to_path_buf),
            ..CheckpointConfig::default()
        },
        ..DataflowConfig::default()
    }
}

/// a, b → timestamps each → union → key_by(k) → window or over (parallelism `p`) → sink
fn job(
    shape: Shape,
    p: usize,
    config: DataflowConfig,
    gates: [Option<Arc<Gate>>; 2],
    sink: MemorySink,
) -> Dataflow {
    let flow = Dataflow::new(config);
    let [ga, gb] = gates;
    let a = flow
        .source(
            "a",
            GatedSource {
                inner: events("a", 151),
                gate: ga,
            },
        )
        .assign_timestamps("time a", "ts", Duration::ZERO);
    let b = flow
        .source(
            "b",
            GatedSource {
                inner: events("b", 131),
                gate: gb,
            },
        )
        .assign_timestamps("time b", "ts", Duration::ZERO);
    if shape == Shape::Join {
        let spec = IntervalJoin::new(["v"], -1, 1);
        a.interval_join(&b, "join", spec)
            .parallelism(p)
            .sink("out", sink);
        return flow;
    }
    let keyed = a.union("both", &[b]).key_by(["k"]);
    let out = match shape {
        Shape::Window => keyed.window(
            "per 100ms",
            WindowSpec::tumbling(Duration::from_millis(100)),
            vec![Agg::count("n"), Agg::sum("v", "total")],
        ),
        Shape::Join => unreachable!("built above"),
        Shape::Over => keyed.over(
            "last 4",
            OverSpec::last_rows(4),
            vec![Agg::count("n"), Agg::sum("v", "total")],
        ),
    };
    out.parallelism(p).sink("out", sink);
    flow
}

fn rows(sink: &MemorySink) -> Vec<String> {
    let mut all: Vec<String> = sink
        .batches()
        .iter()
        .flat_map(|b| {
            (0..b.num_rows())
                .map(|r| {
                    b.columns()
                        .iter()
                        .map(|c| array_value_to_string(c, r).unwrap())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .collect::<Vec<_>>()
        })
        .collect();
    all.sort();
    all
}

fn reference(shape: Shape) -> Vec<String> {
    let sink = MemorySink::new();
    job(shape, 1, config(None), [None, None], sink.clone())
        .run()
        .unwrap();
    rows(&sink)
}

/// Run 1 at parallelism `from`: lets source a emit `cut[0]` batches and b `cut[1]`, takes a
/// checkpoint, cancels. Returns what reached the sink before the checkpoint.
fn run_until_checkpoint(shape: Shape, dir: &Path, from: usize, cut: [usize; 2]) -> Vec<String> {
    let gates = [Arc::new(Gate::default()), Arc::new(Gate::default())];
    let sink = MemorySink::new();
    let handle = job(
        shape,
        from,
        config(Some(dir)),
        [Some(gates[0].clone()), Some(gates[1].clone())],
        sink.clone(),
    )
    .start()
    .unwrap();
    for (gate, &n) in gates.iter().zip(&cut) {
        gate.allowed.store(n, Ordering::SeqCst);
    }
    wait_for("the gated sources", || {
        gates
            .iter()
            .zip(&cut)
            .all(|(g, &n)| g.emitted.load(Ordering::SeqCst) >= n)
    });
    let epoch = handle.trigger_checkpoint();
    wait_for("the checkpoint", || {
        handle.completed_checkpoints().contains(&epoch) || handle.is_finished()
    });
    assert!(handle.completed_checkpoints().contains(&epoch));
    let before = rows(&sink);
    handle.cancel();
    let _ = handle.join();
    // nothing flowed past the checkpoint: the gates stayed closed
    assert_eq!(rows(&sink), before, "output after the checkpoint");
    before
}

/// Run 2 at parallelism `to`, restored from `dir`: its whole output.
fn run_restored(shape: Shape, dir: &Path, to: usize) -> Result<Vec<String>> {
    let sink = MemorySink::new();
    let handle = job(shape, to, config(Some(dir)), [None, None], sink.clone()).start()?;
    let restored = handle.restored_checkpoint();
    handle.join()?;
    assert!(restored.is_some(), "run 2 restored nothing");
    Ok(rows(&sink))
}

/// A small deterministic generator for the checkpoint points.
fn cuts(seed: u64) -> [usize; 2] {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xdead_beef;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        1 + (x % (BATCHES as u64 - 2)) as usize
    };
    [next(), next()]
}

fn check_rescale(shape: Shape, from: usize, to: usize, seeds: std::ops::Range<u64>) {
    let want = reference(shape);
    assert!(!want.is_empty());
    for seed in seeds {
        let cut = cuts(seed);
        let dir = tempfile::tempdir().unwrap();
        let mut got = run_until_checkpoint(shape, dir.path(), from, cut);
        got.extend(run_restored(shape, dir.path(), to).unwrap());
        got.sort();
        assert_eq!(
            got.len(),
            want.len(),
            "{shape:?} {from}→{to}, seed {seed}, cut {cut:?}: row count"
        );
        assert!(
            got == want,
            "{shape:?} {from}→{to}, seed {seed}, cut {cut:?}: rows differ from an uninterrupted run"
        );
    }
}

#[test]
fn keyed_windows_restore_from_2_at_1_and_3() {
    check_rescale(Shape::Window, 2, 1, 0..3);
    check_rescale(Shape::Window, 2, 3, 3..6);
}

#[test]
fn keyed_windows_restore_from_3_at_2() {
    check_rescale(Shape::Window, 3, 2, 6..9);
}

#[test]
fn over_aggregates_restore_from_2_at_1_and_3_and_from_3_at_2() {
    check_rescale(Shape::Over, 2, 1, 10..12);
    check_rescale(Shape::Over, 2, 3, 12..14);
    check_rescale(Shape::Over, 3, 2, 14..16);
}

#[test]
fn interval_joins_restore_from_2_at_1_and_3_and_from_3_at_2() {
    check_rescale(Shape::Join, 2, 1, 30..32);
    check_rescale(Shape::Join, 2, 3, 32..34);
    check_rescale(Shape::Join, 3, 2, 34..36);
}

#[test]
fn the_same_parallelism_restores_too() {
    check_rescale(Shape::Window, 2, 2, 20..22);
}

/// Counts rows: state with no redistribution rule.
#[derive(Clone, Default)]
struct Counter {
    rows: u64,
}

impl Operator for Counter {
    fn process(&mut self, _input: usize, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        out.emit(batch);
        Ok(())
    }

    fn snapshot(&mut self, _epoch: Epoch) -> Result<Option<Vec<u8>>> {
        Ok(Some(self.rows.to_le_bytes().to_vec()))
    }

    fn restore(&mut self, state: &[u8]) -> Result<()> {
        let bytes: [u8; 8] = state
            .try_into()
            .map_err(|_| Error::config("counter.state", "not 8 bytes"))?;
        self.rows = u64::from_le_bytes(bytes);
        Ok(())
    }
}

/// source a (gated) → rebalance → counter (parallelism `p`) → sink
fn counter_job(p: usize, config: DataflowConfig, gate: Option<Arc<Gate>>) -> Dataflow {
    let flow = Dataflow::new(config);
    flow.source(
        "a",
        GatedSource {
            inner: events("a", 3),
            gate,
        },
    )
    .rebalance()
    .operator("row counter", Counter::default())
    .parallelism(p)
    .sink("out", MemorySink::new());
    flow
}

/// Runs `flow` gated to `batches` batches, checkpoints once, cancels.
fn checkpoint_once(start: impl FnOnce(Arc<Gate>) -> Dataflow, batches: usize) {
    let gate = Arc::new(Gate::default());
    let handle = start(gate.clone()).start().unwrap();
    gate.allowed.store(batches, Ordering::SeqCst);
    wait_for("the gated source", || {
        gate.emitted.load(Ordering::SeqCst) >= batches
    });
    let epoch = handle.trigger_checkpoint();
    wait_for("the checkpoint", || {
        handle.completed_checkpoints().contains(&epoch) || handle.is_finished()
    });
    assert!(handle.completed_checkpoints().contains(&epoch));
    handle.cancel();
    let _ = handle.join();
}

#[test]
fn an_operator_without_a_rule_is_refused_at_a_new_parallelism_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    checkpoint_once(|g| counter_job(2, config(Some(dir.path())), Some(g)), 5);
    let err = counter_job(3, config(Some(dir.path())), None)
        .run()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("`row counter`") && err.contains("no redistribution rule"),
        "{err}"
    );
    // at the parallelism it was taken at, the same checkpoint restores
    counter_job(2, config(Some(dir.path())), None)
        .run()
        .unwrap();
}

#[test]
fn another_key_group_count_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    checkpoint_once(
        |g| {
            job(
                Shape::Window,
                2,
                config(Some(dir.path())),
                [Some(g), None],
                MemorySink::new(),
            )
        },
        5,
    );
    let err = job(
        Shape::Window,
        2,
        DataflowConfig {
            key_groups: 64,
            ..config(Some(dir.path()))
        },
        [None, None],
        MemorySink::new(),
    )
    .run()
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        err.contains("128 key groups") && err.contains("has 64"),
        "{err}"
    );
}

#[test]
fn a_rescaled_source_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let flow = |p: usize, gate: Option<Arc<Gate>>| {
        let flow = Dataflow::new(config(Some(dir.path())));
        flow.source(
            "split source",
            GatedSource {
                inner: events("a", 3),
                gate,
            },
        )
        .parallelism(p)
        .sink("out", MemorySink::new());
        flow
    };
    checkpoint_once(|g| flow(2, Some(g)), 3);
    let err = flow(1, None)
        .run()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("source `split source`") && err.contains("cannot be redistributed"),
        "{err}"
    );
}

#[test]
fn a_renamed_stateful_operator_is_refused_unless_it_keeps_its_id() {
    let dir = tempfile::tempdir().unwrap();
    checkpoint_once(|g| counter_job(1, config(Some(dir.path())), Some(g)), 4);
    let renamed = |uid: Option<&str>| {
        let flow = Dataflow::new(config(Some(dir.path())));
        let counted = flow
            .source(
                "a",
                GatedSource {
                    inner: events("a", 3),
                    gate: None,
                },
            )
            .operator("counter v2", Counter::default());
        let counted = match uid {
            Some(id) => counted.uid(id),
            None => counted,
        };
        counted.sink("out", MemorySink::new());
        flow
    };
    let err = renamed(None)
        .run()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("`row counter`") && err.contains("does not have"),
        "{err}"
    );
    renamed(Some("row counter")).run().unwrap();
}

#[test]
fn a_savepoint_survives_retention_and_a_new_job_starts_from_it_rescaled() {
    let shape = Shape::Window;
    let want = reference(shape);
    let dir = tempfile::tempdir().unwrap();
    let gates = [Arc::new(Gate::default()), Arc::new(Gate::default())];
    let sink = MemorySink::new();
    let handle = job(
        shape,
        2,
        config(Some(dir.path())),
        [Some(gates[0].clone()), Some(gates[1].clone())],
        sink.clone(),
    )
    .start()
    .unwrap();
    for (gate, n) in gates.iter().zip([17, 9]) {
        gate.allowed.store(n, Ordering::SeqCst);
    }
    wait_for("the gated sources", || {
        gates
            .iter()
            .zip([17, 9])
            .all(|(g, n)| g.emitted.load(Ordering::SeqCst) >= n)
    });
    let savepoint = handle.savepoint("before-rescale").unwrap();
    assert_eq!(savepoint, dir.path().join("savepoints/before-rescale"));
    let before = rows(&sink);
    // more checkpoints than retention keeps: the savepoint stays
    for _ in 0..4 {
        let epoch = handle.trigger_checkpoint();
        wait_for("a checkpoint", || {
            handle.completed_checkpoints().contains(&epoch)
        });
    }
    let err = handle
        .savepoint("before-rescale")
        .err()
        .map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("exists already")));
    handle.cancel();
    let _ = handle.join();
    assert!(savepoint.join("MANIFEST.json").is_file());

    // a new job in another directory, at parallelism 3, starts from the savepoint
    let other = tempfile::tempdir().unwrap();
    let mut cfg = config(Some(other.path()));
    cfg.checkpoint.restore_from = Some(savepoint.clone());
    let sink2 = MemorySink::new();
    let handle = job(shape, 3, cfg, [None, None], sink2.clone())
        .start()
        .unwrap();
    assert!(handle.restored_checkpoint().is_some());
    handle.join().unwrap();
    let mut got = before;
    got.extend(rows(&sink2));
    got.sort();
    assert!(
        got == want,
        "rows from the savepoint differ from an uninterrupted run"
    );
}

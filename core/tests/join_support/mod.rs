//! What the join tests (`join_interval`, `join_window`, `join_temporal`) share: small random
//! inputs with bounded disorder, the three join kinds and their nested-loop oracles, the job
//! that runs one of them, and the three checks every kind must pass — the oracle's rows at
//! parallelism 1 and 2, the oracle's rows after exactly-once restores under random faults, and
//! the rows of an uninterrupted run after a checkpoint taken in the middle of the join (gated
//! sources) is restored at another parallelism.

#![allow(dead_code)] // each test binary uses its own subset

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Int64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use eddy_core::dataflow::{CheckpointMode, FailoverMode, FaultInjection, FaultPoint, JobHandle};
use eddy_core::join::{IntervalJoin, TemporalJoin, WindowJoin};
use eddy_core::prelude::*;
use eddy_core::source::generator::GeneratorSource;
use eddy_core::source::BatchBounds;
use eddy_core::window::WindowSpec;
use rand::{Rng, SeedableRng};

use crate::common::txn::{assert_same_rows, faulty_config, TxSink};
use crate::common::wait_for;

/// Out-of-orderness bound of both inputs (ms); the generated disorder stays within it.
pub const BOUND: i64 = 12;
/// Rows per batch: many batches, so checkpoints and faults fall in the middle of the join.
pub const BATCH_ROWS: usize = 16;

/// One input row: key, event time (ms), payload (the left side's `id`, the right side's `v`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub k: i64,
    pub ts: i64,
    pub x: i64,
}

/// The two inputs of one seed: `rows` rows each side over `keys` keys, event times rising by
/// `step` on average with a disorder below [`BOUND`], so no row is late.
pub fn inputs(seed: u64, rows: usize, keys: i64) -> (Vec<Event>, Vec<Event>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut side = |step: i64| -> Vec<Event> {
        (0..rows as i64)
            .map(|i| Event {
                k: rng.random_range(0..keys),
                ts: i * step + rng.random_range(0..BOUND),
                x: rng.random_range(0..1_000),
            })
            .collect()
    };
    let left = side(3);
    let right = side(3);
    (left, right)
}

/// The join under test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// `right.ts ∈ [left.ts + lower, left.ts + upper]`.
    Interval { lower: i64, upper: i64 },
    /// Same window of `size`, starting every `slide` ms.
    Window { size: i64, slide: i64 },
    /// The right version as of the left row's time; `outer`: left outer.
    Temporal { outer: bool },
}

/// A side's schema: `k`, `ts`, and `id` (left) or `v` (right).
pub fn schema(s: usize) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("ts", DataType::Int64, false),
        Field::new(["id", "v"][s], DataType::Int64, false),
    ]))
}

/// `events` as one batch of side `s`.
pub fn batch(s: usize, events: &[Event]) -> RecordBatch {
    let column = |f: fn(&Event) -> i64| {
        Arc::new(Int64Array::from(events.iter().map(f).collect::<Vec<_>>())) as ArrayRef
    };
    RecordBatch::try_new(
        schema(s),
        vec![column(|e| e.k), column(|e| e.ts), column(|e| e.x)],
    )
    .unwrap()
}

/// A replayable source of `events` (side `s`).
pub fn source(s: usize, events: &[Event]) -> GeneratorSource {
    let events = Arc::new(events.to_vec());
    GeneratorSource::new(
        schema(s),
        Some(events.len() as u64),
        Arc::new(move |start, len| {
            let start = start as usize;
            Ok(batch(s, &events[start..start + len]))
        }),
    )
}

fn pair(l: &Event, r: &Event) -> String {
    format!("{},{},{},{},{},{}", l.k, l.ts, l.x, r.k, r.ts, r.x)
}

/// The rows a nested loop finds, as the sink writes them, sorted.
pub fn oracle(kind: Kind, left: &[Event], right: &[Event]) -> Vec<String> {
    let mut rows = Vec::new();
    for l in left {
        let same = right.iter().filter(|r| r.k == l.k);
        match kind {
            Kind::Interval { lower, upper } => rows.extend(
                same.filter(|r| (l.ts + lower..=l.ts + upper).contains(&r.ts))
                    .map(|r| pair(l, r)),
            ),
            Kind::Window { size, slide } => {
                for r in same {
                    // every window start s (a multiple of slide) with s <= ts < s + size
                    let mut s = l.ts - l.ts.rem_euclid(slide);
                    while s > l.ts - size {
                        if (s..s + size).contains(&r.ts) {
                            rows.push(format!("{},{s},{}", pair(l, r), s + size));
                        }
                        s -= slide;
                    }
                }
            }
            Kind::Temporal { outer } => {
                // the latest version at or before l.ts; of equal times, the last one sent
                let mut current: Option<&Event> = None;
                for r in same.filter(|r| r.ts <= l.ts) {
                    if current.is_none_or(|c| r.ts >= c.ts) {
                        current = Some(r);
                    }
                }
                match current {
                    Some(r) => rows.push(pair(l, r)),
                    None if outer => rows.push(format!("{},{},{},,,", l.k, l.ts, l.x)),
                    None => {}
                }
            }
        }
    }
    rows.sort();
    rows
}

/// left ⋈ right of `kind`, at parallelism `p`, into `sink`.
pub fn join(kind: Kind, left: &Stream, right: &Stream, p: usize) -> Stream {
    let joined = match kind {
        Kind::Interval { lower, upper } => {
            left.interval_join(right, "join", IntervalJoin::new(["k"], lower, upper))
        }
        Kind::Window { size, slide } => {
            let (size, slide) = (
                Duration::from_millis(size as u64),
                Duration::from_millis(slide as u64),
            );
            let spec = if size == slide {
                WindowSpec::tumbling(size)
            } else {
                WindowSpec::sliding(size, slide)
            };
            left.window_join(right, "join", WindowJoin::new(["k"], spec))
        }
        Kind::Temporal { outer } => {
            let spec = TemporalJoin::new(["k"]);
            let spec = if outer { spec.left_outer() } else { spec };
            left.temporal_join(right, "join", spec)
        }
    };
    joined.parallelism(p)
}

/// How many batches a gated source may emit, and how many it did.
#[derive(Default)]
pub struct Gate {
    pub allowed: AtomicUsize,
    pub emitted: AtomicUsize,
}

/// A source held back by a gate (none: runs freely).
#[derive(Clone)]
pub struct GatedSource {
    pub inner: GeneratorSource,
    pub gate: Option<Arc<Gate>>,
}

impl Source for GatedSource {
    fn schema(&self) -> SchemaRef {
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

/// The inputs and the join of one test job.
pub struct Case {
    pub kind: Kind,
    pub left: Vec<Event>,
    pub right: Vec<Event>,
}

impl Case {
    pub fn new(kind: Kind, seed: u64) -> Case {
        let (left, right) = inputs(seed, 240, 6);
        Case { kind, left, right }
    }

    pub fn oracle(&self) -> Vec<String> {
        oracle(self.kind, &self.left, &self.right)
    }

    /// sources (gated when `gates`) → timestamps → join (parallelism `p`) → `sink`.
    pub fn job(
        &self,
        config: DataflowConfig,
        p: usize,
        gates: [Option<Arc<Gate>>; 2],
        sink: &TxSink,
    ) -> Dataflow {
        let flow = Dataflow::new(DataflowConfig {
            bounds: BatchBounds {
                max_rows: BATCH_ROWS,
                ..BatchBounds::default()
            },
            idle_poll: Duration::from_millis(1),
            ..config
        });
        let bound = Duration::from_millis(BOUND as u64);
        let [gl, gr] = gates;
        let left = flow
            .source(
                "left",
                GatedSource {
                    inner: source(0, &self.left),
                    gate: gl,
                },
            )
            .assign_timestamps("left-time", "ts", bound);
        let right = flow
            .source(
                "right",
                GatedSource {
                    inner: source(1, &self.right),
                    gate: gr,
                },
            )
            .assign_timestamps("right-time", "ts", bound);
        let sink = sink.clone();
        join(self.kind, &left, &right, p)
            .sink_with("out", Arc::new(move |_| Ok(Box::new(sink.clone()))))
            .parallelism(p);
        flow
    }
}

/// Waits (bounded) for the job to end.
pub fn wait(handle: JobHandle) -> eddy_core::metrics::JobSummary {
    let mut done = false;
    wait_for("the job", || {
        done = handle.is_finished();
        done
    });
    handle.join().unwrap()
}

/// The oracle's rows at parallelism 1 and 2, for each seed.
pub fn check_oracle(kind: Kind, seeds: std::ops::Range<u64>) {
    for seed in seeds {
        let case = Case::new(kind, seed);
        let want = case.oracle();
        assert!(
            want.len() > 100,
            "{kind:?} seed {seed}: {} rows",
            want.len()
        );
        for p in [1, 2] {
            let sink = TxSink::new();
            let flow = case.job(DataflowConfig::default(), p, [None, None], &sink);
            let summary = wait(flow.start().unwrap());
            assert_eq!(summary.dead_letters, 0);
            assert_same_rows(
                &sink.committed(),
                &want,
                &format!("{kind:?}, seed {seed}, parallelism {p}"),
            );
        }
    }
}

/// Random faults (an error in the join, a panic while it snapshots, an error in a source),
/// exactly-once restores from checkpoints (of `mode`) every 2 ms: the oracle's rows, each once.
pub fn check_faults(kind: Kind, runs: &[(u64, usize, CheckpointMode)]) {
    for &(seed, p, mode) in runs {
        let case = Case::new(kind, seed);
        let want = case.oracle();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let dir = tempfile::tempdir().unwrap();
        let mut config = faulty_config(dir.path(), mode, 4);
        config.failover.mode = FailoverMode::ExactlyOnce;
        config.faults = vec![
            FaultInjection::error("join", rng.random_range(0..p), rng.random_range(4..20)),
            FaultInjection::panic("join", rng.random_range(0..p), 0)
                .at(FaultPoint::Snapshot, rng.random_range(1..4)),
            FaultInjection::error(["left", "right"][rng.random_range(0..2)], 0, 8),
        ];
        let faults = config.faults.clone();
        let sink = TxSink::new();
        let summary = wait(case.job(config, p, [None, None], &sink).start().unwrap());
        assert!(summary.restarts >= 1, "seed {seed}: no fault fired");
        assert_same_rows(
            &sink.committed(),
            &want,
            &format!("{kind:?}, seed {seed}, parallelism {p}, {mode:?}, {faults:?}"),
        );
    }
}

/// A small deterministic generator for the checkpoint points (batches of each source).
fn cuts(seed: u64, batches: usize) -> [usize; 2] {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    [
        rng.random_range(2..batches - 2),
        rng.random_range(2..batches - 2),
    ]
}

/// Run 1 at parallelism `from` lets the sources emit `cut` batches, takes a checkpoint and is
/// cancelled; run 2 restores it at parallelism `to` and runs to the end. Run 1's rows before
/// the checkpoint and run 2's rows are the oracle's, each once.
pub fn check_rescale(kind: Kind, from: usize, to: usize, seeds: std::ops::Range<u64>) {
    for seed in seeds {
        let case = Case::new(kind, seed);
        let want = case.oracle();
        let cut = cuts(seed, case.left.len().div_ceil(BATCH_ROWS));
        let dir = tempfile::tempdir().unwrap();
        let config = || DataflowConfig {
            checkpoint: eddy_core::dataflow::CheckpointConfig {
                dir: Some(dir.path().to_path_buf()),
                ..Default::default()
            },
            ..DataflowConfig::default()
        };
        let gates = [Arc::new(Gate::default()), Arc::new(Gate::default())];
        let first = TxSink::new();
        let flow = case.job(
            config(),
            from,
            [Some(gates[0].clone()), Some(gates[1].clone())],
            &first,
        );
        let handle = flow.start().unwrap();
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
        // the sink commits the checkpoint's transaction after it completes: run 2's sink
        // cannot publish what run 1's prepared (another sink, maybe another subtask count)
        wait_for("the sink's commit", || first.prepared() == 0);
        handle.cancel();
        let _ = handle.join();
        let mut got = first.committed();
        let second = TxSink::new();
        let handle = case
            .job(config(), to, [None, None], &second)
            .start()
            .unwrap();
        assert!(
            handle.restored_checkpoint().is_some(),
            "run 2 restored nothing"
        );
        wait(handle);
        got.extend(second.committed());
        got.sort();
        assert_same_rows(
            &got,
            &want,
            &format!("{kind:?} {from}→{to}, seed {seed}, cut {cut:?}"),
        );
    }
}

/// Drives `op` directly: the batches of both sides alternately, each followed by the watermark
/// the runtime would send (the lesser of both sides' `max ts - BOUND - 1`); after each
/// watermark `check(op, watermark, left so far, right so far)`; at the end `MAX_WATERMARK`.
pub fn drive<O: Operator>(
    op: &mut O,
    left: &[Event],
    right: &[Event],
    mut check: impl FnMut(&O, i64, &[Event], &[Event]),
) -> Vec<RecordBatch> {
    let mut out = Collector::default();
    let mut rows = Vec::new();
    op.on_start(&TaskInfo::new("join", 0, 1)).unwrap();
    let (mut max, mut wm, mut sent) = ([i64::MIN; 2], i64::MIN, [0usize; 2]);
    let batches = left.len().max(right.len()).div_ceil(BATCH_ROWS);
    for b in 0..batches {
        for (s, events) in [left, right].into_iter().enumerate() {
            let end = ((b + 1) * BATCH_ROWS).min(events.len());
            let chunk = &events[(b * BATCH_ROWS).min(end)..end];
            if chunk.is_empty() {
                continue;
            }
            op.process(s, batch(s, chunk), &mut out).unwrap();
            sent[s] = end;
            max[s] = max[s].max(chunk.iter().map(|e| e.ts).max().unwrap());
            let next = max[0].min(max[1]).saturating_sub(BOUND + 1);
            if next > wm {
                wm = next;
                op.on_watermark(wm, &mut out).unwrap();
                check(op, wm, &left[..sent[0]], &right[..sent[1]]);
            }
            rows.extend(data(&mut out));
        }
    }
    op.on_watermark(i64::MAX, &mut out).unwrap();
    rows.extend(data(&mut out));
    rows
}

/// The data batches in `out` (drained); side outputs fail the test: none is late here.
pub fn data(out: &mut Collector) -> Vec<RecordBatch> {
    let mut rows = Vec::new();
    for o in out.drain() {
        match o {
            eddy_core::operator::Output::Data(b) => rows.push(b),
            eddy_core::operator::Output::Side(tag, b) => {
                panic!("{} rows to side output {tag}", b.num_rows())
            }
            _ => {}
        }
    }
    rows
}

/// The rows of `batches` as the sink writes them, sorted.
pub fn rows_of(batches: &[RecordBatch]) -> Vec<String> {
    let mut rows: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            (0..b.num_rows()).map(move |r| {
                b.columns()
                    .iter()
                    .map(|c| arrow::util::display::array_value_to_string(c, r).unwrap())
                    .collect::<Vec<_>>()
                    .join(",")
            })
        })
        .collect();
    rows.sort();
    rows
}

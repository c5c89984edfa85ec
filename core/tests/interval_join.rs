//! The interval join against a nested-loop oracle: every pair of rows with equal keys whose
//! right event time lies in `[left + LOWER, left + UPPER]`, at parallelism 1 and 2; state
//! expiry by watermark and late rows, on the operator itself; and exactly-once restores from
//! checkpoints under random faults giving the oracle's pairs, once each.

mod common;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Int64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use eddy_core::dataflow::{CheckpointMode, FailoverMode, FaultInjection, FaultPoint, JobHandle};
use eddy_core::join::{IntervalJoin, IntervalJoinOperator, LATE_LEFT};
use eddy_core::operator::Output;
use eddy_core::prelude::*;
use eddy_core::source::generator::GeneratorSource;
use eddy_core::source::BatchBounds;
use rand::{Rng, SeedableRng};

use common::txn::{assert_same_rows, faulty_config, TxSink};

const LEFT_ROWS: u64 = 3_000;
const RIGHT_ROWS: u64 = 2_000;
const KEYS: i64 = 50;
const LOWER: i64 = -20;
const UPPER: i64 = 30;

/// Event `i` of a side: key, event time (ms; a deterministic jitter of 0..5 ms around
/// `i * step`, well within the 10 ms out-of-orderness bound), id.
fn event(i: i64, step: i64, mult: i64) -> (i64, i64, i64) {
    let jitter = (i * 2_654_435_761) % 5;
    ((i * mult) % KEYS, i * step + jitter, i)
}

fn side(rows: u64, step: i64, mult: i64) -> GeneratorSource {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("id", DataType::Int64, false),
    ]));
    GeneratorSource::new(
        schema,
        Some(rows),
        Arc::new(move |start, len| {
            let events: Vec<_> = (start..start + len as u64)
                .map(|i| event(i as i64, step, mult))
                .collect();
            let column = |f: fn(&(i64, i64, i64)) -> i64| {
                Arc::new(Int64Array::from(events.iter().map(f).collect::<Vec<_>>())) as ArrayRef
            };
            Ok(RecordBatch::try_from_iter([
                ("k", column(|e| e.0)),
                ("ts", column(|e| e.1)),
                ("id", column(|e| e.2)),
            ])?)
        }),
    )
}

/// The pairs a nested loop finds, as the sink writes them: `k,ts,id,right_k,right_ts,right_id`.
fn oracle() -> Vec<String> {
    let left: Vec<_> = (0..LEFT_ROWS as i64).map(|i| event(i, 2, 7_919)).collect();
    let right: Vec<_> = (0..RIGHT_ROWS as i64)
        .map(|i| event(i, 3, 104_729))
        .collect();
    let mut pairs = Vec::new();
    for l in &left {
        for r in &right {
            if l.0 == r.0 && (l.1 + LOWER..=l.1 + UPPER).contains(&r.1) {
                pairs.push(format!("{},{},{},{},{},{}", l.0, l.1, l.2, r.0, r.1, r.2));
            }
        }
    }
    pairs.sort();
    pairs
}

fn job(config: DataflowConfig, p: usize, sink: &TxSink) -> Dataflow {
    let flow = Dataflow::new(DataflowConfig {
        bounds: BatchBounds {
            max_rows: 64,
            ..BatchBounds::default()
        },
        idle_poll: Duration::from_millis(1),
        ..config
    });
    let bound = Duration::from_millis(10);
    let left = flow
        .source("left", side(LEFT_ROWS, 2, 7_919))
        .assign_timestamps("left-time", "ts", bound);
    let right = flow
        .source("right", side(RIGHT_ROWS, 3, 104_729))
        .assign_timestamps("right-time", "ts", bound);
    let sink = sink.clone();
    left.interval_join(&right, "join", IntervalJoin::new(["k"], LOWER, UPPER))
        .parallelism(p)
        .sink_with("out", Arc::new(move |_| Ok(Box::new(sink.clone()))))
        .parallelism(p);
    flow
}

#[test]
fn every_pair_in_the_interval_once_at_parallelism_1_and_2() {
    let want = oracle();
    assert!(
        want.len() > 500,
        "the data should match often: {}",
        want.len()
    );
    for p in [1, 2] {
        let sink = TxSink::new();
        let flow = job(DataflowConfig::default(), p, &sink);
        let handle = flow.start().unwrap();
        let summary = wait(handle);
        assert_eq!(summary.dead_letters, 0);
        assert_same_rows(&sink.committed(), &want, &format!("parallelism {p}"));
    }
}

fn wait(handle: JobHandle) -> eddy_core::metrics::JobSummary {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !handle.is_finished() {
        assert!(std::time::Instant::now() < deadline, "the job hung");
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.join().unwrap()
}

/// Random faults (errors and panics in the join, its sources and the sink, also during
/// snapshots), exactly-once restores from aligned checkpoints: the oracle's pairs, each once.
#[test]
fn restores_exactly_once_under_random_faults() {
    let want = oracle();
    for (seed, p) in [(1, 1), (2, 2), (3, 2), (4, 1)] {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let dir = tempfile::tempdir().unwrap();
        let mut config = faulty_config(dir.path(), CheckpointMode::Aligned, 4);
        config.failover.mode = FailoverMode::ExactlyOnce;
        let faults: Vec<FaultInjection> = (0..3)
            .map(|i| {
                let subtask = rng.random_range(0..p);
                let after = rng.random_range(3..40);
                match i {
                    0 => FaultInjection::error("join", subtask, after),
                    1 => FaultInjection::panic("join", subtask, 0).at(FaultPoint::Snapshot, 1),
                    _ => FaultInjection::error("left", 0, after),
                }
            })
            .collect();
        config.faults = faults.clone();
        let sink = TxSink::new();
        let summary = wait(job(config, p, &sink).start().unwrap());
        assert!(summary.restarts >= 1, "seed {seed}: no fault fired");
        assert_same_rows(
            &sink.committed(),
            &want,
            &format!("seed {seed}, parallelism {p}, {faults:?}"),
        );
    }
}

fn batch(rows: &[(i64, i64, i64)]) -> RecordBatch {
    let column = |f: fn(&(i64, i64, i64)) -> i64| {
        Arc::new(Int64Array::from(rows.iter().map(f).collect::<Vec<_>>())) as ArrayRef
    };
    RecordBatch::try_from_iter([
        ("k", column(|e| e.0)),
        ("ts", column(|e| e.1)),
        ("id", column(|e| e.2)),
    ])
    .unwrap()
}

fn data_rows(out: &mut Collector) -> (usize, usize) {
    let (mut data, mut late) = (0, 0);
    for o in out.drain() {
        match o {
            Output::Data(b) => data += b.num_rows(),
            Output::Side(tag, b) if tag == LATE_LEFT => late += b.num_rows(),
            _ => {}
        }
    }
    (data, late)
}

/// The watermark drops the rows that can no longer match; a row behind it is late.
#[test]
fn the_watermark_expires_state_and_late_rows_go_aside() {
    let spec = Arc::new(IntervalJoin::new(["k"], LOWER, UPPER).times("ts", "ts"));
    let mut op = IntervalJoinOperator::new("join", spec).unwrap();
    let mut out = Collector::default();
    op.on_start(&TaskInfo::new("join", 0, 1)).unwrap();
    op.process(0, batch(&[(1, 100, 0), (1, 200, 1), (2, 100, 2)]), &mut out)
        .unwrap();
    op.process(1, batch(&[(1, 90, 0), (1, 130, 1), (1, 131, 2)]), &mut out)
        .unwrap();
    // (left 100, right 90) and (100, 130); 131 is past 100 + 30
    assert_eq!(data_rows(&mut out), (2, 0));
    assert_eq!(op.buffered_rows(), (3, 3));
    // past 100 + UPPER the left rows at 100 can match nothing; right 90..131 minus LOWER too
    op.on_watermark(140, &mut out).unwrap();
    assert_eq!(op.buffered_rows(), (1, 2));
    op.on_watermark(152, &mut out).unwrap();
    assert_eq!(
        op.buffered_rows(),
        (1, 0),
        "right rows expire at ts - LOWER"
    );
    // a left row behind the watermark is late: counted, set aside, not joined
    op.process(0, batch(&[(1, 150, 9)]), &mut out).unwrap();
    assert_eq!(data_rows(&mut out), (0, 1));
    assert_eq!(op.late_records(), 1);
    // state survives a snapshot: a restored operator matches as the original would
    let bytes = op.snapshot(Epoch(1)).unwrap().unwrap();
    let spec = Arc::new(IntervalJoin::new(["k"], LOWER, UPPER).times("ts", "ts"));
    let mut restored = IntervalJoinOperator::new("join", spec).unwrap();
    restored.on_start(&TaskInfo::new("join", 0, 1)).unwrap();
    restored.restore(&bytes).unwrap();
    assert_eq!(restored.buffered_rows(), (1, 0));
    assert_eq!(restored.late_records(), 1);
    restored
        .process(1, batch(&[(1, 210, 5), (1, 151, 6)]), &mut out)
        .unwrap();
    assert_eq!(data_rows(&mut out), (1, 0), "(200, 210) only; 151 is late");
    assert_eq!(restored.late_records(), 2);
}

/// Both bounds are inclusive, and a row waits exactly as long as a partner may still come: a
/// left row until the watermark passes `ts + UPPER`, a right row until it passes
/// `ts - LOWER`.
#[test]
fn the_bounds_are_inclusive_and_rows_wait_exactly_as_long_as_a_partner_may_come() {
    let spec = Arc::new(IntervalJoin::new(["k"], LOWER, UPPER).times("ts", "ts"));
    let mut op = IntervalJoinOperator::new("join", spec).unwrap();
    let mut out = Collector::default();
    op.on_start(&TaskInfo::new("join", 0, 1)).unwrap();
    // left at 100 matches right in [80, 130]; right at 300 matches left in [270, 320]
    op.process(0, batch(&[(1, 100, 0)]), &mut out).unwrap();
    op.process(1, batch(&[(1, 300, 0), (1, 79, 1)]), &mut out)
        .unwrap();
    assert_eq!(data_rows(&mut out), (0, 0));
    op.on_watermark(130, &mut out).unwrap();
    op.process(1, batch(&[(1, 130, 2), (1, 80, 3)]), &mut out)
        .unwrap();
    assert_eq!(
        data_rows(&mut out).0,
        1,
        "right at 130 = 100 + UPPER matches"
    );
    op.on_watermark(131, &mut out).unwrap();
    assert_eq!(
        op.buffered_rows().0,
        0,
        "left at 100 is gone once 130 is passed"
    );
    op.on_watermark(320, &mut out).unwrap();
    op.process(0, batch(&[(1, 320, 1), (1, 269, 2)]), &mut out)
        .unwrap();
    assert_eq!(
        data_rows(&mut out),
        (1, 1),
        "left at 320 = 300 - LOWER matches; 269 is late"
    );
    op.on_watermark(321, &mut out).unwrap();
    assert_eq!(
        op.buffered_rows().1,
        0,
        "right at 300 is gone once 320 is passed"
    );
}

const IMPRESSIONS: u64 = 3_000;
const WAIT: i64 = 100;

/// Impression `i`: id `i` at `2i` ms (jitter 0..5 ms).
fn impression(i: i64) -> (i64, i64) {
    (i, 2 * i + (i * 2_654_435_761) % 5)
}

/// Click `j`: on impression `3j`, from 0 to 149 ms after it (beyond `WAIT` a third of the time).
fn click(j: i64) -> (i64, i64) {
    let (id, ts) = impression(3 * j);
    (id, ts + (id * 37) % 150)
}

fn pairs_source(rows: u64, f: fn(i64) -> (i64, i64)) -> GeneratorSource {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("ts", DataType::Int64, false),
    ]));
    GeneratorSource::new(
        schema,
        Some(rows),
        Arc::new(move |start, len| {
            let rows: Vec<_> = (start..start + len as u64).map(|i| f(i as i64)).collect();
            let column = |g: fn(&(i64, i64)) -> i64| {
                Arc::new(Int64Array::from(rows.iter().map(g).collect::<Vec<_>>())) as ArrayRef
            };
            Ok(RecordBatch::try_from_iter([
                ("id", column(|r| r.0)),
                ("ts", column(|r| r.1)),
            ])?)
        }),
    )
}

/// Every impression once: `id,ts,label,delay` — 1 and the click's lag when a click came
/// within `WAIT`, else 0 and `WAIT`.
fn label_oracle() -> Vec<String> {
    let clicks: std::collections::HashMap<i64, i64> =
        (0..IMPRESSIONS as i64 / 3).map(click).collect();
    let mut v: Vec<String> = (0..IMPRESSIONS as i64)
        .map(impression)
        .map(|(id, ts)| match clicks.get(&id).map(|c| c - ts) {
            Some(lag) if (0..=WAIT).contains(&lag) => format!("{id},{ts},1,{lag}"),
            _ => format!("{id},{ts},0,{WAIT}"),
        })
        .collect();
    v.sort();
    v
}

fn label_job(config: DataflowConfig, p: usize, sink: &TxSink) -> Dataflow {
    let flow = Dataflow::new(DataflowConfig {
        bounds: BatchBounds {
            max_rows: 64,
            ..BatchBounds::default()
        },
        idle_poll: Duration::from_millis(1),
        ..config
    });
    let impressions = flow
        .source("impressions", pairs_source(IMPRESSIONS, impression))
        .assign_timestamps("impression time", "ts", Duration::from_millis(10));
    // clicks come up to 149 ms out of order
    let clicks = flow
        .source("clicks", pairs_source(IMPRESSIONS / 3, click))
        .assign_timestamps("click time", "ts", Duration::from_millis(200));
    let sink = sink.clone();
    impressions
        .interval_join(&clicks, "join", IntervalJoin::labels(["id"], WAIT))
        .parallelism(p)
        .sink_with("out", Arc::new(move |_| Ok(Box::new(sink.clone()))))
        .parallelism(p);
    flow
}

/// Delayed labels: every impression is emitted once, labelled by its click or by the end of
/// its wait, at parallelism 1 and 2 and after exactly-once restores under random faults.
#[test]
fn a_labelling_join_labels_every_impression_once() {
    let want = label_oracle();
    let positives = want
        .iter()
        .filter(|r| r.split(',').nth(2) == Some("1"))
        .count();
    assert!(positives > 300 && positives < want.len() / 3, "{positives}");
    for p in [1, 2] {
        let sink = TxSink::new();
        wait(
            label_job(DataflowConfig::default(), p, &sink)
                .start()
                .unwrap(),
        );
        assert_same_rows(&sink.committed(), &want, &format!("parallelism {p}"));
    }
    for (seed, p) in [(5, 2), (6, 1)] {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let dir = tempfile::tempdir().unwrap();
        let mut config = faulty_config(dir.path(), CheckpointMode::Aligned, 4);
        config.failover.mode = FailoverMode::ExactlyOnce;
        config.faults = vec![
            FaultInjection::error("join", rng.random_range(0..p), rng.random_range(3..40)),
            FaultInjection::error("clicks", 0, rng.random_range(2..10)),
        ];
        let sink = TxSink::new();
        let summary = wait(label_job(config, p, &sink).start().unwrap());
        assert!(summary.restarts >= 1, "seed {seed}: no fault fired");
        assert_same_rows(
            &sink.committed(),
            &want,
            &format!("seed {seed}, parallelism {p}"),
        );
    }
}

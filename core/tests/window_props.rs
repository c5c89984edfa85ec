//! Property tests of the window operators against the naive reference in `window_naive`:
//! random keys, timestamps, values and batch splits, driven through `assign_timestamps` and the
//! operator by hand (no runtime), with and without records beyond the lateness bound.

mod window_naive;

use std::time::Duration;

use arrow::record_batch::RecordBatch;
use eddy_core::message::{Epoch, MAX_WATERMARK};
use eddy_core::operator::{Collector, Operator, Output};
use eddy_core::window::{
    AssignTimestampsOperator, EventWindowOperator, OverOperator, OverSpec, SessionWindowOperator,
    WindowSpec, LATE,
};
use proptest::prelude::*;
use window_naive::*;

const BOUND: i64 = 15;

/// (key, time step, jitter, v, f) → records whose true time grows by `step` and whose event
/// time lags it by `jitter`.
fn records(max_jitter: i64) -> impl Strategy<Value = Vec<Rec>> {
    prop::collection::vec(
        (
            0..5u8,
            0..12i64,
            0..=max_jitter,
            -6..6i64,
            prop::option::weighted(0.85, -20..20i64),
        ),
        0..120,
    )
    .prop_map(|raw| {
        let mut t = 1_000;
        raw.into_iter()
            .enumerate()
            .map(|(seq, (k, step, jitter, v, f))| {
                t += step;
                Rec {
                    seq,
                    key: format!("k{k}"),
                    ts: t - jitter,
                    v,
                    f,
                }
            })
            .collect()
    })
}

/// Splits `recs` into batches at the (sorted, deduplicated) `cuts`.
fn split(recs: &[Rec], cuts: &[usize]) -> Vec<Vec<Rec>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c % (recs.len() + 1)).collect();
    cuts.sort();
    cuts.dedup();
    let mut out = Vec::new();
    let mut from = 0;
    for c in cuts.into_iter().chain([recs.len()]) {
        out.push(recs[from..c].to_vec());
        from = c;
    }
    out
}

/// Runs batches through `assign_timestamps` and an operator from `make`; returns (main output,
/// late records).
fn drive(
    make: &mut dyn FnMut() -> Box<dyn Operator>,
    batches: &[Vec<Rec>],
) -> (Vec<RecordBatch>, Vec<Rec>) {
    drive_with(make, batches, None)
}

/// Like `drive`, but with `restore_at = Some(i)` both operators are snapshotted after batch `i`
/// and replaced by fresh ones (from `make`) restored from those snapshots.
fn drive_with(
    make: &mut dyn FnMut() -> Box<dyn Operator>,
    batches: &[Vec<Rec>],
    restore_at: Option<usize>,
) -> (Vec<RecordBatch>, Vec<Rec>) {
    let new_ts =
        || AssignTimestampsOperator::new("time", "ts", Duration::from_millis(BOUND as u64));
    let mut ts = new_ts();
    let mut op = make();
    let (mut c1, mut c2) = (Collector::default(), Collector::default());
    let (mut main, mut late) = (Vec::new(), Vec::new());
    let mut feed = |op: &mut dyn Operator, c1: &mut Collector, c2: &mut Collector| {
        for o in c1.drain() {
            match o {
                Output::Data(b) => op.process(0, b, c2).unwrap(),
                Output::Watermark(w) => op.on_watermark(w, c2).unwrap(),
                Output::Side(..) => unreachable!(),
            }
        }
        for o in c2.drain() {
            match o {
                Output::Data(b) => main.push(b),
                Output::Side(tag, b) => {
                    assert_eq!(tag, LATE);
                    late.extend(from_batch(&b));
                }
                Output::Watermark(_) => {}
            }
        }
    };
    for (i, b) in batches.iter().enumerate() {
        ts.process(0, to_batch(b), &mut c1).unwrap();
        feed(op.as_mut(), &mut c1, &mut c2);
        if restore_at == Some(i) {
            let (s1, s2) = (
                ts.snapshot(Epoch(1)).unwrap().unwrap(),
                op.snapshot(Epoch(1)).unwrap().unwrap(),
            );
            (ts, op) = (new_ts(), make());
            ts.restore(&s1).unwrap();
            op.restore(&s2).unwrap();
        }
    }
    ts.on_watermark(MAX_WATERMARK, &mut c1).unwrap();
    feed(op.as_mut(), &mut c1, &mut c2);
    op.on_end(&mut c2).unwrap();
    feed(op.as_mut(), &mut c1, &mut c2);
    (main, late)
}

fn window_op(kind: Kind, lateness: i64) -> Box<dyn Operator> {
    let keys = vec!["k".to_string()];
    let lateness = Duration::from_millis(lateness as u64);
    match kind {
        Kind::Fixed { size, slide } => {
            let spec = WindowSpec::sliding(
                Duration::from_millis(size as u64),
                Duration::from_millis(slide as u64),
            )
            .allowed_lateness(lateness);
            Box::new(EventWindowOperator::new("w", &keys, &spec, aggs()).unwrap())
        }
        Kind::Session { gap } => {
            let spec =
                WindowSpec::session(Duration::from_millis(gap as u64)).allowed_lateness(lateness);
            Box::new(SessionWindowOperator::new("w", &keys, &spec, aggs()).unwrap())
        }
    }
}

fn kinds() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (1..40i64).prop_map(|size| Kind::Fixed { size, slide: size }),
        (1..40i64, 1..40i64).prop_map(|(size, slide)| Kind::Fixed {
            size: size.max(slide),
            slide: slide.min(size)
        }),
        (1..30i64).prop_map(|gap| Kind::Session { gap }),
    ]
}

fn strip_seq(recs: &[Rec]) -> Vec<(String, i64, i64, Option<i64>)> {
    recs.iter()
        .map(|r| (r.key.clone(), r.ts, r.v, r.f))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
    ))]

    /// Out of order within the bound: nothing is late, every window fires exactly once, with
    /// what a batch computation over all records gives.
    #[test]
    fn in_bound_streams_equal_the_batch_result(
        kind in kinds(),
        recs in records(BOUND),
        cuts in prop::collection::vec(0..200usize, 0..8),
    ) {
        let batches = split(&recs, &cuts);
        let (main, late) = drive(&mut || window_op(kind, 0), &batches);
        prop_assert!(late.is_empty(), "late: {:?}", late);
        let got = collect_output(&main);
        let expected = batch_compute(kind, &recs);
        prop_assert_eq!(got.len(), expected.len());
        for (k, vals) in &expected {
            let (g, n) = &got[k];
            prop_assert_eq!(g, vals, "window {:?}", k);
            prop_assert_eq!(*n, 1, "window {:?} fired {} times", k, n);
        }
    }

    /// Records beyond bound + lateness: the late side output is exactly what the simulation
    /// says, and every window's emissions (last value and count) match it.
    #[test]
    fn late_records_match_the_watermark_simulation(
        kind in kinds(),
        lateness in 0..30i64,
        recs in records(4 * BOUND),
        cuts in prop::collection::vec(0..200usize, 0..8),
    ) {
        let batches = split(&recs, &cuts);
        let (main, late) = drive(&mut || window_op(kind, lateness), &batches);
        let sim = simulate(kind, lateness, BOUND, &batches);
        prop_assert_eq!(strip_seq(&late), strip_seq(&sim.late));
        let got = collect_output(&main);
        prop_assert_eq!(got.len(), sim.emitted.len());
        for (k, (vals, n)) in &sim.emitted {
            let (g, gn) = &got[k];
            prop_assert_eq!(g, vals, "window {:?}", k);
            prop_assert_eq!(gn, n, "emissions of {:?}", k);
        }
        if lateness == 0 && matches!(kind, Kind::Fixed { .. }) {
            // with no lateness, windows hold exactly the records that were not late for them
            let on_time: Vec<Rec> = recs.iter().filter(|r| !sim.late.contains(r)).cloned().collect();
            if matches!(kind, Kind::Fixed { size, slide } if size == slide) {
                prop_assert_eq!(collect_output(&main).into_iter().map(|(k, v)| (k, v.0)).collect::<Vec<_>>(),
                    batch_compute(kind, &on_time).into_iter().collect::<Vec<_>>());
            }
        }
    }

    /// Over windows equal a per-row recomputation, for row and time ranges.
    #[test]
    fn over_windows_equal_per_row_recomputation(
        rows in 1..8usize,
        time in 1..40i64,
        by_time in any::<bool>(),
        recs in records(2 * BOUND),
        cuts in prop::collection::vec(0..200usize, 0..8),
    ) {
        let batches = split(&recs, &cuts);
        let spec = if by_time { OverSpec::last_time(Duration::from_millis(time as u64)) } else { OverSpec::last_rows(rows) };
        let (main, late) = drive(&mut || Box::new(OverOperator::new("o", &["k".to_string()], &spec, aggs()).unwrap()), &batches);
        prop_assert!(late.is_empty());
        let got: Vec<Vec<Val>> = main.iter().flat_map(|b| (0..b.num_rows()).map(move |i| row_values(b, 4, i))).collect();
        let expected = over_naive(&recs, (!by_time).then_some(rows), by_time.then_some(time));
        prop_assert_eq!(got, expected);
    }

    /// Snapshot + restore at a random batch boundary gives the same output as one run, for
    /// every operator (window kinds with lateness, and over windows).
    #[test]
    fn restore_anywhere_gives_the_same_output(
        kind in prop::option::of(kinds()),
        lateness in 0..30i64,
        recs in records(3 * BOUND),
        cuts in prop::collection::vec(0..200usize, 0..8),
        at in 0..9usize,
    ) {
        let batches = split(&recs, &cuts);
        let make = || -> Box<dyn Operator> {
            match kind {
                Some(k) => window_op(k, lateness),
                None => Box::new(
                    OverOperator::new("o", &["k".to_string()], &OverSpec::last_time(Duration::from_millis(20)), aggs()).unwrap(),
                ),
            }
        };
        let (main, late) = drive_with(&mut || make(), &batches, None);
        let (main2, late2) = drive_with(&mut || make(), &batches, Some(at % batches.len()));
        prop_assert_eq!(late, late2);
        let text = |bs: &[RecordBatch]| -> Vec<String> {
            bs.iter().flat_map(|b| (0..b.num_rows()).map(move |i| {
                b.columns().iter().map(|c| arrow::util::display::array_value_to_string(c, i).unwrap()).collect::<Vec<_>>().join(",")
            })).collect()
        };
        prop_assert_eq!(text(&main), text(&main2));
    }
}

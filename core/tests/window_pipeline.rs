//! Windows through a real `Dataflow`: `assign_timestamps` → `key_by` → window / over with
//! parallelism 2, late records on the side output, checked against the naive reference.

mod window_naive;

use std::collections::BTreeMap;
use std::time::Duration;

use eddy_core::prelude::*;
use eddy_core::window::{OverSpec, WindowSpec, LATE};
use proptest::prelude::*;
use window_naive::*;

const BOUND: i64 = 15;

fn records(max_jitter: i64) -> impl Strategy<Value = Vec<Rec>> {
    prop::collection::vec(
        (
            0..6u8,
            0..12i64,
            0..=max_jitter,
            -6..6i64,
            prop::option::weighted(0.85, -20..20i64),
        ),
        1..150,
    )
    .prop_map(|raw| {
        let mut t = 0;
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

fn chunks(recs: &[Rec], size: usize) -> Vec<Vec<Rec>> {
    recs.chunks(size.max(1)).map(|c| c.to_vec()).collect()
}

fn source(batches: &[Vec<Rec>]) -> MemorySource {
    MemorySource::from_batches(batches.iter().map(|b| to_batch(b)).collect()).unwrap()
}

fn key_of(r: &Rec) -> (String, i64, i64, Option<i64>) {
    (r.key.clone(), r.ts, r.v, r.f)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn windows_with_parallelism_two_match_the_simulation(
        recs in records(4 * BOUND),
        batch_rows in 1..40usize,
        kind in prop_oneof![
            (1..30i64).prop_map(|size| Kind::Fixed { size, slide: size }),
            (1..10i64).prop_map(|slide| Kind::Fixed { size: 3 * slide, slide }),
            (1..20i64).prop_map(|gap| Kind::Session { gap }),
        ],
        lateness in 0..20i64,
    ) {
        let batches = chunks(&recs, batch_rows);
        let spec = match kind {
            Kind::Fixed { size, slide } => {
                WindowSpec::sliding(Duration::from_millis(size as u64), Duration::from_millis(slide as u64))
            }
            Kind::Session { gap } => WindowSpec::session(Duration::from_millis(gap as u64)),
        }
        .allowed_lateness(Duration::from_millis(lateness as u64));
        let (out, late) = (MemorySink::new(), MemorySink::new());
        let flow = Dataflow::new(DataflowConfig::default());
        let windows = flow
            .source("events", source(&batches))
            .assign_timestamps("time", "ts", Duration::from_millis(BOUND as u64))
            .key_by(["k"])
            .window("windows", spec, aggs())
            .parallelism(2);
        windows.sink("out", out.clone());
        windows.side_output(LATE).sink("late", late.clone());
        let summary = flow.run().unwrap();

        let sim = simulate(kind, lateness, BOUND, &batches);
        let mut got_late: Vec<_> = late.batches().iter().flat_map(from_batch).map(|r| key_of(&r)).collect();
        let mut want_late: Vec<_> = sim.late.iter().map(key_of).collect();
        got_late.sort();
        want_late.sort();
        prop_assert_eq!(&got_late, &want_late);
        prop_assert_eq!(summary.operator("windows").unwrap().records_side, want_late.len() as u64);
        prop_assert_eq!(summary.operator("windows").unwrap().subtasks, 2);
        let got = collect_output(&out.batches());
        prop_assert_eq!(got.len(), sim.emitted.len());
        for (k, (vals, n)) in &sim.emitted {
            let (g, gn) = &got[k];
            prop_assert_eq!(g, vals, "window {:?}", k);
            prop_assert_eq!(gn, n, "emissions of {:?}", k);
        }
    }

    #[test]
    fn over_windows_with_parallelism_two_match_per_key(
        recs in records(2 * BOUND),
        batch_rows in 1..40usize,
        rows in 1..6usize,
        time in 1..30i64,
        by_time in any::<bool>(),
    ) {
        let batches = chunks(&recs, batch_rows);
        let spec = if by_time { OverSpec::last_time(Duration::from_millis(time as u64)) } else { OverSpec::last_rows(rows) };
        let out = MemorySink::new();
        let flow = Dataflow::new(DataflowConfig::default());
        flow.source("events", source(&batches))
            .assign_timestamps("time", "ts", Duration::from_millis(BOUND as u64))
            .key_by(["k"])
            .over("features", spec, aggs())
            .parallelism(2)
            .sink("out", out.clone());
        flow.run().unwrap();

        // per key, rows keep their arrival order through the hash edge
        let mut got: BTreeMap<String, Vec<(i64, Vec<Val>)>> = BTreeMap::new();
        for b in out.batches() {
            for (i, r) in from_batch(&b).into_iter().enumerate() {
                got.entry(r.key).or_default().push((r.ts, row_values(&b, 4, i)));
            }
        }
        let expected = over_naive(&recs, (!by_time).then_some(rows), by_time.then_some(time));
        let mut want: BTreeMap<String, Vec<(i64, Vec<Val>)>> = BTreeMap::new();
        for (r, vals) in recs.iter().zip(expected) {
            want.entry(r.key.clone()).or_default().push((r.ts, vals));
        }
        prop_assert_eq!(got, want);
    }
}

#[test]
fn a_missing_key_column_fails_the_job_naming_it() {
    let recs = vec![Rec {
        seq: 0,
        key: "a".into(),
        ts: 1,
        v: 1,
        f: None,
    }];
    let flow = Dataflow::new(DataflowConfig::default());
    flow.source("events", source(&[recs]))
        .assign_timestamps("time", "ts", Duration::ZERO)
        .key_by(["k"])
        .window(
            "w",
            WindowSpec::tumbling(Duration::from_millis(10)).time_column("nope"),
            aggs(),
        )
        .sink("out", MemorySink::new());
    let e = flow.run().unwrap_err();
    assert!(e.to_string().contains("`nope`"), "{e}");
}

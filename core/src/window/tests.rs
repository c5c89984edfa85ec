//! Operator-level tests: firing, lateness, re-firing, session merging, over-window eviction,
//! and snapshot/restore equivalence, each driving one operator through a `Collector`.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use arrow::util::display::array_value_to_string;

use super::*;
use crate::message::{Epoch, MAX_WATERMARK};
use crate::operator::{Collector, Operator, Output};

enum Ev {
    B(RecordBatch),
    W(i64),
}

fn batch(rows: &[(&str, i64, i64)]) -> Ev {
    let k: StringArray = rows.iter().map(|r| Some(r.0)).collect();
    let ts: Int64Array = rows.iter().map(|r| Some(r.1)).collect();
    let v: Int64Array = rows.iter().map(|r| Some(r.2)).collect();
    Ev::B(
        RecordBatch::try_from_iter([
            ("k", Arc::new(k) as ArrayRef),
            ("ts", Arc::new(ts) as ArrayRef),
            ("v", Arc::new(v) as ArrayRef),
        ])
        .unwrap(),
    )
}

fn text(b: &RecordBatch) -> Vec<String> {
    (0..b.num_rows())
        .map(|r| {
            b.columns()
                .iter()
                .map(|c| array_value_to_string(c, r).unwrap())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

/// Runs `events` through `op`: (main rows, late rows) as text.
fn run(op: &mut dyn Operator, events: &[Ev]) -> (Vec<String>, Vec<String>) {
    let mut out = Collector::default();
    let (mut main, mut late) = (Vec::new(), Vec::new());
    for e in events {
        match e {
            Ev::B(b) => op.process(0, b.clone(), &mut out).unwrap(),
            Ev::W(w) => op.on_watermark(*w, &mut out).unwrap(),
        }
        for o in out.drain() {
            match o {
                Output::Data(b) => main.extend(text(&b)),
                Output::Side(tag, b) => {
                    assert_eq!(tag, LATE);
                    late.extend(text(&b))
                }
                Output::Watermark(_) => {}
            }
        }
    }
    (main, late)
}

fn keys() -> Vec<String> {
    vec!["k".to_string()]
}

fn tumbling(size: u64, lateness: u64) -> EventWindowOperator {
    let spec = WindowSpec::tumbling(Duration::from_millis(size))
        .allowed_lateness(Duration::from_millis(lateness))
        .time_column("ts");
    EventWindowOperator::new(
        "w",
        &keys(),
        &spec,
        vec![Agg::count("n"), Agg::sum("v", "s")],
    )
    .unwrap()
}

#[test]
fn tumbling_fires_at_end_minus_one_and_sends_late_records_aside() {
    let mut op = tumbling(10, 0);
    let (main, late) = run(
        &mut op,
        &[
            batch(&[("a", 1, 1), ("a", 5, 2), ("b", 12, 3)]),
            Ev::W(8),
            Ev::W(9),
            batch(&[("a", 3, 4), ("b", 15, 5)]),
            Ev::W(MAX_WATERMARK),
        ],
    );
    assert_eq!(main, vec!["a,0,10,2,3.0", "b,10,20,2,8.0"]);
    assert_eq!(late, vec!["a,3,4"]);
    assert_eq!(op.late_records(), 1);
    assert_eq!(op.open_windows(), 0);
}

#[test]
fn allowed_lateness_updates_and_refires_until_cleanup() {
    let mut op = tumbling(10, 5);
    let (main, late) = run(
        &mut op,
        &[
            batch(&[("a", 1, 1)]),
            Ev::W(9),
            batch(&[("a", 2, 10), ("a", 4, 100)]),
            Ev::W(13),
            batch(&[("a", 8, 1000)]),
            Ev::W(14),
            batch(&[("a", 9, 7)]),
        ],
    );
    assert_eq!(
        main,
        vec!["a,0,10,1,1.0", "a,0,10,3,111.0", "a,0,10,4,1111.0"]
    );
    assert_eq!(late, vec!["a,9,7"]);
}

#[test]
fn a_window_first_seen_within_lateness_fires_at_once() {
    let mut op = tumbling(10, 20);
    let (main, _) = run(&mut op, &[Ev::W(15), batch(&[("a", 3, 1)])]);
    assert_eq!(main, vec!["a,0,10,1,1.0"]);
}

#[test]
fn sliding_windows_count_each_record_in_every_window() {
    let spec =
        WindowSpec::sliding(Duration::from_millis(10), Duration::from_millis(5)).time_column("ts");
    let mut op = EventWindowOperator::new("w", &keys(), &spec, vec![Agg::count("n")]).unwrap();
    let (main, late) = run(
        &mut op,
        &[batch(&[("a", 7, 0), ("a", 11, 0)]), Ev::W(MAX_WATERMARK)],
    );
    assert_eq!(main, vec!["a,0,10,1", "a,5,15,2", "a,10,20,1"]);
    assert!(late.is_empty());
}

fn sessions(gap: u64, lateness: u64) -> SessionWindowOperator {
    let spec = WindowSpec::session(Duration::from_millis(gap))
        .allowed_lateness(Duration::from_millis(lateness))
        .time_column("ts");
    SessionWindowOperator::new(
        "s",
        &keys(),
        &spec,
        vec![Agg::count("n"), Agg::last("v", "last")],
    )
    .unwrap()
}

#[test]
fn sessions_merge_when_out_of_order_records_bridge_them() {
    let mut op = sessions(10, 0);
    let (main, _) = run(
        &mut op,
        &[
            batch(&[
                ("a", 0, 1),
                ("a", 25, 2),
                ("a", 12, 3),
                ("b", 0, 9),
                ("b", 10, 8),
            ]),
            batch(&[("a", 8, 4)]),
            batch(&[("a", 20, 5)]),
            Ev::W(MAX_WATERMARK),
        ],
    );
    // a: [0,10) + [12,22) bridged by 8, then + [25,35) bridged by 20. b: touching, not merged.
    assert_eq!(main, vec!["b,0,10,1,9", "b,10,20,1,8", "a,0,35,5,5"]);
    assert_eq!(op.open_sessions(), 0);
}

#[test]
fn session_lateness_is_judged_on_the_merged_window() {
    let mut op = sessions(10, 0);
    let (main, late) = run(
        &mut op,
        &[
            batch(&[("a", 0, 1)]),
            Ev::W(9),
            // [0,10) fired and purged; [5,15) is a new session, [-5,5) is late
            batch(&[("a", 5, 2), ("a", -5, 3)]),
            Ev::W(MAX_WATERMARK),
        ],
    );
    assert_eq!(main, vec!["a,0,10,1,1", "a,5,15,1,2"]);
    assert_eq!(late, vec!["a,-5,3"]);
    assert_eq!(op.late_records(), 1);
}

#[test]
fn sessions_within_lateness_refire_as_the_merged_session() {
    let mut op = sessions(10, 100);
    let (main, late) = run(
        &mut op,
        &[
            batch(&[("a", 0, 1)]),
            Ev::W(9),
            batch(&[("a", 5, 2)]),
            Ev::W(14),
        ],
    );
    assert_eq!(main, vec!["a,0,10,1,1", "a,0,15,2,2"]);
    assert!(late.is_empty());
}

fn over(spec: OverSpec) -> OverOperator {
    OverOperator::new(
        "o",
        &keys(),
        &spec.time_column("ts"),
        vec![
            Agg::count("n"),
            Agg::max("v", "max"),
            Agg::distinct_count("v", "d"),
        ],
    )
    .unwrap()
}

#[test]
fn over_rows_evicts_the_oldest_row_of_the_key() {
    let mut op = over(OverSpec::last_rows(2));
    let (main, _) = run(
        &mut op,
        &[
            batch(&[("a", 0, 5), ("b", 0, 1), ("a", 1, 3)]),
            batch(&[("a", 2, 3)]),
        ],
    );
    assert_eq!(
        main,
        vec![
            "a,0,5,1,5.0,1",
            "b,0,1,1,1.0,1",
            "a,1,3,2,5.0,2",
            "a,2,3,2,3.0,1"
        ]
    );
    assert_eq!(op.keys_held(), 2);
}

#[test]
fn over_time_clamps_out_of_order_rows_to_the_newest_time() {
    let mut op = over(OverSpec::last_time(Duration::from_millis(10)));
    let (main, _) = run(
        &mut op,
        &[batch(&[
            ("a", 100, 1),
            ("a", 105, 2),
            ("a", 50, 3),
            ("a", 112, 4),
            ("a", 116, 5),
        ])],
    );
    // 50 counts as 105: it leaves with 105 once the newest time passes 115.
    assert_eq!(
        main,
        vec![
            "a,100,1,1,1.0,1",
            "a,105,2,2,2.0,2",
            "a,50,3,3,3.0,3",
            "a,112,4,3,4.0,3",
            "a,116,5,2,5.0,2"
        ]
    );
}

/// Splitting a run with snapshot + restore into a fresh operator gives the same output.
fn check_restore(make: &dyn Fn() -> Box<dyn Operator>, events: &[Ev]) {
    let whole = run(make().as_mut(), events);
    for split in 0..=events.len() {
        let mut first = make();
        let (mut main, mut late) = run(first.as_mut(), &events[..split]);
        let state = first.snapshot(Epoch(1)).unwrap().unwrap();
        let mut second = make();
        second.restore(&state).unwrap();
        let (m2, l2) = run(second.as_mut(), &events[split..]);
        main.extend(m2);
        late.extend(l2);
        assert_eq!((main, late), whole, "split at {split}");
    }
}

fn mixed_events() -> Vec<Ev> {
    vec![
        batch(&[("a", 1, 1), ("b", 3, 2), ("a", 14, 3)]),
        Ev::W(9),
        batch(&[("a", 4, 4), ("c", 25, 5), ("b", 12, 6)]),
        Ev::W(19),
        batch(&[("a", 2, 7), ("b", 30, 8), ("a", 21, 9)]),
        Ev::W(31),
        batch(&[("c", 28, 10), ("a", 40, 11)]),
        Ev::W(MAX_WATERMARK),
    ]
}

#[test]
fn every_operator_restores_to_the_same_output() {
    let events = mixed_events();
    check_restore(&|| Box::new(tumbling(10, 5)), &events);
    check_restore(&|| Box::new(tumbling(10, 0)), &events);
    check_restore(
        &|| {
            let spec = WindowSpec::sliding(Duration::from_millis(10), Duration::from_millis(3))
                .time_column("ts");
            let aggs = vec![
                Agg::mean("v", "m"),
                Agg::min("v", "lo"),
                Agg::last("k", "lk"),
                Agg::distinct_count("v", "d"),
            ];
            Box::new(EventWindowOperator::new("w", &keys(), &spec, aggs).unwrap())
        },
        &events,
    );
    check_restore(&|| Box::new(sessions(5, 0)), &events);
    check_restore(&|| Box::new(sessions(5, 8)), &events);
    check_restore(
        &|| Box::new(over(OverSpec::last_time(Duration::from_millis(10)))),
        &events,
    );
    check_restore(&|| Box::new(over(OverSpec::last_rows(2))), &events);
    check_restore(
        &|| {
            Box::new(AssignTimestampsOperator::new(
                "t",
                "ts",
                Duration::from_millis(3),
            ))
        },
        &events,
    );
}

#[test]
fn schema_errors_name_the_operator_and_column() {
    let spec = WindowSpec::tumbling(Duration::from_millis(10));
    let mut op = EventWindowOperator::new("w", &keys(), &spec, vec![Agg::count("n")]).unwrap();
    let Ev::B(b) = batch(&[("a", 1, 1)]) else {
        unreachable!()
    };
    let e = op
        .process(0, b.clone(), &mut Collector::default())
        .unwrap_err();
    assert!(e.to_string().contains("assign_timestamps"), "{e}");
    let mut op =
        EventWindowOperator::new("w", &["nope".into()], &spec.time_column("ts"), vec![]).unwrap();
    let e = op.process(0, b, &mut Collector::default()).unwrap_err();
    assert!(e.to_string().contains("`nope`"), "{e}");
    assert!(EventWindowOperator::new(
        "w",
        &keys(),
        &WindowSpec::session(Duration::from_millis(1)),
        vec![]
    )
    .is_err());
}

/// The asynchronous snapshot of a window operator is the state at the barrier: written after
/// the operator went on (changing, firing and purging the same windows), it restores to the
/// output of a restore from a synchronous snapshot taken at the barrier, byte for byte.
#[test]
fn an_asynchronous_window_snapshot_is_the_state_at_the_barrier() {
    use crate::operator::{StateSnapshot, WriteContext};
    let events = mixed_events();
    for split in 1..events.len() {
        let mut op = tumbling(10, 5);
        run(&mut op, &events[..split]);
        let at_barrier = op.snapshot(Epoch(1)).unwrap().unwrap();
        let Some(StateSnapshot::Deferred(frozen)) = op.snapshot_async(Epoch(2)).unwrap() else {
            panic!("a window operator defers its snapshot");
        };
        run(&mut op, &events[split..]);
        let ctx = WriteContext {
            epoch: Epoch(2),
            durable: Epoch(1),
            full: false,
        };
        assert_eq!(frozen.write(&ctx).unwrap(), at_barrier, "split at {split}");
    }
}

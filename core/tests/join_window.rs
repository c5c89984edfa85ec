//! The window join against a nested-loop oracle (every pair of equal-key rows in a common
//! tumbling or sliding window, once per window) on small random inputs, several seeds, at
//! parallelism 1 and 2; its state (exactly the rows whose last window has not fired, none at
//! the end); late rows; exactly-once restores under random faults (aligned and unaligned
//! checkpoints); and a checkpoint taken in the middle of the join restored at another
//! parallelism.
//!
//! Mutations (run by hand, see the report): the join's snapshot writing no rows fails
//! `restores_at_another_parallelism` and `restores_exactly_once_under_random_faults`; no expiry
//! after a firing fails `state_holds_exactly_the_rows_whose_last_window_is_open`.

mod common;
mod join_support;

use std::sync::Arc;
use std::time::Duration;

use eddy_core::dataflow::CheckpointMode::{Aligned, Unaligned};
use eddy_core::join::{WindowJoin, WindowJoinOperator, LATE_RIGHT};
use eddy_core::operator::Output;
use eddy_core::prelude::*;
use eddy_core::window::WindowSpec;

use join_support::{
    batch, check_faults, check_oracle, check_rescale, drive, oracle, rows_of, Case, Event, Kind,
};

const TUMBLING: Kind = Kind::Window {
    size: 20,
    slide: 20,
};
const SLIDING: Kind = Kind::Window {
    size: 30,
    slide: 10,
};

#[test]
fn tumbling_and_sliding_joins_match_the_oracle_at_parallelism_1_and_2() {
    check_oracle(TUMBLING, 0..3);
    check_oracle(SLIDING, 3..6);
}

#[test]
fn restores_exactly_once_under_random_faults() {
    check_faults(TUMBLING, &[(11, 1, Aligned), (12, 2, Unaligned)]);
    check_faults(SLIDING, &[(13, 2, Aligned), (14, 1, Unaligned)]);
}

#[test]
fn restores_at_another_parallelism() {
    check_rescale(SLIDING, 2, 1, 20..22);
    check_rescale(TUMBLING, 1, 2, 22..24);
}

fn operator(size: i64, slide: i64) -> WindowJoinOperator {
    let (size, slide) = (
        Duration::from_millis(size as u64),
        Duration::from_millis(slide as u64),
    );
    let spec = WindowJoin::new(["k"], WindowSpec::sliding(size, slide)).times("ts", "ts");
    WindowJoinOperator::new("join", Arc::new(spec)).unwrap()
}

/// `end - 1` of the last window holding `ts`, computed naively.
fn last_fire(ts: i64, size: i64, slide: i64) -> i64 {
    (ts - size + 1..=ts)
        .filter(|s| s.rem_euclid(slide) == 0)
        .map(|s| s + size - 1)
        .max()
        .unwrap()
}

/// After every watermark the state holds exactly the rows some unfired window still holds,
/// and none once the input ends; the pairs are the oracle's.
#[test]
fn state_holds_exactly_the_rows_whose_last_window_is_open() {
    for (seed, (size, slide)) in [(30, (20, 20)), (31, (30, 10)), (32, (25, 10))] {
        let case = Case::new(Kind::Window { size, slide }, seed);
        let mut op = operator(size, slide);
        let mut checks = 0;
        let out = drive(&mut op, &case.left, &case.right, |op, wm, l, r| {
            let open = |e: &[Event]| {
                e.iter()
                    .filter(|e| last_fire(e.ts, size, slide) > wm)
                    .count()
            };
            assert_eq!(
                op.buffered_rows(),
                (open(l), open(r)),
                "seed {seed}, watermark {wm}"
            );
            checks += 1;
        });
        assert!(checks > 10, "{checks} watermarks");
        assert_eq!(op.buffered_rows(), (0, 0), "state left at the end");
        assert_eq!(rows_of(&out), case.oracle(), "seed {seed}");
    }
}

/// A row all of whose windows have fired is late: counted, set aside, never paired; a row
/// with one window still open joins in it only; state survives a snapshot.
#[test]
fn late_rows_go_aside_and_a_restored_join_fires_what_is_left() {
    let mut op = operator(30, 10); // windows [0,30) [10,40) [20,50) ...
    let mut out = Collector::default();
    op.on_start(&TaskInfo::new("join", 0, 1)).unwrap();
    let ev = |k, ts, x| Event { k, ts, x };
    op.process(0, batch(0, &[ev(1, 25, 0)]), &mut out).unwrap();
    op.on_watermark(29, &mut out).unwrap(); // [0,30) fires: no right row yet
    assert!(join_support::data(&mut out).is_empty());
    // right at 5: in [0,30) only, fired: late; right at 12: [10,40) still open
    op.process(1, batch(1, &[ev(1, 5, 7), ev(1, 12, 8)]), &mut out)
        .unwrap();
    let late: usize = out
        .drain()
        .map(|o| match o {
            Output::Side(tag, b) if tag == LATE_RIGHT => b.num_rows(),
            _ => 0,
        })
        .sum();
    assert_eq!((late, op.late_records()), (1, 1));
    let bytes = op.snapshot(Epoch(1)).unwrap().unwrap();
    let mut restored = operator(30, 10);
    restored.on_start(&TaskInfo::new("join", 0, 1)).unwrap();
    restored.restore(&bytes).unwrap();
    assert_eq!(restored.buffered_rows(), (1, 1));
    assert_eq!(restored.late_records(), 1);
    restored.on_watermark(i64::MAX, &mut out).unwrap();
    let rows = rows_of(&join_support::data(&mut out));
    let want = oracle(
        Kind::Window {
            size: 30,
            slide: 10,
        },
        &[ev(1, 25, 0)],
        &[ev(1, 12, 8)],
    );
    // the pair in [10,40) only: [0,30) fired before the right row came
    assert_eq!(rows, vec!["1,25,0,1,12,8,10,40".to_string()]);
    assert!(want.contains(&rows[0]));
    assert_eq!(restored.buffered_rows(), (0, 0));
}

#[test]
fn session_windows_and_lateness_are_refused_naming_the_join() {
    let session = WindowJoin::new(["k"], WindowSpec::session(Duration::from_millis(5)));
    let e = WindowJoinOperator::new("clicks", Arc::new(session))
        .err()
        .unwrap();
    assert!(e.to_string().contains("clicks"), "{e}");
    let late = WindowJoin::new(
        ["k"],
        WindowSpec::tumbling(Duration::from_millis(5)).allowed_lateness(Duration::from_millis(1)),
    );
    let e = WindowJoinOperator::new("clicks", Arc::new(late))
        .err()
        .unwrap();
    assert!(e.to_string().contains("clicks.allowed_lateness"), "{e}");
    let keys = WindowJoin::new(["k"], WindowSpec::tumbling(Duration::from_millis(5)))
        .right_keys(["a", "b"]);
    assert!(WindowJoinOperator::new("j", Arc::new(keys)).is_err());
}

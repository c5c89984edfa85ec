//! The interval join on small random inputs, several seeds and intervals: against a nested-loop
//! oracle at parallelism 1 and 2; its state (exactly the rows a partner may still come for,
//! none at the end); exactly-once restores under random faults (aligned and unaligned
//! checkpoints); and a checkpoint taken in the middle of the join restored at another
//! parallelism. (`interval_join.rs` covers the bounds, late rows and the labelling output on
//! fixed inputs.)
//!
//! Mutations (run by hand, see the report): the snapshot writing no rows fails
//! `restores_at_another_parallelism` and `restores_exactly_once_under_random_faults`; no
//! expiry fails `state_holds_exactly_the_rows_a_partner_may_still_come_for`.

mod common;
mod join_support;

use std::sync::Arc;

use eddy_core::dataflow::CheckpointMode::{Aligned, Unaligned};
use eddy_core::join::{IntervalJoin, IntervalJoinOperator};

use join_support::{check_faults, check_oracle, check_rescale, drive, rows_of, Case, Event, Kind};

const AROUND: Kind = Kind::Interval {
    lower: -8,
    upper: 15,
};
const AFTER: Kind = Kind::Interval {
    lower: 3,
    upper: 25,
};

#[test]
fn matches_the_oracle_at_parallelism_1_and_2() {
    check_oracle(AROUND, 0..3);
    check_oracle(AFTER, 3..5);
}

#[test]
fn restores_exactly_once_under_random_faults() {
    check_faults(AROUND, &[(11, 1, Aligned), (12, 2, Unaligned)]);
    check_faults(AFTER, &[(13, 2, Aligned), (14, 1, Unaligned)]);
}

#[test]
fn restores_at_another_parallelism() {
    check_rescale(AROUND, 2, 1, 20..22);
    check_rescale(AFTER, 1, 2, 22..24);
}

/// After every watermark the state holds exactly the left rows with `ts + upper` and the right
/// rows with `ts - lower` at or after it, and none at the end; the pairs are the oracle's.
#[test]
fn state_holds_exactly_the_rows_a_partner_may_still_come_for() {
    for (seed, (lower, upper)) in [(30, (-8, 15)), (31, (3, 25)), (32, (-20, -2))] {
        let case = Case::new(Kind::Interval { lower, upper }, seed);
        let spec = IntervalJoin::new(["k"], lower, upper).times("ts", "ts");
        let mut op = IntervalJoinOperator::new("join", Arc::new(spec)).unwrap();
        let mut checks = 0;
        let out = drive(&mut op, &case.left, &case.right, |op, wm, l, r| {
            let live = |e: &[Event], off: i64| e.iter().filter(|e| e.ts + off >= wm).count();
            assert_eq!(
                op.buffered_rows(),
                (live(l, upper), live(r, -lower)),
                "seed {seed}, watermark {wm}"
            );
            checks += 1;
        });
        assert!(checks > 10, "{checks} watermarks");
        assert_eq!(op.buffered_rows(), (0, 0), "state left at the end");
        assert_eq!(rows_of(&out), case.oracle(), "seed {seed}");
    }
}

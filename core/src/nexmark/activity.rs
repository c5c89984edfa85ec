//! q5 (hot items) and q11 (user sessions): windows over the bids.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Int64Array};
use arrow::compute::kernels::numeric::sub;

use super::queries::{int_column, whole_number};
use crate::dataflow::Stream;
use crate::join::IntervalJoin;
use crate::window::{Agg, WindowSpec};

/// q5's windows: 10 s long, one every 2 s.
pub const Q5_WINDOW: Duration = Duration::from_secs(10);
/// q5's slide.
pub const Q5_SLIDE: Duration = Duration::from_secs(2);

/// q11's session gap: a bidder's session closes after 10 s without a bid.
pub const Q11_GAP: Duration = Duration::from_secs(10);

/// `column - 1` of each row, as Int64 (a window's last millisecond from its end).
fn minus_one(batch: &arrow::record_batch::RecordBatch, column: &str) -> crate::Result<ArrayRef> {
    let values = int_column(batch, column)?;
    Ok(Arc::new(sub(values, &Int64Array::new_scalar(1))?) as ArrayRef)
}

/// q5: bids counted per auction in 10 s windows sliding by 2 s; per window, the auctions with
/// the most bids (all of them on a tie), as `auction, num, window_start, window_end`.
///
/// The counts per window are keyed by the window's last millisecond (`rowtime`) and its max
/// taken in a 2 s tumbling window over that time (each holds exactly one sliding window's
/// counts, and fires on the watermark that emitted them), then joined back with the counts on
/// (`rowtime`, count) with an interval of zero — the shape of q7.
pub(super) fn q5(bid: &Stream, parallelism: usize) -> Stream {
    let counts = bid
        .project("q5 bids", ["auction", "date_time"])
        .assign_timestamps("q5 bid time", "date_time", Duration::ZERO)
        .key_by(["auction"])
        .window(
            "q5 counts",
            WindowSpec::sliding(Q5_WINDOW, Q5_SLIDE),
            vec![Agg::count("num")],
        )
        .parallelism(parallelism)
        .with_column("q5 rowtime", "rowtime", |b| minus_one(b, "window_end"))
        .parallelism(parallelism);
    let highest = counts
        .project("q5 count per window", ["rowtime", "num"])
        .parallelism(parallelism)
        .key_by(["rowtime"])
        .window(
            "q5 max",
            WindowSpec::tumbling(Q5_SLIDE).time_column("rowtime"),
            vec![Agg::max("num", "maxnum")],
        )
        .parallelism(parallelism)
        .with_column("q5 maxnum", "maxnum", |b| whole_number(b, "maxnum", "q5"))
        .parallelism(parallelism)
        .project("q5 highest", ["rowtime", "maxnum"])
        .parallelism(parallelism);
    let spec = IntervalJoin::new(["rowtime", "maxnum"], 0, 0)
        .right_keys(["rowtime", "num"])
        .times("rowtime", "rowtime");
    highest
        .interval_join(&counts, "q5", spec)
        .parallelism(parallelism)
        .project(
            "q5 columns",
            ["auction", "num", "window_start", "window_end"],
        )
        .parallelism(parallelism)
}

/// q11: per bidder, sessions of bids closed by 10 s without one, as `bidder, bid_count,
/// window_start, window_end` with Flink's session bounds: the first bid's time, and the last
/// one's plus the gap.
///
/// Flink merges sessions whose intervals touch (bids exactly the gap apart are one session);
/// eddy's session windows do not, so the query runs them with a gap 1 ms longer and reports
/// the end 1 ms earlier: the same sessions, the same bounds.
pub(super) fn q11(bid: &Stream, parallelism: usize) -> Stream {
    bid.project("q11 bids", ["bidder", "date_time"])
        .assign_timestamps("q11 bid time", "date_time", Duration::ZERO)
        .key_by(["bidder"])
        .window(
            "q11 sessions",
            WindowSpec::session(Q11_GAP + Duration::from_millis(1)),
            vec![Agg::count("bid_count")],
        )
        .parallelism(parallelism)
        .with_column("q11 end", "window_end", |b| minus_one(b, "window_end"))
        .parallelism(parallelism)
        .project(
            "q11 columns",
            ["bidder", "bid_count", "window_start", "window_end"],
        )
        .parallelism(parallelism)
}

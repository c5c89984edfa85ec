//! q9 (winning bids) and q4 (average winning price per category): auctions closing.
//!
//! An auction's **winning price** is the highest price of its bids made within its
//! `[date_time, expires]` at or above its reserve; an auction with no such bid has no winner.
//! Both queries emit when the auction expires (the watermark passes `expires`):
//!
//! 1. auctions ⋈ bids on `id = auction`, bid time in `[date_time, date_time + L]` (`L`: the
//!    generator's bound of an auction's length, [`max_auction_ms`]), then the bids after
//!    `expires` or under the reserve are filtered out (`closing bids`);
//! 2. the max price per auction in a session window of 1 ms on `expires`: every closing bid
//!    of one auction carries the same `expires`, so the window holds them all and fires when
//!    the auction expires (`winning prices`, one row per auction that has a winner);
//! 3. q9 joins the winning prices back with the closing bids on (id, price) — every bid at the
//!    winning price, like q7's ties; q4 averages the winning prices per category over tumbling
//!    10 s windows of expiry time.
//!
//! [`max_auction_ms`]: super::NexmarkGenerator::max_auction_ms

use std::time::Duration;

use arrow::compute::kernels::cmp::{gt_eq, lt_eq};

use super::queries::{int_column, whole_number};
use crate::dataflow::Stream;
use crate::error::Error;
use crate::join::IntervalJoin;
use crate::window::{Agg, WindowSpec};

/// q4's windows of auction expiry: 10 s, tumbling.
pub const Q4_WINDOW: Duration = Duration::from_secs(10);

/// The closing bids of every auction with `id, category, expires, bidder, price, bid_time`
/// (step 1 of [the module docs](self)).
fn closing_bids(auction: &Stream, bid: &Stream, longest_ms: i64, parallelism: usize) -> Stream {
    let auctions = auction
        .project(
            "closing auctions",
            ["id", "category", "reserve", "date_time", "expires"],
        )
        .assign_timestamps("closing auction time", "date_time", Duration::ZERO);
    let bids = bid
        .project(
            "closing bid columns",
            ["auction", "bidder", "price", "date_time"],
        )
        .assign_timestamps("closing bid time", "date_time", Duration::ZERO);
    let spec = IntervalJoin {
        right_prefix: "bid_".into(),
        ..IntervalJoin::new(["id"], 0, longest_ms).right_keys(["auction"])
    };
    auctions
        .interval_join(&bids, "closing join", spec)
        .parallelism(parallelism)
        .filter("closing bids", |b| {
            let (expires, reserve) = (int_column(b, "expires")?, int_column(b, "reserve")?);
            let (time, price) = (int_column(b, "bid_date_time")?, int_column(b, "price")?);
            let open = lt_eq(time, expires)?;
            let enough = gt_eq(price, reserve)?;
            Ok(arrow::compute::and(&open, &enough)?)
        })
        .parallelism(parallelism)
        .with_column("bid time", "bid_time", |b| {
            b.column_by_name("bid_date_time")
                .cloned()
                .ok_or_else(|| Error::schema("closing bids", "no column `bid_date_time`"))
        })
        .parallelism(parallelism)
        .project(
            "closing bid columns out",
            ["id", "category", "expires", "bidder", "price", "bid_time"],
        )
        .parallelism(parallelism)
}

/// The winning price of every auction that has one, when it expires: `id, category, expires,
/// final` (step 2 of [the module docs](self)).
fn winning_prices(closing: &Stream, parallelism: usize) -> Stream {
    closing
        .key_by(["id", "category", "expires"])
        .window(
            "winning prices",
            WindowSpec::session(Duration::from_millis(1)).time_column("expires"),
            vec![Agg::max("price", "final")],
        )
        .parallelism(parallelism)
        .with_column("winning price", "final", |b| whole_number(b, "final", "q9"))
        .parallelism(parallelism)
        .project("winning columns", ["id", "category", "expires", "final"])
        .parallelism(parallelism)
}

/// q9: every bid at its auction's winning price, emitted when the auction expires, as `id,
/// category, expires, bidder, price, bid_time`.
pub(super) fn q9(auction: &Stream, bid: &Stream, longest_ms: i64, parallelism: usize) -> Stream {
    let closing = closing_bids(auction, bid, longest_ms, parallelism);
    let winning = winning_prices(&closing, parallelism);
    // a closing bid is at most `longest_ms` before its auction's expiry
    let spec = IntervalJoin::new(["id", "final"], -longest_ms, 0)
        .right_keys(["id", "price"])
        .times("expires", "bid_time");
    winning
        .interval_join(&closing, "q9", spec)
        .parallelism(parallelism)
        .project(
            "q9 columns",
            ["id", "category", "expires", "bidder", "price", "bid_time"],
        )
        .parallelism(parallelism)
}

/// q4 (a windowed variant of the suite's updating query): per category and tumbling 10 s
/// window of expiry time, the average winning price of the auctions that expired in it, as
/// `category, window_start, window_end, avg_final, auctions`. The suite's q4 updates one
/// average per category as auctions close; this emits each window's once, when it ends.
pub(super) fn q4(auction: &Stream, bid: &Stream, longest_ms: i64, parallelism: usize) -> Stream {
    let closing = closing_bids(auction, bid, longest_ms, parallelism);
    winning_prices(&closing, parallelism)
        .key_by(["category"])
        .window(
            "q4 average",
            WindowSpec::tumbling(Q4_WINDOW).time_column("expires"),
            vec![Agg::mean("final", "avg_final"), Agg::count("auctions")],
        )
        .parallelism(parallelism)
}

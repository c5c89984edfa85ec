//! Nexmark queries as dataflow programs ([`Query::build`]), with the Flink suite's semantics:
//!
//! | query | what | output |
//! |---|---|---|
//! | q0 | pass-through: every bid | the bid's columns |
//! | q1 | currency conversion: prices from dollars to euros (× 0.908) | `auction, bidder, price` (Float64), `date_time, extra` |
//! | q2 | selection: bids on every 123rd auction | `auction, price` |
//! | q3 | local item suggestion: auctions of category 10 ⋈ their sellers in OR, ID or CA | `name, city, state, id` |
//! | q4 | average winning price per category, per 10 s window of auction expiry (a windowed variant of the suite's updating query; [`closing`](super::closing)) | `category, window_start, window_end, avg_final, auctions` |
//! | q5 | hot items: per 10 s window sliding by 2 s, the auctions with the most bids | `auction, num, window_start, window_end` |
//! | q7 | highest bid: the bids at the highest price of each 10 s window | `auction, price, bidder, date_time, extra` |
//! | q8 | monitor new users: people who opened an auction in the 10 s window they joined in | `id, name, window_start` |
//! | q9 | winning bids: per auction, the bids in its `[date_time, expires]` at or above its reserve at the highest price, when it expires ([`closing`](super::closing)) | `id, category, expires, bidder, price, bid_time` |
//! | q11 | user sessions: bids per bidder per session (closed by 10 s without a bid) | `bidder, bid_count, window_start, window_end` |
//!
//! q3 is a regular (unwindowed) inner join, as in Flink SQL: both sides stay in state; it runs
//! on the interval join with bounds wide enough to never expire a row. q8 is a window join:
//! people and sellers are grouped per tumbling window, and the groups are joined on (id,
//! window start) with an interval of zero.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, AsArray, BooleanArray, Float64Array};
use arrow::datatypes::Int64Type;
use arrow::record_batch::RecordBatch;

use super::files::NexmarkFiles;
use super::generator::{NexmarkGenerator, NexmarkKind};
use super::{activity, closing};
use crate::dataflow::{Dataflow, Stream};
use crate::error::{Error, Result};
use crate::join::IntervalJoin;
use crate::operators::with_column::set_column;
use crate::window::{Agg, WindowSpec};

/// Dollars to euros, as the reference q1.
const EURO_PER_DOLLAR: f64 = 0.908;

/// A Nexmark query this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// Pass-through.
    Q0,
    /// Currency conversion.
    Q1,
    /// Selection.
    Q2,
    /// Person ⋈ auction.
    Q3,
    /// Average winning price per category, per window of expiry.
    Q4,
    /// Hot items: the auctions with the most bids per sliding window.
    Q5,
    /// The highest bids of each window.
    Q7,
    /// New people who opened auctions, per window.
    Q8,
    /// Winning bids per auction.
    Q9,
    /// Bids per user session.
    Q11,
}

impl Query {
    /// Every query implemented, in order.
    pub const ALL: [Query; 10] = [
        Query::Q0,
        Query::Q1,
        Query::Q2,
        Query::Q3,
        Query::Q4,
        Query::Q5,
        Query::Q7,
        Query::Q8,
        Query::Q9,
        Query::Q11,
    ];

    /// `q0`, `q1`, …
    pub fn name(self) -> &'static str {
        match self {
            Query::Q0 => "q0",
            Query::Q1 => "q1",
            Query::Q2 => "q2",
            Query::Q3 => "q3",
            Query::Q4 => "q4",
            Query::Q5 => "q5",
            Query::Q7 => "q7",
            Query::Q8 => "q8",
            Query::Q9 => "q9",
            Query::Q11 => "q11",
        }
    }

    /// The event kinds the query reads.
    pub fn inputs(self) -> &'static [NexmarkKind] {
        match self {
            Query::Q3 | Query::Q8 => &[NexmarkKind::Person, NexmarkKind::Auction],
            Query::Q4 | Query::Q9 => &[NexmarkKind::Auction, NexmarkKind::Bid],
            _ => &[NexmarkKind::Bid],
        }
    }

    /// Builds the query on `flow` over the first `events` events of `generator`, at
    /// `parallelism`; returns its result stream (add a sink).
    pub fn build(
        self,
        flow: &Dataflow,
        generator: &Arc<NexmarkGenerator>,
        events: u64,
        parallelism: usize,
    ) -> Stream {
        let input = NexmarkInput::Generated {
            generator: generator.clone(),
            events,
        };
        self.build_on(flow, &input, parallelism)
    }

    /// Builds the query on `flow` over `input`'s events, at `parallelism`; returns its result
    /// stream (add a sink).
    pub fn build_on(self, flow: &Dataflow, input: &NexmarkInput, parallelism: usize) -> Stream {
        let source = |kind: NexmarkKind| input.stream(flow, kind, parallelism);
        match self {
            Query::Q0 => source(NexmarkKind::Bid)
                .map("q0", Ok)
                .parallelism(parallelism),
            Query::Q1 => source(NexmarkKind::Bid)
                .map("q1", to_euros)
                .parallelism(parallelism),
            Query::Q2 => source(NexmarkKind::Bid)
                .filter("q2", |b| {
                    let auction = int_column(b, "auction")?;
                    Ok(auction.values().iter().map(|a| a % 123 == 0).collect())
                })
                .parallelism(parallelism)
                .project("q2 columns", ["auction", "price"])
                .parallelism(parallelism),
            Query::Q3 => q3(
                &source(NexmarkKind::Person),
                &source(NexmarkKind::Auction),
                parallelism,
            ),
            Query::Q7 => q7(&source(NexmarkKind::Bid), parallelism),
            Query::Q8 => q8(
                &source(NexmarkKind::Person),
                &source(NexmarkKind::Auction),
                parallelism,
            ),
            Query::Q4 => closing::q4(
                &source(NexmarkKind::Auction),
                &source(NexmarkKind::Bid),
                input.longest_auction_ms(),
                parallelism,
            ),
            Query::Q5 => activity::q5(&source(NexmarkKind::Bid), parallelism),
            Query::Q9 => closing::q9(
                &source(NexmarkKind::Auction),
                &source(NexmarkKind::Bid),
                input.longest_auction_ms(),
                parallelism,
            ),
            Query::Q11 => activity::q11(&source(NexmarkKind::Bid), parallelism),
        }
    }
}

/// Where a query's events come from.
#[derive(Debug, Clone)]
pub enum NexmarkInput {
    /// Generated in the process: the first `events` events of `generator`.
    Generated {
        /// The event generator.
        generator: Arc<NexmarkGenerator>,
        /// Events in the stream.
        events: u64,
    },
    /// Read from the CSV files of a directory written by [`write_csv`](super::files::write_csv).
    Files(NexmarkFiles),
}

impl NexmarkInput {
    /// Events in the stream (people, auctions and bids together).
    pub fn events(&self) -> u64 {
        match self {
            NexmarkInput::Generated { events, .. } => *events,
            NexmarkInput::Files(files) => files.manifest().events,
        }
    }

    /// The bound of an auction's length in these events
    /// ([`NexmarkGenerator::max_auction_ms`]).
    pub fn longest_auction_ms(&self) -> i64 {
        match self {
            NexmarkInput::Generated { generator, .. } => generator.max_auction_ms(),
            NexmarkInput::Files(files) => {
                NexmarkGenerator::new(files.manifest().config()).max_auction_ms()
            }
        }
    }

    /// A source of `kind`'s rows on `flow`, read by `parallelism` subtasks.
    fn stream(&self, flow: &Dataflow, kind: NexmarkKind, parallelism: usize) -> Stream {
        match self {
            NexmarkInput::Generated { generator, events } => {
                flow.source(kind.name(), generator.source(kind, Some(*events)))
            }
            NexmarkInput::Files(files) => flow.source_with(kind.name(), files.source(kind)),
        }
        .parallelism(parallelism)
    }
}

impl FromStr for Query {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Query::ALL
            .into_iter()
            .find(|q| q.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = Query::ALL.iter().map(|q| q.name()).collect();
                Error::config(
                    "query",
                    format!("`{s}`: expected one of {}", names.join(", ")),
                )
            })
    }
}

/// Column `name` of `batch` as Int64.
pub(super) fn int_column<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a arrow::array::Int64Array> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
        .ok_or_else(|| Error::schema("nexmark", format!("no Int64 column `{name}`")))
}

/// Column `name` (a window's max or min, Float64) of `batch` as Int64: the values are whole
/// numbers below 2^53 (prices in cents, counts).
pub(super) fn whole_number(batch: &RecordBatch, name: &str, query: &str) -> Result<ArrayRef> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| Error::schema(query, format!("no column `{name}`")))?;
    Ok(arrow::compute::cast(
        column,
        &arrow::datatypes::DataType::Int64,
    )?)
}

/// q1's map: the price in euros.
fn to_euros(batch: RecordBatch) -> Result<RecordBatch> {
    let price = int_column(&batch, "price")?;
    let euros: Float64Array = price
        .iter()
        .map(|p| p.map(|p| p as f64 * EURO_PER_DOLLAR))
        .collect();
    set_column(&batch, "price", Arc::new(euros) as ArrayRef)
}

/// q3: auctions of category 10 joined with their sellers from OR, ID or CA.
fn q3(person: &Stream, auction: &Stream, parallelism: usize) -> Stream {
    let people = person
        .filter("q3 states", |b| {
            let state = b
                .column_by_name("state")
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| Error::schema("q3", "no text column `state`"))?;
            Ok(state
                .iter()
                .map(|s| Some(matches!(s, Some("OR" | "ID" | "CA"))))
                .collect::<BooleanArray>())
        })
        .project("q3 people", ["id", "name", "city", "state", "date_time"])
        .assign_timestamps("q3 person time", "date_time", Duration::ZERO);
    let auctions = auction
        .filter("q3 category", |b| {
            let category = int_column(b, "category")?;
            Ok(category.values().iter().map(|c| *c == 10).collect())
        })
        .project("q3 auctions", ["id", "seller", "date_time"])
        .assign_timestamps("q3 auction time", "date_time", Duration::ZERO);
    // a regular join: rows never expire
    let forever = i64::MAX / 4;
    let spec = IntervalJoin::new(["seller"], -forever, forever).right_keys(["id"]);
    auctions
        .interval_join(&people, "q3", spec)
        .parallelism(parallelism)
        .project("q3 columns", ["name", "city", "state", "id"])
        .parallelism(parallelism)
}

/// A window's row time: its end - 1 ms (the last instant inside it).
fn window_row_time(b: &RecordBatch) -> Result<ArrayRef> {
    let end = int_column(b, "window_end")?;
    Ok(Arc::new(arrow::compute::kernels::numeric::sub(
        end,
        &arrow::array::Int64Array::new_scalar(1),
    )?) as ArrayRef)
}

/// q7's window: 10 s, tumbling.
pub const Q7_WINDOW: Duration = Duration::from_secs(10);

/// Buckets of q7's first, spread-out maximum (auction id modulo this).
const Q7_BUCKETS: i64 = 64;

/// q7: the highest price per window, joined back with the bids at that price whose time lies
/// within the window's row time (its end - 1 ms) and 10 s before, inclusive — as Flink's SQL
/// says it. The maximum is taken in two steps, as a combiner would: per window and bucket of
/// auctions, spread over the subtasks, then over the buckets' maxima in one global window (a
/// single key), which thus reads 64 rows per window instead of every bid.
fn q7(bid: &Stream, parallelism: usize) -> Stream {
    let bids = bid.assign_timestamps("q7 bid time", "date_time", Duration::ZERO);
    let size = Q7_WINDOW.as_millis() as i64;
    let highest = bids
        .with_column("q7 bucket", "bucket", |b| {
            let auction = int_column(b, "auction")?;
            Ok(Arc::new(arrow::compute::kernels::numeric::rem(
                auction,
                &arrow::array::Int64Array::new_scalar(Q7_BUCKETS),
            )?) as ArrayRef)
        })
        .key_by(["bucket"])
        .window(
            "q7 highest per bucket",
            WindowSpec::tumbling(Q7_WINDOW),
            vec![Agg::max("price", "maxprice")],
        )
        .parallelism(parallelism)
        .with_column("q7 bucket time", "rowtime", window_row_time)
        .assign_timestamps("q7 bucket max time", "rowtime", Duration::ZERO)
        .with_column("q7 all", "all", |b| {
            Ok(Arc::new(arrow::array::Int64Array::from(vec![0; b.num_rows()])) as ArrayRef)
        })
        .key_by(["all"])
        .window(
            "q7 highest",
            WindowSpec::tumbling(Q7_WINDOW),
            vec![Agg::max("maxprice", "maxprice")],
        )
        .with_column("q7 rowtime", "rowtime", window_row_time)
        // the window's max is a Float64; prices are whole cents below 2^53
        .with_column("q7 maxprice", "maxprice", |b| {
            whole_number(b, "maxprice", "q7")
        })
        .assign_timestamps("q7 highest time", "rowtime", Duration::ZERO);
    let spec = IntervalJoin::new(["maxprice"], -size, 0).right_keys(["price"]);
    highest
        .interval_join(&bids, "q7", spec)
        .parallelism(parallelism)
        .project(
            "q7 columns",
            ["auction", "price", "bidder", "date_time", "extra"],
        )
        .parallelism(parallelism)
}

/// q8's window: 10 s, tumbling.
pub const Q8_WINDOW: Duration = Duration::from_secs(10);

/// q8: people grouped by (id, name) and sellers by id per 10 s window, joined on id and
/// window start.
fn q8(person: &Stream, auction: &Stream, parallelism: usize) -> Stream {
    let window = WindowSpec::tumbling(Q8_WINDOW);
    let people = person
        .assign_timestamps("q8 person time", "date_time", Duration::ZERO)
        .key_by(["id", "name"])
        .window("q8 people", window.clone(), vec![Agg::count("n")])
        .parallelism(parallelism)
        .assign_timestamps("q8 people time", "window_start", Duration::ZERO)
        .parallelism(parallelism);
    let sellers = auction
        .assign_timestamps("q8 auction time", "date_time", Duration::ZERO)
        .key_by(["seller"])
        .window("q8 sellers", window, vec![Agg::count("n")])
        .parallelism(parallelism)
        .assign_timestamps("q8 sellers time", "window_start", Duration::ZERO)
        .parallelism(parallelism);
    let spec =
        IntervalJoin::new(["id", "window_start"], 0, 0).right_keys(["seller", "window_start"]);
    people
        .interval_join(&sellers, "q8", spec)
        .parallelism(parallelism)
        .project("q8 columns", ["id", "name", "window_start"])
        .parallelism(parallelism)
}

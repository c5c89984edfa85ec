//! The Nexmark benchmark on the dataflow core: the event generator ([`generator`]), the events
//! as CSV files another engine reads too ([`files`]), and the queries as dataflow programs on the
//! builder ([`queries`]), as the Flink Nexmark suite defines them (results compared with naive
//! oracles in the tests, ignoring order), over generated or file events ([`NexmarkInput`]).
//!
//! | module | what |
//! |---|---|
//! | [`generator`] | people, auctions and bids, deterministic by seed, any range of any kind on its own |
//! | [`files`] | the events as CSV files (one directory per kind, parts in event-time order, a checksummed manifest) and their sources |
//! | [`queries`] | [`Query`]: q0 pass-through, q1 currency map, q2 filter, q3 person ⋈ auction, q7 highest bid, q8 window join; the input ([`NexmarkInput`]) |
//! | [`activity`] | q5 hot items (sliding windows, the max per window joined back), q11 user sessions (session windows) |
//! | [`closing`] | auctions closing: q9 winning bids and q4 average winning price per category (interval join, windows on expiry) |

pub mod activity;
pub mod closing;
pub mod files;
pub mod generator;
pub mod queries;

pub use files::{write_csv, NexmarkFiles, NexmarkManifest, DEFAULT_PART_EVENTS};
pub use generator::{NexmarkConfig, NexmarkGenerator, NexmarkKind};
pub use queries::{NexmarkInput, Query};

//! The Nexmark benchmark on the dataflow core: the event generator ([`generator`]) and the
//! queries as dataflow programs on the builder ([`queries`]), as the Flink Nexmark suite defines
//! them (results compared with naive oracles in the tests, ignoring order).
//!
//! | module | what |
//! |---|---|
//! | [`generator`] | people, auctions and bids, deterministic by seed, any range of any kind on its own |
//! | [`queries`] | [`Query`]: q0 pass-through, q1 currency map, q2 filter, q3 person ⋈ auction, q8 window join |

pub mod generator;
pub mod queries;

pub use generator::{NexmarkConfig, NexmarkGenerator, NexmarkKind};
pub use queries::Query;

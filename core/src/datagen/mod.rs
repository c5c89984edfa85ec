//! Deterministic synthetic data: the project's own streams for examples, tests and benchmarks.
//!
//! | module | what |
//! |---|---|
//! | [`ctr`] | a click stream drawn from a hidden logistic model with interactions |
//! | [`nexmark`] | the Nexmark auction stream: people, auctions and bids |
//! | [`format`](mod@self::format) | compact, stable number formatting shared by the writers |

pub mod ctr;
pub mod format;
pub mod nexmark;

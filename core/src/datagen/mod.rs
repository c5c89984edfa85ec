//! Deterministic synthetic data: the project's own streams for examples, tests and benchmarks
//! (the Nexmark stream lives with its queries in [`nexmark`](crate::nexmark)).
//!
//! | module | what |
//! |---|---|
//! | [`ctr`] | a click stream drawn from a hidden logistic model with interactions |
//! | [`format`](mod@self::format) | compact, stable number formatting shared by the writers |

pub mod ctr;
pub mod format;

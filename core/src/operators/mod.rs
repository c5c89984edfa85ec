//! Stateless operators, one per file; each adds an extension method to [`Stream`].
//!
//! | module | method |
//! |---|---|
//! | [`map`] | `stream.map(name, f)` |
//! | [`filter`] | `stream.filter(name, predicate)` |
//! | [`flat_map`] | `stream.flat_map(name, f)` |
//! | [`project`] | `stream.project(name, columns)` |
//! | [`with_column`] | `stream.with_column(name, column, f)` |
//! | [`union`] | `stream.union(name, others)` |
//!
//! [`Stream`]: crate::dataflow::Stream

pub mod filter;
pub mod flat_map;
pub mod map;
pub mod project;
pub mod union;
pub mod with_column;

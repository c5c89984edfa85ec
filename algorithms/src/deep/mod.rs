//! Deep CTR learners through tch (cargo feature `torch`): wide & deep, DeepFM and DCN-v2 over
//! the same featurized input as every learner, trained online from mini-batches.
//!
//! ## The split
//! A row's hashed features `(index, value)` meet two kinds of parameters:
//! - **sparse tables** — a wide weight per feature and a `k`-wide embedding per feature
//!   (index modulo the table size) — kept in plain vectors and updated row by row by the
//!   crate's [`UpdateRule`](crate::learner::UpdateRule)s (AdaGrad by default), exactly as a
//!   parameter-server shard updates sparse rows;
//! - **the dense network** (cross layers, MLP, output) — a small flat vector of floats
//!   viewed as tch tensors for each step; libtorch computes the forward pass and every
//!   gradient, the update rule (Adam by default) applies them.
//!
//! Categorical columns arrive as hashed ids with value 1 and so select an embedding; a numeric
//! column arrives as its (scaled) value, which multiplies its column's embedding. The first
//! `slots` features of a row feed the network (slot `i` = the row's `i`-th feature); all of
//! them feed the wide part. All learner state is plain floats: snapshots, checkpoints and
//! model files (checksummed by [`crate::model`]) hold it, and a restored learner predicts
//! and continues exactly as the original.
//!
//! ## Online semantics
//! One gradient step per `batch-size` rows, whatever the chunking of the input: rows wait in
//! a pending batch (part of the state) until it is full. `predict_learn` predicts each row
//! with the model it meets, then learns it — progressive validation.
//!
//! ## Determinism and devices
//! Initialization is seeded in Rust (no libtorch RNG); on the CPU seeded runs give identical
//! predictions. `device = "cuda"` (or `"auto"`) runs the dense network on a GPU when the
//! libtorch loaded has one; the CPU is the default and nothing needs a GPU.
//!
//! ## Modules
//! | module | what |
//! |---|---|
//! | [`params`] | [`DeepParams`] → checked [`DeepValidParams`]; [`DeepKind`] |
//! | `model` | [`DeepModel`]: the learner (gather, step, scatter, snapshot) |
//! | `net` | the dense network's layout over one flat vector and its forward pass |
//! | `rows` | pending rows in CSR form |

mod model;
mod net;
pub mod params;
mod rows;
#[cfg(test)]
mod tests;

pub use model::DeepModel;
pub use params::{DeepKind, DeepParams, DeepValidParams, DeviceChoice};

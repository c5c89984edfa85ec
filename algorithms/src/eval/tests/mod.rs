//! Oracle and property tests of the evaluation module: metrics against naive formulas,
//! progressive validation against a hand-written test-then-train loop.

mod auc_bound;
mod learner;
mod metrics;
mod progressive;

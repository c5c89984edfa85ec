//! Evaluation: streaming metrics and progressive validation (ARCHITECTURE §4).
//!
//! Every metric is a small accumulator: [`Metric::update`] one row (or
//! [`Metric::update_batch`], the fast path), read [`Metric::value`], and
//! [`merge`](crate::transform::Mergeable::merge) the partial states of parallel subtasks. All
//! accumulate in `f64`, take an optional importance weight per row, and serialize with serde.
//! The definitions match the peers' metric code (`peers/common.py`) so numbers are comparable:
//! log loss clips `p` to `[1e-15, 1 - 1e-15]`, AUC counts ties half (the cumulative [`Auc`]
//! in bounded memory, within its reported [`error_bound`](Auc::error_bound) of the exact value;
//! [`WindowedAuc`] exact), binary accuracy thresholds at `p >= 0.5`.
//!
//! [`ProgressiveValidation`] drives an [`OnlineLearner`](crate::learner::OnlineLearner)
//! test-then-train over a stream of batches, with an optional label delay, and produces the
//! cumulative [`Report`], per-window [`WindowReport`]s and tail metrics (the peers'
//! `*_tail90` columns).
//!
//! ```
//! use eddy_algorithms::eval::{Auc, LogLoss, Metric};
//!
//! let p = [0.9, 0.2, 0.6, 0.6];
//! let y = [1.0, 0.0, 0.0, 1.0];
//! let mut auc = Auc::new();
//! auc.update_batch(&p, &y, None);
//! // 4 positive/negative pairs: 3 ordered correctly, 1 tie counted half.
//! assert!((auc.value() - 3.5 / 4.0).abs() < 1e-12);
//! let mut ll = LogLoss::new();
//! ll.update_batch(&p, &y, None);
//! assert!(ll.value() > 0.0);
//! ```
//!
//! ## Modules
//! | module | what |
//! |---|---|
//! | [`classification`] | [`LogLoss`], [`Accuracy`], [`Confusion`] with [`Precision`], [`Recall`], [`F1`] |
//! | [`auc`] | [`Auc`] (binned, bounded memory, whole stream) and [`WindowedAuc`] (exact, last N rows) |
//! | [`regression`] | [`Rmse`], [`Mae`] |
//! | [`metric_set`] | [`MetricKind`] (names, parsing, validity per task), [`MetricSet`], [`metrics_for_task`] |
//! | [`report`] | [`MetricValues`], [`Report`] (the one-line JSON `eddy learn` prints), [`WindowReport`] |
//! | [`config`] | [`ProgressiveConfig`] (metrics, delay, window, tail) and [`Tail`] |
//! | [`progressive`] | [`ProgressiveValidation`]: test-then-train with label delay, window and tail reports |

pub mod auc;
pub mod classification;
pub mod config;
pub mod metric_set;
pub mod progressive;
pub mod regression;
pub mod report;

#[cfg(test)]
mod tests;

pub use auc::{Auc, WindowedAuc};
pub use classification::{Accuracy, Confusion, LogLoss, Precision, Recall, F1};
pub use config::{ProgressiveConfig, Tail};
pub use metric_set::{metrics_for_task, MetricKind, MetricSet};
pub use progressive::ProgressiveValidation;
pub use regression::{Mae, Rmse};
pub use report::{MetricValues, Report, WindowReport};

use crate::transform::Mergeable;

/// A streaming metric over `(prediction, label, weight)` rows.
///
/// Updating costs a few nanoseconds per row and allocates nothing (the [`Auc`] histogram
/// allocates a page the first time a score falls in a new power of two); no metric's memory
/// grows with the row count. Partial states from parallel subtasks combine with
/// [`Mergeable::merge`]; for order-dependent metrics ([`WindowedAuc`]) `other` is taken to
/// come after `self` in the stream.
pub trait Metric: Mergeable + Send + Sync + std::fmt::Debug {
    /// Adds one row. `prediction` means what the learner's [`Task`](crate::learner::Task)
    /// says; `weight` is the row's importance (1 when there is none).
    fn update(&mut self, prediction: f32, label: f32, weight: f32);

    /// Adds rows in order: the fast path. `labels` and `weights` (1 each when `None`) pair up
    /// with `predictions`; [`MetricSet::update_batch`] checks their lengths, here rows past the
    /// shortest slice are ignored.
    fn update_batch(&mut self, predictions: &[f32], labels: &[f32], weights: Option<&[f32]>) {
        debug_assert_eq!(predictions.len(), labels.len());
        match weights {
            None => {
                for (&p, &y) in predictions.iter().zip(labels) {
                    self.update(p, y, 1.0);
                }
            }
            Some(w) => {
                debug_assert_eq!(predictions.len(), w.len());
                for ((&p, &y), &w) in predictions.iter().zip(labels).zip(w) {
                    self.update(p, y, w);
                }
            }
        }
    }

    /// The metric over every row so far; NaN when it is undefined (no rows, or — for AUC — no
    /// positive or no negative rows).
    fn value(&self) -> f64;

    /// Forgets every row, keeping allocations.
    fn reset(&mut self);

    /// Readies the state so that [`value`](Metric::value) is cheap. Optional: `value` is
    /// correct without it.
    fn prepare(&mut self) {}
}

/// Whether a label counts as the positive class of a binary task (labels are 0/1).
#[inline]
pub(crate) fn is_positive(label: f32) -> bool {
    label >= 0.5
}

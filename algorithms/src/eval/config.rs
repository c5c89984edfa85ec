//! How to evaluate: [`ProgressiveConfig`] (serde, checked by
//! [`build`](ProgressiveConfig::build)) and the [`Tail`] the tail metrics cover.

use serde::{Deserialize, Serialize};

use super::{MetricKind, MetricSet, ProgressiveValidation};
use crate::error::{Error, Result};
use crate::learner::Task;

/// Which rows the tail metrics cover.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case",
    deny_unknown_fields
)]
pub enum Tail {
    /// The last `fraction` of a stream of `total_rows` rows, as the peers compute their
    /// `*_tail90` columns: rows from `total_rows - round(total_rows * fraction)` on (rounding
    /// half to even, like Python). Metric names get the suffix `_tail<percent>`.
    LastFraction {
        /// Share of the stream, in `(0, 1]`; the peers use 0.9.
        fraction: f64,
        /// The stream's known length.
        total_rows: u64,
    },
    /// Every row after the first `rows`. Metric names get the suffix `_tail`.
    Skip {
        /// Rows skipped at the start.
        rows: u64,
    },
}

impl Tail {
    /// The peers' tail: the last 90% of `total_rows` (suffix `_tail90`).
    pub fn peers(total_rows: u64) -> Tail {
        Tail::LastFraction {
            fraction: 0.9,
            total_rows,
        }
    }

    /// The first row (0-based) of the tail.
    pub fn start_row(&self) -> u64 {
        match *self {
            Tail::LastFraction {
                fraction,
                total_rows,
            } => {
                let tail = (total_rows as f64 * fraction.clamp(0.0, 1.0)).round_ties_even();
                total_rows.saturating_sub(tail as u64)
            }
            Tail::Skip { rows } => rows,
        }
    }

    /// The suffix of tail metric names: `_tail90` for the last 90%, `_tail` for a skip.
    pub fn suffix(&self) -> String {
        match *self {
            Tail::LastFraction { fraction, .. } => format!("_tail{}", (fraction * 100.0).round()),
            Tail::Skip { .. } => "_tail".to_owned(),
        }
    }
}

/// How to evaluate (serde, kebab-case; unknown keys are rejected).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ProgressiveConfig {
    /// Metrics by name; empty (the default) means [`metrics_for_task`](super::metrics_for_task).
    #[serde(default)]
    pub metrics: Vec<MetricKind>,
    /// Label delay in examples (default 0): see [`progressive`](super::progressive) for
    /// exactly when each example is learned.
    #[serde(default)]
    pub delay: u64,
    /// Emit a [`WindowReport`](super::WindowReport) every `window` rows (default: none); at least 1.
    #[serde(default)]
    pub window: Option<u64>,
    /// Also report metrics over a tail of the stream (default: none).
    #[serde(default)]
    pub tail: Option<Tail>,
}

impl ProgressiveConfig {
    /// Checks the config and builds the evaluator for a learner of `task`. Errors name the
    /// key (`eval.window`, `eval.tail.fraction`, `eval.delay`, `eval.metrics`).
    pub fn build(&self, task: Task) -> Result<ProgressiveValidation> {
        let kinds = if self.metrics.is_empty() {
            super::metrics_for_task(task)
        } else {
            self.metrics.clone()
        };
        let set = MetricSet::new(&kinds, task)?;
        let delay = usize::try_from(self.delay)
            .map_err(|_| Error::param("eval.delay", "does not fit in memory"))?;
        if self.window == Some(0) {
            return Err(Error::param("eval.window", "must be at least 1"));
        }
        if let Some(Tail::LastFraction { fraction, .. }) = self.tail {
            if !(fraction > 0.0 && fraction <= 1.0) {
                return Err(Error::param("eval.tail.fraction", "must be in (0, 1]"));
            }
        }
        Ok(ProgressiveValidation::new(
            delay,
            set,
            self.window,
            self.tail,
        ))
    }
}

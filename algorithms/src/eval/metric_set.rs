//! Metrics chosen by name: [`MetricKind`], the [`MetricSet`] that updates several at once, and
//! [`metrics_for_task`], the default set for a learner's [`Task`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{
    Accuracy, Auc, LogLoss, Mae, Metric, MetricValues, Precision, Recall, Rmse, WindowedAuc, F1,
};
use crate::error::{Error, Result};
use crate::learner::Task;
use crate::transform::Mergeable;

/// A metric by name. Names (as in reports, specs and on the command line): `logloss`, `auc`,
/// `auc_last<N>` (exact AUC of the last N rows), `accuracy`, `precision`, `recall`, `f1`,
/// `rmse`, `mae`. Serializes as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum MetricKind {
    /// [`LogLoss`] (binary).
    LogLoss,
    /// [`Auc`] (binary).
    Auc,
    /// [`WindowedAuc`] over the last `window` rows (binary).
    WindowedAuc {
        /// Rows in the window, at least 1.
        window: usize,
    },
    /// [`Accuracy`] (binary or multiclass).
    Accuracy,
    /// [`Precision`] (binary).
    Precision,
    /// [`Recall`] (binary).
    Recall,
    /// [`F1`] (binary).
    F1,
    /// [`Rmse`] (regression, or binary probabilities).
    Rmse,
    /// [`Mae`] (regression, or binary probabilities).
    Mae,
}

impl MetricKind {
    /// The metric's name in reports.
    pub fn name(&self) -> String {
        self.to_string()
    }

    /// Whether the metric means something for predictions of `task`.
    pub fn valid_for(&self, task: Task) -> bool {
        use MetricKind::*;
        match self {
            LogLoss | Auc | WindowedAuc { .. } | Precision | Recall | F1 => {
                task == Task::BinaryClassification
            }
            Accuracy => matches!(task, Task::BinaryClassification | Task::Multiclass { .. }),
            Rmse | Mae => matches!(task, Task::BinaryClassification | Task::Regression),
        }
    }

    fn build(&self, task: Task) -> Result<AnyMetric> {
        if !self.valid_for(task) {
            return Err(Error::param(
                "eval.metrics",
                format!("`{self}` does not apply to a {task:?} learner"),
            ));
        }
        Ok(match *self {
            MetricKind::LogLoss => AnyMetric::LogLoss(LogLoss::new()),
            MetricKind::Auc => AnyMetric::Auc(Auc::new()),
            MetricKind::WindowedAuc { window } => AnyMetric::WindowedAuc(WindowedAuc::new(window)?),
            MetricKind::Accuracy if matches!(task, Task::Multiclass { .. }) => {
                AnyMetric::Accuracy(Accuracy::multiclass())
            }
            MetricKind::Accuracy => AnyMetric::Accuracy(Accuracy::binary()),
            MetricKind::Precision => AnyMetric::Precision(Precision::new()),
            MetricKind::Recall => AnyMetric::Recall(Recall::new()),
            MetricKind::F1 => AnyMetric::F1(F1::new()),
            MetricKind::Rmse => AnyMetric::Rmse(Rmse::new()),
            MetricKind::Mae => AnyMetric::Mae(Mae::new()),
        })
    }
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricKind::LogLoss => f.write_str("logloss"),
            MetricKind::Auc => f.write_str("auc"),
            MetricKind::WindowedAuc { window } => write!(f, "auc_last{window}"),
            MetricKind::Accuracy => f.write_str("accuracy"),
            MetricKind::Precision => f.write_str("precision"),
            MetricKind::Recall => f.write_str("recall"),
            MetricKind::F1 => f.write_str("f1"),
            MetricKind::Rmse => f.write_str("rmse"),
            MetricKind::Mae => f.write_str("mae"),
        }
    }
}

impl FromStr for MetricKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "logloss" => MetricKind::LogLoss,
            "auc" => MetricKind::Auc,
            "accuracy" => MetricKind::Accuracy,
            "precision" => MetricKind::Precision,
            "recall" => MetricKind::Recall,
            "f1" => MetricKind::F1,
            "rmse" => MetricKind::Rmse,
            "mae" => MetricKind::Mae,
            _ => match s.strip_prefix("auc_last").map(str::parse::<usize>) {
                Some(Ok(window)) if window > 0 => MetricKind::WindowedAuc { window },
                _ => {
                    return Err(Error::param(
                        "eval.metrics",
                        format!(
                            "unknown metric `{s}` (expected logloss, auc, auc_last<N>, \
                             accuracy, precision, recall, f1, rmse or mae)"
                        ),
                    ))
                }
            },
        })
    }
}

impl TryFrom<String> for MetricKind {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<MetricKind> for String {
    fn from(k: MetricKind) -> String {
        k.to_string()
    }
}

/// The default metrics for a learner's task, in report order: binary `logloss, auc, accuracy`
/// (the peers' columns), regression `rmse, mae`, multiclass `accuracy`, clustering none.
pub fn metrics_for_task(task: Task) -> Vec<MetricKind> {
    match task {
        Task::BinaryClassification => {
            vec![MetricKind::LogLoss, MetricKind::Auc, MetricKind::Accuracy]
        }
        Task::Regression => vec![MetricKind::Rmse, MetricKind::Mae],
        Task::Multiclass { .. } => vec![MetricKind::Accuracy],
        Task::Clustering { .. } => Vec::new(),
    }
}

/// One metric of any kind (enum dispatch: no virtual call per row).
#[derive(Debug, Clone, Serialize, Deserialize)]
enum AnyMetric {
    LogLoss(LogLoss),
    Auc(Auc),
    WindowedAuc(WindowedAuc),
    Accuracy(Accuracy),
    Precision(Precision),
    Recall(Recall),
    F1(F1),
    Rmse(Rmse),
    Mae(Mae),
}

/// Runs `$body` with `$m` bound to the concrete metric inside `$any`.
macro_rules! with_metric {
    ($any:expr, $m:ident => $body:expr) => {
        match $any {
            AnyMetric::LogLoss($m) => $body,
            AnyMetric::Auc($m) => $body,
            AnyMetric::WindowedAuc($m) => $body,
            AnyMetric::Accuracy($m) => $body,
            AnyMetric::Precision($m) => $body,
            AnyMetric::Recall($m) => $body,
            AnyMetric::F1($m) => $body,
            AnyMetric::Rmse($m) => $body,
            AnyMetric::Mae($m) => $body,
        }
    };
}

/// Several metrics updated together, reported by name in the order they were given.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricSet {
    kinds: Vec<MetricKind>,
    metrics: Vec<AnyMetric>,
}

impl MetricSet {
    /// The metrics `kinds` for predictions of `task`. Errors (naming `eval.metrics`) when one
    /// does not apply to the task or appears twice.
    pub fn new(kinds: &[MetricKind], task: Task) -> Result<Self> {
        for (i, k) in kinds.iter().enumerate() {
            if kinds[..i].contains(k) {
                return Err(Error::param("eval.metrics", format!("`{k}` appears twice")));
            }
        }
        let metrics = kinds.iter().map(|k| k.build(task)).collect::<Result<_>>()?;
        Ok(MetricSet {
            kinds: kinds.to_vec(),
            metrics,
        })
    }

    /// The default set for `task` ([`metrics_for_task`]).
    pub fn for_task(task: Task) -> Self {
        let kinds = metrics_for_task(task);
        let metrics = kinds.iter().filter_map(|k| k.build(task).ok()).collect();
        MetricSet { kinds, metrics }
    }

    /// The metrics, in report order.
    pub fn kinds(&self) -> &[MetricKind] {
        &self.kinds
    }

    /// Adds one row to every metric.
    pub fn update(&mut self, prediction: f32, label: f32, weight: f32) {
        for m in &mut self.metrics {
            with_metric!(m, m => m.update(prediction, label, weight));
        }
    }

    /// Adds rows to every metric; errors when `labels` or `weights` do not have the length of
    /// `predictions`.
    pub fn update_batch(
        &mut self,
        predictions: &[f32],
        labels: &[f32],
        weights: Option<&[f32]>,
    ) -> Result<()> {
        let n = predictions.len();
        if labels.len() != n || weights.is_some_and(|w| w.len() != n) {
            return Err(Error::Shape(format!(
                "{n} predictions, {} labels, {} weights",
                labels.len(),
                weights.map_or(n, <[f32]>::len)
            )));
        }
        for m in &mut self.metrics {
            with_metric!(m, m => m.update_batch(predictions, labels, weights));
        }
        Ok(())
    }

    /// Appends every metric's value to `out` as `name + suffix` (e.g. `auc_tail90`).
    pub fn values_into(&mut self, suffix: &str, out: &mut MetricValues) {
        for (k, m) in self.kinds.iter().zip(&mut self.metrics) {
            let v = with_metric!(m, m => {
                m.prepare();
                m.value()
            });
            out.push(format!("{k}{suffix}"), v);
        }
    }

    /// Every metric's value by name.
    pub fn values(&mut self) -> MetricValues {
        let mut out = MetricValues::default();
        self.values_into("", &mut out);
        out
    }

    /// Forgets every row, keeping allocations.
    pub fn reset(&mut self) {
        for m in &mut self.metrics {
            with_metric!(m, m => m.reset());
        }
    }
}

impl Mergeable for MetricSet {
    /// Merges metric by metric; the sets must hold the same kinds in the same order.
    fn merge(&mut self, other: &Self) -> Result<()> {
        if self.kinds != other.kinds {
            return Err(Error::Shape(format!(
                "cannot merge metric sets {:?} and {:?}",
                self.kinds, other.kinds
            )));
        }
        for (a, b) in self.metrics.iter_mut().zip(&other.metrics) {
            match (a, b) {
                (AnyMetric::LogLoss(a), AnyMetric::LogLoss(b)) => a.merge(b)?,
                (AnyMetric::Auc(a), AnyMetric::Auc(b)) => a.merge(b)?,
                (AnyMetric::WindowedAuc(a), AnyMetric::WindowedAuc(b)) => a.merge(b)?,
                (AnyMetric::Accuracy(a), AnyMetric::Accuracy(b)) => a.merge(b)?,
                (AnyMetric::Precision(a), AnyMetric::Precision(b)) => a.merge(b)?,
                (AnyMetric::Recall(a), AnyMetric::Recall(b)) => a.merge(b)?,
                (AnyMetric::F1(a), AnyMetric::F1(b)) => a.merge(b)?,
                (AnyMetric::Rmse(a), AnyMetric::Rmse(b)) => a.merge(b)?,
                (AnyMetric::Mae(a), AnyMetric::Mae(b)) => a.merge(b)?,
                _ => return Err(Error::Shape("metric sets hold different metrics".into())),
            }
        }
        Ok(())
    }
}

//! Classification metrics: [`LogLoss`], [`Accuracy`], and the [`Confusion`] counts behind
//! [`Precision`], [`Recall`] and [`F1`] (binary, positive class 1, threshold `p >= 0.5`).

use serde::{Deserialize, Serialize};

use super::{is_positive, Metric};
use crate::error::{Error, Result};
use crate::transform::Mergeable;

/// Predictions are clipped to `[EPS, 1 - EPS]` before the logarithm, as the peers do.
pub const LOGLOSS_EPS: f64 = 1e-15;

/// Binary log loss (cross-entropy) of `p = P(label = 1)`, weighted mean over rows:
/// `-(y ln p + (1 - y) ln(1 - p))` with `p` clipped to `[1e-15, 1 - 1e-15]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogLoss {
    sum: f64,
    weight: f64,
}

impl LogLoss {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Metric for LogLoss {
    #[inline]
    fn update(&mut self, prediction: f32, label: f32, weight: f32) {
        let p = f64::from(prediction).clamp(LOGLOSS_EPS, 1.0 - LOGLOSS_EPS);
        let y = f64::from(label);
        // The 0/1 cases take one logarithm; the general formula serves soft labels.
        let loss = if y == 0.0 || y == 1.0 {
            -(if y == 1.0 { p } else { 1.0 - p }).ln()
        } else {
            -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
        };
        let w = f64::from(weight);
        self.sum += w * loss;
        self.weight += w;
    }

    fn value(&self) -> f64 {
        self.sum / self.weight
    }

    fn reset(&mut self) {
        *self = Self::default();
    }
}

impl Mergeable for LogLoss {
    fn merge(&mut self, other: &Self) -> Result<()> {
        self.sum += other.sum;
        self.weight += other.weight;
        Ok(())
    }
}

/// Share of rows predicted right (weighted). Binary: the predicted class is `p >= 0.5`, the
/// label's class is `label >= 0.5`. Multiclass: the prediction is a class index and is right
/// when it equals the label.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    multiclass: bool,
    correct: f64,
    weight: f64,
}

impl Accuracy {
    /// Binary accuracy at threshold 0.5.
    pub fn binary() -> Self {
        Self::default()
    }

    /// Multiclass accuracy: predictions are class indices.
    pub fn multiclass() -> Self {
        Accuracy {
            multiclass: true,
            ..Self::default()
        }
    }

    /// Whether predictions are class indices (else probabilities of class 1).
    pub fn is_multiclass(&self) -> bool {
        self.multiclass
    }
}

impl Metric for Accuracy {
    #[inline]
    fn update(&mut self, prediction: f32, label: f32, weight: f32) {
        let right = if self.multiclass {
            prediction == label
        } else {
            is_positive(prediction) == is_positive(label)
        };
        let w = f64::from(weight);
        self.correct += w * f64::from(u8::from(right));
        self.weight += w;
    }

    fn value(&self) -> f64 {
        self.correct / self.weight
    }

    fn reset(&mut self) {
        *self = Accuracy {
            multiclass: self.multiclass,
            ..Self::default()
        };
    }
}

impl Mergeable for Accuracy {
    fn merge(&mut self, other: &Self) -> Result<()> {
        if self.multiclass != other.multiclass {
            return Err(Error::Shape(
                "cannot merge binary and multiclass accuracy".into(),
            ));
        }
        self.correct += other.correct;
        self.weight += other.weight;
        Ok(())
    }
}

/// Weighted confusion counts of a binary classifier at threshold `p >= 0.5`, positive class 1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Confusion {
    /// Predicted 1, label 1.
    pub true_pos: f64,
    /// Predicted 1, label 0.
    pub false_pos: f64,
    /// Predicted 0, label 1.
    pub false_neg: f64,
    /// Predicted 0, label 0.
    pub true_neg: f64,
}

impl Confusion {
    /// Adds one row.
    #[inline]
    pub fn update(&mut self, prediction: f32, label: f32, weight: f32) {
        // Branch-free: labels and predictions are hard to predict.
        let w = f64::from(weight);
        let (p, y) = (is_positive(prediction), is_positive(label));
        let one = |b: bool| f64::from(u8::from(b));
        self.true_pos += w * one(p & y);
        self.false_pos += w * one(p & !y);
        self.false_neg += w * one(!p & y);
        self.true_neg += w * one(!p & !y);
    }

    /// Adds rows (lengths as in [`Metric::update_batch`]), counting in registers.
    pub fn update_batch(&mut self, predictions: &[f32], labels: &[f32], weights: Option<&[f32]>) {
        let mut c = *self;
        match weights {
            None => {
                for (&p, &y) in predictions.iter().zip(labels) {
                    c.update(p, y, 1.0);
                }
            }
            Some(w) => {
                for ((&p, &y), &w) in predictions.iter().zip(labels).zip(w) {
                    c.update(p, y, w);
                }
            }
        }
        *self = c;
    }

    /// `tp / (tp + fp)`; NaN when nothing was predicted positive.
    pub fn precision(&self) -> f64 {
        self.true_pos / (self.true_pos + self.false_pos)
    }

    /// `tp / (tp + fn)`; NaN when there were no positive labels.
    pub fn recall(&self) -> f64 {
        self.true_pos / (self.true_pos + self.false_neg)
    }

    /// `2 tp / (2 tp + fp + fn)`, the harmonic mean of precision and recall; NaN when there
    /// were neither positive labels nor positive predictions.
    pub fn f1(&self) -> f64 {
        let tp2 = 2.0 * self.true_pos;
        tp2 / (tp2 + self.false_pos + self.false_neg)
    }

    /// Adds another's counts.
    pub fn add(&mut self, other: &Confusion) {
        self.true_pos += other.true_pos;
        self.false_pos += other.false_pos;
        self.false_neg += other.false_neg;
        self.true_neg += other.true_neg;
    }
}

/// Defines a metric that reads one number off [`Confusion`] counts.
macro_rules! confusion_metric {
    ($(#[$doc:meta])* $name:ident, $read:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        pub struct $name(pub Confusion);

        impl $name {
            /// An empty accumulator.
            pub fn new() -> Self {
                Self::default()
            }
        }

        impl Metric for $name {
            #[inline]
            fn update(&mut self, prediction: f32, label: f32, weight: f32) {
                self.0.update(prediction, label, weight);
            }

            fn update_batch(&mut self, p: &[f32], y: &[f32], w: Option<&[f32]>) {
                self.0.update_batch(p, y, w);
            }

            fn value(&self) -> f64 {
                self.0.$read()
            }

            fn reset(&mut self) {
                self.0 = Confusion::default();
            }
        }

        impl Mergeable for $name {
            fn merge(&mut self, other: &Self) -> Result<()> {
                self.0.add(&other.0);
                Ok(())
            }
        }
    };
}

confusion_metric!(
    /// Binary precision: [`Confusion::precision`].
    Precision,
    precision
);
confusion_metric!(
    /// Binary recall: [`Confusion::recall`].
    Recall,
    recall
);
confusion_metric!(
    /// Binary F1 score: [`Confusion::f1`].
    F1,
    f1
);

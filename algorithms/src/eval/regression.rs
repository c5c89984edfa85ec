//! Regression metrics: [`Rmse`] and [`Mae`], weighted means over rows.

use serde::{Deserialize, Serialize};

use super::Metric;
use crate::error::Result;
use crate::transform::Mergeable;

/// Root mean squared error: `sqrt(Σ w (p - y)² / Σ w)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rmse {
    sum_sq: f64,
    weight: f64,
}

impl Rmse {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Metric for Rmse {
    #[inline]
    fn update(&mut self, prediction: f32, label: f32, weight: f32) {
        let e = f64::from(prediction) - f64::from(label);
        let w = f64::from(weight);
        self.sum_sq += w * e * e;
        self.weight += w;
    }

    fn value(&self) -> f64 {
        (self.sum_sq / self.weight).sqrt()
    }

    fn reset(&mut self) {
        *self = Self::default();
    }
}

impl Mergeable for Rmse {
    fn merge(&mut self, other: &Self) -> Result<()> {
        self.sum_sq += other.sum_sq;
        self.weight += other.weight;
        Ok(())
    }
}

/// Mean absolute error: `Σ w |p - y| / Σ w`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Mae {
    sum_abs: f64,
    weight: f64,
}

impl Mae {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Metric for Mae {
    #[inline]
    fn update(&mut self, prediction: f32, label: f32, weight: f32) {
        let e = f64::from(prediction) - f64::from(label);
        let w = f64::from(weight);
        self.sum_abs += w * e.abs();
        self.weight += w;
    }

    fn value(&self) -> f64 {
        self.sum_abs / self.weight
    }

    fn reset(&mut self) {
        *self = Self::default();
    }
}

impl Mergeable for Mae {
    fn merge(&mut self, other: &Self) -> Result<()> {
        self.sum_abs += other.sum_abs;
        self.weight += other.weight;
        Ok(())
    }
}

//! The per-column state of an [`Imputer`](super::Imputer): what each strategy accumulates.

use std::collections::HashMap;

use arrow::array::Float64Array;
use serde::{Deserialize, Serialize};

use super::common::for_each_finite;
use super::imputer::ImputeStrategy;
use super::sketch::QuantileSketch;
use super::stats::Moments;
use crate::error::{Error, Result};
use crate::transform::Mergeable;

/// The statistics behind one column's fill value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Surrogate {
    Mean(Moments),
    Median(QuantileSketch),
    MostFrequent(FreqTable),
    Constant(f64),
}

impl Surrogate {
    /// The empty state of `strategy` (`k`: the sketch size for `median`).
    pub(crate) fn new(strategy: ImputeStrategy, k: usize) -> Self {
        match strategy {
            ImputeStrategy::Mean => Surrogate::Mean(Moments::default()),
            ImputeStrategy::Median => Surrogate::Median(QuantileSketch::empty(k)),
            ImputeStrategy::MostFrequent => Surrogate::MostFrequent(FreqTable::default()),
            ImputeStrategy::Constant(v) => Surrogate::Constant(v),
        }
    }

    /// Whether this state belongs to `strategy` with sketch size `k` and is consistent.
    pub(crate) fn is_valid(&self, strategy: ImputeStrategy, k: usize) -> bool {
        match (self, strategy) {
            (Surrogate::Mean(m), ImputeStrategy::Mean) => m.is_valid(),
            (Surrogate::Median(s), ImputeStrategy::Median) => s.k() == k,
            (Surrogate::MostFrequent(_), ImputeStrategy::MostFrequent) => true,
            (Surrogate::Constant(a), ImputeStrategy::Constant(b)) => a.to_bits() == b.to_bits(),
            _ => false,
        }
    }

    /// The fill value, `None` while a statistic has seen no finite value.
    pub(crate) fn value(&self) -> Option<f64> {
        match self {
            Surrogate::Mean(m) => (m.count > 0).then_some(m.mean),
            Surrogate::Median(s) => s.quantile(0.5),
            Surrogate::MostFrequent(t) => t.mode(),
            Surrogate::Constant(v) => Some(*v),
        }
    }

    /// Folds in the non-null finite values of `arr`.
    pub(crate) fn update(&mut self, arr: &Float64Array) {
        match self {
            Surrogate::Mean(m) => m.merge(&Moments::of(arr)),
            Surrogate::Median(s) => s.insert_array(arr),
            Surrogate::MostFrequent(t) => for_each_finite(arr, |v| t.add(v, 1)),
            Surrogate::Constant(_) => {}
        }
    }

    /// Merges the state of the same column from another partition.
    pub(crate) fn merge(&mut self, other: &Surrogate) -> Result<()> {
        match (self, other) {
            (Surrogate::Mean(a), Surrogate::Mean(b)) => a.merge(b),
            (Surrogate::Median(a), Surrogate::Median(b)) => a.merge(b)?,
            (Surrogate::MostFrequent(a), Surrogate::MostFrequent(b)) => {
                for (&bits, &c) in &b.counts {
                    a.add(f64::from_bits(bits), c);
                }
            }
            (Surrogate::Constant(a), Surrogate::Constant(b)) if a.to_bits() == b.to_bits() => {}
            _ => {
                return Err(Error::param(
                    "imputer.strategy",
                    "cannot merge states of different strategies",
                ))
            }
        }
        Ok(())
    }
}

/// Exact counts of finite values; saved as `[[value, count], ...]` sorted by value.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(into = "Vec<(f64, u64)>", try_from = "Vec<(f64, u64)>")]
pub(crate) struct FreqTable {
    /// Count per value, keyed by the bits of the value (`-0.0` counted as `0.0`).
    counts: HashMap<u64, u64>,
}

impl FreqTable {
    fn add(&mut self, v: f64, count: u64) {
        let v = if v == 0.0 { 0.0 } else { v };
        let c = self.counts.entry(v.to_bits()).or_insert(0);
        *c = c.saturating_add(count);
    }

    /// The most frequent value; ties go to the smallest.
    fn mode(&self) -> Option<f64> {
        self.counts
            .iter()
            .map(|(&b, &c)| (f64::from_bits(b), c))
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.total_cmp(&a.0)))
            .map(|(v, _)| v)
    }
}

impl From<FreqTable> for Vec<(f64, u64)> {
    fn from(t: FreqTable) -> Self {
        let mut v: Vec<(f64, u64)> = t
            .counts
            .into_iter()
            .map(|(b, c)| (f64::from_bits(b), c))
            .collect();
        v.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        v
    }
}

impl TryFrom<Vec<(f64, u64)>> for FreqTable {
    type Error = Error;

    fn try_from(v: Vec<(f64, u64)>) -> Result<Self> {
        let mut t = FreqTable::default();
        for (x, c) in v {
            let key = if x == 0.0 { 0.0f64 } else { x }.to_bits();
            if !x.is_finite() || c == 0 || t.counts.contains_key(&key) {
                return Err(Error::param(
                    "imputer.most-frequent",
                    format!("bad count entry ({x}, {c})"),
                ));
            }
            t.add(x, c);
        }
        Ok(t)
    }
}

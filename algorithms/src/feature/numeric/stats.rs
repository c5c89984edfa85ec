//! Mergeable per-column statistics over finite values: [`Moments`] (count, mean, variance;
//! Welford/Chan) and [`Extent`] (min, max).

use arrow::array::{Array, Float64Array};
use serde::{Deserialize, Serialize};

use super::common::for_each_finite;

/// Count, mean and sum of squared deviations (`m2`) of the finite values of a column.
///
/// A batch is summarized with a two-pass mean/deviation sum and folded in with Chan et al.'s
/// parallel formula (Welford's update is its one-value case), so streaming updates, merges of
/// partitions and one batch fit agree to float rounding.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Moments {
    /// Number of finite values.
    pub count: u64,
    /// Their mean (0 when `count` is 0).
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
}

impl Moments {
    /// The moments of the non-null finite values of `arr` (NaN and ±inf are skipped).
    pub fn of(arr: &Float64Array) -> Moments {
        match arr.nulls() {
            None => Self::summarize(arr.values().iter().copied().filter(|v| v.is_finite())),
            Some(nulls) => Self::summarize(
                arr.values()
                    .iter()
                    .enumerate()
                    .filter(|&(i, v)| nulls.is_valid(i) && v.is_finite())
                    .map(|(_, &v)| v),
            ),
        }
    }

    /// The moments of one value (none when it is not finite): what [`of`](Self::of) gives
    /// for a one-row column holding it, by the same arithmetic — a pipeline's per-row path
    /// folds rows with it.
    pub fn of_value(v: f64) -> Moments {
        Self::summarize(std::iter::once(v).filter(|v| v.is_finite()))
    }

    /// Two-pass count, mean and squared deviations of `values` (already filtered).
    #[inline]
    fn summarize(values: impl Iterator<Item = f64> + Clone) -> Moments {
        let (mut count, mut sum) = (0u64, 0.0);
        for v in values.clone() {
            count += 1;
            sum += v;
        }
        if count == 0 {
            return Moments::default();
        }
        let mean = sum / count as f64;
        let mut m2 = 0.0;
        for v in values {
            m2 += (v - mean) * (v - mean);
        }
        Moments { count, mean, m2 }
    }

    /// Folds `other` in (Chan et al.): the moments of the union.
    pub fn merge(&mut self, other: &Moments) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let delta = other.mean - self.mean;
        self.mean += delta * (nb / n);
        self.m2 += other.m2 + delta * delta * (na * nb / n);
        self.count += other.count;
    }

    /// The population variance `m2 / count` (0 when empty).
    pub fn variance(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.m2 / self.count as f64
        }
    }

    /// Whether the fields are consistent (finite, `m2 ≥ 0`, zero when empty).
    pub fn is_valid(&self) -> bool {
        self.mean.is_finite()
            && self.m2.is_finite()
            && self.m2 >= 0.0
            && (self.count > 0 || (self.mean == 0.0 && self.m2 == 0.0))
    }
}

/// The smallest and largest finite value of a column; `None` before any.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Extent(pub Option<(f64, f64)>);

impl Extent {
    /// The extent of the non-null finite values of `arr`.
    pub fn of(arr: &Float64Array) -> Extent {
        let mut e = Extent(None);
        for_each_finite(arr, |v| e.push(v));
        e
    }

    /// Widens the extent to include `v` (finite).
    #[inline]
    pub fn push(&mut self, v: f64) {
        self.0 = Some(match self.0 {
            None => (v, v),
            Some((lo, hi)) => (lo.min(v), hi.max(v)),
        });
    }

    /// The extent of the union.
    pub fn merge(&mut self, other: &Extent) {
        if let Some((lo, hi)) = other.0 {
            self.push(lo);
            self.push(hi);
        }
    }

    /// Whether the fields are consistent (finite, `min ≤ max`).
    pub fn is_valid(&self) -> bool {
        self.0
            .is_none_or(|(lo, hi)| lo.is_finite() && hi.is_finite() && lo <= hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_against_first_principles() {
        let a = Float64Array::from(vec![Some(1.0), None, Some(f64::NAN), Some(3.0), Some(8.0)]);
        let m = Moments::of(&a);
        assert_eq!(m.count, 3);
        assert_eq!(m.mean, 4.0);
        // (1-4)² + (3-4)² + (8-4)² = 9 + 1 + 16
        assert_eq!(m.m2, 26.0);
        let mut x = Moments::of(&Float64Array::from(vec![1.0, 3.0]));
        x.merge(&Moments::of(&Float64Array::from(vec![8.0])));
        assert!((x.mean - 4.0).abs() < 1e-12 && (x.m2 - 26.0).abs() < 1e-12);
        assert!(Moments {
            count: 0,
            mean: 1.0,
            m2: 0.0
        }
        .is_valid()
        .eq(&false));
        let e = Extent::of(&a);
        assert_eq!(e.0, Some((1.0, 8.0)));
        assert!(!Extent(Some((2.0, 1.0))).is_valid());
    }
}

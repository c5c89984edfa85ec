//! A deterministic, mergeable streaming quantile sketch with a proven rank-error bound.
//!
//! [`QuantileSketch`] is a multi-level compactor sketch (Manku–Rajagopalan–Lindsay; KLL with
//! equal level capacities and deterministic compaction). Level `h` holds items of weight `2^h`.
//! Values enter level 0; when a level holds `k` or more items it is sorted and *compacted*:
//! every other item (offset 0 or 1, alternating per level — no randomness) moves up one level
//! with twice the weight, the rest are dropped (an odd item out stays behind). Merging
//! concatenates levels and compacts again, so a merged sketch is as good as a streamed one.
//!
//! ## Error bound
//! Let `n` be the number of values seen and `rank(x) = #{values ≤ x}`. The estimate
//! [`rank`](QuantileSketch::rank) (the weight of stored items `≤ x`) satisfies, for every `x`,
//!
//! ```text
//! |rank_est(x) − rank(x)| ≤ max_rank_error() ≤ rank_error_bound(n, k) = ⌊n·L / k⌋,
//!                                            L = ⌊log2(n / k)⌋ + 1   (0 when n < k)
//! ```
//!
//! Proof sketch: one compaction at level `h` changes `rank_est(x)` by `0` or `±2^h` for any `x`
//! (of the `c` compacted items `≤ x`, `⌈c/2⌉` or `⌊c/2⌋` move up with double weight). Each
//! compaction consumes at least `k` items; at most `n / 2^h` items ever reach level `h`, so
//! level `h` compacts at most `n / (k·2^h)` times, adding at most `n / k` error, and only levels
//! with `k·2^h ≤ n` compact at all. The sketch tracks the exact sum of its compactions'
//! worst cases as [`max_rank_error`](QuantileSketch::max_rank_error); merges add the parts'.
//!
//! So `ε = L / k`: with the default `k = 1024`, `ε ≤ 1.0 %` for `n ≤ 10^6` and `≤ 2.0 %` for
//! `n ≤ 10^9` (worst case; typical errors are far smaller). While `n < k` the sketch is exact.
//! Space: at most `k − 1` items per level, `L + 1` levels.
//!
//! [`quantile(q)`](QuantileSketch::quantile) returns a stored value `y` (a value that was
//! inserted) with `#{values < y} ≤ q·n + e` and `#{values ≤ y} ≥ q·n − e`, `e` the bound above;
//! when exact it is the lower (nearest-rank) quantile. Non-finite values are ignored.

use arrow::array::Float64Array;
use serde::{Deserialize, Serialize};

use super::common::for_each_finite;
use crate::error::{Error, Result};
use crate::transform::Mergeable;

/// The default per-level capacity `k`.
pub const DEFAULT_SKETCH_SIZE: usize = 1024;
/// The smallest accepted `k`.
pub const MIN_SKETCH_SIZE: usize = 8;
/// The largest accepted `k`.
pub const MAX_SKETCH_SIZE: usize = 1 << 16;
/// Levels are weights `2^h` in a `u64`, so at most 64 of them.
const MAX_LEVELS: usize = 64;

/// A deterministic mergeable quantile sketch over finite `f64` values (see the module docs for
/// the error bound).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SketchState")]
pub struct QuantileSketch {
    /// Per-level capacity (even).
    k: usize,
    /// Values seen.
    n: u64,
    /// Sum of the worst-case rank errors of all compactions so far.
    max_error: u64,
    /// Bit `h`: the offset (0/1) of the next compaction at level `h`.
    parity: u64,
    /// `levels[h]`: items of weight `2^h`, fewer than `k` each between calls.
    levels: Vec<Vec<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SketchState {
    k: usize,
    n: u64,
    max_error: u64,
    parity: u64,
    levels: Vec<Vec<f64>>,
}

impl TryFrom<SketchState> for QuantileSketch {
    type Error = Error;

    fn try_from(s: SketchState) -> Result<Self> {
        let bad = |m: String| Error::param("quantile-sketch", m);
        if !(MIN_SKETCH_SIZE..=MAX_SKETCH_SIZE).contains(&s.k) || s.k % 2 != 0 {
            return Err(bad(format!("invalid k {}", s.k)));
        }
        if s.levels.len() > MAX_LEVELS {
            return Err(bad(format!("{} levels", s.levels.len())));
        }
        let mut total: u64 = 0;
        for (h, level) in s.levels.iter().enumerate() {
            if level.len() >= s.k {
                return Err(bad(format!("level {h} holds {} items", level.len())));
            }
            if level.iter().any(|v| !v.is_finite()) {
                return Err(bad(format!("level {h} holds a non-finite value")));
            }
            total = (level.len() as u64)
                .checked_mul(1u64 << h)
                .and_then(|w| total.checked_add(w))
                .ok_or_else(|| bad("weights overflow".into()))?;
        }
        if total != s.n {
            return Err(bad(format!("levels weigh {total} but n is {}", s.n)));
        }
        if s.max_error > rank_error_bound(s.n, s.k) {
            return Err(bad(format!("max_error {} exceeds its bound", s.max_error)));
        }
        Ok(QuantileSketch {
            k: s.k,
            n: s.n,
            max_error: s.max_error,
            parity: s.parity,
            levels: s.levels,
        })
    }
}

/// The worst-case rank error after `n` values with capacity `k`: `⌊n·L/k⌋` with
/// `L = ⌊log2(n/k)⌋ + 1`, or 0 while `n < k`.
pub fn rank_error_bound(n: u64, k: usize) -> u64 {
    let k = k.max(1) as u64;
    if n < k {
        return 0;
    }
    let levels = u128::from((n / k).ilog2() + 1);
    (u128::from(n) * levels / u128::from(k)) as u64
}

impl Default for QuantileSketch {
    fn default() -> Self {
        QuantileSketch::empty(DEFAULT_SKETCH_SIZE)
    }
}

impl QuantileSketch {
    /// An empty sketch with per-level capacity `k` (even, in `8..=65536`; default 1024).
    pub fn new(k: usize) -> Result<Self> {
        if !(MIN_SKETCH_SIZE..=MAX_SKETCH_SIZE).contains(&k) || k % 2 != 0 {
            return Err(Error::param(
                "quantile-sketch.k",
                format!("must be even and in {MIN_SKETCH_SIZE}..={MAX_SKETCH_SIZE}, got {k}"),
            ));
        }
        Ok(QuantileSketch::empty(k))
    }

    /// An empty sketch; `k` must already be checked.
    pub(crate) fn empty(k: usize) -> Self {
        QuantileSketch {
            k,
            n: 0,
            max_error: 0,
            parity: 0,
            levels: Vec::new(),
        }
    }

    /// The per-level capacity.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The number of values seen.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// Whether no value has been seen.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The number of items stored (the sketch's size in values).
    pub fn stored(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }

    /// A guaranteed bound on `|rank_est(x) − rank(x)|` for every `x`; at most
    /// [`rank_error_bound`]`(count(), k())`.
    pub fn max_rank_error(&self) -> u64 {
        self.max_error
    }

    /// Adds a value; non-finite values (NaN, ±inf) are ignored.
    pub fn insert(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        if self.levels.is_empty() {
            self.levels.push(Vec::with_capacity(self.k));
        }
        self.levels[0].push(x);
        self.n += 1;
        if self.levels[0].len() >= self.k {
            self.compress();
        }
    }

    /// Adds every non-null finite value of `arr`.
    pub fn insert_array(&mut self, arr: &Float64Array) {
        for_each_finite(arr, |v| self.insert(v));
    }

    /// Compacts every level holding `k` or more items, bottom up.
    fn compress(&mut self) {
        let mut h = 0;
        while h < self.levels.len() {
            if self.levels[h].len() >= self.k && h + 1 < MAX_LEVELS {
                self.compact(h);
            }
            h += 1;
        }
    }

    fn compact(&mut self, h: usize) {
        let mut buf = std::mem::take(&mut self.levels[h]);
        buf.sort_unstable_by(f64::total_cmp);
        let odd_out = if buf.len() % 2 == 1 { buf.pop() } else { None };
        let offset = ((self.parity >> h) & 1) as usize;
        self.parity ^= 1 << h;
        if self.levels.len() == h + 1 {
            self.levels.push(Vec::with_capacity(self.k));
        }
        self.levels[h + 1].extend(buf.iter().skip(offset).step_by(2).copied());
        buf.clear();
        buf.extend(odd_out);
        self.levels[h] = buf;
        self.max_error += 1 << h;
    }

    /// The estimated number of values `≤ x` (within [`max_rank_error`](Self::max_rank_error)).
    pub fn rank(&self, x: f64) -> u64 {
        self.levels
            .iter()
            .enumerate()
            .map(|(h, l)| (l.iter().filter(|&&v| v <= x).count() as u64) << h)
            .sum()
    }

    /// The `q`-quantile (`q` clamped to `[0, 1]`), or `None` when empty. See the module docs
    /// for its guarantee.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.quantiles(&[q]).map(|v| v[0])
    }

    /// Several quantiles at once (one sort), in the order of `qs`; `None` when empty.
    pub fn quantiles(&self, qs: &[f64]) -> Option<Vec<f64>> {
        if self.n == 0 {
            return None;
        }
        let mut items: Vec<(f64, u64)> = Vec::with_capacity(self.stored());
        for (h, level) in self.levels.iter().enumerate() {
            items.extend(level.iter().map(|&v| (v, 1u64 << h)));
        }
        items.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let mut cum = Vec::with_capacity(items.len());
        let mut acc = 0u64;
        for &(_, w) in &items {
            acc += w;
            cum.push(acc);
        }
        let n = self.n as f64;
        Some(
            qs.iter()
                .map(|&q| {
                    // A NaN `q` casts to rank 0 and so gives the minimum.
                    let q = q.clamp(0.0, 1.0);
                    let target = ((q * n).ceil() as u64).clamp(1, self.n);
                    let i = cum.partition_point(|&c| c < target).min(items.len() - 1);
                    items[i].0
                })
                .collect(),
        )
    }
}

impl Mergeable for QuantileSketch {
    /// Merges `other` into `self`; both must have the same `k`.
    fn merge(&mut self, other: &Self) -> Result<()> {
        if self.k != other.k {
            return Err(Error::param(
                "quantile-sketch.k",
                format!("cannot merge sketches of k {} and {}", self.k, other.k),
            ));
        }
        let n = self
            .n
            .checked_add(other.n)
            .ok_or_else(|| Error::param("quantile-sketch", "count overflows u64"))?;
        while self.levels.len() < other.levels.len() {
            self.levels.push(Vec::new());
        }
        for (mine, theirs) in self.levels.iter_mut().zip(&other.levels) {
            mine.extend_from_slice(theirs);
        }
        self.n = n;
        self.max_error += other.max_error;
        self.compress();
        Ok(())
    }
}

#[cfg(test)]
#[path = "sketch_tests.rs"]
mod tests;

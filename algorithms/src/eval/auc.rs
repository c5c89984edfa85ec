//! Exact ROC AUC: [`Auc`] over the whole stream and [`WindowedAuc`] over the last N rows.
//!
//! AUC is the Mann–Whitney statistic: the weighted share of (positive, negative) pairs whose
//! positive scores higher, ties counting half. It is computed at [`value`](Metric::value) time
//! by sorting the scores and walking the tie groups once, `O(n log n)`; with unit weights this
//! is exactly the peers' average-rank formula. NaN predictions rank above every number and tie
//! with each other; `-0.0` ties with `0.0`.

use std::cmp::Ordering;
use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{is_positive, Metric};
use crate::error::{Error, Result};
use crate::transform::Mergeable;

/// A prediction and its weight, as the AUC buffers keep them (8 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Scored(f32, f32);

/// One score per tie class: all NaNs alike, `-0.0` as `0.0`.
#[inline]
fn canonical(p: f32) -> f32 {
    if p.is_nan() {
        f32::NAN
    } else {
        p + 0.0
    }
}

fn sort(v: &mut [Scored]) {
    // Stable merge sort: a sorted prefix (from an earlier `prepare`) makes re-sorting cheap.
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
}

/// The AUC of positives `pos` and negatives `neg`, both sorted ascending by score.
fn auc_sorted(pos: &[Scored], neg: &[Scored]) -> f64 {
    let wp: f64 = pos.iter().map(|s| f64::from(s.1)).sum();
    let wn: f64 = neg.iter().map(|s| f64::from(s.1)).sum();
    if wp <= 0.0 || wn <= 0.0 {
        return f64::NAN;
    }
    let (mut num, mut neg_below) = (0.0f64, 0.0f64);
    let (mut i, mut j) = (0, 0);
    while i < pos.len() {
        let s = pos[i].0;
        while j < neg.len() && neg[j].0.total_cmp(&s) == Ordering::Less {
            neg_below += f64::from(neg[j].1);
            j += 1;
        }
        // Negatives tied with `s` stay unconsumed: the next, larger score counts them below.
        let neg_tie: f64 = neg[j..]
            .iter()
            .take_while(|n| n.0.total_cmp(&s) == Ordering::Equal)
            .map(|n| f64::from(n.1))
            .sum();
        let mut pos_tie = 0.0f64;
        while i < pos.len() && pos[i].0.total_cmp(&s) == Ordering::Equal {
            pos_tie += f64::from(pos[i].1);
            i += 1;
        }
        num += pos_tie * (neg_below + 0.5 * neg_tie);
    }
    num / (wp * wn)
}

/// Exact ROC AUC over every row of the stream (binary: predictions are `P(label = 1)`, labels
/// 0/1).
///
/// Memory is `O(n)`: 8 bytes per row (score and weight), grown amortized; reading the value
/// sorts, `O(n log n)`, or `O(n + k log k)` after [`prepare`](Metric::prepare) when `k` rows
/// came since the last one — so frequent window reports of a cumulative AUC stay affordable.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Auc {
    pos: Vec<Scored>,
    neg: Vec<Scored>,
    #[serde(skip)]
    sorted: bool,
}

impl Auc {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rows seen.
    pub fn len(&self) -> usize {
        self.pos.len() + self.neg.len()
    }

    /// Whether no row was seen.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Metric for Auc {
    #[inline]
    fn update(&mut self, prediction: f32, label: f32, weight: f32) {
        let s = Scored(canonical(prediction), weight);
        if is_positive(label) {
            self.pos.push(s);
        } else {
            self.neg.push(s);
        }
        self.sorted = false;
    }

    fn value(&self) -> f64 {
        if self.sorted {
            return auc_sorted(&self.pos, &self.neg);
        }
        let (mut pos, mut neg) = (self.pos.clone(), self.neg.clone());
        sort(&mut pos);
        sort(&mut neg);
        auc_sorted(&pos, &neg)
    }

    fn reset(&mut self) {
        self.pos.clear();
        self.neg.clear();
        self.sorted = true;
    }

    fn prepare(&mut self) {
        if !self.sorted {
            sort(&mut self.pos);
            sort(&mut self.neg);
            self.sorted = true;
        }
    }
}

impl Mergeable for Auc {
    fn merge(&mut self, other: &Self) -> Result<()> {
        self.pos.extend_from_slice(&other.pos);
        self.neg.extend_from_slice(&other.neg);
        self.sorted = false;
        Ok(())
    }
}

/// Exact ROC AUC over the last `window` rows (a ring buffer of `window` entries); reading the
/// value costs `O(window log window)`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowedAuc {
    window: usize,
    /// Score, weight and whether the label is positive, oldest first.
    buf: VecDeque<(f32, f32, bool)>,
}

impl WindowedAuc {
    /// An AUC over the last `window` rows; `window` must be at least 1.
    pub fn new(window: usize) -> Result<Self> {
        if window == 0 {
            return Err(Error::param("auc.window", "must be at least 1"));
        }
        Ok(WindowedAuc {
            window,
            buf: VecDeque::with_capacity(window),
        })
    }

    /// The window length in rows.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Rows currently in the window.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

impl Metric for WindowedAuc {
    #[inline]
    fn update(&mut self, prediction: f32, label: f32, weight: f32) {
        while self.buf.len() >= self.window.max(1) {
            self.buf.pop_front();
        }
        self.buf
            .push_back((canonical(prediction), weight, is_positive(label)));
    }

    fn value(&self) -> f64 {
        let (mut pos, mut neg) = (Vec::new(), Vec::new());
        for &(s, w, p) in &self.buf {
            if p { &mut pos } else { &mut neg }.push(Scored(s, w));
        }
        sort(&mut pos);
        sort(&mut neg);
        auc_sorted(&pos, &neg)
    }

    fn reset(&mut self) {
        self.buf.clear();
    }
}

impl Mergeable for WindowedAuc {
    /// Appends `other`'s window after `self`'s (other is the later part of the stream), keeping
    /// the last `window` rows.
    fn merge(&mut self, other: &Self) -> Result<()> {
        if self.window != other.window {
            return Err(Error::Shape(format!(
                "cannot merge windowed AUCs of {} and {} rows",
                self.window, other.window
            )));
        }
        for &(s, w, p) in &other.buf {
            self.update(s, if p { 1.0 } else { 0.0 }, w);
        }
        Ok(())
    }
}

//! Sliding accumulators for over windows: every row enters once and leaves once, O(1) amortized.
//!
//! - `count`: the number of rows in the window (no state);
//! - `sum`, `mean`: add on entry, subtract on exit ([`SumState`] keeps NaN and infinities apart);
//! - `min`, `max`: monotonic deques of (row number, value);
//! - `last`: the latest non-null value while its row is in the window (any older non-null
//!   value left before it, so nothing else needs keeping);
//! - `distinct_count`: a value-hash → count map.
//!
//! Rows are numbered per key in arrival order; a window is the rows `first..next`.

use std::collections::{HashMap, VecDeque};

use super::accumulator::{Bits, ColumnBuilder, SumState};
use super::aggregate::{AggKind, Scalar, Values};
use super::window_table::IdBuild;

/// The state of one aggregate of one key's over window.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) enum OverAcc {
    Count,
    Sum(SumState, VecDeque<Option<Bits>>),
    Mean(SumState, VecDeque<Option<Bits>>),
    Min(VecDeque<(u64, Bits)>),
    Max(VecDeque<(u64, Bits)>),
    Last(Option<(u64, Scalar)>),
    Distinct(HashMap<u64, u32, IdBuild>, VecDeque<Option<u64>>),
}

impl OverAcc {
    /// An empty accumulator for `kind`.
    pub(crate) fn new(kind: AggKind) -> OverAcc {
        match kind {
            AggKind::Count => OverAcc::Count,
            AggKind::Sum => OverAcc::Sum(SumState::default(), VecDeque::new()),
            AggKind::Mean => OverAcc::Mean(SumState::default(), VecDeque::new()),
            AggKind::Min => OverAcc::Min(VecDeque::new()),
            AggKind::Max => OverAcc::Max(VecDeque::new()),
            AggKind::Last => OverAcc::Last(None),
            AggKind::DistinctCount => OverAcc::Distinct(HashMap::default(), VecDeque::new()),
        }
    }

    /// Row number `seq` (the value at `row` of `values`) enters the window.
    #[inline]
    pub(crate) fn push(&mut self, values: &Values<'_>, row: usize, seq: u64) {
        match self {
            OverAcc::Count => {}
            OverAcc::Sum(s, vals) | OverAcc::Mean(s, vals) => {
                let v = values.f64(row);
                if let Some(v) = v {
                    s.add(v);
                }
                vals.push_back(v.map(Bits));
            }
            OverAcc::Min(deque) => {
                if let Some(v) = values.f64(row).filter(|v| !v.is_nan()) {
                    while deque.back().is_some_and(|b| b.1 .0 >= v) {
                        deque.pop_back();
                    }
                    deque.push_back((seq, Bits(v)));
                }
            }
            OverAcc::Max(deque) => {
                if let Some(v) = values.f64(row).filter(|v| !v.is_nan()) {
                    while deque.back().is_some_and(|b| b.1 .0 <= v) {
                        deque.pop_back();
                    }
                    deque.push_back((seq, Bits(v)));
                }
            }
            OverAcc::Last(last) => {
                if !values.is_null(row) {
                    let mut slot = last.take().map(|(_, v)| v);
                    values.store(row, &mut slot);
                    *last = slot.map(|v| (seq, v));
                }
            }
            OverAcc::Distinct(counts, vals) => {
                let h = values.hash(row);
                if let Some(h) = h {
                    *counts.entry(h).or_insert(0) += 1;
                }
                vals.push_back(h);
            }
        }
    }

    /// Row number `seq`, the oldest in the window, leaves it.
    #[inline]
    pub(crate) fn evict(&mut self, seq: u64) {
        match self {
            OverAcc::Count | OverAcc::Last(_) => {}
            OverAcc::Sum(s, vals) | OverAcc::Mean(s, vals) => {
                if let Some(Some(v)) = vals.pop_front() {
                    s.sub(v.0);
                }
            }
            OverAcc::Min(deque) | OverAcc::Max(deque) => {
                if deque.front().is_some_and(|f| f.0 == seq) {
                    deque.pop_front();
                }
            }
            OverAcc::Distinct(counts, vals) => {
                if let Some(Some(h)) = vals.pop_front() {
                    if let Some(c) = counts.get_mut(&h) {
                        *c -= 1;
                        if *c == 0 {
                            counts.remove(&h);
                        }
                    }
                }
            }
        }
    }

    /// Appends the value over the rows `first..next` to `out`.
    #[inline]
    pub(crate) fn append(&self, first: u64, next: u64, out: &mut ColumnBuilder) {
        match self {
            OverAcc::Count => out.push_i64(Some((next - first) as i64)),
            OverAcc::Sum(s, _) => out.push_f64(s.total()),
            OverAcc::Mean(s, _) => out.push_f64(s.mean()),
            OverAcc::Min(d) | OverAcc::Max(d) => out.push_f64(d.front().map(|f| f.1 .0)),
            OverAcc::Last(last) => {
                out.push_scalar(last.as_ref().filter(|(s, _)| *s >= first).map(|(_, v)| v))
            }
            OverAcc::Distinct(counts, _) => out.push_i64(Some(counts.len() as i64)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Float64Array, Int64Array};
    use arrow::datatypes::DataType;

    /// Runs a window of the last 3 rows over `xs`, returning the aggregate after each row.
    fn slide(kind: AggKind, xs: &[Option<f64>]) -> Vec<Option<f64>> {
        let a = Float64Array::from(xs.to_vec());
        let v = Values::F64(&a);
        let mut acc = OverAcc::new(kind);
        let (mut first, mut next) = (0u64, 0u64);
        let mut out = ColumnBuilder::new(&DataType::Float64);
        for row in 0..xs.len() {
            acc.push(&v, row, next);
            next += 1;
            while next - first > 3 {
                acc.evict(first);
                first += 1;
            }
            acc.append(first, next, &mut out);
        }
        let col = out.finish();
        let col = col.as_any().downcast_ref::<Float64Array>().unwrap();
        (0..col.len())
            .map(|i| col.is_valid(i).then(|| col.value(i)))
            .collect()
    }

    #[test]
    fn monotonic_deques_and_sums_evict_in_order() {
        let xs = [
            Some(5.0),
            Some(1.0),
            None,
            Some(4.0),
            Some(3.0),
            Some(9.0),
            None,
            None,
            None,
        ];
        assert_eq!(
            slide(AggKind::Min, &xs),
            vec![
                Some(5.0),
                Some(1.0),
                Some(1.0),
                Some(1.0),
                Some(3.0),
                Some(3.0),
                Some(3.0),
                Some(9.0),
                None
            ]
        );
        assert_eq!(
            slide(AggKind::Max, &xs),
            vec![
                Some(5.0),
                Some(5.0),
                Some(5.0),
                Some(4.0),
                Some(4.0),
                Some(9.0),
                Some(9.0),
                Some(9.0),
                None
            ]
        );
        assert_eq!(
            slide(AggKind::Sum, &xs),
            vec![
                Some(5.0),
                Some(6.0),
                Some(6.0),
                Some(5.0),
                Some(7.0),
                Some(16.0),
                Some(12.0),
                Some(9.0),
                None
            ]
        );
        assert_eq!(
            slide(AggKind::Last, &xs),
            vec![
                Some(5.0),
                Some(1.0),
                Some(1.0),
                Some(4.0),
                Some(3.0),
                Some(9.0),
                Some(9.0),
                Some(9.0),
                None
            ]
        );
    }

    #[test]
    fn distinct_counts_drop_values_that_leave() {
        let a = Int64Array::from(vec![1, 1, 2, 3, 3, 3]);
        let v = Values::I64(&a);
        let mut acc = OverAcc::new(AggKind::DistinctCount);
        let mut got = Vec::new();
        for row in 0..a.len() as u64 {
            acc.push(&v, row as usize, row);
            if row >= 2 {
                acc.evict(row - 2);
            }
            if let OverAcc::Distinct(c, _) = &acc {
                got.push(c.len());
            }
        }
        assert_eq!(got, vec![1, 1, 2, 2, 1, 1]);
    }
}

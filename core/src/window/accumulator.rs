//! Window accumulators: one [`Acc`] per (key, window, aggregate). They only grow (windows never
//! retract), merge (session windows), serialize (snapshots), and append their value to a
//! [`ColumnBuilder`] when the window fires.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, Int64Builder, StringBuilder};
use arrow::datatypes::DataType;

use super::aggregate::{AggKind, BoundAgg, Scalar, Values};
use super::window_table::IdBuild;

/// Serde for `f64` as its bit pattern, so NaN and infinities survive JSON.
pub(crate) mod bits {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(v.to_bits())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(f64::from_bits(u64::deserialize(d)?))
    }
}

/// An `f64` that serializes as its bit pattern.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Bits(#[serde(with = "bits")] pub(crate) f64);

/// A sum that can also subtract exactly-enough: finite values are summed, NaN and infinities are
/// counted apart, so removing an infinity does not leave NaN behind.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SumState {
    #[serde(with = "bits")]
    pub(crate) sum: f64,
    pub(crate) n: i64,
    nan: u32,
    pos_inf: u32,
    neg_inf: u32,
}

impl SumState {
    #[inline]
    pub(crate) fn add(&mut self, v: f64) {
        self.n += 1;
        if v.is_finite() {
            self.sum += v;
        } else if v.is_nan() {
            self.nan += 1;
        } else if v > 0.0 {
            self.pos_inf += 1;
        } else {
            self.neg_inf += 1;
        }
    }

    #[inline]
    pub(crate) fn sub(&mut self, v: f64) {
        self.n -= 1;
        if v.is_finite() {
            self.sum -= v;
        } else if v.is_nan() {
            self.nan -= 1;
        } else if v > 0.0 {
            self.pos_inf -= 1;
        } else {
            self.neg_inf -= 1;
        }
        if self.n == 0 {
            self.sum = 0.0; // no drift survives an empty window
        }
    }

    pub(crate) fn merge(&mut self, o: &SumState) {
        self.sum += o.sum;
        self.n += o.n;
        self.nan += o.nan;
        self.pos_inf += o.pos_inf;
        self.neg_inf += o.neg_inf;
    }

    /// The sum, `None` when no value was added.
    pub(crate) fn total(&self) -> Option<f64> {
        if self.n == 0 {
            None
        } else if self.nan > 0 || (self.pos_inf > 0 && self.neg_inf > 0) {
            Some(f64::NAN)
        } else if self.pos_inf > 0 {
            Some(f64::INFINITY)
        } else if self.neg_inf > 0 {
            Some(f64::NEG_INFINITY)
        } else {
            Some(self.sum)
        }
    }

    /// The mean, `None` when no value was added.
    pub(crate) fn mean(&self) -> Option<f64> {
        self.total().map(|s| s / self.n as f64)
    }
}

/// The state of one aggregate of one window.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Acc {
    Count(i64),
    Sum(SumState),
    Mean(SumState),
    Min(Option<Bits>),
    Max(Option<Bits>),
    /// The arrival sequence number of the value, so that merged sessions keep the latest.
    Last(u64, Option<Scalar>),
    Distinct(HashSet<u64, IdBuild>),
}

impl Acc {
    /// An empty accumulator for `kind`.
    pub(crate) fn new(kind: AggKind) -> Acc {
        match kind {
            AggKind::Count => Acc::Count(0),
            AggKind::Sum => Acc::Sum(SumState::default()),
            AggKind::Mean => Acc::Mean(SumState::default()),
            AggKind::Min => Acc::Min(None),
            AggKind::Max => Acc::Max(None),
            AggKind::Last => Acc::Last(0, None),
            AggKind::DistinctCount => Acc::Distinct(HashSet::default()),
        }
    }

    /// Resets to empty, keeping allocations.
    pub(crate) fn reset(&mut self) {
        match self {
            Acc::Count(n) => *n = 0,
            Acc::Sum(s) | Acc::Mean(s) => *s = SumState::default(),
            Acc::Min(v) | Acc::Max(v) => *v = None,
            Acc::Last(seq, v) => {
                *seq = 0;
                *v = None;
            }
            Acc::Distinct(set) => set.clear(),
        }
    }

    /// Adds the value at `row` (arrival number `seq`).
    #[inline]
    pub(crate) fn update(&mut self, values: &Values<'_>, row: usize, seq: u64) {
        match self {
            Acc::Count(n) => *n += 1,
            Acc::Sum(s) | Acc::Mean(s) => {
                if let Some(v) = values.f64(row) {
                    s.add(v)
                }
            }
            Acc::Min(m) => {
                if let Some(v) = values.f64(row).filter(|v| !v.is_nan()) {
                    if m.is_none_or(|m| v < m.0) {
                        *m = Some(Bits(v));
                    }
                }
            }
            Acc::Max(m) => {
                if let Some(v) = values.f64(row).filter(|v| !v.is_nan()) {
                    if m.is_none_or(|m| v > m.0) {
                        *m = Some(Bits(v));
                    }
                }
            }
            Acc::Last(s, v) => {
                if !values.is_null(row) && seq >= *s {
                    *s = seq;
                    values.store(row, v);
                }
            }
            Acc::Distinct(set) => {
                if let Some(h) = values.hash(row) {
                    set.insert(h);
                }
            }
        }
    }

    /// Folds `other` (of the same kind) into `self`.
    pub(crate) fn merge(&mut self, other: Acc) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::Sum(a), Acc::Sum(b)) | (Acc::Mean(a), Acc::Mean(b)) => a.merge(&b),
            (Acc::Min(a), Acc::Min(Some(b))) if a.is_none_or(|a| b.0 < a.0) => *a = Some(b),
            (Acc::Max(a), Acc::Max(Some(b))) if a.is_none_or(|a| b.0 > a.0) => *a = Some(b),
            (Acc::Last(sa, a), Acc::Last(sb, b)) if b.is_some() && (a.is_none() || sb > *sa) => {
                *sa = sb;
                *a = b;
            }
            (Acc::Distinct(a), Acc::Distinct(b)) => a.extend(b),
            // the other side adds nothing (kinds always match: one aggregate list)
            _ => {}
        }
    }

    /// Appends the aggregate's value to `out`.
    pub(crate) fn append(&self, out: &mut ColumnBuilder) {
        match self {
            Acc::Count(n) => out.push_i64(Some(*n)),
            Acc::Sum(s) => out.push_f64(s.total()),
            Acc::Mean(s) => out.push_f64(s.mean()),
            Acc::Min(m) | Acc::Max(m) => out.push_f64(m.map(|b| b.0)),
            Acc::Last(_, v) => out.push_scalar(v.as_ref()),
            Acc::Distinct(set) => out.push_i64(Some(set.len() as i64)),
        }
    }
}

/// Fresh accumulators for `aggs`.
pub(crate) fn new_accs(aggs: &[BoundAgg]) -> Vec<Acc> {
    aggs.iter().map(|a| Acc::new(a.kind)).collect()
}

/// An output column under construction, typed by the aggregate's output type.
pub(crate) enum ColumnBuilder {
    I64(Int64Builder),
    F64(Float64Builder),
    Str(StringBuilder),
}

impl ColumnBuilder {
    /// A builder for `t` (Int64, Float64 or Utf8: the only aggregate output types).
    pub(crate) fn new(t: &DataType) -> ColumnBuilder {
        match t {
            DataType::Utf8 => ColumnBuilder::Str(StringBuilder::new()),
            DataType::Float64 => ColumnBuilder::F64(Float64Builder::new()),
            _ => ColumnBuilder::I64(Int64Builder::new()),
        }
    }

    /// Builders for the outputs of `aggs`.
    pub(crate) fn for_aggs(aggs: &[BoundAgg]) -> Vec<ColumnBuilder> {
        aggs.iter().map(|a| ColumnBuilder::new(&a.output)).collect()
    }

    #[inline]
    pub(crate) fn push_i64(&mut self, v: Option<i64>) {
        match self {
            ColumnBuilder::I64(b) => b.append_option(v),
            ColumnBuilder::F64(b) => b.append_option(v.map(|v| v as f64)),
            ColumnBuilder::Str(b) => b.append_null(),
        }
    }

    #[inline]
    pub(crate) fn push_f64(&mut self, v: Option<f64>) {
        match self {
            ColumnBuilder::F64(b) => b.append_option(v),
            ColumnBuilder::I64(b) => b.append_option(v.map(|v| v as i64)),
            ColumnBuilder::Str(b) => b.append_null(),
        }
    }

    #[inline]
    pub(crate) fn push_scalar(&mut self, v: Option<&Scalar>) {
        match (self, v) {
            (ColumnBuilder::I64(b), Some(Scalar::I64(x))) => b.append_value(*x),
            (ColumnBuilder::F64(b), Some(Scalar::F64(x))) => b.append_value(*x),
            (ColumnBuilder::Str(b), Some(Scalar::Str(x))) => b.append_value(x),
            (ColumnBuilder::I64(b), _) => b.append_null(),
            (ColumnBuilder::F64(b), _) => b.append_null(),
            (ColumnBuilder::Str(b), _) => b.append_null(),
        }
    }

    /// The column built so far; the builder is left empty for reuse.
    pub(crate) fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::I64(b) => Arc::new(b.finish()),
            ColumnBuilder::F64(b) => Arc::new(b.finish()),
            ColumnBuilder::Str(b) => Arc::new(b.finish()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Float64Array, Int64Array, StringArray};

    fn build(acc: &Acc, t: DataType) -> ArrayRef {
        let mut b = ColumnBuilder::new(&t);
        acc.append(&mut b);
        b.finish()
    }

    #[test]
    fn accumulators_update_and_merge() {
        let x = Float64Array::from(vec![Some(3.0), None, Some(-1.0), Some(f64::NAN)]);
        let v = Values::F64(&x);
        let mut accs: Vec<Acc> = [AggKind::Count, AggKind::Sum, AggKind::Min, AggKind::Max]
            .into_iter()
            .map(Acc::new)
            .collect();
        for row in 0..3 {
            for a in &mut accs {
                a.update(&v, row, row as u64);
            }
        }
        assert_eq!(accs[0], Acc::Count(3));
        assert_eq!(accs[2], Acc::Min(Some(Bits(-1.0))));
        let mut other = Acc::new(AggKind::Max);
        other.update(&v, 3, 3); // NaN is ignored by max
        assert_eq!(other, Acc::Max(None));
        accs[3].merge(other);
        assert_eq!(accs[3], Acc::Max(Some(Bits(3.0))));
        let sum = build(&accs[1], DataType::Float64);
        let sum = sum.as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(sum.value(0), 2.0);
    }

    #[test]
    fn last_keeps_the_latest_non_null_across_merges() {
        let s = StringArray::from(vec![Some("a"), None, Some("c")]);
        let v = Values::Utf8(&s);
        let mut early = Acc::new(AggKind::Last);
        early.update(&v, 0, 10);
        early.update(&v, 1, 11); // null: ignored
        let mut late = Acc::new(AggKind::Last);
        late.update(&v, 2, 12);
        let mut merged = late.clone();
        merged.merge(early.clone());
        early.merge(late);
        assert_eq!(merged, early);
        assert_eq!(early, Acc::Last(12, Some(Scalar::Str("c".into()))));
    }

    #[test]
    fn sum_state_subtracts_infinities_and_empty_is_null() {
        let mut s = SumState::default();
        s.add(1.0);
        s.add(f64::INFINITY);
        assert_eq!(s.total(), Some(f64::INFINITY));
        s.sub(f64::INFINITY);
        assert_eq!(s.total(), Some(1.0));
        s.sub(1.0);
        assert_eq!(s.total(), None);
        let mut d = Acc::new(AggKind::DistinctCount);
        let i = Int64Array::from(vec![1, 2, 1]);
        for row in 0..3 {
            d.update(&Values::I64(&i), row, 0);
        }
        let out = build(&d, DataType::Int64);
        assert_eq!(
            out.as_any().downcast_ref::<Int64Array>().unwrap().value(0),
            2
        );
    }

    #[test]
    fn state_survives_json_with_non_finite_values() {
        let accs = vec![
            Acc::Min(Some(Bits(f64::NEG_INFINITY))),
            Acc::Last(3, Some(Scalar::F64(f64::NAN))),
        ];
        let json = serde_json::to_string(&accs).unwrap();
        let back: Vec<Acc> = serde_json::from_str(&json).unwrap();
        assert_eq!(back[0], accs[0]);
        assert!(matches!(back[1], Acc::Last(3, Some(Scalar::F64(v))) if v.is_nan()));
    }
}

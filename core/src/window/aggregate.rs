//! Aggregate specs ([`Agg`]) and their binding to a schema.
//!
//! | aggregate | input | output |
//! |---|---|---|
//! | `count` | none (counts rows) | Int64 |
//! | `sum`, `mean` | Int64, Int32, Float64, Float32 | Float64 (null when no non-null value) |
//! | `min`, `max` | Int64, Int32, Float64, Float32 | Float64 (null when no non-null value; NaN ignored) |
//! | `last` | numeric or Utf8 | Int64 for integer input, Float64 for float input, Utf8 for Utf8 |
//! | `distinct_count` | numeric or Utf8 | Int64 |
//!
//! Null values are skipped by every aggregate but `count`, which counts rows. `last` is the value
//! of the latest row (in arrival order) whose value is not null. `distinct_count` is exact over
//! 64-bit xxh3 hashes of the values: two distinct values collide with probability 2⁻⁶⁴, so among
//! `n` distinct values the chance of any undercount is below `n² / 2⁶⁵` (under 3·10⁻⁸ for a
//! million values). `-0.0` counts as `0.0` and every NaN as one value.

use arrow::array::{
    Array, AsArray, Float32Array, Float64Array, Int32Array, Int64Array, StringArray,
};
use arrow::datatypes::{DataType, Float32Type, Float64Type, Int32Type, Int64Type, Schema};
use arrow::record_batch::RecordBatch;
use xxhash_rust::xxh3::xxh3_64;

use crate::error::{Error, Result};

/// What an [`Agg`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AggKind {
    /// Number of rows.
    Count,
    /// Sum of the non-null values.
    Sum,
    /// Mean of the non-null values.
    Mean,
    /// Smallest non-null value.
    Min,
    /// Largest non-null value.
    Max,
    /// Latest non-null value.
    Last,
    /// Number of distinct non-null values.
    DistinctCount,
}

/// One aggregate of a window or over window: what, over which column, under which name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agg {
    /// What it computes.
    pub kind: AggKind,
    /// The input column (`None` for `count`).
    pub column: Option<String>,
    /// The output column name.
    pub alias: String,
}

impl Agg {
    fn with(kind: AggKind, column: &str, alias: &str) -> Agg {
        Agg {
            kind,
            column: Some(column.to_string()),
            alias: alias.to_string(),
        }
    }

    /// Number of rows, as `alias` (Int64).
    pub fn count(alias: &str) -> Agg {
        Agg {
            kind: AggKind::Count,
            column: None,
            alias: alias.to_string(),
        }
    }

    /// Sum of `column`, as `alias` (Float64).
    pub fn sum(column: &str, alias: &str) -> Agg {
        Agg::with(AggKind::Sum, column, alias)
    }

    /// Mean of `column`, as `alias` (Float64).
    pub fn mean(column: &str, alias: &str) -> Agg {
        Agg::with(AggKind::Mean, column, alias)
    }

    /// Minimum of `column`, as `alias` (Float64).
    pub fn min(column: &str, alias: &str) -> Agg {
        Agg::with(AggKind::Min, column, alias)
    }

    /// Maximum of `column`, as `alias` (Float64).
    pub fn max(column: &str, alias: &str) -> Agg {
        Agg::with(AggKind::Max, column, alias)
    }

    /// Latest non-null value of `column`, as `alias` (see the module table for its type).
    pub fn last(column: &str, alias: &str) -> Agg {
        Agg::with(AggKind::Last, column, alias)
    }

    /// Number of distinct values of `column`, as `alias` (Int64).
    pub fn distinct_count(column: &str, alias: &str) -> Agg {
        Agg::with(AggKind::DistinctCount, column, alias)
    }
}

/// An aggregate bound to a schema: the input column's index and the output type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BoundAgg {
    pub(crate) kind: AggKind,
    pub(crate) column: Option<usize>,
    pub(crate) output: DataType,
}

fn is_numeric(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int64 | DataType::Int32 | DataType::Float64 | DataType::Float32
    )
}

/// Binds `aggs` to `schema`; errors name the operator, the aggregate and the column.
pub(crate) fn bind_aggs(aggs: &[Agg], schema: &Schema, operator: &str) -> Result<Vec<BoundAgg>> {
    aggs.iter()
        .map(|agg| {
            let Some(name) = &agg.column else {
                return Ok(BoundAgg {
                    kind: agg.kind,
                    column: None,
                    output: DataType::Int64,
                });
            };
            let index = schema.index_of(name).map_err(|_| {
                Error::schema(
                    operator,
                    format!(
                        "aggregate `{}` reads column `{name}`, which is not in the stream",
                        agg.alias
                    ),
                )
            })?;
            let input = schema.field(index).data_type();
            let output = match (agg.kind, input) {
                (AggKind::Count | AggKind::DistinctCount, t)
                    if is_numeric(t) || *t == DataType::Utf8 =>
                {
                    DataType::Int64
                }
                (AggKind::Sum | AggKind::Mean | AggKind::Min | AggKind::Max, t)
                    if is_numeric(t) =>
                {
                    DataType::Float64
                }
                (AggKind::Last, DataType::Int64 | DataType::Int32) => DataType::Int64,
                (AggKind::Last, DataType::Float64 | DataType::Float32) => DataType::Float64,
                (AggKind::Last, DataType::Utf8) => DataType::Utf8,
                (kind, t) => {
                    return Err(Error::schema(
                        operator,
                        format!(
                            "aggregate `{}` ({kind:?}) cannot read column `{name}` of type {t}",
                            agg.alias
                        ),
                    ))
                }
            };
            Ok(BoundAgg {
                kind: agg.kind,
                column: Some(index),
                output,
            })
        })
        .collect()
}

/// A typed view of an aggregate's input column for one batch (downcast once per batch).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Values<'a> {
    /// `count`: no input.
    None,
    I64(&'a Int64Array),
    I32(&'a Int32Array),
    F64(&'a Float64Array),
    F32(&'a Float32Array),
    Utf8(&'a StringArray),
}

/// A scalar kept by `last`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Scalar {
    I64(i64),
    F64(#[serde(with = "super::accumulator::bits")] f64),
    Str(String),
}

impl<'a> Values<'a> {
    /// The views of `aggs`' input columns in `batch`.
    pub(crate) fn of(batch: &'a RecordBatch, aggs: &[BoundAgg]) -> Vec<Values<'a>> {
        aggs.iter()
            .map(|a| match a.column {
                None => Values::None,
                Some(i) => {
                    let c = batch.column(i);
                    match c.data_type() {
                        DataType::Int64 => Values::I64(c.as_primitive::<Int64Type>()),
                        DataType::Int32 => Values::I32(c.as_primitive::<Int32Type>()),
                        DataType::Float64 => Values::F64(c.as_primitive::<Float64Type>()),
                        DataType::Float32 => Values::F32(c.as_primitive::<Float32Type>()),
                        DataType::Utf8 => Values::Utf8(c.as_string::<i32>()),
                        _ => Values::None,
                    }
                }
            })
            .collect()
    }

    /// The value at `row` as a float (`None` when null or not numeric).
    #[inline]
    pub(crate) fn f64(&self, row: usize) -> Option<f64> {
        match self {
            Values::I64(a) => a.is_valid(row).then(|| a.value(row) as f64),
            Values::I32(a) => a.is_valid(row).then(|| a.value(row) as f64),
            Values::F64(a) => a.is_valid(row).then(|| a.value(row)),
            Values::F32(a) => a.is_valid(row).then(|| a.value(row) as f64),
            Values::None | Values::Utf8(_) => None,
        }
    }

    /// A 64-bit hash of the value at `row`, for `distinct_count` (`None` when null).
    #[inline]
    pub(crate) fn hash(&self, row: usize) -> Option<u64> {
        fn float(v: f64) -> u64 {
            let v = if v == 0.0 {
                0.0
            } else if v.is_nan() {
                f64::NAN
            } else {
                v
            };
            xxh3_64(&v.to_bits().to_le_bytes())
        }
        match self {
            Values::I64(a) => a
                .is_valid(row)
                .then(|| xxh3_64(&a.value(row).to_le_bytes())),
            Values::I32(a) => a
                .is_valid(row)
                .then(|| xxh3_64(&(a.value(row) as i64).to_le_bytes())),
            Values::F64(a) => a.is_valid(row).then(|| float(a.value(row))),
            Values::F32(a) => a.is_valid(row).then(|| float(a.value(row) as f64)),
            Values::Utf8(a) => a.is_valid(row).then(|| xxh3_64(a.value(row).as_bytes())),
            Values::None => None,
        }
    }

    /// Whether the value at `row` is null (never for `count`).
    #[inline]
    pub(crate) fn is_null(&self, row: usize) -> bool {
        match self {
            Values::I64(a) => a.is_null(row),
            Values::I32(a) => a.is_null(row),
            Values::F64(a) => a.is_null(row),
            Values::F32(a) => a.is_null(row),
            Values::Utf8(a) => a.is_null(row),
            Values::None => false,
        }
    }

    /// Stores the value at `row` into `slot` for `last`, reusing a string's buffer.
    #[inline]
    pub(crate) fn store(&self, row: usize, slot: &mut Option<Scalar>) {
        match self {
            Values::I64(a) => *slot = Some(Scalar::I64(a.value(row))),
            Values::I32(a) => *slot = Some(Scalar::I64(a.value(row) as i64)),
            Values::F64(a) => *slot = Some(Scalar::F64(a.value(row))),
            Values::F32(a) => *slot = Some(Scalar::F64(a.value(row) as f64)),
            Values::Utf8(a) => match slot {
                Some(Scalar::Str(s)) => {
                    s.clear();
                    s.push_str(a.value(row));
                }
                _ => *slot = Some(Scalar::Str(a.value(row).to_string())),
            },
            Values::None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;

    #[test]
    fn binding_checks_columns_and_types() {
        let schema = Schema::new(vec![
            Field::new("x", DataType::Int32, true),
            Field::new("s", DataType::Utf8, true),
        ]);
        let ok = bind_aggs(
            &[
                Agg::count("n"),
                Agg::sum("x", "sx"),
                Agg::last("s", "ls"),
                Agg::last("x", "lx"),
            ],
            &schema,
            "w",
        )
        .unwrap();
        let outputs: Vec<_> = ok.iter().map(|b| b.output.clone()).collect();
        assert_eq!(
            outputs,
            vec![
                DataType::Int64,
                DataType::Float64,
                DataType::Utf8,
                DataType::Int64
            ]
        );
        let missing = bind_aggs(&[Agg::sum("y", "sy")], &schema, "w").unwrap_err();
        assert!(missing.to_string().contains("`y`"), "{missing}");
        let wrong = bind_aggs(&[Agg::mean("s", "ms")], &schema, "w").unwrap_err();
        assert!(wrong.to_string().contains("`s`"), "{wrong}");
    }

    #[test]
    fn distinct_hash_normalizes_zero_and_nan() {
        let a = Float64Array::from(vec![0.0, -0.0, f64::NAN, -f64::NAN, 1.0]);
        let v = Values::F64(&a);
        assert_eq!(v.hash(0), v.hash(1));
        assert_eq!(v.hash(2), v.hash(3));
        assert_ne!(v.hash(0), v.hash(4));
    }
}

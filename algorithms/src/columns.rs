//! Typed access to the columns of a record batch, with errors that name the step and column.
//! Every feature step reads its inputs through these, so missing columns and wrong types are
//! reported the same way everywhere.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};

/// The column `name`, or [`Error::MissingColumn`] naming `step`.
pub fn column<'a>(batch: &'a RecordBatch, step: &str, name: &str) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| Error::missing(step, name))
}

/// Whether a type is numeric (integer or floating point) and so castable to `Float64`.
pub fn is_numeric(t: &DataType) -> bool {
    t.is_integer() || t.is_floating()
}

/// The column `name` as `Float64` (integers and `Float32` are cast; nulls stay null).
pub fn f64_column<'a>(
    batch: &'a RecordBatch,
    step: &str,
    name: &str,
) -> Result<Cow<'a, Float64Array>> {
    let c = column(batch, step, name)?;
    match c.data_type() {
        DataType::Float64 => Ok(Cow::Borrowed(c.as_primitive())),
        t if is_numeric(t) => {
            let casted = cast(c, &DataType::Float64)?;
            Ok(Cow::Owned(casted.as_primitive().clone()))
        }
        t => Err(Error::ColumnType {
            step: step.into(),
            column: name.into(),
            found: t.to_string(),
            expected: "a numeric type".into(),
        }),
    }
}

/// The column `name` as `Utf8` (other types are cast to their text form; nulls stay null).
pub fn str_column<'a>(
    batch: &'a RecordBatch,
    step: &str,
    name: &str,
) -> Result<Cow<'a, StringArray>> {
    let c = column(batch, step, name)?;
    match c.data_type() {
        DataType::Utf8 => Ok(Cow::Borrowed(c.as_string::<i32>())),
        _ => {
            let casted = cast(c, &DataType::Utf8)?;
            Ok(Cow::Owned(casted.as_string::<i32>().clone()))
        }
    }
}

/// `batch` with column `name` set to `values` (replaced in place, or appended).
pub fn with_column(batch: &RecordBatch, name: &str, values: ArrayRef) -> Result<RecordBatch> {
    Ok(eddy_core::operators::with_column::set_column(
        batch, name, values,
    )?)
}

/// `batch` with several columns set at once.
pub fn with_columns(
    batch: &RecordBatch,
    columns: impl IntoIterator<Item = (String, ArrayRef)>,
) -> Result<RecordBatch> {
    let mut out = batch.clone();
    for (name, values) in columns {
        out = with_column(&out, &name, values)?;
    }
    Ok(out)
}

/// A `Float64` array from values, with `NaN` kept as a value (not null).
pub fn f64_array(values: Vec<f64>) -> ArrayRef {
    Arc::new(Float64Array::from(values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    #[test]
    fn casts_and_names_missing_columns() {
        let b = RecordBatch::try_from_iter([
            ("i", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
            ("s", Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef),
        ])
        .unwrap();
        assert_eq!(f64_column(&b, "t", "i").unwrap().value(1), 2.0);
        assert_eq!(str_column(&b, "t", "i").unwrap().value(0), "1");
        let e = f64_column(&b, "scaler", "nope").unwrap_err().to_string();
        assert!(e.contains("scaler") && e.contains("nope"), "{e}");
        assert!(f64_column(&b, "t", "s").is_err());
        let b2 = with_column(&b, "i", f64_array(vec![0.5, 1.5])).unwrap();
        assert_eq!(b2.num_columns(), 2);
    }
}

//! One River row (`dict` of feature name → value) as a one-row Arrow record batch, the input
//! every pipeline reads.
//!
//! The columns and their types are fixed by the first row a model sees: `int`/`float` values
//! make `Float64` columns, `str` values `Utf8`, `bool` values `Boolean` — the types a CSV
//! reader gives the same data, so a row featurizes like the file's rows. A later row may
//! leave a key out (a null: a missing feature) but not bring a new key or another type:
//! those are refused with the key's name.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanBuilder, Float64Builder, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString};

use crate::error::eddy_err;

/// A column's builder, reused row after row.
enum Column {
    Number(Float64Builder),
    Text(StringBuilder),
    Flag(BooleanBuilder),
}

/// The columns of a model's rows and their builders.
pub struct RowLayout {
    names: Vec<Py<PyString>>,
    columns: Vec<Column>,
    /// The features' schema (no label).
    features: SchemaRef,
    /// The features plus the label column (`Float64`), for learning.
    labelled: SchemaRef,
    label: String,
}

impl RowLayout {
    /// The layout of `x` (the first row), with `label` as the label column's name.
    pub fn of(x: &Bound<'_, PyDict>, label: &str) -> PyResult<RowLayout> {
        let (mut names, mut columns, mut fields) = (Vec::new(), Vec::new(), Vec::new());
        for (key, value) in x.iter() {
            let name = key
                .cast::<PyString>()
                .map_err(|_| eddy_err(format!("x has a key {key} that is not a str")))?;
            let text = name.to_cow()?.into_owned();
            if text == label {
                return Err(eddy_err(format!(
                    "x holds the label column `{label}`: pass the label as y"
                )));
            }
            let (column, data_type) = if value.is_instance_of::<PyBool>() {
                (
                    Column::Flag(BooleanBuilder::with_capacity(1)),
                    DataType::Boolean,
                )
            } else if value.is_instance_of::<PyInt>() || value.is_instance_of::<PyFloat>() {
                (
                    Column::Number(Float64Builder::with_capacity(1)),
                    DataType::Float64,
                )
            } else if value.is_instance_of::<PyString>() {
                (
                    Column::Text(StringBuilder::with_capacity(1, 16)),
                    DataType::Utf8,
                )
            } else {
                return Err(eddy_err(format!(
                    "x[`{text}`] is a {}: a feature is an int, float, str or bool",
                    value.get_type().name()?
                )));
            };
            fields.push(Field::new(text, data_type, true));
            names.push(name.clone().unbind());
            columns.push(column);
        }
        let features = Arc::new(Schema::new(fields.clone()));
        fields.push(Field::new(label, DataType::Float64, false));
        Ok(RowLayout {
            names,
            columns,
            features,
            labelled: Arc::new(Schema::new(fields)),
            label: label.to_string(),
        })
    }

    /// `x` as a one-row batch of the features; with `y`, plus the label column.
    pub fn batch(&mut self, x: &Bound<'_, PyDict>, y: Option<f64>) -> PyResult<RecordBatch> {
        let mut found = 0;
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len() + 1);
        for (name, column) in self.names.iter().zip(&mut self.columns) {
            let value = x.get_item(name.bind(x.py()))?;
            found += usize::from(value.is_some());
            append(column, value.as_ref(), name.bind(x.py()))?;
            arrays.push(match column {
                Column::Number(b) => Arc::new(b.finish()),
                Column::Text(b) => Arc::new(b.finish()),
                Column::Flag(b) => Arc::new(b.finish()),
            });
        }
        if found < x.len() {
            return Err(self.unknown_key(x));
        }
        let schema = match y {
            Some(y) => {
                arrays.push(Arc::new(arrow::array::Float64Array::from(vec![y])));
                self.labelled.clone()
            }
            None => self.features.clone(),
        };
        RecordBatch::try_new(schema, arrays).map_err(eddy_err)
    }

    /// The error for a row with a key the first row did not have.
    fn unknown_key(&self, x: &Bound<'_, PyDict>) -> PyErr {
        let known: Vec<String> = self
            .features
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let extra = x
            .keys()
            .iter()
            .map(|k| k.to_string())
            .find(|k| !known.contains(k))
            .unwrap_or_default();
        let shown = if extra == self.label {
            format!("x holds the label column `{extra}`: pass the label as y")
        } else {
            format!(
                "x has the key `{extra}`, which the model's first row did not have (its columns: {})",
                known.join(", ")
            )
        };
        eddy_err(shown)
    }
}

/// Appends `value` (or a null when the key is absent or None) to `column`.
fn append(
    column: &mut Column,
    value: Option<&Bound<'_, PyAny>>,
    name: &Bound<'_, PyString>,
) -> PyResult<()> {
    let value = value.filter(|v| !v.is_none());
    let mistyped = |v: &Bound<'_, PyAny>, expected: &str| {
        let found = v
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        eddy_err(format!(
            "x[`{name}`] is a {found}; the column holds {expected}"
        ))
    };
    match (column, value) {
        (Column::Number(b), None) => b.append_null(),
        (Column::Text(b), None) => b.append_null(),
        (Column::Flag(b), None) => b.append_null(),
        (Column::Number(b), Some(v)) => {
            if v.is_instance_of::<PyBool>() || v.is_instance_of::<PyString>() {
                return Err(mistyped(v, "numbers"));
            }
            b.append_value(v.extract::<f64>().map_err(|_| mistyped(v, "numbers"))?)
        }
        (Column::Text(b), Some(v)) => {
            let s = v.cast::<PyString>().map_err(|_| mistyped(v, "strings"))?;
            b.append_value(s.to_cow()?)
        }
        (Column::Flag(b), Some(v)) => {
            let f = v.cast::<PyBool>().map_err(|_| mistyped(v, "booleans"))?;
            b.append_value(f.is_true())
        }
    }
    Ok(())
}

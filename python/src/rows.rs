//! One River row (`dict` of feature name → value), read into buffers reused row after row:
//! the pipeline's per-row path ([`RowPlan`]) reads them through [`RowValues`]; a pipeline
//! with no per-row form gets them as a one-row Arrow record batch.
//!
//! The columns and their types are fixed by the first row a model sees: `int`/`float` values
//! make `Float64` columns, `str` values `Utf8`, `bool` values `Boolean` — the types a CSV
//! reader gives the same data, so a row featurizes like the file's rows. A later row may
//! leave a key out (a null: a missing feature) but not bring a new key or another type:
//! those are refused with the key's name.
//!
//! Reading a row allocates nothing on the Rust side: numbers and flags are copied into the
//! value buffer, and a string is borrowed as the UTF-8 `bytes` object CPython encodes it to
//! (the stable ABI of CPython 3.9 has no borrowed UTF-8 view of a `str`).

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanBuilder, Float64Builder, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use eddy_algorithms::pipeline::{RowType, RowValue, RowValues};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyString};

use crate::error::eddy_err;

/// One value of the row being read.
enum Slot {
    Null,
    Number(f64),
    Text(Py<PyBytes>),
    Flag(bool),
}

/// The columns of a model's rows, and the buffers of the row read last.
pub struct RowLayout {
    names: Vec<Py<PyString>>,
    types: Vec<RowType>,
    /// The row read last, by column.
    slots: Vec<Slot>,
    /// The features' schema (no label).
    features: SchemaRef,
    /// The features plus the label column (`Float64`), for learning.
    labelled: SchemaRef,
    label: String,
}

/// The row read last, as the pipeline's per-row path reads it.
pub struct Values<'a> {
    py: Python<'a>,
    slots: &'a [Slot],
}

impl RowValues for Values<'_> {
    fn value(&self, col: usize) -> RowValue<'_> {
        match &self.slots[col] {
            Slot::Null => RowValue::Null,
            Slot::Number(x) => RowValue::Number(*x),
            Slot::Text(b) => RowValue::Text(b.as_bytes(self.py)),
            Slot::Flag(f) => RowValue::Flag(*f),
        }
    }
}

impl RowLayout {
    /// The layout of `x` (the first row), with `label` as the label column's name.
    pub fn of(x: &Bound<'_, PyDict>, label: &str) -> PyResult<RowLayout> {
        let (mut names, mut types, mut fields) = (Vec::new(), Vec::new(), Vec::new());
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
            let (ty, data_type) = if value.is_instance_of::<PyBool>() {
                (RowType::Flag, DataType::Boolean)
            } else if value.is_instance_of::<PyInt>() || value.is_instance_of::<PyFloat>() {
                (RowType::Number, DataType::Float64)
            } else if value.is_instance_of::<PyString>() {
                (RowType::Text, DataType::Utf8)
            } else {
                return Err(eddy_err(format!(
                    "x[`{text}`] is a {}: a feature is an int, float, str or bool",
                    value.get_type().name()?
                )));
            };
            fields.push(Field::new(text, data_type, true));
            names.push(name.clone().unbind());
            types.push(ty);
        }
        let features = Arc::new(Schema::new(fields.clone()));
        fields.push(Field::new(label, DataType::Float64, false));
        Ok(RowLayout {
            slots: types.iter().map(|_| Slot::Null).collect(),
            names,
            types,
            features,
            labelled: Arc::new(Schema::new(fields)),
            label: label.to_string(),
        })
    }

    /// The columns' names and types, in order (what a [`RowPlan`] is made for).
    ///
    /// [`RowPlan`]: eddy_algorithms::pipeline::RowPlan
    pub fn columns(&self) -> Vec<(&str, RowType)> {
        self.features
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .zip(self.types.iter().copied())
            .collect()
    }

    /// The schema of a learning row (features and label) or a scored one (features).
    pub fn schema(&self, labelled: bool) -> &SchemaRef {
        if labelled {
            &self.labelled
        } else {
            &self.features
        }
    }

    /// Reads `x` into the buffers: every column's value, a null for an absent key or `None`;
    /// a key the first row did not have or a value of another type is refused.
    pub fn read(&mut self, x: &Bound<'_, PyDict>) -> PyResult<()> {
        let py = x.py();
        let mut found = 0;
        for ((name, ty), slot) in self.names.iter().zip(&self.types).zip(&mut self.slots) {
            let name = name.bind(py);
            let value = x.get_item(name)?;
            found += usize::from(value.is_some());
            *slot = read_value(*ty, value.as_ref(), name)?;
        }
        if found < x.len() {
            return Err(self.unknown_key(x));
        }
        Ok(())
    }

    /// The row read last, for the per-row path.
    pub fn values<'a>(&'a self, py: Python<'a>) -> Values<'a> {
        Values {
            py,
            slots: &self.slots,
        }
    }

    /// The row read last as a one-row batch of the features; with `y`, plus the label column.
    pub fn batch(&self, py: Python<'_>, y: Option<f64>) -> PyResult<RecordBatch> {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.slots.len() + 1);
        for (ty, slot) in self.types.iter().zip(&self.slots) {
            arrays.push(match (ty, slot) {
                (RowType::Number, Slot::Number(x)) => {
                    one(Float64Builder::new(), |b| b.append_value(*x))
                }
                (RowType::Number, _) => one(Float64Builder::new(), Float64Builder::append_null),
                (RowType::Text, Slot::Text(s)) => {
                    let text = std::str::from_utf8(s.as_bytes(py)).map_err(eddy_err)?;
                    one(StringBuilder::new(), |b| b.append_value(text))
                }
                (RowType::Text, _) => one(StringBuilder::new(), StringBuilder::append_null),
                (RowType::Flag, Slot::Flag(f)) => {
                    one(BooleanBuilder::new(), |b| b.append_value(*f))
                }
                (RowType::Flag, _) => one(BooleanBuilder::new(), BooleanBuilder::append_null),
            });
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

/// A one-value array from `builder` after `append`.
fn one<B: arrow::array::ArrayBuilder>(mut builder: B, append: impl FnOnce(&mut B)) -> ArrayRef {
    append(&mut builder);
    arrow::array::ArrayBuilder::finish(&mut builder)
}

/// `value` (absent or None: a null) as a slot of a `ty` column, or the error naming the key.
fn read_value(
    ty: RowType,
    value: Option<&Bound<'_, PyAny>>,
    name: &Bound<'_, PyString>,
) -> PyResult<Slot> {
    let Some(v) = value.filter(|v| !v.is_none()) else {
        return Ok(Slot::Null);
    };
    let mistyped = |expected: &str| {
        let found = v
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        eddy_err(format!(
            "x[`{name}`] is a {found}; the column holds {expected}"
        ))
    };
    Ok(match ty {
        RowType::Number => {
            if let Ok(f) = v.cast_exact::<PyFloat>() {
                Slot::Number(f.value())
            } else if v.is_instance_of::<PyBool>() || v.is_instance_of::<PyString>() {
                return Err(mistyped("numbers"));
            } else {
                Slot::Number(v.extract::<f64>().map_err(|_| mistyped("numbers"))?)
            }
        }
        RowType::Text => {
            let s = v.cast::<PyString>().map_err(|_| mistyped("strings"))?;
            Slot::Text(s.encode_utf8()?.unbind())
        }
        RowType::Flag => Slot::Flag(
            v.cast::<PyBool>()
                .map_err(|_| mistyped("booleans"))?
                .is_true(),
        ),
    })
}

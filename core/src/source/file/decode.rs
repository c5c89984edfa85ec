//! Typed column builders for the file sources: values are appended straight into plain vectors
//! that become Arrow buffers without a copy, and a row that fails half-way is rolled back by
//! truncation (Arrow's own builders cannot take a value back).

use std::io::Write;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, PrimitiveArray, StringArray};
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Float32Type, Float64Type, Int32Type, Int64Type, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};

use crate::error::{Error, Result};

/// Why one field could not be appended (the caller adds file, line and column).
pub(crate) type FieldResult = std::result::Result<(), String>;

#[derive(Debug)]
enum Values {
    I64(Vec<i64>),
    I32(Vec<i32>),
    F64(Vec<f64>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    Utf8 { offsets: Vec<i32>, bytes: Vec<u8> },
}

/// One column under construction.
#[derive(Debug)]
pub(crate) struct ColumnBuilder {
    name: String,
    nullable: bool,
    values: Values,
    valid: Vec<bool>,
    nulls: usize,
}

/// The type names the file sources can decode, for error messages.
pub(crate) const SUPPORTED: &str = "Int64, Int32, Float64, Float32, Boolean, Utf8";

#[inline]
fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

impl ColumnBuilder {
    fn new(name: &str, data_type: &DataType, nullable: bool, capacity: usize) -> Result<Self> {
        let values = match data_type {
            DataType::Int64 => Values::I64(Vec::with_capacity(capacity)),
            DataType::Int32 => Values::I32(Vec::with_capacity(capacity)),
            DataType::Float64 => Values::F64(Vec::with_capacity(capacity)),
            DataType::Float32 => Values::F32(Vec::with_capacity(capacity)),
            DataType::Boolean => Values::Bool(Vec::with_capacity(capacity)),
            DataType::Utf8 => {
                let mut offsets = Vec::with_capacity(capacity + 1);
                offsets.push(0);
                Values::Utf8 {
                    offsets,
                    bytes: Vec::with_capacity(capacity * 8),
                }
            }
            other => {
                return Err(Error::schema(
                    "file source",
                    format!("column `{name}` has type {other}; supported: {SUPPORTED}"),
                ))
            }
        };
        Ok(ColumnBuilder {
            name: name.to_string(),
            nullable,
            values,
            valid: Vec::with_capacity(capacity),
            nulls: 0,
        })
    }

    fn len(&self) -> usize {
        self.valid.len()
    }

    /// Appends a null (an error for a non-nullable column).
    pub(crate) fn push_null(&mut self) -> FieldResult {
        if !self.nullable {
            return Err(format!("null in non-nullable column `{}`", self.name));
        }
        match &mut self.values {
            Values::I64(v) => v.push(0),
            Values::I32(v) => v.push(0),
            Values::F64(v) => v.push(0.0),
            Values::F32(v) => v.push(0.0),
            Values::Bool(v) => v.push(false),
            Values::Utf8 { offsets, bytes } => offsets.push(bytes.len() as i32),
        }
        self.valid.push(false);
        self.nulls += 1;
        Ok(())
    }

    /// Appends a field given as text (CSV, or a JSON string): empty means null.
    pub(crate) fn push_text(&mut self, raw: &[u8]) -> FieldResult {
        if raw.is_empty() || (!self.is_utf8() && trim(raw).is_empty()) {
            return self.push_null();
        }
        let ok = match &mut self.values {
            Values::I64(v) => lexical_core::parse::<i64>(trim(raw))
                .map(|x| v.push(x))
                .is_ok(),
            Values::I32(v) => lexical_core::parse::<i32>(trim(raw))
                .map(|x| v.push(x))
                .is_ok(),
            Values::F64(v) => lexical_core::parse::<f64>(trim(raw))
                .map(|x| v.push(x))
                .is_ok(),
            Values::F32(v) => lexical_core::parse::<f32>(trim(raw))
                .map(|x| v.push(x))
                .is_ok(),
            Values::Bool(v) => match parse_bool(trim(raw)) {
                Some(b) => {
                    v.push(b);
                    true
                }
                None => false,
            },
            Values::Utf8 { offsets, bytes } => {
                if !raw.is_ascii() && std::str::from_utf8(raw).is_err() {
                    return Err(format!("invalid UTF-8 in column `{}`", self.name));
                }
                bytes.extend_from_slice(raw);
                offsets.push(bytes.len() as i32);
                true
            }
        };
        if !ok {
            return Err(format!(
                "cannot parse `{}` as {} for column `{}`",
                String::from_utf8_lossy(raw),
                self.type_name(),
                self.name
            ));
        }
        self.valid.push(true);
        Ok(())
    }

    /// Appends an integer (JSON).
    pub(crate) fn push_i64(&mut self, x: i64) -> FieldResult {
        match &mut self.values {
            Values::I64(v) => v.push(x),
            Values::I32(v) => v
                .push(i32::try_from(x).map_err(|_| {
                    format!("{x} is out of range for Int32 column `{}`", self.name)
                })?),
            Values::F64(v) => v.push(x as f64),
            Values::F32(v) => v.push(x as f32),
            Values::Utf8 { offsets, bytes } => {
                let _ = write!(bytes, "{x}");
                offsets.push(bytes.len() as i32);
            }
            Values::Bool(_) => return Err(self.mismatch(&x.to_string())),
        }
        self.valid.push(true);
        Ok(())
    }

    /// Appends a float (JSON).
    pub(crate) fn push_f64(&mut self, x: f64) -> FieldResult {
        match &mut self.values {
            Values::F64(v) => v.push(x),
            Values::F32(v) => v.push(x as f32),
            Values::Utf8 { offsets, bytes } => {
                let _ = write!(bytes, "{x}");
                offsets.push(bytes.len() as i32);
            }
            _ => return Err(self.mismatch(&x.to_string())),
        }
        self.valid.push(true);
        Ok(())
    }

    /// Appends a boolean (JSON).
    pub(crate) fn push_bool(&mut self, x: bool) -> FieldResult {
        match &mut self.values {
            Values::Bool(v) => v.push(x),
            Values::Utf8 { offsets, bytes } => {
                bytes.extend_from_slice(if x { b"true" } else { b"false" });
                offsets.push(bytes.len() as i32);
            }
            _ => return Err(self.mismatch(if x { "true" } else { "false" })),
        }
        self.valid.push(true);
        Ok(())
    }

    fn mismatch(&self, value: &str) -> String {
        format!(
            "expected {} for column `{}`, found {value}",
            self.type_name(),
            self.name
        )
    }

    /// Whether this is a string column (JSON puts nested values there as text).
    pub(crate) fn is_utf8(&self) -> bool {
        matches!(self.values, Values::Utf8 { .. })
    }

    fn type_name(&self) -> &'static str {
        match self.values {
            Values::I64(_) => "Int64",
            Values::I32(_) => "Int32",
            Values::F64(_) => "Float64",
            Values::F32(_) => "Float32",
            Values::Bool(_) => "Boolean",
            Values::Utf8 { .. } => "Utf8",
        }
    }

    fn truncate(&mut self, rows: usize) {
        if self.valid.len() <= rows {
            return;
        }
        self.nulls -= self.valid[rows..].iter().filter(|v| !**v).count();
        self.valid.truncate(rows);
        match &mut self.values {
            Values::I64(v) => v.truncate(rows),
            Values::I32(v) => v.truncate(rows),
            Values::F64(v) => v.truncate(rows),
            Values::F32(v) => v.truncate(rows),
            Values::Bool(v) => v.truncate(rows),
            Values::Utf8 { offsets, bytes } => {
                offsets.truncate(rows + 1);
                bytes.truncate(offsets[rows] as usize);
            }
        }
    }

    fn finish(&mut self, capacity: usize) -> Result<ArrayRef> {
        let nulls = (self.nulls > 0).then(|| NullBuffer::from(std::mem::take(&mut self.valid)));
        self.valid = Vec::with_capacity(capacity);
        self.nulls = 0;
        let array: ArrayRef = match &mut self.values {
            Values::I64(v) => Arc::new(PrimitiveArray::<Int64Type>::new(
                ScalarBuffer::from(std::mem::replace(v, Vec::with_capacity(capacity))),
                nulls,
            )),
            Values::I32(v) => Arc::new(PrimitiveArray::<Int32Type>::new(
                ScalarBuffer::from(std::mem::replace(v, Vec::with_capacity(capacity))),
                nulls,
            )),
            Values::F64(v) => Arc::new(PrimitiveArray::<Float64Type>::new(
                ScalarBuffer::from(std::mem::replace(v, Vec::with_capacity(capacity))),
                nulls,
            )),
            Values::F32(v) => Arc::new(PrimitiveArray::<Float32Type>::new(
                ScalarBuffer::from(std::mem::replace(v, Vec::with_capacity(capacity))),
                nulls,
            )),
            Values::Bool(v) => Arc::new(BooleanArray::new(
                BooleanBuffer::from(std::mem::replace(v, Vec::with_capacity(capacity))),
                nulls,
            )),
            Values::Utf8 { offsets, bytes } => {
                let mut fresh = Vec::with_capacity(capacity + 1);
                fresh.push(0);
                let offsets =
                    OffsetBuffer::new(ScalarBuffer::from(std::mem::replace(offsets, fresh)));
                let cap = bytes.len().max(capacity);
                let bytes = Buffer::from_vec(std::mem::replace(bytes, Vec::with_capacity(cap)));
                Arc::new(StringArray::try_new(offsets, bytes, nulls)?)
            }
        };
        Ok(array)
    }
}

/// `true`/`false`, any case.
pub(crate) fn parse_bool(s: &[u8]) -> Option<bool> {
    if s.eq_ignore_ascii_case(b"true") {
        Some(true)
    } else if s.eq_ignore_ascii_case(b"false") {
        Some(false)
    } else {
        None
    }
}

/// The columns of one micro-batch under construction. A row is appended column by column and
/// then [`commit_row`](BatchBuilder::commit_row)ted, or [`rollback`](BatchBuilder::rollback)ed.
#[derive(Debug)]
pub(crate) struct BatchBuilder {
    schema: SchemaRef,
    columns: Vec<ColumnBuilder>,
    rows: usize,
    capacity: usize,
}

impl BatchBuilder {
    /// Builders for `schema`; fails on a column type the file sources cannot decode.
    pub(crate) fn new(schema: SchemaRef, capacity: usize) -> Result<Self> {
        let columns = schema
            .fields()
            .iter()
            .map(|f| ColumnBuilder::new(f.name(), f.data_type(), f.is_nullable(), capacity))
            .collect::<Result<_>>()?;
        Ok(BatchBuilder {
            schema,
            columns,
            rows: 0,
            capacity,
        })
    }

    /// Committed rows.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub(crate) fn width(&self) -> usize {
        self.columns.len()
    }

    /// Column `i`.
    #[inline]
    pub(crate) fn column(&mut self, i: usize) -> &mut ColumnBuilder {
        &mut self.columns[i]
    }

    /// Ends the row being appended: every column must have received one value.
    pub(crate) fn commit_row(&mut self) -> FieldResult {
        let next = self.rows + 1;
        if let Some(c) = self.columns.iter().find(|c| c.len() != next) {
            let msg = format!("column `{}` has no value for this row", c.name);
            self.rollback();
            return Err(msg);
        }
        self.rows = next;
        Ok(())
    }

    /// Drops whatever was appended since the last committed row.
    pub(crate) fn rollback(&mut self) {
        for c in &mut self.columns {
            c.truncate(self.rows);
        }
    }

    /// Drops every row not yet taken by [`finish`](BatchBuilder::finish).
    pub(crate) fn clear(&mut self) {
        self.rows = 0;
        self.rollback();
    }

    /// Takes the committed rows as a batch; the builders start empty again.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch> {
        self.rollback();
        let rows = std::mem::take(&mut self.rows);
        let columns = self
            .columns
            .iter_mut()
            .map(|c| c.finish(self.capacity))
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?)
    }
}

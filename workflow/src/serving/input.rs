//! The raw input columns a pipeline reads, and request rows → the Arrow batch the pipeline
//! featurizes.
//!
//! A [`Pipeline`] does not list its raw inputs: its steps and featurizer read columns by name,
//! through the same typed accessors (`eddy_algorithms::columns`) that report a missing column
//! or a wrong type with the column's name. [`InputSchema::probe`] asks the pipeline itself:
//! it featurizes a one-row batch, adds each column the pipeline reports missing (as text),
//! turns a column the pipeline wants numeric into a number, probes a column whose neutral
//! value it refuses (an indexer that refuses unseen values) with null, and repeats until
//! featurization succeeds. The result is exactly the set of columns, and their kinds, that
//! training rows had to provide — so a served row is featurized by the same code on the same
//! columns as a training row, with no hand-kept copy of the schema to drift (no train/serve
//! skew).

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, RecordBatchOptions, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use eddy_algorithms::features::Features;
use eddy_algorithms::pipeline::Pipeline;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// One request row: column name → JSON value.
pub type Row = Map<String, Value>;

/// Probing gives up after this many rounds (each round discovers one column).
const MAX_PROBE_ROUNDS: usize = 4096;

/// How a raw input column is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ColumnKind {
    /// A number (`Float64`; JSON numbers, or null).
    Number,
    /// Text (`Utf8`; JSON strings, numbers and booleans by their text form, or null) — the
    /// pipeline reads other types through their text form too, so `3` and `true` hash as
    /// they did when training data held them.
    Text,
}

/// The raw columns a pipeline reads, in the order it asks for them.
#[derive(Debug, Clone)]
pub struct InputSchema {
    columns: Vec<(String, ColumnKind)>,
    /// Columns whose neutral probe value the pipeline refuses (a string indexer that refuses
    /// unseen values refuses `""`): probed as null.
    null_probe: Vec<String>,
    schema: SchemaRef,
}

impl InputSchema {
    /// Finds the raw input columns of `pipeline` by featurizing probe rows (see the module
    /// docs). `model` names the model in errors.
    pub fn probe(model: &str, pipeline: &Pipeline) -> Result<Self> {
        let mut columns: Vec<(String, ColumnKind)> = Vec::new();
        let mut null_probe: Vec<String> = Vec::new();
        let mut features = Features::Sparse(Default::default());
        for _ in 0..MAX_PROBE_ROUNDS {
            let schema = InputSchema::with_columns(columns.clone(), null_probe.clone());
            let batch = schema.probe_batch()?;
            let err = match pipeline.features(&batch, &mut features) {
                Ok(()) => return Ok(schema),
                Err(e) => e,
            };
            let refused = |why: &str| Error::InvalidField {
                model: model.to_string(),
                row: 0,
                field: String::from("<pipeline>"),
                message: format!("cannot find the pipeline's inputs: {why}: {err}"),
            };
            match &err {
                eddy_algorithms::Error::MissingColumn { column, .. } => {
                    if columns.iter().any(|(c, _)| c == column) {
                        return Err(refused("a column it reads is dropped by a step"));
                    }
                    columns.push((column.clone(), ColumnKind::Text));
                }
                eddy_algorithms::Error::ColumnType { column, .. } => {
                    match columns.iter_mut().find(|(c, _)| c == column) {
                        Some((_, kind @ ColumnKind::Text)) => *kind = ColumnKind::Number,
                        _ => return Err(refused("a column has a type no request can give")),
                    }
                }
                eddy_algorithms::Error::InvalidValue { column, .. }
                    if columns.iter().any(|(c, _)| c == column) && !null_probe.contains(column) =>
                {
                    null_probe.push(column.clone());
                }
                _ => return Err(refused("featurizing a probe row failed")),
            }
        }
        Err(Error::InvalidField {
            model: model.to_string(),
            row: 0,
            field: String::from("<pipeline>"),
            message: format!("the pipeline reads more than {MAX_PROBE_ROUNDS} columns"),
        })
    }

    fn with_columns(columns: Vec<(String, ColumnKind)>, null_probe: Vec<String>) -> Self {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, kind)| Field::new(name, data_type(*kind), true))
            .collect();
        InputSchema {
            columns,
            null_probe,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    /// The columns and their kinds.
    pub fn columns(&self) -> &[(String, ColumnKind)] {
        &self.columns
    }

    /// The column names.
    pub fn names(&self) -> Vec<String> {
        self.columns.iter().map(|(n, _)| n.clone()).collect()
    }

    /// The Arrow schema of the batches [`batch`](Self::batch) builds.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// One row of neutral values (`0` and `""`, or null where the pipeline refuses those), for
    /// probing and warming a model up.
    pub fn probe_row(&self) -> Row {
        self.columns
            .iter()
            .map(|(name, kind)| {
                let v = match kind {
                    _ if self.null_probe.contains(name) => Value::Null,
                    ColumnKind::Number => Value::from(0.0),
                    ColumnKind::Text => Value::from(""),
                };
                (name.clone(), v)
            })
            .collect()
    }

    fn probe_batch(&self) -> Result<RecordBatch> {
        self.batch("<probe>", &[self.probe_row()])
    }

    /// The Arrow batch of `rows`, one column per input column; other fields of the rows are
    /// ignored. A missing field or a value of the wrong type is an [`Error::InvalidField`]
    /// naming the row and field (`model` names the model).
    pub fn batch(&self, model: &str, rows: &[Row]) -> Result<RecordBatch> {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for (name, kind) in &self.columns {
            let bad = |row: usize, message: String| Error::InvalidField {
                model: model.to_string(),
                row,
                field: name.clone(),
                message,
            };
            let missing = |i: usize| bad(i, "missing (the model reads this column)".into());
            match kind {
                ColumnKind::Number => {
                    let mut b = Float64Builder::with_capacity(rows.len());
                    for (i, row) in rows.iter().enumerate() {
                        match row.get(name).ok_or_else(|| missing(i))? {
                            Value::Null => b.append_null(),
                            Value::Number(n) => match n.as_f64() {
                                Some(x) => b.append_value(x),
                                None => return Err(bad(i, format!("{n} is not a finite number"))),
                            },
                            other => {
                                return Err(bad(
                                    i,
                                    format!("expected a number, found {}", json_kind(other)),
                                ))
                            }
                        }
                    }
                    arrays.push(Arc::new(b.finish()));
                }
                ColumnKind::Text => {
                    let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 8);
                    for (i, row) in rows.iter().enumerate() {
                        match row.get(name).ok_or_else(|| missing(i))? {
                            Value::Null => b.append_null(),
                            Value::String(s) => b.append_value(s),
                            Value::Number(n) => b.append_value(n.to_string()),
                            Value::Bool(x) => b.append_value(if *x { "true" } else { "false" }),
                            other => {
                                return Err(bad(
                                    i,
                                    format!(
                                        "expected a string, number or boolean, found {}",
                                        json_kind(other)
                                    ),
                                ))
                            }
                        }
                    }
                    arrays.push(Arc::new(b.finish()));
                }
            }
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
        RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options).map_err(|e| {
            Error::BadRequest {
                message: format!("building the input batch: {e}"),
            }
        })
    }
}

fn data_type(kind: ColumnKind) -> DataType {
    match kind {
        ColumnKind::Number => DataType::Float64,
        ColumnKind::Text => DataType::Utf8,
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray, Float64Array};
    use arrow::datatypes::Float64Type;
    use eddy_algorithms::feature::categorical::{FeatureHasher, FeatureHasherParams, Featurizer};
    use eddy_algorithms::transform::Params;
    use serde_json::json;

    use super::*;

    fn pipeline() -> Pipeline {
        let hasher = FeatureHasherParams {
            numeric: vec!["x".into()],
            categorical: vec!["a".into()],
            crosses: vec![vec!["a".into(), "b".into()]],
            bits: 8,
            ..Default::default()
        };
        Pipeline::new(
            vec![],
            Featurizer::Hasher(FeatureHasher::new(hasher.check().unwrap())),
            None,
        )
    }

    fn rows(v: serde_json::Value) -> Vec<Row> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn probe_finds_every_input_and_its_kind() {
        let schema = InputSchema::probe("m", &pipeline()).unwrap();
        let mut cols = schema.columns().to_vec();
        cols.sort();
        assert_eq!(
            cols,
            vec![
                ("a".to_string(), ColumnKind::Text),
                ("b".to_string(), ColumnKind::Text),
                ("x".to_string(), ColumnKind::Number),
            ]
        );
    }

    #[test]
    fn rows_become_typed_columns_and_bad_fields_are_named() {
        let schema = InputSchema::probe("m", &pipeline()).unwrap();
        let batch = schema
            .batch(
                "m",
                &rows(
                    json!([{"x": 2, "a": 3, "b": true}, {"x": null, "a": "q", "b": null, "y": []}]),
                ),
            )
            .unwrap();
        let x = batch
            .column_by_name("x")
            .unwrap()
            .as_primitive::<Float64Type>();
        assert_eq!(x, &Float64Array::from(vec![Some(2.0), None]));
        let a = batch.column_by_name("a").unwrap().as_string::<i32>();
        assert_eq!((a.value(0), a.value(1)), ("3", "q"));
        let b = batch.column_by_name("b").unwrap().as_string::<i32>();
        assert_eq!((b.value(0), b.is_null(1)), ("true", true));

        let e = schema.batch(
            "m",
            &rows(json!([{"x": 1, "a": "q", "b": "r"}, {"x": "1", "a": "q", "b": "r"}])),
        );
        match e.unwrap_err() {
            Error::InvalidField { row, field, .. } => assert_eq!((row, field.as_str()), (1, "x")),
            other => panic!("{other}"),
        }
        let e = schema
            .batch("m", &rows(json!([{"x": 1, "b": "r"}])))
            .unwrap_err();
        assert!(e.to_string().contains("field `a`: missing"), "{e}");
    }
}

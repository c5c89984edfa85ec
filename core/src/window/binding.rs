//! What a keyed operator knows about its input schema: the key codec, the event-time column,
//! the bound aggregates and the output schema. Bound on the first batch, re-bound when the
//! schema changes (the key and aggregate output types must stay the same), and rebuilt from a
//! snapshot before any batch has arrived.

use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::aggregate::{bind_aggs, Agg, BoundAgg};
use super::key_codec::KeyCodec;
use super::timestamps::time_column;
use crate::error::{Error, Result};

/// The shape of an operator's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Key columns, `window_start`, `window_end`, aggregates.
    Window,
    /// The input columns, then aggregates.
    Over,
}

/// What the operator needs to read a schema.
pub(crate) struct BindSpec<'a> {
    pub(crate) operator: &'a str,
    pub(crate) keys: &'a [String],
    pub(crate) aggs: &'a [Agg],
    /// `None`: no event time needed. `Some(None)`: the column `assign_timestamps` marked.
    pub(crate) time_column: Option<Option<&'a str>>,
    pub(crate) shape: Shape,
}

#[derive(Debug)]
pub(crate) struct Binding {
    input: Option<SchemaRef>,
    pub(crate) codec: KeyCodec,
    pub(crate) time: Option<usize>,
    pub(crate) aggs: Vec<BoundAgg>,
    pub(crate) output: SchemaRef,
}

fn output_schema(
    spec: &BindSpec<'_>,
    codec: &KeyCodec,
    aggs: &[BoundAgg],
    input: Option<&Schema>,
) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = Vec::new();
    match (spec.shape, input) {
        (Shape::Over, Some(input)) => fields.extend(input.fields().iter().cloned()),
        _ => {
            fields.extend(codec.fields().iter().cloned());
            fields.push(Arc::new(Field::new("window_start", DataType::Int64, false)));
            fields.push(Arc::new(Field::new("window_end", DataType::Int64, false)));
        }
    }
    for (a, b) in spec.aggs.iter().zip(aggs) {
        fields.push(Arc::new(Field::new(&a.alias, b.output.clone(), true)));
    }
    let metadata = match (spec.shape, input) {
        (Shape::Over, Some(input)) => input.metadata().clone(),
        _ => Default::default(),
    };
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

impl Binding {
    /// Makes sure `binding` reads `schema`.
    pub(crate) fn ensure(
        binding: &mut Option<Binding>,
        schema: &SchemaRef,
        spec: &BindSpec<'_>,
    ) -> Result<()> {
        if let Some(b) = binding {
            if b.input
                .as_ref()
                .is_some_and(|i| Arc::ptr_eq(i, schema) || i == schema)
            {
                return Ok(());
            }
        }
        let time = match spec.time_column {
            None => None,
            Some(explicit) => Some(time_column(schema, explicit, spec.operator)?),
        };
        let aggs = bind_aggs(spec.aggs, schema, spec.operator)?;
        match binding {
            Some(b) => {
                b.codec.bind(schema, spec.operator)?;
                for ((old, new), a) in b.aggs.iter().zip(&aggs).zip(spec.aggs) {
                    if old.output != new.output {
                        return Err(Error::schema(
                            spec.operator,
                            format!(
                                "aggregate `{}` changed type from {} to {}",
                                a.alias, old.output, new.output
                            ),
                        ));
                    }
                }
                b.output = output_schema(spec, &b.codec, &aggs, Some(schema));
                b.aggs = aggs;
                b.time = time;
                b.input = Some(schema.clone());
            }
            None => {
                let codec = KeyCodec::new(spec.keys, schema, spec.operator)?;
                let output = output_schema(spec, &codec, &aggs, Some(schema));
                *binding = Some(Binding {
                    input: Some(schema.clone()),
                    codec,
                    time,
                    aggs,
                    output,
                });
            }
        }
        Ok(())
    }

    /// A binding rebuilt from a snapshot: the codec, and the aggregates' output types (as
    /// written by [`outputs`](Self::outputs)). The first batch binds it to its schema.
    pub(crate) fn restored(
        codec: KeyCodec,
        outputs: &[String],
        spec: &BindSpec<'_>,
    ) -> Result<Binding> {
        if outputs.len() != spec.aggs.len() {
            return Err(Error::config(
                format!("{}.state", spec.operator),
                format!(
                    "the snapshot has {} aggregates, the operator {}",
                    outputs.len(),
                    spec.aggs.len()
                ),
            ));
        }
        let aggs = spec
            .aggs
            .iter()
            .zip(outputs)
            .map(|(a, t)| {
                let output = DataType::from_str(t).map_err(|e| {
                    Error::config(
                        format!("{}.state", spec.operator),
                        format!("aggregate type `{t}`: {e}"),
                    )
                })?;
                Ok(BoundAgg {
                    kind: a.kind,
                    column: None,
                    output,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let output = output_schema(spec, &codec, &aggs, None);
        Ok(Binding {
            input: None,
            codec,
            time: None,
            aggs,
            output,
        })
    }

    /// The aggregates' output types, for snapshots.
    pub(crate) fn outputs(&self) -> Vec<String> {
        self.aggs.iter().map(|a| a.output.to_string()).collect()
    }
}

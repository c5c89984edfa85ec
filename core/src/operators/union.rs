//! `union`: merges streams of the same schema.

use arrow::record_batch::RecordBatch;

use crate::dataflow::Stream;
use crate::error::{Error, Result};
use crate::operator::{factory_from_clone, Collector, Operator};

/// Passes every input through; all inputs must share one schema.
#[derive(Debug, Clone, Default)]
pub struct UnionOperator {
    schema: Option<arrow::datatypes::SchemaRef>,
}

impl Operator for UnionOperator {
    fn process(&mut self, input: usize, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        match &self.schema {
            None => self.schema = Some(batch.schema()),
            Some(s) if s.fields() != batch.schema().fields() => {
                return Err(Error::schema(
                    "union",
                    format!(
                        "input {input} has schema {:?}, expected {:?}",
                        batch.schema(),
                        s
                    ),
                ))
            }
            Some(_) => {}
        }
        out.emit(batch);
        Ok(())
    }
}

impl Stream {
    /// Merges this stream with `others` (same schema). The watermark is the minimum of all.
    pub fn union(&self, name: &str, others: &[Stream]) -> Stream {
        self.connect(others, name, factory_from_clone(UnionOperator::default()))
    }
}

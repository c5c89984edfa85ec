//! `project`: keeps (and reorders) named columns.

use arrow::record_batch::RecordBatch;

use crate::dataflow::Stream;
use crate::error::{Error, Result};
use crate::operator::{Collector, Operator};

/// Keeps the named columns, in the given order.
#[derive(Debug, Clone)]
pub struct ProjectOperator {
    columns: Vec<String>,
    indices: Vec<usize>,
    schema: Option<arrow::datatypes::SchemaRef>,
}

impl ProjectOperator {
    /// A projection onto `columns`.
    pub fn new(columns: Vec<String>) -> Self {
        ProjectOperator {
            columns,
            indices: Vec::new(),
            schema: None,
        }
    }
}

impl Operator for ProjectOperator {
    fn process(&mut self, _input: usize, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        if self.schema.as_ref() != Some(&batch.schema()) {
            self.indices = self
                .columns
                .iter()
                .map(|c| {
                    batch.schema().index_of(c).map_err(|_| {
                        Error::schema("project", format!("column `{c}` is not in the stream"))
                    })
                })
                .collect::<Result<_>>()?;
            self.schema = Some(batch.schema());
        }
        out.emit(batch.project(&self.indices)?);
        Ok(())
    }
}

impl Stream {
    /// Keeps the named columns, in this order.
    pub fn project<I, S>(&self, name: &str, columns: I) -> Stream
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.operator(
            name,
            ProjectOperator::new(columns.into_iter().map(Into::into).collect()),
        )
    }
}

//! `with_column`: adds (or replaces) a column computed from the batch.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;

use crate::dataflow::Stream;
use crate::error::{Error, Result};
use crate::operator::{Collector, Operator};

/// Computes one column from a batch.
pub type ColumnFn = Arc<dyn Fn(&RecordBatch) -> Result<ArrayRef> + Send + Sync>;

/// Adds a column named `column`, or replaces it when it exists.
#[derive(Clone)]
pub struct WithColumnOperator {
    column: String,
    f: ColumnFn,
}

impl WithColumnOperator {
    /// Adds `column` computed by `f`.
    pub fn new(
        column: impl Into<String>,
        f: impl Fn(&RecordBatch) -> Result<ArrayRef> + Send + Sync + 'static,
    ) -> Self {
        WithColumnOperator {
            column: column.into(),
            f: Arc::new(f),
        }
    }
}

/// Returns `batch` with `column` set to `values` (appended, or replacing a column of that name).
pub fn set_column(batch: &RecordBatch, column: &str, values: ArrayRef) -> Result<RecordBatch> {
    if values.len() != batch.num_rows() {
        return Err(Error::schema(
            "with_column",
            format!(
                "column `{column}` has {} values for {} rows",
                values.len(),
                batch.num_rows()
            ),
        ));
    }
    let field = Arc::new(Field::new(column, values.data_type().clone(), true));
    let schema = batch.schema();
    let mut fields: Vec<_> = schema.fields().iter().cloned().collect();
    let mut columns = batch.columns().to_vec();
    match schema.index_of(column) {
        Ok(i) => {
            fields[i] = field;
            columns[i] = values;
        }
        Err(_) => {
            fields.push(field);
            columns.push(values);
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
        columns,
    )?)
}

impl Operator for WithColumnOperator {
    fn process(&mut self, _input: usize, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        let values = (self.f)(&batch)?;
        out.emit(set_column(&batch, &self.column, values)?);
        Ok(())
    }
}

impl Stream {
    /// Adds or replaces `column`, computed from each batch by `f`.
    pub fn with_column(
        &self,
        name: &str,
        column: &str,
        f: impl Fn(&RecordBatch) -> Result<ArrayRef> + Send + Sync + 'static,
    ) -> Stream {
        self.operator(name, WithColumnOperator::new(column, f))
    }
}

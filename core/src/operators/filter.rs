//! `filter`: keeps the rows for which a predicate column is true.

use std::sync::Arc;

use arrow::array::BooleanArray;
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;

use crate::dataflow::Stream;
use crate::error::{Error, Result};
use crate::operator::{Collector, Operator};

/// The predicate a [`FilterOperator`] evaluates: one boolean per row (null drops the row).
pub type PredicateFn = Arc<dyn Fn(&RecordBatch) -> Result<BooleanArray> + Send + Sync>;

/// Keeps the rows where the predicate is true.
#[derive(Clone)]
pub struct FilterOperator {
    predicate: PredicateFn,
}

impl FilterOperator {
    /// A filter over `predicate`.
    pub fn new(
        predicate: impl Fn(&RecordBatch) -> Result<BooleanArray> + Send + Sync + 'static,
    ) -> Self {
        FilterOperator {
            predicate: Arc::new(predicate),
        }
    }
}

impl Operator for FilterOperator {
    fn process(&mut self, _input: usize, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        let mask = (self.predicate)(&batch)?;
        if mask.len() != batch.num_rows() {
            return Err(Error::schema(
                "filter",
                format!(
                    "predicate returned {} values for {} rows",
                    mask.len(),
                    batch.num_rows()
                ),
            ));
        }
        if mask.true_count() == batch.num_rows() {
            out.emit(batch);
        } else {
            out.emit(filter_record_batch(&batch, &mask)?);
        }
        Ok(())
    }
}

impl Stream {
    /// Keeps the rows for which `predicate` is true.
    pub fn filter(
        &self,
        name: &str,
        predicate: impl Fn(&RecordBatch) -> Result<BooleanArray> + Send + Sync + 'static,
    ) -> Stream {
        self.operator(name, FilterOperator::new(predicate))
    }
}

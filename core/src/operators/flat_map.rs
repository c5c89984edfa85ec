//! `flat_map`: one batch in, any number of batches out.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use crate::dataflow::Stream;
use crate::error::Result;
use crate::operator::{Collector, Operator};

/// The function a [`FlatMapOperator`] applies.
pub type FlatMapFn = Arc<dyn Fn(RecordBatch) -> Result<Vec<RecordBatch>> + Send + Sync>;

/// Applies a function that returns zero or more batches per input batch.
#[derive(Clone)]
pub struct FlatMapOperator {
    f: FlatMapFn,
}

impl FlatMapOperator {
    /// A flat-map over `f`.
    pub fn new(
        f: impl Fn(RecordBatch) -> Result<Vec<RecordBatch>> + Send + Sync + 'static,
    ) -> Self {
        FlatMapOperator { f: Arc::new(f) }
    }
}

impl Operator for FlatMapOperator {
    fn process(&mut self, _input: usize, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        for b in (self.f)(batch)? {
            out.emit(b);
        }
        Ok(())
    }
}

impl Stream {
    /// Transforms every batch into zero or more batches.
    pub fn flat_map(
        &self,
        name: &str,
        f: impl Fn(RecordBatch) -> Result<Vec<RecordBatch>> + Send + Sync + 'static,
    ) -> Stream {
        self.operator(name, FlatMapOperator::new(f))
    }
}

//! `map`: one batch in, one batch out.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use crate::dataflow::Stream;
use crate::error::Result;
use crate::operator::{Collector, Operator};

/// The function a [`MapOperator`] applies.
pub type MapFn = Arc<dyn Fn(RecordBatch) -> Result<RecordBatch> + Send + Sync>;

/// Applies a function to every batch.
#[derive(Clone)]
pub struct MapOperator {
    f: MapFn,
}

impl MapOperator {
    /// A map over `f`.
    pub fn new(f: impl Fn(RecordBatch) -> Result<RecordBatch> + Send + Sync + 'static) -> Self {
        MapOperator { f: Arc::new(f) }
    }
}

impl Operator for MapOperator {
    fn process(&mut self, _input: usize, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        out.emit((self.f)(batch)?);
        Ok(())
    }
}

impl Stream {
    /// Transforms every batch with `f` (which may change the schema).
    pub fn map(
        &self,
        name: &str,
        f: impl Fn(RecordBatch) -> Result<RecordBatch> + Send + Sync + 'static,
    ) -> Stream {
        self.operator(name, MapOperator::new(f))
    }
}

//! A source whose rows are a pure function of their index: deterministic, replayable, and
//! bounded or not.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::{Source, SourceContext, SourcePoll, SourcePosition};
use crate::error::{Error, Result};

/// Produces the rows `start..start + len` as one batch.
pub type GenerateFn = Arc<dyn Fn(u64, usize) -> Result<RecordBatch> + Send + Sync>;

/// Generates batches of rows by index. Its position is the next row index, so seeking replays
/// exactly the same rows.
#[derive(Clone)]
pub struct GeneratorSource {
    schema: SchemaRef,
    generate: GenerateFn,
    next_row: u64,
    total_rows: Option<u64>,
}

impl std::fmt::Debug for GeneratorSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratorSource")
            .field("next_row", &self.next_row)
            .field("total_rows", &self.total_rows)
            .finish()
    }
}

impl GeneratorSource {
    /// A generator of `total_rows` rows (`None`: unbounded).
    pub fn new(schema: SchemaRef, total_rows: Option<u64>, generate: GenerateFn) -> Self {
        GeneratorSource {
            schema,
            generate,
            next_row: 0,
            total_rows,
        }
    }
}

impl Source for GeneratorSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn poll_next(&mut self, ctx: &SourceContext) -> Result<SourcePoll> {
        let remaining = self
            .total_rows
            .map_or(u64::MAX, |t| t.saturating_sub(self.next_row));
        if remaining == 0 {
            return Ok(SourcePoll::End);
        }
        let len = remaining.min(ctx.bounds.max_rows as u64) as usize;
        let batch = (self.generate)(self.next_row, len)?;
        if batch.num_rows() != len || batch.schema() != self.schema {
            return Err(Error::schema(
                "generator source",
                format!(
                    "generate({}, {len}) returned {} rows with schema {:?}",
                    self.next_row,
                    batch.num_rows(),
                    batch.schema()
                ),
            ));
        }
        self.next_row += len as u64;
        Ok(SourcePoll::Batch(batch))
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::of(&self.next_row)
    }

    fn seek(&mut self, position: &SourcePosition) -> Result<()> {
        self.next_row = position.get("generator source")?;
        Ok(())
    }
}

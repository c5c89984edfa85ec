//! A bounded source over batches held in memory.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::{Source, SourceContext, SourcePoll, SourcePosition};
use crate::error::{Error, Result};

/// Replays a fixed list of batches; its position is the index of the next batch.
#[derive(Debug, Clone)]
pub struct MemorySource {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    next: usize,
}

impl MemorySource {
    /// A source over `batches`, all of which must have `schema`.
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<Self> {
        if let Some(i) = batches.iter().position(|b| b.schema() != schema) {
            return Err(Error::schema(
                "memory source",
                format!("batch {i} does not have the source schema"),
            ));
        }
        Ok(MemorySource {
            schema,
            batches,
            next: 0,
        })
    }

    /// A source over `batches`, taking the schema from the first one.
    pub fn from_batches(batches: Vec<RecordBatch>) -> Result<Self> {
        let schema = batches
            .first()
            .map(|b| b.schema())
            .ok_or_else(|| Error::schema("memory source", "no batches and no schema"))?;
        Self::new(schema, batches)
    }
}

impl Source for MemorySource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn poll_next(&mut self, _ctx: &SourceContext) -> Result<SourcePoll> {
        match self.batches.get(self.next) {
            Some(b) => {
                self.next += 1;
                Ok(SourcePoll::Batch(b.clone()))
            }
            None => Ok(SourcePoll::End),
        }
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::of(&self.next)
    }

    fn seek(&mut self, position: &SourcePosition) -> Result<()> {
        let next: usize = position.get("memory source")?;
        if next > self.batches.len() {
            return Err(Error::config(
                "memory source.position",
                format!("batch {next} is past the end ({})", self.batches.len()),
            ));
        }
        self.next = next;
        Ok(())
    }
}

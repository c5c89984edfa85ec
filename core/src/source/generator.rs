//! A source whose rows are a pure function of their index: deterministic, replayable, and
//! bounded or not. [`GeneratorSource::split`] deals the rows out to the source's subtasks in
//! blocks (block `k` to subtask `k % parallelism`), so a generated stream can be read in
//! parallel; otherwise every subtask generates every row.

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
    /// Rows per block dealt to each subtask in turn (`None`: not split).
    split: Option<u64>,
    /// Rows skipped after each block: the other subtasks' blocks.
    stride: u64,
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
            split: None,
            stride: 0,
        }
    }

    /// Deals the rows out to the source's subtasks in blocks of `block_rows` (at least 1): block
    /// `k` (rows `k × block_rows ..`) goes to subtask `k % parallelism`, so together they
    /// generate every row once. A subtask's position is still its next row.
    pub fn split(mut self, block_rows: usize) -> Self {
        self.split = Some(block_rows.max(1) as u64);
        self
    }

    /// The end of the block that holds `row`, for a split source.
    fn block_end(&self, row: u64) -> u64 {
        match self.split {
            Some(block) => (row / block + 1) * block,
            None => u64::MAX,
        }
    }
}

impl Source for GeneratorSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn open(&mut self, ctx: &SourceContext) -> Result<()> {
        if let Some(block) = self.split {
            let (subtask, parallelism) = (ctx.task.subtask as u64, ctx.task.parallelism as u64);
            self.stride = block * parallelism.saturating_sub(1);
            // a fresh subtask starts at its first block; a restored one keeps its position
            if self.next_row == 0 {
                self.next_row = subtask * block;
            }
        }
        Ok(())
    }

    fn poll_next(&mut self, ctx: &SourceContext) -> Result<SourcePoll> {
        let remaining = self
            .total_rows
            .map_or(u64::MAX, |t| t.saturating_sub(self.next_row));
        if remaining == 0 {
            return Ok(SourcePoll::End);
        }
        let in_block = self.block_end(self.next_row) - self.next_row;
        let len = remaining.min(ctx.bounds.max_rows as u64).min(in_block) as usize;
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
        if self.split.is_some() && self.next_row == self.block_end(self.next_row - 1) {
            // the block is done: skip the other subtasks' blocks
            self.next_row += self.stride;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::TaskInfo;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    fn numbers(rows: u64) -> GeneratorSource {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        GeneratorSource::new(
            schema,
            Some(rows),
            Arc::new(|start, len| {
                let x: Vec<i64> = (start as i64..(start + len as u64) as i64).collect();
                Ok(RecordBatch::try_from_iter([(
                    "x",
                    Arc::new(Int64Array::from(x)) as arrow::array::ArrayRef,
                )])?)
            }),
        )
    }

    fn drain(source: &mut GeneratorSource, ctx: &SourceContext) -> Vec<i64> {
        let mut rows = Vec::new();
        while let SourcePoll::Batch(b) = source.poll_next(ctx).unwrap() {
            rows.extend(b.column(0).as_primitive::<Int64Type>().values().iter());
        }
        rows
    }

    #[test]
    fn a_split_generator_deals_blocks_so_subtasks_make_every_row_once() {
        let mut all = Vec::new();
        for subtask in 0..3 {
            let mut ctx = SourceContext::standalone("gen");
            ctx.task = TaskInfo::new("gen", subtask, 3);
            ctx.bounds.max_rows = 4;
            let mut source = numbers(100).split(10);
            source.open(&ctx).unwrap();
            let rows = drain(&mut source, &ctx);
            assert!(rows.iter().all(|r| (r / 10) as usize % 3 == subtask));
            all.extend(rows);
        }
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
    }
}

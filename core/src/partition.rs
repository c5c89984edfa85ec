//! The edge contract: how records move from the subtasks of one operator to those of the next.

use arrow::array::UInt32Array;
use arrow::compute::take_record_batch;
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};
use crate::keys::{hash_rows, subtask_for_hash};

/// How an edge distributes records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edge {
    /// Subtask i sends to subtask i (equal parallelism). Chained into one task.
    Forward,
    /// Batches go round-robin to the downstream subtasks.
    Rebalance,
    /// Rows go to the subtask that owns their key (hash of these columns).
    Hash(Vec<String>),
    /// Every batch goes to every downstream subtask.
    Broadcast,
}

/// Splits batches for one edge of one upstream subtask. Holds reusable buffers, so partitioning
/// allocates per batch, never per row.
#[derive(Debug)]
pub(crate) struct Partitioner {
    edge: Edge,
    key_indices: Vec<usize>,
    key_schema: Option<arrow::datatypes::SchemaRef>,
    targets: usize,
    next: usize,
    hashes: Vec<u64>,
    indices: Vec<Vec<u32>>,
}

impl Partitioner {
    pub(crate) fn new(edge: Edge, targets: usize, start: usize) -> Self {
        Partitioner {
            edge,
            key_indices: Vec::new(),
            key_schema: None,
            targets,
            next: start % targets.max(1),
            hashes: Vec::new(),
            indices: vec![Vec::new(); targets],
        }
    }

    /// Calls `send(target, batch)` for each piece of `batch`.
    pub(crate) fn partition(
        &mut self,
        batch: &RecordBatch,
        mut send: impl FnMut(usize, RecordBatch),
    ) -> Result<()> {
        match &self.edge {
            // A forward edge has exactly one channel: to the subtask with the same index.
            Edge::Forward => send(0, batch.clone()),
            Edge::Rebalance => {
                send(self.next, batch.clone());
                self.next = (self.next + 1) % self.targets;
            }
            Edge::Broadcast => {
                for t in 0..self.targets {
                    send(t, batch.clone());
                }
            }
            Edge::Hash(columns) => {
                if self.targets == 1 {
                    send(0, batch.clone());
                    return Ok(());
                }
                if self.key_schema.as_ref() != Some(&batch.schema()) {
                    self.key_indices = columns
                        .iter()
                        .map(|c| {
                            batch.schema().index_of(c).map_err(|_| {
                                Error::schema(
                                    "hash partitioning",
                                    format!("key column `{c}` is not in the stream"),
                                )
                            })
                        })
                        .collect::<Result<_>>()?;
                    self.key_schema = Some(batch.schema());
                }
                let cols: Vec<_> = self
                    .key_indices
                    .iter()
                    .map(|&i| batch.column(i).clone())
                    .collect();
                hash_rows(&cols, &mut self.hashes)?;
                for v in &mut self.indices {
                    v.clear();
                }
                for (row, h) in self.hashes.iter().enumerate() {
                    self.indices[subtask_for_hash(*h, self.targets)].push(row as u32);
                }
                for (t, rows) in self.indices.iter().enumerate() {
                    if rows.is_empty() {
                        continue;
                    }
                    if rows.len() == batch.num_rows() {
                        send(t, batch.clone());
                    } else {
                        let idx = UInt32Array::from(rows.clone());
                        let piece = take_record_batch(batch, &idx).map_err(Error::Arrow)?;
                        send(t, piece);
                    }
                }
            }
        }
        Ok(())
    }
}

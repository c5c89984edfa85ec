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
    /// Each batch goes to the downstream subtask this upstream subtask has sent the fewest
    /// rows so far (ties: the next one round-robin). Batches of one size go round-robin;
    /// uneven ones still even out the rows, so no subtask waits on a peer that is starved of
    /// input (data-parallel training under a `sync` bound).
    Rebalance,
    /// Rows go to the subtask that owns their key group (hash of these columns, see
    /// [`keys`](crate::keys)).
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
    /// The job's key groups (hash edges route by key group).
    key_groups: u32,
    next: usize,
    /// Rows sent to each target (rebalance).
    sent: Vec<u64>,
    hashes: Vec<u64>,
    indices: Vec<Vec<u32>>,
}

impl Partitioner {
    pub(crate) fn new(edge: Edge, targets: usize, start: usize, key_groups: u32) -> Self {
        Partitioner {
            edge,
            key_indices: Vec::new(),
            key_schema: None,
            targets,
            key_groups,
            next: start % targets.max(1),
            sent: vec![0; targets],
            hashes: Vec::new(),
            indices: vec![Vec::new(); targets],
        }
    }

    /// The target sent the fewest rows, searching from `next` (round-robin among equals).
    fn least_sent(&self) -> usize {
        let n = self.targets.max(1);
        (0..n)
            .map(|i| (self.next + i) % n)
            .min_by_key(|&t| self.sent.get(t).copied().unwrap_or(0))
            .unwrap_or(0)
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
                let target = self.least_sent();
                if let Some(rows) = self.sent.get_mut(target) {
                    *rows += batch.num_rows() as u64;
                }
                send(target, batch.clone());
                self.next = (target + 1) % self.targets.max(1);
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
                    self.indices[subtask_for_hash(*h, self.targets, self.key_groups)]
                        .push(row as u32);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn rows(n: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let column = Int64Array::from_iter_values(0..n as i64);
        RecordBatch::try_new(schema, vec![Arc::new(column)]).unwrap()
    }

    /// The targets `batches` (row counts) go to over a rebalance edge to `targets` subtasks.
    fn dealt(targets: usize, batches: &[usize]) -> Vec<usize> {
        let mut p = Partitioner::new(Edge::Rebalance, targets, 0, 128);
        let mut to = Vec::new();
        for &n in batches {
            p.partition(&rows(n), |t, _| to.push(t)).unwrap();
        }
        to
    }

    #[test]
    fn rebalance_deals_even_batches_round_robin() {
        assert_eq!(dealt(3, &[10; 7]), vec![0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn rebalance_evens_out_rows_of_uneven_batches() {
        // a 1400-row batch, then 100-row ones: the second subtask gets them until it has
        // caught up, then they alternate
        let mut batches = vec![1400];
        batches.extend([100; 16]);
        let to = dealt(2, &batches);
        assert_eq!(to[..15], [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
        assert_eq!(to[15..], [0, 1]);
    }
}

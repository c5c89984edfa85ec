//! A transactional sink whose commits are final, and a keyed running count whose output
//! depends on its restored state: the two halves of an exactly-once test that bites.
//!
//! [`TxSink`] behaves like a Kafka transactional producer: rows go into the subtask's open
//! transaction, `pre_commit(e)` prepares it durably (the shared [`TxLog`] outlives attempts),
//! `commit(e)` makes every prepared transaction up to `e` visible, for good — a later attempt
//! cannot take committed rows back, so replaying more than the restored checkpoint shows up as
//! duplicates. A new attempt aborts what it finds prepared after the checkpoint it restores;
//! what is prepared up to it is published by the runtime's recovery commit.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{Array, ArrayRef, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use arrow::util::display::array_value_to_string;
use eddy_core::prelude::*;

/// What the transactional sinks of a job share: prepared and committed transactions.
#[derive(Debug, Default)]
pub struct TxLog {
    /// Prepared transactions by (subtask, epoch).
    pub prepared: BTreeMap<(usize, u64), Vec<String>>,
    /// Committed rows, in commit order; never taken back.
    pub committed: Vec<String>,
}

/// A two-phase sink with final commits (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct TxSink {
    log: Arc<Mutex<TxLog>>,
    subtask: usize,
    transactional: bool,
    restored: Option<Epoch>,
    open: Vec<String>,
}

impl TxSink {
    pub fn new() -> Self {
        TxSink::default()
    }

    /// Committed rows, sorted.
    pub fn committed(&self) -> Vec<String> {
        let mut rows = self.log.lock().unwrap().committed.clone();
        rows.sort();
        rows
    }

    /// Prepared transactions not committed (nor aborted) yet.
    pub fn prepared(&self) -> usize {
        self.log.lock().unwrap().prepared.len()
    }
}

impl Sink for TxSink {
    fn on_checkpointing(&mut self, restored: Option<Epoch>) -> Result<()> {
        self.transactional = true;
        self.restored = restored;
        Ok(())
    }

    fn open(&mut self, task: &TaskInfo) -> Result<()> {
        self.subtask = task.subtask;
        self.open.clear();
        if self.transactional {
            // abort what an earlier attempt prepared after the restored checkpoint
            let keep = self.restored.map_or(0, |e| e.0);
            let s = self.subtask;
            self.log
                .lock()
                .unwrap()
                .prepared
                .retain(|&(sub, e), _| sub != s || e <= keep);
        }
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let rows = (0..batch.num_rows()).map(|r| {
            batch
                .columns()
                .iter()
                .map(|c| array_value_to_string(c, r).unwrap())
                .collect::<Vec<_>>()
                .join(",")
        });
        if self.transactional {
            self.open.extend(rows);
        } else {
            self.log.lock().unwrap().committed.extend(rows);
        }
        Ok(())
    }

    fn pre_commit(&mut self, epoch: Epoch) -> Result<()> {
        let rows = std::mem::take(&mut self.open);
        if !rows.is_empty() {
            self.log
                .lock()
                .unwrap()
                .prepared
                .insert((self.subtask, epoch.0), rows);
        }
        Ok(())
    }

    fn commit(&mut self, epoch: Epoch) -> Result<()> {
        let mut log = self.log.lock().unwrap();
        let s = self.subtask;
        let due: Vec<_> = log
            .prepared
            .keys()
            .filter(|&&(sub, e)| sub == s && e <= epoch.0)
            .copied()
            .collect();
        for key in due {
            if let Some(rows) = log.prepared.remove(&key) {
                log.committed.extend(rows);
            }
        }
        Ok(())
    }

    /// Like the file sinks: whatever is prepared or open is committed when the input ends.
    fn close(&mut self) -> Result<()> {
        self.commit(Epoch(u64::MAX))?;
        let rows = std::mem::take(&mut self.open);
        self.log.lock().unwrap().committed.extend(rows);
        Ok(())
    }
}

/// Counts rows per (input, `k`) and emits each row as `(src, k, ts, n)`, `n` the row's rank
/// among the rows of its key and input. Each input is one ordered stream per key, so the
/// output is the same set whatever the interleaving of the inputs — and wrong unless the
/// counts were restored along with the source positions. Sleeps `delay` per batch.
#[derive(Debug, Clone, Default)]
pub struct RunningCount {
    counts: HashMap<(usize, String), i64>,
    delay: Duration,
}

impl RunningCount {
    pub fn new(delay: Duration) -> Self {
        RunningCount {
            counts: HashMap::new(),
            delay,
        }
    }
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| Error::schema("count", format!("no column `{name}` of the right type")))
}

impl Operator for RunningCount {
    fn process(&mut self, input: usize, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        let k = column::<StringArray>(&batch, "k")?;
        let ts = column::<Int64Array>(&batch, "ts")?;
        let mut n = Vec::with_capacity(k.len());
        for key in k.iter() {
            let c = self
                .counts
                .entry((input, key.unwrap_or_default().to_string()))
                .or_default();
            *c += 1;
            n.push(*c);
        }
        let src = Int64Array::from(vec![input as i64; k.len()]);
        out.emit(RecordBatch::try_from_iter([
            ("src", Arc::new(src) as ArrayRef),
            ("k", Arc::new(k.clone()) as ArrayRef),
            ("ts", Arc::new(ts.clone()) as ArrayRef),
            ("n", Arc::new(Int64Array::from(n)) as ArrayRef),
        ])?);
        Ok(())
    }

    fn snapshot(&mut self, _epoch: Epoch) -> Result<Option<Vec<u8>>> {
        let mut entries: Vec<_> = self.counts.iter().collect();
        entries.sort();
        let text: String = entries
            .iter()
            .map(|((i, k), n)| format!("{i}\t{k}\t{n}\n"))
            .collect();
        Ok(Some(text.into_bytes()))
    }

    fn restore(&mut self, state: &[u8]) -> Result<()> {
        let text = std::str::from_utf8(state).map_err(|e| Error::Internal(e.to_string()))?;
        self.counts.clear();
        for line in text.lines() {
            let mut f = line.split('\t');
            let (Some(i), Some(k), Some(n)) = (f.next(), f.next(), f.next()) else {
                return Err(Error::Internal(format!("bad count state line `{line}`")));
            };
            let bad = |e: std::num::ParseIntError| Error::Internal(e.to_string());
            self.counts
                .insert((i.parse().map_err(bad)?, k.to_string()), n.parse().map_err(bad)?);
        }
        Ok(())
    }
}

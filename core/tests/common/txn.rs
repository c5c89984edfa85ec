//! A transactional sink whose commits are final, and a keyed running count whose output
//! depends on its restored state: the two halves of an exactly-once test that bites.
//!
//! [`TxSink`] behaves like a Kafka transactional producer: rows go into the subtask's open
//! transaction, `pre_commit(e)` prepares it durably (the shared [`TxLog`] outlives attempts),
//! `commit(e)` makes the subtask's own prepared transactions up to `e` visible, for good — a
//! later attempt cannot take committed rows back, so replaying more than the restored
//! checkpoint shows up as duplicates. A new attempt aborts what it finds prepared after the
//! checkpoint it restores; what an earlier attempt prepared up to it is published only by the
//! runtime's recovery commit (`commit(restored)` before any record, as Flink's
//! `recoverAndCommit`). `close` aborts what is still open: the runtime must have committed
//! everything through a checkpoint (the final one, for a job that ends).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{Array, ArrayRef, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use arrow::util::display::array_value_to_string;
use eddy_core::dataflow::{CheckpointConfig, CheckpointMode, FailoverConfig, RestartPolicy};
use eddy_core::operator::factory_from_clone;
use eddy_core::prelude::*;
use eddy_core::sink::SinkFactory;
use eddy_core::source::BatchBounds;

use super::keyed_events;

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
    /// Whether the recovery commit of `restored` is still to come.
    recovering: bool,
    open: Vec<String>,
    /// Epochs this instance prepared, not committed yet.
    mine: Vec<u64>,
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
    fn withdraws_uncommitted(&self) -> bool {
        true
    }

    fn on_checkpointing(&mut self, restored: Option<Epoch>) -> Result<()> {
        self.transactional = true;
        self.restored = restored;
        Ok(())
    }

    fn open(&mut self, task: &TaskInfo) -> Result<()> {
        self.subtask = task.subtask;
        self.open.clear();
        self.mine.clear();
        self.recovering = self.restored.is_some();
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
            self.mine.push(epoch.0);
        }
        Ok(())
    }

    fn commit(&mut self, epoch: Epoch) -> Result<()> {
        let mut log = self.log.lock().unwrap();
        let s = self.subtask;
        let mut due: Vec<u64> = self
            .mine
            .iter()
            .copied()
            .filter(|&e| e <= epoch.0)
            .collect();
        self.mine.retain(|&e| e > epoch.0);
        if self.recovering && Some(epoch) == self.restored {
            // the recovery commit: what an earlier attempt prepared up to the checkpoint
            self.recovering = false;
            due.extend(
                log.prepared
                    .keys()
                    .filter(|&&(sub, e)| sub == s && e <= epoch.0)
                    .map(|&(_, e)| e),
            );
        }
        for e in due {
            if let Some(rows) = log.prepared.remove(&(s, e)) {
                log.committed.extend(rows);
            }
        }
        Ok(())
    }

    /// Aborts what is still open; without checkpoints there is no transaction.
    fn close(&mut self) -> Result<()> {
        self.open.clear();
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
            self.counts.insert(
                (i.parse().map_err(bad)?, k.to_string()),
                n.parse().map_err(bad)?,
            );
        }
        Ok(())
    }
}

pub const LEFT_ROWS: u64 = 3_000;
pub const RIGHT_ROWS: u64 = 2_000;
const BATCH_ROWS: usize = 20; // 150 + 100 batches

/// left (13 keys) and right (7 keys), each hashed by `k` into a two-input running count of
/// parallelism `p`, chained to a transactional sink.
pub fn two_input_job(config: DataflowConfig, p: usize, sink: &TxSink) -> Dataflow {
    let sink = sink.clone();
    two_input_job_with(config, p, Arc::new(move |_| Ok(Box::new(sink.clone()))))
}

/// [`two_input_job`] with any sink.
pub fn two_input_job_with(config: DataflowConfig, p: usize, sink: SinkFactory) -> Dataflow {
    let flow = Dataflow::new(DataflowConfig {
        bounds: BatchBounds {
            max_rows: BATCH_ROWS,
            ..BatchBounds::default()
        },
        idle_poll: Duration::from_millis(1),
        ..config
    });
    let right = flow
        .source("right", keyed_events(RIGHT_ROWS, 7))
        .partition_by(["k"]);
    flow.source("left", keyed_events(LEFT_ROWS, 13))
        .partition_by(["k"])
        .connect(
            &[right],
            "count",
            factory_from_clone(RunningCount::new(Duration::from_micros(500))),
        )
        .parallelism(p)
        .sink_with("out", sink)
        .parallelism(p);
    flow
}

/// The rows of an uninterrupted run of [`two_input_job`] (no checkpoints).
pub fn reference() -> Vec<String> {
    let sink = TxSink::new();
    two_input_job(DataflowConfig::default(), 1, &sink)
        .run()
        .unwrap();
    let rows = sink.committed();
    assert_eq!(rows.len() as u64, LEFT_ROWS + RIGHT_ROWS);
    rows
}

/// Checkpoints every 2 ms into `dir`, up to 10 exactly-once restarts with a short backoff.
pub fn faulty_config(
    dir: &std::path::Path,
    mode: CheckpointMode,
    capacity: usize,
) -> DataflowConfig {
    DataflowConfig {
        channel_capacity: capacity,
        checkpoint: CheckpointConfig {
            dir: Some(dir.to_path_buf()),
            interval: Some(Duration::from_millis(2)),
            mode,
            ..CheckpointConfig::default()
        },
        failover: FailoverConfig {
            restart: RestartPolicy {
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(5),
                ..RestartPolicy::restarts(10)
            },
            ..FailoverConfig::default()
        },
        ..DataflowConfig::default()
    }
}

/// Asserts `got == want` with a short message: the counts, and the first rows that differ.
pub fn assert_same_rows(got: &[String], want: &[String], what: &str) {
    if got == want {
        return;
    }
    let missing: Vec<_> = want
        .iter()
        .filter(|r| got.binary_search(r).is_err())
        .take(3)
        .collect();
    let extra: Vec<_> = got
        .iter()
        .filter(|r| want.binary_search(r).is_err())
        .take(3)
        .collect();
    panic!(
        "{what}: {} rows, want {}; missing e.g. {missing:?}; unexpected e.g. {extra:?}",
        got.len(),
        want.len()
    );
}

/// Asserts that every subtask of `count` received rows (the keys spread over parallelism `p`).
pub fn assert_spread(handle: &JobHandle, p: usize) {
    for s in 0..p {
        let rows = handle.metrics().subtask("count", s).map_or(0, |m| {
            m.records_in.load(std::sync::atomic::Ordering::SeqCst)
        });
        assert!(rows > 0, "count[{s}] of {p} received no rows");
    }
}

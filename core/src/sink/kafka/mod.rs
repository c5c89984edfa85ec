//! A sink producing one Kafka message per row: the row as a JSON object, keyed by a column
//! when the address names one (`?key=COLUMN`).
//!
//! ## Delivery
//! - **At-least-once** (the default): rows are produced as they are written;
//!   [`pre_commit`](Sink::pre_commit) flushes the producer and waits until the broker
//!   acknowledged every message (`acks=all`), so a checkpoint completes only once its rows are
//!   in the topic. A message the broker refused, or one not acknowledged within
//!   [`flush_timeout`](KafkaSinkOptions::flush_timeout), fails the checkpoint (and the task)
//!   with the first delivery error (naming the partition) and the count; nothing is dropped
//!   silently. A restart from a checkpoint writes the rows after it again: duplicates, never a
//!   gap. Unkeyed messages are spread by librdkafka's partitioner.
//! - **Exactly-once** (`?delivery=exactly-once`), the way Flink's `GenericWriteAheadSink` with
//!   an idempotent committer works: a write-ahead log per subtask and epoch, produced only
//!   when the epoch's checkpoint completed. Needs a job that takes checkpoints and a
//!   [`staging_dir`](KafkaSinkOptions::staging_dir) (the job's checkpoint directory is the
//!   natural place); without either the sink is refused with the reason.
//!   1. `write` stages each row's message (partition, key, JSON payload) in the subtask's
//!      staging file of the current epoch; nothing reaches the broker.
//!   2. `pre_commit(E)` completes the file (count, checksum), fsyncs and seals it.
//!   3. `commit(E)` — the checkpoint of `E` is complete — records each partition's start
//!      offset durably, then produces the epoch's messages, each with headers naming it:
//!      `eddy-sink` (the sink's operator name), `eddy-subtask`, `eddy-epoch` and `eddy-seq`
//!      (its place in the epoch; the numbers big-endian `u64`). Once every one is acknowledged
//!      the staging file is deleted.
//!   4. A restored sink re-commits every epoch that was staged up to the restored checkpoint
//!      and not known committed (its staging file is still there). For an epoch whose start
//!      offsets were recorded — an earlier attempt began producing it — it first reads the
//!      partitions back from those offsets and produces only the messages whose
//!      (subtask, epoch, seq) are not in the topic yet. A crash anywhere in a commit neither
//!      duplicates nor loses a row.
//!
//!   The partition of a message is fixed when it is staged, so a replay writes the same
//!   messages to the same partitions: keyed rows go to the key's hash (eddy's key hash,
//!   [`keys::hash_column`](crate::keys::hash_column)) modulo the partition count, unkeyed rows
//!   of subtask `s` to partition `s % partitions` (with at least as many partitions as
//!   subtasks, one producer per partition). Produce requests are not retried by the producer
//!   (`message.send.max.retries=0`, a retry can write a request twice): a failed one fails the
//!   commit, and the restore's read-back settles what landed.
//!
//!   **Latency.** Rows appear in the topic when the checkpoint after them completes: one
//!   checkpoint interval plus the checkpoint's own time later than with at-least-once, as
//!   with Flink's two-phase sinks. A consumer sees every row exactly once with the
//!   `read_uncommitted` isolation Kafka consumers default to (the only one tansu offers). The
//!   cost: every row is written to and read back from the staging file once.
//!
//!   **Why not Kafka transactions.** A transactional producer per subtask (`pre_commit` =
//!   flush in the open transaction, `commit` = `commit_transaction`) would hide uncommitted
//!   rows from `read_committed` consumers without a staging file; but the broker eddy is tested
//!   against, tansu 0.6.0, has no `EndTxn` (API key 26) — a transaction can be begun and
//!   written to but neither committed nor aborted (`core/tests/kafka_probe.rs`,
//!   `transactions_cannot_be_committed`) — and eddy does not ship what it cannot verify against
//!   a real broker. The write-ahead sink needs only produce and fetch.
//!
//!   **Limits.** One sink name per topic and job: the headers identify a message by the sink's
//!   operator name, subtask and epoch. A job must be restored at the parallelism its staged
//!   epochs were written with (other subtasks' staging files are refused, not dropped). A
//!   produce request still on the wire when a process dies, which the broker writes only after
//!   the restarted sink's read-back, would be written twice; within a process, a failed
//!   attempt's sink waits for its producer's acknowledgements before it is dropped.
//!
//! The topic is created at [`open`](Sink::open) when the broker does not have it, with
//! `?partitions=N` partitions (default 1).
//!
//! Per batch the rows are encoded into one reused buffer (arrow's JSON writer, one line per
//! row) and the key into one reused string: nothing is allocated per row on the eddy side
//! (librdkafka copies each message, and the exactly-once sink's headers, into its queue).
//!
//! | module | what |
//! |---|---|
//! | `writer` | [`KafkaWriter`]: the producer, fails loudly on any undelivered message |
//! | `staging` | the staging file format of one epoch (footer with count and checksum) |
//! | `exactly_once` | staged epochs of a subtask and their idempotent commit |
//! | `readback` | identity headers, recorded start offsets, the read-back on re-commit |

mod exactly_once;
mod readback;
mod staging;
mod writer;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use arrow::json::writer::LineDelimited;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::Sink;
use crate::error::{Error, Result};
use crate::message::Epoch;
use crate::operator::TaskInfo;
use crate::source::kafka::{KafkaDelivery, KafkaSourceOptions, KafkaUri};

pub use exactly_once::{CommitFault, CommitFaultPoint};
pub use readback::{HEADER_EPOCH, HEADER_SEQ, HEADER_SINK, HEADER_SUBTASK};
pub use writer::{KafkaWriter, Retries};

use exactly_once::ExactlyOnce;

/// How long a flush waits for the broker's acknowledgements by default.
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings of a [`KafkaSink`].
#[derive(Debug, Clone)]
pub struct KafkaSinkOptions {
    /// Brokers, topic, and the sink's `partitions`, `key` and `delivery`.
    pub uri: KafkaUri,
    /// Write null values as `"column": null`. Default: `false` (null fields are left out).
    pub explicit_nulls: bool,
    /// How long [`pre_commit`](Sink::pre_commit), [`commit`](Sink::commit) and
    /// [`close`](Sink::close) wait for every message to be acknowledged, and how long one
    /// message may wait in the producer (`message.timeout.ms`). Default
    /// [`DEFAULT_FLUSH_TIMEOUT`].
    pub flush_timeout: Duration,
    /// Where an exactly-once sink stages its epochs (a directory `<sink name>` in it per
    /// sink; it must survive the process, like the checkpoints). Required for
    /// `delivery=exactly-once`, unused otherwise. Default: none.
    pub staging_dir: Option<PathBuf>,
    /// For fault tests: a failure injected into an exactly-once commit between two produced
    /// messages. Default: none.
    pub commit_fault: Option<CommitFault>,
}

impl KafkaSinkOptions {
    /// Options writing to `uri`.
    pub fn new(uri: KafkaUri) -> Self {
        KafkaSinkOptions {
            uri,
            explicit_nulls: false,
            flush_timeout: DEFAULT_FLUSH_TIMEOUT,
            staging_dir: None,
            commit_fault: None,
        }
    }

    /// These options staging exactly-once epochs in `dir`.
    pub fn with_staging_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.staging_dir = Some(dir.into());
        self
    }
}

/// Produces rows to a Kafka topic; see [the module docs](self).
pub struct KafkaSink {
    options: KafkaSinkOptions,
    writer: Option<KafkaWriter>,
    /// `Some(restored)` once the job announced checkpoints.
    checkpointing: Option<Option<Epoch>>,
    /// Exactly-once: the staged epochs.
    staged: Option<ExactlyOnce>,
    /// Exactly-once: unkeyed rows go to this partition.
    own_partition: i32,
    /// The JSON lines of the batch being written.
    json: Vec<u8>,
    /// The key of the row being written.
    key: String,
    /// Exactly-once: the key hash of each row of the batch.
    hashes: Vec<u64>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("uri", &self.options.uri.to_string())
            .field("writer", &self.writer)
            .finish()
    }
}

impl Clone for KafkaSink {
    /// An unopened sink with the same options.
    fn clone(&self) -> Self {
        KafkaSink::unopened(self.options.clone())
    }
}

impl KafkaSink {
    /// A sink with checked `options`: a flush timeout above zero, and for exactly-once a
    /// staging directory.
    pub fn new(options: KafkaSinkOptions) -> Result<Self> {
        if options.flush_timeout.is_zero() {
            return Err(Error::config(
                "kafka sink flush-timeout",
                "must be longer than zero",
            ));
        }
        if options.uri.delivery == KafkaDelivery::ExactlyOnce && options.staging_dir.is_none() {
            return Err(Error::config(
                format!("{} delivery", options.uri),
                "delivery=exactly-once stages each epoch's rows in a file until its checkpoint \
                 completes: give the sink a staging directory (KafkaSinkOptions::staging_dir, \
                 next to the job's checkpoints)",
            ));
        }
        Ok(KafkaSink::unopened(options))
    }

    fn unopened(options: KafkaSinkOptions) -> Self {
        KafkaSink {
            options,
            writer: None,
            checkpointing: None,
            staged: None,
            own_partition: 0,
            json: Vec::new(),
            key: String::new(),
            hashes: Vec::new(),
        }
    }

    fn exactly_once(&self) -> bool {
        self.options.uri.delivery == KafkaDelivery::ExactlyOnce
    }

    fn parts(&mut self) -> Result<(&mut ExactlyOnce, &mut KafkaWriter)> {
        match (&mut self.staged, &mut self.writer) {
            (Some(s), Some(w)) => Ok((s, w)),
            _ => Err(Error::Internal("kafka sink used before open".into())),
        }
    }

    fn open_exactly_once(&mut self, task: &TaskInfo) -> Result<()> {
        let uri = &self.options.uri;
        let restored = self.checkpointing.ok_or_else(|| {
            Error::config(
                format!("{uri} delivery"),
                "delivery=exactly-once produces each epoch when its checkpoint completes: the \
                 job must take checkpoints (a checkpoint directory)",
            )
        })?;
        let dir = self.options.staging_dir.clone().ok_or_else(|| {
            Error::config(
                format!("{uri} delivery"),
                "exactly-once needs a staging dir",
            )
        })?;
        let writer = KafkaWriter::open_with(uri, self.options.flush_timeout, Retries::Never)?;
        self.own_partition = (task.subtask % writer.partitions().max(1)) as i32;
        let mut probe = KafkaSourceOptions::new(uri.clone());
        probe.request_timeout = self.options.flush_timeout;
        self.staged = Some(ExactlyOnce::open(
            &dir,
            task,
            restored,
            probe,
            self.options.commit_fault.clone(),
            self.options.flush_timeout,
        )?);
        self.writer = Some(writer);
        Ok(())
    }

    /// The JSON lines of `batch` into `self.json`, and the formatter of its key column.
    fn encode<'b>(&mut self, batch: &'b RecordBatch) -> Result<Option<ArrayFormatter<'b>>> {
        let key_column = match &self.options.uri.key {
            None => None,
            Some(name) => Some(batch.column(batch.schema().index_of(name).map_err(|_| {
                Error::config(
                    format!("{} key", self.options.uri),
                    format!("`{name}` is not a column of the rows written"),
                )
            })?)),
        };
        let formatter = key_column
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default()))
            .transpose()?;
        if let Some(c) = key_column.filter(|_| self.exactly_once()) {
            self.hashes.clear();
            self.hashes.resize(batch.num_rows(), 0);
            crate::keys::hash_column(c, &mut self.hashes, true)?;
        }
        self.json.clear();
        let mut writer = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(self.options.explicit_nulls)
            .build::<_, LineDelimited>(&mut self.json);
        writer.write(batch)?;
        writer.finish()?;
        Ok(formatter)
    }
}

impl Sink for KafkaSink {
    /// Exactly-once: staged rows a recovery commit does not cover are deleted.
    fn withdraws_uncommitted(&self) -> bool {
        self.exactly_once()
    }

    fn on_checkpointing(&mut self, restored: Option<Epoch>) -> Result<()> {
        self.checkpointing = Some(restored);
        Ok(())
    }

    fn open(&mut self, task: &TaskInfo) -> Result<()> {
        if self.exactly_once() {
            return self.open_exactly_once(task);
        }
        self.writer = Some(KafkaWriter::open(
            &self.options.uri,
            self.options.flush_timeout,
        )?);
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let formatter = self.encode(batch)?;
        let (json, mut key) = (
            std::mem::take(&mut self.json),
            std::mem::take(&mut self.key),
        );
        let result = (|| {
            let partitions = self.writer.as_ref().map_or(1, KafkaWriter::partitions) as u64;
            // arrow escapes newlines inside strings: one line per row
            for (row, line) in json
                .split(|&b| b == b'\n')
                .take(batch.num_rows())
                .enumerate()
            {
                let key = match &formatter {
                    None => None,
                    Some(f) => {
                        key.clear();
                        write!(key, "{}", f.value(row)).map_err(|e| {
                            Error::Internal(format!("formatting the key of row {row}: {e}"))
                        })?;
                        Some(key.as_bytes())
                    }
                };
                if self.exactly_once() {
                    let partition = match key {
                        Some(_) => (self.hashes[row] % partitions) as i32,
                        None => self.own_partition,
                    };
                    self.parts()?.0.stage(partition, key, line)?;
                } else {
                    let out = self
                        .writer
                        .as_mut()
                        .ok_or_else(|| Error::Internal("kafka sink written before open".into()))?;
                    out.send_to(None, key, line, None)?;
                }
            }
            match (&self.writer, self.exactly_once()) {
                (Some(w), false) => w.check(),
                _ => Ok(()),
            }
        })();
        self.json = json;
        self.key = key;
        result
    }

    /// At-least-once: waits for the broker to acknowledge every row written so far, so the
    /// checkpoint of `epoch` completes only with its rows in the topic. Exactly-once: seals
    /// the epoch's staging file.
    fn pre_commit(&mut self, epoch: Epoch) -> Result<()> {
        if self.exactly_once() {
            return self.parts()?.0.pre_commit(epoch);
        }
        match &self.writer {
            Some(w) => w.flush(&format!("pre-commit of epoch {}", epoch.0)),
            None => Ok(()),
        }
    }

    /// Exactly-once: produces every staged epoch up to `epoch` (see the module docs).
    fn commit(&mut self, epoch: Epoch) -> Result<()> {
        if !self.exactly_once() {
            return Ok(());
        }
        let (staged, out) = self.parts()?;
        staged.commit(epoch, out)
    }

    fn close(&mut self) -> Result<()> {
        if self.exactly_once() && self.staged.is_some() {
            let (staged, out) = self.parts()?;
            staged.close(out)?;
        }
        if let Some(w) = self.writer.take() {
            w.flush("close")?;
        }
        Ok(())
    }
}

impl Drop for KafkaSink {
    /// Exactly-once: waits (up to the flush timeout) until the messages sent are acknowledged
    /// or failed, so that a restarted attempt's read-back sees everything this one produced.
    fn drop(&mut self) {
        if let (true, Some(w)) = (self.exactly_once(), &self.writer) {
            if let Err(e) = w.flush("drop") {
                tracing::warn!("kafka sink dropped with messages in doubt: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_once_without_a_staging_dir_is_refused_naming_it() -> Result<()> {
        let uri = KafkaUri::parse("kafka://127.0.0.1:9/out?delivery=exactly-once")?;
        let err = KafkaSink::new(KafkaSinkOptions::new(uri.clone())).expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("staging"), "{text}");
        assert!(KafkaSink::new(KafkaSinkOptions::new(uri).with_staging_dir("/tmp/x")).is_ok());
        Ok(())
    }

    #[test]
    fn exactly_once_in_a_job_without_checkpoints_is_refused_at_open() -> Result<()> {
        let uri = KafkaUri::parse("kafka://127.0.0.1:9/out?delivery=exactly-once")?;
        let mut sink = KafkaSink::new(KafkaSinkOptions::new(uri).with_staging_dir("/tmp/x"))?;
        let err = sink.open(&TaskInfo::new("out", 0, 1)).expect_err("refused");
        assert!(err.to_string().contains("checkpoints"), "{err}");
        Ok(())
    }

    #[test]
    fn writing_before_open_is_an_error_not_a_panic() -> Result<()> {
        let batch = RecordBatch::try_from_iter([(
            "n",
            std::sync::Arc::new(arrow::array::Int64Array::from(vec![1])) as _,
        )])?;
        for address in [
            "kafka://127.0.0.1:9/out",
            "kafka://127.0.0.1:9/out?delivery=exactly-once",
        ] {
            let uri = KafkaUri::parse(address)?;
            let mut sink = KafkaSink::new(KafkaSinkOptions::new(uri).with_staging_dir("/tmp/x"))?;
            assert!(sink.write(&batch).is_err(), "{address}");
        }
        Ok(())
    }
}

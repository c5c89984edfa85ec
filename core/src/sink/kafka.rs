//! A sink producing one Kafka message per row: the row as a JSON object, keyed by a column
//! when the address names one (`?key=COLUMN`).
//!
//! ## Delivery
//! - **At-least-once** (the default): rows are produced as they are written;
//!   [`pre_commit`](Sink::pre_commit) flushes the producer and waits until the broker
//!   acknowledged every message (`acks=all`), so a checkpoint completes only once its rows are
//!   in the topic. A message the broker refused, or one not acknowledged within
//!   [`flush_timeout`](KafkaSinkOptions::flush_timeout), fails the checkpoint (and the task)
//!   with the first delivery error and the count; nothing is dropped silently. A restart from
//!   a checkpoint writes the rows after it again: duplicates, never a gap.
//! - **Exactly-once** (`?delivery=exactly-once`) would be Kafka transactions tied to the
//!   checkpoint epoch (a `transactional.id` per subtask, `pre_commit` = flush inside the open
//!   transaction, `commit` = `commit_transaction`, a restart's `init_transactions` aborting
//!   what the failed attempt left open). It is **refused** by [`KafkaSink::new`]: the broker
//!   eddy is tested against, tansu 0.6.0, does not offer `EndTxn` (API key 26) — a
//!   transaction can be begun and written to but neither committed nor aborted
//!   (`core/tests/kafka_probe.rs`, `transactions_cannot_be_committed`) — so a transactional
//!   sink could not be verified against a real broker, and eddy does not ship it unverified.
//!
//! The topic is created at [`open`](Sink::open) when the broker does not have it, with
//! `?partitions=N` partitions (default 1). Messages without a key are spread by librdkafka's
//! partitioner; keyed ones go to the partition of their key's hash.
//!
//! Per batch the rows are encoded into one reused buffer (arrow's JSON writer, one line per
//! row) and the key into one reused string: nothing is allocated per row on the eddy side.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arrow::json::writer::LineDelimited;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use super::Sink;
use crate::error::{Error, Result};
use crate::message::Epoch;
use crate::operator::TaskInfo;
use crate::source::kafka::{ensure_topic, KafkaDelivery, KafkaUri, DEFAULT_REQUEST_TIMEOUT};

/// How long a flush waits for the broker's acknowledgements by default.
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings of a [`KafkaSink`].
#[derive(Debug, Clone)]
pub struct KafkaSinkOptions {
    /// Brokers, topic, and the sink's `partitions`, `key` and `delivery`.
    pub uri: KafkaUri,
    /// Write null values as `"column": null`. Default: `false` (null fields are left out).
    pub explicit_nulls: bool,
    /// How long [`pre_commit`](Sink::pre_commit) and [`close`](Sink::close) wait for every
    /// message to be acknowledged, and how long one message may wait in the producer
    /// (`message.timeout.ms`). Default [`DEFAULT_FLUSH_TIMEOUT`].
    pub flush_timeout: Duration,
}

impl KafkaSinkOptions {
    /// Options writing to `uri`.
    pub fn new(uri: KafkaUri) -> Self {
        KafkaSinkOptions {
            uri,
            explicit_nulls: false,
            flush_timeout: DEFAULT_FLUSH_TIMEOUT,
        }
    }
}

/// Delivery reports of one producer: what was acknowledged, what failed and the first error.
#[derive(Debug, Default)]
struct Deliveries {
    acked: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        match result {
            Ok(_) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

/// A producer to one topic that fails loudly: sends retry while the local queue is full,
/// [`flush`](Self::flush) waits for every acknowledgement and fails with the first delivery
/// error. The [`KafkaSink`] and `eddy gen … --out kafka://…` write through it.
pub struct KafkaWriter {
    uri: KafkaUri,
    flush_timeout: Duration,
    producer: BaseProducer<Deliveries>,
    /// Messages sent by this writer.
    sent: u64,
}

impl std::fmt::Debug for KafkaWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaWriter")
            .field("uri", &self.uri.to_string())
            .field("sent", &self.sent)
            .finish()
    }
}

impl KafkaWriter {
    /// Connects to `uri`'s brokers, creating the topic (with `uri.partitions` partitions)
    /// when it does not exist. `flush_timeout` bounds each flush and each message's wait in
    /// the producer (`message.timeout.ms`).
    pub fn open(uri: &KafkaUri, flush_timeout: Duration) -> Result<Self> {
        ensure_topic(uri, DEFAULT_REQUEST_TIMEOUT)?;
        let timeout_ms = flush_timeout.as_millis().max(1).to_string();
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &uri.brokers)
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", &timeout_ms)
            .set("socket.keepalive.enable", "true")
            .set("log_level", "3")
            .create_with_context(Deliveries::default())
            .map_err(|e| Error::kafka(format!("sink {uri}"), format!("producer: {e}")))?;
        Ok(KafkaWriter {
            uri: uri.clone(),
            flush_timeout,
            producer,
            sent: 0,
        })
    }

    /// Messages sent so far (acknowledged or not).
    pub fn sent(&self) -> u64 {
        self.sent
    }

    fn err(&self, message: impl std::fmt::Display) -> Error {
        Error::kafka(format!("sink {}", self.uri), message)
    }

    /// Queues one message; waits (serving delivery reports) while the producer's queue is
    /// full, up to the flush timeout. Fails on the first delivery error reported so far.
    pub fn send(&mut self, key: Option<&str>, payload: &[u8]) -> Result<()> {
        let mut record: BaseRecord<'_, str, [u8]> =
            BaseRecord::to(&self.uri.topic).payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        let deadline = Instant::now() + self.flush_timeout;
        while let Err((e, back)) = self.producer.send(record) {
            let full = matches!(
                e,
                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
            );
            if !full || Instant::now() >= deadline {
                return Err(self.err(format!("produce: {e}")));
            }
            record = back;
            self.producer.poll(Duration::from_millis(1)); // serve deliveries, make room
        }
        self.sent += 1;
        Ok(())
    }

    /// Serves the delivery reports that arrived and fails if any message was not delivered.
    pub fn check(&self) -> Result<()> {
        self.producer.poll(Duration::ZERO);
        let reports = self.producer.context();
        let failed = reports.failed.load(Ordering::Relaxed);
        if failed == 0 {
            return Ok(());
        }
        let first = reports
            .first_error
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_default();
        Err(self.err(format!(
            "{failed} messages not delivered (first error: {first})"
        )))
    }

    /// Waits until every message sent so far is acknowledged, then checks the reports;
    /// `what` names the occasion in errors. (rdkafka's own `flush` polls in steps of 100 ms,
    /// which every checkpoint would wait out; this one serves the reports every millisecond.)
    pub fn flush(&self, what: &str) -> Result<()> {
        let deadline = Instant::now() + self.flush_timeout;
        loop {
            // a zero-timeout flush sends what lingers at once and says whether all is acked
            match self.producer.flush(Duration::ZERO) {
                Ok(()) => break,
                Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) => {}
                Err(e) => return Err(self.err(format!("{what}: flush: {e}"))),
            }
            if Instant::now() >= deadline {
                self.check()?;
                return Err(self.err(format!(
                    "{what}: flush: {} messages not acknowledged within {:?}",
                    self.producer.in_flight_count(),
                    self.flush_timeout
                )));
            }
            self.producer.poll(Duration::from_millis(1));
        }
        self.check()
    }
}

/// Produces rows to a Kafka topic; see [the module docs](self).
pub struct KafkaSink {
    options: KafkaSinkOptions,
    writer: Option<KafkaWriter>,
    /// The JSON lines of the batch being written.
    json: Vec<u8>,
    /// The key of the row being written.
    key: String,
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
        KafkaSink {
            options: self.options.clone(),
            writer: None,
            json: Vec::new(),
            key: String::new(),
        }
    }
}

impl KafkaSink {
    /// A sink with checked `options`; `delivery=exactly-once` is refused (see the module docs).
    pub fn new(options: KafkaSinkOptions) -> Result<Self> {
        if options.uri.delivery == KafkaDelivery::ExactlyOnce {
            return Err(Error::config(
                format!("{} delivery", options.uri),
                "exactly-once Kafka output needs Kafka transactions committed per checkpoint \
                 (EndTxn, API key 26), which tansu 0.6.0, the broker eddy is tested against, \
                 lacks; the transactional sink is not built unverified. Use \
                 delivery=at-least-once (rows after the restored checkpoint are written again)",
            ));
        }
        if options.flush_timeout.is_zero() {
            return Err(Error::config(
                "kafka sink flush-timeout",
                "must be longer than zero",
            ));
        }
        Ok(KafkaSink {
            options,
            writer: None,
            json: Vec::new(),
            key: String::new(),
        })
    }

    fn writer(&mut self) -> Result<&mut KafkaWriter> {
        self.writer
            .as_mut()
            .ok_or_else(|| Error::Internal("kafka sink written before open".into()))
    }
}

impl Sink for KafkaSink {
    fn open(&mut self, _task: &TaskInfo) -> Result<()> {
        self.writer = Some(KafkaWriter::open(
            &self.options.uri,
            self.options.flush_timeout,
        )?);
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
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
        self.json.clear();
        let mut json = std::mem::take(&mut self.json);
        let mut writer = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(self.options.explicit_nulls)
            .build::<_, LineDelimited>(&mut json);
        writer.write(batch)?;
        writer.finish()?;
        drop(writer);
        let mut key = std::mem::take(&mut self.key);
        let result = (|| {
            let out = self.writer()?;
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
                        Some(key.as_str())
                    }
                };
                out.send(key, line)?;
            }
            out.check()
        })();
        self.json = json;
        self.key = key;
        result
    }

    /// Waits for the broker to acknowledge every row written so far: the checkpoint of
    /// `epoch` completes only with its rows in the topic.
    fn pre_commit(&mut self, epoch: Epoch) -> Result<()> {
        match &self.writer {
            Some(w) => w.flush(&format!("pre-commit of epoch {}", epoch.0)),
            None => Ok(()),
        }
    }

    fn close(&mut self) -> Result<()> {
        if let Some(w) = self.writer.take() {
            w.flush("close")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_once_is_refused_naming_what_the_broker_lacks() -> Result<()> {
        let uri = KafkaUri::parse("kafka://127.0.0.1:9/out?delivery=exactly-once")?;
        let err = KafkaSink::new(KafkaSinkOptions::new(uri)).expect_err("refused");
        let text = err.to_string();
        assert!(
            text.contains("EndTxn") && text.contains("transactions"),
            "{text}"
        );
        assert!(text.contains("delivery=at-least-once"), "{text}");
        Ok(())
    }

    #[test]
    fn writing_before_open_is_an_error_not_a_panic() -> Result<()> {
        let uri = KafkaUri::parse("kafka://127.0.0.1:9/out")?;
        let mut sink = KafkaSink::new(KafkaSinkOptions::new(uri))?;
        let batch = RecordBatch::try_from_iter([(
            "n",
            std::sync::Arc::new(arrow::array::Int64Array::from(vec![1])) as _,
        )])?;
        assert!(sink.write(&batch).is_err());
        Ok(())
    }
}

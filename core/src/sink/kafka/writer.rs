//! [`KafkaWriter`]: a producer to one topic that fails loudly — the at-least-once and the
//! exactly-once sink, and `eddy gen … --out kafka://…`, write through it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message as _, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use crate::error::{Error, Result};
use crate::source::kafka::{ensure_topic, KafkaUri, DEFAULT_REQUEST_TIMEOUT};

/// Delivery reports of one producer: what was acknowledged, what failed and the first error.
#[derive(Debug, Default)]
pub(super) struct Deliveries {
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
            Err((e, message)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| {
                        format!(
                            "partition {} of topic {}: {e}",
                            message.partition(),
                            message.topic()
                        )
                    });
                }
            }
        }
    }
}

/// How a [`KafkaWriter`]'s producer retries a failed produce request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retries {
    /// librdkafka's default: retried until `message.timeout.ms` (a retried request the broker
    /// had written is written twice — fine for at-least-once).
    UntilTimeout,
    /// Never: a failed request fails the flush; the exactly-once sink then fails over and its
    /// restore reads back what landed instead of guessing.
    Never,
}

/// A producer to one topic that fails loudly: sends retry while the local queue is full,
/// [`flush`](Self::flush) waits for every acknowledgement and fails with the first delivery
/// error (naming the partition). The Kafka sink and `eddy gen … --out kafka://…` write through it.
pub struct KafkaWriter {
    uri: KafkaUri,
    flush_timeout: Duration,
    producer: BaseProducer<Deliveries>,
    /// The topic's partition count when the writer opened.
    partitions: usize,
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
        Self::open_with(uri, flush_timeout, Retries::UntilTimeout)
    }

    /// [`open`](Self::open) with the given retry policy.
    pub fn open_with(uri: &KafkaUri, flush_timeout: Duration, retries: Retries) -> Result<Self> {
        let partitions = ensure_topic(uri, DEFAULT_REQUEST_TIMEOUT)?;
        let timeout_ms = flush_timeout.as_millis().max(1).to_string();
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &uri.brokers)
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", &timeout_ms)
            .set("socket.keepalive.enable", "true")
            .set("log_level", "3");
        if retries == Retries::Never {
            config.set("message.send.max.retries", "0");
        }
        let producer = config
            .create_with_context(Deliveries::default())
            .map_err(|e| Error::kafka(format!("sink {uri}"), format!("producer: {e}")))?;
        Ok(KafkaWriter {
            uri: uri.clone(),
            flush_timeout,
            producer,
            partitions,
            sent: 0,
        })
    }

    /// Messages sent so far (acknowledged or not).
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// The topic's partition count when the writer opened.
    pub fn partitions(&self) -> usize {
        self.partitions
    }

    pub(super) fn err(&self, message: impl std::fmt::Display) -> Error {
        Error::kafka(format!("sink {}", self.uri), message)
    }

    /// Queues one message (the partition chosen by librdkafka's partitioner); waits (serving
    /// delivery reports) while the producer's queue is full, up to the flush timeout.
    pub fn send(&mut self, key: Option<&str>, payload: &[u8]) -> Result<()> {
        self.send_to(None, key.map(str::as_bytes), payload, None)
    }

    /// Queues one message to `partition` (`None`: librdkafka's partitioner) with `headers`;
    /// waits (serving delivery reports) while the producer's queue is full, up to the flush
    /// timeout. A message the producer refuses (too large, say) is an error naming the topic
    /// and partition.
    pub fn send_to(
        &mut self,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> Result<()> {
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(&self.uri.topic).payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        let deadline = Instant::now() + self.flush_timeout;
        while let Err((e, back)) = self.producer.send(record) {
            let full = matches!(
                e,
                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
            );
            if !full || Instant::now() >= deadline {
                let at = partition.map_or("a partition of its choice".to_string(), |p| {
                    format!("partition {p}")
                });
                return Err(self.err(format!(
                    "produce to {at} of topic {} ({} bytes): {e}",
                    self.uri.topic,
                    payload.len()
                )));
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

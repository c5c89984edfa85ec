//! Settings of a [`KafkaSource`](super::KafkaSource), and the librdkafka client configuration
//! they make.

use std::time::Duration;

use arrow::datatypes::SchemaRef;
use rdkafka::config::ClientConfig;

use super::uri::{KafkaFormat, KafkaUri, StartOffset};

/// Messages sampled for schema inference by default.
pub const DEFAULT_INFER_MESSAGES: usize = 1000;

/// How long metadata, watermark and inference requests may take before they are an error.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How many offsets before a restored position a seek starts fetching by default (see
/// [`KafkaSourceOptions::seek_rewind`]): librdkafka's producer puts at most 10 000 messages in
/// a record batch.
pub const DEFAULT_SEEK_REWIND: i64 = 10_000;

/// How often a source refreshes its partitions' log ends for the lag gauge by default.
pub const DEFAULT_LAG_INTERVAL: Duration = Duration::from_secs(1);

/// Settings of a Kafka source: where to read, how to decode, where to start and stop.
#[derive(Debug, Clone)]
pub struct KafkaSourceOptions {
    /// Topic, brokers, group, start, follow and format.
    pub uri: KafkaUri,
    /// The schema; `None`: inferred from the first `infer_messages` messages.
    pub schema: Option<SchemaRef>,
    /// Messages sampled for inference. Default [`DEFAULT_INFER_MESSAGES`].
    pub infer_messages: usize,
    /// Adds an Int64 column of this name holding each message's timestamp (ms since the epoch;
    /// null when the broker gave none), and makes the source emit per-partition watermarks
    /// from it. Default: none.
    pub timestamp_column: Option<String>,
    /// Metadata, watermark and inference timeout. Default [`DEFAULT_REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
    /// A seek to a checkpointed offset fetches from this many offsets earlier and skips what
    /// precedes the offset. tansu 0.6.0 answers a fetch from inside a record batch with the
    /// batches *after* it, so fetching from the offset itself would lose the rest of its
    /// batch; from up to one batch earlier it returns the batch holding it. Must cover the
    /// largest batch the producers write. Default [`DEFAULT_SEEK_REWIND`]; 0 on a broker
    /// that returns the containing batch (Apache Kafka).
    pub seek_rewind: i64,
    /// How often the partitions' log ends are refreshed for the consumer-lag gauge (on a
    /// thread of the source's own, one watermark request per partition, plus one fetch of the
    /// last record batch of a partition that grew). Default [`DEFAULT_LAG_INTERVAL`].
    pub lag_interval: Duration,
    /// Static membership: this source is member `index` of `count` processes reading the
    /// topic, and reads only the partitions `p` with `p % count == index` (split over its
    /// subtasks in partition order). Ownership never moves, so no member waits for a
    /// rebalance when another restarts. Default: none (every partition is this job's).
    pub member: Option<Member>,
}

/// Member `index` of `count` (see [`KafkaSourceOptions::member`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// This member's index, `0..count`.
    pub index: usize,
    /// How many members share the topic (at least 1).
    pub count: usize,
}

impl Member {
    /// Whether partition `p` belongs to this member.
    pub fn owns(&self, p: i32) -> bool {
        (p as usize) % self.count.max(1) == self.index
    }
}

impl KafkaSourceOptions {
    /// Options for `uri` with an inferred schema.
    pub fn new(uri: KafkaUri) -> Self {
        KafkaSourceOptions {
            uri,
            schema: None,
            infer_messages: DEFAULT_INFER_MESSAGES,
            timestamp_column: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            seek_rewind: DEFAULT_SEEK_REWIND,
            lag_interval: DEFAULT_LAG_INTERVAL,
            member: None,
        }
    }

    /// Uses `schema` instead of inferring one.
    pub fn with_schema(mut self, schema: SchemaRef) -> Self {
        self.schema = Some(schema);
        self
    }

    /// Adds the message-timestamp column `name` (see [`timestamp_column`](Self::timestamp_column)).
    pub fn with_timestamp_column(mut self, name: impl Into<String>) -> Self {
        self.timestamp_column = Some(name.into());
        self
    }

    /// Reads only member `index` of `count`'s partitions (see [`member`](Self::member)).
    pub fn with_member(mut self, index: usize, count: usize) -> Self {
        self.member = Some(Member { index, count });
        self
    }

    /// Refreshes the lag gauge every `interval` (see [`lag_interval`](Self::lag_interval)).
    pub fn with_lag_interval(mut self, interval: Duration) -> Self {
        self.lag_interval = interval;
        self
    }

    /// Whether reading stops at the end seen at open.
    pub fn bounded(&self) -> bool {
        !self.uri.follow
    }

    /// Where reading starts without a checkpoint.
    pub fn start(&self) -> StartOffset {
        self.uri.start
    }

    /// The payload format.
    pub fn format(&self) -> KafkaFormat {
        self.uri.format
    }

    /// `topic @ brokers`, for errors.
    pub fn context(&self) -> String {
        self.uri.to_string()
    }
}

/// How long the broker may hold a fetch that finds no new message (see [`consumer_config`]).
pub(crate) const FETCH_WAIT_MS: &str = "50";

/// The consumer configuration: manual assignment, no automatic commits or offset stores (the
/// checkpoint holds the positions), a group id only when one is given.
///
/// `fetch.wait.max.ms` is [`FETCH_WAIT_MS`] instead of librdkafka's 500: a fetch at the end of
/// a partition is held that long by the broker, and the requests queued behind it on the same
/// connection (a watermark query, the first fetch of a new assignment) with it. Measured on
/// tansu 0.6.0: a restarted worker's first trained rows came 500 ms after its source opened
/// with the default, 280 ms with 50 (debug build). An idle followed partition costs the broker
/// one fetch per 50 ms.
pub(crate) fn consumer_config(uri: &KafkaUri) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &uri.brokers)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false") // an EOF event is logged by rdkafka as an error
        .set("auto.offset.reset", "earliest")
        .set("socket.keepalive.enable", "true")
        .set("log_level", "3")
        .set("fetch.wait.max.ms", FETCH_WAIT_MS);
    // librdkafka wants a group id for any consumer; without one nothing is committed
    let group = uri.group.as_deref().unwrap_or("eddy-uncommitted");
    config.set("group.id", group);
    config
}

//! Kafka source: a topic → Arrow micro-batches, with per-partition offsets as checkpointed
//! positions (client: rdkafka with its bundled librdkafka).
//!
//! ## Behaviour
//! - **Payload**: one record per message, JSON (one object) or CSV (one record, no header),
//!   decoded by the file sources' decoders (`source::file`); the schema is given or inferred
//!   from the oldest messages of the topic by the file rules.
//! - **Splits**: partition `p` is read by subtask `p % parallelism` (manual assignment, no
//!   group rebalancing); a subtask without partitions ends at once (bounded) or idles.
//! - **Static membership**: with [`member`](KafkaSourceOptions::member) `I/N` (one process
//!   of a job of N, e.g. `eddy worker --worker-index I --workers N`), only partitions with
//!   `p % N == I` are read, split over the subtasks in partition order; ownership never moves.
//! - **Position**: the next offset per owned partition, plus (bounded) the end offset per
//!   partition fixed at the first open; [`seek`](crate::source::Source::seek) re-assigns the
//!   consumer there, so a restored job re-reads exactly what followed its checkpoint.
//! - **Bounded / follow**: bounded (default) reads each partition up to the high watermark seen
//!   at open and ends; `follow=true` keeps reading until stopped.
//! - **Batches**: a bounded read fills batches to `max_rows` like a file source, so a
//!   one-partition topic and a file of the same rows give the same batches (and a learner the
//!   same model); a followed topic also cuts a batch at the linger time or when no message is
//!   ready.
//! - **Event time**: with `timestamp_column`, each row gets its message timestamp (ms) and the
//!   source emits a watermark: the oldest of its unfinished partitions' newest timestamps.
//! - **Bad messages** (undecodable payload, wrong types, no payload) go to the dead-letter sink
//!   with source `kafka TOPIC partition P offset O`, line `O + 1`, the column and the reason.
//! - **Offset commits**: with `group=…`, the offsets of each completed checkpoint are committed
//!   to the group ([`Source::on_checkpoint_complete`](crate::source::Source::on_checkpoint_complete)),
//!   so its lag is measured from what a restore would resume at. Before the first checkpoint
//!   completes, and in a job without checkpoints, consumed offsets are committed about once a
//!   second; at the end of a bounded read, once more. For lag monitoring only: restores use the
//!   checkpoint, never the group's offsets.
//! - **Consumer lag**: each subtask reports the messages between its position and its
//!   partitions' log ends, summed, as its lag gauge
//!   ([`Progress::set_lag`](crate::metrics::Progress::set_lag); `eddy_job_source_lag` on
//!   `/metrics`). The log ends are refreshed every
//!   [`lag_interval`](KafkaSourceOptions::lag_interval) by a thread of the subtask's own with
//!   a consumer of its own, so the read path only stores its offsets (atomics, per poll); the
//!   gauge is updated on every poll and every refresh, so it grows while the source is behind
//!   and returns to 0 once it has caught up. Unmeasured until the first refresh has reached
//!   the broker.
//!
//! | module | what |
//! |---|---|
//! | [`uri`] | `kafka://HOST:PORT/TOPIC?…` addresses: the one parser |
//! | `options` | [`KafkaSourceOptions`], the librdkafka consumer configuration |
//! | `source` | [`KafkaSource`]: assignment, polling, decoding, positions, watermarks |
//! | `infer` | schema inference from the oldest messages |
//! | `lag` | `LagWatch`: the partitions' log ends, followed for the consumer-lag gauge |
//! | [`admin`] | topic creation for writers ([`ensure_topic`]) |

pub mod admin;
mod infer;
mod lag;
mod options;
mod source;
pub mod uri;

pub use admin::{ensure_topic, topic_partitions};
pub(crate) use lag::{log_ends, watermarks};
pub(crate) use options::consumer_config;
pub use options::{
    KafkaSourceOptions, Member, DEFAULT_INFER_MESSAGES, DEFAULT_LAG_INTERVAL,
    DEFAULT_REQUEST_TIMEOUT, DEFAULT_SEEK_REWIND,
};
pub use source::KafkaSource;
pub use uri::{KafkaDelivery, KafkaFormat, KafkaUri, StartOffset};

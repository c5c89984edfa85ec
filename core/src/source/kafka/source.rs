//! [`KafkaSource`]: a topic's partitions, split over subtasks, into Arrow micro-batches.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Int64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

use super::lag::{log_ends, watermarks, LagWatch, Marks};
use super::options::{consumer_config, KafkaSourceOptions};
use super::uri::{KafkaFormat, StartOffset};
use crate::error::{Error, Result};
use crate::message::{Epoch, EventTime};
use crate::source::file::csv::CsvDecoder;
use crate::source::file::decode::BatchBuilder;
use crate::source::file::jsonl::JsonDecoder;
use crate::source::{Rejected, Source, SourceContext, SourceFactory, SourcePoll, SourcePosition};

/// How long one broker poll waits for a message.
const POLL_WAIT: Duration = Duration::from_millis(20);
/// How long a bounded read waits for the next message of a partly filled batch before it
/// emits the batch anyway (the broker stalls).
const BOUNDED_STALL: Duration = Duration::from_secs(1);
/// How often consumed offsets are committed to the group (lag monitoring only).
const COMMIT_EVERY: Duration = Duration::from_secs(1);

/// The checkpointed position: the next offset to read per owned partition and, for a bounded
/// read, the end offset per partition fixed at the first open (so a restore reads the same
/// snapshot of the topic).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct KafkaPosition {
    next: BTreeMap<i32, i64>,
    end: Option<BTreeMap<i32, i64>>,
}

enum Decoder {
    Json(JsonDecoder),
    Csv(Box<CsvDecoder>),
}

/// Reads one Kafka topic; see [the module docs](super).
pub struct KafkaSource {
    options: KafkaSourceOptions,
    /// The payload columns.
    payload: SchemaRef,
    /// What batches carry: the payload columns, plus the timestamp column when asked for.
    schema: SchemaRef,
    consumer: Option<BaseConsumer>,
    pos: KafkaPosition,
    /// A position to seek to once the consumer exists (a restore before or after `open`).
    restored: Option<KafkaPosition>,
    /// The consumer is assigned at the first poll, this many offsets before the positions
    /// (see [`assign`](Self::assign)), so that a seek right after `open` does not re-assign
    /// it: librdkafka can abort on an assignment replaced while it is still starting.
    assign_pending: Option<i64>,
    decoder: Option<Decoder>,
    builder: Option<BatchBuilder>,
    timestamps: Vec<Option<i64>>,
    /// Highest message timestamp seen per owned partition.
    max_ts: BTreeMap<i32, i64>,
    watermark: EventTime,
    watermark_due: bool,
    last_commit: Instant,
    committed: BTreeMap<i32, i64>,
    /// A checkpoint has completed: offsets are committed per checkpoint from now on.
    checkpointed: bool,
    /// Asked to finish ([`Source::stop_following`]): the next poll ends the read.
    stopping: bool,
    /// The first offset of each owned partition at open.
    low: BTreeMap<i32, i64>,
    /// Follows the partitions' log ends for the lag gauge (from open).
    lag: Option<LagWatch>,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("uri", &self.options.uri.to_string())
            .field("position", &self.pos)
            .finish()
    }
}

impl KafkaSource {
    /// A source reading `options.uri`; infers the schema from the topic's first messages when
    /// none is given (this connects to the broker now, so a bad address is reported early).
    pub fn new(options: KafkaSourceOptions) -> Result<Self> {
        let payload = match &options.schema {
            Some(s) => s.clone(),
            None => super::infer::infer_schema(&options)?,
        };
        let schema = match &options.timestamp_column {
            None => payload.clone(),
            Some(name) => {
                if payload.fields().iter().any(|f| f.name() == name) {
                    return Err(Error::config(
                        "kafka.timestamp-column",
                        format!("`{name}` is already a payload column"),
                    ));
                }
                let mut fields: Vec<Field> = payload
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone())
                    .collect();
                fields.push(Field::new(name, DataType::Int64, true));
                Arc::new(Schema::new(fields))
            }
        };
        BatchBuilder::new(payload.clone(), 0)?; // the types must be decodable
        Ok(KafkaSource {
            options,
            payload,
            schema,
            consumer: None,
            pos: KafkaPosition::default(),
            restored: None,
            assign_pending: None,
            decoder: None,
            builder: None,
            timestamps: Vec::new(),
            max_ts: BTreeMap::new(),
            watermark: EventTime::MIN,
            watermark_due: false,
            last_commit: Instant::now(),
            committed: BTreeMap::new(),
            checkpointed: false,
            stopping: false,
            low: BTreeMap::new(),
            lag: None,
        })
    }

    /// One source per subtask; the schema is inferred once here when not given, so every
    /// subtask reads with the same one.
    pub fn factory(options: KafkaSourceOptions) -> Result<(SourceFactory, SchemaRef)> {
        let probe = KafkaSource::new(options.clone())?;
        let options = options.with_schema(probe.payload.clone());
        let schema = probe.schema();
        let factory: SourceFactory = Arc::new(move |_task| {
            Ok(Box::new(KafkaSource::new(options.clone())?) as Box<dyn Source>)
        });
        Ok((factory, schema))
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::kafka(self.options.context(), format!("{what}: {e}"))
    }

    /// The partitions of the topic this subtask owns: `p % parallelism == subtask`; with a
    /// [`member`](KafkaSourceOptions::member), the `i`-th of the member's partitions when
    /// `i % parallelism == subtask`.
    fn owned(&self, consumer: &BaseConsumer, ctx: &SourceContext) -> Result<Vec<i32>> {
        let topic = &self.options.uri.topic;
        let meta = consumer
            .fetch_metadata(Some(topic), self.options.request_timeout)
            .map_err(|e| self.err("metadata", e))?;
        let t = meta
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| self.err("metadata", "topic not in the broker's answer"))?;
        if let Some(e) = t.error() {
            return Err(self.err("metadata", format!("{e:?}")));
        }
        let p = ctx.task.parallelism.max(1);
        let mut ids: Vec<i32> = t.partitions().iter().map(|m| m.id()).collect();
        ids.sort_unstable();
        if let Some(member) = self.options.member {
            ids.retain(|&id| member.owns(id));
            return Ok(ids
                .into_iter()
                .enumerate()
                .filter(|(i, _)| i % p == ctx.task.subtask)
                .map(|(_, id)| id)
                .collect());
        }
        Ok(ids
            .into_iter()
            .filter(|id| (*id as usize) % p == ctx.task.subtask)
            .collect())
    }

    /// Points the consumer at `self.pos.next`, or `rewind` offsets before it (never before
    /// the partition's start `low`); the messages before `next` are skipped when they arrive.
    fn assign(&self, rewind: i64) -> Result<()> {
        let Some(consumer) = &self.consumer else {
            return Ok(());
        };
        let mut tpl = TopicPartitionList::new();
        for (&p, &next) in &self.pos.next {
            let low = self.low.get(&p).copied().unwrap_or(0);
            let at = (next - rewind).max(low).min(next);
            tpl.add_partition_offset(&self.options.uri.topic, p, Offset::Offset(at))
                .map_err(|e| self.err("assign", e))?;
        }
        consumer.assign(&tpl).map_err(|e| self.err("assign", e))
    }

    /// A bounded read of partition `p` reached the end fixed at open.
    fn done(&self, p: i32) -> bool {
        match (&self.pos.end, self.pos.next.get(&p)) {
            (Some(end), Some(next)) => *next >= end.get(&p).copied().unwrap_or(0),
            _ => false,
        }
    }

    fn all_done(&self) -> bool {
        self.pos.end.is_some() && self.pos.next.keys().all(|&p| self.done(p))
    }

    /// The rows decoded so far as one batch (with the timestamp column when asked for).
    fn take_batch(&mut self) -> Result<RecordBatch> {
        let builder = self
            .builder
            .as_mut()
            .ok_or_else(|| Error::Internal("kafka source polled before open".into()))?;
        let batch = builder.finish()?;
        if self.options.timestamp_column.is_none() {
            return Ok(batch);
        }
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns.push(Arc::new(Int64Array::from_iter(self.timestamps.drain(..))));
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// Event time is complete up to the oldest of the owned partitions' newest timestamps
    /// (only once every unfinished owned partition has shown one).
    fn advance_watermark(&mut self) {
        if self.options.timestamp_column.is_none() {
            return;
        }
        let low = self
            .pos
            .next
            .keys()
            .filter(|&&p| !self.done(p))
            .map(|p| self.max_ts.get(p).copied())
            .try_fold(EventTime::MAX, |acc, t| t.map(|t| acc.min(t)));
        if let Some(low) = low.filter(|&w| w != EventTime::MAX && w > self.watermark) {
            self.watermark = low;
            self.watermark_due = true;
        }
    }

    /// Commits the offsets consumed so far to the group, at most once per [`COMMIT_EVERY`]
    /// (or now when `force`, at the end) — until a checkpoint completes: from then on the
    /// group's offsets are the completed checkpoints' ([`Source::on_checkpoint_complete`]).
    /// For lag monitoring only: a restore uses the checkpoint.
    fn commit_to_group(&mut self, force: bool) -> Result<()> {
        if !force && (self.checkpointed || self.last_commit.elapsed() < COMMIT_EVERY) {
            return Ok(());
        }
        self.commit_offsets(self.pos.next.clone())
    }

    /// Commits `next` (offset per owned partition) to the group, if the source has one.
    fn commit_offsets(&mut self, next: BTreeMap<i32, i64>) -> Result<()> {
        let (Some(consumer), Some(_)) = (&self.consumer, &self.options.uri.group) else {
            return Ok(());
        };
        if self.committed == next {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (&p, &next) in &next {
            tpl.add_partition_offset(&self.options.uri.topic, p, Offset::Offset(next))
                .map_err(|e| self.err("commit", e))?;
        }
        consumer
            .commit(&tpl, CommitMode::Async)
            .map_err(|e| self.err("commit", e))?;
        self.committed = next;
        self.last_commit = Instant::now();
        Ok(())
    }
}

impl Source for KafkaSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn open(&mut self, ctx: &SourceContext) -> Result<()> {
        // Metadata, watermarks and the bounded end are read with a probe consumer of their
        // own: finding the end assigns one partition after another, and librdkafka can abort
        // (`rd_kafka_assignment_partition_stopped: rktp_started`) when the consumer that
        // then reads is re-assigned while those assignments are still stopping.
        let probe: BaseConsumer = consumer_config(&self.options.uri)
            .create()
            .map_err(|e| self.err("consumer", e))?;
        let owned = self.owned(&probe, ctx)?;
        let mut next = BTreeMap::new();
        let mut marks = Vec::with_capacity(owned.len());
        for &p in &owned {
            let (low, high) = watermarks(&self.options, &probe, p)?;
            self.low.insert(p, low);
            next.insert(
                p,
                match self.options.start() {
                    StartOffset::Earliest => low,
                    StartOffset::Latest => high,
                },
            );
            marks.push((p, low, high));
        }
        let end = match self.options.bounded() {
            true => Some(self.bounded_end(&probe, &marks)?),
            false => None,
        };
        drop(probe);
        let consumer: BaseConsumer = consumer_config(&self.options.uri)
            .create()
            .map_err(|e| self.err("consumer", e))?;
        self.pos = KafkaPosition { next, end };
        self.decoder = Some(match self.options.format() {
            KafkaFormat::Json => Decoder::Json(JsonDecoder::new(&self.payload)),
            KafkaFormat::Csv => Decoder::Csv(Box::new(CsvDecoder::new(b',', b'"'))),
        });
        self.builder = Some(BatchBuilder::new(
            self.payload.clone(),
            ctx.bounds.max_rows.min(1 << 16),
        )?);
        self.consumer = Some(consumer);
        self.assign_pending = Some(0);
        if let Some(restored) = self.restored.take() {
            self.apply(restored);
        }
        self.lag = Some(LagWatch::start(
            &self.options,
            &self.pos.next,
            self.pos.end.as_ref(),
            ctx.progress.clone(),
            ctx.task.operator.clone(),
        )?);
        Ok(())
    }

    fn poll_next(&mut self, ctx: &SourceContext) -> Result<SourcePoll> {
        if self.watermark_due {
            self.watermark_due = false;
            return Ok(SourcePoll::Watermark(self.watermark));
        }
        if self.all_done() || self.stopping {
            self.report_lag();
            self.commit_to_group(true)?;
            return Ok(SourcePoll::End);
        }
        if let Some(rewind) = self.assign_pending.take() {
            self.assign(rewind)?;
        }
        // A followed topic cuts a batch at `max_rows`, at the linger time after its first row,
        // or when no message is ready; a bounded read, whose rows all exist, fills batches to
        // `max_rows` like a file source (so one partition replays into the batches of the same
        // rows in a file), unless the broker stalls for `BOUNDED_STALL`.
        let bounded = self.options.bounded();
        let mut first_row_at: Option<Instant> = None;
        let mut last_row_at = Instant::now();
        let mut rows = 0usize;
        loop {
            let lingered =
                !bounded && first_row_at.is_some_and(|t| t.elapsed() >= ctx.bounds.linger);
            if rows >= ctx.bounds.max_rows || self.all_done() || lingered {
                break;
            }
            let consumer = self
                .consumer
                .as_ref()
                .ok_or_else(|| Error::Internal("kafka source polled before open".into()))?;
            let Some(polled) = consumer.poll(POLL_WAIT) else {
                if rows > 0 && (!bounded || last_row_at.elapsed() >= BOUNDED_STALL) {
                    break;
                }
                if rows > 0 {
                    continue;
                }
                self.report_lag();
                self.commit_to_group(false)?;
                return Ok(SourcePoll::Idle);
            };
            let msg = match polled {
                Ok(msg) => msg,
                Err(KafkaError::PartitionEOF(_)) => continue,
                Err(e) => return Err(Error::kafka(self.options.context(), format!("fetch: {e}"))),
            };
            let (p, offset) = (msg.partition(), msg.offset());
            let Some(&next) = self.pos.next.get(&p) else {
                continue; // not ours (a stale assignment)
            };
            if offset < next {
                continue; // before the position (fetched before a seek)
            }
            let (Some(decoder), Some(builder)) = (self.decoder.as_mut(), self.builder.as_mut())
            else {
                return Err(Error::Internal("kafka source polled before open".into()));
            };
            match decode_payload(decoder, builder, msg.payload()) {
                Ok(()) => {
                    let ts = msg.timestamp().to_millis();
                    if self.options.timestamp_column.is_some() {
                        self.timestamps.push(ts);
                    }
                    if let Some(t) = ts {
                        let max = self.max_ts.entry(p).or_insert(t);
                        *max = (*max).max(t);
                    }
                    rows += 1;
                    first_row_at.get_or_insert_with(Instant::now);
                    last_row_at = Instant::now();
                }
                Err((column, reason)) => ctx.reject(Rejected {
                    source: format!(
                        "kafka {} partition {p} offset {offset}",
                        self.options.uri.topic
                    ),
                    line: offset as u64 + 1,
                    column,
                    raw: String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned(),
                    reason,
                })?,
            }
            self.pos.next.insert(p, offset + 1);
        }
        self.advance_watermark();
        self.report_lag();
        if rows == 0 {
            return Ok(SourcePoll::Idle);
        }
        Ok(SourcePoll::Batch(self.take_batch()?))
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::of(&self.pos)
    }

    /// A followed topic ends at the next poll (what was polled before is delivered); a bounded
    /// read goes on to its end.
    fn stop_following(&mut self) {
        self.stopping = !self.options.bounded();
    }

    fn on_checkpoint_complete(&mut self, _epoch: Epoch, position: &SourcePosition) -> Result<()> {
        let at: KafkaPosition = position.get(&format!("kafka source {}", self.options.uri))?;
        self.checkpointed = true;
        self.commit_offsets(at.next)
    }

    fn seek(&mut self, position: &SourcePosition) -> Result<()> {
        let restored: KafkaPosition =
            position.get(&format!("kafka source {}", self.options.uri))?;
        match (&self.consumer, self.assign_pending) {
            (None, _) => self.restored = Some(restored),
            (Some(_), Some(_)) => self.apply(restored),
            (Some(_), None) => {
                self.apply(restored);
                self.report_lag();
                return self.assign(self.options.seek_rewind);
            }
        }
        self.report_lag();
        Ok(())
    }
}

impl KafkaSource {
    /// Hands the position to the lag gauge (atomics only; see `lag`).
    fn report_lag(&self) {
        if let Some(lag) = &self.lag {
            lag.advance(&self.pos.next);
        }
    }

    /// The end of a bounded read of the partitions `marks`: their log ends now, except where a
    /// restored checkpoint holds the end the first open found (which [`apply`](Self::apply)
    /// keeps: a restarted read ends where the original would have), so a restart reads no
    /// log end again.
    fn bounded_end(&self, probe: &BaseConsumer, marks: &[Marks]) -> Result<BTreeMap<i32, i64>> {
        let known = self.restored.as_ref().and_then(|r| r.end.as_ref());
        let unknown: Vec<Marks> = marks
            .iter()
            .filter(|m| !known.is_some_and(|k| k.contains_key(&m.0)))
            .copied()
            .collect();
        let mut end = log_ends(&self.options, probe, &unknown)?;
        for &(p, ..) in marks {
            if let Some(&e) = known.and_then(|k| k.get(&p)) {
                end.insert(p, e);
            }
        }
        Ok(end)
    }

    /// Takes the restored offsets of the owned partitions (a partition missing from the
    /// checkpoint, i.e. added to the topic since, keeps its start offset) and the restored
    /// bounded end; the (pending) assignment rewinds up to one batch before them.
    fn apply(&mut self, restored: KafkaPosition) {
        for (p, next) in self.pos.next.iter_mut() {
            if let Some(&r) = restored.next.get(p) {
                *next = r;
            }
        }
        if let (Some(end), Some(restored_end)) = (self.pos.end.as_mut(), restored.end) {
            for (p, e) in end.iter_mut() {
                if let Some(&r) = restored_end.get(p) {
                    *e = r;
                }
            }
        }
        if self.assign_pending.is_some() {
            self.assign_pending = Some(self.options.seek_rewind);
        }
    }
}

/// Appends one payload as a row: `Err((column, reason))` for a record that cannot be one.
fn decode_payload(
    decoder: &mut Decoder,
    builder: &mut BatchBuilder,
    payload: Option<&[u8]>,
) -> std::result::Result<(), (usize, String)> {
    let bytes = payload.ok_or_else(|| (0, "message has no payload".to_string()))?;
    let row = match decoder {
        Decoder::Json(d) => d.decode(bytes, builder)?,
        Decoder::Csv(d) => d.decode(bytes, builder)?,
    };
    if row {
        Ok(())
    } else {
        Err((0, "empty payload".to_string()))
    }
}

//! [`LagWatch`]: a Kafka source subtask's consumer lag — the messages between its position and
//! its partitions' log ends — kept current on its [`Progress`] gauge.
//!
//! The log ends are read by a thread of the watch's own, with a consumer of its own, every
//! [`lag_interval`](super::KafkaSourceOptions::lag_interval): one watermark request per
//! partition, and for a partition whose high watermark moved, one fetch of its last record
//! batch ([`log_ends`]; tansu's high watermark is not the log end). The read path only stores
//! its next offsets ([`LagWatch::advance`]: atomics, no allocation, no broker call).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

use super::options::{consumer_config, KafkaSourceOptions};
use crate::error::{Error, Result};
use crate::metrics::Progress;

/// How long a poll of [`log_ends`] waits for a partition's last batch.
const POLL_WAIT: Duration = Duration::from_millis(20);

/// An offset not known yet.
const UNKNOWN: i64 = -1;

/// One owned partition: the source's next offset and the partition's log end.
#[derive(Debug)]
struct Partition {
    id: i32,
    next: AtomicI64,
    end: AtomicI64,
}

/// What the source and the watch thread share.
#[derive(Debug)]
struct Shared {
    partitions: Vec<Partition>,
    progress: Arc<Progress>,
    source: Arc<str>,
}

impl Shared {
    /// Stores the lag on the gauge, once every partition's log end is known.
    fn publish(&self) {
        let mut lag = 0u64;
        for p in &self.partitions {
            let end = p.end.load(Ordering::Relaxed);
            if end == UNKNOWN {
                return;
            }
            lag += (end - p.next.load(Ordering::Relaxed)).max(0) as u64;
        }
        self.progress.set_lag(&self.source, lag);
    }
}

/// Follows the log ends of one source subtask's partitions (see [the module docs](self)).
/// Dropping it stops its thread (at the end of a refresh in progress).
#[derive(Debug)]
pub(super) struct LagWatch {
    shared: Arc<Shared>,
    /// Dropped with the watch: the thread sees the disconnect and ends.
    _stop: mpsc::Sender<()>,
}

impl LagWatch {
    /// Starts watching the partitions of `next` (their next offsets), reporting on `progress`
    /// as source `source`; `ends` are log ends known already (a bounded read's, from open).
    pub(super) fn start(
        options: &KafkaSourceOptions,
        next: &BTreeMap<i32, i64>,
        ends: Option<&BTreeMap<i32, i64>>,
        progress: Arc<Progress>,
        source: Arc<str>,
    ) -> Result<LagWatch> {
        let partitions = next
            .iter()
            .map(|(&id, &next)| Partition {
                id,
                next: AtomicI64::new(next),
                end: AtomicI64::new(ends.and_then(|e| e.get(&id)).copied().unwrap_or(UNKNOWN)),
            })
            .collect();
        let shared = Arc::new(Shared {
            partitions,
            progress,
            source,
        });
        shared.publish();
        let consumer: BaseConsumer = consumer_config(&options.uri)
            .create()
            .map_err(|e| Error::kafka(options.context(), format!("lag consumer: {e}")))?;
        let (stop, stopped) = mpsc::channel::<()>();
        let (options, watched) = (options.clone(), shared.clone());
        std::thread::Builder::new()
            .name("eddy-kafka-lag".into())
            .spawn(move || follow(&options, &consumer, &watched, &stopped))
            .map_err(|e| Error::Internal(format!("cannot start the kafka lag thread: {e}")))?;
        Ok(LagWatch {
            shared,
            _stop: stop,
        })
    }

    /// The source's next offsets now (after a batch, a seek); updates the gauge.
    pub(super) fn advance(&self, next: &BTreeMap<i32, i64>) {
        for p in &self.shared.partitions {
            if let Some(&n) = next.get(&p.id) {
                p.next.store(n, Ordering::Relaxed);
            }
        }
        self.shared.publish();
    }
}

/// The watch thread: refresh, publish, wait `lag_interval`, until the watch is dropped.
fn follow(
    options: &KafkaSourceOptions,
    consumer: &BaseConsumer,
    shared: &Shared,
    stopped: &mpsc::Receiver<()>,
) {
    // the high watermark each known end was read at: an unmoved one needs no fetch
    let mut seen: BTreeMap<i32, i64> = BTreeMap::new();
    loop {
        if let Err(e) = refresh(options, consumer, shared, &mut seen) {
            // the gauge keeps its last values; the reading consumer reports broker trouble
            tracing::debug!("kafka lag: {e}");
        }
        shared.publish();
        match stopped.recv_timeout(options.lag_interval) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Reads the log ends of the partitions whose high watermark moved since the last read.
fn refresh(
    options: &KafkaSourceOptions,
    consumer: &BaseConsumer,
    shared: &Shared,
    seen: &mut BTreeMap<i32, i64>,
) -> Result<()> {
    let mut moved = Vec::new();
    for p in &shared.partitions {
        let (low, high) = watermarks(options, consumer, p.id)?;
        if seen.get(&p.id) != Some(&high) || p.end.load(Ordering::Relaxed) == UNKNOWN {
            moved.push((p.id, low, high));
        }
    }
    for (id, end) in log_ends(options, consumer, &moved)? {
        if let Some(p) = shared.partitions.iter().find(|p| p.id == id) {
            p.end.store(end, Ordering::Relaxed);
        }
    }
    for (id, _, high) in moved {
        seen.insert(id, high);
    }
    Ok(())
}

/// The (low, high) watermarks of `partition`.
pub(crate) fn watermarks(
    options: &KafkaSourceOptions,
    consumer: &BaseConsumer,
    partition: i32,
) -> Result<(i64, i64)> {
    consumer
        .fetch_watermarks(&options.uri.topic, partition, options.request_timeout)
        .map_err(|e| {
            Error::kafka(
                options.context(),
                format!("watermarks of partition {partition}: {e}"),
            )
        })
}

/// Watermarks of one partition: `(partition, low, high)`.
pub(crate) type Marks = (i32, i64, i64);

/// The offset after the last message of each partition of `marks` now, given its watermarks.
/// tansu 0.6.0 reports as high watermark the base offset of the partition's last record batch
/// plus one, so the end is read off that batch: fetched from `high - 1`, every message it holds
/// arrives together. On a broker with true high watermarks this is `high` itself.
///
/// Every partition is read in one assignment of `consumer` (a probe, never the reading
/// consumer), which is unassigned again at the end: read one after another, each partition's
/// watermark request queued behind the previous one's long-polling fetch on the broker's
/// connection, and opening a source of two partitions took 1.5 s instead of a round trip.
/// Read the watermarks of all partitions before this call, not between such calls.
pub(crate) fn log_ends(
    options: &KafkaSourceOptions,
    consumer: &BaseConsumer,
    marks: &[Marks],
) -> Result<BTreeMap<i32, i64>> {
    let err = |p: i32, e: &dyn std::fmt::Display| {
        Error::kafka(options.context(), format!("end of partition {p}: {e}"))
    };
    let mut ends: BTreeMap<i32, i64> = marks.iter().map(|&(p, _, high)| (p, high)).collect();
    let mut pending: Vec<i32> = marks
        .iter()
        .filter(|&&(_, low, high)| high > low)
        .map(|&(p, _, _)| p)
        .collect();
    if pending.is_empty() {
        return Ok(ends);
    }
    let mut tpl = TopicPartitionList::new();
    for &(p, _, high) in marks.iter().filter(|&&(_, low, high)| high > low) {
        tpl.add_partition_offset(&options.uri.topic, p, Offset::Offset(high - 1))
            .map_err(|e| err(p, &e))?;
    }
    consumer.assign(&tpl).map_err(|e| err(pending[0], &e))?;
    let started = Instant::now();
    loop {
        // wait while a partition's last batch is missing, then take what already arrived
        let wait = if pending.is_empty() {
            Duration::ZERO
        } else {
            POLL_WAIT
        };
        match consumer.poll(wait) {
            Some(Ok(m)) => {
                if let Some(end) = ends.get_mut(&m.partition()) {
                    *end = (*end).max(m.offset() + 1);
                    pending.retain(|&p| p != m.partition());
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => return Err(err(pending.first().copied().unwrap_or(marks[0].0), &e)),
            None if pending.is_empty() => break,
            None if started.elapsed() < options.request_timeout => {}
            None => {
                let p = pending[0];
                let high = marks.iter().find(|m| m.0 == p).map_or(0, |m| m.2);
                return Err(err(
                    p,
                    &format!(
                        "no message at offset {} in {:?}",
                        high - 1,
                        started.elapsed()
                    ),
                ));
            }
        }
    }
    // an assignment left behind keeps a fetch long-polling ahead of the next request
    consumer.unassign().map_err(|e| err(marks[0].0, &e))?;
    Ok(ends)
}

//! What makes an exactly-once commit idempotent: the message headers that identify each staged
//! message, the start offsets recorded before an epoch's first produce, and the read-back that
//! finds which of an epoch's messages an earlier attempt already got into the topic.

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};

use crate::error::{Error, Result};
use crate::sink::file_target::sync_dir;
use crate::source::kafka::{consumer_config, log_ends, watermarks, KafkaSourceOptions};

/// Header naming the sink (its operator name).
pub const HEADER_SINK: &str = "eddy-sink";
/// Header with the sink subtask, a big-endian `u64`.
pub const HEADER_SUBTASK: &str = "eddy-subtask";
/// Header with the checkpoint epoch, a big-endian `u64`.
pub const HEADER_EPOCH: &str = "eddy-epoch";
/// Header with the sequence number within the subtask's epoch, a big-endian `u64`.
pub const HEADER_SEQ: &str = "eddy-seq";

/// Who wrote a message: sink, subtask, epoch, sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MessageId<'a> {
    pub(super) sink: &'a [u8],
    pub(super) subtask: u64,
    pub(super) epoch: u64,
    pub(super) seq: u64,
}

impl<'a> MessageId<'a> {
    /// The headers carrying this identity.
    pub(super) fn headers(&self) -> OwnedHeaders {
        let (subtask, epoch, seq) = (
            self.subtask.to_be_bytes(),
            self.epoch.to_be_bytes(),
            self.seq.to_be_bytes(),
        );
        OwnedHeaders::new_with_capacity(4)
            .insert(Header {
                key: HEADER_SINK,
                value: Some(self.sink),
            })
            .insert(Header {
                key: HEADER_SUBTASK,
                value: Some(&subtask),
            })
            .insert(Header {
                key: HEADER_EPOCH,
                value: Some(&epoch),
            })
            .insert(Header {
                key: HEADER_SEQ,
                value: Some(&seq),
            })
    }

    /// The identity in `headers`, when they carry a complete one.
    pub(super) fn read(headers: &'a impl Headers) -> Option<MessageId<'a>> {
        let (mut sink, mut subtask, mut epoch, mut seq) = (None, None, None, None);
        let number = |v: &[u8]| <[u8; 8]>::try_from(v).ok().map(u64::from_be_bytes);
        for h in headers.iter() {
            match (h.key, h.value) {
                (HEADER_SINK, Some(v)) => sink = Some(v),
                (HEADER_SUBTASK, Some(v)) => subtask = number(v),
                (HEADER_EPOCH, Some(v)) => epoch = number(v),
                (HEADER_SEQ, Some(v)) => seq = number(v),
                _ => {}
            }
        }
        Some(MessageId {
            sink: sink?,
            subtask: subtask?,
            epoch: epoch?,
            seq: seq?,
        })
    }
}

/// A consumer for offsets and read-backs of the sink's topic.
pub(super) fn probe(options: &KafkaSourceOptions) -> Result<BaseConsumer> {
    consumer_config(&options.uri)
        .create()
        .map_err(|e| Error::kafka(options.context(), format!("read-back consumer: {e}")))
}

/// Records, durably at `path`, an offset per partition at or before its log end now: an
/// epoch's messages all land after it. (tansu's high watermark is the base offset of the last
/// record batch plus one, a true broker's is the log end: `high - 1` is at or before the end
/// on both.)
pub(super) fn record_start(
    options: &KafkaSourceOptions,
    probe: &BaseConsumer,
    partitions: usize,
    path: &Path,
) -> Result<()> {
    let mut text = String::new();
    for p in 0..partitions as i32 {
        let (low, high) = watermarks(options, probe, p)?;
        let start = (high - 1).max(low).max(0);
        text.push_str(&format!("{p} {start}\n"));
    }
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_data())
        .map_err(|e| Error::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    sync_dir(path)
}

/// The start offsets recorded at `path`; `None` when none were (nothing was produced).
pub(super) fn read_start(path: &Path) -> Result<Option<Vec<(i32, i64)>>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let bad = |line: &str| {
        Error::kafka(
            format!("start offsets {}", path.display()),
            format!("corrupt line `{line}`: expected `PARTITION OFFSET`"),
        )
    };
    let mut offsets = Vec::new();
    for line in text.lines() {
        let (p, o) = line.split_once(' ').ok_or_else(|| bad(line))?;
        let p = p.parse().map_err(|_| bad(line))?;
        let o = o.parse().map_err(|_| bad(line))?;
        offsets.push((p, o));
    }
    Ok(Some(offsets))
}

/// Reads the partitions from the `start` offsets to their log ends now and marks in `present`
/// (indexed by sequence number) the messages of `id`'s sink, subtask and epoch found there.
/// Bounded by `timeout`; an error names the partition that did not reach its end.
pub(super) fn read_back(
    options: &KafkaSourceOptions,
    probe: &BaseConsumer,
    start: &[(i32, i64)],
    id: MessageId<'_>,
    present: &mut [bool],
    timeout: Duration,
) -> Result<()> {
    let err = |m: String| Error::kafka(options.context(), m);
    // the watermarks, then the ends (log_ends assigns the probe), then the read from the
    // recorded starts
    let marks = start
        .iter()
        .map(|&(p, _)| watermarks(options, probe, p).map(|(low, high)| (p, low, high)))
        .collect::<Result<Vec<_>>>()?;
    let log = log_ends(options, probe, &marks)?;
    let mut ends = Vec::with_capacity(start.len());
    for (&(p, from), &(_, low, _)) in start.iter().zip(&marks) {
        let end = log.get(&p).copied().unwrap_or(low);
        if end > from {
            ends.push((p, from.max(low), end));
        }
    }
    if ends.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for &(p, from, _) in &ends {
        tpl.add_partition_offset(&options.uri.topic, p, Offset::Offset(from))
            .map_err(|e| err(format!("read-back of partition {p}: {e}")))?;
    }
    probe
        .assign(&tpl)
        .map_err(|e| err(format!("read-back assign: {e}")))?;
    let mut next: Vec<i64> = ends.iter().map(|&(_, from, _)| from).collect();
    let deadline = Instant::now() + timeout;
    while ends.iter().zip(&next).any(|(&(_, _, end), &n)| n < end) {
        if Instant::now() >= deadline {
            let (p, _, end) = ends
                .iter()
                .zip(&next)
                .find(|(&(_, _, end), &n)| n < end)
                .map(|(e, _)| *e)
                .unwrap_or_default();
            return Err(err(format!(
                "read-back of partition {p}: did not reach offset {end} within {timeout:?}"
            )));
        }
        let m = match probe.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(err(format!("read-back: {e}"))),
        };
        if let Some(i) = ends.iter().position(|&(p, _, _)| p == m.partition()) {
            next[i] = next[i].max(m.offset() + 1);
        }
        let Some(found) = m.headers().and_then(MessageId::read) else {
            continue;
        };
        if found.sink != id.sink || found.subtask != id.subtask || found.epoch != id.epoch {
            continue;
        }
        let staged = present.len();
        let slot = usize::try_from(found.seq)
            .ok()
            .and_then(|s| present.get_mut(s))
            .ok_or_else(|| {
                err(format!(
                    "partition {} offset {}: epoch {} message {} of sink `{}` subtask {}, but \
                     the staged epoch has {} messages: the topic does not match the staging",
                    m.partition(),
                    m.offset(),
                    id.epoch,
                    found.seq,
                    String::from_utf8_lossy(id.sink),
                    id.subtask,
                    staged
                ))
            })?;
        *slot = true;
    }
    probe
        .unassign()
        .map_err(|e| err(format!("read-back unassign: {e}")))
}

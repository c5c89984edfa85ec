//! The in-band messages that travel on every channel: data, watermarks, barriers, end of stream.

use arrow::record_batch::RecordBatch;

/// Event time in milliseconds since the Unix epoch.
pub type EventTime = i64;

/// The watermark that closes all event time: sent when a bounded input is exhausted.
pub const MAX_WATERMARK: EventTime = i64::MAX;

/// A checkpoint number. Epochs increase by one per checkpoint, starting at 1.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Epoch(pub u64);

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A checkpoint barrier: "snapshot now". Kept apart from watermarks ("time is complete").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Barrier {
    /// The checkpoint this barrier belongs to.
    pub epoch: Epoch,
}

/// What flows on a channel between two tasks.
#[derive(Debug, Clone)]
pub enum Message {
    /// A micro-batch of records.
    Data(RecordBatch),
    /// No record with an event time at or below this will follow on this channel.
    Watermark(EventTime),
    /// A checkpoint barrier.
    Barrier(Barrier),
    /// The sender has finished; nothing follows.
    End,
}

impl Message {
    /// Number of records carried (0 for control messages).
    pub fn num_rows(&self) -> usize {
        match self {
            Message::Data(b) => b.num_rows(),
            _ => 0,
        }
    }
}

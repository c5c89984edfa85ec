//! [`WindowSpec`]: which event-time windows a record belongs to.
//!
//! - **Tumbling**(size): `[k·size, (k+1)·size)`, aligned to the Unix epoch.
//! - **Sliding**(size, slide): windows of `size` starting every `slide` (aligned to the epoch), so
//!   a record is in `size / slide` windows (rounded up or down by its position when `slide` does
//!   not divide `size`). `slide` must not exceed `size`: every record is in some window.
//! - **Session**(gap): a record at `t` opens `[t, t + gap)`; sessions of one key whose intervals
//!   overlap merge (also when an out-of-order record bridges two). Intervals that only touch do
//!   not merge: records exactly `gap` apart are in different sessions. (Flink merges touching
//!   intervals; not merging them is what makes a watermark of `end - 1` final for a session.)
//!
//! Every kind takes `allowed_lateness` (default 0) and optionally names the event-time column
//! (default: the column `assign_timestamps` marked).

use std::time::Duration;

use crate::error::{Error, Result};

/// The shape of a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowKind {
    /// Fixed-size, non-overlapping windows.
    Tumbling {
        /// Window length.
        size: Duration,
    },
    /// Fixed-size windows starting every `slide`.
    Sliding {
        /// Window length.
        size: Duration,
        /// Distance between window starts (at most `size`).
        slide: Duration,
    },
    /// Per-key activity sessions closed by `gap` of inactivity.
    Session {
        /// Inactivity that closes a session.
        gap: Duration,
    },
}

/// An event-time window specification: kind, allowed lateness and event-time column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    /// The window shape.
    pub kind: WindowKind,
    /// How long after firing a window keeps its state for late records (default 0).
    pub allowed_lateness: Duration,
    /// The event-time column; `None`: the one marked by `assign_timestamps`.
    pub time_column: Option<String>,
}

impl WindowSpec {
    fn of(kind: WindowKind) -> Self {
        WindowSpec {
            kind,
            allowed_lateness: Duration::ZERO,
            time_column: None,
        }
    }

    /// Tumbling windows of `size`.
    pub fn tumbling(size: Duration) -> Self {
        Self::of(WindowKind::Tumbling { size })
    }

    /// Sliding windows of `size` every `slide`.
    pub fn sliding(size: Duration, slide: Duration) -> Self {
        Self::of(WindowKind::Sliding { size, slide })
    }

    /// Session windows closed by `gap` of inactivity.
    pub fn session(gap: Duration) -> Self {
        Self::of(WindowKind::Session { gap })
    }

    /// Keeps fired windows for `lateness` more event time, updating and re-firing them.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.allowed_lateness = lateness;
        self
    }

    /// Reads event time from `column` instead of the one `assign_timestamps` marked.
    pub fn time_column(mut self, column: &str) -> Self {
        self.time_column = Some(column.to_string());
        self
    }

    /// Checks the spec; errors name the setting.
    pub(crate) fn validate(&self, operator: &str) -> Result<ValidWindow> {
        let ms = |d: Duration, key: &str| -> Result<i64> {
            let v = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            if v < 1 {
                return Err(Error::config(
                    format!("{operator}.{key}"),
                    "must be at least 1 ms",
                ));
            }
            Ok(v)
        };
        let kind = match &self.kind {
            WindowKind::Tumbling { size } => {
                let size = ms(*size, "size")?;
                ValidKind::Fixed(Assigner { size, slide: size })
            }
            WindowKind::Sliding { size, slide } => {
                let (size, slide) = (ms(*size, "size")?, ms(*slide, "slide")?);
                if slide > size {
                    return Err(Error::config(
                        format!("{operator}.slide"),
                        format!("slide ({slide} ms) must not exceed size ({size} ms)"),
                    ));
                }
                ValidKind::Fixed(Assigner { size, slide })
            }
            WindowKind::Session { gap } => ValidKind::Session {
                gap: ms(*gap, "gap")?,
            },
        };
        Ok(ValidWindow {
            kind,
            lateness: i64::try_from(self.allowed_lateness.as_millis()).unwrap_or(i64::MAX),
            time_column: self.time_column.clone(),
        })
    }
}

/// A checked [`WindowSpec`], in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValidWindow {
    pub(crate) kind: ValidKind,
    pub(crate) lateness: i64,
    pub(crate) time_column: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValidKind {
    Fixed(Assigner),
    Session { gap: i64 },
}

impl ValidWindow {
    /// When the state of a window ending at `end` is purged: watermark ≥ `end - 1 + lateness`.
    #[inline]
    pub(crate) fn cleanup_time(&self, end: i64) -> i64 {
        (end - 1).saturating_add(self.lateness)
    }
}

/// Tumbling (slide = size) and sliding window assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Assigner {
    pub(crate) size: i64,
    pub(crate) slide: i64,
}

impl Assigner {
    /// The latest window start at or before `ts`.
    #[inline]
    pub(crate) fn last_start(&self, ts: i64) -> i64 {
        ts - ts.rem_euclid(self.slide)
    }

    /// Calls `f(start, end)` for every window containing `ts`, latest start first.
    #[inline]
    pub(crate) fn for_each(&self, ts: i64, mut f: impl FnMut(i64, i64)) {
        let mut start = self.last_start(ts);
        let lowest = ts.saturating_sub(self.size);
        while start > lowest {
            f(start, start.saturating_add(self.size));
            start -= self.slide;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(a: Assigner, ts: i64) -> Vec<(i64, i64)> {
        let mut v = Vec::new();
        a.for_each(ts, |s, e| v.push((s, e)));
        v
    }

    #[test]
    fn tumbling_and_sliding_assignment() {
        let t = Assigner {
            size: 10,
            slide: 10,
        };
        assert_eq!(windows(t, 0), vec![(0, 10)]);
        assert_eq!(windows(t, 9), vec![(0, 10)]);
        assert_eq!(windows(t, -1), vec![(-10, 0)]);
        let s = Assigner { size: 10, slide: 5 };
        assert_eq!(windows(s, 7), vec![(5, 15), (0, 10)]);
        assert_eq!(windows(s, 5), vec![(5, 15), (0, 10)]);
        let uneven = Assigner { size: 10, slide: 4 };
        assert_eq!(windows(uneven, 8), vec![(8, 18), (4, 14), (0, 10)]);
        assert_eq!(windows(uneven, 10), vec![(8, 18), (4, 14)]);
        for ts in -50..50 {
            for (s, e) in windows(uneven, ts) {
                assert!(s <= ts && ts < e && s.rem_euclid(4) == 0);
            }
        }
    }

    #[test]
    fn specs_are_validated() {
        let ok = WindowSpec::sliding(Duration::from_secs(10), Duration::from_secs(5))
            .allowed_lateness(Duration::from_millis(3))
            .validate("w")
            .unwrap();
        assert_eq!(
            ok.kind,
            ValidKind::Fixed(Assigner {
                size: 10_000,
                slide: 5_000
            })
        );
        assert_eq!(ok.cleanup_time(10_000), 10_002);
        let e = WindowSpec::sliding(Duration::from_secs(1), Duration::from_secs(2))
            .validate("w")
            .unwrap_err();
        assert!(e.to_string().contains("w.slide"), "{e}");
        let e = WindowSpec::session(Duration::ZERO)
            .validate("w")
            .unwrap_err();
        assert!(e.to_string().contains("w.gap"), "{e}");
    }
}

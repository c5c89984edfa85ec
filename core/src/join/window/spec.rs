//! [`WindowJoin`]: what a window join matches, and [`Stream::window_join`].

use std::sync::Arc;

use super::WindowJoinOperator;
use crate::dataflow::Stream;
use crate::window::WindowSpec;

/// What a window join matches (see [the module docs](crate::join)): rows of equal key in the
/// same tumbling or sliding event-time window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowJoin {
    /// Key columns of the left stream.
    pub left_keys: Vec<String>,
    /// Key columns of the right stream, in the same order and of the same types.
    pub right_keys: Vec<String>,
    /// Event-time column of the left stream (`None`: the window spec's time column, else the
    /// one `assign_timestamps` marked).
    pub left_time: Option<String>,
    /// Event-time column of the right stream (as `left_time`).
    pub right_time: Option<String>,
    /// The windows: tumbling or sliding, without allowed lateness (a session window or a
    /// lateness is refused when the join starts).
    pub window: WindowSpec,
    /// Prefix of right columns whose names the left side has already.
    pub right_prefix: String,
}

impl WindowJoin {
    /// Joins rows with equal `keys` (the same column names on both sides) that fall in the same
    /// window of `window`.
    pub fn new<I, S>(keys: I, window: WindowSpec) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let keys: Vec<String> = keys.into_iter().map(Into::into).collect();
        WindowJoin {
            left_keys: keys.clone(),
            right_keys: keys,
            left_time: None,
            right_time: None,
            window,
            right_prefix: "right_".into(),
        }
    }

    /// The event-time columns, instead of the ones `assign_timestamps` marked.
    pub fn times(mut self, left: &str, right: &str) -> Self {
        self.left_time = Some(left.into());
        self.right_time = Some(right.into());
        self
    }

    /// Other key columns on the right side (same order and types as the left ones).
    pub fn right_keys<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.right_keys = keys.into_iter().map(Into::into).collect();
        self
    }

    /// The event-time column of side `s`.
    pub(crate) fn time(&self, s: usize) -> Option<&str> {
        let explicit = if s == 0 {
            &self.left_time
        } else {
            &self.right_time
        };
        explicit.as_deref().or(self.window.time_column.as_deref())
    }
}

impl Stream {
    /// Joins this stream (left) with `right` on keys and event-time windows (see
    /// [`WindowJoin`]); both are repartitioned by their keys. A spec that cannot work (no keys,
    /// keys of different counts, a session window, allowed lateness) fails the job naming
    /// `name`.
    pub fn window_join(&self, right: &Stream, name: &str, spec: WindowJoin) -> Stream {
        let left = self.clone().partition_by(spec.left_keys.clone());
        let right = right.clone().partition_by(spec.right_keys.clone());
        let spec = Arc::new(spec);
        let op = name.to_string();
        let factory = crate::window::keyed::keyed_factory(name, move || {
            WindowJoinOperator::new(&op, spec.clone())
        });
        left.connect(&[right], name, factory)
    }
}

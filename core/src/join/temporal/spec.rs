//! [`TemporalJoin`]: what an event-time temporal join looks up, and [`Stream::temporal_join`].

use std::sync::Arc;

use arrow::datatypes::SchemaRef;

use super::TemporalJoinOperator;
use crate::dataflow::Stream;

/// Whether a left row with no right version as of its time is emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TemporalKind {
    /// Only left rows that found a version.
    #[default]
    Inner,
    /// Every left row; the right columns are null where no version was current.
    LeftOuter,
}

/// What a temporal join looks up (see [the module docs](crate::join)): for each left row, the
/// right row of the same key that was current as of the left row's event time — the right
/// stream is the changelog of a keyed table, every row an upsert of its key at its event time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemporalJoin {
    /// Key columns of the left (probe) stream.
    pub left_keys: Vec<String>,
    /// Key columns of the right (changelog) stream, in the same order and of the same types.
    pub right_keys: Vec<String>,
    /// Event-time column of the left stream (`None`: the one `assign_timestamps` marked).
    pub left_time: Option<String>,
    /// Event-time column of the right stream: the time each version became current.
    pub right_time: Option<String>,
    /// Inner or left outer.
    pub kind: TemporalKind,
    /// Prefix of right columns whose names the left side has already.
    pub right_prefix: String,
    /// The right stream's schema, when known up front ([`TemporalJoin::right_schema`]).
    pub right_schema: Option<SchemaRef>,
}

impl TemporalJoin {
    /// An inner temporal join on `keys` (the same column names on both sides).
    pub fn new<I, S>(keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let keys: Vec<String> = keys.into_iter().map(Into::into).collect();
        TemporalJoin {
            left_keys: keys.clone(),
            right_keys: keys,
            left_time: None,
            right_time: None,
            kind: TemporalKind::Inner,
            right_prefix: "right_".into(),
            right_schema: None,
        }
    }

    /// Declares the right stream's schema. A join otherwise learns it from the first right
    /// batch a subtask gets, and a left-outer join whose subtask gets none (an empty table, its
    /// keys all elsewhere, a restart after the table's stream ended) cannot build its output
    /// and fails with an error that says so.
    pub fn right_schema(mut self, schema: SchemaRef) -> Self {
        self.right_schema = Some(schema);
        self
    }

    /// Emits every left row, with null right columns where no version was current.
    pub fn left_outer(mut self) -> Self {
        self.kind = TemporalKind::LeftOuter;
        self
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
}

impl Stream {
    /// Joins this stream (left) with the versions of the keyed table whose changelog is `right`
    /// as of each left row's event time (see [`TemporalJoin`]); both are repartitioned by their
    /// keys. A spec that cannot work (no keys, keys of different counts) fails the job naming
    /// `name`.
    pub fn temporal_join(&self, right: &Stream, name: &str, spec: TemporalJoin) -> Stream {
        let left = self.clone().partition_by(spec.left_keys.clone());
        let right = right.clone().partition_by(spec.right_keys.clone());
        let spec = Arc::new(spec);
        let op = name.to_string();
        let factory = crate::window::keyed::keyed_factory(name, move || {
            TemporalJoinOperator::new(&op, spec.clone())
        });
        // the right stream is a table's changelog: its rows are looked up, not the job's rows
        left.connect(&[right], name, factory).lookup_input(1)
    }
}

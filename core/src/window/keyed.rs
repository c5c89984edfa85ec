//! `key_by` and [`KeyedStream`]: a stream hash-partitioned by key columns, on which keyed
//! operators (windows, over windows) keep per-key state.

use std::sync::Arc;

use crate::dataflow::Stream;
use crate::error::Result;
use crate::operator::{Operator, OperatorFactory, TaskInfo};

use super::aggregate::Agg;
use super::assigner::{WindowKind, WindowSpec};
use super::event_window::EventWindowOperator;
use super::session::SessionWindowOperator;

/// A stream partitioned by key columns: every record of one key reaches the same subtask.
#[derive(Clone)]
pub struct KeyedStream {
    stream: Stream,
    keys: Vec<String>,
}

impl Stream {
    /// Partitions the stream by the hash of `columns` and remembers them as the key.
    pub fn key_by<I, S>(&self, columns: I) -> KeyedStream
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let keys: Vec<String> = columns.into_iter().map(Into::into).collect();
        KeyedStream {
            stream: self.clone().partition_by(keys.clone()),
            keys,
        }
    }
}

/// An operator that failed to build: it reports the build error on its first call, so that
/// configuration errors surface as the job's error, naming the operator.
struct Failed(String, crate::error::Error);

impl Operator for Failed {
    fn on_start(&mut self, _task: &TaskInfo) -> Result<()> {
        Err(crate::error::Error::config(
            self.0.clone(),
            self.1.to_string(),
        ))
    }

    fn process(
        &mut self,
        _: usize,
        _: arrow::record_batch::RecordBatch,
        _: &mut crate::operator::Collector,
    ) -> Result<()> {
        Err(crate::error::Error::config(
            self.0.clone(),
            self.1.to_string(),
        ))
    }
}

/// A factory that builds one operator per subtask with `build`, or reports its error.
pub(crate) fn keyed_factory<O: Operator>(
    name: &str,
    build: impl Fn() -> Result<O> + Send + Sync + 'static,
) -> OperatorFactory {
    let name = name.to_string();
    Arc::new(move |_task: &TaskInfo| -> Box<dyn Operator> {
        match build() {
            Ok(op) => Box::new(op),
            Err(e) => Box::new(Failed(name.clone(), e)),
        }
    })
}

impl KeyedStream {
    /// The key columns.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// The underlying (partitioned) stream.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// Aggregates `aggs` per key over event-time windows `spec` (tumbling, sliding or session).
    /// Output: key columns, `window_start`, `window_end`, one column per aggregate; late
    /// records go to the side output [`LATE`](super::LATE). See [the module docs](crate::window).
    pub fn window(&self, name: &str, spec: WindowSpec, aggs: Vec<Agg>) -> Stream {
        let (keys, op) = (self.keys.clone(), name.to_string());
        let factory = match spec.kind {
            WindowKind::Session { .. } => keyed_factory(name, move || {
                SessionWindowOperator::new(&op, &keys, &spec, aggs.clone())
            }),
            _ => keyed_factory(name, move || {
                EventWindowOperator::new(&op, &keys, &spec, aggs.clone())
            }),
        };
        self.stream.apply(name, factory)
    }
}

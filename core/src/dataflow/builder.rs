//! The logical graph and its builder API: `Dataflow` owns the graph, `Stream` is a cheap handle
//! to one output of one node, extended by the operator modules (`stream.map(..)`, `.key_by(..)`).

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use crate::dataflow::checkpointing::CheckpointConfig;
use crate::dataflow::failover::{FailoverConfig, FaultInjection};
use crate::operator::{factory_from_clone, Operator, OperatorFactory};
use crate::partition::Edge;
use crate::sink::{Sink, SinkFactory};
use crate::source::{BatchBounds, ErrorPolicy, Source, SourceFactory};

/// Runtime settings of a job.
#[derive(Debug, Clone)]
pub struct DataflowConfig {
    /// Job name, for logs and the summary.
    pub name: String,
    /// Worker threads of the async runtime (0: one per core).
    pub threads: usize,
    /// Capacity, in batches, of every channel: bounded, so backpressure is structural.
    pub channel_capacity: usize,
    /// Micro-batch bounds for sources.
    pub bounds: BatchBounds,
    /// Parallelism of nodes that do not set their own.
    pub default_parallelism: usize,
    /// Number of key groups (default [`DEFAULT_KEY_GROUPS`](crate::keys::DEFAULT_KEY_GROUPS)
    /// = 128): keyed exchanges route by key group and keyed state is checkpointed per key
    /// group, so this is the most subtasks a keyed operator can run on. Recorded in every
    /// checkpoint; a restore with another count is refused (see [`keys`](crate::keys)).
    pub key_groups: u32,
    /// What to do with malformed records.
    pub on_error: ErrorPolicy,
    /// Dead-letter file (JSON lines). `None`: rejected records are kept in memory and counted.
    pub dead_letter_path: Option<PathBuf>,
    /// How long a followed source sleeps when it has no new data.
    pub idle_poll: std::time::Duration,
    /// Checkpoints and restore; the default takes none.
    pub checkpoint: CheckpointConfig,
    /// Failover strategy and restart policy; the default restarts nothing.
    pub failover: FailoverConfig,
    /// Faults to inject, for tests and benchmarks (see [`Dataflow::inject_fault`]).
    pub faults: Vec<FaultInjection>,
}

impl Default for DataflowConfig {
    fn default() -> Self {
        DataflowConfig {
            name: "eddy".into(),
            threads: 0,
            channel_capacity: 8,
            bounds: BatchBounds::default(),
            default_parallelism: 1,
            key_groups: crate::keys::DEFAULT_KEY_GROUPS,
            on_error: ErrorPolicy::DeadLetter,
            dead_letter_path: None,
            idle_poll: std::time::Duration::from_millis(20),
            checkpoint: CheckpointConfig::default(),
            failover: FailoverConfig::default(),
            faults: Vec::new(),
        }
    }
}

pub(crate) type NodeId = usize;

/// Which output of a node a stream reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Port {
    Main,
    Side(&'static str),
}

#[derive(Clone)]
pub(crate) enum NodeKind {
    Source(SourceFactory),
    Operator(OperatorFactory),
    Sink(SinkFactory),
}

#[derive(Clone)]
pub(crate) struct Input {
    pub(crate) from: NodeId,
    pub(crate) port: Port,
    pub(crate) edge: Option<Edge>,
    /// A lookup input (see [`Stream::lookup_input`]): its rows are not the job's rows.
    pub(crate) lookup: bool,
}

#[derive(Clone)]
pub(crate) struct Node {
    pub(crate) name: Arc<str>,
    /// The stable operator id its state is checkpointed under (`None`: the name).
    pub(crate) uid: Option<Arc<str>>,
    pub(crate) kind: NodeKind,
    pub(crate) parallelism: Option<usize>,
    pub(crate) inputs: Vec<Input>,
}

#[derive(Clone)]
pub(crate) struct Graph {
    pub(crate) config: DataflowConfig,
    pub(crate) nodes: Vec<Node>,
}

/// A dataflow under construction: add sources, transform the streams, add sinks, then run.
///
/// ```
/// use std::sync::Arc;
/// use arrow::array::Int64Array;
/// use arrow::record_batch::RecordBatch;
/// use eddy_core::prelude::*;
///
/// let batch = RecordBatch::try_from_iter([(
///     "x",
///     Arc::new(Int64Array::from(vec![1, 2, 3])) as _,
/// )])?;
/// let out = MemorySink::new();
/// let flow = Dataflow::new(DataflowConfig::default());
/// flow.source("numbers", MemorySource::from_batches(vec![batch])?)
///     .filter("odd", |b| {
///         let x = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
///         Ok(x.iter().map(|v| v.map(|v| v % 2 == 1)).collect())
///     })
///     .sink("out", out.clone());
/// let summary = flow.run()?;
/// assert_eq!(out.num_rows(), 2);
/// assert_eq!(summary.operator("odd").unwrap().records_out, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Dataflow {
    pub(crate) graph: Rc<RefCell<Graph>>,
}

/// A handle to one output of one node of a [`Dataflow`]. Cheap to clone; transforming it adds
/// nodes to the dataflow.
#[derive(Clone)]
pub struct Stream {
    pub(crate) graph: Rc<RefCell<Graph>>,
    pub(crate) node: NodeId,
    pub(crate) port: Port,
    pub(crate) next_edge: Option<Edge>,
}

impl Dataflow {
    /// An empty dataflow.
    pub fn new(config: DataflowConfig) -> Self {
        Dataflow {
            graph: Rc::new(RefCell::new(Graph {
                config,
                nodes: Vec::new(),
            })),
        }
    }

    /// The job's settings.
    pub fn config(&self) -> DataflowConfig {
        self.graph.borrow().config.clone()
    }

    /// Makes a task fail once while the job runs (tests and benchmarks): see
    /// [`FaultInjection`].
    pub fn inject_fault(&self, fault: FaultInjection) -> &Self {
        self.graph.borrow_mut().config.faults.push(fault);
        self
    }

    /// Adds a source read by one subtask; set more with [`Stream::parallelism`] when the source
    /// factory splits its input (see [`Dataflow::source_with`]).
    pub fn source<S: Source + Clone + Sync>(&self, name: &str, source: S) -> Stream {
        self.source_with(name, Arc::new(move |_| Ok(Box::new(source.clone()))))
    }

    /// Adds a source from a factory called once per subtask; each instance reads its own split.
    pub fn source_with(&self, name: &str, factory: SourceFactory) -> Stream {
        self.add_node(name, NodeKind::Source(factory), Vec::new())
    }

    pub(crate) fn add_node(&self, name: &str, kind: NodeKind, inputs: Vec<Input>) -> Stream {
        let mut g = self.graph.borrow_mut();
        let node = g.nodes.len();
        g.nodes.push(Node {
            name: Arc::from(name),
            uid: None,
            kind,
            parallelism: None,
            inputs,
        });
        Stream {
            graph: self.graph.clone(),
            node,
            port: Port::Main,
            next_edge: None,
        }
    }
}

impl Stream {
    fn flow(&self) -> Dataflow {
        Dataflow {
            graph: self.graph.clone(),
        }
    }

    fn as_input(&self) -> Input {
        Input {
            from: self.node,
            port: self.port.clone(),
            edge: self.next_edge.clone(),
            lookup: false,
        }
    }

    /// Adds an operator built per subtask by `factory`.
    pub fn apply(&self, name: &str, factory: OperatorFactory) -> Stream {
        self.flow()
            .add_node(name, NodeKind::Operator(factory), vec![self.as_input()])
    }

    /// Adds an operator; every subtask gets a clone of `op`.
    pub fn operator<O: Operator + Clone + Sync>(&self, name: &str, op: O) -> Stream {
        self.apply(name, factory_from_clone(op))
    }

    /// Adds an operator that reads this stream and `others` (inputs numbered in that order).
    pub fn connect(&self, others: &[Stream], name: &str, factory: OperatorFactory) -> Stream {
        let mut inputs = vec![self.as_input()];
        inputs.extend(others.iter().map(|s| s.as_input()));
        self.flow()
            .add_node(name, NodeKind::Operator(factory), inputs)
    }

    /// Declares input `input` (numbered as in [`Stream::connect`]) of the operator that produces
    /// this stream a *lookup input*: its rows only update state that the rows of the other
    /// inputs are looked up in — the versioned table of a temporal join, the clicks that label
    /// impressions, broadcast rules. They are not the job's rows: approximate failover's
    /// `records_lost` and `records_replayed` count neither them nor anything of a stream that
    /// reaches the sinks only through lookup inputs (see `dataflow::failover`).
    ///
    /// # Panics
    /// When the operator has no input `input` (a bug in the job's construction).
    pub fn lookup_input(self, input: usize) -> Stream {
        let mut g = self.graph.borrow_mut();
        let node = &mut g.nodes[self.node];
        assert!(
            input < node.inputs.len(),
            "`{}` has {} inputs, no input {input}",
            node.name,
            node.inputs.len()
        );
        node.inputs[input].lookup = true;
        drop(g);
        self
    }

    /// Sets the parallelism of the node that produces this stream.
    pub fn parallelism(self, parallelism: usize) -> Stream {
        self.graph.borrow_mut().nodes[self.node].parallelism = Some(parallelism.max(1));
        self
    }

    /// Sets the stable operator id of the node that produces this stream: its state is
    /// checkpointed and restored under this id (default: the node's name). Give an operator
    /// its old id when renaming it, so that it keeps its state. Ids must be unique within a
    /// job that checkpoints.
    pub fn uid(self, id: &str) -> Stream {
        self.graph.borrow_mut().nodes[self.node].uid = Some(Arc::from(id));
        self
    }

    /// Routes the next operator's input round-robin over its subtasks.
    pub fn rebalance(mut self) -> Stream {
        self.next_edge = Some(Edge::Rebalance);
        self
    }

    /// Sends every batch to every subtask of the next operator.
    pub fn broadcast(mut self) -> Stream {
        self.next_edge = Some(Edge::Broadcast);
        self
    }

    /// Routes rows by the hash of `columns` (without keyed state; see `key_by` for that).
    pub fn partition_by<I, S>(mut self, columns: I) -> Stream
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.next_edge = Some(Edge::Hash(columns.into_iter().map(Into::into).collect()));
        self
    }

    /// The side output `tag` of the node that produces this stream (e.g. late records).
    pub fn side_output(&self, tag: &'static str) -> Stream {
        Stream {
            graph: self.graph.clone(),
            node: self.node,
            port: Port::Side(tag),
            next_edge: None,
        }
    }

    /// Terminates the stream in a sink; every subtask gets a clone of `sink`.
    pub fn sink<S: Sink + Clone + Sync>(&self, name: &str, sink: S) -> Stream {
        self.sink_with(name, Arc::new(move |_| Ok(Box::new(sink.clone()))))
    }

    /// Terminates the stream in a sink built per subtask by `factory`.
    pub fn sink_with(&self, name: &str, factory: SinkFactory) -> Stream {
        self.flow()
            .add_node(name, NodeKind::Sink(factory), vec![self.as_input()])
    }
}

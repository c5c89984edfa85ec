//! From the logical graph to tasks: resolves parallelism and edges, chains forward edges of
//! equal parallelism, and wires one bounded channel per (producer subtask, consumer subtask).

use std::sync::Arc;

use tokio::sync::mpsc::{channel, unbounded_channel, Receiver, UnboundedReceiver};

use crate::checkpoint::TaskSnapshot;
use crate::dataflow::builder::{Graph, NodeId, NodeKind, Port};
use crate::dataflow::chain::{Chain, ChainOp, ChainSink, OutputEdge};
use crate::dataflow::failover::{ArmedFault, StageFault};
use crate::dataflow::inflight::Positioned;
use crate::error::{Error, Result};
use crate::message::{Epoch, Message};
use crate::metrics::{MetricsRegistry, OperatorMetrics};
use crate::operator::{Collector, TaskInfo};
use crate::partition::{Edge, Partitioner};
use crate::source::Source;

/// One input channel of a task: the logical input number of the chain head, the receiver,
/// and where it comes from: (producer task index, its output edge, the target on that edge).
pub(crate) struct TaskInput {
    pub(crate) input: usize,
    pub(crate) rx: Receiver<Message>,
    /// The priority lane: barriers with their position on `rx`.
    pub(crate) prio: UnboundedReceiver<Positioned>,
    pub(crate) from: (usize, usize, usize),
    /// Its rows are the job's rows, counted by loss accounting (see [`lineage`]).
    pub(crate) counted: bool,
}

/// Where a task sits in the job, for checkpoints: its subtask and parallelism and the operator
/// ids of its source and chain stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskLayout {
    pub(crate) subtask: usize,
    pub(crate) parallelism: usize,
    pub(crate) source: Option<Arc<str>>,
    pub(crate) operators: Vec<Arc<str>>,
    /// The job's key groups.
    pub(crate) key_groups: u32,
}

/// One runnable task: a parallel instance of a chain.
pub(crate) struct Task {
    pub(crate) name: String,
    pub(crate) layout: TaskLayout,
    pub(crate) source: Option<(Box<dyn Source>, TaskInfo, Arc<OperatorMetrics>)>,
    pub(crate) chain: Chain,
    pub(crate) inputs: Vec<TaskInput>,
    /// What to restore before the first record (set by the checkpoint restore step).
    pub(crate) restore: Option<TaskSnapshot>,
    /// The restored checkpoint, for the sink's recovery commit.
    pub(crate) restored_epoch: Option<Epoch>,
    /// An injected fault in the chain's source.
    pub(crate) source_fault: Option<StageFault>,
}

struct ChainSpec {
    nodes: Vec<NodeId>,
    parallelism: usize,
}

fn resolve_parallelism(g: &Graph) -> Vec<usize> {
    let mut par = vec![1; g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        par[i] = match (n.parallelism, &n.kind) {
            (Some(p), _) => p,
            (None, NodeKind::Source(_)) => 1,
            (None, _) => n
                .inputs
                .iter()
                .map(|inp| par[inp.from])
                .max()
                .unwrap_or(g.config.default_parallelism.max(1)),
        };
    }
    par
}

fn resolve_edges(g: &Graph, par: &[usize]) -> Result<Vec<Vec<Edge>>> {
    let key_groups = g.config.key_groups;
    if key_groups == 0 {
        return Err(Error::config("key-groups", "must be at least 1, got 0"));
    }
    let mut edges = Vec::with_capacity(g.nodes.len());
    for (i, n) in g.nodes.iter().enumerate() {
        let mut node_edges = Vec::with_capacity(n.inputs.len());
        for inp in &n.inputs {
            let same = par[inp.from] == par[i];
            if matches!(inp.edge, Some(Edge::Hash(_))) && par[i] as u64 > u64::from(key_groups) {
                return Err(Error::config(
                    format!("{}.parallelism", n.name),
                    format!(
                        "a keyed operator runs on at most key-groups = {key_groups} subtasks, \
                         `{}` has {}: raise key-groups",
                        n.name, par[i]
                    ),
                ));
            }
            let e = match &inp.edge {
                None if same => Edge::Forward,
                None => Edge::Rebalance,
                Some(Edge::Forward) if !same => {
                    return Err(Error::config(
                        format!("{}.edge", n.name),
                        format!(
                        "a forward edge needs equal parallelism, but `{}` has {} and `{}` has {}",
                        g.nodes[inp.from].name, par[inp.from], n.name, par[i]
                    ),
                    ))
                }
                Some(e) => e.clone(),
            };
            node_edges.push(e);
        }
        edges.push(node_edges);
    }
    Ok(edges)
}

/// Which nodes' output rows are the job's rows, for loss accounting: a node's are unless every
/// consumer takes them on a lookup input or is itself not counted (a sink's always are, as are
/// those of a node nothing consumes). Nodes come in topological order: consumers after their
/// inputs.
fn lineage(g: &Graph, consumers: &[Vec<(NodeId, usize)>]) -> Vec<bool> {
    let mut counted = vec![true; g.nodes.len()];
    for i in (0..g.nodes.len()).rev() {
        counted[i] = consumers[i].is_empty()
            || consumers[i]
                .iter()
                .any(|&(c, k)| counted[c] && !g.nodes[c].inputs[k].lookup);
    }
    counted
}

/// Refuses two sources or operators with one operator id: their state could not be told apart.
fn check_unique_ids(g: &Graph) -> Result<()> {
    let mut seen = std::collections::HashMap::new();
    for n in &g.nodes {
        if matches!(n.kind, NodeKind::Sink(_)) {
            continue;
        }
        let id = n.uid.as_ref().unwrap_or(&n.name);
        if let Some(other) = seen.insert(id.clone(), n.name.clone()) {
            return Err(Error::config(
                format!("{}.uid", n.name),
                format!(
                    "operator id `{id}` is used by `{other}` and `{}`: a job that checkpoints \
                     needs unique ids (set one with `.uid(..)`)",
                    n.name
                ),
            ));
        }
    }
    Ok(())
}

/// Builds the tasks of a graph. Factories are called here, once per subtask. Metrics of a
/// subtask already registered (an earlier attempt) are reused; `faults` are attached to the
/// stages they name. Task indices are stable across calls: a restart rebuilds the same plan.
pub(crate) fn build_tasks(
    g: &Graph,
    metrics: &mut MetricsRegistry,
    faults: &[Arc<ArmedFault>],
) -> Result<(Vec<Task>, Vec<usize>)> {
    if g.nodes.is_empty() {
        return Err(Error::config("dataflow", "the dataflow has no nodes"));
    }
    let par = resolve_parallelism(g);
    let edges = resolve_edges(g, &par)?;
    if g.config.checkpoint.dir.is_some() {
        check_unique_ids(g)?;
    }

    // consumers of each node, any port
    let mut consumers: Vec<Vec<(NodeId, usize)>> = vec![Vec::new(); g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        for (k, inp) in n.inputs.iter().enumerate() {
            consumers[inp.from].push((i, k));
        }
    }
    for (i, n) in g.nodes.iter().enumerate() {
        if !matches!(n.kind, NodeKind::Sink(_)) && consumers[i].is_empty() {
            return Err(Error::config(
                format!("{}", n.name),
                "this stream is not consumed: end it in a sink".to_string(),
            ));
        }
        if matches!(n.kind, NodeKind::Sink(_)) && !consumers[i].is_empty() {
            return Err(Error::config(
                format!("{}", n.name),
                "a sink cannot feed another operator".to_string(),
            ));
        }
    }

    let counted = lineage(g, &consumers);

    // chaining: n chains onto its only input when that input is forward, main-port, of equal
    // parallelism, and n is that output's only consumer.
    let chained_onto = |n: NodeId| -> Option<NodeId> {
        let node = &g.nodes[n];
        if node.inputs.len() != 1 || matches!(node.kind, NodeKind::Source(_)) {
            return None;
        }
        let inp = &node.inputs[0];
        let only = consumers[inp.from].len() == 1;
        (inp.port == Port::Main
            && edges[n][0] == Edge::Forward
            && par[inp.from] == par[n]
            && only
            && !matches!(g.nodes[inp.from].kind, NodeKind::Sink(_)))
        .then_some(inp.from)
    };
    let mut chains: Vec<ChainSpec> = Vec::new();
    let mut chain_of = vec![(usize::MAX, 0usize); g.nodes.len()]; // (chain, position)
    for (start, &start_par) in par.iter().enumerate() {
        if chained_onto(start).is_some() {
            continue;
        }
        let mut nodes = vec![start];
        let mut cur = start;
        while let Some(&(next, _)) = consumers[cur].first() {
            if consumers[cur].len() == 1 && chained_onto(next) == Some(cur) {
                nodes.push(next);
                cur = next;
            } else {
                break;
            }
        }
        for (pos, &n) in nodes.iter().enumerate() {
            chain_of[n] = (chains.len(), pos);
        }
        chains.push(ChainSpec {
            parallelism: start_par,
            nodes,
        });
    }

    // stage of a node inside its chain: None for a chain's source, else index into ops
    let stage_of = |n: NodeId| -> Option<usize> {
        let (c, pos) = chain_of[n];
        let head_is_source = matches!(g.nodes[chains[c].nodes[0]].kind, NodeKind::Source(_));
        if head_is_source {
            pos.checked_sub(1)
        } else {
            Some(pos)
        }
    };

    // instantiate chains
    let mut tasks: Vec<Vec<Task>> = Vec::new();
    for spec in &chains {
        let mut instances = Vec::new();
        for subtask in 0..spec.parallelism {
            let mut source = None;
            let mut ops = Vec::new();
            let mut sink = None;
            let mut head_metrics = None;
            let mut source_fault = None;
            let mut layout = TaskLayout {
                subtask,
                parallelism: spec.parallelism,
                source: None,
                operators: Vec::new(),
                key_groups: g.config.key_groups,
            };
            for &n in &spec.nodes {
                let node = &g.nodes[n];
                let task = TaskInfo {
                    operator: node.name.clone(),
                    subtask,
                    parallelism: spec.parallelism,
                    key_groups: g.config.key_groups,
                };
                let id = node.uid.clone().unwrap_or_else(|| node.name.clone());
                match node.kind {
                    NodeKind::Source(_) => layout.source = Some(id),
                    NodeKind::Operator(_) => layout.operators.push(id),
                    NodeKind::Sink(_) => {}
                }
                let m = metrics.register(node.name.clone(), subtask);
                head_metrics.get_or_insert_with(|| m.clone());
                let fault = StageFault::find(faults, &node.name, subtask);
                match &node.kind {
                    NodeKind::Source(f) => {
                        source_fault = fault;
                        source = Some((f(&task)?, task, m))
                    }
                    NodeKind::Operator(f) => ops.push(ChainOp {
                        op: f(&task),
                        task,
                        metrics: m,
                        collector: Collector::default(),
                        fault,
                    }),
                    NodeKind::Sink(f) => {
                        sink = Some(ChainSink {
                            sink: f(&task)?,
                            task,
                            metrics: m,
                            fault,
                        })
                    }
                }
            }
            let head = &g.nodes[spec.nodes[0]];
            instances.push(Task {
                name: format!("{}[{}]", head.name, subtask),
                layout,
                source,
                chain: Chain {
                    ops,
                    sink,
                    outputs: Vec::new(),
                    head_metrics: head_metrics.expect("chain has a node"),
                    deferred: Default::default(),
                },
                inputs: Vec::new(),
                restore: None,
                restored_epoch: None,
                source_fault,
            });
        }
        tasks.push(instances);
    }

    // wire channels: for every input of every chain head
    let capacity = g.config.channel_capacity.max(1);
    let mut offsets = Vec::with_capacity(tasks.len());
    let mut next = 0;
    for t in &tasks {
        offsets.push(next);
        next += t.len();
    }
    for (c, spec) in chains.iter().enumerate() {
        let head = spec.nodes[0];
        for (k, inp) in g.nodes[head].inputs.iter().enumerate() {
            let edge = &edges[head][k];
            let edge_counted = counted[head] && !inp.lookup;
            let (pc, _) = chain_of[inp.from];
            let from_stage = stage_of(inp.from);
            let producers = chains[pc].parallelism;
            let consumers_n = spec.parallelism;
            for ps in 0..producers {
                let targets: Vec<usize> = match edge {
                    Edge::Forward => vec![ps],
                    _ => (0..consumers_n).collect(),
                };
                let mut senders = Vec::with_capacity(targets.len());
                let mut prio = Vec::with_capacity(targets.len());
                let mut to = Vec::with_capacity(targets.len());
                let edge_index = tasks[pc][ps].chain.outputs.len();
                for (target, &cs) in targets.iter().enumerate() {
                    let (tx, rx) = channel(capacity);
                    let (prio_tx, prio_rx) = unbounded_channel();
                    senders.push(tx);
                    prio.push(prio_tx);
                    to.push((offsets[c] + cs, tasks[c][cs].inputs.len()));
                    tasks[c][cs].inputs.push(TaskInput {
                        input: k,
                        rx,
                        prio: prio_rx,
                        from: (offsets[pc] + ps, edge_index, target),
                        counted: edge_counted,
                    });
                }
                let n_targets = senders.len();
                tasks[pc][ps].chain.outputs.push(OutputEdge {
                    from: from_stage,
                    port: inp.port.clone(),
                    partitioner: Partitioner::new(edge.clone(), n_targets, ps, g.config.key_groups),
                    sent: vec![0; n_targets],
                    senders,
                    prio,
                    to,
                    counted: edge_counted,
                    schema: None,
                });
            }
        }
    }
    Ok((tasks.into_iter().flatten().collect(), par))
}

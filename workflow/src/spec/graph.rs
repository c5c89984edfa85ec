//! Checks across sections: every name a node or source mentions exists and has the right
//! kind, learners and features agree along warm-start edges, and the node graph has no cycle.
//! Then the nodes are put in a topological order.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use toml::Spanned;

use super::locate::{closest, Locator};
use super::raw::{RawNode, RawWorkflow, S};
use super::{NodeKind, NodeSpec, SourceSpec, Workflow};
use crate::error::{Error, Result};

struct Graph<'a> {
    loc: &'a Locator<'a>,
}

/// The raw nodes by name (one lookup per node keeps the checks linear in the node count).
fn raw_nodes(raw: &RawWorkflow) -> BTreeMap<&str, (&S, &RawNode)> {
    raw.nodes
        .iter()
        .map(|(k, v)| (k.get_ref().as_str(), (k, v.get_ref())))
        .collect()
}

impl Graph<'_> {
    fn dangling(
        &self,
        at: Range<usize>,
        key: String,
        what: &str,
        name: &str,
        known: &[&str],
    ) -> Error {
        let hint = match closest(name, known) {
            Some(c) => Some(format!("did you mean `{c}`?")),
            None if known.is_empty() => Some(format!("the spec defines no {what}s")),
            None => Some(format!("{what}s: {}", known.join(", "))),
        };
        self.loc
            .error(at, key, format!("no {what} named `{name}`"), hint)
    }

    fn err(&self, at: Range<usize>, key: String, msg: impl Into<String>) -> Error {
        self.loc.error(at, key, msg, None)
    }
}

/// Checks references, types and cycles, and stores the nodes in `wf` in topological order.
pub(super) fn check_graph(
    loc: &Locator<'_>,
    raw: &RawWorkflow,
    wf: &mut Workflow,
    nodes: Vec<(S, NodeSpec)>,
) -> Result<()> {
    let g = Graph { loc };
    let raw_by_name = raw_nodes(raw);
    let raw_node = |name: &str| raw_by_name.get(name).copied();
    let source_names: Vec<&str> = wf.sources.keys().map(String::as_str).collect();
    let feature_names: Vec<&str> = wf.features.keys().map(String::as_str).collect();
    let node_names: Vec<&str> = nodes.iter().map(|(n, _)| n.get_ref().as_str()).collect();
    let by_name: BTreeMap<&str, &NodeSpec> = nodes
        .iter()
        .map(|(n, s)| (n.get_ref().as_str(), s))
        .collect();

    // hybrid sources name existing, non-hybrid sources
    for (name, src) in &raw.sources {
        if let Some(SourceSpec::Hybrid { history, live }) = wf.sources.get(name.get_ref()) {
            let rs = src.get_ref();
            for (k, target, at) in [("history", history, &rs.history), ("live", live, &rs.live)] {
                let at = at.as_ref().map_or(name.span(), Spanned::span);
                let key = format!("sources.{}.{k}", name.get_ref());
                match wf.sources.get(target) {
                    None => return Err(g.dangling(at, key, "source", target, &source_names)),
                    Some(SourceSpec::Hybrid { .. } | SourceSpec::DelayedLabels(_)) => {
                        return Err(g.err(
                            at,
                            key,
                            format!("`{target}` is not a plain source; a hybrid reads plain sources (file, ctr, kafka)"),
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
    }
    delayed_labels_sources(&g, raw, wf, &source_names)?;

    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, spec) in &nodes {
        let (_, rn) = raw_node(name.get_ref()).expect("node came from raw");
        let n = name.get_ref();
        let key = |k: &str| format!("nodes.{n}.{k}");
        let at = |v: &Option<S>| v.as_ref().map_or(name.span(), Spanned::span);
        let deps = edges.entry(n.clone()).or_default();
        // after
        if let Some(after) = &rn.after {
            for a in after.get_ref() {
                if !by_name.contains_key(a.get_ref().as_str()) {
                    return Err(g.dangling(
                        a.span(),
                        key("after"),
                        "node",
                        a.get_ref(),
                        &node_names,
                    ));
                }
                if a.get_ref() == n {
                    return Err(g.err(
                        a.span(),
                        key("after"),
                        format!("node `{n}` cannot run after itself (a cycle)"),
                    ));
                }
                deps.insert(a.get_ref().clone());
            }
        }
        // a reference to a training node: exists and trains
        let training = |k: &str, v: &Option<S>| -> Result<Option<&NodeSpec>> {
            let Some(target) = v else { return Ok(None) };
            let t = target.get_ref().as_str();
            let Some(spec) = by_name.get(t) else {
                return Err(g.dangling(target.span(), key(k), "node", t, &node_names));
            };
            if !spec.kind.trains() {
                return Err(g.err(target.span(), key(k),
                    format!("`{t}` is a `{}` node; `{k}` needs a training node (batch-train or stream-train)", spec.kind.name())));
            }
            Ok(Some(spec))
        };
        if training("on-new-version", &rn.on_new_version)?.is_some() {
            deps.insert(
                rn.on_new_version
                    .as_ref()
                    .expect("checked")
                    .get_ref()
                    .clone(),
            );
        }
        let model = training("model", &rn.model)?;
        let warm = training("warm-start", &rn.warm_start)?;
        let source_ref = |v: &Option<S>| -> Result<()> {
            if let Some(s) = v {
                if !wf.sources.contains_key(s.get_ref()) {
                    return Err(g.dangling(
                        s.span(),
                        key("source"),
                        "source",
                        s.get_ref(),
                        &source_names,
                    ));
                }
            }
            Ok(())
        };
        match &spec.kind {
            NodeKind::BatchTrain(t) | NodeKind::StreamTrain(t) => {
                source_ref(&rn.source)?;
                let Some(f) = wf.features.get(&t.features) else {
                    return Err(g.dangling(
                        at(&rn.features),
                        key("features"),
                        "feature pipeline",
                        &t.features,
                        &feature_names,
                    ));
                };
                if t.processes.is_some()
                    && !matches!(wf.sources.get(&t.source), Some(SourceSpec::Kafka { .. }))
                {
                    return Err(g.loc.error(
                        rn.processes.as_ref().map_or(name.span(), Spanned::span),
                        key("processes"),
                        format!(
                            "worker processes split a Kafka topic's partitions; source `{}` is \
                             not a topic",
                            t.source
                        ),
                        Some("read a `kind = \"kafka\"` source, or drop `processes`".into()),
                    ));
                }
                if let Some(SourceSpec::DelayedLabels(_)) = wf.sources.get(&t.source) {
                    if f.label != eddy_core::join::LABEL {
                        return Err(g.loc.error(at(&rn.features), key("features"),
                            format!("source `{}` labels its rows in the column `{}`, but features `{}` learn from `{}`", t.source, eddy_core::join::LABEL, t.features, f.label),
                            Some(format!("set `label = \"{}\"` in [features.{}]", eddy_core::join::LABEL, t.features))));
                    }
                }
                if t.learner.is_clustering() && !f.dense {
                    return Err(g.loc.error(
                        at(&rn.learner),
                        key("learner"),
                        format!(
                            "`{}` clusters dense vectors, but features `{}` are hashed",
                            t.learner.name(),
                            t.features
                        ),
                        Some(format!("set `dense = true` in [features.{}]", t.features)),
                    ));
                }
                if !t.learner.is_clustering() && f.dense && !f.categorical.is_empty() {
                    return Err(g.err(
                        at(&rn.learner),
                        key("learner"),
                        "dense features take numeric columns only",
                    ));
                }
                if t.learner.densifies_hashed() && !f.dense && f.hash_bits > 12 {
                    return Err(g.loc.error(at(&rn.learner), key("learner"),
                        format!("linfa's `{}` densifies its input, and features `{}` have 2^{} hashed columns", t.learner, t.features, f.hash_bits),
                        Some(format!("set `hash-bits = 12` or less in [features.{}], or use an online learner", t.features))));
                }
                if let Some(w) = warm {
                    let Some(wt) = w.kind.train() else { continue };
                    if wt.learner.is_clustering() != t.learner.is_clustering() {
                        return Err(g.err(
                            at(&rn.warm_start),
                            key("warm-start"),
                            format!(
                                "type mismatch: `{}` ({}) cannot warm-start `{}` ({})",
                                w.name,
                                wt.learner.name(),
                                n,
                                t.learner.name()
                            ),
                        ));
                    }
                    if wt.features != t.features {
                        return Err(g.err(at(&rn.warm_start), key("warm-start"),
                            format!("`{}` uses features `{}` but `{n}` uses `{}`; a warm start needs the same features", w.name, wt.features, t.features)));
                    }
                    if w.name == *n {
                        return Err(g.err(
                            at(&rn.warm_start),
                            key("warm-start"),
                            "a node cannot warm-start from itself",
                        ));
                    }
                    deps.insert(w.name.clone());
                }
            }
            NodeKind::Evaluate(e) => {
                source_ref(&rn.source)?;
                if let Some(SourceSpec::DelayedLabels(_)) = wf.sources.get(&e.source) {
                    return Err(g.loc.error(at(&rn.source), key("source"),
                        format!("`{}` is a delayed-labels source; a gate scores a labelled holdout read as it is", e.source),
                        Some("use a file, ctr or kafka source whose rows carry their label".into())));
                }
                let Some(m) = model else { continue };
                let Some(mt) = m.kind.train() else { continue };
                if mt.learner.is_clustering()
                    && (e.min_auc.is_some() || e.max_logloss.is_some() || e.min_accuracy.is_some())
                {
                    let k = if e.min_auc.is_some() {
                        "min-auc"
                    } else if e.max_logloss.is_some() {
                        "max-logloss"
                    } else {
                        "min-accuracy"
                    };
                    return Err(g.err(name.span(), key(k),
                        format!("type mismatch: `{}` is a clustering model ({}); `{k}` scores classifiers", m.name, mt.learner.name())));
                }
                if let Some(v) = &spec.triggers.on_new_version {
                    if *v != e.model {
                        return Err(g.err(at(&rn.on_new_version), key("on-new-version"),
                            format!("the gate scores versions of `{}`, but is triggered by versions of `{v}`", e.model)));
                    }
                }
                if spec.triggers == Default::default() {
                    deps.insert(e.model.clone());
                }
            }
            NodeKind::Deploy(d) => {
                if spec.triggers == Default::default() {
                    deps.insert(d.model.clone());
                }
            }
            NodeKind::Serve(_) => {
                // name the trigger key that is there (and point at it)
                let given = [
                    (
                        "on-new-version",
                        rn.on_new_version.as_ref().map(Spanned::span),
                    ),
                    ("every", rn.every.as_ref().map(Spanned::span)),
                    ("cron", rn.cron.as_ref().map(Spanned::span)),
                ]
                .into_iter()
                .find_map(|(k, at)| at.map(|at| (k, at)));
                if let Some((k, at)) = given {
                    return Err(g.err(at, key(k),
                        "a `serve` node runs once and follows new versions itself; give it `after` only"));
                }
            }
            NodeKind::Command(_) => {}
        }
        if spec.triggers.schedule.is_some() && matches!(spec.kind, NodeKind::StreamTrain(_)) {
            let (k, at) = match (&rn.every, &rn.cron) {
                (Some(e), _) => ("every", e.span()),
                (None, Some(c)) => ("cron", c.span()),
                (None, None) => ("every", name.span()),
            };
            return Err(g.err(
                at,
                key(k),
                "a `stream-train` node runs once over its source; schedule a `batch-train` instead",
            ));
        }
    }

    // cycles (Kahn's algorithm; what is left over is on or behind a cycle)
    let mut indegree: BTreeMap<&str, usize> =
        edges.iter().map(|(n, d)| (n.as_str(), d.len())).collect();
    let mut order: Vec<String> = Vec::new();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (m, deps) in &edges {
        for d in deps {
            dependents.entry(d.as_str()).or_default().push(m.as_str());
        }
    }
    // the ready node that comes first by name runs first: a deterministic order
    let mut ready: BTreeSet<&str> = indegree
        .iter()
        .filter(|(_, &d)| d == 0)
        .map(|(n, _)| *n)
        .collect();
    while let Some(n) = ready.pop_first() {
        order.push(n.to_string());
        for &m in dependents.get(n).map_or(&[][..], Vec::as_slice) {
            let d = indegree.get_mut(m).expect("every node has an entry");
            *d -= 1;
            if *d == 0 {
                ready.insert(m);
            }
        }
    }
    if order.len() < edges.len() {
        let stuck: BTreeSet<&str> = indegree
            .iter()
            .filter(|(_, &d)| d > 0)
            .map(|(n, _)| *n)
            .collect();
        let cycle = find_cycle(&edges, &stuck);
        let first = cycle.first().cloned().unwrap_or_default();
        let (name, _) = raw_node(&first).expect("node came from raw");
        let mut path = cycle.clone();
        path.push(first.clone());
        return Err(g.loc.error(
            name.span(),
            format!("nodes.{first}"),
            format!("the nodes form a cycle: {}", path.join(" → ")),
            Some("remove one of the `after`, `on-new-version` or `warm-start` edges".into()),
        ));
    }
    let mut by_name: BTreeMap<String, NodeSpec> = nodes
        .into_iter()
        .map(|(n, s)| (n.into_inner(), s))
        .collect();
    wf.nodes = order.iter().filter_map(|n| by_name.remove(n)).collect();
    Ok(())
}

/// A cycle among `stuck` nodes, as a path of names (following dependencies).
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>, stuck: &BTreeSet<&str>) -> Vec<String> {
    let Some(&start) = stuck.iter().next() else {
        return Vec::new();
    };
    let mut path: Vec<String> = vec![start.to_string()];
    let mut cur = start.to_string();
    loop {
        let next = edges[&cur]
            .iter()
            .find(|d| stuck.contains(d.as_str()))
            .cloned();
        let Some(next) = next else { return path };
        if let Some(pos) = path.iter().position(|p| *p == next) {
            return path.split_off(pos);
        }
        path.push(next.clone());
        cur = next;
    }
}

/// A `delayed-labels` source joins two existing plain sources (not itself, not another join).
fn delayed_labels_sources(
    g: &Graph<'_>,
    raw: &RawWorkflow,
    wf: &Workflow,
    source_names: &[&str],
) -> Result<()> {
    for (name, src) in &raw.sources {
        let Some(SourceSpec::DelayedLabels(d)) = wf.sources.get(name.get_ref()) else {
            continue;
        };
        let rs = src.get_ref();
        let sides = [
            ("impressions", &d.impressions, &rs.impressions),
            ("clicks", &d.clicks, &rs.clicks),
        ];
        for (k, target, at) in sides {
            let at = at.as_ref().map_or(name.span(), Spanned::span);
            let key = format!("sources.{}.{k}", name.get_ref());
            match wf.sources.get(target) {
                None => return Err(g.dangling(at, key, "source", target, source_names)),
                Some(SourceSpec::DelayedLabels(_)) => {
                    return Err(g.err(
                        at,
                        key,
                        format!("`{target}` is a delayed-labels source; a delayed-labels source joins two plain sources"),
                    ))
                }
                Some(_) if k == "clicks" && *target == d.impressions => {
                    return Err(g.err(
                        at,
                        key,
                        format!("`{target}` is the impressions source too; clicks come from another source"),
                    ))
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

//! `eddy validate WORKFLOW.toml`: checks a workflow spec without running it; prints the nodes
//! in the order they can run, or the first error with its line, column and hint.

use std::path::PathBuf;

use clap::Args;
use eddy_workflow::spec::{NodeKind, Workflow};

/// Arguments of `eddy validate`.
#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    /// The workflow spec (TOML).
    pub workflow: PathBuf,
}

/// One line per node: name, kind and what triggers it.
pub fn describe(wf: &Workflow) -> Vec<String> {
    wf.nodes
        .iter()
        .map(|n| {
            let mut when = Vec::new();
            let waits = wf.waits_for(n);
            if !waits.is_empty() {
                when.push(format!("after {}", waits.join(", ")));
            }
            if let Some(v) = &n.triggers.on_new_version {
                when.push(format!("on each new version of {v}"));
            }
            match &n.triggers.schedule {
                Some(eddy_workflow::spec::Schedule::Every(d)) => when.push(format!("every {d:?}")),
                Some(eddy_workflow::spec::Schedule::Cron(c)) => when.push(format!("cron `{c}`")),
                None => {}
            }
            if when.is_empty() {
                when.push("at the start".into());
            }
            let what = match &n.kind {
                NodeKind::BatchTrain(t) | NodeKind::StreamTrain(t) => {
                    format!("{} on {}", t.learner.name(), t.source)
                }
                NodeKind::Evaluate(e) => format!("gate {} on {}", e.model, e.source),
                NodeKind::Deploy(d) => format!("{} → {:?}", d.model, d.stage),
                NodeKind::Serve(s) => format!("{} on {}", s.model, s.address),
                NodeKind::Command(c) => c.program.clone(),
            };
            format!(
                "  {:<16} {:<13} {:<28} {}",
                n.name,
                n.kind.name(),
                what,
                when.join("; ")
            )
        })
        .collect()
}

/// Runs `eddy validate`.
pub fn run(args: ValidateArgs) -> anyhow::Result<()> {
    let wf = Workflow::load(&args.workflow)?;
    println!(
        "{}: workflow `{}` is valid: {} sources, {} feature pipelines, {} nodes",
        args.workflow.display(),
        wf.name,
        wf.sources.len(),
        wf.features.len(),
        wf.nodes.len()
    );
    for line in describe(&wf) {
        println!("{line}");
    }
    Ok(())
}

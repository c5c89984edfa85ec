//! `eddy status RUN_DIR`: what a run did — each node's state, runs, rows, metrics and the
//! versions it published — and every model version in the run's registry with its stage. A
//! running training node's note shows its failover counters and its source's lag (`lag N`:
//! the messages a Kafka source has not read yet) as last reported.
//!
//! `eddy status CHECKPOINT_DIR` of `eddy learn --processes N` shows the supervisor's status
//! file instead, while the job runs and after: per worker its pid, restarts, rows replayed and
//! lost, recovery times and its peers' throughput while it was down, and (exactly-once) the
//! job-wide epochs the job rolled back to.

use std::path::PathBuf;

use clap::Args;
use eddy_workflow::runner::{registry_of, RunState};
use eddy_workflow::train::supervise::{SupervisorStatus, STATUS_FILE};

/// Arguments of `eddy status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The run directory (`eddy run --run-dir`), or the checkpoint directory of `eddy learn
    /// --processes N`.
    pub run_dir: PathBuf,
    /// Print the run state as JSON instead.
    #[arg(long)]
    pub json: bool,
}

/// The node table of a run state, one line per node.
pub fn node_lines(state: &RunState) -> Vec<String> {
    let mut out = vec![format!(
        "  {:<16} {:<11} {:>4} {:>9} {:<10} {:<28} {}",
        "node", "state", "runs", "rows", "versions", "metrics", "note"
    )];
    for (name, n) in &state.nodes {
        let versions = match n.versions.as_slice() {
            [] => n
                .last_version
                .map(|v| format!("→v{v}"))
                .unwrap_or_else(|| "-".into()),
            [v] => format!("v{v}"),
            [first, .., last] => format!("v{first}..v{last}"),
        };
        let metrics = ["auc", "logloss", "accuracy", "train_auc", "train_logloss"]
            .iter()
            .filter_map(|k| n.metrics.get(*k).map(|v| format!("{k} {v:.3}")))
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let mut note = n
            .error
            .clone()
            .or_else(|| n.message.clone())
            .unwrap_or_default();
        if let Some(restarts) = n.metrics.get("restarts") {
            let count = |k: &str| n.metrics.get(k).copied().unwrap_or(0.0);
            note = format!(
                "restarts {restarts}, lost {}, replayed {}; {note}",
                count("records_lost"),
                count("records_replayed")
            );
        }
        if let Some(lag) = n.metrics.get("source_lag") {
            note = format!("lag {lag}; {note}");
        }
        if let Some(pos) = n.metrics.get("labels_positive") {
            // a delayed-labels source: its label tally (delays in ms of event time)
            let count = |k: &str| n.metrics.get(k).copied().unwrap_or(0.0);
            note = format!(
                "labels +{pos} -{}, delay mean {}ms max {}ms, late {}; {note}",
                count("labels_negative"),
                count("label_delay_mean_ms"),
                count("label_delay_max_ms"),
                count("late_impressions") + count("late_clicks")
            );
        }
        out.push(format!(
            "  {:<16} {:<11} {:>4} {:>9} {:<10} {:<28} {}",
            name,
            n.status.word(),
            n.runs,
            n.rows,
            versions,
            metrics,
            note
        ));
    }
    out
}

/// The table of a supervised job's workers (`eddy learn --processes N`), one line per worker.
pub fn worker_lines(status: &SupervisorStatus) -> Vec<String> {
    let mut out = vec![format!(
        "  {:<7} {:>8} {:>8} {:>9} {:>9} {:>7} {:<24} {}",
        "worker",
        "pid",
        "restarts",
        "replayed",
        "lost",
        "rows",
        "recovery ms",
        "peers' rows/s during/before"
    )];
    let list = |v: &[f64], digits: usize| -> String {
        match v {
            [] => "-".into(),
            v => v
                .iter()
                .map(|x| format!("{x:.digits$}"))
                .collect::<Vec<_>>()
                .join(","),
        }
    };
    for w in &status.workers {
        out.push(format!(
            "  {:<7} {:>8} {:>8} {:>9} {:>9} {:>7} {:<24} {}",
            w.worker,
            w.pid.map_or_else(|| "-".into(), |p| p.to_string()),
            w.restarts,
            w.records_replayed,
            w.records_lost,
            w.rows.max(w.rows_trained),
            list(&w.recovery_ms, 0),
            list(&w.peer_ratio, 2)
        ));
    }
    out
}

/// Prints a supervised job's status (`<checkpoint dir>/supervisor.json`).
fn print_supervised(status: &SupervisorStatus, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(status)?);
        return Ok(());
    }
    println!(
        "job of {} worker processes (supervisor pid {}): {}, {:.1} s{}",
        status.workers.len(),
        status.pid,
        if status.running { "running" } else { "ended" },
        status.seconds,
        match status.rollbacks.as_slice() {
            [] => String::new(),
            epochs => format!(", exactly-once, started from epochs {epochs:?}"),
        }
    );
    for line in worker_lines(status) {
        println!("{line}");
    }
    Ok(())
}

/// Runs `eddy status`.
pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let state = RunState::load(&args.run_dir)?;
    let supervised = SupervisorStatus::read(&args.run_dir.join(STATUS_FILE))?;
    let state = match (state, supervised) {
        (Some(state), _) => state,
        (None, Some(status)) => return print_supervised(&status, args.json),
        (None, None) => anyhow::bail!(
            "{} holds no run (no state.json) and no supervised job (no {STATUS_FILE})",
            args.run_dir.display()
        ),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&state)?);
        return Ok(());
    }
    println!(
        "run of `{}` ({}): {}, started {} time(s)",
        state.workflow,
        state.spec.display(),
        if state.finished {
            "finished"
        } else {
            "not finished"
        },
        state.starts
    );
    for line in node_lines(&state) {
        println!("{line}");
    }
    let registry = registry_of(&args.run_dir)?;
    for model in registry.models()? {
        println!("model `{model}`:");
        for v in registry.versions(&model)? {
            let metrics = v
                .metrics
                .iter()
                .filter(|(k, _)| ["auc", "logloss", "train_auc"].contains(&k.as_str()))
                .map(|(k, x)| format!("{k} {x:.3}"))
                .collect::<Vec<_>>()
                .join(" ");
            println!(
                "  v{:<4} {:<11} rows {:<9} {}",
                v.version,
                serde_json::to_value(v.stage)?.as_str().unwrap_or("?"),
                v.training_rows,
                metrics
            );
        }
    }
    if let Some(url) = &state.serving {
        println!("served at {url}");
    }
    Ok(())
}

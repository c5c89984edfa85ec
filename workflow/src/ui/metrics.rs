//! The one Prometheus renderer of a process's figures ([`render`]) — `/metrics` of `eddy run`,
//! `eddy learn --ui`, `eddy ps serve --ui`, `eddy serve` and `eddy ui` — and the parser the
//! dashboard's sampler reads it back with ([`parse`]).
//!
//! | source | families |
//! |---|---|
//! | model server | `eddy_serving_*`, `eddy_http_connections_*` ([`crate::serving::http::render_metrics`]) |
//! | training jobs | `eddy_job_*_total{job}` (restarts, records lost/replayed, checkpoints), `eddy_job_source_lag`, `eddy_job_last_checkpoint_{seconds,bytes}`, `eddy_operator_{records_in,records_out}_total{job,operator}`, `eddy_operator_{busy,backpressure}_seconds_total{job,operator}`, `eddy_train_rows_total{job}`, `eddy_train_versions_total{job}`, `eddy_train_metric{job,metric}` |
//! | workflow run | `eddy_node_rows{node}`, `eddy_node_attempts{node}`, `eddy_node_runs_total{node}`, `eddy_node_state{node,state}`, `eddy_node_metric{node,metric}` |
//! | registry | `eddy_registry_versions{model}`, `eddy_registry_production_version{model}` |
//! | PS shard | `eddy_ps_updates_applied_total`, `eddy_ps_{push,pull}_requests_total`, `eddy_ps_table_rows{table}`, `eddy_ps_table_weight_bytes{table}`, `eddy_ps_snapshot_age_seconds` |
//!
//! Names follow the Prometheus conventions: `_total` for counters, base units (`_seconds`,
//! `_bytes`) in the name, one `# HELP`/`# TYPE` header per family.

use std::fmt::Write;

use eddy_core::metrics::JobBoard;

use super::{now_ms, Dashboard};
use crate::runner::NodeStatus;

/// Every node status, as `eddy_node_state` labels them.
const STATES: [NodeStatus; 7] = [
    NodeStatus::Pending,
    NodeStatus::Running,
    NodeStatus::Retrying,
    NodeStatus::Succeeded,
    NodeStatus::Failed,
    NodeStatus::Interrupted,
    NodeStatus::Skipped,
];

/// Appends every figure of `d`'s sources to `out` in the Prometheus text format (0.0.4).
pub fn render(d: &Dashboard, out: &mut String) {
    if let Some(serving) = &d.serving {
        crate::serving::http::render_metrics(serving, out);
    }
    if let Some(jobs) = &d.jobs {
        jobs.render_prometheus(out);
    }
    render_trainings(d, out);
    render_run(d, out);
    render_registry(d, out);
    render_ps(d, out);
}

/// Writes a family header.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value with backslash, double quote and newline escaped.
fn esc(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render_trainings(d: &Dashboard, out: &mut String) {
    if d.trainings.is_empty() {
        return;
    }
    let board = JobBoard::default();
    for t in &d.trainings {
        board.watch(&t.name, &t.metrics);
    }
    board.render_prometheus(out);
    let ops: Vec<_> = d
        .trainings
        .iter()
        .map(|t| (esc(&t.name), t.metrics.snapshot()))
        .collect();
    type Pick = fn(&eddy_core::metrics::OperatorSummary) -> f64;
    let families: [(&str, &str, Pick); 4] = [
        (
            "eddy_operator_records_in_total",
            "Records an operator received.",
            |o| o.records_in as f64,
        ),
        (
            "eddy_operator_records_out_total",
            "Records an operator emitted.",
            |o| o.records_out as f64,
        ),
        (
            "eddy_operator_busy_seconds_total",
            "Time spent inside an operator, summed over its subtasks.",
            |o| o.busy.as_secs_f64(),
        ),
        (
            "eddy_operator_backpressure_seconds_total",
            "Time an operator's tasks waited for room on a full output channel.",
            |o| o.backpressure.as_secs_f64(),
        ),
    ];
    for (name, help, pick) in families {
        header(out, name, "counter", help);
        for (job, summaries) in &ops {
            for o in summaries {
                let op = esc(&o.operator);
                let _ = writeln!(out, "{name}{{job=\"{job}\",operator=\"{op}\"}} {}", pick(o));
            }
        }
    }
    header(
        out,
        "eddy_job_last_checkpoint_seconds",
        "gauge",
        "How long the last completed checkpoint took.",
    );
    let lasts: Vec<_> = d
        .trainings
        .iter()
        .filter_map(|t| Some((esc(&t.name), t.metrics.job().checkpoints().pop()?)))
        .collect();
    for (job, c) in &lasts {
        let _ = writeln!(
            out,
            "eddy_job_last_checkpoint_seconds{{job=\"{job}\"}} {}",
            c.duration.as_secs_f64()
        );
    }
    header(
        out,
        "eddy_job_last_checkpoint_bytes",
        "gauge",
        "Bytes the last completed checkpoint wrote.",
    );
    for (job, c) in &lasts {
        let _ = writeln!(
            out,
            "eddy_job_last_checkpoint_bytes{{job=\"{job}\"}} {}",
            c.bytes
        );
    }
    header(
        out,
        "eddy_train_rows_total",
        "counter",
        "Rows predicted, then learned.",
    );
    for t in &d.trainings {
        let _ = writeln!(
            out,
            "eddy_train_rows_total{{job=\"{}\"}} {}",
            esc(&t.name),
            t.feed.rows()
        );
    }
    header(
        out,
        "eddy_train_versions_total",
        "counter",
        "Model versions published.",
    );
    for t in &d.trainings {
        let _ = writeln!(
            out,
            "eddy_train_versions_total{{job=\"{}\"}} {}",
            esc(&t.name),
            t.feed.versions()
        );
    }
    header(
        out,
        "eddy_train_metric",
        "gauge",
        "Progressive validation metrics at the last published version.",
    );
    for t in &d.trainings {
        for (metric, v) in t.feed.metrics() {
            let _ = writeln!(
                out,
                "eddy_train_metric{{job=\"{}\",metric=\"{}\"}} {v}",
                esc(&t.name),
                esc(&metric)
            );
        }
    }
}

fn render_run(d: &Dashboard, out: &mut String) {
    let Some(state) = d.run_state() else {
        return;
    };
    let nodes: Vec<_> = state.nodes.iter().map(|(n, s)| (esc(n), s)).collect();
    header(
        out,
        "eddy_node_rows",
        "gauge",
        "Rows read by a node's current or last run.",
    );
    for (n, s) in &nodes {
        let _ = writeln!(out, "eddy_node_rows{{node=\"{n}\"}} {}", s.rows);
    }
    header(
        out,
        "eddy_node_attempts",
        "gauge",
        "Attempts of a node's current or last run.",
    );
    for (n, s) in &nodes {
        let _ = writeln!(out, "eddy_node_attempts{{node=\"{n}\"}} {}", s.attempts);
    }
    header(
        out,
        "eddy_node_runs_total",
        "counter",
        "Completed runs of a node.",
    );
    for (n, s) in &nodes {
        let _ = writeln!(out, "eddy_node_runs_total{{node=\"{n}\"}} {}", s.runs);
    }
    header(
        out,
        "eddy_node_state",
        "gauge",
        "1 for a node's current state, 0 for the others.",
    );
    for (n, s) in &nodes {
        for st in STATES {
            let v = u8::from(s.status == st);
            let _ = writeln!(
                out,
                "eddy_node_state{{node=\"{n}\",state=\"{}\"}} {v}",
                st.word()
            );
        }
    }
    header(
        out,
        "eddy_node_metric",
        "gauge",
        "A node's metrics: progressive metrics of training, holdout metrics of a gate.",
    );
    for (n, s) in &nodes {
        for (metric, v) in &s.metrics {
            let _ = writeln!(
                out,
                "eddy_node_metric{{node=\"{n}\",metric=\"{}\"}} {v}",
                esc(metric)
            );
        }
    }
}

fn render_registry(d: &Dashboard, out: &mut String) {
    let Some(registry) = &d.registry else {
        return;
    };
    let models = registry.models().unwrap_or_default();
    let rows: Vec<_> = models
        .iter()
        .map(|m| {
            let versions = registry.versions(m).unwrap_or_default();
            let production = versions
                .iter()
                .filter(|v| v.stage == crate::registry::Stage::Production)
                .map(|v| v.version)
                .max();
            (esc(m), versions.len(), production)
        })
        .collect();
    header(
        out,
        "eddy_registry_versions",
        "gauge",
        "Versions a model has in the registry.",
    );
    for (m, n, _) in &rows {
        let _ = writeln!(out, "eddy_registry_versions{{model=\"{m}\"}} {n}");
    }
    header(
        out,
        "eddy_registry_production_version",
        "gauge",
        "A model's newest production version.",
    );
    for (m, _, p) in &rows {
        if let Some(p) = p {
            let _ = writeln!(out, "eddy_registry_production_version{{model=\"{m}\"}} {p}");
        }
    }
}

fn render_ps(d: &Dashboard, out: &mut String) {
    let Some(ps) = &d.ps else {
        return;
    };
    let s = ps.read();
    let shard = format!("shard=\"{}\"", s.shard);
    for (name, help, v) in [
        (
            "eddy_ps_updates_applied_total",
            "Key updates the shard applied.",
            s.applied,
        ),
        (
            "eddy_ps_push_requests_total",
            "Push requests the shard received.",
            s.pushes,
        ),
        (
            "eddy_ps_pull_requests_total",
            "Pull requests the shard received.",
            s.pulls,
        ),
    ] {
        header(out, name, "counter", help);
        let _ = writeln!(out, "{name}{{{shard}}} {v}");
    }
    header(
        out,
        "eddy_ps_table_rows",
        "gauge",
        "Rows (keys) a table holds on the shard.",
    );
    for t in &s.tables {
        let _ = writeln!(
            out,
            "eddy_ps_table_rows{{{shard},table=\"{}\"}} {}",
            esc(&t.name),
            t.rows
        );
    }
    header(
        out,
        "eddy_ps_table_weight_bytes",
        "gauge",
        "Bytes of a table's weights on the shard (rows x dim x 4; optimizer state not counted).",
    );
    for t in &s.tables {
        let _ = writeln!(
            out,
            "eddy_ps_table_weight_bytes{{{shard},table=\"{}\"}} {}",
            esc(&t.name),
            t.rows * t.dim * 4
        );
    }
    if let Some(at) = s.last_snapshot_ms {
        header(
            out,
            "eddy_ps_snapshot_age_seconds",
            "gauge",
            "Seconds since the shard last wrote a snapshot file.",
        );
        let age = now_ms().saturating_sub(at) as f64 / 1000.0;
        let _ = writeln!(out, "eddy_ps_snapshot_age_seconds{{{shard}}} {age}");
    }
}

/// The samples of a Prometheus text: `(series, value)`, the series as written
/// (`name{labels}`), comments and malformed lines skipped.
pub fn parse(text: &str) -> Vec<(&str, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            // the value follows the last space (label values may hold spaces)
            let (series, value) = l.rsplit_once(' ')?;
            Some((series, value.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_samples_and_skips_comments_and_junk() {
        let text = "# HELP a x\n# TYPE a counter\na{job=\"j k\"} 3\nb 0.5\nnot a sample\nc NaN\n";
        let s = parse(text);
        assert_eq!(s[0], ("a{job=\"j k\"}", 3.0));
        assert_eq!(s[1], ("b", 0.5));
        assert_eq!(s.len(), 3);
        assert!(s[2].1.is_nan());
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

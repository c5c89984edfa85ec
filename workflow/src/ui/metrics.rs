//! The one Prometheus renderer of a process's figures ([`render`]) — `/metrics` of `eddy run`,
//! `eddy learn --ui`, `eddy ps serve --ui`, `eddy serve` and `eddy ui` — and the parser the
//! dashboard's sampler reads it back with ([`parse`]).
//!
//! | source | families |
//! |---|---|
//! | model server | `eddy_serving_*`, `eddy_http_connections_*` (the server's own `/metrics` without its jobs; a run's serve nodes labelled `node`) |
//! | training jobs | `eddy_job_*_total{job}` (restarts, records lost/replayed, checkpoints), `eddy_job_source_lag`, `eddy_job_last_checkpoint_{seconds,bytes}`, `eddy_operator_{records_in,records_out}_total{job,operator}`, `eddy_operator_{busy,backpressure}_seconds_total{job,operator}`; with a feed (`eddy learn`) `eddy_train_rows_total{job}`, `eddy_train_versions_total{job}`, `eddy_train_metric{job,metric}` |
//! | workflow run | `eddy_node_rows{node}`, `eddy_node_attempts{node}`, `eddy_node_runs_total{node}`, `eddy_node_state{node,state}`, `eddy_node_metric{node,metric}` |
//! | registry | `eddy_registry_versions{model}`, `eddy_registry_production_version{model}` |
//! | PS shard | `eddy_ps_updates_applied_total`, `eddy_ps_{push,pull}_requests_total`, `eddy_ps_table_rows{table}`, `eddy_ps_table_bytes{table}`, `eddy_ps_snapshot_age_seconds` |
//!
//! Names follow the Prometheus conventions: `_total` for counters, base units (`_seconds`,
//! `_bytes`) in the name, one `# HELP`/`# TYPE` header per family.

use std::fmt::Write;

use eddy_core::metrics::{JobBoard, MetricsRegistry};

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
    render_servers(d, out);
    render_jobs(d, out);
    render_feeds(d, out);
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

/// The model servers' figures: one server as its own `/metrics` renders them (its jobs are
/// rendered with the others'), several (a run's serve nodes) merged per family with a
/// `node` label.
fn render_servers(d: &Dashboard, out: &mut String) {
    let Some(servers) = &d.servers else {
        return;
    };
    let mut labelled = Vec::new();
    for (node, s) in servers.list() {
        let mut text = String::with_capacity(4096);
        s.metrics().render(&mut text);
        s.render_model_metrics(&mut text);
        match node {
            None => out.push_str(&text),
            Some(n) => labelled.push((format!("node=\"{}\"", esc(&n)), text)),
        }
    }
    merge_labelled(&labelled, out);
}

/// Appends the families of several Prometheus texts, each family once (its `# HELP` and
/// `# TYPE` from the first text that has it), every sample of a text with that text's label
/// (`name="value"`) added first.
fn merge_labelled(texts: &[(String, String)], out: &mut String) {
    // family name, header lines, sample lines
    let mut families: Vec<(&str, String, String)> = Vec::new();
    for (label, text) in texts {
        let mut at: Option<(usize, bool)> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or(rest);
                at = Some(match families.iter().position(|f| f.0 == name) {
                    Some(i) => (i, false),
                    None => {
                        families.push((name, String::new(), String::new()));
                        (families.len() - 1, true)
                    }
                });
            }
            let Some((i, fresh)) = at else {
                continue;
            };
            if line.starts_with('#') {
                if fresh {
                    families[i].1.push_str(line);
                    families[i].1.push('\n');
                }
                continue;
            }
            let samples = &mut families[i].2;
            match line.find(['{', ' ']) {
                Some(cut) if line[cut..].starts_with("{}") => {
                    let _ = writeln!(samples, "{}{{{label}}}{}", &line[..cut], &line[cut + 2..]);
                }
                Some(cut) if line[cut..].starts_with('{') => {
                    let _ = writeln!(samples, "{}{{{label},{}", &line[..cut], &line[cut + 1..]);
                }
                Some(cut) => {
                    let _ = writeln!(samples, "{}{{{label}}}{}", &line[..cut], &line[cut..]);
                }
                None => {}
            }
        }
    }
    for (_, header, samples) in families {
        out.push_str(&header);
        out.push_str(&samples);
    }
}

/// Every job shown: the jobs board's (a run's training nodes) and the trainings' (`eddy
/// learn`), by name.
fn jobs(d: &Dashboard) -> Vec<(String, MetricsRegistry)> {
    let mut jobs = d.jobs.as_ref().map(|b| b.registries()).unwrap_or_default();
    jobs.extend(
        d.trainings
            .iter()
            .map(|t| (t.name.clone(), t.metrics.clone())),
    );
    jobs
}

/// The jobs' counters, source lags and gauges, their operators' records, busy and
/// backpressure time, and their last checkpoint.
fn render_jobs(d: &Dashboard, out: &mut String) {
    let jobs = jobs(d);
    if jobs.is_empty() {
        return;
    }
    let board = JobBoard::default();
    for (name, metrics) in &jobs {
        board.watch(name, metrics);
    }
    board.render_prometheus(out);
    let ops: Vec<_> = jobs
        .iter()
        .map(|(name, m)| (esc(name), m.snapshot()))
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
    let lasts: Vec<_> = jobs
        .iter()
        .filter_map(|(name, m)| Some((esc(name), m.job().checkpoints().pop()?)))
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
}

/// The rows, versions and progressive metrics of the trainings with a feed (`eddy learn`; a
/// run's nodes show theirs as `eddy_node_*`).
fn render_feeds(d: &Dashboard, out: &mut String) {
    if d.trainings.is_empty() {
        return;
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
        "eddy_ps_table_bytes",
        "gauge",
        "Bytes of a table's rows on the shard: weights and update-rule state, rows x dim x \
         (1 + state floats) x 4 (the hash map's own overhead not counted).",
    );
    for t in &s.tables {
        let _ = writeln!(
            out,
            "eddy_ps_table_bytes{{{shard},table=\"{}\"}} {}",
            esc(&t.name),
            table_bytes(t)
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

/// Bytes of a PS table's rows: weights and update-rule state (`f32` each).
pub fn table_bytes(t: &eddy_ps::grpc::PsTableStats) -> u64 {
    t.rows * t.dim * (1 + t.state_len) * 4
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
    fn merging_labels_every_sample_and_writes_each_family_once() {
        let a = "# HELP x_total X.\n# TYPE x_total counter\nx_total{p=\"h\"} 1\n\
                 # HELP g G.\n# TYPE g gauge\ng 2\n";
        let b = "# HELP x_total X.\n# TYPE x_total counter\nx_total{p=\"h\"} 3\n";
        let mut out = String::new();
        merge_labelled(
            &[
                ("node=\"a\"".into(), a.into()),
                ("node=\"b\"".into(), b.into()),
            ],
            &mut out,
        );
        assert_eq!(
            out,
            "# HELP x_total X.\n# TYPE x_total counter\n\
             x_total{node=\"a\",p=\"h\"} 1\nx_total{node=\"b\",p=\"h\"} 3\n\
             # HELP g G.\n# TYPE g gauge\ng{node=\"a\"} 2\n"
        );
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

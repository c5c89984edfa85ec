//! Per-operator metrics: records in and out, batches, busy time, time blocked by backpressure;
//! the sources' progress and lag gauges; the summary printed when a job ends; and the job
//! counters and source lags in the Prometheus text format.
//!
//! **Source lag.** A source that can see how far its input reaches beyond its position (the
//! Kafka source: its partitions' log ends) reports the records in between through its
//! [`Progress`] gauge ([`Progress::set_lag`]); a source that cannot leaves it unmeasured.
//! [`MetricsRegistry::source_lags`] sums the gauges per source operator over its subtasks, and
//! a [`JobBoard`] shows them as `eddy_job_source_lag{job="…",source="…"}`.
//!
//! **Job-owned metrics.** What a job's owner measures beyond the runtime (a training job's
//! label counts and delays) it reports with [`JobMetrics::report`], saying whether the figure
//! is a cumulative count or a gauge; a [`JobBoard`] shows a count as the counter
//! `eddy_job_<name>_total{job="…"}` and a gauge as `eddy_job_<name>{job="…"}`, following the
//! Prometheus naming conventions (base units in the name: `_seconds`, not ms).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Counters of one operator subtask, updated by the runtime with relaxed atomics.
#[derive(Debug, Default)]
pub struct OperatorMetrics {
    /// Records received.
    pub records_in: AtomicU64,
    /// Records emitted on the main output.
    pub records_out: AtomicU64,
    /// Records emitted on side outputs.
    pub records_side: AtomicU64,
    /// Batches received.
    pub batches_in: AtomicU64,
    /// Nanoseconds spent inside the operator's hooks.
    pub busy_ns: AtomicU64,
    /// Nanoseconds the task waited for room on a full output channel.
    pub backpressure_ns: AtomicU64,
}

impl OperatorMetrics {
    #[inline]
    pub(crate) fn add(counter: &AtomicU64, v: u64) {
        counter.fetch_add(v, Ordering::Relaxed);
    }
}

/// Progress of one source subtask: units done out of a known total (bytes for files), and its
/// lag when the source measures one.
#[derive(Debug, Default)]
pub struct Progress {
    /// Units done.
    pub done: AtomicU64,
    /// Units in all; 0 when unknown (unbounded).
    pub total: AtomicU64,
    /// The lag plus one; 0 while unmeasured.
    lag: AtomicU64,
    /// The source operator whose lag this is (labels the gauge), set by the first report.
    source: OnceLock<Arc<str>>,
}

impl Progress {
    /// Reports the records between the source's position and the end of its input now
    /// (consumer lag, for Kafka), for the source operator `source`. Cheap: an atomic store.
    pub fn set_lag(&self, source: &Arc<str>, lag: u64) {
        self.source.get_or_init(|| source.clone());
        self.lag.store(lag.saturating_add(1), Ordering::Relaxed);
    }

    /// The last reported lag; `None` when the source has not measured one.
    pub fn lag(&self) -> Option<u64> {
        self.lag.load(Ordering::Relaxed).checked_sub(1)
    }

    /// The source operator and its subtask's lag, when measured.
    fn source_lag(&self) -> Option<(&str, u64)> {
        Some((self.source.get()?, self.lag()?))
    }
}

/// Per source operator (in order of first report), the sum of its subtasks' measured lags.
fn sum_lags(progress: &[Arc<Progress>]) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for (source, lag) in progress.iter().filter_map(|p| p.source_lag()) {
        match out.iter_mut().find(|(s, _)| s == source) {
            Some((_, sum)) => *sum += lag,
            None => out.push((source.to_string(), lag)),
        }
    }
    out
}

/// What one completed checkpoint cost.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CheckpointStats {
    /// The checkpoint.
    pub epoch: u64,
    /// From the trigger to the checkpoint written to the store.
    pub duration: Duration,
    /// Bytes of operator state and in-flight data written.
    pub bytes: u64,
    /// Longest time a task spent aligning barriers for it.
    pub alignment: Duration,
    /// Bytes of in-flight data (overtaken by unaligned barriers) persisted with it.
    pub inflight_bytes: u64,
    /// Whether any task took its snapshot unaligned.
    pub unaligned: bool,
    /// Tasks recorded as finished (their input ended before the checkpoint, FLIP-147).
    pub finished_tasks: usize,
    /// The final checkpoint of a job whose every task finished: it commits the two-phase
    /// sinks, no task took a snapshot for it.
    pub job_finished: bool,
}

/// One job counter as `/metrics` shows it: name, help text, value.
type Counter = (&'static str, &'static str, u64);

/// How a job owner's own figure is exposed on `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A cumulative count that only grows: the counter `eddy_job_<name>_total`.
    Counter,
    /// A value that may go up and down: the gauge `eddy_job_<name>`.
    Gauge,
}

/// One figure a job's owner reports ([`JobMetrics::report`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OwnedMetric {
    /// The name without the `eddy_job_` prefix or the `_total` suffix, in base units
    /// (`label_delay_mean_seconds`).
    pub name: &'static str,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// The current value.
    pub value: f64,
}

/// Job-wide failover and checkpoint counters.
#[derive(Debug, Default)]
pub struct JobMetrics {
    /// Task restarts (a whole-job restart in exactly-once mode counts once).
    pub restarts: AtomicU64,
    /// Input rows that will never reach the sinks because of a failure (approximate failover;
    /// see [`failover`](crate::dataflow::failover) for what is counted).
    pub records_lost: AtomicU64,
    /// Rows processed twice: sent again by a source task restarted alone (approximate
    /// failover).
    pub records_replayed: AtomicU64,
    /// Completed checkpoints, oldest first.
    pub checkpoints: Mutex<Vec<CheckpointStats>>,
    /// Checkpoints that failed: timed out, or their write failed.
    pub checkpoints_failed: AtomicU64,
    /// Of those, the ones that timed out.
    pub checkpoints_timed_out: AtomicU64,
    /// Figures the job's owner reports beyond the runtime's counters (a training job's label
    /// counts), in order of first report: see [`report`](Self::report).
    owned: Mutex<Vec<OwnedMetric>>,
}

impl JobMetrics {
    /// The completed checkpoints so far.
    pub fn checkpoints(&self) -> Vec<CheckpointStats> {
        self.checkpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sets the owner's figure `metric.name` to `metric.value` (`/metrics` shows a
    /// [`MetricKind::Counter`] as `eddy_job_<name>_total{job="…"}`, a gauge as
    /// `eddy_job_<name>{job="…"}`, with `metric.help`).
    pub fn report(&self, metric: OwnedMetric) {
        let mut owned = self.owned.lock().unwrap_or_else(|p| p.into_inner());
        match owned.iter_mut().find(|m| m.name == metric.name) {
            Some(m) => m.value = metric.value,
            None => owned.push(metric),
        }
    }

    /// The owner's figures reported so far, in order of first report.
    pub fn owned(&self) -> Vec<OwnedMetric> {
        self.owned.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The job's counters: (name, help, value), as `/metrics` shows them.
    fn counters(&self) -> [Counter; 6] {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let completed = self
            .checkpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len() as u64;
        [
            (
                "restarts",
                "Task restarts by the failover supervisor.",
                load(&self.restarts),
            ),
            (
                "records_lost",
                "Input rows that will never reach the sinks because of a failure.",
                load(&self.records_lost),
            ),
            (
                "records_replayed",
                "Rows processed twice, sent again by a restarted source task.",
                load(&self.records_replayed),
            ),
            ("checkpoints", "Completed checkpoints.", completed),
            (
                "checkpoints_failed",
                "Checkpoints that timed out or whose write failed.",
                load(&self.checkpoints_failed),
            ),
            (
                "checkpoints_timed_out",
                "Checkpoints that timed out.",
                load(&self.checkpoints_timed_out),
            ),
        ]
    }

    /// Appends the job's failover and checkpoint counters to `out` in the Prometheus text
    /// format (version 0.0.4), labelled `job="<job>"`. Several jobs on one endpoint go
    /// through a [`JobBoard`], which writes each metric family once.
    pub fn render_prometheus(&self, job: &str, out: &mut String) {
        JobBoard::render(&[(job, self, &[])], out);
    }
}

/// The running jobs of a process whose counters a `/metrics` endpoint shows (`eddy run`'s
/// server shows its workflow's training jobs), by name, with their sources' lags. A job
/// watched again under the same name (a retried node) replaces the old one.
#[derive(Debug, Default)]
pub struct JobBoard {
    jobs: Mutex<Vec<Watched>>,
}

/// One job on a [`JobBoard`]: its name and metrics (operators, job counters, source progress).
type Watched = (String, MetricsRegistry);

impl JobBoard {
    /// Shows the counters and source lags of the job with `metrics` under `name` from now on.
    pub fn watch(&self, name: &str, metrics: &MetricsRegistry) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.retain(|(n, _)| n != name);
        jobs.push((name.to_string(), metrics.clone()));
    }

    /// The jobs shown with their whole metrics (operators included), in the order they were
    /// first watched: what a dashboard renders its per-operator figures from.
    pub fn registries(&self) -> Vec<(String, MetricsRegistry)> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.iter().map(|(n, m)| (n.clone(), m.clone())).collect()
    }

    /// The names of the jobs shown, in the order they were first watched.
    pub fn names(&self) -> Vec<String> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Appends every job's counters to `out` in the Prometheus text format (version 0.0.4):
    /// one `# HELP`/`# TYPE` header per metric, one sample per job labelled `job="<name>"`;
    /// then the gauge `eddy_job_source_lag`, one sample per job and source that measures its
    /// lag, labelled `job` and `source` (written only when there is one).
    pub fn render_prometheus(&self, out: &mut String) {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let jobs: Vec<(&str, &JobMetrics, &[Arc<Progress>])> = jobs
            .iter()
            .map(|(n, m)| (n.as_str(), &*m.job, m.progress.as_slice()))
            .collect();
        Self::render(&jobs, out);
    }

    fn render(jobs: &[(&str, &JobMetrics, &[Arc<Progress>])], out: &mut String) {
        use std::fmt::Write;
        let Some((_, first, _)) = jobs.first() else {
            return;
        };
        let samples: Vec<(String, [Counter; 6])> = jobs
            .iter()
            .map(|(name, m, _)| (escape_label(name), m.counters()))
            .collect();
        for (k, (name, help, _)) in first.counters().iter().enumerate() {
            // writing to a String cannot fail
            let _ = writeln!(
                out,
                "# HELP eddy_job_{name}_total {help}\n# TYPE eddy_job_{name}_total counter"
            );
            for (job, counters) in &samples {
                let _ = writeln!(
                    out,
                    "eddy_job_{name}_total{{job=\"{job}\"}} {}",
                    counters[k].2
                );
            }
        }
        Self::render_owned(jobs, out);
        let lags: Vec<(String, Vec<(String, u64)>)> = jobs
            .iter()
            .map(|(name, _, progress)| (escape_label(name), sum_lags(progress)))
            .filter(|(_, lags)| !lags.is_empty())
            .collect();
        if lags.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "# HELP eddy_job_source_lag Records between a source's position and the end of its \
             input (Kafka: consumer lag), summed over its subtasks.\n\
             # TYPE eddy_job_source_lag gauge"
        );
        for (job, lags) in &lags {
            for (source, lag) in lags {
                let source = escape_label(source);
                let _ = writeln!(
                    out,
                    "eddy_job_source_lag{{job=\"{job}\",source=\"{source}\"}} {lag}"
                );
            }
        }
    }
}

impl JobBoard {
    /// The figures the jobs' owners reported ([`JobMetrics::report`]): one family per name,
    /// one sample per job that reported it.
    fn render_owned(jobs: &[(&str, &JobMetrics, &[Arc<Progress>])], out: &mut String) {
        use std::fmt::Write;
        let owned: Vec<(String, Vec<OwnedMetric>)> = jobs
            .iter()
            .map(|(name, m, _)| (escape_label(name), m.owned()))
            .collect();
        let mut families: Vec<OwnedMetric> = Vec::new();
        for m in owned.iter().flat_map(|(_, o)| o) {
            if !families.iter().any(|f| f.name == m.name) {
                families.push(*m);
            }
        }
        for f in families {
            let (family, kind) = match f.kind {
                MetricKind::Counter => (format!("eddy_job_{}_total", f.name), "counter"),
                MetricKind::Gauge => (format!("eddy_job_{}", f.name), "gauge"),
            };
            let _ = writeln!(out, "# HELP {family} {}\n# TYPE {family} {kind}", f.help);
            for (job, o) in &owned {
                if let Some(m) = o.iter().find(|m| m.name == f.name) {
                    let _ = writeln!(out, "{family}{{job=\"{job}\"}} {}", m.value);
                }
            }
        }
    }
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Every operator subtask of a job, by registration order.
#[derive(Debug, Default, Clone)]
pub struct MetricsRegistry {
    pub(crate) entries: Vec<(Arc<str>, usize, Arc<OperatorMetrics>)>,
    pub(crate) progress: Vec<Arc<Progress>>,
    pub(crate) job: Arc<JobMetrics>,
}

impl MetricsRegistry {
    /// The counters of `operator[subtask]`, created on first use (a restarted task keeps its
    /// counters).
    pub(crate) fn register(&mut self, operator: Arc<str>, subtask: usize) -> Arc<OperatorMetrics> {
        if let Some((_, _, m)) = self
            .entries
            .iter()
            .find(|(o, s, _)| *s == subtask && **o == *operator)
        {
            return m.clone();
        }
        let m = Arc::new(OperatorMetrics::default());
        self.entries.push((operator, subtask, m.clone()));
        m
    }

    /// Job-wide counters: restarts, records lost, checkpoint statistics.
    pub fn job(&self) -> &JobMetrics {
        &self.job
    }

    /// The counters of one operator subtask, if it exists.
    pub fn subtask(&self, operator: &str, subtask: usize) -> Option<&OperatorMetrics> {
        self.entries
            .iter()
            .find(|(o, s, _)| *s == subtask && &**o == operator)
            .map(|(_, _, m)| &**m)
    }

    /// Sum over the sources' progress gauges: (done, total); total 0 when unknown.
    pub fn progress(&self) -> (u64, u64) {
        self.progress.iter().fold((0, 0), |(d, t), p| {
            (
                d + p.done.load(Ordering::Relaxed),
                t + p.total.load(Ordering::Relaxed),
            )
        })
    }

    /// The measured lag of each source operator, summed over its subtasks (see
    /// [`Progress::set_lag`]); empty when no source measures one.
    pub fn source_lags(&self) -> Vec<(String, u64)> {
        sum_lags(&self.progress)
    }

    /// The sum of [`source_lags`](Self::source_lags); `None` when no source measures its lag.
    pub fn lag(&self) -> Option<u64> {
        let lags = self.source_lags();
        (!lags.is_empty()).then(|| lags.iter().map(|(_, l)| l).sum())
    }

    /// Totals per operator (subtasks summed), in the order operators were added.
    pub fn snapshot(&self) -> Vec<OperatorSummary> {
        let mut out: Vec<OperatorSummary> = Vec::new();
        for (name, _, m) in &self.entries {
            let idx = match out.iter().position(|s| *s.operator == **name) {
                Some(i) => i,
                None => {
                    out.push(OperatorSummary {
                        operator: name.to_string(),
                        ..Default::default()
                    });
                    out.len() - 1
                }
            };
            let s = &mut out[idx];
            s.subtasks += 1;
            s.records_in += m.records_in.load(Ordering::Relaxed);
            s.records_out += m.records_out.load(Ordering::Relaxed);
            s.records_side += m.records_side.load(Ordering::Relaxed);
            s.batches_in += m.batches_in.load(Ordering::Relaxed);
            s.busy += Duration::from_nanos(m.busy_ns.load(Ordering::Relaxed));
            s.backpressure += Duration::from_nanos(m.backpressure_ns.load(Ordering::Relaxed));
        }
        out
    }
}

/// Totals of one operator over its subtasks.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct OperatorSummary {
    /// Operator name.
    pub operator: String,
    /// Number of subtasks.
    pub subtasks: usize,
    /// Records received.
    pub records_in: u64,
    /// Records emitted on the main output.
    pub records_out: u64,
    /// Records emitted on side outputs.
    pub records_side: u64,
    /// Batches received.
    pub batches_in: u64,
    /// Time inside the operator, summed over subtasks.
    pub busy: Duration,
    /// Time blocked on full output channels, summed over subtasks.
    pub backpressure: Duration,
}

/// What a finished job reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobSummary {
    /// The job name.
    pub name: String,
    /// Wall-clock run time.
    pub elapsed: Duration,
    /// Per-operator totals.
    pub operators: Vec<OperatorSummary>,
    /// Malformed records sent to the dead-letter sink.
    pub dead_letters: u64,
    /// The dead-letter file, when one was configured.
    pub dead_letter_path: Option<std::path::PathBuf>,
    /// Task restarts by the failover supervisor.
    pub restarts: u64,
    /// Input rows that will never reach the sinks because of a failure (approximate failover).
    pub records_lost: u64,
    /// Rows processed twice, sent again by a restarted source task (approximate failover).
    pub records_replayed: u64,
    /// Completed checkpoints and what each cost.
    pub checkpoints: Vec<CheckpointStats>,
    /// Checkpoints that failed (timed out, or their write failed).
    pub checkpoints_failed: u64,
    /// Of those, the ones that timed out.
    pub checkpoints_timed_out: u64,
}

impl JobSummary {
    /// The totals of one operator, by name.
    pub fn operator(&self, name: &str) -> Option<&OperatorSummary> {
        self.operators.iter().find(|o| o.operator == name)
    }
}

impl fmt::Display for JobSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "job `{}` finished in {:.3}s",
            self.name,
            self.elapsed.as_secs_f64()
        )?;
        let w = self
            .operators
            .iter()
            .map(|o| o.operator.chars().count())
            .max()
            .unwrap_or(0)
            .clamp(8, 48);
        writeln!(
            f,
            "  {:<w$} {:>4} {:>12} {:>12} {:>9} {:>10} {:>10}",
            "operator", "par", "records in", "records out", "batches", "busy", "blocked"
        )?;
        for o in &self.operators {
            writeln!(
                f,
                "  {:<w$} {:>4} {:>12} {:>12} {:>9} {:>9.3}s {:>9.3}s",
                o.operator,
                o.subtasks,
                o.records_in,
                o.records_out + o.records_side,
                o.batches_in,
                o.busy.as_secs_f64(),
                o.backpressure.as_secs_f64()
            )?;
        }
        if self.restarts > 0 || self.records_lost > 0 || self.records_replayed > 0 {
            writeln!(
                f,
                "  restarts: {}, records lost: {}, records replayed: {}",
                self.restarts, self.records_lost, self.records_replayed
            )?;
        }
        if let Some(last) = self.checkpoints.last() {
            let n = self.checkpoints.len();
            let max = self
                .checkpoints
                .iter()
                .map(|c| c.duration)
                .max()
                .unwrap_or_default();
            writeln!(
                f,
                "  checkpoints: {n} (last {} took {:.3}s, {} bytes, {} in flight; slowest {:.3}s)",
                last.epoch,
                last.duration.as_secs_f64(),
                last.bytes,
                last.inflight_bytes,
                max.as_secs_f64()
            )?;
        }
        if self.checkpoints_failed > 0 {
            writeln!(
                f,
                "  checkpoints failed: {} ({} timed out)",
                self.checkpoints_failed, self.checkpoints_timed_out
            )?;
        }
        match (&self.dead_letter_path, self.dead_letters) {
            (_, 0) => writeln!(f, "  malformed records: 0"),
            (Some(p), n) => writeln!(f, "  malformed records: {n} (see {})", p.display()),
            (None, n) => writeln!(f, "  malformed records: {n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_metrics_render_once_per_family_as_counters_or_gauges() {
        let (a, b) = (MetricsRegistry::default(), MetricsRegistry::default());
        let positives = |value| OwnedMetric {
            name: "labels_positive",
            help: "Positives.",
            kind: MetricKind::Counter,
            value,
        };
        a.job().report(positives(3.0));
        a.job().report(positives(4.0));
        b.job().report(OwnedMetric {
            name: "label_delay_mean_seconds",
            help: "Mean delay.",
            kind: MetricKind::Gauge,
            value: 0.25,
        });
        let board = JobBoard::default();
        board.watch("a", &a);
        board.watch("b", &b);
        let mut out = String::new();
        board.render_prometheus(&mut out);
        assert_eq!(
            out.matches("# TYPE eddy_job_labels_positive_total counter\n")
                .count(),
            1,
            "{out}"
        );
        assert!(
            out.contains("eddy_job_labels_positive_total{job=\"a\"} 4\n"),
            "{out}"
        );
        assert!(!out.contains("labels_positive_total{job=\"b\"}"), "{out}");
        assert!(
            out.contains("# TYPE eddy_job_label_delay_mean_seconds gauge\n"),
            "{out}"
        );
        assert!(
            out.contains("eddy_job_label_delay_mean_seconds{job=\"b\"} 0.25\n"),
            "{out}"
        );
    }

    #[test]
    fn job_counters_render_as_prometheus_text_with_an_escaped_job_label() {
        let m = JobMetrics::default();
        m.records_lost.store(12, Ordering::SeqCst);
        m.records_replayed.store(5, Ordering::SeqCst);
        let mut out = String::new();
        m.render_prometheus("train \"a\"", &mut out);
        assert!(
            out.contains("# TYPE eddy_job_records_lost_total counter\n"),
            "{out}"
        );
        assert!(
            out.contains("eddy_job_records_lost_total{job=\"train \\\"a\\\"\"} 12\n"),
            "{out}"
        );
        assert!(
            out.contains("eddy_job_records_replayed_total{job=\"train \\\"a\\\"\"} 5\n"),
            "{out}"
        );
        assert_eq!(out.lines().filter(|l| !l.starts_with('#')).count(), 6);
    }

    #[test]
    fn a_board_writes_each_family_once_with_a_sample_per_job() {
        let (a, b) = (MetricsRegistry::default(), MetricsRegistry::default());
        b.job.restarts.store(2, Ordering::SeqCst);
        let board = JobBoard::default();
        board.watch("a", &a);
        board.watch("b", &b);
        // a retried node replaces its old job
        board.watch("a", &MetricsRegistry::default());
        assert_eq!(board.names(), ["b", "a"]);
        let mut out = String::new();
        board.render_prometheus(&mut out);
        assert_eq!(
            out.matches("# TYPE eddy_job_restarts_total counter")
                .count(),
            1
        );
        assert!(
            out.contains("eddy_job_restarts_total{job=\"b\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("eddy_job_restarts_total{job=\"a\"} 0\n"),
            "{out}"
        );
        assert_eq!(out.lines().filter(|l| !l.starts_with('#')).count(), 12);
    }

    #[test]
    fn source_lags_are_summed_per_source_and_shown_as_one_gauge_family() {
        let mut a = MetricsRegistry::default();
        let kafka: Arc<str> = Arc::from("kafka \"clicks\"");
        let files: Arc<str> = Arc::from("files");
        for _ in 0..3 {
            a.progress.push(Arc::new(Progress::default()));
        }
        assert_eq!(a.lag(), None, "nothing measured yet");
        a.progress[0].set_lag(&kafka, 7);
        a.progress[1].set_lag(&kafka, 5);
        // the third subtask (a file source, say) measures nothing
        assert_eq!(a.source_lags(), [("kafka \"clicks\"".to_string(), 12)]);
        a.progress[2].set_lag(&files, 0);
        assert_eq!(a.lag(), Some(12));
        let board = JobBoard::default();
        board.watch("train", &a);
        board.watch("idle", &MetricsRegistry::default());
        let mut out = String::new();
        board.render_prometheus(&mut out);
        assert_eq!(out.matches("# TYPE eddy_job_source_lag gauge\n").count(), 1);
        assert!(
            out.contains("eddy_job_source_lag{job=\"train\",source=\"kafka \\\"clicks\\\"\"} 12\n"),
            "{out}"
        );
        assert!(
            out.contains("eddy_job_source_lag{job=\"train\",source=\"files\"} 0\n"),
            "{out}"
        );
        assert!(!out.contains("job=\"idle\",source"), "{out}");
        // a lag going down is a gauge, not a counter
        a.progress[0].set_lag(&kafka, 0);
        a.progress[1].set_lag(&kafka, 0);
        let mut out = String::new();
        board.render_prometheus(&mut out);
        assert!(
            out.contains("source=\"kafka \\\"clicks\\\"\"} 0\n"),
            "{out}"
        );
        // no source measures a lag: no family at all
        let mut out = String::new();
        JobMetrics::default().render_prometheus("x", &mut out);
        assert!(!out.contains("source_lag"), "{out}");
    }
}

//! What the supervisor counts per worker from its protocol lines and exits: restarts, rows
//! trained twice (replayed), recovery times, and the peers' throughput while a worker was
//! down.
//!
//! **Replay.** A worker's `rows` count resumes from its checkpoint, so when incarnation k+1
//! restores `r` rows and incarnation k had said `rows = s` last, the rows `r..s` of its
//! stream are trained again: `s − r` are replayed. Nothing is lost across a process restart
//! (the worker re-reads its partitions from the checkpointed offsets); a restart with no
//! checkpoint yet restores 0 rows and replays all `s`. Rows of a micro-batch whose pushes
//! were under way at the kill but not yet reported are trained once more without being
//! counted: a batch counts as trained when the worker reports it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::protocol::WorkerLine;

/// One outage of a worker: its process exited at `exit` and trained again at `recovered`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Outage {
    pub exit: Instant,
    pub recovered: Option<Instant>,
}

/// A worker's running account.
#[derive(Debug, Default)]
pub(super) struct Account {
    /// The last `rows` of the current incarnation (`None` before its first line of rows).
    last: Option<u64>,
    /// The last `rows` of the previous incarnation, until the current one says where it
    /// resumed.
    previous: Option<u64>,
    /// Whether the current incarnation has reported trained rows.
    trained: bool,
    /// Rows trained by every incarnation together, with when: (time, total) per report.
    pub samples: Vec<(Instant, u64)>,
    total: u64,
    pub restarts: u64,
    pub replayed: u64,
    /// The rows the first process restored (a job resumed from its workers' checkpoints).
    pub started_from: u64,
    /// Per restart, the rows the new process resumed from (0: no checkpoint yet).
    pub resumed: Vec<u64>,
    pub outages: Vec<Outage>,
    pub finished: Option<WorkerLine>,
    pub pid: Option<u32>,
}

/// The most throughput samples kept per worker (the oldest half is thinned beyond it).
const MAX_SAMPLES: usize = 1 << 16;

impl Account {
    /// Takes one protocol line of the current incarnation, received at `at`.
    pub fn on_line(&mut self, line: WorkerLine, at: Instant) {
        match line {
            WorkerLine::Started { pid, .. } => self.pid = Some(pid),
            WorkerLine::Restored { rows } => self.resume(rows),
            WorkerLine::Rows { rows } => {
                if self.last.is_none() {
                    // no checkpoint restored: this incarnation started from row 0 of its input
                    self.resume(0);
                }
                let before = self.last.unwrap_or(0);
                self.total += rows.saturating_sub(before);
                self.last = Some(rows);
                self.trained = true;
                self.sample(at);
                if let Some(o) = self.outages.last_mut().filter(|o| o.recovered.is_none()) {
                    o.recovered = Some(at);
                }
            }
            finished @ WorkerLine::Finished { .. } => self.finished = Some(finished),
        }
    }

    /// The current incarnation resumed at `rows` (only its first restore counts: a later one
    /// is an in-process restart the worker reports itself).
    fn resume(&mut self, rows: u64) {
        if self.last.is_some() {
            return;
        }
        if let Some(previous) = self.previous.take() {
            self.replayed += previous.saturating_sub(rows);
            self.resumed.push(rows);
        } else if self.restarts == 0 {
            self.started_from = rows;
        }
        self.last = Some(rows);
    }

    fn sample(&mut self, at: Instant) {
        if self.samples.len() >= MAX_SAMPLES {
            let half = self.samples.len() / 2;
            let thinned: Vec<_> = self.samples[..half].iter().copied().step_by(2).collect();
            self.samples.splice(..half, thinned);
        }
        self.samples.push((at, self.total));
    }

    /// Whether the current process has reported trained rows.
    pub fn training(&self) -> bool {
        self.trained
    }

    /// The current process exited at `at` and will be started again.
    pub fn on_restart(&mut self, at: Instant) {
        self.restarts += 1;
        self.trained = false;
        // an incarnation that never trained leaves the previous one's count standing
        if let Some(last) = self.last.take() {
            self.previous = Some(last);
        }
        self.pid = None;
        self.outages.push(Outage {
            exit: at,
            recovered: None,
        });
    }

    /// Rows trained by all incarnations together at `t` (the last report before it).
    fn total_at(&self, t: Instant) -> u64 {
        let i = self.samples.partition_point(|(at, _)| *at <= t);
        if i == 0 {
            0
        } else {
            self.samples[i - 1].1
        }
    }

    /// Rows per second between `from` and `to`.
    pub fn rate(&self, from: Instant, to: Instant) -> Option<f64> {
        let secs = to.checked_duration_since(from)?.as_secs_f64();
        (secs > 0.0).then(|| (self.total_at(to) - self.total_at(from)) as f64 / secs)
    }

    /// When this worker first trained.
    pub fn first_sample(&self) -> Option<Instant> {
        self.samples.first().map(|(t, _)| *t)
    }
}

/// The peers' rows/s while a worker was down over their rows/s in the equally long time
/// before (at most 2 s, at least 100 ms, never before a peer's first row); `None` when no
/// peer was training then.
pub(super) fn peer_ratio(accounts: &[Account], me: usize, outage: &Outage) -> Option<f64> {
    let end = outage.recovered?;
    let span = end.duration_since(outage.exit);
    let window = span.clamp(Duration::from_millis(100), Duration::from_secs(2));
    let (mut during, mut before) = (0.0, 0.0);
    let peers = accounts.iter().enumerate().filter(|(i, _)| *i != me);
    for (_, a) in peers {
        let Some(first) = a.first_sample() else {
            continue;
        };
        let from = outage.exit.checked_sub(window).unwrap_or(first).max(first);
        if let (Some(d), Some(b)) = (a.rate(outage.exit, end), a.rate(from, outage.exit)) {
            during += d;
            before += b;
        }
    }
    (before > 0.0).then(|| during / before)
}

/// What a supervised worker did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerReport {
    /// The worker's index.
    pub worker: usize,
    /// The process id of its last incarnation.
    pub pid: Option<u32>,
    /// Process restarts.
    pub restarts: u64,
    /// Rows trained twice across process restarts, plus the worker's own in-process replays.
    pub records_replayed: u64,
    /// Rows lost (in-process approximate restarts; a process restart loses none).
    pub records_lost: u64,
    /// The rows the worker's first process restored from its checkpoint (0: a fresh start;
    /// more: this job resumed a stopped or killed one).
    pub started_from: u64,
    /// Per restart: the rows of its checkpoint the new process resumed from (0: none).
    pub resumed_rows: Vec<u64>,
    /// Per restart: process exit → first trained row again, in milliseconds.
    pub recovery_ms: Vec<f64>,
    /// Per restart: the peers' rows/s while this worker was down over before.
    pub peer_ratio: Vec<f64>,
    /// Rows in the worker's final progressive evaluation.
    pub rows: u64,
    /// Rows trained by all of the worker's processes together: `rows − started_from +
    /// records_replayed` when nothing is lost (the accounting identity).
    pub rows_trained: u64,
    /// The worker's final progressive metrics.
    pub metrics: BTreeMap<String, f64>,
}

impl WorkerReport {
    /// The report of worker `worker` from its account.
    pub(super) fn new(worker: usize, accounts: &[Account]) -> WorkerReport {
        let a = &accounts[worker];
        let (rows, lost, replayed, metrics) = match &a.finished {
            Some(WorkerLine::Finished {
                rows,
                records_lost,
                records_replayed,
                metrics,
                ..
            }) => (*rows, *records_lost, *records_replayed, metrics.clone()),
            _ => (0, 0, 0, BTreeMap::new()),
        };
        let recovery_ms = a
            .outages
            .iter()
            .filter_map(|o| o.recovered.map(|r| (r - o.exit).as_secs_f64() * 1e3))
            .collect();
        let peer_ratio = a
            .outages
            .iter()
            .filter_map(|o| peer_ratio(accounts, worker, o))
            .collect();
        WorkerReport {
            worker,
            pid: a.pid,
            restarts: a.restarts,
            records_replayed: a.replayed + replayed,
            records_lost: lost,
            started_from: a.started_from,
            resumed_rows: a.resumed.clone(),
            recovery_ms,
            peer_ratio,
            rows,
            rows_trained: a.total,
            metrics,
        }
    }
}

/// Metrics that are means over rows, merged across workers weighted by their rows.
const MEAN_METRICS: [&str; 4] = ["logloss", "accuracy", "mae", "mse"];

/// The job's metrics: each of [`MEAN_METRICS`] as the row-weighted mean of the workers'.
pub(super) fn merged_metrics(workers: &[WorkerReport]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for name in MEAN_METRICS {
        let (mut sum, mut rows) = (0.0, 0u64);
        for w in workers {
            if let Some(v) = w.metrics.get(name) {
                sum += v * w.rows as f64;
                rows += w.rows;
            }
        }
        if rows > 0 {
            out.insert(name.to_string(), sum / rows as f64);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(a: &mut Account, n: u64, at: Instant) {
        a.on_line(WorkerLine::Rows { rows: n }, at);
    }

    #[test]
    fn replay_is_the_dead_processs_last_count_past_the_restored_one() {
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        let mut a = Account::default();
        a.on_line(WorkerLine::Restored { rows: 40 }, ms(0));
        rows(&mut a, 100, ms(1));
        rows(&mut a, 250, ms(2));
        a.on_restart(ms(3));
        a.on_line(WorkerLine::Restored { rows: 200 }, ms(4));
        // an in-process restore later in the same incarnation is not a process replay
        rows(&mut a, 300, ms(5));
        a.on_line(WorkerLine::Restored { rows: 280 }, ms(6));
        rows(&mut a, 400, ms(7));
        assert_eq!(a.replayed, 50);
        assert_eq!(a.resumed, [200]);
        assert_eq!(a.started_from, 40);
        assert_eq!(a.total, 210 + 100 + 100);
        assert_eq!(a.outages[0].recovered, Some(ms(5)));
        // a restart before any checkpoint replays everything the dead process trained
        a.on_restart(ms(8));
        a.on_restart(ms(9)); // died again before training anything
        rows(&mut a, 10, ms(10));
        assert_eq!(a.replayed, 50 + 400);
        assert_eq!(a.resumed, [200, 0]);
        assert_eq!(a.restarts, 3);
    }

    #[test]
    fn the_peer_ratio_compares_rows_per_second_during_and_before_an_outage() {
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        let mut peer = Account::default();
        // 1 row/ms for 1 s, then 0.5 rows/ms
        for i in 1..=1000 {
            rows(&mut peer, i, ms(i));
        }
        for i in 1..=500 {
            rows(&mut peer, 1000 + i, ms(1000 + 2 * i));
        }
        let outage = Outage {
            exit: ms(1000),
            recovered: Some(ms(1500)),
        };
        let accounts = [Account::default(), peer];
        let r = peer_ratio(&accounts, 0, &outage).unwrap();
        assert!((r - 0.5).abs() < 0.01, "{r}");
        assert_eq!(peer_ratio(&accounts, 1, &outage), None, "no peer trained");
    }
}

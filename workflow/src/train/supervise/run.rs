//! The supervisor's loop: start, watch, restart and stop the worker processes, reading their
//! protocol lines on one reader thread per process.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eddy_core::checkpoint::CheckpointStore;

use super::account::{merged_metrics, Account, WorkerReport};
use super::protocol::WorkerLine;
use super::status::SupervisorStatus;
use super::{SupervisorConfig, SupervisorEvent, SupervisorReport};
use crate::error::{Error, Result};

/// How often the loop looks at its processes when no line arrives.
const TICK: Duration = Duration::from_millis(2);

/// How often the status file is rewritten when nothing happens.
const STATUS_EVERY: Duration = Duration::from_millis(500);

/// A line from worker `.0`'s process, read at `.2`.
type Received = (usize, WorkerLine, Instant);

enum Slot {
    Running {
        child: Child,
        reader: JoinHandle<()>,
    },
    /// Down; restarts at the instant.
    Waiting(Instant),
    Done,
}

/// The supervisor's state (moved onto its thread by [`Supervisor::start`](super::Supervisor::start)).
pub(super) struct State {
    config: SupervisorConfig,
    slots: Vec<Slot>,
    accounts: Vec<Account>,
    /// Starts of each worker so far.
    incarnations: Vec<u32>,
    /// Restarts of each worker since it last trained (the backoff attempt).
    failing: Vec<u32>,
    lines: Receiver<Received>,
    sender: Sender<Received>,
    stop: Arc<AtomicBool>,
    /// When the workers were told to stop.
    stopping: Option<Instant>,
    pids: Arc<Mutex<Vec<Option<u32>>>>,
    started: Instant,
    /// Exactly-once: each worker's local checkpoint of the job-wide epoch it starts from
    /// (`--restore-epoch`; 0: the start of its input).
    restore: Vec<Option<u64>>,
    /// The epochs the job rolled back to (exactly-once).
    rollbacks: Vec<u64>,
    /// Which workers' processes exited 0 at the end of their input.
    finished: Vec<bool>,
    /// Something happened since the status file was last written.
    changed: std::cell::Cell<bool>,
    /// When the status file is written next regardless.
    status_due: Instant,
}

impl State {
    /// Starts every worker.
    pub(super) fn start(
        config: SupervisorConfig,
        stop: Arc<AtomicBool>,
        pids: Arc<Mutex<Vec<Option<u32>>>>,
    ) -> Result<State> {
        let n = config.workers.len();
        let (sender, lines) = mpsc::channel();
        let mut state = State {
            config,
            slots: (0..n).map(|_| Slot::Done).collect(),
            accounts: (0..n).map(|_| Account::default()).collect(),
            incarnations: vec![0; n],
            failing: vec![0; n],
            lines,
            sender,
            stop,
            stopping: None,
            pids,
            started: Instant::now(),
            restore: vec![None; n],
            rollbacks: Vec::new(),
            finished: vec![false; n],
            changed: std::cell::Cell::new(true),
            status_due: Instant::now(),
        };
        if let Some(recovery) = state.config.exactly_once.clone() {
            // every worker starts from the job-wide epoch its checkpoints agree on, the
            // shards rolled back to it (a fresh job: epoch 0)
            let cut = job_epoch(&recovery.checkpoint_dirs, &state.finished)?;
            (recovery.restore)(cut.epoch, &[])?;
            state.restore = cut.local;
            state.rollbacks.push(cut.epoch);
        }
        for w in 0..n {
            if let Err(e) = state.spawn(w) {
                state.kill_all();
                return Err(e);
            }
        }
        Ok(state)
    }

    /// Supervises until every worker is done; the report. The status file's last version says
    /// the job is over, whether it succeeded or failed.
    pub(super) fn run(&mut self) -> Result<SupervisorReport> {
        let result = self.supervise();
        self.write_status(false);
        result
    }

    fn supervise(&mut self) -> Result<SupervisorReport> {
        loop {
            self.receive(TICK);
            if self.changed.take() || Instant::now() >= self.status_due {
                self.write_status(true);
            }
            if self.stop.load(Ordering::SeqCst) && self.stopping.is_none() {
                self.begin_stop();
            }
            for w in 0..self.slots.len() {
                if let Err(e) = self.watch(w) {
                    self.kill_all();
                    return Err(e);
                }
            }
            if let Some(since) = self.stopping {
                if since.elapsed() > self.config.stop_grace {
                    self.kill_all();
                }
            }
            if self.slots.iter().all(|s| matches!(s, Slot::Done)) {
                break;
            }
        }
        self.drain();
        let workers: Vec<WorkerReport> = (0..self.slots.len())
            .map(|w| WorkerReport::new(w, &self.accounts))
            .collect();
        Ok(SupervisorReport {
            seconds: self.started.elapsed().as_secs_f64(),
            rows: workers.iter().map(|w| w.rows).sum(),
            metrics: merged_metrics(&workers),
            workers,
            rollbacks: self.rollbacks.clone(),
        })
    }

    /// Looks at worker `w`: collects an exited process, restarts a due one.
    fn watch(&mut self, w: usize) -> Result<()> {
        match &mut self.slots[w] {
            Slot::Running { child, .. } => {
                let status = child.try_wait().map_err(|e| Error::Worker {
                    worker: w,
                    message: format!("waiting for its process: {e}"),
                })?;
                if let Some(status) = status {
                    self.exited(w, status)?;
                }
            }
            Slot::Waiting(at) if *at <= Instant::now() => {
                if self.stopping.is_some() {
                    self.slots[w] = Slot::Done;
                } else {
                    self.spawn(w)?;
                }
            }
            Slot::Waiting(_) | Slot::Done => {}
        }
        Ok(())
    }

    /// Worker `w`'s process exited with `status`: done, or down until its restart.
    fn exited(&mut self, w: usize, status: ExitStatus) -> Result<()> {
        let exit = Instant::now();
        let pid = self.set_pid(w, None);
        if let Slot::Running { reader, .. } = std::mem::replace(&mut self.slots[w], Slot::Done) {
            // every line the process wrote before it died is in the pipe: read them all
            let _ = reader.join();
        }
        self.drain();
        if status.success() || self.stopping.is_some() {
            self.finished[w] = status.success() && self.stopping.is_none();
            self.emit(SupervisorEvent::Finished { worker: w });
            return Ok(());
        }
        if self.accounts[w].restarts >= self.config.max_restarts {
            return Err(Error::Worker {
                worker: w,
                message: format!(
                    "its process exited ({status}) after {} restarts; the job stops",
                    self.accounts[w].restarts
                ),
            });
        }
        let after = self.config.backoff.delay(self.failing[w]);
        self.failing[w] += 1;
        self.emit(SupervisorEvent::Died {
            worker: w,
            pid: pid.unwrap_or_default(),
            status: status.to_string(),
            after,
        });
        if self.config.exactly_once.is_some() {
            return self.roll_back(w, exit, after);
        }
        self.accounts[w].on_restart(exit);
        self.slots[w] = Slot::Waiting(exit + after);
        Ok(())
    }

    /// Exactly-once: worker `w`'s process died. Every other worker is killed, the shards
    /// roll back to the newest epoch every worker's checkpoints hold, and every worker whose
    /// work since that epoch was rolled back starts again from it, `after` the death at
    /// `exit`.
    fn roll_back(&mut self, w: usize, exit: Instant, after: Duration) -> Result<()> {
        let Some(recovery) = self.config.exactly_once.clone() else {
            return Ok(());
        };
        let mut down = vec![w];
        for v in 0..self.slots.len() {
            if let Slot::Running { child, .. } = &mut self.slots[v] {
                let _ = child.kill();
                let _ = child.wait();
                if let Slot::Running { reader, .. } =
                    std::mem::replace(&mut self.slots[v], Slot::Done)
                {
                    let _ = reader.join();
                }
                self.set_pid(v, None);
                down.push(v);
            }
        }
        self.drain();
        let cut = job_epoch(&recovery.checkpoint_dirs, &self.finished)?;
        let epoch = cut.epoch;
        // a worker that finished before the epoch has all its rows in it: it stays done
        let mut finished = Vec::new();
        for (v, done) in self.finished.iter_mut().enumerate() {
            if *done && cut.newest[v] < epoch {
                finished.push(v as u32);
            } else if *done {
                *done = false;
                down.push(v);
            }
        }
        for &v in &down {
            if cut.local[v].is_none() {
                return Err(Error::Worker {
                    worker: v,
                    message: format!(
                        "exactly-once: it has no checkpoint of job epoch {epoch} to roll back to"
                    ),
                });
            }
        }
        (recovery.restore)(epoch, &finished)?;
        self.restore = cut.local;
        self.rollbacks.push(epoch);
        down.sort_unstable();
        for &v in &down {
            self.accounts[v].on_restart(exit);
            self.slots[v] = Slot::Waiting(exit + after);
        }
        self.emit(SupervisorEvent::RolledBack {
            worker: w,
            epoch,
            restarting: down,
        });
        Ok(())
    }

    /// Starts worker `w`'s process and its reader thread.
    fn spawn(&mut self, w: usize) -> Result<()> {
        let command = &self.config.workers[w];
        let mut cmd = command.command();
        if let Some(local) = self.restore[w] {
            cmd.args(["--restore-epoch".to_string(), local.to_string()]);
        }
        let mut child = cmd.spawn().map_err(|e| Error::Worker {
            worker: w,
            message: format!("starting {}: {e}", command.program.display()),
        })?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Worker {
                worker: w,
                message: "its stdout is not a pipe".into(),
            });
        };
        let log = match &self.config.log_dir {
            Some(dir) => {
                let path = dir.join(format!("worker-{w}.jsonl"));
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|source| Error::Io { path, source });
                match file {
                    Ok(f) => Some(f),
                    Err(e) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(e);
                    }
                }
            }
            None => None,
        };
        let sender = self.sender.clone();
        let reader = std::thread::Builder::new()
            .name(format!("eddy-worker-{w}-out"))
            .spawn(move || read_lines(w, stdout, log, sender));
        let reader = match reader {
            Ok(r) => r,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Worker {
                    worker: w,
                    message: format!("starting its reader thread: {e}"),
                });
            }
        };
        let pid = child.id();
        self.set_pid(w, Some(pid));
        self.accounts[w].pid = Some(pid);
        self.emit(SupervisorEvent::Started {
            worker: w,
            pid,
            incarnation: self.incarnations[w],
        });
        self.incarnations[w] += 1;
        self.slots[w] = Slot::Running { child, reader };
        Ok(())
    }

    /// Takes the lines that arrive within `wait`.
    fn receive(&mut self, wait: Duration) {
        match self.lines.recv_timeout(wait) {
            Ok(r) => self.take(r),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => return,
        }
        self.drain();
    }

    /// Takes every line already received.
    fn drain(&mut self) {
        while let Ok(r) = self.lines.try_recv() {
            self.take(r);
        }
    }

    fn take(&mut self, (w, line, at): Received) {
        let trained = matches!(line, WorkerLine::Rows { .. });
        let first = trained && !self.accounts[w].training();
        let down = self.accounts[w]
            .outages
            .last()
            .filter(|o| o.recovered.is_none())
            .map(|o| o.exit);
        self.accounts[w].on_line(line, at);
        if first {
            self.emit(SupervisorEvent::Training {
                worker: w,
                incarnation: self.incarnations[w].saturating_sub(1),
            });
        }
        if trained {
            self.failing[w] = 0;
            if let Some(exit) = down {
                self.emit(SupervisorEvent::Recovered {
                    worker: w,
                    after: at.duration_since(exit),
                });
            }
        }
    }

    /// SIGTERM to every running worker; no restarts from now on.
    fn begin_stop(&mut self) {
        self.stopping = Some(Instant::now());
        for slot in &mut self.slots {
            match slot {
                Slot::Running { child, .. } => terminate(child),
                Slot::Waiting(_) => *slot = Slot::Done,
                Slot::Done => {}
            }
        }
    }

    /// SIGKILL to every running worker (a failed job, or a stop past its grace).
    fn kill_all(&mut self) {
        for slot in &mut self.slots {
            if let Slot::Running { child, .. } = slot {
                let _ = child.kill();
                let _ = child.wait();
            }
            *slot = Slot::Done;
        }
    }

    /// Records worker `w`'s pid (`None`: down); the previous one.
    fn set_pid(&self, w: usize, pid: Option<u32>) -> Option<u32> {
        let mut pids = self.pids.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut pids[w], pid)
    }

    /// Rewrites the status file (if one is configured); a failed write is retried at the next
    /// one (the status is for people, the job goes on).
    fn write_status(&mut self, running: bool) {
        self.status_due = Instant::now() + STATUS_EVERY;
        let Some(path) = &self.config.status_file else {
            return;
        };
        let status = SupervisorStatus {
            running,
            pid: std::process::id(),
            updated_unix_ms: super::status::unix_ms(),
            seconds: self.started.elapsed().as_secs_f64(),
            rollbacks: self.rollbacks.clone(),
            workers: (0..self.slots.len())
                .map(|w| WorkerReport::new(w, &self.accounts))
                .collect(),
        };
        if let Err(e) = status.write(path) {
            tracing::warn!(error = %e, "writing the supervisor's status");
        }
    }

    fn emit(&self, event: SupervisorEvent) {
        self.changed.set(true);
        if let Some(events) = &self.config.events {
            events(&event);
        }
    }
}

impl Drop for State {
    /// No worker outlives its supervisor.
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Reads worker `w`'s stdout to its end: protocol lines to the loop (and the log), any other
/// line to stderr.
fn read_lines(
    w: usize,
    stdout: std::process::ChildStdout,
    mut log: Option<std::fs::File>,
    sender: Sender<Received>,
) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let at = Instant::now();
        match WorkerLine::parse(&line) {
            Some(parsed) => {
                if let Some(f) = log.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                if sender.send((w, parsed, at)).is_err() {
                    break;
                }
            }
            None => eprintln!("[worker {w}] {line}"),
        }
    }
}

/// Where a job rolls back to (exactly-once): the job-wide epoch, the job epoch of each
/// worker's newest checkpoint, and each worker's local checkpoint of the epoch (0: the start
/// of its input; `None`: it has none).
struct Cut {
    epoch: u64,
    newest: Vec<u64>,
    local: Vec<Option<u64>>,
}

/// The job-wide epoch every worker can restore: the oldest of the job epochs of the newest
/// resumable checkpoints of the workers still running (`finished`: which exited at the end of
/// their input); 0 when one has none (see [`epochs`](super::epochs)).
fn job_epoch(dirs: &[std::path::PathBuf], finished: &[bool]) -> Result<Cut> {
    let mut newest = Vec::with_capacity(dirs.len());
    let mut maps = Vec::with_capacity(dirs.len());
    let mut checkpoints = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let (store, map) = if dir.is_dir() {
            (CheckpointStore::open(dir, 1)?, super::epochs::read(dir)?)
        } else {
            checkpoints.push(Vec::new());
            maps.push(Default::default());
            newest.push(0);
            continue;
        };
        let local = store.latest_resumable()?.map_or(0, |c| c.epoch.0);
        let job = match local {
            0 => 0,
            local => map
                .iter()
                .rev()
                .find(|(_, l)| **l == local)
                .map(|(e, _)| *e)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "{}: checkpoint {local} has no job epoch in {}",
                        dir.display(),
                        super::epochs::FILE
                    ))
                })?,
        };
        newest.push(job);
        checkpoints.push(store.list()?.into_iter().map(|e| e.0).collect::<Vec<_>>());
        maps.push(map);
    }
    let running = newest.iter().zip(finished).filter(|(_, f)| !**f);
    let epoch = running
        .map(|(e, _)| *e)
        .min()
        .unwrap_or_else(|| newest.iter().copied().max().unwrap_or(0));
    let local = maps
        .iter()
        .zip(&checkpoints)
        .map(|(map, have)| match epoch {
            0 => Some(0),
            e => map.get(&e).copied().filter(|l| have.contains(l)),
        })
        .collect();
    Ok(Cut {
        epoch,
        newest,
        local,
    })
}

/// Asks `child` to stop: SIGTERM (it checkpoints and exits 0).
fn terminate(child: &mut Child) {
    #[cfg(unix)]
    {
        let pid = i32::try_from(child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
    #[cfg(not(unix))]
    {
        let _ = child.kill();
    }
}

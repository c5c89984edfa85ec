//! `eddy worker`: one training process of a job of several, and `eddy learn --processes N`,
//! which runs N of them under a local supervisor.
//!
//! A worker is `eddy learn` at parallelism 1 with three differences:
//! - it reads only its own partitions of a Kafka topic: with `--worker-index I --workers N`,
//!   partition `p` is its when `p % N == I` (static membership: ownership never moves, so a
//!   restarting worker makes no peer pause for a rebalance);
//! - it trains the model held by running parameter-server shards (`--ps grpc://…`, every
//!   worker naming the same `--ps-job`), and its checkpoints (its own directory, default
//!   `<learn's default>/worker-I`) hold its source offsets, pipeline statistics and evaluator,
//!   not the model: restarted, it resumes from its offsets with the model as its peers left it;
//! - it speaks the supervisor's protocol on stdout, one JSON object a line
//!   ([`eddy_workflow::train::supervise::protocol`]), instead of printing a report: its start,
//!   the rows it restored, its rows after each micro-batch, and its final report.
//!
//! `eddy learn --processes N` starts N shards on loopback (unless `--ps` names running ones),
//! then N workers with the same flags, each with its index, the job id and its checkpoint
//! directory; it restarts a dead worker alone (with backoff), and on Ctrl-C or SIGTERM has
//! every worker take a last checkpoint and exit. It prints one JSON line: the merged progressive
//! metrics, and per worker its restarts, rows replayed and lost, recovery times (process exit →
//! first trained rows again) and its peers' rows/s while it was down over before, and keeps
//! the same in `<checkpoint dir>/supervisor.json` for `eddy status` while it runs.
//!
//! With `--failover exactly-once` a worker meets its peers at an epoch barrier at the shards at
//! every checkpoint and exits on any failure; the supervisor then rolls every shard and every
//! worker back to the last job-wide epoch (`--restore-epoch`, set by it). The design (process
//! model, identity, what is lost or replayed, the epoch protocol) is in
//! [`eddy_workflow::train::supervise`].

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use eddy_core::checkpoint::CheckpointStore;
use eddy_core::dataflow::FailoverMode;
use eddy_core::message::Epoch;
use eddy_ps::grpc::client::restore_job_epoch;
use eddy_workflow::train::supervise::{
    epochs, EpochRecovery, RestoreShards, Supervisor, SupervisorConfig, SupervisorEvent,
    SupervisorReport, WorkerCommand, WorkerLine, STATUS_FILE,
};
use eddy_workflow::train::{EpochBarrier, PsSpec, TrainEvent, TrainJob};

use super::io;
use super::learn::LearnArgs;

/// Arguments of `eddy worker`: `eddy learn`'s, plus the worker's index.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// This worker's index in the job, `0..N` with `--workers N` (the job's worker
    /// processes): it reads the partitions `p` of the topic with `p % N == index`.
    #[arg(long)]
    pub worker_index: usize,
    /// Exactly-once (set by the supervisor): start from this local checkpoint (the worker's
    /// checkpoint of the job-wide epoch the job rolls back to), newer ones discarded (0: from
    /// the start of its partitions, every checkpoint discarded). The shards were rolled back
    /// to the epoch before.
    #[arg(long)]
    pub restore_epoch: Option<u64>,
    /// The training flags, as for `eddy learn`.
    #[command(flatten)]
    pub learn: LearnArgs,
}

/// How long an exactly-once worker waits at the epoch barrier for its peers before it fails
/// (a peer that never reaches the epoch has died: the supervisor rolls the job back first).
const BARRIER_WAIT: Duration = Duration::from_secs(600);

/// Refuses what a worker cannot do, naming the flag.
fn check(learn: &LearnArgs, index: usize, workers: usize) -> anyhow::Result<()> {
    if io::kafka_address(&learn.data).is_none() {
        bail!(
            "--data {}: worker processes read a Kafka topic (`kafka://HOST:PORT/TOPIC`), whose \
             partitions they split",
            learn.data.display()
        );
    }
    if index >= workers {
        bail!("--worker-index {index} with --workers {workers}: the index must be below N");
    }
    if !matches!(learn.parallel.ps.as_deref(), Some(p) if p.trim().starts_with("grpc://")) {
        bail!("a worker trains through running shards: pass --ps grpc://HOST:PORT,…");
    }
    if learn.parallel.ps_job.is_none() {
        bail!("every worker of a job names it at the shards: pass --ps-job ID");
    }
    if learn.save.is_some() || learn.publish.registry.is_some() {
        bail!("--save and --registry are not supported by worker processes yet");
    }
    if learn.tail90 {
        bail!("--tail90 needs a bounded file, not a topic");
    }
    Ok(())
}

/// Runs `eddy worker`.
pub fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let WorkerArgs {
        worker_index: index,
        restore_epoch,
        mut learn,
    } = args;
    // `--workers N` (alias of `--parallelism`) is the job's worker count; this process is one
    let workers = learn.parallel.parallelism;
    check(&learn, index, workers)?;
    learn.parallel.parallelism = 1;
    if learn.checkpoints.checkpoint_dir.is_none() {
        let dir = learn.checkpoint_dir().join(format!("worker-{index}"));
        learn.checkpoints.checkpoint_dir = Some(dir);
    }
    let mut config = learn.train_config(learn.learner()?)?;
    config.name = format!("worker-{index}");
    let exactly_once = learn.checkpoints.failover == Some(FailoverMode::ExactlyOnce);
    let ps = match config.ps.as_mut() {
        Some(ps) if matches!(ps.store, PsSpec::Remote(_)) => ps,
        _ => bail!("a worker trains through running shards: pass --ps grpc://HOST:PORT,…"),
    };
    if exactly_once {
        // the job-wide epoch barrier at the shards; any failure ends the process and the
        // supervisor rolls every worker and shard back together
        ps.barrier = Some(EpochBarrier {
            worker: u32::try_from(index)?,
            workers: u32::try_from(workers)?,
            wait: BARRIER_WAIT,
            record: config.checkpoint.dir.clone(),
        });
        config.failover.mode = FailoverMode::ExactlyOnce;
        config.failover.restart.max_restarts = 0;
        config.keep_checkpoints = true;
        if let (Some(epoch), Some(dir)) = (restore_epoch, &config.checkpoint.dir) {
            let store = CheckpointStore::open(dir, config.checkpoint.retain.max(1))?;
            if epoch == 0 {
                store.clear()?;
                epochs::clear(dir)?;
            } else {
                config.checkpoint.restore_from = Some(store.checkpoint_dir(Epoch(epoch)));
            }
        }
    } else {
        if restore_epoch.is_some() {
            bail!("--restore-epoch is for workers with --failover exactly-once");
        }
        config.failover.mode = FailoverMode::Approximate;
        ps.tables_in_checkpoints = false;
    }
    config.events = Some(Arc::new(|event: &TrainEvent| {
        let line = match event {
            TrainEvent::Rows(rows) => WorkerLine::Rows { rows: *rows },
            TrainEvent::Restored { rows, .. } => WorkerLine::Restored { rows: *rows },
            TrainEvent::Published { .. } => return,
        };
        // a closed stdout means the supervisor is gone; training goes on to its checkpoint
        let _ = line.write_to(&mut std::io::stdout().lock());
    }));
    let started = WorkerLine::Started {
        worker: index,
        pid: std::process::id(),
    };
    started.write_to(&mut std::io::stdout().lock())?;
    let job = TrainJob::new(config)?;
    let input = io::InputOptions {
        format: learn.format,
        schema: learn.schema.as_deref().map(io::parse_schema).transpose()?,
        follow: learn.follow,
        parallelism: 1,
        max_record_bytes: learn.max_record_bytes,
        ..io::InputOptions::default()
    };
    let (source, schema) = io::member_source(job.flow(), &learn.data, &input, index, workers)?;
    let pipeline = learn.pipeline(&schema)?;
    let handle = job.start(source, pipeline, None)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    super::shutdown::on_signal(move || flag.store(true, Ordering::SeqCst), false)?;
    let mut stopping = false;
    while !handle.is_finished() {
        std::thread::sleep(Duration::from_millis(10));
        if stop.load(Ordering::SeqCst) && !stopping {
            stopping = true;
            handle.stop(Duration::from_secs(30));
        }
    }
    let outcome = handle.join()?;
    let summary = &outcome.summary;
    let finished = WorkerLine::Finished {
        rows: outcome.report.rows,
        records_lost: summary.records_lost,
        records_replayed: summary.records_replayed,
        restarts: summary.restarts,
        metrics: outcome
            .report
            .metrics
            .iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    };
    finished.write_to(&mut std::io::stdout().lock())?;
    Ok(())
}

/// Parameter-server shards `eddy learn --processes` started (killed when dropped).
struct Shards(Vec<Child>);

impl Drop for Shards {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `n` shards on loopback port 0 with their snapshots in `dir/shard-I`; their
/// addresses.
fn start_shards(exe: &Path, n: usize, dir: &Path) -> anyhow::Result<(Shards, Vec<String>)> {
    let mut shards = Shards(Vec::new());
    let mut addrs = Vec::new();
    for i in 0..n {
        let mut child = Command::new(exe)
            .args(["ps", "serve", "--shard", &format!("{i}/{n}")])
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join(format!("shard-{i}")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting parameter-server shard {i}/{n}"))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out).read_line(&mut line)?;
        }
        shards.0.push(child);
        match line.trim().strip_prefix("listening on ") {
            Some(addr) => addrs.push(addr.to_string()),
            None => bail!("parameter-server shard {i}/{n} did not start (it said {line:?})"),
        }
    }
    Ok((shards, addrs))
}

/// Flags `eddy learn --processes` sets itself in each worker's command line: dropped (with
/// their value) from the arguments passed through.
const OWN_FLAGS: [&str; 6] = [
    "--processes",
    "--parallelism",
    "--workers",
    "--ps",
    "--ps-job",
    "--checkpoint-dir",
];

/// This process's arguments as a worker's: `learn` → `worker`, [`OWN_FLAGS`] dropped.
fn worker_args(argv: &[OsString]) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut skip_value = false;
    let mut subcommand = false;
    for arg in argv {
        if skip_value {
            skip_value = false;
            continue;
        }
        let text = arg.to_string_lossy();
        if !subcommand && text == "learn" {
            subcommand = true;
            out.push(OsString::from("worker"));
            continue;
        }
        let name = text.split('=').next().unwrap_or_default();
        if OWN_FLAGS.contains(&name) {
            skip_value = !text.contains('=');
            continue;
        }
        out.push(arg.clone());
    }
    out
}

/// Runs `eddy learn --processes N`: shards if needed, N supervised workers, one JSON line.
pub fn supervise(args: LearnArgs) -> anyhow::Result<()> {
    let n = args.parallel.processes.unwrap_or(1);
    if args.parallel.parallelism > 1 {
        bail!("--processes {n} runs one learner per process: drop --parallelism");
    }
    check_job(&args)?;
    let exe = std::env::current_exe().context("finding the eddy binary")?;
    let base = args.checkpoint_dir();
    // the job id is kept beside the workers' checkpoints, so a rerun that resumes from them
    // is the same job at the shards
    let job = match &args.parallel.ps_job {
        Some(job) => job.clone(),
        None => eddy_workflow::train::job_id_in(&base.join("job-id"))?,
    };
    let (shards, ps) = match &args.parallel.ps {
        Some(ps) => (Shards(Vec::new()), ps.clone()),
        None => {
            let (shards, addrs) = start_shards(&exe, n, &base.join("ps"))?;
            (shards, format!("grpc://{}", addrs.join(",")))
        }
    };
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    let passed = worker_args(&argv);
    let workers = (0..n)
        .map(|i| {
            let mut args = passed.clone();
            for (flag, value) in [
                ("--worker-index", i.to_string()),
                ("--workers", n.to_string()),
                ("--ps", ps.clone()),
                ("--ps-job", job.clone()),
            ] {
                args.push(flag.into());
                args.push(value.into());
            }
            args.push("--checkpoint-dir".into());
            args.push(base.join(format!("worker-{i}")).into_os_string());
            WorkerCommand {
                program: exe.clone(),
                args,
            }
        })
        .collect();
    let mut config = SupervisorConfig::new(workers);
    config.max_restarts = args.checkpoints.max_restarts as u64;
    let dirs: Vec<_> = (0..n).map(|i| base.join(format!("worker-{i}"))).collect();
    config.status_file = Some(base.join(STATUS_FILE));
    let exactly_once = args.checkpoints.failover == Some(FailoverMode::ExactlyOnce);
    if exactly_once {
        config.exactly_once = Some(EpochRecovery {
            checkpoint_dirs: dirs.clone(),
            restore: shard_restorer(&ps, &job, n, args.parallel.ps_retry_for)?,
        });
    }
    config.events = Some(Arc::new(|e: &SupervisorEvent| eprintln!("{}", describe(e))));
    eprintln!("job {job}: {n} worker processes, parameter server {ps}");
    let supervisor = Supervisor::start(config)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    super::shutdown::on_signal(move || flag.store(true, Ordering::SeqCst), false)?;
    let mut stopped = false;
    while !supervisor.is_finished() {
        std::thread::sleep(Duration::from_millis(10));
        if stop.load(Ordering::SeqCst) && !stopped {
            stopped = true;
            eprintln!("stopping: every worker takes a last checkpoint and exits");
            supervisor.stop();
        }
    }
    let report = supervisor.join()?;
    drop(shards);
    if !stop.load(Ordering::SeqCst) && !stopped {
        // the input ended: nothing is left to resume (the workers cleared their checkpoints)
        let _ = std::fs::remove_dir_all(base.join("ps"));
        // exactly-once workers keep their checkpoints until the whole job ended
        for dir in &dirs {
            CheckpointStore::open(dir, 1)?.clear()?;
            epochs::clear(dir)?;
            let _ = std::fs::remove_dir(dir);
        }
        let _ = std::fs::remove_file(base.join("job-id"));
        let _ = std::fs::remove_dir(&base);
    }
    println!("{}", report_json(&report));
    Ok(())
}

/// How the supervisor rolls the shards at `ps` (`grpc://A,B`) back to a job-wide epoch of
/// job `job` with `n` worker processes (retrying a restarting shard for `retry_for`).
fn shard_restorer(
    ps: &str,
    job: &str,
    n: usize,
    retry_for: Duration,
) -> anyhow::Result<RestoreShards> {
    let addrs: Vec<String> = ps
        .trim()
        .strip_prefix("grpc://")
        .context("--ps: expected grpc://HOST:PORT,…")?
        .split(',')
        .map(|a| a.trim().to_string())
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (job, workers) = (job.to_string(), u32::try_from(n)?);
    Ok(Arc::new(move |epoch: u64, finished: &[u32]| {
        eprintln!("rolling every shard back to epoch {epoch}");
        runtime
            .block_on(restore_job_epoch(
                &addrs, &job, epoch, workers, finished, retry_for,
            ))
            .map_err(|e| {
                eddy_workflow::Error::InvalidArgument(format!(
                    "parameter server: rolling back to epoch {epoch}: {e}"
                ))
            })
    }))
}

/// Refuses, before any process starts, what every worker would refuse.
fn check_job(args: &LearnArgs) -> anyhow::Result<()> {
    let mut probe = args.clone();
    probe.parallel.ps = Some(probe.parallel.ps.unwrap_or_else(|| "grpc://probe:0".into()));
    probe.parallel.ps_job = Some("probe".into());
    check(&probe, 0, args.parallel.processes.unwrap_or(1))?;
    probe.learner()?;
    Ok(())
}

/// One line on stderr per supervisor event.
fn describe(e: &SupervisorEvent) -> String {
    match e {
        SupervisorEvent::Started {
            worker,
            pid,
            incarnation,
        } => match incarnation {
            0 => format!("worker {worker} started (pid {pid})"),
            n => format!("worker {worker} restarted (pid {pid}, start {})", n + 1),
        },
        SupervisorEvent::Died {
            worker,
            pid,
            status,
            after,
        } => format!(
            "worker {worker} (pid {pid}) died: {status}; restarting in {} ms",
            after.as_millis()
        ),
        SupervisorEvent::Training {
            worker,
            incarnation,
        } => format!("worker {worker} training (start {})", incarnation + 1),
        SupervisorEvent::Recovered { worker, after } => format!(
            "worker {worker} trains again, {} ms after its process died",
            after.as_millis()
        ),
        SupervisorEvent::Finished { worker } => format!("worker {worker} finished"),
        SupervisorEvent::RolledBack {
            worker,
            epoch,
            restarting,
        } => format!(
            "worker {worker} failed: the job rolls back to epoch {epoch}; restarting workers \
             {restarting:?}"
        ),
    }
}

/// The job's JSON line: rows, seconds, merged metrics, totals and the per-worker reports.
fn report_json(report: &SupervisorReport) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    out.insert("rows".into(), report.rows.into());
    out.insert("seconds".into(), report.seconds.into());
    out.insert(
        "rows_per_s".into(),
        (report.rows as f64 / report.seconds.max(1e-9)).into(),
    );
    for (name, value) in &report.metrics {
        out.insert(name.clone(), (*value).into());
    }
    let sum = |f: fn(&eddy_workflow::train::supervise::WorkerReport) -> u64| {
        report.workers.iter().map(f).sum::<u64>()
    };
    out.insert("restarts".into(), sum(|w| w.restarts).into());
    out.insert(
        "records_replayed".into(),
        sum(|w| w.records_replayed).into(),
    );
    out.insert("records_lost".into(), sum(|w| w.records_lost).into());
    out.insert("rollbacks".into(), report.rollbacks.clone().into());
    out.insert(
        "workers".into(),
        serde_json::to_value(&report.workers).unwrap_or_default(),
    );
    serde_json::Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_args_rename_the_command_and_drop_the_flags_set_per_worker() {
        let argv: Vec<OsString> = [
            "--log-format",
            "json",
            "learn",
            "--data",
            "kafka://h:1/t",
            "--processes",
            "2",
            "--ps=grpc://a:1",
            "--label",
            "label",
            "--checkpoint-dir",
            "d",
            "--workers",
            "3",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let got: Vec<String> = worker_args(&argv)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            got,
            [
                "--log-format",
                "json",
                "worker",
                "--data",
                "kafka://h:1/t",
                "--label",
                "label"
            ]
        );
    }
}

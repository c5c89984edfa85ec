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
//! the same in `<checkpoint dir>/supervisor.json` for `eddy status` while it runs. With
//! `--save FILE` it saves the job's model: worker 0's pipeline with the shards' tables once
//! every worker finished. The job itself (shards, worker command lines, supervision, the
//! model, clean-up) is [`eddy_workflow::train::supervise::ProcessJob`]; this file parses
//! flags, and runs a worker through [`eddy_workflow::train::supervise::worker`].
//!
//! With `--failover exactly-once` a worker meets its peers at an epoch barrier at the shards at
//! every checkpoint and exits on any failure; the supervisor then rolls every shard and every
//! worker back to the last job-wide epoch (`--restore-epoch`, set by it). The design (process
//! model, identity, what is lost or replayed, the epoch protocol) is in
//! [`eddy_workflow::train::supervise`].

use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use eddy_core::dataflow::FailoverMode;
use eddy_workflow::train::supervise::{
    self, ProcessJob, ProcessJobConfig, SupervisorEvent, SupervisorReport, WorkerRole,
};
use eddy_workflow::train::TrainJob;

use super::io;
use super::learn::LearnArgs;
use super::learn_parallel::shard_list;

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
    if learn.publish.registry.is_some() {
        bail!(
            "--registry is not supported by worker processes: the job's model is worker 0's \
             pipeline with the shards' tables (`eddy learn --processes N --save FILE`)"
        );
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
    let role = WorkerRole {
        index,
        workers: learn.parallel.parallelism,
        exactly_once: learn.checkpoints.failover == Some(FailoverMode::ExactlyOnce),
        restore_epoch,
    };
    check(&learn, index, role.workers)?;
    role.check()?;
    role.announce()?;
    learn.parallel.parallelism = 1;
    if learn.checkpoints.checkpoint_dir.is_none() {
        let dir = learn.checkpoint_dir().join(format!("worker-{index}"));
        learn.checkpoints.checkpoint_dir = Some(dir);
    }
    let mut config = learn.train_config(learn.learner()?)?;
    role.configure(&mut config)?;
    let job = TrainJob::new(config)?;
    let input = io::InputOptions {
        format: learn.format,
        schema: learn.schema.as_deref().map(io::parse_schema).transpose()?,
        follow: learn.follow,
        parallelism: 1,
        max_record_bytes: learn.max_record_bytes,
        ..io::InputOptions::default()
    };
    let (source, schema) = io::member_source(job.flow(), &learn.data, &input, index, role.workers)?;
    let pipeline = learn.pipeline(&schema)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    super::shutdown::on_signal(move || flag.store(true, Ordering::SeqCst), false)?;
    supervise::worker::run(job, source, pipeline, &stop, learn.save.as_deref())?;
    Ok(())
}

/// Flags `eddy learn --processes` sets itself in each worker's command line: dropped (with
/// their value) from the arguments passed through.
const OWN_FLAGS: [&str; 7] = [
    "--processes",
    "--save",
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

/// Runs `eddy learn --processes N`: shards if needed, N supervised workers, one JSON line
/// (and the job's model with `--save`).
pub fn supervise(args: LearnArgs) -> anyhow::Result<()> {
    let n = args.parallel.processes.unwrap_or(1);
    if args.parallel.parallelism > 1 {
        bail!("--processes {n} runs one learner per process: drop --parallelism");
    }
    check_job(&args)?;
    let exe = std::env::current_exe().context("finding the eddy binary")?;
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    let mut config = ProcessJobConfig::new(exe, n, worker_args(&argv), args.checkpoint_dir());
    config.shards = args.parallel.ps.as_deref().map(shard_list).transpose()?;
    config.job = args.parallel.ps_job.clone();
    config.exactly_once = args.checkpoints.failover == Some(FailoverMode::ExactlyOnce);
    config.max_restarts = args.checkpoints.max_restarts as u64;
    config.retry_for = args.parallel.ps_retry_for;
    if args.save.is_some() {
        config.model = Some(args.learner()?);
    }
    config.events = Some(Arc::new(|e: &SupervisorEvent| eprintln!("{}", describe(e))));
    let job = ProcessJob::start(config)?;
    eprintln!(
        "job {}: {n} worker processes, parameter server grpc://{}",
        job.job_id(),
        job.shard_addrs().join(",")
    );
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    super::shutdown::on_signal(move || flag.store(true, Ordering::SeqCst), false)?;
    let mut stopped = false;
    while !job.is_finished() {
        std::thread::sleep(Duration::from_millis(10));
        if stop.load(Ordering::SeqCst) && !stopped {
            stopped = true;
            eprintln!("stopping: every worker takes a last checkpoint and exits");
            job.stop();
        }
    }
    let outcome = job.join()?;
    if let (Some(path), Some(model)) = (&args.save, &outcome.model) {
        model
            .save(path)
            .with_context(|| format!("saving the model to {}", path.display()))?;
        eprintln!(
            "saved the {} model (worker 0's pipeline, the shards' tables) to {}",
            model.model.name(),
            path.display()
        );
    }
    println!("{}", report_json(&outcome.report));
    Ok(())
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
            "--save",
            "m.model",
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

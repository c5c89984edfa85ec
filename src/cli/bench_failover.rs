//! `eddy bench failover --processes N --kafka HOST:PORT`: approximate failover across
//! processes, measured. Generated CTR rows go to a fresh topic of `2·N` partitions on a running
//! broker; each repetition runs `eddy learn --processes N` on it (N `eddy worker` processes,
//! N shards on loopback), `kill -9`s the last worker `--kill-after` after every worker trains,
//! and reads the job's report: the killed worker's recovery time (process exit → first trained
//! rows again), its peers' rows/s while it was down over before, the rows replayed, and the
//! job's rows/s. A fault-free run gives the reference rows/s and log loss. Medians over
//! `--repeat` runs are printed as one JSON line (the per-run figures on stderr).
//! `--failover exactly-once` measures the global restart instead (every worker rolls back to
//! the last job-wide epoch).
//!
//! `--scaling` measures throughput instead of failover: fault-free runs of 1 worker process and
//! of N on the same topic, through the same `--shards` shard processes on loopback (started
//! fresh for each run), `--repeat` times each; it prints the median rows/s of each and their
//! ratio (the job's rows over its wall time, process starts included: use a topic large
//! enough that they do not matter, and a release build on a quiet machine).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use eddy_workflow::train::supervise::ShardProcesses;
use serde_json::Value;

/// Arguments of `eddy bench failover`.
#[derive(Debug, Args)]
pub struct FailoverBenchArgs {
    /// A running Kafka broker (`HOST:PORT`); the bench creates its own topic there.
    #[arg(long)]
    kafka: String,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    processes: usize,
    /// Rows in the topic.
    #[arg(long, default_value_t = 200_000)]
    rows: u64,
    /// Runs with a kill (the medians are reported).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// How long after every worker trains the last one is killed.
    #[arg(long, default_value = "2s", value_parser = super::duration::parse)]
    kill_after: Duration,
    /// Rows per micro-batch.
    #[arg(long, default_value_t = 1024)]
    batch_rows: usize,
    /// Time between the workers' checkpoints.
    #[arg(long, default_value = "500ms")]
    checkpoint_every: String,
    /// Failover mode of the workers: `approximate` (a dead worker restarts alone) or
    /// `exactly-once` (everyone rolls back to the last job-wide epoch).
    #[arg(long, default_value = "approximate")]
    failover: String,
    /// Measure rows/s of 1 worker process against N instead of a failover.
    #[arg(long)]
    scaling: bool,
    /// With `--scaling`: parameter-server shard processes (the same for both runs).
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// Working directory (checkpoints, shard snapshots).
    #[arg(long, default_value = "target/eddy-bench/failover")]
    dir: PathBuf,
}

/// One run's figures.
struct Figures {
    rows_per_s: f64,
    logloss: f64,
    recovery_ms: f64,
    peer_ratio: f64,
    replayed: f64,
}

/// Runs `eddy bench failover`.
pub fn run(args: FailoverBenchArgs) -> anyhow::Result<()> {
    if args.processes < 2 && !args.scaling {
        bail!(
            "--processes {}: a failover needs a peer (2 or more)",
            args.processes
        );
    }
    let exe = std::env::current_exe().context("finding the eddy binary")?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let topic = format!(
        "kafka://{}/eddy-bench-failover-{stamp}?partitions={}",
        args.kafka,
        2 * args.processes
    );
    eprintln!("producing {} rows to {topic}", args.rows);
    super::gen::ctr(super::gen::CtrArgs {
        rows: args.rows,
        seed: eddy_core::datagen::ctr::DEFAULT_SEED,
        format: None,
        out: topic.clone().into(),
        oracle: false,
        event_time: false,
        rate: None,
    })?;
    let data = topic.split('?').next().unwrap_or(&topic).to_string();
    if args.scaling {
        return scaling(&exe, &args, &data);
    }
    let clean = once(&exe, &args, &data, "clean", false)?;
    eprintln!(
        "fault-free: {:.0} rows/s, logloss {:.5}",
        clean.rows_per_s, clean.logloss
    );
    let mut runs = Vec::new();
    for i in 0..args.repeat.max(1) {
        let f = once(&exe, &args, &data, &format!("kill-{i}"), true)?;
        eprintln!(
            "run {i}: recovery {:.0} ms, peers' rows/s during/before {:.3}, replayed {}, \
             {:.0} rows/s, logloss {:.5}",
            f.recovery_ms, f.peer_ratio, f.replayed, f.rows_per_s, f.logloss
        );
        runs.push(f);
    }
    let med = |f: fn(&Figures) -> f64| super::bench::median(runs.iter().map(f).collect());
    let line = serde_json::json!({
        "bench": "failover",
        "processes": args.processes,
        "failover": args.failover,
        "rows": args.rows,
        "repeat": runs.len(),
        "recovery_ms": med(|f| f.recovery_ms),
        "peer_ratio": med(|f| f.peer_ratio),
        "records_replayed": med(|f| f.replayed),
        "rows_per_s": med(|f| f.rows_per_s),
        "rows_per_s_fault_free": clean.rows_per_s,
        "logloss": med(|f| f.logloss),
        "logloss_fault_free": clean.logloss,
    });
    println!("{line}");
    Ok(())
}

/// `--scaling`: fault-free runs of 1 worker process and of `--processes`, `--repeat` times
/// each, through fresh `--shards` shard processes; one JSON line of medians.
fn scaling(exe: &Path, args: &FailoverBenchArgs, data: &str) -> anyhow::Result<()> {
    let mut rates = [Vec::new(), Vec::new()];
    for i in 0..args.repeat.max(1) {
        for (k, processes) in [1, args.processes].into_iter().enumerate() {
            let name = format!("scaling-{processes}-{i}");
            let dir = args.dir.join(format!("{name}-ps"));
            let _ = std::fs::remove_dir_all(&dir);
            let shards = ShardProcesses::start(exe, args.shards, &dir)?;
            let uri = shards.uri();
            let extra = ["--ps", &uri, "--ps-job", "bench-scaling", "--ps-fresh"];
            let f = once_with(exe, args, data, &name, processes, false, &extra)?;
            eprintln!(
                "run {i}: {processes} worker process(es): {:.0} rows/s, logloss {:.5}",
                f.rows_per_s, f.logloss
            );
            rates[k].push(f.rows_per_s);
        }
    }
    let [one, many] = rates.map(super::bench::median);
    let line = serde_json::json!({
        "bench": "workers",
        "processes": args.processes,
        "shards": args.shards,
        "rows": args.rows,
        "repeat": args.repeat.max(1),
        "rows_per_s_1": one,
        "rows_per_s_n": many,
        "speedup": many / one,
    });
    println!("{line}");
    Ok(())
}

/// One `eddy learn --processes` run; with `kill`, the last worker is `kill -9`ed.
fn once(
    exe: &Path,
    args: &FailoverBenchArgs,
    data: &str,
    name: &str,
    kill: bool,
) -> anyhow::Result<Figures> {
    once_with(exe, args, data, name, args.processes, kill, &[])
}

/// [`once`] with `processes` workers and `extra` flags.
fn once_with(
    exe: &Path,
    args: &FailoverBenchArgs,
    data: &str,
    name: &str,
    processes: usize,
    kill: bool,
    extra: &[&str],
) -> anyhow::Result<Figures> {
    let dir = args.dir.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(exe)
        .args(["learn", "--label", "label", "--data", data])
        .args(["--processes", &processes.to_string()])
        .args(["--failover", &args.failover])
        .args(extra)
        .args(["--batch-rows", &args.batch_rows.to_string()])
        .args(["--checkpoint-every", &args.checkpoint_every])
        .arg("--checkpoint-dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting eddy learn --processes")?;
    let stderr = child.stderr.take().context("piped stderr")?;
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let victim = processes.saturating_sub(1);
    if kill {
        let (mut pid, mut training) = (None, 0);
        let deadline = Instant::now() + Duration::from_secs(300);
        while pid.is_none() || training < processes {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .context("waiting for every worker to train")?;
            if line.contains(" training (start 1)") {
                training += 1;
            }
            let prefix = format!("worker {victim} started (pid ");
            if let Some(rest) = line.strip_prefix(&prefix) {
                pid = rest.trim_end_matches(')').parse::<u32>().ok();
            }
        }
        std::thread::sleep(args.kill_after);
        let pid = pid.unwrap_or_default();
        let status = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -9 {pid} failed (did the worker finish before --kill-after?)");
        }
    }
    let mut out = String::new();
    child
        .stdout
        .take()
        .context("piped stdout")?
        .read_to_string(&mut out)?;
    let status = child.wait()?;
    let _ = reader.join();
    let log: Vec<String> = rx.try_iter().collect();
    if !status.success() {
        bail!(
            "eddy learn --processes failed ({status}):\n{}",
            log.join("\n")
        );
    }
    let report: Value = serde_json::from_str(out.trim())
        .with_context(|| format!("eddy learn --processes printed no report: {out}"))?;
    let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let worker = &report["workers"][victim];
    Ok(Figures {
        rows_per_s: num(&report["rows_per_s"]),
        logloss: num(&report["logloss"]),
        recovery_ms: num(&worker["recovery_ms"][0]),
        peer_ratio: num(&worker["peer_ratio"][0]),
        replayed: num(&worker["records_replayed"]),
    })
}

//! The flags of `eddy learn` for data-parallel training and parameter servers: `--parallelism
//! N` (alias `--workers`), `--ps local|grpc://A,B`, `--consistency async|bounded:S|sync`,
//! `--ps-batch`, `--ps-retry-for`, and the job identity at remote shards: `--ps-job ID`,
//! `--ps-resume` / `--ps-fresh`, and `--processes N` (worker processes, see
//! [`super::worker`]). They only fill the training job's [`PsConfig`]; the job
//! ([`eddy_workflow::train`]) does the training.

use std::time::Duration;

use anyhow::bail;
use clap::Args;
use eddy_ps::{Consistency, StoreCounters};
use eddy_workflow::train::{JobPolicy, PsConfig, PsSpec};

/// The parallelism and parameter-server options of `eddy learn`.
#[derive(Debug, Clone, Args)]
pub struct ParallelArgs {
    /// Learner subtasks training one model data-parallel, with approximate failover: FTRL
    /// shares its weights in memory (lock-free), other learners (and `--ps`) go through a
    /// parameter server.
    #[arg(long, visible_alias = "workers", default_value_t = 1)]
    pub parallelism: usize,
    /// Train in N worker processes (`eddy worker`) under a local supervisor that restarts a
    /// dead one alone: a Kafka topic's partitions split over them, the model in parameter
    /// server shards (`--ps`, or N shards started on loopback). Default: this process trains
    /// (`--processes 1` is one supervised worker process).
    #[arg(long)]
    pub processes: Option<usize>,
    /// Rows per micro-batch the source cuts (default: the runtime's, 8192). Worker processes
    /// report progress, and count replayed rows, per micro-batch.
    #[arg(long)]
    pub batch_rows: Option<usize>,
    /// Train through a parameter server: `local` (in-process) or `grpc://HOST:PORT,HOST:PORT`
    /// (shard i at the i-th address, started with `eddy ps serve --shard i/N`).
    #[arg(long)]
    pub ps: Option<String>,
    /// How far learner subtasks may drift apart: `async`, `bounded:S` or `sync` (with a
    /// parameter server).
    #[arg(long, default_value = "async")]
    pub consistency: Consistency,
    /// Rows per pull/push mini-batch (with a parameter server).
    #[arg(long, default_value_t = 32)]
    pub ps_batch: usize,
    /// How long a request to a shard is retried before training fails (with --ps grpc://).
    #[arg(long, default_value = "60s", value_parser = super::duration::parse)]
    pub ps_retry_for: Duration,
    /// The job id at the shards (with --ps grpc://): shards holding another job's tables
    /// refuse it. Default: a random id per run. Resuming from a checkpoint of a job that
    /// trained on shards needs that job's id.
    #[arg(long)]
    pub ps_job: Option<String>,
    /// Continue training the tables shards hold from another job (or an earlier run).
    #[arg(long, conflicts_with = "ps_fresh")]
    pub ps_resume: bool,
    /// Clear the tables shards hold from another job (or an earlier run) before training.
    #[arg(long)]
    pub ps_fresh: bool,
}

impl ParallelArgs {
    /// The job's parameter-server settings: none for one subtask without `--ps`.
    pub fn ps_config(&self) -> anyhow::Result<Option<PsConfig>> {
        if self.parallelism == 0 || self.ps_batch == 0 || self.processes == Some(0) {
            bail!("--parallelism, --ps-batch and --processes must be at least 1");
        }
        let store = match self.ps.as_deref().map(str::trim) {
            // weights shared in memory (FTRL) or the job's choice of store
            None if self.consistency == Consistency::Async => return Ok(None),
            // a bound is the store's clocks
            None | Some("local") => PsSpec::Local,
            Some(spec) if spec.starts_with("grpc://") => PsSpec::Remote(shard_list(spec)?),
            Some(spec) => bail!("--ps `{spec}`: expected `local` or `grpc://HOST:PORT,HOST:PORT`"),
        };
        if self.ps_job.as_deref().is_some_and(|j| j.trim().is_empty()) {
            bail!("--ps-job must not be empty");
        }
        let existing = match (self.ps_resume, self.ps_fresh) {
            (true, _) => JobPolicy::Resume,
            (_, true) => JobPolicy::Fresh,
            _ => JobPolicy::Refuse,
        };
        Ok(Some(PsConfig {
            consistency: self.consistency,
            batch_rows: self.ps_batch,
            retry_for: self.ps_retry_for,
            job: self.ps_job.clone(),
            existing,
            ..PsConfig::new(store)
        }))
    }
}

/// The shard addresses of `--ps grpc://HOST:PORT,HOST:PORT`, shard `i` at index `i`.
pub fn shard_list(spec: &str) -> anyhow::Result<Vec<String>> {
    match spec.trim().strip_prefix("grpc://") {
        Some(list) if !list.trim().is_empty() => {
            Ok(list.split(',').map(|a| a.trim().to_string()).collect())
        }
        _ => bail!("--ps `{spec}`: expected `grpc://HOST:PORT,HOST:PORT`"),
    }
}

/// What has been said on stderr about the shards while training runs.
#[derive(Default)]
pub struct ShardHealth {
    restarts: u64,
}

impl ShardHealth {
    /// Says on stderr, as it happens, that a shard restarted (and how many acknowledged updates
    /// its snapshot did not hold).
    pub fn report(&mut self, counters: StoreCounters, bar: &indicatif::ProgressBar) {
        if counters.shard_restarts > self.restarts {
            bar.suspend(|| {
                eprintln!(
                    "parameter server: a shard restarted ({} restart(s) so far); {} \
                     acknowledged key update(s) lost with it; training goes on",
                    counters.shard_restarts, counters.lost_updates
                )
            });
            self.restarts = counters.shard_restarts;
        }
    }
}

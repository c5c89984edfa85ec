//! `eddy ps serve --shard I/N --listen ADDR --data-dir DIR`: runs one parameter-server shard
//! over gRPC.
//!
//! It restores the newest good snapshot of the shard in `DIR` (naming any newer file it had
//! to skip), prints `listening on ADDR` with the bound address on stdout (so `--listen
//! 127.0.0.1:0` works), snapshots to `DIR` every `--snapshot-interval` while updates arrive,
//! and once more when stopped with Ctrl-C or SIGTERM: it stops accepting connections, lets the
//! requests in flight finish, writes that last snapshot and exits 0 — so every update it
//! acknowledged is in `DIR`. Jobs also have it write snapshots labelled with their checkpoint
//! epochs (`shard-I-of-N.<ms>.e<E>.snap`), and the tables carry the job's id (see
//! `eddy_ps::grpc::server`).
//!
//! With `--ui ADDR` it also serves `/metrics` (keys, weight memory, pushes, pulls, snapshot
//! age) and the dashboard's PS page over HTTP on ADDR, printing `dashboard at URL` on stderr.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use eddy_ps::PsServerConfig;
use eddy_workflow::ui::Dashboard;

/// `eddy ps …` subcommands.
#[derive(Debug, Subcommand)]
pub enum PsCommand {
    /// Serve one shard of a parameter server over gRPC.
    Serve(ServeArgs),
}

/// Arguments of `eddy ps serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// This shard and the shard count, `I/N` (e.g. `0/2`).
    #[arg(long, value_parser = parse_shard)]
    pub shard: (u32, u32),
    /// Address to listen on (port 0: any free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Directory of the shard's snapshots (restored from on start).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// How often to snapshot while updates arrive.
    #[arg(long, default_value = "5s", value_parser = super::duration::parse)]
    pub snapshot_interval: Duration,
    /// Snapshot files to keep.
    #[arg(long, default_value_t = 3)]
    pub keep: usize,
    /// Serve `/metrics` and the dashboard over HTTP on this address (e.g. 127.0.0.1:0).
    #[arg(long)]
    pub ui: Option<std::net::SocketAddr>,
}

/// Parses `I/N` with `I < N`.
fn parse_shard(text: &str) -> Result<(u32, u32), String> {
    let (i, n) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}`: expected I/N, e.g. 0/2"))?;
    let parse = |s: &str| {
        s.trim()
            .parse::<u32>()
            .map_err(|_| format!("`{text}`: `{s}` is not a number"))
    };
    let (i, n) = (parse(i)?, parse(n)?);
    if n == 0 || i >= n {
        return Err(format!("`{text}`: need 0 <= I < N"));
    }
    Ok((i, n))
}

/// Runs `eddy ps …`.
pub fn run(cmd: PsCommand) -> anyhow::Result<()> {
    match cmd {
        PsCommand::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if args.keep == 0 {
        bail!("--keep must be at least 1");
    }
    let (shard, shards) = args.shard;
    let server = PsServerConfig {
        data_dir: Some(args.data_dir.clone()),
        snapshot_interval: args.snapshot_interval,
        keep: args.keep,
        ..PsServerConfig::new(shard, shards)
    }
    .open()
    .with_context(|| {
        format!(
            "opening shard {shard}/{shards} in {}",
            args.data_dir.display()
        )
    })?;
    for (path, why) in server.skipped() {
        eprintln!("skipped snapshot {}: {why}", path.display());
    }
    if let Some(path) = server.restored_from() {
        let (job, epoch) = server.job();
        eprintln!(
            "shard {shard}/{shards}: restored {} ({} updates applied; job `{job}`, epoch {epoch})",
            path.display(),
            server.applied_at_start()
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr().context("the bound address")?;
        // handlers before the line a supervisor waits for (see `eddy serve`)
        let shutdown = super::shutdown::signal();
        if let Some(ui) = args.ui {
            let listener = tokio::net::TcpListener::bind(ui)
                .await
                .with_context(|| format!("binding the dashboard to {ui}"))?;
            let title = format!("ps shard {shard}/{shards}");
            let d = std::sync::Arc::new(Dashboard::new(title).with_ps(server.stats()));
            eprintln!("dashboard at {}", d.url(listener.local_addr()?));
            tokio::spawn(eddy_workflow::ui::api::serve(
                d,
                listener,
                std::future::pending(),
            ));
        }
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening on {addr}")?;
            out.flush()?;
        }
        server
            .serve(listener, shutdown)
            .await
            .with_context(|| format!("shard {shard}/{shards} at {addr}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_spec() {
        assert_eq!(parse_shard("1/2"), Ok((1, 2)));
        assert!(parse_shard("2/2").is_err());
        assert!(parse_shard("0/0").is_err());
        assert!(parse_shard("x/2").is_err());
        assert!(parse_shard("1").is_err());
    }
}

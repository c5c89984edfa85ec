//! `eddy serve`: serves the models of a registry over HTTP/JSON and (optionally) gRPC, swapping
//! in new versions as they are published, until Ctrl-C.
//!
//! ```text
//! eddy serve --registry models --model ctr@production --model fraud --listen 127.0.0.1:8080 \
//!            --grpc-listen 127.0.0.1:50051
//! curl -s localhost:8080/v1/models/ctr/predict -d '{"rows":[{"c0":"a","f0":1.5}]}'
//! ```
//!
//! The dashboard (serving and models pages, promote / roll back / pin) is served on the same
//! port (`GET /`; `--no-ui` turns it off); its URL, with the action token, is printed at start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use eddy_workflow::registry::Registry;
use eddy_workflow::serving::{ModelSelector, ServeConfig, Server};
use eddy_workflow::ui::{self, Dashboard};

/// Arguments of `eddy serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The model registry directory.
    #[arg(long)]
    pub registry: PathBuf,
    /// A model to serve, `NAME`, `NAME@VERSION`, `NAME@pinned`, `NAME@latest` or `NAME@STAGE`;
    /// repeatable. Default: every model of the registry at its latest version.
    #[arg(long = "model")]
    pub models: Vec<ModelSelector>,
    /// The HTTP address (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Also serve gRPC on this address.
    #[arg(long)]
    pub grpc_listen: Option<SocketAddr>,
    /// Per-key routing: `POST /v1/predict` with `"key": K` goes to the model PREFIX + K.
    #[arg(long)]
    pub route_prefix: Option<String>,
    /// How often to look for versions published by other processes.
    #[arg(long, default_value = "1s", value_parser = super::duration::parse)]
    pub poll: Duration,
    /// Largest accepted request body, in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    pub max_body_bytes: usize,
    /// Swap in a new version even when its task, output kind or input columns differ from
    /// the serving version's (default: such a version is refused and counted in
    /// `eddy_serving_model_load_failures_total`).
    #[arg(long)]
    pub allow_incompatible_swap: bool,
    /// Close a connection whose request head has not fully arrived this long after the server
    /// started waiting for it (also bounds idle keep-alive connections).
    #[arg(long, default_value = "10s", value_parser = super::duration::parse)]
    pub header_read_timeout: Duration,
    /// Close a connection that moves no byte either way for this long.
    #[arg(long, default_value = "60s", value_parser = super::duration::parse)]
    pub idle_timeout: Duration,
    /// Open HTTP connections at most, lowered to the open-file limit (`ulimit -n`) minus 256.
    /// At the limit a new connection closes the one that has waited longest without sending a
    /// byte; when every open connection has sent one, new ones wait to be accepted.
    #[arg(long, default_value_t = 32_768)]
    pub max_connections: usize,
    /// Log one line every N predict requests (0: none); failed requests are logged one by one.
    /// Shown at `RUST_LOG=info` (or `EDDY_LOG=info`).
    #[arg(long, default_value_t = 10_000)]
    pub log_every: u64,
    /// Worker threads of the server (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Follow a parameter server between versions: `grpc://HOST:PORT,HOST:PORT` (shard `i` at
    /// the `i`-th). Served FTRL models take the shards' changed weights every
    /// `--follow-every` as revisions of the serving version (new versions still replace them).
    #[arg(long, value_parser = parse_shards)]
    pub follow_ps: Option<Vec<String>>,
    /// How often the shards are asked for changed weights (with --follow-ps).
    #[arg(long, default_value = "200ms", value_parser = super::duration::parse)]
    pub follow_every: Duration,
    /// Serve no dashboard on the HTTP port.
    #[arg(long)]
    pub no_ui: bool,
}

/// `grpc://A,B` as the shard addresses.
fn parse_shards(spec: &str) -> Result<Vec<String>, String> {
    let list = spec
        .strip_prefix("grpc://")
        .ok_or_else(|| format!("`{spec}`: expected grpc://HOST:PORT,HOST:PORT"))?;
    let shards: Vec<String> = list.split(',').map(|a| a.trim().to_string()).collect();
    if shards.iter().any(String::is_empty) {
        return Err(format!("`{spec}`: an empty shard address"));
    }
    Ok(shards)
}

impl ServeArgs {
    /// The server configuration these arguments describe.
    pub fn config(&self) -> ServeConfig {
        ServeConfig {
            models: self.models.clone(),
            route_prefix: self.route_prefix.clone(),
            poll: self.poll,
            max_body_bytes: self.max_body_bytes,
            allow_incompatible_swap: self.allow_incompatible_swap,
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            log_every: self.log_every,
            follow_ps: self.follow_ps.clone().unwrap_or_default(),
            follow_every: self.follow_every,
        }
    }
}

/// Runs `eddy serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = args.threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = builder.build().context("starting the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let registry = Registry::open_existing(&args.registry)
        .with_context(|| format!("opening the registry {}", args.registry.display()))?;
    let server = Server::new(registry, args.config()).await?;
    let http = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let grpc = match args.grpc_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?,
        ),
        None => None,
    };
    // the handlers go in before "listening on" is said: a SIGTERM sent as soon as a
    // supervisor (or a test) reads that line is handled, never the default kill
    let signal = super::shutdown::signal();
    for m in server.state().models() {
        let version = m
            .current()
            .map(|c| format!("version {}", c.version()))
            .unwrap_or_else(|| "no version yet".into());
        eprintln!("serving {} ({}): {version}", m.name(), m.policy());
    }
    let dashboard = (!args.no_ui).then(|| {
        Arc::new(
            Dashboard::new("serve")
                .with_serving(server.state())
                .with_registry(server.state().registry().clone()),
        )
    });
    if let Some(d) = &dashboard {
        eprintln!("dashboard at {}", d.url(http.local_addr()?));
    }
    eprintln!("listening on http://{}", http.local_addr()?);
    if let Some(g) = &grpc {
        eprintln!("gRPC on {}", g.local_addr()?);
    }
    let shutdown = async {
        signal.await;
        eprintln!("shutting down");
    };
    let extra = dashboard.map(|d| ui::router(d, false));
    server.run_with(http, grpc, extra, shutdown).await?;
    Ok(())
}

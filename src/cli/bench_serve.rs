//! `eddy bench serve`: the serving path end to end on loopback. Trains an FTRL model on the
//! synthetic click stream (standardized `f0..f4`, hashed `c0..c9`), publishes it to a temporary
//! registry, starts the HTTP server in-process on `127.0.0.1:0`, and drives it with a Rust load
//! generator over keep-alive HTTP/1.1 connections (client and server share this process and
//! its cores). Reports, as JSON lines:
//!
//! - `closed-loop`: single-row requests with C connections each sending back to back, for each
//!   concurrency level: requests/s, p50/p99/max latency;
//! - `fixed-rate`: single-row requests at a target rate (open loop, spread over connections):
//!   achieved rate and p50/p99 latency;
//! - `batch`: 100-row requests: rows/s and per-request latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type};
use arrow::record_batch::RecordBatch;
use clap::Args;
use eddy_algorithms::learners::{LearnerKind, LearnerSpec};
use eddy_algorithms::pipeline::StandardPipeline;
use eddy_algorithms::trained::TrainedModel;
use eddy_core::datagen::ctr::CtrGenerator;
use eddy_workflow::registry::{NewVersion, Registry};
use eddy_workflow::serving::{ServeConfig, Server};
use eddy_workflow::train::{TrainConfig, TrainJob};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// Arguments of `eddy bench serve`.
#[derive(Debug, Args)]
pub struct ServeBenchArgs {
    /// Concurrency levels (connections) of the closed-loop single-row runs.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    concurrency: Vec<usize>,
    /// Seconds measured per run (after a warm-up of a quarter of it).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Target rates (requests/s) of the fixed-rate single-row runs.
    #[arg(long, value_delimiter = ',', default_value = "5000")]
    rates: Vec<u64>,
    /// Rows per request of the batch runs.
    #[arg(long, default_value_t = 100)]
    batch_rows: usize,
    /// Rows the benchmark model is trained on.
    #[arg(long, default_value_t = 100_000)]
    train_rows: u64,
    /// Worker threads shared by the server and the load generator (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

const MODEL: &str = "bench-ctr";

/// Runs `eddy bench serve`.
pub fn run(args: ServeBenchArgs) -> anyhow::Result<()> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = args.threads {
        builder.worker_threads(n.max(1));
    }
    builder.build()?.block_on(bench(args))
}

async fn bench(args: ServeBenchArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("eddy-bench-serve-{}", std::process::id()));
    let registry = Registry::open(&dir)?;
    let generator = Arc::new(CtrGenerator::new(
        eddy_core::datagen::ctr::DEFAULT_SEED,
        false,
    ));
    let trained = train(&generator, args.train_rows)?;
    registry.publish(MODEL, &trained.to_bytes()?, NewVersion::default())?;
    let server = Server::new(registry, ServeConfig::default()).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(listener, None, async {
        let _ = stopped.await;
    }));

    let sample = generator.batch(args.train_rows, 4096)?;
    let single: Vec<Bytes> = (0..1024).map(|i| body(&sample, i, 1)).collect();
    let batches: Vec<Bytes> = (0..32)
        .map(|i| body(&sample, (i * args.batch_rows) % 3000, args.batch_rows))
        .collect();
    let run_for = Duration::from_secs_f64(args.seconds.max(0.1));

    for &c in &args.concurrency {
        let r = load(addr, c.max(1), &single, run_for, None).await?;
        r.print("closed-loop", c, 1, None);
    }
    for &rate in &args.rates {
        let conns = 16;
        let r = load(addr, conns, &single, run_for, Some(rate)).await?;
        r.print("fixed-rate", conns, 1, Some(rate));
    }
    for c in [1, 4, 16] {
        let r = load(addr, c, &batches, run_for, None).await?;
        r.print("batch", c, args.batch_rows, None);
    }
    let _ = stop.send(());
    serving.await??;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Trains the benchmark model with the training job, as `eddy learn` does on this data.
fn train(generator: &Arc<CtrGenerator>, rows: u64) -> anyhow::Result<TrainedModel> {
    let job = TrainJob::new(TrainConfig::new(
        "bench-serve",
        LearnerSpec::new(LearnerKind::Ftrl),
    ))?;
    let input = job.flow().source("clicks", generator.source(Some(rows)));
    let pipeline = StandardPipeline {
        label: "label".into(),
        numeric: (0..5).map(|j| format!("f{j}")).collect(),
        categorical: (0..10).map(|k| format!("c{k}")).collect(),
        crosses: Vec::new(),
        scale: true,
        dense: false,
        hash_bits: 20,
    }
    .build()?;
    Ok(job.start(input, pipeline, None)?.join()?.trained)
}

/// A request body of `n` rows of `batch` from row `from`.
fn body(batch: &RecordBatch, from: usize, n: usize) -> Bytes {
    let rows: Vec<serde_json::Value> = (from..from + n)
        .map(|r| {
            let mut row = serde_json::Map::new();
            for (i, f) in batch.schema().fields().iter().enumerate() {
                let col = batch.column(i);
                let v = match f.data_type() {
                    DataType::Float64 => serde_json::Value::from(
                        col.as_primitive::<Float64Type>().value(r % col.len()),
                    ),
                    DataType::Utf8 => {
                        serde_json::Value::from(col.as_string::<i32>().value(r % col.len()))
                    }
                    _ => continue,
                };
                row.insert(f.name().clone(), v);
            }
            serde_json::Value::Object(row)
        })
        .collect();
    Bytes::from(serde_json::json!({ "rows": rows }).to_string())
}

/// What one run measured.
struct RunResult {
    requests: u64,
    seconds: f64,
    /// Sorted latencies in microseconds.
    latencies_us: Vec<u32>,
}

impl RunResult {
    fn quantile(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * q).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }

    fn print(&self, mode: &str, connections: usize, rows: usize, target: Option<u64>) {
        let rps = self.requests as f64 / self.seconds;
        println!(
            "{}",
            serde_json::json!({
                "bench": "serve",
                "mode": mode,
                "connections": connections,
                "rows_per_request": rows,
                "target_rps": target,
                "requests": self.requests,
                "requests_per_s": rps.round(),
                "rows_per_s": (rps * rows as f64).round(),
                "p50_ms": self.quantile(0.5),
                "p99_ms": self.quantile(0.99),
                "max_ms": self.quantile(1.0),
            })
        );
    }
}

/// Drives `connections` keep-alive connections for a warm-up and then `run_for`, back to back
/// (`rate` none) or at `rate` requests/s in all.
async fn load(
    addr: std::net::SocketAddr,
    connections: usize,
    bodies: &[Bytes],
    run_for: Duration,
    rate: Option<u64>,
) -> anyhow::Result<RunResult> {
    let warmup = run_for / 4;
    let start = Instant::now() + warmup;
    let end = start + run_for;
    let period = rate.map(|r| Duration::from_secs_f64(connections as f64 / r.max(1) as f64));
    let mut tasks = Vec::with_capacity(connections);
    for t in 0..connections {
        let bodies: Vec<Bytes> = bodies.to_vec();
        tasks.push(tokio::spawn(async move {
            connection(addr, t, bodies, start, end, period).await
        }));
    }
    let mut latencies = Vec::new();
    let mut requests = 0;
    for t in tasks {
        let (n, lat) = t.await??;
        requests += n;
        latencies.extend(lat);
    }
    latencies.sort_unstable();
    Ok(RunResult {
        requests,
        seconds: run_for.as_secs_f64(),
        latencies_us: latencies,
    })
}

async fn connection(
    addr: std::net::SocketAddr,
    index: usize,
    bodies: Vec<Bytes>,
    start: Instant,
    end: Instant,
    period: Option<Duration>,
) -> anyhow::Result<(u64, Vec<u32>)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let uri = format!("http://{addr}/v1/models/{MODEL}/predict");
    let mut ticker = period.map(|p| {
        let mut t = tokio::time::interval_at(
            tokio::time::Instant::now() + p.mul_f64(index as f64 / 16.0),
            p,
        );
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    let (mut n, mut latencies) = (0u64, Vec::new());
    let mut i = index;
    loop {
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        }
        let now = Instant::now();
        if now >= end {
            break;
        }
        let request = hyper::Request::post(&uri)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::HOST, "127.0.0.1")
            .body(Full::new(bodies[i % bodies.len()].clone()))
            .context("building a request")?;
        i += 1;
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            return Err(anyhow!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            ));
        }
        if now >= start {
            n += 1;
            latencies.push(u32::try_from(now.elapsed().as_micros()).unwrap_or(u32::MAX));
        }
    }
    Ok((n, latencies))
}

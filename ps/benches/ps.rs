//! Parameter-server throughput: pull + push of dimension-1 FTRL rows on `LocalPs` (one thread),
//! a plain vs a stamped (deduplicated) push there, through `PsClient` over loopback gRPC to 2
//! in-process shards, and PS-backed FTRL training with 1 vs 2 workers. Fixed seeds; the key
//! space is warmed up before measuring.

use std::sync::Arc;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use eddy_algorithms::features::{CsrMatrix, Examples, Features};
use eddy_algorithms::online::linear::LogisticGradientModel;
use eddy_algorithms::optim::FtrlProximalParams;
use eddy_ps::train::ftrl_tables;
use eddy_ps::{
    LocalPs, LocalPsConfig, ParamStore, PsClient, PsClientConfig, PsServerConfig, PsWorker,
    PsWorkerConfig, PushStamp, WorkerId,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const KEY_SPACE: u64 = 1 << 20;

fn keys(n: usize, seed: u64) -> Vec<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(0..KEY_SPACE)).collect()
}

fn local_store() -> LocalPs {
    let ps = LocalPsConfig::new(ftrl_tables(FtrlProximalParams::default()))
        .build()
        .unwrap();
    let all: Vec<u64> = (0..KEY_SPACE).collect();
    ps.push_now("w", &all, &vec![0.01; all.len()], None)
        .unwrap();
    ps
}

fn local_pull_push(c: &mut Criterion) {
    let ps = local_store();
    let mut g = c.benchmark_group("localps_pull_push_dim1_ftrl");
    for batch in [1024usize, 16384] {
        let k = keys(batch, 1);
        let grads = vec![0.01f32; batch];
        let mut out = Vec::with_capacity(batch);
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, _| {
            b.iter(|| {
                ps.pull_now("w", &k, &mut out).unwrap();
                ps.push_now("w", &k, &grads, None).unwrap();
            })
        });
    }
    g.finish();
}

/// The cost of a push stamp: one dedup-table lookup per request, whatever its size.
fn local_push_stamped(c: &mut Criterion) {
    let ps = local_store();
    let mut g = c.benchmark_group("localps_push_dim1_ftrl");
    let mut seq = 0; // one client: its sequence numbers keep increasing across the sizes
    for batch in [64usize, 1024] {
        let k = keys(batch, 3);
        let grads = vec![0.01f32; batch];
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_with_input(BenchmarkId::new("plain", batch), &batch, |b, _| {
            b.iter(|| ps.push_now("w", &k, &grads, None).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("stamped", batch), &batch, |b, _| {
            b.iter(|| {
                seq += 1;
                let stamp = PushStamp { client: 1, seq };
                ps.push_stamped("w", &k, &grads, None, SystemTime::now(), stamp)
                    .unwrap()
            })
        });
    }
    g.finish();
}

/// 2 shard servers on a runtime of their own, and a client on another.
fn grpc_cluster() -> (tokio::runtime::Runtime, tokio::runtime::Runtime, PsClient) {
    let servers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let addrs: Vec<String> = (0..2)
        .map(|i| {
            servers.block_on(async {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = l.local_addr().unwrap().to_string();
                let s = PsServerConfig::new(i, 2).open().unwrap();
                tokio::spawn(s.serve(l, std::future::pending()));
                addr
            })
        })
        .collect();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tables = ftrl_tables(FtrlProximalParams::default());
    let client = client_rt
        .block_on(PsClientConfig::new(addrs, tables).connect())
        .unwrap();
    (servers, client_rt, client)
}

fn grpc_pull_push(c: &mut Criterion) {
    let (_servers, rt, client) = grpc_cluster();
    let all: Vec<u64> = (0..KEY_SPACE).collect();
    for part in all.chunks(1 << 16) {
        rt.block_on(client.push("w", part, &vec![0.01; part.len()], None))
            .unwrap();
    }
    let mut g = c.benchmark_group("grpc_2shards_pull_push_dim1_ftrl");
    for batch in [4096usize, 65536] {
        let k = keys(batch, 2);
        let grads = vec![0.01f32; batch];
        let mut out = Vec::with_capacity(batch);
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, _| {
            b.iter(|| {
                rt.block_on(async {
                    client.pull("w", &k, &mut out).await.unwrap();
                    client.push("w", &k, &grads, None).await.unwrap();
                })
            })
        });
    }
    g.finish();
}

/// Sparse rows of 16 distinct features below `dim`, labels from a random linear truth.
fn data(rows: usize, dim: u32) -> Examples {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let truth: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut m = CsrMatrix::with_capacity(u64::from(dim), rows, 16);
    let mut labels = Vec::with_capacity(rows);
    for _ in 0..rows {
        let mut idx: Vec<u32> = (0..16).map(|_| rng.random_range(0..dim)).collect();
        idx.sort_unstable();
        idx.dedup();
        let margin: f32 = idx.iter().map(|&i| truth[i as usize]).sum();
        for &i in &idx {
            m.push(i, 1.0);
        }
        m.finish_row();
        labels.push(if margin > 0.0 { 1.0 } else { 0.0 });
    }
    Examples::new(Features::Sparse(m), labels, None).unwrap()
}

fn training(c: &mut Criterion) {
    let rows = 40_000;
    let examples = data(rows, 1 << 18);
    let chunks: Vec<Examples> = (0..rows)
        .step_by(1000)
        .map(|s| examples.slice(s, s + 1000))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let model = Arc::new(LogisticGradientModel::new(1 << 18, true));
    let mut g = c.benchmark_group("localps_ftrl_training");
    g.throughput(Throughput::Elements(rows as u64));
    g.sample_size(10);
    for workers in [1usize, 2] {
        g.bench_with_input(BenchmarkId::new("workers", workers), &workers, |b, &n| {
            b.iter(|| {
                let ps = Arc::new(
                    LocalPsConfig::new(ftrl_tables(FtrlProximalParams::default()))
                        .build()
                        .unwrap(),
                );
                rt.block_on(async {
                    let tasks: Vec<_> = (0..n)
                        .map(|w| {
                            let mine: Vec<Examples> =
                                chunks.iter().skip(w).step_by(n).cloned().collect();
                            let mut worker = PsWorker::new(
                                ps.clone(),
                                model.clone(),
                                PsWorkerConfig::new(WorkerId(w as u32)),
                            );
                            tokio::spawn(async move {
                                worker.start().await.unwrap();
                                for c in &mine {
                                    worker.process(c).await.unwrap();
                                }
                                worker.finish().await.unwrap().rows
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                })
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    local_pull_push,
    local_push_stamped,
    grpc_pull_push,
    training
);
criterion_main!(benches);

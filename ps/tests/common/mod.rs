//! Shared test helpers: in-process gRPC shards on 127.0.0.1 port 0, and random sparse data.

#![allow(dead_code)]

use eddy_algorithms::features::{CsrMatrix, Examples, Features};
use eddy_algorithms::optim::{RuleParams, SgdParams};
use eddy_ps::{Initializer, PsClient, PsClientConfig, PsServerConfig, TableConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Starts `n` shard servers on 127.0.0.1 port 0 (tasks of the current runtime, living as long
/// as it) and returns their addresses.
pub async fn spawn_shards(n: u32) -> Vec<String> {
    spawn_shards_with(n, |i| PsServerConfig::new(i, n)).await
}

/// [`spawn_shards`] with shard `i` configured by `cfg(i)`.
pub async fn spawn_shards_with(n: u32, cfg: impl Fn(u32) -> PsServerConfig) -> Vec<String> {
    let mut addrs = Vec::new();
    for i in 0..n {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap().to_string());
        let server = cfg(i).open().unwrap();
        tokio::spawn(server.serve(listener, std::future::pending()));
    }
    addrs
}

/// A client of `n` fresh in-process shards holding `tables`.
pub async fn grpc_store(n: u32, tables: Vec<TableConfig>) -> PsClient {
    let addrs = spawn_shards(n).await;
    PsClientConfig::new(addrs, tables).connect().await.unwrap()
}

/// Random sparse rows of distinct indices below `dim`, labels from a random linear truth.
pub fn sparse_data(seed: u64, rows: usize, dim: u32, max_nnz: usize) -> Examples {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let truth: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut m = CsrMatrix::with_capacity(u64::from(dim), rows, max_nnz);
    let mut labels = Vec::with_capacity(rows);
    let mut idx: Vec<u32> = Vec::new();
    for _ in 0..rows {
        idx.clear();
        let nnz = rng.random_range(1..=max_nnz);
        while idx.len() < nnz {
            let i = rng.random_range(0..dim);
            if !idx.contains(&i) {
                idx.push(i);
            }
        }
        let mut margin = 0.2;
        for &i in &idx {
            let v = rng.random_range(-2.0..2.0);
            m.push(i, v);
            margin += truth[i as usize] * v;
        }
        m.finish_row();
        labels.push(if margin > 0.0 { 1.0 } else { 0.0 });
    }
    Examples::new(Features::Sparse(m), labels, None).unwrap()
}

/// A table of `dim` with its update rule and initializer.
pub fn table(name: &str, dim: usize, rule: RuleParams, init: Initializer) -> TableConfig {
    TableConfig {
        rule,
        init,
        ..TableConfig::new(name, dim)
    }
}

/// Plain SGD with a constant step.
pub fn sgd(eta: f32) -> RuleParams {
    RuleParams::Sgd(SgdParams::constant(eta))
}

/// A seeded normal initializer.
pub const NORMAL: Initializer = Initializer::Normal { std: 0.1, seed: 11 };

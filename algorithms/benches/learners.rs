//! Learner throughput: `learn`, `predict` and `predict_learn` of every online learner, with the
//! features prepared beforehand (the learner alone, one core).
//!
//! - `ctr`: the `eddy gen ctr` stream (200 k rows featurized by the same hasher as the
//!   `featurize` bench: 5 numeric, 10 categorical, 3 crosses and a bias column, 2^22 + 1
//!   dims, ≈ 19 entries per row), in 8192-row batches. This is the headline figure.
//! - `synthetic`: rows × entries per row × bits (10 k / 100 k × 10 / 30 × 18 / 22), each entry
//!   a category of a log-uniform vocabulary (up to 100 k values) hashed into the space, so
//!   index popularity is skewed like real categorical data. Fixed seeds.

#![allow(missing_docs)]

use std::hint::black_box;

use arrow::array::{AsArray, Int64Array};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use eddy_algorithms::feature::categorical::{FeatureHasher, FeatureHasherParams};
use eddy_algorithms::features::{CsrMatrix, Examples, Features};
use eddy_algorithms::learner::OnlineLearner;
use eddy_algorithms::online::fm::{FactorizationMachine, FmParams, FmTask};
use eddy_algorithms::online::kmeans::{StreamingKMeans, StreamingKMeansParams};
use eddy_algorithms::online::linear::{FtrlLogisticParams, SgdLinearParams};
use eddy_algorithms::online::naive_bayes::{MultinomialNb, MultinomialNbParams};
use eddy_algorithms::online::passive_aggressive::{
    PaTask, PassiveAggressive, PassiveAggressiveParams,
};
use eddy_algorithms::online::softmax::{Softmax, SoftmaxParams};
use eddy_algorithms::optim::FtrlProximalParams;
use eddy_algorithms::transform::{Params, ToFeatures};
use eddy_core::datagen::ctr::{CtrGenerator, DEFAULT_SEED};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BATCH: usize = 8192;
const CTR_ROWS: u64 = 200_000;

fn ctr_batches() -> (u64, Vec<Examples>) {
    let params = FeatureHasherParams {
        numeric: (0..5).map(|j| format!("f{j}")).collect(),
        categorical: (0..10).map(|k| format!("c{k}")).collect(),
        crosses: [["c0", "c1"], ["c3", "c4"], ["c2", "c5"]]
            .iter()
            .map(|c| c.iter().map(|s| s.to_string()).collect())
            .collect(),
        bits: 22,
        signed: true,
        bias: true,
        ..Default::default()
    };
    let h = FeatureHasher::new(params.check().expect("valid params"));
    let g = CtrGenerator::new(DEFAULT_SEED, false);
    let batches = (0..CTR_ROWS)
        .step_by(BATCH)
        .map(|start| {
            let b = g
                .batch(start, BATCH.min((CTR_ROWS - start) as usize))
                .expect("generate");
            let mut x = Features::Sparse(CsrMatrix::with_capacity(h.dim(), BATCH, 20));
            h.to_features(&b, &mut x).expect("featurize");
            let labels: &Int64Array = b.column(0).as_primitive();
            let y = labels.values().iter().map(|&v| v as f32).collect();
            Examples::new(x, y, None).expect("examples")
        })
        .collect();
    (h.dim(), batches)
}

fn synthetic(rows: usize, nnz: usize, bits: u32) -> Vec<Examples> {
    let mut rng = ChaCha8Rng::seed_from_u64(17 + rows as u64 + nnz as u64 * 7 + u64::from(bits));
    let mask = (1u64 << bits) - 1;
    let ln_vocab = (100_000f64).ln();
    (0..rows)
        .step_by(BATCH)
        .map(|start| {
            let n = BATCH.min(rows - start);
            let mut m = CsrMatrix::with_capacity(1 << bits, n, nnz);
            let mut labels = Vec::with_capacity(n);
            for _ in 0..n {
                let mut margin = 0.0;
                for slot in 0..nnz as u64 {
                    let value = (rng.random::<f64>() * ln_vocab).exp() as u64;
                    let h = (slot << 40 ^ value).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    m.push(((h >> 20) & mask) as u32, 1.0);
                    margin += if value % 3 == 0 { 0.3 } else { -0.1 };
                }
                m.finish_row();
                labels.push(f32::from(
                    rng.random::<f32>() < 1.0 / (1.0 + (-margin as f32).exp()),
                ));
            }
            Examples::new(Features::Sparse(m), labels, None).expect("examples")
        })
        .collect()
}

fn ftrl(dim: u64) -> Box<dyn OnlineLearner> {
    let p = FtrlLogisticParams {
        ftrl: FtrlProximalParams {
            alpha: 0.05,
            beta: 1.0,
            l1: 0.5,
            l2: 1.0,
        },
        dim: Some(dim),
        ..Default::default()
    };
    Box::new(p.build().expect("ftrl"))
}

fn sgd(dim: u64) -> Box<dyn OnlineLearner> {
    let p = SgdLinearParams {
        dim: Some(dim),
        ..Default::default()
    };
    Box::new(p.build_logistic().expect("sgd"))
}

fn fm(dim: u64) -> Box<dyn OnlineLearner> {
    let p = FmParams::new(dim, FmTask::Binary);
    Box::new(FactorizationMachine::new(p.check().expect("fm")))
}

fn pa(dim: u64) -> Box<dyn OnlineLearner> {
    let p = PassiveAggressiveParams::new(dim, PaTask::Classification);
    Box::new(PassiveAggressive::new(p.check().expect("pa")))
}

fn softmax(dim: u64) -> Box<dyn OnlineLearner> {
    Box::new(Softmax::new(
        SoftmaxParams::new(dim, 2).check().expect("softmax"),
    ))
}

fn naive_bayes(dim: u64) -> Box<dyn OnlineLearner> {
    let p = MultinomialNbParams::new(dim, 2);
    Box::new(MultinomialNb::new(p.check().expect("nb")))
}

fn kmeans(dim: u64) -> Box<dyn OnlineLearner> {
    let p = StreamingKMeansParams::new(dim, 8);
    Box::new(StreamingKMeans::new(p.check().expect("kmeans")))
}

type Make = fn(u64) -> Box<dyn OnlineLearner>;
/// Learners that take any real-valued features (the ctr hasher signs its entries).
const LEARNERS: [(&str, Make); 5] = [
    ("ftrl", ftrl),
    ("sgd-normalized-adaptive", sgd),
    ("fm-k8", fm),
    ("passive-aggressive", pa),
    ("softmax", softmax),
];
/// Learners of non-negative counts or of geometry, measured on the synthetic grid.
const COUNT_LEARNERS: [(&str, Make); 2] = [("naive-bayes", naive_bayes), ("kmeans-k8", kmeans)];

/// Benchmarks `learn`, `predict` and `predict_learn` of each learner over `batches`.
fn bench_pass(
    c: &mut Criterion,
    group: &str,
    label: &str,
    dim: u64,
    batches: &[Examples],
    learners: &[(&str, Make)],
) {
    let rows: usize = batches.iter().map(Examples::len).sum();
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(rows as u64));
    g.sample_size(10);
    for &(name, make) in learners {
        // one learner per benchmark, trained on across iterations: the steady state of a stream
        let mut learner = make(dim);
        g.bench_function(BenchmarkId::new(format!("{name}/learn"), label), |b| {
            b.iter(|| {
                for ex in batches {
                    learner.learn(black_box(ex)).expect("learn");
                }
            })
        });
        let mut out = Vec::with_capacity(BATCH);
        g.bench_function(BenchmarkId::new(format!("{name}/predict"), label), |b| {
            b.iter(|| {
                for ex in batches {
                    learner
                        .predict(black_box(&ex.features), &mut out)
                        .expect("predict");
                }
            })
        });
        g.bench_function(
            BenchmarkId::new(format!("{name}/predict_learn"), label),
            |b| {
                b.iter(|| {
                    for ex in batches {
                        learner
                            .predict_learn(black_box(ex), &mut out)
                            .expect("predict_learn");
                    }
                })
            },
        );
    }
    g.finish();
}

fn ctr(c: &mut Criterion) {
    let (dim, batches) = ctr_batches();
    let nnz: usize = batches
        .iter()
        .map(|e| match &e.features {
            Features::Sparse(m) => m.nnz(),
            Features::Dense(_) => 0,
        })
        .sum();
    println!(
        "ctr: {CTR_ROWS} rows, {:.1} entries per row, dim {dim}",
        nnz as f64 / CTR_ROWS as f64
    );
    bench_pass(c, "ctr-200k", "bits22", dim, &batches, &LEARNERS);
}

fn synthetic_grid(c: &mut Criterion) {
    for rows in [10_000, 100_000] {
        for nnz in [10, 30] {
            for bits in [18, 22] {
                let batches = synthetic(rows, nnz, bits);
                let label = format!("rows{rows}/nnz{nnz}/bits{bits}");
                bench_pass(c, "synthetic", &label, 1 << bits, &batches, &LEARNERS);
                bench_pass(c, "synthetic", &label, 1 << bits, &batches, &COUNT_LEARNERS);
            }
        }
    }
}

criterion_group!(benches, ctr, synthetic_grid);
criterion_main!(benches);

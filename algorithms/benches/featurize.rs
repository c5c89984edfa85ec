//! Featurizing the `eddy gen ctr` stream: 1 M rows, 5 numeric columns (through an affine
//! standardization), 10 hashed categorical columns and 3 hashed crosses (`c0×c1`, `c3×c4`,
//! `c2×c5`) into one reused CSR buffer.
//!
//! Besides the timings, the bench counts heap allocations (a counting global allocator) over one
//! warmed-up pass and prints them per batch: the count is a small constant per batch (column
//! handles and the cross scratch), independent of the rows in it.

// The counting allocator below is the one use of `unsafe`: `GlobalAlloc` is an unsafe trait.
#![allow(unsafe_code, missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Float64Array};
use arrow::compute::kernels::arity::unary;
use arrow::datatypes::Float64Type;
use arrow::record_batch::RecordBatch;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use eddy_algorithms::feature::categorical::{FeatureHasher, FeatureHasherParams};
use eddy_algorithms::features::{CsrMatrix, Features};
use eddy_algorithms::transform::{Params, ToFeatures};
use eddy_core::datagen::ctr::{CtrGenerator, DEFAULT_SEED};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ROWS: u64 = 1_000_000;
const BATCH: usize = 8192;
/// Standardization of `f0..f4`: (mean, 1 / std), close to the generator's distributions.
const AFFINE: [(f64, f64); 5] = [
    (1.65, 0.46),
    (0.0, 1.0),
    (2.0, 0.5),
    (0.5, 3.46),
    (5.0, 0.1),
];

fn data() -> Vec<RecordBatch> {
    let g = CtrGenerator::new(DEFAULT_SEED, false);
    (0..ROWS)
        .step_by(BATCH)
        .map(|start| {
            g.batch(start, BATCH.min((ROWS - start) as usize))
                .expect("generate")
        })
        .collect()
}

fn hasher() -> FeatureHasher {
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
    FeatureHasher::new(params.check().expect("valid params"))
}

/// The stand-in scaler: `(x - mean) · inv_std` on `f0..f4` (one new array per column per batch).
fn scale(batch: &RecordBatch) -> RecordBatch {
    let mut columns = batch.columns().to_vec();
    for (j, &(mean, inv_std)) in AFFINE.iter().enumerate() {
        let x: &Float64Array = columns[1 + j].as_primitive();
        let y: Float64Array = unary::<Float64Type, _, Float64Type>(x, |v| (v - mean) * inv_std);
        columns[1 + j] = Arc::new(y) as ArrayRef;
    }
    RecordBatch::try_new(batch.schema(), columns).expect("same schema")
}

fn featurize(c: &mut Criterion) {
    let batches = data();
    let h = hasher();
    let mut out = Features::Sparse(CsrMatrix::with_capacity(h.dim(), BATCH, 20));

    // Allocation count of one warmed-up pass (hashing only, then with scaling).
    for b in &batches {
        h.to_features(b, &mut out).expect("featurize");
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    for b in &batches {
        h.to_features(b, &mut out).expect("featurize");
    }
    let hashing = ALLOCS.load(Ordering::Relaxed) - before;
    println!(
        "allocations per {BATCH}-row batch, hashing only: {:.1} ({} batches, {ROWS} rows, nnz/row {:.1})",
        hashing as f64 / batches.len() as f64,
        batches.len(),
        match &out {
            Features::Sparse(m) => m.nnz() as f64 / m.rows() as f64,
            Features::Dense(_) => 0.0,
        }
    );

    let mut group = c.benchmark_group("featurize-ctr-1M");
    group.throughput(Throughput::Elements(ROWS));
    group.sample_size(10);
    group.bench_function("hash-only", |bench| {
        bench.iter(|| {
            for b in &batches {
                h.to_features(black_box(b), &mut out).expect("featurize");
            }
        })
    });
    group.bench_function("scale+hash", |bench| {
        bench.iter(|| {
            for b in &batches {
                let scaled = scale(black_box(b));
                h.to_features(&scaled, &mut out).expect("featurize");
            }
        })
    });
    group.finish();
}

criterion_group!(benches, featurize);
criterion_main!(benches);

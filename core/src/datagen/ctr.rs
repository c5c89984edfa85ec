//! A deterministic synthetic click stream (`eddy gen ctr`).
//!
//! Columns: `label` (0/1), five numeric columns `f0..f4` (log-normal, normal, exponential,
//! uniform, heavy-tailed count) and ten categorical columns `c0..c9` (`"v<id>"`, Zipf-like
//! vocabularies of 10 to 100,000 values), optionally an event-time column `ts` (ms).
//!
//! The label is drawn from a hidden logistic model: per-feature effects, per-category weights,
//! a `c0 × c1` interaction, a `c2 × f1` interaction and a hashed `c3 × c4` interaction, with a
//! bias calibrated for a base rate of about 15%. It mirrors the model of the peer harness
//! (`shared/peers/gen_ctr.py`), drawn with eddy's own seeded generator, so the rows differ from
//! that script's but the statistics match.
//!
//! Rows are generated in chunks of [`CHUNK_ROWS`], each seeded from `(seed, chunk)`: the data is
//! identical across runs and machines, and the stream for N rows is a prefix of the stream for
//! more rows. Numeric values are rounded to six significant digits in every format, so CSV,
//! JSON lines and Parquet hold the same values.

use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, LogNormal, StandardNormal};

use super::format::round_g6;
use crate::error::Result;
use crate::source::generator::GeneratorSource;

/// Vocabulary size of each categorical column.
pub const VOCAB_SIZES: [usize; 10] = [10, 20, 50, 100, 500, 1000, 5000, 10000, 50000, 100000];
const ZIPF_S: [f64; 10] = [0.6, 0.8, 0.9, 1.0, 1.05, 1.1, 1.1, 1.15, 1.2, 1.2];
const CAT_SIGMA: [f64; 10] = [0.6, 0.5, 0.5, 0.5, 0.45, 0.45, 0.4, 0.4, 0.35, 0.35];
const W_NUM: [f64; 5] = [0.45, -0.35, 0.25, 0.6, 0.3];
const NUM_CENTER: [f64; 5] = [0.66, 0.0, 0.9, 0.5, 1.3];
const X34_BUCKETS: usize = 4096;
const TARGET_CTR: f64 = 0.15;
/// Rows per independently seeded chunk.
pub const CHUNK_ROWS: usize = 50_000;
/// Event time of row 0 when `ts` is generated: 2026-01-01T00:00:00Z.
pub const TS_START_MS: i64 = 1_767_225_600_000;
/// Event-time spacing of consecutive rows.
pub const TS_STEP_MS: i64 = 1;
/// Largest backwards jitter of `ts` (rows are out of order by less than this).
pub const TS_JITTER_MS: i64 = 500;

fn rng_for(seed: u64, stream: u64, chunk: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&stream.to_le_bytes());
    key[16..24].copy_from_slice(&chunk.to_le_bytes());
    key[24..].copy_from_slice(b"eddy-ctr");
    ChaCha8Rng::from_seed(key)
}

struct Category {
    cdf: Vec<f64>,
    ids: Vec<u32>,
    weights: Vec<f64>,
}

/// One chunk of generated rows, column by column.
#[derive(Debug, Clone)]
pub struct CtrChunk {
    /// 0/1 labels.
    pub labels: Vec<i64>,
    /// `f0..f4`, already rounded to six significant digits.
    pub numeric: [Vec<f64>; 5],
    /// `c0..c9` as the category id shown in the data (`"v<id>"`).
    pub categorical: [Vec<u32>; 10],
    /// The hidden model's click probability per row.
    pub probability: Vec<f64>,
    /// Event time (ms) per row.
    pub ts: Vec<i64>,
}

/// The hidden model and the stream it generates.
pub struct CtrGenerator {
    seed: u64,
    with_time: bool,
    cats: Vec<Category>,
    x01: Vec<f64>,
    x2f1: Vec<f64>,
    x34: Vec<f64>,
    bias: f64,
    schema: SchemaRef,
    /// The last chunk generated: consecutive batches mostly fall in the same chunk.
    last_chunk: Mutex<Option<(u64, Arc<CtrChunk>)>>,
}

impl std::fmt::Debug for CtrGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CtrGenerator")
            .field("seed", &self.seed)
            .field("with_time", &self.with_time)
            .field("bias", &self.bias)
            .finish()
    }
}

/// The default seed of `eddy gen ctr`.
pub const DEFAULT_SEED: u64 = 20240601;

impl CtrGenerator {
    /// Builds the hidden model for `seed`; `with_time` adds the `ts` column.
    pub fn new(seed: u64, with_time: bool) -> Self {
        let mut rng = rng_for(seed, 0, 0);
        let normal = |rng: &mut ChaCha8Rng, sigma: f64| -> f64 {
            let z: f64 = StandardNormal.sample(rng);
            sigma * z
        };
        let mut cats = Vec::with_capacity(VOCAB_SIZES.len());
        for k in 0..VOCAB_SIZES.len() {
            let v = VOCAB_SIZES[k];
            let p: Vec<f64> = (1..=v).map(|r| (r as f64).powf(-ZIPF_S[k])).collect();
            let total: f64 = p.iter().sum();
            let mut acc = 0.0;
            let mut cdf: Vec<f64> = p
                .iter()
                .map(|x| {
                    acc += x / total;
                    acc
                })
                .collect();
            if let Some(last) = cdf.last_mut() {
                *last = 1.0;
            }
            // the id shown in the data is a random permutation of the popularity rank
            let mut ids: Vec<u32> = (0..v as u32).collect();
            for i in (1..v).rev() {
                let j = rng.random_range(0..=i);
                ids.swap(i, j);
            }
            let weights = (0..v).map(|_| normal(&mut rng, CAT_SIGMA[k])).collect();
            cats.push(Category { cdf, ids, weights });
        }
        let x01 = (0..VOCAB_SIZES[0] * VOCAB_SIZES[1])
            .map(|_| normal(&mut rng, 0.9))
            .collect();
        let x2f1 = (0..VOCAB_SIZES[2]).map(|_| normal(&mut rng, 0.5)).collect();
        let x34 = (0..X34_BUCKETS).map(|_| normal(&mut rng, 0.6)).collect();
        let mut fields = vec![Field::new("label", DataType::Int64, false)];
        fields.extend((0..5).map(|j| Field::new(format!("f{j}"), DataType::Float64, false)));
        fields.extend((0..10).map(|k| Field::new(format!("c{k}"), DataType::Utf8, false)));
        if with_time {
            fields.push(Field::new("ts", DataType::Int64, false));
        }
        let mut g = CtrGenerator {
            seed,
            with_time,
            cats,
            x01,
            x2f1,
            x34,
            bias: 0.0,
            schema: Arc::new(Schema::new(fields)),
            last_chunk: Mutex::new(None),
        };
        g.bias = g.calibrate_bias();
        g
    }

    /// The schema of generated batches.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The calibrated bias of the hidden model.
    pub fn bias(&self) -> f64 {
        self.bias
    }

    fn sample(&self, rng: &mut ChaCha8Rng, n: usize) -> ([Vec<f64>; 5], [Vec<usize>; 10]) {
        let lognormal01 = LogNormal::<f64>::new(0.0, 1.0).expect("valid parameters");
        let lognormal_count = LogNormal::<f64>::new(1.0, 1.5).expect("valid parameters");
        let exp = Exp::<f64>::new(0.5).expect("valid parameters");
        let mut num: [Vec<f64>; 5] = Default::default();
        num[0] = (0..n).map(|_| lognormal01.sample(rng)).collect();
        num[1] = (0..n)
            .map(|_| -> f64 { StandardNormal.sample(rng) })
            .collect();
        num[2] = (0..n).map(|_| exp.sample(rng)).collect();
        num[3] = (0..n).map(|_| rng.random::<f64>()).collect();
        num[4] = (0..n)
            .map(|_| lognormal_count.sample(rng).floor())
            .collect();
        let mut ranks: [Vec<usize>; 10] = Default::default();
        for (k, c) in self.cats.iter().enumerate() {
            ranks[k] = (0..n)
                .map(|_| {
                    let u: f64 = rng.random();
                    c.cdf.partition_point(|&x| x <= u).min(c.cdf.len() - 1)
                })
                .collect();
        }
        (num, ranks)
    }

    fn logit(&self, num: &[Vec<f64>; 5], ranks: &[Vec<usize>; 10], i: usize) -> f64 {
        let g = [
            num[0][i].ln_1p(),
            num[1][i],
            num[2][i].ln_1p(),
            num[3][i],
            num[4][i].ln_1p(),
        ];
        let mut z = self.bias;
        for j in 0..5 {
            z += W_NUM[j] * (g[j] - NUM_CENTER[j]);
        }
        for (k, c) in self.cats.iter().enumerate() {
            z += c.weights[ranks[k][i]];
        }
        z += self.x01[ranks[0][i] * VOCAB_SIZES[1] + ranks[1][i]];
        z += self.x2f1[ranks[2][i]] * num[1][i];
        let h = (ranks[3][i] * 1_000_003 + ranks[4][i] * 7919) % X34_BUCKETS;
        z + self.x34[h]
    }

    fn calibrate_bias(&self) -> f64 {
        let mut rng = rng_for(self.seed, 999_999_999, 0);
        let n = 200_000;
        let (num, ranks) = self.sample(&mut rng, n);
        let z0: Vec<f64> = (0..n).map(|i| self.logit(&num, &ranks, i)).collect();
        let (mut lo, mut hi) = (-10.0, 10.0);
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            let ctr = z0.iter().map(|z| sigmoid(z + mid)).sum::<f64>() / n as f64;
            if ctr < TARGET_CTR {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    }

    /// Generates chunk `index` (rows `index * CHUNK_ROWS ..`), always all of its rows.
    pub fn chunk(&self, index: u64) -> CtrChunk {
        let mut rng = rng_for(self.seed, 1, index);
        let n = CHUNK_ROWS;
        let (mut num, ranks) = self.sample(&mut rng, n);
        let probability: Vec<f64> = (0..n)
            .map(|i| sigmoid(self.logit(&num, &ranks, i)))
            .collect();
        let labels = probability
            .iter()
            .map(|&p| i64::from(rng.random::<f64>() < p))
            .collect();
        let base = index as i64 * n as i64;
        let ts = (0..n as i64)
            .map(|i| TS_START_MS + (base + i) * TS_STEP_MS - rng.random_range(0..TS_JITTER_MS))
            .collect();
        for col in &mut num {
            for v in col.iter_mut() {
                *v = round_g6(*v);
            }
        }
        let mut categorical: [Vec<u32>; 10] = Default::default();
        for (k, c) in self.cats.iter().enumerate() {
            categorical[k] = ranks[k].iter().map(|&r| c.ids[r]).collect();
        }
        CtrChunk {
            labels,
            numeric: num,
            categorical,
            probability,
            ts,
        }
    }

    fn cached_chunk(&self, index: u64) -> Arc<CtrChunk> {
        let mut last = self.last_chunk.lock().unwrap_or_else(|p| p.into_inner());
        match &*last {
            Some((i, c)) if *i == index => c.clone(),
            _ => {
                let c = Arc::new(self.chunk(index));
                *last = Some((index, c.clone()));
                c
            }
        }
    }

    /// Rows `start .. start + len` as one record batch.
    pub fn batch(&self, start: u64, len: usize) -> Result<RecordBatch> {
        let mut labels = Vec::with_capacity(len);
        let mut numeric: [Vec<f64>; 5] = Default::default();
        let mut cats: Vec<StringBuilder> = (0..10)
            .map(|_| StringBuilder::with_capacity(len, len * 6))
            .collect();
        let mut ts = Vec::with_capacity(len);
        let mut row = start;
        let end = start + len as u64;
        let mut text = String::with_capacity(8);
        while row < end {
            let chunk_index = row / CHUNK_ROWS as u64;
            let chunk = self.cached_chunk(chunk_index);
            let from = (row - chunk_index * CHUNK_ROWS as u64) as usize;
            let to = ((end - chunk_index * CHUNK_ROWS as u64) as usize).min(CHUNK_ROWS);
            labels.extend_from_slice(&chunk.labels[from..to]);
            for (out, col) in numeric.iter_mut().zip(&chunk.numeric) {
                out.extend_from_slice(&col[from..to]);
            }
            for (k, b) in cats.iter_mut().enumerate() {
                for &id in &chunk.categorical[k][from..to] {
                    use std::fmt::Write;
                    text.clear();
                    let _ = write!(text, "v{id}");
                    b.append_value(&text);
                }
            }
            ts.extend_from_slice(&chunk.ts[from..to]);
            row += (to - from) as u64;
        }
        let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(labels))];
        columns.extend(
            numeric
                .into_iter()
                .map(|v| Arc::new(Float64Array::from(v)) as ArrayRef),
        );
        columns.extend(cats.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        if self.with_time {
            columns.push(Arc::new(Int64Array::from(ts)));
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// A replayable source of `rows` rows (`None`: unbounded).
    pub fn source(self: &Arc<Self>, rows: Option<u64>) -> GeneratorSource {
        let g = self.clone();
        GeneratorSource::new(
            self.schema(),
            rows,
            Arc::new(move |start, len| g.batch(start, len)),
        )
    }
}

/// The logistic function.
#[inline]
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_prefix_and_base_rate() {
        let g = CtrGenerator::new(DEFAULT_SEED, true);
        let a = g.batch(0, 1000).unwrap();
        let b = g.batch(0, 60_000).unwrap();
        assert_eq!(a, b.slice(0, 1000));
        let c = g.batch(49_990, 20).unwrap();
        assert_eq!(c, b.slice(49_990, 20));
        let labels = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let rate = labels.values().iter().sum::<i64>() as f64 / labels.len() as f64;
        assert!((0.13..0.17).contains(&rate), "base rate {rate}");
    }

    #[test]
    fn seeds_differ_and_ts_within_jitter() {
        let a = CtrGenerator::new(1, true).batch(0, 100).unwrap();
        let b = CtrGenerator::new(2, true).batch(0, 100).unwrap();
        assert_ne!(a, b);
        let ts = a.column(16).as_any().downcast_ref::<Int64Array>().unwrap();
        for (i, t) in ts.values().iter().enumerate() {
            let nominal = TS_START_MS + i as i64 * TS_STEP_MS;
            assert!(*t <= nominal && *t > nominal - TS_JITTER_MS);
        }
    }
}

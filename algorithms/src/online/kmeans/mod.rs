//! Streaming k-means with half-life decay: Spark MLlib's `StreamingKMeans` update, applied one
//! point at a time.
//!
//! Each row `x` with importance weight `s` goes to its nearest centre `j` (squared Euclidean
//! distance, first on ties); every cluster weight decays, `n_i ← a^s · n_i`; then the winner
//! moves to the weighted mean
//!
//! ```text
//! c_j ← (c_j · n_j + x · s) / (n_j + s),    n_j ← n_j + s
//! ```
//!
//! which is Spark's `c' = (c·n·a + x·m) / (n·a + m)` for a mini-batch of one point. Spark
//! decays once per mini-batch; here the decay is per point, because eddy's micro-batches are
//! cut by size and linger time, and a model must not depend on where those cuts fall: learning
//! a batch equals learning its rows one at a time (the conformance suite checks it). For the
//! same reason Spark's half-life in *batches* is not offered: the half-life is in points.
//!
//! Like Spark, a dying cluster is revived: after each point, if the smallest positive cluster
//! weight is below `1e-8` × the largest, the largest cluster is split in two (each half the
//! summed weight, centres nudged apart by `±1e-14 · max(|c|, 1)`). Clusters that have never
//! won a point (weight 0) keep their initial centre.
//!
//! Centres are stored as `scale_j · u_j` with `‖c_j‖²` kept alongside, so folding in a sparse
//! row costs O(k · nnz) rather than O(k · dim). `predict` gives the index of the nearest centre;
//! [`Task::Clustering`]. Labels are ignored.

mod init;
mod params;
#[cfg(test)]
mod tests;

pub use params::{Decay, KMeansInit, StreamingKMeansParams, StreamingKMeansValidParams};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::features::{CsrMatrix, Examples, FeatureRow, Features};
use crate::learner::{OnlineLearner, Predictor, Task};

const STEP: &str = "kmeans";

/// Below this scale the centre is written out again (`u ← scale · u`, `scale ← 1`).
const MIN_SCALE: f64 = 1e-30;

/// Streaming k-means (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "KMeansState")]
pub struct StreamingKMeans {
    #[serde(serialize_with = "crate::model::params_json::serialize")]
    params: StreamingKMeansValidParams,
    /// Per-point decay factor `a` (derived from the params, so not stored).
    #[serde(skip_serializing)]
    decay: f64,
    /// Whether the centres exist (k-means++ may still be buffering rows).
    initialized: bool,
    /// Unscaled centres, `k · dim` row-major.
    u: Vec<f64>,
    /// Per-centre scale.
    scale: Vec<f64>,
    /// Per-centre `‖c‖²`.
    norm2: Vec<f64>,
    /// Per-centre weight `n`.
    weight: Vec<f64>,
    /// Rows held for k-means++ seeding, and their importance weights.
    buffer: CsrMatrix,
    buffer_weights: Vec<f32>,
    rows: u64,
}

#[derive(Deserialize)]
struct KMeansState {
    #[serde(deserialize_with = "crate::model::params_json::deserialize")]
    params: StreamingKMeansParams,
    initialized: bool,
    u: Vec<f64>,
    scale: Vec<f64>,
    norm2: Vec<f64>,
    weight: Vec<f64>,
    buffer: CsrMatrix,
    buffer_weights: Vec<f32>,
    rows: u64,
}

impl TryFrom<KMeansState> for StreamingKMeans {
    type Error = Error;

    fn try_from(s: KMeansState) -> Result<Self> {
        use crate::transform::Params;
        let mut m = StreamingKMeans::new(s.params.check()?);
        let k = m.params.k;
        if s.u.len() != m.u.len()
            || [s.scale.len(), s.norm2.len(), s.weight.len()] != [k; 3]
            || s.buffer.dim() != m.params.dim
            || s.buffer.rows() != s.buffer_weights.len()
        {
            return Err(Error::Shape(format!(
                "{STEP}: snapshot arrays do not match the params"
            )));
        }
        m.initialized = s.initialized;
        m.u = s.u;
        m.scale = s.scale;
        m.norm2 = s.norm2;
        m.weight = s.weight;
        m.buffer = s.buffer;
        m.buffer_weights = s.buffer_weights;
        m.rows = s.rows;
        Ok(m)
    }
}

/// `‖x‖²` of a row.
#[inline]
fn sq_norm(row: &FeatureRow<'_>) -> f64 {
    match row {
        FeatureRow::Sparse { values, .. } => values.iter().map(|&v| f64::from(v).powi(2)).sum(),
        FeatureRow::Dense(x) => x.iter().map(|&v| f64::from(v).powi(2)).sum(),
    }
}

/// `x · u` for a dense `u`.
#[inline]
fn dot(row: &FeatureRow<'_>, u: &[f64]) -> f64 {
    match row {
        FeatureRow::Sparse { indices, values } => indices
            .iter()
            .zip(values.iter())
            .map(|(&j, &v)| u[j as usize] * f64::from(v))
            .sum(),
        FeatureRow::Dense(x) => x.iter().zip(u).map(|(&v, c)| c * f64::from(v)).sum(),
    }
}

impl StreamingKMeans {
    /// A model with its initial centres (or an empty k-means++ buffer).
    pub fn new(params: StreamingKMeansValidParams) -> Self {
        let (k, dim) = (params.k, params.dim as usize);
        let mut m = StreamingKMeans {
            decay: params.decay.factor(),
            initialized: true,
            u: vec![0.0; k * dim],
            scale: vec![1.0; k],
            norm2: vec![0.0; k],
            weight: vec![0.0; k],
            buffer: CsrMatrix::with_capacity(params.dim, 0, 0),
            buffer_weights: Vec::new(),
            rows: 0,
            params,
        };
        match &m.params.init {
            KMeansInit::KMeansPlusPlus { .. } => m.initialized = false,
            KMeansInit::Random { std } => init::normal_centers(m.params.seed, *std, &mut m.u),
            KMeansInit::Centers { centers, weight } => {
                m.u.copy_from_slice(centers);
                m.weight.fill(*weight);
            }
        }
        for j in 0..k {
            m.norm2[j] = m.u[j * dim..(j + 1) * dim].iter().map(|v| v * v).sum();
        }
        m
    }

    /// Whether the centres exist yet (k-means++ seeding waits for its rows).
    pub fn is_initialized(&self) -> bool {
        self.initialized
    }

    /// Centre `j` written out into `out` (`dim` values).
    pub fn center(&self, j: usize, out: &mut Vec<f64>) {
        let dim = self.params.dim as usize;
        out.clear();
        out.extend(
            self.u[j * dim..(j + 1) * dim]
                .iter()
                .map(|v| v * self.scale[j]),
        );
    }

    /// The current cluster weights `n_j`.
    pub fn weights(&self) -> &[f64] {
        &self.weight
    }

    /// The nearest centre of a row and the row's dot product with it; `sq` is `‖x‖²`.
    fn nearest(&self, row: &FeatureRow<'_>, sq: f64) -> (usize, f64) {
        let dim = self.params.dim as usize;
        let (mut best, mut best_d, mut best_dot) = (0, f64::INFINITY, 0.0);
        for j in 0..self.params.k {
            let xc = self.scale[j] * dot(row, &self.u[j * dim..(j + 1) * dim]);
            let d = sq - 2.0 * xc + self.norm2[j];
            if d < best_d {
                (best, best_d, best_dot) = (j, d, xc);
            }
        }
        (best, best_dot)
    }

    /// Writes centre `j` out: `u ← scale · u`, `scale ← 1`, and recomputes `‖c‖²` exactly.
    fn materialize(&mut self, j: usize) {
        let dim = self.params.dim as usize;
        let s = self.scale[j];
        let c = &mut self.u[j * dim..(j + 1) * dim];
        let mut n2 = 0.0;
        for v in c.iter_mut() {
            *v *= s;
            n2 += *v * *v;
        }
        self.scale[j] = 1.0;
        self.norm2[j] = n2;
    }

    /// Folds one row into the centres (the row is already known to be finite).
    fn update(&mut self, row: &FeatureRow<'_>, sq: f64, s: f64) {
        if s == 0.0 {
            return;
        }
        let (j, xc) = self.nearest(row, sq);
        let decay = self.decay.powf(s);
        for n in &mut self.weight {
            *n *= decay;
        }
        let dim = self.params.dim as usize;
        let n = self.weight[j];
        let (alpha, beta) = (n / (n + s), s / (n + s));
        self.weight[j] = n + s;
        let new_scale = self.scale[j] * alpha;
        if new_scale < MIN_SCALE {
            // The old centre has (almost) no weight left: restart from the row.
            let f = self.scale[j] * alpha;
            let c = &mut self.u[j * dim..(j + 1) * dim];
            c.iter_mut().for_each(|v| *v *= f);
            self.scale[j] = 1.0;
            self.norm2[j] = 0.0;
            add_row(row, c, beta);
            self.materialize(j);
        } else {
            self.scale[j] = new_scale;
            add_row(row, &mut self.u[j * dim..(j + 1) * dim], beta / new_scale);
            let n2 = alpha * alpha * self.norm2[j] + 2.0 * alpha * beta * xc + beta * beta * sq;
            self.norm2[j] = n2.max(0.0);
        }
        self.split_dying();
    }

    /// Spark's revival of a dying cluster (see the [module docs](self)).
    fn split_dying(&mut self) {
        let (mut big, mut small) = (0, usize::MAX);
        for (j, &n) in self.weight.iter().enumerate() {
            if n > self.weight[big] {
                big = j;
            }
            if n > 0.0 && (small == usize::MAX || n < self.weight[small]) {
                small = j;
            }
        }
        if small == usize::MAX || small == big || self.weight[small] >= 1e-8 * self.weight[big] {
            return;
        }
        let half = (self.weight[big] + self.weight[small]) / 2.0;
        (self.weight[big], self.weight[small]) = (half, half);
        self.materialize(big);
        let dim = self.params.dim as usize;
        self.scale[small] = 1.0;
        for i in 0..dim {
            let x = self.u[big * dim + i];
            let p = 1e-14 * x.abs().max(1.0);
            self.u[big * dim + i] = x + p;
            self.u[small * dim + i] = x - p;
        }
        self.materialize(big);
        self.materialize(small);
    }

    /// Buffers a row for k-means++; seeds and replays the buffer once it is full.
    fn buffer_row(&mut self, row: &FeatureRow<'_>, s: f32) {
        match row {
            FeatureRow::Sparse { indices, values } => {
                for (&j, &v) in indices.iter().zip(values.iter()) {
                    self.buffer.push(j, v);
                }
            }
            FeatureRow::Dense(x) => {
                for (j, &v) in x.iter().enumerate() {
                    if v != 0.0 {
                        self.buffer.push(j as u32, v);
                    }
                }
            }
        }
        self.buffer.finish_row();
        self.buffer_weights.push(s);
        if self.buffer.rows() < self.params.init_rows() {
            return;
        }
        let buf = std::mem::replace(
            &mut self.buffer,
            CsrMatrix::with_capacity(self.params.dim, 0, 0),
        );
        let weights = std::mem::take(&mut self.buffer_weights);
        init::kmeans_plus_plus(&buf, &weights, self.params.k, self.params.seed, &mut self.u);
        let dim = self.params.dim as usize;
        for j in 0..self.params.k {
            self.norm2[j] = self.u[j * dim..(j + 1) * dim].iter().map(|v| v * v).sum();
        }
        self.initialized = true;
        for (i, &w) in weights.iter().enumerate() {
            let (indices, values) = buf.row(i);
            let r = FeatureRow::Sparse { indices, values };
            let sq = sq_norm(&r);
            self.update(&r, sq, f64::from(w));
        }
    }

    fn learn_inner(&mut self, ex: &Examples, mut out: Option<&mut Vec<f32>>) -> Result<()> {
        check_dim(&ex.features, self.params.dim)?;
        for i in 0..ex.len() {
            let s = ex.weight(i);
            if !(s.is_finite() && s >= 0.0) {
                return Err(invalid("weight", i, format!("{s} must be finite and >= 0")));
            }
            let row = ex.features.row(i);
            let sq = sq_norm(&row);
            if !sq.is_finite() {
                return Err(invalid("features", i, "a feature is not finite".into()));
            }
            if let Some(out) = out.as_deref_mut() {
                out.push(self.predict_row(&row, sq));
            }
            self.rows += 1;
            if self.initialized {
                self.update(&row, sq, f64::from(s));
            } else {
                self.buffer_row(&row, s);
            }
        }
        Ok(())
    }

    fn predict_row(&self, row: &FeatureRow<'_>, sq: f64) -> f32 {
        if self.initialized {
            self.nearest(row, sq).0 as f32
        } else {
            0.0
        }
    }
}

/// `c += f · x` over the row's entries.
fn add_row(row: &FeatureRow<'_>, c: &mut [f64], f: f64) {
    match row {
        FeatureRow::Sparse { indices, values } => {
            for (&j, &v) in indices.iter().zip(values.iter()) {
                c[j as usize] += f * f64::from(v);
            }
        }
        FeatureRow::Dense(x) => {
            for (cj, &v) in c.iter_mut().zip(x.iter()) {
                *cj += f * f64::from(v);
            }
        }
    }
}

fn check_dim(x: &Features, dim: u64) -> Result<()> {
    if x.dim() != dim {
        return Err(Error::Shape(format!(
            "{STEP}: features have dim {} but the model has {dim}",
            x.dim()
        )));
    }
    Ok(())
}

fn invalid(column: &str, row: usize, message: String) -> Error {
    Error::InvalidValue {
        step: STEP.into(),
        column: column.into(),
        row,
        message,
    }
}

impl Predictor for StreamingKMeans {
    fn task(&self) -> Task {
        Task::Clustering {
            clusters: self.params.k,
        }
    }

    fn predict(&self, x: &Features, out: &mut Vec<f32>) -> Result<()> {
        check_dim(x, self.params.dim)?;
        out.clear();
        out.extend((0..x.rows()).map(|i| {
            let row = x.row(i);
            self.predict_row(&row, sq_norm(&row))
        }));
        Ok(())
    }
}

impl OnlineLearner for StreamingKMeans {
    fn learn(&mut self, examples: &Examples) -> Result<()> {
        self.learn_inner(examples, None)
    }

    fn predict_learn(&mut self, examples: &Examples, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        self.learn_inner(examples, Some(out))
    }

    fn rows_seen(&self) -> u64 {
        self.rows
    }
}

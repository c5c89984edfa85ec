//! [`DeepModel`]: the learner — sparse tables (wide weights, embeddings) in plain vectors
//! updated row by row, the dense network run by tch, one gradient step per `batch-size` rows.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tch::{Device, Reduction, Tensor};

use super::net::{copy_out, Layout};
use super::params::{DeepParams, DeepValidParams, DeviceChoice};
use super::rows::{check_examples, Rows};
use crate::error::{Error, Result};
use crate::features::{Examples, Features};
use crate::learner::{OnlineLearner, Predictor, Task, UpdateRule};
use crate::online::fm::init_factors;
use crate::transform::Params;

/// Rows per forward pass when predicting (bounds the scratch of one call).
const PREDICT_CHUNK: usize = 4096;

/// Everything a snapshot holds: the params, every table with its optimizer state, the step
/// count and the rows waiting for the next step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct DeepState {
    /// As its JSON text (the rules are internally tagged enums, which bincode cannot read).
    #[serde(with = "crate::model::params_json")]
    params: DeepParams,
    /// Wide weights (`wide_rows` of them) then the bias.
    wide: Vec<f32>,
    wide_state: Vec<f32>,
    /// Embeddings, `table_rows × k`.
    emb: Vec<f32>,
    emb_state: Vec<f32>,
    /// The dense network, flat in [`Layout`] order.
    dense: Vec<f32>,
    dense_state: Vec<f32>,
    /// Gradient steps taken.
    steps: u64,
    rows_seen: u64,
    /// Rows learned since the last step.
    pending: Rows,
}

/// A deep CTR learner (wide & deep, DeepFM or DCN-v2; see the [module docs](super)).
///
/// Learning is chunking-invariant: rows join a pending batch and the model takes one step
/// each time it holds `batch-size` rows, so learning a batch equals learning its rows one at
/// a time, and `predict_learn` predicts every row with the model as it is when that row
/// arrives (progressive validation).
#[derive(Debug, Clone)]
pub struct DeepModel {
    state: DeepState,
    valid: DeepValidParams,
    layout: Layout,
    device: Device,
    wide_rows: u64,
}

/// Scratch of one forward pass, gathered from rows and the sparse tables.
struct Gathered {
    /// `[rows, slots, k]` embedding inputs (scaled by the feature values, zeros where absent).
    emb: Vec<f32>,
    /// `[rows]` wide logits (linear part plus bias).
    wide: Vec<f32>,
}

impl DeepModel {
    /// A fresh learner for checked params.
    pub fn new(valid: DeepValidParams) -> Result<Self> {
        let layout = Layout::new(&valid);
        let k = valid.embedding_dim;
        let wide_rows = wide_rows(&valid.params);
        let sl = valid.sparse_rule.state_len();
        let mut emb = vec![0.0; valid.table_rows as usize * k];
        init_factors(valid.seed, 0, valid.init_std, &mut emb);
        let mut emb_state = vec![0.0; emb.len() * sl];
        init_states(&valid.sparse_rule, &mut emb_state);
        let mut wide_state = vec![0.0; (wide_rows as usize + 1) * sl];
        init_states(&valid.sparse_rule, &mut wide_state);
        let dense = layout.init(valid.seed);
        let mut dense_state = vec![0.0; dense.len() * valid.dense_rule.state_len()];
        init_states(&valid.dense_rule, &mut dense_state);
        let mut pending = Rows::default();
        pending.clear();
        let state = DeepState {
            params: valid.params.clone(),
            wide: vec![0.0; wide_rows as usize + 1],
            wide_state,
            emb,
            emb_state,
            dense,
            dense_state,
            steps: 0,
            rows_seen: 0,
            pending,
        };
        Ok(DeepModel {
            device: resolve_device(valid.device)?,
            wide_rows,
            state,
            valid,
            layout,
        })
    }

    /// The checked params.
    pub fn params(&self) -> &DeepParams {
        &self.valid.params
    }

    /// Gradient steps taken so far.
    pub fn steps(&self) -> u64 {
        self.state.steps
    }

    /// The device the dense network runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    fn check_dim(&self, x: &Features) -> Result<()> {
        if x.dim() != self.state.params.dim {
            return Err(Error::Shape(format!(
                "deep learner of dim {} got features of dim {}",
                self.state.params.dim,
                x.dim()
            )));
        }
        Ok(())
    }

    /// Gathers the inputs of `rows` from the tables.
    fn gather(&self, rows: &Rows) -> Gathered {
        let (s, k) = (self.valid.slots, self.valid.embedding_dim);
        let n = rows.len();
        let table = self.valid.table_rows;
        let bias = self.state.wide[self.wide_rows as usize];
        let mut g = Gathered {
            emb: vec![0.0; n * s * k],
            wide: vec![bias; n],
        };
        for r in 0..n {
            let (idx, val) = rows.row(r);
            let mut z = bias;
            for (&i, &v) in idx.iter().zip(val) {
                z += self.state.wide[(u64::from(i) % self.wide_rows) as usize] * v;
            }
            g.wide[r] = z;
            for (slot, (&i, &v)) in idx.iter().zip(val).take(s).enumerate() {
                let t = (u64::from(i) % table) as usize * k;
                let dst = &mut g.emb[(r * s + slot) * k..(r * s + slot + 1) * k];
                for (d, &e) in dst.iter_mut().zip(&self.state.emb[t..t + k]) {
                    *d = e * v;
                }
            }
        }
        g
    }

    fn inputs(&self, g: &Gathered, rows: usize, grad: bool) -> (Tensor, Tensor) {
        let (s, k) = (self.valid.slots as i64, self.valid.embedding_dim as i64);
        let emb = Tensor::from_slice(&g.emb)
            .view([rows as i64, s, k])
            .to_device(self.device);
        let wide = Tensor::from_slice(&g.wide).to_device(self.device);
        if grad {
            (emb.set_requires_grad(true), wide.set_requires_grad(true))
        } else {
            (emb, wide)
        }
    }

    /// P(y = 1) of `rows` with the model as it is, appended to `out`.
    fn predict_rows(&self, rows: &Rows, out: &mut Vec<f32>) -> Result<()> {
        let n = rows.len();
        if n == 0 {
            return Ok(());
        }
        let g = self.gather(rows);
        let _guard = tch::no_grad_guard();
        let (emb, wide) = self.inputs(&g, n, false);
        let w = self.layout.tensors(&self.state.dense, self.device, false);
        let p = self.layout.forward(&w, &emb, &wide).sigmoid();
        let start = out.len();
        out.resize(start + n, 0.0);
        copy_out(&p, &mut out[start..])
    }

    /// One gradient step on the pending rows; appends their predictions (before the step)
    /// to `out` when given.
    fn step(&mut self, out: Option<&mut Vec<f32>>) -> Result<()> {
        let rows = std::mem::take(&mut self.state.pending);
        let n = rows.len();
        let g = self.gather(&rows);
        let (emb, wide) = self.inputs(&g, n, true);
        let w = self.layout.tensors(&self.state.dense, self.device, true);
        let logit = self.layout.forward(&w, &emb, &wide);
        let y = Tensor::from_slice(&rows.labels).to_device(self.device);
        let wt = Tensor::from_slice(&rows.weights).to_device(self.device);
        let loss =
            logit.binary_cross_entropy_with_logits::<&Tensor>(&y, Some(&wt), None, Reduction::Sum)
                / n as f64;
        loss.backward();
        if let Some(out) = out {
            let start = out.len();
            out.resize(start + n, 0.0);
            copy_out(&logit.detach().sigmoid(), &mut out[start..])?;
        }
        let mut d_emb = g.emb;
        copy_out(&emb.grad(), &mut d_emb)?;
        let mut d_wide = g.wide;
        copy_out(&wide.grad(), &mut d_wide)?;
        let mut d_dense = vec![0.0; self.layout.len];
        self.layout.gradients(&w, &mut d_dense)?;
        if d_dense.iter().chain(&d_wide).any(|g| !g.is_finite()) {
            return Err(Error::Shape(
                "deep learner: non-finite gradient (diverged; lower the learning rates)".into(),
            ));
        }
        self.state.steps += 1;
        let t = self.state.steps;
        let ones = vec![1.0; d_dense.len()];
        self.valid.dense_rule.update_row(
            &mut self.state.dense,
            &mut self.state.dense_state,
            &d_dense,
            &ones,
            t,
        );
        self.update_wide(&rows, &d_wide, t);
        self.update_embeddings(&rows, &d_emb, t);
        let mut rows = rows;
        rows.clear();
        self.state.pending = rows;
        Ok(())
    }

    /// Sums the wide gradient per weight over the batch, then one rule step per weight.
    fn update_wide(&mut self, rows: &Rows, d_logit: &[f32], t: u64) {
        let mut grads: Vec<(u64, f32, f32)> = Vec::with_capacity(rows.indices.len());
        for (r, &dl) in d_logit.iter().enumerate() {
            let (idx, val) = rows.row(r);
            for (&i, &v) in idx.iter().zip(val) {
                grads.push((u64::from(i) % self.wide_rows, dl * v, v));
            }
        }
        grads.push((self.wide_rows, d_logit.iter().sum(), 1.0));
        grads.sort_by_key(|g| g.0);
        let rule = &self.valid.sparse_rule;
        let sl = rule.state_len();
        let mut i = 0;
        while i < grads.len() {
            let key = grads[i].0;
            let (mut g, x) = (0.0, grads[i].2);
            while i < grads.len() && grads[i].0 == key {
                g += grads[i].1;
                i += 1;
            }
            let k = key as usize;
            let state = &mut self.state.wide_state[k * sl..(k + 1) * sl];
            rule.update(&mut self.state.wide[k], state, g, x, t);
        }
    }

    /// Sums the embedding gradient per table row over the batch (chain rule through the
    /// feature value), then one rule step per row.
    fn update_embeddings(&mut self, rows: &Rows, d_emb: &[f32], t: u64) {
        let (s, k) = (self.valid.slots, self.valid.embedding_dim);
        let table = self.valid.table_rows;
        let mut touched: Vec<(u64, usize, f32)> = Vec::with_capacity(rows.len() * s);
        for r in 0..rows.len() {
            let (idx, val) = rows.row(r);
            for (slot, (&i, &v)) in idx.iter().zip(val).take(s).enumerate() {
                touched.push((u64::from(i) % table, r * s + slot, v));
            }
        }
        touched.sort_by_key(|e| (e.0, e.1));
        let rule = &self.valid.sparse_rule;
        let sl = rule.state_len();
        let ones = vec![1.0; k];
        let mut g = vec![0.0; k];
        let mut i = 0;
        while i < touched.len() {
            let key = touched[i].0;
            g.fill(0.0);
            while i < touched.len() && touched[i].0 == key {
                let (_, at, v) = touched[i];
                for (gj, dj) in g.iter_mut().zip(&d_emb[at * k..(at + 1) * k]) {
                    *gj += dj * v;
                }
                i += 1;
            }
            let row = key as usize;
            rule.update_row(
                &mut self.state.emb[row * k..(row + 1) * k],
                &mut self.state.emb_state[row * k * sl..(row + 1) * k * sl],
                &g,
                &ones,
                t,
            );
        }
    }

    /// Learns rows `0..n` of `examples`, stepping whenever the pending batch is full; with
    /// `out`, appends each row's prediction from the model as it is when the row arrives.
    fn learn_rows(&mut self, examples: &Examples, mut out: Option<&mut Vec<f32>>) -> Result<()> {
        self.check_dim(&examples.features)?;
        check_examples(examples)?;
        let n = examples.len();
        let bs = self.valid.batch_size;
        let mut i = 0;
        while i < n {
            let take = (bs - self.state.pending.len()).min(n - i);
            let before = self.state.pending.len();
            for j in i..i + take {
                self.state.pending.push_example(
                    &examples.features,
                    j,
                    examples.labels[j],
                    examples.weight(j),
                );
            }
            if self.state.pending.len() == bs {
                match out.as_deref_mut() {
                    Some(out) => {
                        let mut all = Vec::with_capacity(bs);
                        self.step(Some(&mut all))?;
                        out.extend_from_slice(&all[before..]);
                    }
                    None => self.step(None)?,
                }
            } else if let Some(out) = out.as_deref_mut() {
                let mut fresh = Rows::default();
                fresh.clear();
                for j in i..i + take {
                    fresh.push(&examples.features, j);
                }
                self.predict_rows(&fresh, out)?;
            }
            self.state.rows_seen += take as u64;
            i += take;
        }
        Ok(())
    }
}

fn wide_rows(p: &DeepParams) -> u64 {
    p.dim.min(1u64 << p.wide_bits)
}

fn init_states(rule: &dyn UpdateRule, state: &mut [f32]) {
    let k = rule.state_len();
    if k > 0 {
        for s in state.chunks_exact_mut(k) {
            rule.init_state(s);
        }
    }
}

fn resolve_device(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => Ok(Device::cuda_if_available()),
        DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        DeviceChoice::Cuda => Err(Error::param(
            "deep.device",
            "`cuda` asked for, but the libtorch loaded has no CUDA device",
        )),
    }
}

impl Predictor for DeepModel {
    fn task(&self) -> Task {
        Task::BinaryClassification
    }

    fn predict(&self, x: &Features, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        self.check_dim(x)?;
        let mut rows = Rows::default();
        let mut start = 0;
        while start < x.rows() {
            let end = (start + PREDICT_CHUNK).min(x.rows());
            rows.clear();
            for i in start..end {
                rows.push(x, i);
            }
            self.predict_rows(&rows, out)?;
            start = end;
        }
        Ok(())
    }
}

impl OnlineLearner for DeepModel {
    fn learn(&mut self, examples: &Examples) -> Result<()> {
        self.learn_rows(examples, None)
    }

    fn predict_learn(&mut self, examples: &Examples, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        self.learn_rows(examples, Some(out))
    }

    fn rows_seen(&self) -> u64 {
        self.state.rows_seen
    }
}

impl Serialize for DeepModel {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.state.serialize(s)
    }
}

impl<'de> Deserialize<'de> for DeepModel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let state = DeepState::deserialize(d)?;
        DeepModel::from_state(state).map_err(serde::de::Error::custom)
    }
}

impl DeepModel {
    /// A learner from a snapshot, every size checked (a corrupt snapshot is refused).
    fn from_state(state: DeepState) -> Result<Self> {
        let valid = state.params.check()?;
        let layout = Layout::new(&valid);
        let wide_rows = wide_rows(&valid.params);
        let (sl, dl) = (valid.sparse_rule.state_len(), valid.dense_rule.state_len());
        let emb_len = valid.table_rows as usize * valid.embedding_dim;
        let sizes = [
            ("wide", state.wide.len(), wide_rows as usize + 1),
            (
                "wide-state",
                state.wide_state.len(),
                (wide_rows as usize + 1) * sl,
            ),
            ("emb", state.emb.len(), emb_len),
            ("emb-state", state.emb_state.len(), emb_len * sl),
            ("dense", state.dense.len(), layout.len),
            ("dense-state", state.dense_state.len(), layout.len * dl),
        ];
        for (name, got, want) in sizes {
            if got != want {
                return Err(Error::Shape(format!(
                    "deep learner snapshot: `{name}` has {got} values, the params need {want}"
                )));
            }
        }
        state.pending.validate(valid.dim)?;
        if state.pending.len() >= valid.batch_size {
            return Err(Error::Shape(
                "deep learner snapshot: pending batch overfull".into(),
            ));
        }
        Ok(DeepModel {
            device: resolve_device(valid.device)?,
            wide_rows,
            state,
            valid,
            layout,
        })
    }
}

//! [`FtrlLogisticRegression`]: logistic regression trained by FTRL-Proximal
//! ([`FtrlProximal`], McMahan et al. 2013).
//!
//! Layout: one flat array of `dim` slots `[w, z, n]` indexed by hashed feature (12 bytes, so a
//! feature's weight and state share one cache line: one memory access per feature per row at
//! `2^22` features, where the table no longer fits in cache), plus one slot for the intercept.
//! The array is an eddy-core [`ChunkedTable`] (copy-on-write pages of copy-on-write chunks of
//! [`DENSE_CHUNK_SLOTS`] slots, `f32` bits in relaxed atomics):
//! [`FtrlLogisticRegression::slot_snapshot`] freezes it in O(pages), so a
//! checkpoint writes the weights off the data path and only the chunks changed since the last
//! one ([`eddy_core::state`]).

use eddy_core::state::{ChunkEntry, ChunkedTable, TableSnapshot, DENSE_CHUNK_SLOTS};
use serde::{Deserialize, Serialize};

use super::{binary_target, check_indices, for_each_entry, resolve_dim, sigmoid};
use crate::error::{Error, Result};
use crate::features::{Examples, Features};
use crate::learner::{OnlineLearner, Predictor, Task};
use crate::model::table::DecodedTable;
use crate::optim::{FtrlProximal, FtrlProximalParams};
use crate::transform::Params;

mod hot;
mod shared;

pub use shared::SharedFtrl;

const NAME: &str = "ftrl-logistic-regression";

/// Parameters of [`FtrlLogisticRegression`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct FtrlLogisticParams {
    /// The FTRL rule: `alpha` 0.1, `beta` 1, `l1` 0, `l2` 0 by default.
    pub ftrl: FtrlProximalParams,
    /// The model has `2^bits` weights (1..=31). Default 22. Ignored when `dim` is set.
    pub bits: u32,
    /// An explicit number of weights (1..=2^32), e.g. `2^bits + 1` for a hasher with a bias
    /// column. Default: none (`2^bits`).
    pub dim: Option<u64>,
    /// Learn an intercept (a constant feature 1 under the same rule). Default true.
    pub fit_intercept: bool,
}

impl Default for FtrlLogisticParams {
    fn default() -> Self {
        FtrlLogisticParams {
            ftrl: FtrlProximalParams::default(),
            bits: 22,
            dim: None,
            fit_intercept: true,
        }
    }
}

impl FtrlLogisticParams {
    /// Checks the params and builds a fresh model (all weights and state zero).
    pub fn build(&self) -> Result<FtrlLogisticRegression> {
        let rule = self.ftrl.check()?;
        let dim = resolve_dim(NAME, self.bits, self.dim)?;
        Ok(FtrlLogisticRegression {
            rule,
            dim,
            fit_intercept: self.fit_intercept,
            slots: ChunkedTable::new(dim as usize, DENSE_CHUNK_SLOTS),
            bias: [0.0; 3],
            rows_seen: 0,
        })
    }
}

/// FTRL-Proximal logistic regression; build it with [`FtrlLogisticParams::build`].
/// `predict` gives `P(label = 1)`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "FtrlSnapshot")]
pub struct FtrlLogisticRegression {
    rule: FtrlProximal,
    dim: u64,
    fit_intercept: bool,
    /// `[w, z, n]` per feature, as `f32` bits.
    slots: ChunkedTable<3>,
    /// `[w, z, n]` of the intercept.
    bias: [f32; 3],
    rows_seen: u64,
}

/// The serialized form, written from any slot table: the model's own, or weights shared by
/// several threads ([`SharedFtrl`]) read in place.
#[derive(Serialize)]
#[serde(bound(serialize = "F: Fn(usize) -> [f32; 3]"))]
struct FtrlWire<'a, F: Fn(usize) -> [f32; 3]> {
    rule: &'a FtrlProximal,
    dim: u64,
    fit_intercept: bool,
    slots: SlotsOf<F>,
    bias: [f32; 3],
    rows_seen: u64,
}

/// `dim` slots read by a function, serialized as a checked table (`model::table`).
struct SlotsOf<F>(usize, F);

impl<F: Fn(usize) -> [f32; 3]> Serialize for SlotsOf<F> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        crate::model::table::serialize_indexed(self.0, &self.1, s)
    }
}

impl Serialize for FtrlLogisticRegression {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.wire(|i| floats(self.slots.get(i)), self.bias)
            .serialize(s)
    }
}

/// An FTRL model without its slots ([`FtrlLogisticRegression::shape`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FtrlShape {
    rule: FtrlProximal,
    dim: u64,
    fit_intercept: bool,
    bias: [f32; 3],
    rows_seen: u64,
}

/// The serialized form, checked on load (the table must have `dim` slots).
#[derive(Deserialize)]
struct FtrlSnapshot {
    rule: FtrlProximal,
    dim: u64,
    fit_intercept: bool,
    slots: DecodedTable<[f32; 3]>,
    bias: [f32; 3],
    rows_seen: u64,
}

impl TryFrom<FtrlSnapshot> for FtrlLogisticRegression {
    type Error = Error;
    fn try_from(s: FtrlSnapshot) -> Result<Self> {
        if s.slots.len() as u64 != s.dim {
            return Err(Error::Shape(format!(
                "{NAME} snapshot: {} slots for dim {}",
                s.slots.len(),
                s.dim
            )));
        }
        // only the non-zero slots are set: the chunks of zeros stay the table's one shared
        // zero chunk (nothing allocated, nothing copied)
        let mut slots = ChunkedTable::new(s.slots.len(), DENSE_CHUNK_SLOTS);
        s.slots
            .for_each_nonzero(|i, slot| slots.set(i, slot.map(f32::to_bits)));
        Ok(FtrlLogisticRegression {
            rule: s.rule,
            dim: s.dim,
            fit_intercept: s.fit_intercept,
            slots,
            bias: s.bias,
            rows_seen: s.rows_seen,
        })
    }
}

impl FtrlLogisticRegression {
    /// The number of weights (the largest feature index plus one that it accepts).
    pub fn dim(&self) -> u64 {
        self.dim
    }

    /// The update rule.
    pub fn rule(&self) -> &FtrlProximal {
        &self.rule
    }

    /// The weight of feature `i` (None when out of range).
    pub fn weight(&self, i: usize) -> Option<f32> {
        (i < self.slots.len()).then(|| f32::from_bits(self.slots.get(i)[0]))
    }

    /// All weights, by feature index.
    pub fn weights(&self) -> impl ExactSizeIterator<Item = f32> + '_ {
        (0..self.slots.len()).map(|i| f32::from_bits(self.slots.get(i)[0]))
    }

    /// The `[w, z, n]` slots frozen as of now, for a checkpoint written off the data path:
    /// O(number of pages) (see [`eddy_core::state`]).
    pub fn slot_snapshot(&mut self) -> TableSnapshot<3> {
        self.slots.snapshot()
    }

    /// Everything but the slots (rule, shape, intercept, row count): what a checkpoint keeps
    /// besides the chunks of [`slot_snapshot`](Self::slot_snapshot).
    pub fn shape(&self) -> FtrlShape {
        FtrlShape {
            rule: self.rule,
            dim: self.dim,
            fit_intercept: self.fit_intercept,
            bias: self.bias,
            rows_seen: self.rows_seen,
        }
    }

    /// The model of `shape` with the slots of a checkpoint's chunks (written from
    /// [`slot_snapshot`](Self::slot_snapshot), every chunk inline), refusing chunks of another
    /// shape or a non-finite intercept; the error names `what`.
    pub fn from_parts(shape: FtrlShape, chunks: &[ChunkEntry<'_>], what: &str) -> Result<Self> {
        if shape.dim == 0 || shape.dim > 1 << 32 || !shape.bias.iter().all(|x| x.is_finite()) {
            return Err(Error::Shape(format!(
                "{what}: {NAME} of dim {} with intercept {:?}",
                shape.dim, shape.bias
            )));
        }
        let slots = ChunkedTable::restore(shape.dim as usize, DENSE_CHUNK_SLOTS, chunks, what)
            .map_err(|e| Error::Shape(format!("{NAME}: {e}")))?;
        Ok(FtrlLogisticRegression {
            rule: shape.rule,
            dim: shape.dim,
            fit_intercept: shape.fit_intercept,
            slots,
            bias: shape.bias,
            rows_seen: shape.rows_seen,
        })
    }

    /// The intercept (0 when `fit_intercept` is false).
    pub fn intercept(&self) -> f32 {
        self.bias[0]
    }

    /// The [`LogisticGradientModel`](super::LogisticGradientModel) of the same shape, for
    /// training these weights on a parameter server with this model's rule.
    pub fn gradient_model(&self) -> super::LogisticGradientModel {
        super::LogisticGradientModel::new(self.dim, self.fit_intercept)
    }

    /// Seeds the model with weights trained elsewhere (a batch logistic regression): feature
    /// `i < weights.len()` gets weight `weights[i]`, the intercept `intercept`, with `n = 0` and
    /// `z` chosen by [`FtrlProximal::z_for_weight`] — with `c = β/α + λ₂`,
    /// `z = −(w c + sgn(w) λ₁)` — so the lazily computed FTRL weight equals the given one and
    /// the first gradients move it from there. Meant for a fresh model; features past
    /// `weights.len()` keep their state. Refuses more weights than `dim`, non-finite weights,
    /// and `β = λ₂ = 0` (no finite `z` then).
    pub fn warm_start(&mut self, weights: &[f32], intercept: f32) -> Result<()> {
        if weights.len() as u64 > self.dim {
            return Err(Error::Shape(format!(
                "{NAME}: warm start with {} weights, but the model's dim is {}",
                weights.len(),
                self.dim
            )));
        }
        let zs: Vec<f32> = weights
            .iter()
            .map(|&w| self.rule.z_for_weight(w))
            .collect::<Result<_>>()?;
        let zb = if self.fit_intercept {
            self.rule.z_for_weight(intercept)?
        } else {
            0.0
        };
        for (i, (&w, z)) in weights.iter().zip(zs).enumerate() {
            let slot = [self.rule.weight(z, 0.0), z, 0.0];
            debug_assert!((slot[0] - w).abs() <= 1e-5 * (1.0 + w.abs()));
            self.slots.set(i, slot.map(f32::to_bits));
        }
        if self.fit_intercept {
            self.bias = [self.rule.weight(zb, 0.0), zb, 0.0];
        }
        Ok(())
    }

    /// This model with every weight and its state at zero (shape, rule and row count kept):
    /// the start of a full resync from a parameter server, whose missing rows are zeros.
    pub fn zeroed(&self) -> Self {
        FtrlLogisticRegression {
            slots: ChunkedTable::new(self.dim as usize, DENSE_CHUNK_SLOTS),
            bias: [0.0; 3],
            ..*self
        }
    }

    /// Seeds one weight trained elsewhere (a parameter server's row, as the delta feed sends
    /// it): the intercept when `feature` is `None`, else feature `feature`'s. Its state becomes
    /// a warm start's (`z` for the weight, `n` = 0), as [`warm_start`](Self::warm_start) sets
    /// every slot. Refuses a feature outside `dim` and a non-finite weight.
    pub fn set_weight(&mut self, feature: Option<u64>, w: f32) -> Result<()> {
        let z = self.rule.z_for_weight(w)?;
        let slot = [self.rule.weight(z, 0.0), z, 0.0];
        match feature {
            None if self.fit_intercept => self.bias = slot,
            None => {}
            Some(i) if i < self.dim => self.slots.set(i as usize, slot.map(f32::to_bits)),
            Some(i) => {
                return Err(Error::Shape(format!(
                    "{NAME}: weight of feature {i}, but the model's dim is {}",
                    self.dim
                )))
            }
        }
        Ok(())
    }

    /// The serialized form of this model's shape and rule with the slots `slot(i)` and
    /// intercept `bias`.
    fn wire<F: Fn(usize) -> [f32; 3]>(&self, slot: F, bias: [f32; 3]) -> FtrlWire<'_, F> {
        FtrlWire {
            rule: &self.rule,
            dim: self.dim,
            fit_intercept: self.fit_intercept,
            slots: SlotsOf(self.dim as usize, slot),
            bias,
            rows_seen: self.rows_seen,
        }
    }

    /// This model without its slots (shape, rule and row count only), for [`SharedFtrl`].
    fn shape_only(&self) -> Self {
        FtrlLogisticRegression {
            slots: ChunkedTable::new(0, DENSE_CHUNK_SLOTS),
            ..*self
        }
    }

    /// The margin `b + Σ w_i x_i` of row `r`.
    #[inline(always)]
    fn margin(&self, x: &Features, r: usize) -> f32 {
        let slots = &self.slots;
        let mut m = self.bias[0];
        for_each_entry(&x.row(r), |i, v| {
            m += f32::from_bits(slots.get_word(i, 0)) * v
        });
        m
    }

    fn run<const PREDICT: bool>(&mut self, ex: &Examples, out: &mut Vec<f32>) -> Result<()> {
        check_indices(NAME, &ex.features, self.dim)?;
        let (rule, fit_intercept) = (self.rule, self.fit_intercept);
        let mut table = Owned {
            slots: &mut self.slots,
            bias: &mut self.bias,
        };
        run::<PREDICT, _>(&rule, fit_intercept, &mut table, ex, out);
        self.rows_seen += ex.len() as u64;
        Ok(())
    }
}

/// Where FTRL keeps its `[w, z, n]` slots: owned by one learner ([`Owned`]) or shared by the
/// threads of data-parallel training ([`SharedFtrl`]). One step function serves both.
pub(super) trait SlotTable {
    /// Feature `i`'s slot.
    fn get(&self, i: usize) -> [f32; 3];
    /// Feature `i`'s weight (`get(i)[0]`, which a table may read alone).
    #[inline(always)]
    fn weight(&self, i: usize) -> f32 {
        self.get(i)[0]
    }
    /// Sets feature `i`'s slot.
    fn set(&mut self, i: usize, slot: [f32; 3]);
    /// The intercept's slot.
    fn bias(&self) -> [f32; 3];
    /// Sets the intercept's slot.
    fn set_bias(&mut self, slot: [f32; 3]);
    /// A row's step is done (a table of replicas merges them now and then).
    #[inline(always)]
    fn row_done(&mut self) {}
}

/// One learner's own slots.
struct Owned<'a> {
    slots: &'a mut ChunkedTable<3>,
    bias: &'a mut [f32; 3],
}

#[inline(always)]
fn floats(bits: [u32; 3]) -> [f32; 3] {
    bits.map(f32::from_bits)
}

impl SlotTable for Owned<'_> {
    #[inline(always)]
    fn get(&self, i: usize) -> [f32; 3] {
        floats(self.slots.get(i))
    }

    #[inline(always)]
    fn weight(&self, i: usize) -> f32 {
        f32::from_bits(self.slots.get_word(i, 0))
    }

    #[inline(always)]
    fn set(&mut self, i: usize, slot: [f32; 3]) {
        self.slots.set(i, slot.map(f32::to_bits));
    }

    #[inline(always)]
    fn bias(&self) -> [f32; 3] {
        *self.bias
    }

    #[inline(always)]
    fn set_bias(&mut self, slot: [f32; 3]) {
        *self.bias = slot;
    }
}

/// The fused pass over a batch whose indices were checked: per row, the margin once, then (if
/// `PREDICT`) the prediction, then the FTRL step on every entry and the intercept. The layout
/// is matched once per batch. Sparse entries are not filtered for zeros: an FTRL step with
/// `g = 0` leaves `z`, `n` and `w` exactly as they were, so the result is the same as skipping
/// them.
#[inline(always)]
pub(super) fn run<const PREDICT: bool, T: SlotTable>(
    rule: &FtrlProximal,
    fit_intercept: bool,
    table: &mut T,
    ex: &Examples,
    out: &mut Vec<f32>,
) {
    if PREDICT {
        out.reserve(ex.len());
    }
    match &ex.features {
        Features::Sparse(m) => {
            for r in 0..ex.len() {
                let (idx, val) = m.row(r);
                let entries = idx.iter().map(|&i| i as usize).zip(val.iter().copied());
                step_row::<PREDICT, _, _>(rule, fit_intercept, table, entries, ex, r, out);
                table.row_done();
            }
        }
        Features::Dense(a) => {
            for (r, row) in a.rows().into_iter().enumerate() {
                let entries = row.iter().copied().enumerate().filter(|e| e.1 != 0.0);
                step_row::<PREDICT, _, _>(rule, fit_intercept, table, entries, ex, r, out);
                table.row_done();
            }
        }
    }
}

/// Predicts and learns example `r`, whose nonzero entries are `entries`.
#[inline(always)]
fn step_row<const PREDICT: bool, T: SlotTable, I>(
    rule: &FtrlProximal,
    fit_intercept: bool,
    table: &mut T,
    entries: I,
    ex: &Examples,
    r: usize,
    out: &mut Vec<f32>,
) where
    I: Iterator<Item = (usize, f32)> + Clone,
{
    let mut margin = table.bias()[0];
    for (i, v) in entries.clone() {
        margin += table.weight(i) * v;
    }
    let p = sigmoid(margin);
    if PREDICT {
        out.push(p);
    }
    let g = ex.weight(r) * (p - binary_target(ex.labels[r]));
    for (i, v) in entries {
        let [w, mut z, mut n] = table.get(i);
        let w = rule.step(w, &mut z, &mut n, g * v);
        table.set(i, [w, z, n]);
    }
    if fit_intercept {
        let [w, mut z, mut n] = table.bias();
        let w = rule.step(w, &mut z, &mut n, g);
        table.set_bias([w, z, n]);
    }
}

impl Predictor for FtrlLogisticRegression {
    fn task(&self) -> Task {
        Task::BinaryClassification
    }

    fn predict(&self, x: &Features, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        check_indices(NAME, x, self.dim)?;
        out.extend((0..x.rows()).map(|r| sigmoid(self.margin(x, r))));
        Ok(())
    }
}

impl OnlineLearner for FtrlLogisticRegression {
    fn learn(&mut self, examples: &Examples) -> Result<()> {
        self.run::<false>(examples, &mut Vec::new())
    }

    fn predict_learn(&mut self, examples: &Examples, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        self.run::<true>(examples, out)
    }

    fn rows_seen(&self) -> u64 {
        self.rows_seen
    }
}

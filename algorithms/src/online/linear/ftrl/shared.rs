//! [`SharedFtrl`]: one FTRL-Proximal model trained by several threads at once without locks
//! (Hogwild!, Recht et al. 2011), for data-parallel training on one machine.
//!
//! The `[w, z, n]` slots live in one array of relaxed atomics that every handle
//! ([`SharedFtrl::handle`]) reads and writes: a row's step reads a slot, computes the FTRL
//! update and writes it back, so two threads stepping the same feature at the same moment can
//! lose one of the two updates. On sparse click data collisions are rare (the popular features
//! collide most), which is Hogwild's premise: the model converges as a sequential one does,
//! but it is not reproducible run to run. A handle's step is the owned model's
//! ([`super::run`]), so one handle alone trains exactly as [`FtrlLogisticRegression`].
//!
//! The slots nearly every row steps (the intercept, numeric columns, low-cardinality
//! categories) are the exception: there every row would collide, and their cache lines would
//! move between the cores on every row. Each handle steps its own replicas of those and merges
//! them into the shared slots every 256 rows and after each batch ([`super::hot`]), losing no
//! update.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use super::hot::HotSlots;
use super::{run, FtrlLogisticRegression, SlotTable, NAME};
use crate::error::Result;
use crate::features::{Examples, Features};
use crate::learner::{OnlineLearner, Predictor, Task};
use crate::online::linear::{check_indices, for_each_entry, sigmoid};
use crate::optim::FtrlProximal;

/// A handle on FTRL weights shared between threads (see the [module docs](self)).
pub struct SharedFtrl {
    /// The model's rule, shape and the rows it had seen when shared, without slots.
    template: Arc<FtrlLogisticRegression>,
    /// `[w, z, n]` per feature, then the intercept's, as `f32` bits.
    slots: Arc<[[AtomicU32; 3]]>,
    /// How many times [`load`](SharedFtrl::load) overwrote the slots.
    loads: Arc<AtomicU64>,
    /// This handle's replicas of the hot slots, and the `loads` they were read after.
    hot: Box<HotSlots>,
    hot_loads: u64,
    /// Rows this handle learned.
    rows_seen: u64,
}

fn atomic(slot: [f32; 3]) -> [AtomicU32; 3] {
    slot.map(|x| AtomicU32::new(x.to_bits()))
}

impl SharedFtrl {
    /// Shares `model`'s weights (copied in).
    pub fn new(model: &FtrlLogisticRegression) -> Self {
        let slots = (0..model.slots.len())
            .map(|i| super::floats(model.slots.get(i)))
            .chain(std::iter::once(model.bias))
            .map(atomic)
            .collect::<Arc<[_]>>();
        SharedFtrl {
            template: Arc::new(model.shape_only()),
            hot: Box::new(HotSlots::new(&slots)),
            slots,
            loads: Arc::default(),
            hot_loads: 0,
            rows_seen: 0,
        }
    }

    /// Another handle on the same weights (its own row count and hot replicas).
    pub fn handle(&self) -> Self {
        SharedFtrl {
            template: self.template.clone(),
            slots: self.slots.clone(),
            loads: self.loads.clone(),
            hot: Box::new(HotSlots::new(&self.slots)),
            hot_loads: self.loads.load(Ordering::SeqCst),
            rows_seen: 0,
        }
    }

    /// The shared weights as an owned model, read slot by slot while others may write (each
    /// slot is one consistent `[w, z, n]` only if nobody stepped it meanwhile). Its row count
    /// is the model's when shared.
    pub fn to_local(&self) -> FtrlLogisticRegression {
        let table = Atomics(&self.slots);
        let dim = self.template.dim as usize;
        let mut slots =
            eddy_core::state::ChunkedTable::new(dim, eddy_core::state::DENSE_CHUNK_SLOTS);
        // zero slots stay in the table's shared zero chunk (nothing allocated for them)
        for i in 0..dim {
            let bits = table.get(i).map(f32::to_bits);
            if bits != [0; 3] {
                slots.set(i, bits);
            }
        }
        FtrlLogisticRegression {
            slots,
            bias: table.bias(),
            ..self.template.shape_only()
        }
    }

    /// Overwrites the shared weights with `model`'s (a restore), refusing another shape. Call
    /// it between batches: every handle reads its hot replicas again before its next one.
    pub fn load(&self, model: &FtrlLogisticRegression) -> Result<()> {
        if model.dim != self.template.dim || model.fit_intercept != self.template.fit_intercept {
            return Err(crate::error::Error::Shape(format!(
                "{NAME}: restoring a model of dim {} into shared weights of dim {}",
                model.dim, self.template.dim
            )));
        }
        let mut table = Atomics(&self.slots);
        for i in 0..model.slots.len() {
            table.set(i, super::floats(model.slots.get(i)));
        }
        table.set_bias(model.bias);
        self.loads.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// The shared slots as a [`SlotTable`]: relaxed loads and stores (no read-modify-write
/// atomicity, see the [module docs](self)).
struct Atomics<'a>(&'a [[AtomicU32; 3]]);

impl Atomics<'_> {
    #[inline(always)]
    fn load(slot: &[AtomicU32; 3]) -> [f32; 3] {
        [0, 1, 2].map(|k| f32::from_bits(slot[k].load(Ordering::Relaxed)))
    }

    #[inline(always)]
    fn store(slot: &[AtomicU32; 3], value: [f32; 3]) {
        for (a, v) in slot.iter().zip(value) {
            a.store(v.to_bits(), Ordering::Relaxed);
        }
    }
}

impl SlotTable for Atomics<'_> {
    #[inline(always)]
    fn get(&self, i: usize) -> [f32; 3] {
        Self::load(&self.0[i])
    }

    #[inline(always)]
    fn set(&mut self, i: usize, slot: [f32; 3]) {
        Self::store(&self.0[i], slot)
    }

    #[inline(always)]
    fn bias(&self) -> [f32; 3] {
        Self::load(&self.0[self.0.len() - 1])
    }

    #[inline(always)]
    fn set_bias(&mut self, slot: [f32; 3]) {
        Self::store(&self.0[self.0.len() - 1], slot)
    }
}

/// The shared slots as a handle steps them: its replica where a slot is hot, the shared
/// slot otherwise.
struct Replicated<'a> {
    shared: Atomics<'a>,
    hot: &'a mut HotSlots,
    rule: &'a FtrlProximal,
    /// Rows stepped since the replicas were last merged.
    rows: usize,
}

/// Rows a handle steps between two merges of its replicas: the staleness of the hot slots
/// (a merge costs a few atomic adds per hot slot, a row several contended cache lines).
const MERGE_ROWS: usize = 256;

impl SlotTable for Replicated<'_> {
    #[inline(always)]
    fn get(&self, i: usize) -> [f32; 3] {
        match self.hot.find(i as u32) {
            Some(p) => self.hot.get(p),
            None => self.shared.get(i),
        }
    }

    #[inline(always)]
    fn set(&mut self, i: usize, slot: [f32; 3]) {
        match self.hot.find(i as u32) {
            Some(p) => self.hot.set(p, slot),
            None => self.shared.set(i, slot),
        }
    }

    #[inline(always)]
    fn bias(&self) -> [f32; 3] {
        self.hot.get(HotSlots::INTERCEPT)
    }

    #[inline(always)]
    fn set_bias(&mut self, slot: [f32; 3]) {
        self.hot.set(HotSlots::INTERCEPT, slot)
    }

    #[inline(always)]
    fn row_done(&mut self) {
        self.rows += 1;
        if self.rows == MERGE_ROWS {
            self.rows = 0;
            self.hot.sync(self.rule, self.shared.0);
        }
    }
}

/// The bytes of [`to_local`](SharedFtrl::to_local)'s model, read from the shared weights in
/// place (no owned copy of the table first).
impl serde::Serialize for SharedFtrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let table = Atomics(&self.slots);
        self.template
            .wire(|i| table.get(i), table.bias())
            .serialize(s)
    }
}

impl Predictor for SharedFtrl {
    fn task(&self) -> Task {
        Task::BinaryClassification
    }

    fn predict(&self, x: &Features, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        check_indices(NAME, x, self.template.dim)?;
        let table = Atomics(&self.slots);
        for r in 0..x.rows() {
            let mut m = table.bias()[0];
            for_each_entry(&x.row(r), |i, v| m += table.get(i)[0] * v);
            out.push(sigmoid(m));
        }
        Ok(())
    }
}

impl SharedFtrl {
    fn learn_batch<const PREDICT: bool>(
        &mut self,
        ex: &Examples,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        check_indices(NAME, &ex.features, self.template.dim)?;
        let loads = self.loads.load(Ordering::SeqCst);
        if loads != self.hot_loads {
            self.hot.reload(&self.slots);
            self.hot_loads = loads;
        }
        self.hot.observe(ex, &self.slots);
        let t = &self.template;
        let mut table = Replicated {
            shared: Atomics(&self.slots),
            hot: &mut self.hot,
            rule: &t.rule,
            rows: 0,
        };
        run::<PREDICT, _>(&t.rule, t.fit_intercept, &mut table, ex, out);
        self.hot.sync(&t.rule, &self.slots);
        self.rows_seen += ex.len() as u64;
        Ok(())
    }
}

impl OnlineLearner for SharedFtrl {
    fn learn(&mut self, examples: &Examples) -> Result<()> {
        self.learn_batch::<false>(examples, &mut Vec::new())
    }

    fn predict_learn(&mut self, examples: &Examples, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        self.learn_batch::<true>(examples, out)
    }

    fn rows_seen(&self) -> u64 {
        self.rows_seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::CsrMatrix;
    use crate::online::linear::FtrlLogisticParams;

    fn model() -> FtrlLogisticRegression {
        FtrlLogisticParams {
            dim: Some(64),
            ..Default::default()
        }
        .build()
        .unwrap()
    }

    /// `rows` pseudo-random draws from `seed` (a linear congruential generator).
    fn draws(rows: usize, seed: u64) -> impl Iterator<Item = u64> {
        std::iter::successors(Some(seed), |s| {
            Some(
                s.wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407),
            )
        })
        .skip(1)
        .take(rows)
    }

    fn examples(rows: usize, seed: u64) -> Examples {
        let mut x = CsrMatrix::with_capacity(64, rows, 3);
        let mut labels = Vec::new();
        for s in draws(rows, seed) {
            let a = ((s >> 33) % 64) as u32;
            x.push(a, 1.0);
            x.push((a * 7 + 3) % 64, 0.5);
            x.finish_row();
            labels.push((a % 3 == 0) as u8 as f32);
        }
        Examples::new(Features::Sparse(x), labels, None).unwrap()
    }

    #[test]
    fn one_handle_trains_exactly_as_the_owned_model() {
        let data = examples(500, 1);
        let mut owned = model();
        let mut shared = SharedFtrl::new(&owned);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        owned.predict_learn(&data, &mut a).unwrap();
        shared.predict_learn(&data, &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(shared.to_local(), {
            let mut o = owned.clone();
            o.rows_seen = 0;
            o
        });
    }

    /// Rows with a numeric column in every row (index 0), a 4-valued category (1..=4) and a
    /// sparse one (8..64): what hot replicas are for.
    fn mixed_examples(rows: usize, seed: u64) -> Examples {
        let mut x = CsrMatrix::with_capacity(64, rows, 3);
        let mut labels = Vec::new();
        for s in draws(rows, seed) {
            let (a, b) = (((s >> 33) % 4) as u32, ((s >> 40) % 56) as u32);
            x.push(0, ((s >> 20) % 100) as f32 / 100.0);
            x.push(1 + a, 1.0);
            x.push(8 + b, 1.0);
            x.finish_row();
            labels.push((a == 0 || b % 5 == 0) as u8 as f32);
        }
        Examples::new(Features::Sparse(x), labels, None).unwrap()
    }

    #[test]
    fn one_handle_with_hot_replicas_trains_exactly_as_the_owned_model() {
        let mut owned = model();
        let mut shared = SharedFtrl::new(&owned).handle();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        // past the sample: the numeric column and the category are replicas by then
        for k in 0..12 {
            let data = mixed_examples(1000, k);
            owned.predict_learn(&data, &mut a).unwrap();
            shared.predict_learn(&data, &mut b).unwrap();
            assert_eq!(a, b, "batch {k}");
        }
        let mut o = owned.clone();
        o.rows_seen = 0;
        assert_eq!(shared.to_local(), o);
    }

    /// Rows without features, labelled 1 every third: only the intercept learns.
    fn intercept_only(rows: usize) -> Examples {
        let mut x = CsrMatrix::with_capacity(64, rows, 0);
        (0..rows).for_each(|_| x.finish_row());
        let labels = (0..rows).map(|r| (r % 3 == 0) as u8 as f32).collect();
        Examples::new(Features::Sparse(x), labels, None).unwrap()
    }

    #[test]
    fn two_handles_merge_their_intercept_steps_without_losing_one() {
        let shared = SharedFtrl::new(&model());
        let (mut a, mut b) = (shared.handle(), shared.handle());
        let n = |s: &SharedFtrl| s.to_local().bias[2];
        a.learn(&intercept_only(300)).unwrap();
        let n_a = n(&shared);
        // b's replica was read before a's merge: its steps are those of a handle alone
        let alone = SharedFtrl::new(&model());
        alone.handle().learn(&intercept_only(200)).unwrap();
        let n_b = n(&alone);
        b.learn(&intercept_only(200)).unwrap();
        let merged = n(&shared);
        assert!(
            (merged - (n_a + n_b)).abs() <= 1e-5 * merged,
            "n = Σ g² of both handles: {merged} vs {n_a} + {n_b}"
        );
    }

    #[test]
    fn a_handle_reads_its_replicas_again_after_a_load() {
        let shared = SharedFtrl::new(&model());
        let mut h = shared.handle();
        for k in 0..6 {
            h.learn(&mixed_examples(1000, k)).unwrap();
        }
        shared.load(&model()).unwrap();
        let fresh = SharedFtrl::new(&model());
        for k in 6..8 {
            h.learn(&mixed_examples(1000, k)).unwrap();
            fresh.handle().learn(&mixed_examples(1000, k)).unwrap();
        }
        assert_eq!(shared.to_local(), fresh.to_local());
    }

    #[test]
    fn handles_share_the_weights_and_a_load_restores_them() {
        let shared = SharedFtrl::new(&model());
        let mut h = shared.handle();
        h.learn(&examples(200, 2)).unwrap();
        let trained = shared.to_local();
        assert_ne!(
            trained,
            model(),
            "the handle's steps are in the shared weights"
        );
        shared.load(&model()).unwrap();
        assert_eq!(shared.to_local(), model());
        let other = FtrlLogisticParams {
            dim: Some(8),
            ..Default::default()
        }
        .build()
        .unwrap();
        assert!(shared.load(&other).is_err(), "another shape is refused");
    }

    #[test]
    fn the_shared_weights_serialize_as_their_owned_model() {
        let shared = SharedFtrl::new(&model());
        shared.handle().learn(&examples(300, 3)).unwrap();
        let kind = "ftrl-logistic-regression";
        let bytes = crate::model::encode(kind, &shared).unwrap();
        assert_eq!(
            bytes,
            crate::model::encode(kind, &shared.to_local()).unwrap()
        );
        let back: FtrlLogisticRegression = crate::model::decode(&bytes, kind).unwrap();
        assert_eq!(back, shared.to_local());
    }

    #[test]
    fn two_threads_train_one_model() {
        let shared = SharedFtrl::new(&model());
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let mut h = shared.handle();
                std::thread::spawn(move || {
                    for k in 0..20 {
                        h.learn(&examples(50, 10 * t + k)).unwrap();
                    }
                    h.rows_seen()
                })
            })
            .collect();
        let rows: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(rows, 2_000);
        let mut preds = Vec::new();
        let data = examples(300, 99);
        shared
            .to_local()
            .predict(&data.features, &mut preds)
            .unwrap();
        let correct = preds
            .iter()
            .zip(&data.labels)
            .filter(|(p, y)| (**p > 0.5) == (**y > 0.5))
            .count();
        assert!(correct > 250, "the shared model learned: {correct}/300");
    }
}

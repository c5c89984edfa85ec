//! [`PsLearner`]: a [`PsWorker`] as a synchronous
//! [`OnlineLearner`], for callers that are not async — the training engine's learner operator
//! drives it like any local learner (progressive validation, label delay).

use std::future::Future;
use std::sync::Mutex;

use eddy_algorithms::features::{Examples, Features};
use eddy_algorithms::learner::{GradientModel, OnlineLearner, Predictor, Task};

use super::PsWorker;
use crate::error::Result;
use crate::store::ParamStore;

/// A [`PsWorker`] behind the [`OnlineLearner`] interface. Each call blocks on the store's
/// futures on `runtime` (the network's); called from a worker thread of a multi-threaded
/// tokio runtime (a dataflow operator) it lets that runtime move its other tasks elsewhere
/// meanwhile (`block_in_place`), so a `bounded`/`sync` wait for slower workers never starves
/// them. Not for a current-thread runtime.
pub struct PsLearner<S, M: ?Sized> {
    worker: Mutex<PsWorker<S, M>>,
    runtime: tokio::runtime::Handle,
}

impl<S: ParamStore, M: GradientModel + ?Sized> PsLearner<S, M> {
    /// `worker` driven on `runtime`; registers it with the consistency clocks.
    pub fn start(mut worker: PsWorker<S, M>, runtime: tokio::runtime::Handle) -> Result<Self> {
        block(&runtime, worker.start())?;
        Ok(PsLearner {
            worker: Mutex::new(worker),
            runtime,
        })
    }

    /// Deregisters from the clocks (so the other workers are not held back): at the end of
    /// the worker's input. Rows learned so far.
    pub fn finish(self) -> Result<u64> {
        let worker = self.worker.into_inner().unwrap_or_else(|p| p.into_inner());
        let report = block(&self.runtime, worker.finish())?;
        Ok(report.rows)
    }

    fn with<T>(&self, f: impl FnOnce(&mut PsWorker<S, M>) -> T) -> T {
        f(&mut self.worker.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Runs `future` to completion on `runtime` from synchronous code.
fn block<F: Future>(runtime: &tokio::runtime::Handle, future: F) -> F::Output {
    tokio::task::block_in_place(|| runtime.block_on(future))
}

/// An algorithms error for a store failure (the learner interface speaks the algorithms
/// crate's errors): the message names the store's error.
fn algo(e: crate::Error) -> eddy_algorithms::Error {
    eddy_algorithms::Error::Store(e.to_string())
}

impl<S: ParamStore, M: GradientModel + ?Sized> Predictor for PsLearner<S, M> {
    fn task(&self) -> Task {
        self.with(|w| w.task())
    }

    fn predict(&self, x: &Features, out: &mut Vec<f32>) -> eddy_algorithms::Result<()> {
        let rt = self.runtime.clone();
        self.with(|w| block(&rt, w.predict(x, out))).map_err(algo)
    }
}

impl<S: ParamStore, M: GradientModel + ?Sized> OnlineLearner for PsLearner<S, M> {
    fn learn(&mut self, examples: &Examples) -> eddy_algorithms::Result<()> {
        let mut scratch = Vec::new();
        self.predict_learn(examples, &mut scratch)
    }

    fn predict_learn(
        &mut self,
        examples: &Examples,
        out: &mut Vec<f32>,
    ) -> eddy_algorithms::Result<()> {
        let rt = self.runtime.clone();
        let worker = self.worker.get_mut().unwrap_or_else(|p| p.into_inner());
        block(&rt, worker.predict_learn(examples, out)).map_err(algo)
    }

    fn rows_seen(&self) -> u64 {
        self.with(|w| w.rows())
    }
}

//! Feature steps as dataflow operators: a [`Pipeline`]'s steps run inside an eddy-core
//! dataflow, frozen (transform only, as in serving) or following the stream (update, then
//! transform — River's semantics for online statistics in a pipeline; steps whose statistics
//! are labels or a key's history transform first, see [`FeatureStep::follow`]).
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{ArrayRef, Float64Array};
//! use arrow::record_batch::RecordBatch;
//! use eddy_algorithms::feature::numeric::{StandardScaler, StandardScalerParams};
//! use eddy_algorithms::stream::{FeatureMode, FeaturesExt};
//! use eddy_algorithms::transform::{FeatureStep, Params};
//! use eddy_core::prelude::*;
//!
//! let batch = RecordBatch::try_from_iter([(
//!     "x",
//!     Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0])) as ArrayRef,
//! )])?;
//! let scaler = StandardScaler::new(
//!     StandardScalerParams { input_cols: vec!["x".into()], ..Default::default() }.check()?,
//! );
//! let steps: Vec<Box<dyn FeatureStep>> = vec![Box::new(scaler)];
//! let out = MemorySink::new();
//! let flow = Dataflow::new(DataflowConfig::default());
//! flow.source("rows", MemorySource::from_batches(vec![batch])?)
//!     .feature_steps("scale", steps, FeatureMode::Follow)
//!     .sink("out", out.clone());
//! flow.run()?;
//! assert_eq!(out.num_rows(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Pipeline`]: crate::pipeline::Pipeline

use arrow::record_batch::RecordBatch;
use eddy_core::dataflow::Stream;
use eddy_core::operator::{factory_from_clone, Collector, Operator, TaskInfo};

use crate::error::Error;
use crate::transform::FeatureStep;

/// How feature steps treat the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeatureMode {
    /// Transform only, with the statistics as given (serving, or a model fitted on history).
    Frozen,
    /// Update each step's statistics with the batch and transform it
    /// ([`FeatureStep::follow`]: target encoding and windowed aggregates transform first).
    Follow,
}

/// Runs feature steps in order on every batch. Each parallel subtask holds its own copy of the
/// steps (so in `Follow` mode, each follows the part of the stream it sees: key the stream first
/// when statistics must be per key).
#[derive(Debug, Clone)]
pub struct FeatureOperator {
    name: String,
    subtask: usize,
    steps: Vec<Box<dyn FeatureStep>>,
    mode: FeatureMode,
}

impl FeatureOperator {
    /// An operator over `steps`.
    pub fn new(name: &str, steps: Vec<Box<dyn FeatureStep>>, mode: FeatureMode) -> Self {
        FeatureOperator {
            name: name.to_string(),
            subtask: 0,
            steps,
            mode,
        }
    }

    fn core_error(&self, e: Error) -> eddy_core::Error {
        let domain = e.domain();
        eddy_core::Error::Operator {
            operator: self.name.clone(),
            subtask: self.subtask,
            message: e.to_string(),
            domain,
        }
    }
}

impl Operator for FeatureOperator {
    fn on_start(&mut self, task: &TaskInfo) -> eddy_core::Result<()> {
        self.subtask = task.subtask;
        Ok(())
    }

    fn process(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Collector,
    ) -> eddy_core::Result<()> {
        let mut b = batch;
        for i in 0..self.steps.len() {
            let step = &mut self.steps[i];
            let r = match self.mode {
                FeatureMode::Follow => step.follow(&b),
                FeatureMode::Frozen => step.transform(&b),
            };
            b = match r {
                Ok(b) => b,
                Err(e) => return Err(self.core_error(e)),
            };
        }
        out.emit(b);
        Ok(())
    }

    fn snapshot(
        &mut self,
        _epoch: eddy_core::message::Epoch,
    ) -> eddy_core::Result<Option<Vec<u8>>> {
        let saved = self
            .steps
            .iter()
            .map(|s| Ok(serde_json::json!({"kind": s.kind(), "state": s.save()?})))
            .collect::<Result<Vec<_>, Error>>()
            .map_err(|e| self.core_error(e))?;
        serde_json::to_vec(&saved)
            .map(Some)
            .map_err(|e| eddy_core::Error::Internal(format!("feature state: {e}")))
    }

    fn restore(&mut self, state: &[u8]) -> eddy_core::Result<()> {
        let saved: Vec<serde_json::Value> = serde_json::from_slice(state)
            .map_err(|e| eddy_core::Error::Internal(format!("feature state: {e}")))?;
        let steps = saved
            .into_iter()
            .map(|v| {
                let kind = v["kind"].as_str().unwrap_or_default().to_string();
                crate::feature::load_step(&kind, v["state"].clone())
            })
            .collect::<Result<Vec<_>, Error>>()
            .map_err(|e| self.core_error(e))?;
        self.steps = steps;
        Ok(())
    }
}

/// Adds feature steps to dataflow streams.
pub trait FeaturesExt {
    /// Runs `steps` in order on every batch of the stream.
    fn feature_steps(
        &self,
        name: &str,
        steps: Vec<Box<dyn FeatureStep>>,
        mode: FeatureMode,
    ) -> Stream;
}

impl FeaturesExt for Stream {
    fn feature_steps(
        &self,
        name: &str,
        steps: Vec<Box<dyn FeatureStep>>,
        mode: FeatureMode,
    ) -> Stream {
        self.apply(
            name,
            factory_from_clone(FeatureOperator::new(name, steps, mode)),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, AsArray, Float64Array};
    use arrow::datatypes::Float64Type;
    use eddy_core::message::Epoch;

    use super::*;
    use crate::feature::numeric::{StandardScaler, StandardScalerParams};
    use crate::transform::Params;

    fn scaler() -> Vec<Box<dyn FeatureStep>> {
        let p = StandardScalerParams {
            input_cols: vec!["x".into()],
            ..Default::default()
        };
        vec![Box::new(StandardScaler::new(p.check().unwrap()))]
    }

    fn batch(xs: &[f64]) -> RecordBatch {
        RecordBatch::try_from_iter([("x", Arc::new(Float64Array::from(xs.to_vec())) as ArrayRef)])
            .unwrap()
    }

    #[test]
    fn follow_updates_then_transforms_and_snapshots_restore() {
        let mut op = FeatureOperator::new("scale", scaler(), FeatureMode::Follow);
        let mut out = Collector::default();
        op.process(0, batch(&[1.0, 3.0]), &mut out).unwrap();
        let got = out.take_data();
        let x = got[0].column(0).as_primitive::<Float64Type>();
        assert_eq!(x.values(), &[-1.0, 1.0]);
        let state = op.snapshot(Epoch(1)).unwrap().unwrap();
        let mut restored = FeatureOperator::new("scale", scaler(), FeatureMode::Follow);
        restored.restore(&state).unwrap();
        op.process(0, batch(&[5.0]), &mut out).unwrap();
        restored.process(0, batch(&[5.0]), &mut out).unwrap();
        let got = out.take_data();
        assert_eq!(got[0], got[1]);
    }

    #[test]
    fn errors_name_the_operator() {
        let mut op = FeatureOperator::new("scale", scaler(), FeatureMode::Frozen);
        let mut out = Collector::default();
        let e = op
            .process(0, batch(&[1.0]), &mut out)
            .unwrap_err()
            .to_string();
        assert!(e.contains("scale"), "{e}");
    }
}

//! What the training job's fault tests share (`workflow/tests/train_job.rs` on a generator,
//! the root `tests/kafka_train.rs` on a Kafka topic): the standard pipeline over a schema's
//! columns, a job configuration with fast checkpoints and restarts, and what an outcome is
//! compared by.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;
use std::time::Duration;

use arrow::datatypes::{DataType, Schema};
use eddy_algorithms::learners::{LearnerKind, LearnerSpec};
use eddy_algorithms::pipeline::{Pipeline, StandardPipeline};
use eddy_core::dataflow::{FaultInjection, RestartPolicy};
use eddy_workflow::train::{FailoverMode, TrainConfig, TrainOutcome};

/// Rows per micro-batch.
pub const BATCH: usize = 250;

/// The standard pipeline over `schema`: `label` is the label, string columns are
/// categorical, the others numeric (scaled), hashed into 2^16 features.
pub fn pipeline(schema: &Schema) -> Pipeline {
    let (mut numeric, mut categorical) = (Vec::new(), Vec::new());
    for f in schema.fields().iter().filter(|f| f.name() != "label") {
        match f.data_type() {
            DataType::Utf8 => categorical.push(f.name().clone()),
            _ => numeric.push(f.name().clone()),
        }
    }
    StandardPipeline {
        label: "label".into(),
        numeric,
        categorical,
        crosses: vec![],
        scale: true,
        dense: false,
        hash_bits: 16,
    }
    .build()
    .unwrap()
}

/// FTRL in batches of [`BATCH`] rows, checkpoints every 3 ms under `dir` (none without one),
/// up to 10 restarts after 1 ms, `faults` injected.
pub fn config(dir: Option<&Path>, mode: FailoverMode, faults: Vec<FaultInjection>) -> TrainConfig {
    let mut config = TrainConfig::new("test", LearnerSpec::new(LearnerKind::Ftrl));
    config.batch_rows = Some(BATCH);
    config.checkpoint.dir = dir.map(|d| d.join("checkpoints"));
    config.checkpoint.interval = Some(Duration::from_millis(3));
    config.failover.mode = mode;
    config.failover.restart = RestartPolicy {
        initial_backoff: Duration::from_millis(1),
        ..RestartPolicy::restarts(10)
    };
    config.faults = faults;
    config
}

/// The trained model's bytes (pipeline and learner).
pub fn model_bytes(o: &TrainOutcome) -> Vec<u8> {
    o.trained.to_bytes().unwrap()
}

/// Rows `operator` took in over all its subtasks and attempts.
pub fn records_in(o: &TrainOutcome, operator: &str) -> u64 {
    o.summary.operator(operator).map_or(0, |s| s.records_in)
}

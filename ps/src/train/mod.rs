//! PS-backed online training: [`PsWorker`] trains a
//! [`GradientModel`](eddy_algorithms::learner::GradientModel) whose tables live in any
//! [`ParamStore`](crate::ParamStore), with progressive validation.
//!
//! A worker cuts each batch it is given into mini-batches of `batch_rows` rows and, per
//! mini-batch: waits for the consistency bound (`bounded`/`sync`), computes the keys, pulls
//! their rows, **predicts the mini-batch and records the predictions in its metrics before
//! learning it** (progressive validation, as the local learners do), computes the gradients
//! at the pulled rows, pushes them (the store applies the tables' rules) and advances its
//! clock. Several workers — one per dataflow subtask, or tokio task — share one model through
//! the store; their [`WorkerReport`]s merge into one. [`ftrl_model`] reads an FTRL store back
//! into a local [`FtrlLogisticRegression`](eddy_algorithms::online::linear::FtrlLogisticRegression)
//! (to save, publish or serve it).
//!
//! ```
//! use std::sync::Arc;
//! use eddy_algorithms::features::{CsrMatrix, Examples, Features};
//! use eddy_algorithms::online::linear::LogisticGradientModel;
//! use eddy_algorithms::optim::FtrlProximalParams;
//! use eddy_ps::train::{ftrl_tables, PsWorker, PsWorkerConfig};
//! use eddy_ps::{LocalPsConfig, WorkerId};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let ps = Arc::new(LocalPsConfig::new(ftrl_tables(FtrlProximalParams::default())).build()?);
//! let model = Arc::new(LogisticGradientModel::new(8, true));
//! let mut x = CsrMatrix::with_capacity(8, 2, 2);
//! x.push(1, 1.0);
//! x.push(3, 1.0);
//! x.finish_row();
//! x.push(2, 1.0);
//! x.finish_row();
//! let batch = Examples::new(Features::Sparse(x), vec![1.0, 0.0], None)?;
//! let mut w = PsWorker::new(ps.clone(), model, PsWorkerConfig::new(WorkerId(0)));
//! w.start().await?;
//! w.process(&batch).await?;
//! let report = w.finish().await?;
//! assert_eq!(report.rows, 2);
//! assert!(report.metrics.get("logloss").is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod export;
mod learner;
mod worker;

pub use export::{fm_model, ftrl_model};
pub use learner::PsLearner;
pub use worker::{PsWorker, PsWorkerConfig, WorkerReport};

use eddy_algorithms::online::fm::FmParams;
use eddy_algorithms::optim::{FtrlProximalParams, RuleParams};

use crate::table::{Initializer, TableConfig};

/// The table of [`LogisticGradientModel`](eddy_algorithms::online::linear::LogisticGradientModel)
/// (`"w"`, dim 1) under FTRL-Proximal, so the store trains like
/// [`FtrlLogisticRegression`](eddy_algorithms::online::linear::FtrlLogisticRegression).
pub fn ftrl_tables(ftrl: FtrlProximalParams) -> Vec<TableConfig> {
    vec![TableConfig {
        rule: RuleParams::Ftrl(ftrl),
        ..TableConfig::new("w", 1)
    }]
}

/// The tables of [`FmGradientModel`](eddy_algorithms::online::fm::FmGradientModel): `"w"`
/// (dim 1, zeros, `rule_w`) and `"v"` (dim `factors`, normal with `init_std` and `seed`,
/// `rule_v`).
pub fn fm_tables(p: &FmParams) -> Vec<TableConfig> {
    vec![
        TableConfig {
            rule: p.rule_w,
            ..TableConfig::new("w", 1)
        },
        TableConfig {
            rule: p.rule_v,
            init: Initializer::Normal {
                std: p.init_std,
                seed: p.seed,
            },
            ..TableConfig::new("v", p.factors)
        },
    ]
}

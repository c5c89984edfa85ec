//! From the store back to a local model: [`ftrl_model`] reads the `"w"` table of
//! [`ftrl_tables`](super::ftrl_tables) into an [`FtrlLogisticRegression`], and [`fm_model`]
//! the `"w"` and `"v"` tables of [`fm_tables`](super::fm_tables) into a
//! [`FactorizationMachine`], so a model trained through a parameter server can be saved,
//! published and served like one trained in process.

use eddy_algorithms::online::fm::{self, FactorizationMachine, FmValidParams};
use eddy_algorithms::online::linear::{FtrlLogisticParams, FtrlLogisticRegression, BIAS_KEY};

use crate::clock::WorkerId;
use crate::error::{Error, Result};
use crate::local::{Delta, DeltaCursor};
use crate::store::ParamStore;

/// The model the store's `"w"` table holds: an [`FtrlLogisticRegression`] built from `params`
/// (its `ftrl` must be the table's rule and `dim` the feature space the workers trained on),
/// warm-started with the table's current weights (feature `i` at key `i`, the intercept at
/// [`BIAS_KEY`]). Rows the store never created keep weight 0, as a fresh row pulls.
///
/// It predicts what [`LogisticGradientModel`](eddy_algorithms::online::linear::LogisticGradientModel)
/// predicts at the pulled weights; its FTRL state starts over (`z` set for the weights, `n` =
/// 0), as after any warm start. Refuses a key outside `0..dim` (other than the intercept's).
pub async fn ftrl_model<S: ParamStore>(
    store: &S,
    params: &FtrlLogisticParams,
) -> Result<FtrlLogisticRegression> {
    let mut model = params.build().map_err(algo)?;
    let dim = model.dim();
    let delta = read_table(store, "w", 1).await?;
    let mut weights = vec![0.0f32; dim as usize];
    let mut intercept = 0.0;
    for (&key, &w) in delta.keys.iter().zip(&delta.values) {
        if key == BIAS_KEY {
            intercept = w;
        } else if key < dim {
            weights[key as usize] = w;
        } else {
            return Err(Error::shape(
                "w",
                format!("key {key} is outside the model's {dim} features"),
            ));
        }
    }
    model.warm_start(&weights, intercept).map_err(algo)?;
    Ok(model)
}

/// The model the store's `"w"` and `"v"` tables hold: a [`FactorizationMachine`] of `params`
/// (the params the tables were made from) with the tables' current weights and factors (the
/// bias at [`fm::BIAS_KEY`]). Rows the store never created keep what a fresh model has —
/// weight 0, the seeded factors — which is what such a row pulls. Rule state starts over.
/// Refuses a key outside `0..dim` and rows of the wrong width.
pub async fn fm_model<S: ParamStore>(
    store: &S,
    params: FmValidParams,
) -> Result<FactorizationMachine> {
    let mut model = FactorizationMachine::new(params);
    let delta = read_table(store, "w", 1).await?;
    for (&key, &w) in delta.keys.iter().zip(&delta.values) {
        let feature = (key != fm::BIAS_KEY).then_some(key);
        model.set_weight(feature, w).map_err(algo)?;
    }
    let k = params.factors;
    let delta = read_table(store, "v", k).await?;
    for (&key, v) in delta.keys.iter().zip(delta.values.chunks(k)) {
        model.set_factors(key, v).map_err(algo)?;
    }
    Ok(model)
}

/// An algorithms error of the export (no worker's).
fn algo(source: eddy_algorithms::Error) -> Error {
    Error::Model {
        worker: WorkerId(u32::MAX),
        source,
    }
}

/// Every row of `table` (a full resync of the delta feed), checked to hold `width` values per
/// key.
async fn read_table<S: ParamStore>(store: &S, table: &str, width: usize) -> Result<Delta> {
    let mut delta = Delta::default();
    store
        .delta(table, &mut DeltaCursor::default(), &mut delta)
        .await?;
    if delta.values.len() != delta.keys.len() * width {
        return Err(Error::shape(
            table,
            format!("expected {width} value(s) per key"),
        ));
    }
    Ok(delta)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use eddy_algorithms::features::{CsrMatrix, Examples, Features};
    use eddy_algorithms::learner::{GradientModel, Predictor};
    use eddy_algorithms::online::linear::LogisticGradientModel;
    use eddy_algorithms::optim::FtrlProximalParams;

    use super::*;
    use crate::train::{ftrl_tables, PsWorker, PsWorkerConfig};
    use crate::LocalPsConfig;

    const DIM: u64 = 16;

    /// Rows with two or three active features each, the label a function of the first.
    fn examples(rows: usize, seed: u64) -> Examples {
        let mut x = CsrMatrix::with_capacity(DIM, rows, 3);
        let mut labels = Vec::with_capacity(rows);
        let mut s = seed;
        for _ in 0..rows {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let a = (s >> 33) % DIM;
            let b = (s >> 40) % DIM;
            x.push(a as u32, 1.0);
            if b != a {
                x.push(b as u32, 0.5);
            }
            x.finish_row();
            labels.push(if a < DIM / 2 { 1.0 } else { 0.0 });
        }
        Examples::new(Features::Sparse(x), labels, None).unwrap()
    }

    #[tokio::test]
    async fn exported_model_predicts_what_the_store_predicts() {
        let ftrl = FtrlProximalParams {
            alpha: 0.3,
            beta: 1.0,
            l1: 0.5,
            l2: 0.1,
        };
        let ps = Arc::new(LocalPsConfig::new(ftrl_tables(ftrl)).build().unwrap());
        let grad = Arc::new(LogisticGradientModel::new(DIM, true));
        for w in 0..2u32 {
            let mut worker =
                PsWorker::new(ps.clone(), grad.clone(), PsWorkerConfig::new(WorkerId(w)));
            worker.start().await.unwrap();
            worker.process(&examples(400, 7 + w as u64)).await.unwrap();
            worker.finish().await.unwrap();
        }
        let params = FtrlLogisticParams {
            ftrl,
            dim: Some(DIM),
            ..Default::default()
        };
        let model = ftrl_model(&*ps, &params).await.unwrap();
        assert!(model.intercept() != 0.0);
        assert!(model.weights().filter(|w| *w != 0.0).count() > 2);

        // the store's own prediction: pull the rows and predict with the gradient model
        let test = examples(300, 99);
        let mut keys = vec![Vec::new()];
        grad.keys(&test.features, &mut keys);
        let mut rows = vec![Vec::new()];
        ps.pull("w", &keys[0], &mut rows[0]).await.unwrap();
        let mut want = Vec::new();
        grad.predict_with(&test.features, &keys, &rows, &mut want)
            .unwrap();
        let mut got = Vec::new();
        model.predict(&test.features, &mut got).unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-6, "exported {g} vs store {w}");
        }
        // the model learned the rule
        assert!(
            got.iter()
                .zip(&test.labels)
                .filter(|(p, y)| (**p > 0.5) == (**y > 0.5))
                .count()
                > 250
        );
    }

    #[tokio::test]
    async fn refuses_keys_outside_the_model() {
        let ps = LocalPsConfig::new(ftrl_tables(FtrlProximalParams::default()))
            .build()
            .unwrap();
        ps.push("w", &[DIM + 3], &[0.5], None).await.unwrap();
        let params = FtrlLogisticParams {
            dim: Some(DIM),
            ..Default::default()
        };
        let err = ftrl_model(&ps, &params).await.unwrap_err().to_string();
        assert!(err.contains("outside the model's 16 features"), "{err}");
    }
}

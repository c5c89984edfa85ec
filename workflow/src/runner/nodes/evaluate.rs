//! `evaluate`: scores one version of a model on a held-out source, records the metrics in the
//! version's metadata under the node's name (`gate.auc`), and promotes it to `validated` if
//! every threshold holds. A rejected version is not an error: the node
//! succeeds, records the verdict, and its dependents do not run for that version.

use eddy_algorithms::eval::MetricSet;
use eddy_algorithms::features::{Examples, Features};
use eddy_algorithms::learner::Predictor;
use eddy_algorithms::trained::{TrainedModel, TRAINED_MODEL_KIND};

use super::{NodeCtx, Outcome, Progress};
use crate::error::{Error, Result};
use crate::registry::Stage;
use crate::runner::data::SourceReader;
use crate::spec::NodeKind;

pub(crate) fn run(ctx: &NodeCtx) -> Result<Outcome> {
    let NodeKind::Evaluate(e) = &ctx.spec.kind else {
        unreachable!("evaluate::run on another kind")
    };
    let version = match ctx.input_version {
        Some(v) => v,
        None => {
            ctx.registry
                .latest(&e.model)?
                .ok_or_else(|| Error::Node {
                    node: ctx.spec.name.clone(),
                    message: format!("`{}` has published no version to evaluate", e.model),
                })?
                .version
        }
    };
    let trained: TrainedModel = ctx.registry.load(&e.model, version, TRAINED_MODEL_KIND)?;
    let mut set = MetricSet::for_task(trained.model.task());
    let mut reader = SourceReader::open(&ctx.wf, &e.source, ctx.stop.clone(), &ctx.generators)?;
    let mut ex = Examples::new(Features::Sparse(Default::default()), Vec::new(), None)?;
    let mut preds = Vec::new();
    let mut rows = 0u64;
    while let Some(batch) = reader.next_batch()? {
        trained.pipeline.examples_into(&batch, &mut ex)?;
        trained.model.predict(&ex.features, &mut preds)?;
        set.update_batch(&preds, &ex.labels, None)?;
        rows += batch.num_rows() as u64;
        ctx.report(Progress::Rows {
            node: ctx.spec.name.clone(),
            rows,
        });
    }
    let values = set.values();
    let metrics = values
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| (k.to_string(), v))
        .collect::<std::collections::BTreeMap<_, _>>();
    let mut failed = Vec::new();
    let mut check = |name: &str, bound: Option<f64>, at_least: bool| {
        if let Some(bound) = bound {
            let got = values.get(name).unwrap_or(f64::NAN);
            let ok = if at_least { got >= bound } else { got <= bound };
            if !ok {
                failed.push(format!(
                    "{name} {got:.4} {} {bound}",
                    if at_least { "<" } else { ">" }
                ));
            }
        }
    };
    check("auc", e.min_auc, true);
    check("logloss", e.max_logloss, false);
    check("accuracy", e.min_accuracy, true);
    let summary = metrics
        .iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect::<Vec<_>>()
        .join(", ");
    // the verdict's evidence stays with the version, validated or not
    let gate = &ctx.spec.name;
    let annotations = metrics
        .iter()
        .map(|(k, v)| (format!("{gate}.{k}"), *v))
        .collect();
    ctx.registry.annotate(&e.model, version, &annotations)?;
    if failed.is_empty() {
        ctx.registry.promote(&e.model, version, Stage::Validated)?;
        Ok(Outcome {
            rows,
            metrics,
            version: Some(version),
            pass: true,
            message: Some(format!("{}/v{version} validated ({summary})", e.model)),
        })
    } else {
        Ok(Outcome {
            rows,
            metrics,
            version: Some(version),
            pass: false,
            message: Some(format!(
                "{}/v{version} rejected: {}",
                e.model,
                failed.join(", ")
            )),
        })
    }
}

//! `deploy`: moves a model version to a stage (default `production`, which archives the
//! previous production version). The version is the one its trigger passed on (the version a
//! gate validated); without one, the newest `validated` version.

use super::{NodeCtx, Outcome};
use crate::error::{Error, Result};
use crate::registry::Stage;
use crate::spec::NodeKind;

pub(crate) fn run(ctx: &NodeCtx) -> Result<Outcome> {
    let NodeKind::Deploy(d) = &ctx.spec.kind else {
        unreachable!("deploy::run on another kind")
    };
    let version = match ctx.input_version {
        Some(v) => v,
        None => {
            ctx.registry
                .by_stage(&d.model, Stage::Validated)?
                .pop()
                .ok_or_else(|| Error::Node {
                    node: ctx.spec.name.clone(),
                    message: format!("`{}` has no validated version to deploy", d.model),
                })?
                .version
        }
    };
    let meta = ctx.registry.promote(&d.model, version, d.stage)?;
    let stage = serde_json::to_value(meta.stage)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    Ok(Outcome {
        version: Some(version),
        pass: true,
        message: Some(format!("{}/v{version} → {stage}", d.model)),
        ..Default::default()
    })
}

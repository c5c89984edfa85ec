//! `serve`: the model server ([`crate::serving::Server`]) on the node's address, serving the
//! newest version of the model in the node's stage and swapping in new ones as they are
//! promoted, until the rest of the workflow has finished (or Ctrl-C; with `--serve-forever`
//! only Ctrl-C). Its server's state goes on the run's server board, so a dashboard of the run
//! shows its requests, latency, errors, versions and swaps. It reports where it listens and a ready-to-paste `curl` with a real row. A
//! serve node that never had a version to serve (every version rejected by its gate, say)
//! fails, so `eddy run` says so and exits non-zero.

use std::time::Duration;

use arrow::record_batch::RecordBatch;

use super::{NodeCtx, Outcome, Progress};
use crate::error::{Error, Result};
use crate::registry::Stage;
use crate::runner::data::SourceReader;
use crate::serving::{ServeConfig, Server};
use crate::spec::NodeKind;

/// How often the server re-reads the registry for stage changes.
const POLL: Duration = Duration::from_millis(200);

pub(crate) async fn run(ctx: &NodeCtx) -> Result<Outcome> {
    let NodeKind::Serve(s) = &ctx.spec.kind else {
        unreachable!("serve::run on another kind")
    };
    let selector = match s.stage {
        Stage::Candidate => s.model.clone(),
        stage => format!("{}@{}", s.model, crate::serving::policy::stage_name(stage)),
    };
    let config = ServeConfig {
        models: vec![selector.parse()?],
        poll: POLL,
        ..ServeConfig::default()
    };
    let server = Server::new(ctx.registry.clone(), config).await?;
    server.state().show_jobs(ctx.jobs.clone());
    ctx.servers.show(&ctx.spec.name, server.state());
    let listener = tokio::net::TcpListener::bind(s.address)
        .await
        .map_err(|e| Error::Node {
            node: ctx.spec.name.clone(),
            message: format!("cannot listen on {}: {e}", s.address),
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("listener", e))?;
    let url = format!("http://{addr}/v1/models/{}/predict", s.model);
    let example = {
        let c = ctx.clone();
        let model = s.model.clone();
        tokio::task::spawn_blocking(move || example_row(&c, &model))
            .await
            .ok()
            .flatten()
    };
    let curl = example.map(|row| {
        format!(
            "curl -s -X POST {url} -H 'content-type: application/json' -d '{{\"rows\":[{row}]}}'"
        )
    });
    ctx.report(Progress::Serving {
        node: ctx.spec.name.clone(),
        url: url.clone(),
        curl,
    });
    let mut wind_down = ctx.wind_down.clone();
    let state = server.state();
    server
        .run(listener, None, async move {
            let _ = wind_down.wait_for(|done| *done).await;
        })
        .await?;
    if state.models().iter().all(|m| m.current().is_none()) {
        // the server answered 503 all along: say so rather than succeed
        return Err(Error::Node {
            node: ctx.spec.name.clone(),
            message: format!(
                "served nothing: `{selector}` never had a version to serve (no version of `{}` \
                 reached that stage; did its gate reject every version?)",
                s.model
            ),
        });
    }
    Ok(Outcome {
        pass: true,
        message: Some(format!("served {selector} at {url}")),
        ..Default::default()
    })
}

/// The first row of the model's training source as a JSON object without the label, for the
/// example request.
fn example_row(ctx: &NodeCtx, model: &str) -> Option<String> {
    let train = ctx.wf.node(model)?.kind.train()?;
    let label = &ctx.wf.features.get(&train.features)?.label;
    let mut reader =
        SourceReader::open(&ctx.wf, &train.source, ctx.stop.clone(), &ctx.generators).ok()?;
    let batch = reader.next_batch().ok()??;
    let row = batch.slice(0, 1);
    let keep: Vec<usize> = (0..row.num_columns())
        .filter(|&i| row.schema().field(i).name() != label)
        .collect();
    let row: RecordBatch = row.project(&keep).ok()?;
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    writer.write(&row).ok()?;
    writer.finish().ok()?;
    let text = String::from_utf8(writer.into_inner()).ok()?;
    let text = text.trim();
    Some(text.strip_prefix('[')?.strip_suffix(']')?.to_string())
}

//! Following a parameter server: a served model carries the training job's weights seconds
//! after they change, not only at each published version.
//!
//! A job that trains through `eddy ps serve` shards publishes a version now and then (a
//! model file of the whole weight table). With [`ServeConfig::follow_ps`](super::ServeConfig)
//! the server also asks the shards, every [`follow_every`](super::ServeConfig::follow_every),
//! for the rows of each served model's weight table changed since it last asked (the PS
//! delta feed, [`ParamStore::delta`]), writes them into a copy of the serving version and
//! swaps that in as the version's next *revision* ([`LoadedModel::revision`]). The copy is
//! cheap: FTRL weights are a copy-on-write table, so a revision copies only the chunks its
//! rows touch.
//!
//! - **What follows.** FTRL models (the shards' `"w"` table, keyed by feature with the
//!   intercept at [`BIAS_KEY`]). Other learners serve their published versions as before
//!   (logged once). The weight table must be the served model's: its keys within the model's
//!   features, or the revision is refused and logged, and the version keeps serving.
//! - **Versions still win.** When a new version is swapped in (a publication, a stage
//!   change), the follower starts over from it with a full resync: the shards are the truth,
//!   and rows they do not hold are zero, as a fresh row pulls. Shards that hold no row of
//!   the table at all (training not started, or the wrong shards) leave the version serving
//!   as published rather than zeroing it.
//! - **Gates apply to versions.** An evaluation gate passes or fails published versions; the
//!   revisions between two versions are the live training weights and are not gated. Follow
//!   a parameter server where freshness matters more than the gate, and serve pinned or
//!   staged versions without following where it does not.
//! - **Staleness.** After a poll, the served weights are the shards' as of that poll;
//!   `eddy_serving_model_ps_behind_seconds` on `/metrics` is the time since then. A shard
//!   that does not answer leaves the last revision serving and the gauge growing.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eddy_algorithms::online::linear::BIAS_KEY;
use eddy_algorithms::trained::{OnlineModel, TrainedModel};
use eddy_ps::local::{Delta, DeltaCursor};
use eddy_ps::store::ParamStore;
use eddy_ps::train::ftrl_tables;
use eddy_ps::{PsClient, PsClientConfig};

use super::model::LoadedModel;
use super::state::{ServedModel, ServingState};
use crate::error::{Error, Result};
use crate::train::ps_error;

/// What one served model's follower remembers between polls.
struct Follower {
    /// The version the revisions build on.
    version: u64,
    cursor: DeltaCursor,
    delta: Delta,
    client: PsClient,
}

/// Follows the shards at `shards` every `every` until `shutdown` (see the
/// [module docs](self)).
pub(crate) async fn follow_ps(
    state: Arc<ServingState>,
    shards: Vec<String>,
    every: Duration,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut followers: HashMap<String, Follower> = HashMap::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        for model in state.models() {
            if let Err(e) = poll(&model, &shards, &mut followers).await {
                tracing::warn!(model = model.name(), error = %e, "cannot follow the parameter server");
            }
        }
    }
}

/// One poll of `model`'s weight table: a revision swapped in when rows changed.
async fn poll(
    model: &ServedModel,
    shards: &[String],
    followers: &mut HashMap<String, Follower>,
) -> Result<()> {
    let Some(serving) = model.current() else {
        return Ok(());
    };
    let OnlineModel::Ftrl(ftrl) = &serving.trained().model else {
        if !followers.contains_key(model.name()) && serving.revision() == 0 {
            tracing::debug!(
                model = model.name(),
                "not an FTRL model: serves its versions only"
            );
        }
        return Ok(());
    };
    let follower = match followers.get_mut(model.name()) {
        Some(f) => f,
        None => {
            let tables = ftrl_tables(*ftrl.rule().params());
            let client = PsClientConfig::new(shards.to_vec(), tables)
                .connect()
                .await
                .map_err(ps_error)?;
            followers
                .entry(model.name().to_string())
                .or_insert(Follower {
                    version: serving.version(),
                    cursor: DeltaCursor::default(),
                    delta: Delta::default(),
                    client,
                })
        }
    };
    if follower.version != serving.version() {
        follower.version = serving.version();
        follower.cursor = DeltaCursor::default();
    }
    let asked_ms = now_ms();
    follower.delta.clear();
    let mut cursor = follower.cursor.clone();
    follower
        .client
        .delta("w", &mut cursor, &mut follower.delta)
        .await
        .map_err(ps_error)?;
    let delta = &follower.delta;
    if delta.resync && delta.keys.is_empty() {
        // shards without this model's rows (not trained yet, or not its shards): the version
        // keeps serving rather than zeros, and the next poll asks for everything again
        return Ok(());
    }
    if delta.keys.is_empty() && delta.removed.is_empty() && !delta.resync {
        follower.cursor = cursor;
        model.followed(asked_ms);
        return Ok(());
    }
    let rows = (delta.keys.len() + delta.removed.len()) as u64;
    let next = revise(&serving, delta)?;
    // a version swapped in meanwhile: the next poll starts over from it
    if model.revise(&serving, next, rows) {
        follower.cursor = cursor;
        model.followed(asked_ms);
    }
    Ok(())
}

/// `serving` with the weights of `delta` (from zero on a resync).
fn revise(serving: &LoadedModel, delta: &Delta) -> Result<LoadedModel> {
    let mut trained: TrainedModel = serving.trained().clone();
    let OnlineModel::Ftrl(ftrl) = &mut trained.model else {
        return Err(Error::InvalidArgument("only FTRL models follow".into()));
    };
    if delta.resync {
        *ftrl = ftrl.zeroed();
    }
    let feature = |key: u64| (key != BIAS_KEY).then_some(key);
    for (&key, &w) in delta.keys.iter().zip(&delta.values) {
        ftrl.set_weight(feature(key), w)?;
    }
    for &key in &delta.removed {
        ftrl.set_weight(feature(key), 0.0)?;
    }
    serving.revised(trained)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

//! The TOML document as serde sees it: every section and key, each value with its byte span,
//! unknown keys refused. [`check`](super::check) turns it into a [`Workflow`](super::Workflow).
//!
//! Sources and nodes are one flat struct per section (not a tagged enum): serde's tagged enums
//! buffer their content and lose the spans, and a flat struct lets the checker say "`publish-every`
//! does not apply to an `evaluate` node" at the right line.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A spanned string.
pub(crate) type S = Spanned<String>;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct RawWorkflow {
    /// `[workflow]`: name and description.
    pub workflow: Option<Spanned<RawHeader>>,
    /// `[sources.<name>]`.
    #[serde(default)]
    pub sources: BTreeMap<S, Spanned<RawSource>>,
    /// `[features.<name>]`.
    #[serde(default)]
    pub features: BTreeMap<S, Spanned<RawFeatures>>,
    /// `[nodes.<name>]`.
    #[serde(default)]
    pub nodes: BTreeMap<S, Spanned<RawNode>>,
}

/// `[workflow]`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct RawHeader {
    pub name: Option<S>,
    pub description: Option<S>,
}

/// `[sources.<name>]`: `kind = "file" | "ctr" | "hybrid" | "kafka" | "delayed-labels"` and the
/// keys of that kind.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct RawSource {
    pub kind: Option<S>,
    // file
    pub path: Option<S>,
    pub format: Option<S>,
    pub follow: Option<Spanned<bool>>,
    // ctr
    pub seed: Option<Spanned<u64>>,
    pub offset: Option<Spanned<u64>>,
    pub rows: Option<Spanned<u64>>,
    pub rows_per_second: Option<Spanned<f64>>,
    // file and ctr
    pub batch_rows: Option<Spanned<u64>>,
    // hybrid
    pub history: Option<S>,
    pub live: Option<S>,
    // kafka (with follow and batch-rows)
    pub address: Option<S>,
    // delayed-labels
    pub impressions: Option<S>,
    pub clicks: Option<S>,
    pub key: Option<Spanned<Vec<S>>>,
    pub time: Option<S>,
    pub wait: Option<S>,
    pub out_of_orderness: Option<S>,
    pub parallelism: Option<Spanned<u64>>,
}

/// `[features.<name>]`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct RawFeatures {
    pub label: Option<S>,
    pub numeric: Option<Spanned<Vec<S>>>,
    pub categorical: Option<Spanned<Vec<S>>>,
    pub crosses: Option<Spanned<Vec<Vec<S>>>>,
    pub hash_bits: Option<Spanned<u32>>,
    pub scale: Option<Spanned<bool>>,
    pub dense: Option<Spanned<bool>>,
}

/// `[nodes.<name>]`: `kind` and the keys of that kind, plus the trigger and retry keys every
/// node has.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct RawNode {
    pub kind: Option<S>,
    // triggers and retries (all kinds)
    pub after: Option<Spanned<Vec<S>>>,
    pub on_new_version: Option<S>,
    pub every: Option<S>,
    pub cron: Option<S>,
    pub max_runs: Option<Spanned<u32>>,
    pub retries: Option<Spanned<u32>>,
    pub retry_backoff: Option<S>,
    // training
    pub source: Option<S>,
    pub features: Option<S>,
    pub learner: Option<S>,
    pub params: Option<Spanned<toml::Table>>,
    pub epochs: Option<Spanned<u32>>,
    pub warm_start: Option<S>,
    pub publish_every: Option<S>,
    pub publish_rows: Option<Spanned<u64>>,
    pub failover: Option<S>,
    pub checkpoint_every: Option<S>,
    pub parallelism: Option<Spanned<u32>>,
    pub ps: Option<Spanned<toml::Value>>,
    pub consistency: Option<S>,
    pub ps_existing: Option<S>,
    pub processes: Option<Spanned<u32>>,
    pub supervision: Option<S>,
    // evaluate / deploy / serve
    pub model: Option<S>,
    pub min_auc: Option<Spanned<f64>>,
    pub max_logloss: Option<Spanned<f64>>,
    pub min_accuracy: Option<Spanned<f64>>,
    pub stage: Option<S>,
    pub address: Option<S>,
    // command
    pub program: Option<S>,
    pub args: Option<Spanned<Vec<S>>>,
    pub timeout: Option<S>,
}

/// Every key of a `[nodes.<name>]` table, for "did you mean" hints.
pub(crate) const NODE_KEYS: &[&str] = &[
    "kind",
    "after",
    "on-new-version",
    "every",
    "cron",
    "max-runs",
    "retries",
    "retry-backoff",
    "source",
    "features",
    "learner",
    "params",
    "epochs",
    "warm-start",
    "publish-every",
    "publish-rows",
    "failover",
    "checkpoint-every",
    "parallelism",
    "ps",
    "consistency",
    "ps-existing",
    "processes",
    "supervision",
    "model",
    "min-auc",
    "max-logloss",
    "min-accuracy",
    "stage",
    "address",
    "program",
    "args",
    "timeout",
];

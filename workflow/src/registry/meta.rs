//! What the registry stores beside each model file (`meta.json`) and the events it sends.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a version stands in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Freshly published, not yet evaluated (the default).
    #[default]
    Candidate,
    /// Passed an evaluation gate.
    Validated,
    /// Serving traffic. At most one version per model is kept here by
    /// [`Registry::promote`](super::Registry::promote).
    Production,
    /// Retired; kept for audit and rollback until retention removes it.
    Archived,
}

/// Where a version came from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Lineage {
    /// The training data (a path, a topic and offset range, ...), if known.
    pub data: Option<String>,
    /// The version this one was trained from (warm start), if any.
    pub parent: Option<u64>,
}

/// The metadata of one stored version, as written to `v<N>/meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct VersionMeta {
    /// The model name (its directory).
    pub model: String,
    /// The version number (its `v<N>` directory), from 1.
    pub version: u64,
    /// When it was published, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Who produced it (a workflow node, a host, a command line).
    pub producer: String,
    /// Rows the model was trained on.
    pub training_rows: u64,
    /// Evaluation metrics by name (e.g. `"auc"`, `"log-loss"`).
    pub metrics: BTreeMap<String, f64>,
    /// Where it came from.
    pub lineage: Lineage,
    /// Its life-cycle stage.
    pub stage: Stage,
}

/// The metadata a publisher supplies; the registry adds the model name, the version and the
/// creation time.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct NewVersion {
    /// Who produced it.
    pub producer: String,
    /// Rows the model was trained on.
    pub training_rows: u64,
    /// Evaluation metrics by name.
    pub metrics: BTreeMap<String, f64>,
    /// Where it came from.
    pub lineage: Lineage,
    /// The stage to publish in (default [`Stage::Candidate`]).
    pub stage: Stage,
}

/// What happened to a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A new version became visible.
    Published,
    /// An existing version changed stage (including demotions and archiving).
    StageChanged,
}

/// An in-process notification from [`Registry::subscribe`](super::Registry::subscribe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionEvent {
    /// What happened.
    pub kind: EventKind,
    /// The model name.
    pub model: String,
    /// The version.
    pub version: u64,
    /// The version's stage after the event.
    pub stage: Stage,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_json_is_kebab_case_and_round_trips() {
        let meta = VersionMeta {
            model: "ctr".into(),
            version: 3,
            created_ms: 17,
            producer: "node".into(),
            training_rows: 10,
            metrics: BTreeMap::from([("auc".to_string(), 0.75)]),
            lineage: Lineage {
                data: Some("s3://x".into()),
                parent: Some(2),
            },
            stage: Stage::Production,
        };
        let json = serde_json::to_string(&meta).unwrap();
        assert!(json.contains("\"created-ms\":17"), "{json}");
        assert!(json.contains("\"training-rows\":10"), "{json}");
        assert!(json.contains("\"stage\":\"production\""), "{json}");
        let back: VersionMeta = serde_json::from_str(&json).unwrap();
        assert_eq!(back, meta);
    }
}

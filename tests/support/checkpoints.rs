//! What the worker-process tests read off a worker's checkpoint directory before they inject a
//! fault.

#![allow(dead_code)]

use std::path::Path;

use serde_json::Value;

/// Whether `dir` holds a completed checkpoint (`chk-N/MANIFEST.json` written) whose source
/// position is past the start of a partition: one that holds trained rows, on a topic written
/// fresh for the test (every partition starts at offset 0).
///
/// Waiting for "a checkpoint newer than the one at the first trained batch" is not enough: a
/// checkpoint whose barrier passed before that batch may still be in flight then, and a kill
/// right after it completes finds only checkpoints without rows (seen in CI once restarts got
/// fast: "worker 1 resumed from no checkpoint").
pub fn checkpoint_holds_rows(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let manifest = e.path().join("MANIFEST.json");
        let is_checkpoint = e.file_name().to_string_lossy().starts_with("chk-");
        is_checkpoint && manifest_holds_rows(&manifest)
    })
}

/// Whether the manifest at `path` (`{"checksum":…,"manifest":{"tasks":[{"position":…}]}}`)
/// has a task whose Kafka position (`{"next":{"partition":offset}}`) is past offset 0.
fn manifest_holds_rows(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let Ok(file) = serde_json::from_str::<Value>(&text) else {
        return false; // being written
    };
    let tasks = file["manifest"]["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    tasks.iter().any(|t| {
        t["position"]["next"]
            .as_object()
            .is_some_and(|next| next.values().any(|o| o.as_i64().unwrap_or(0) > 0))
    })
}

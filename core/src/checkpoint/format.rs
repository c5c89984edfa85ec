//! The on-disk layout of one checkpoint directory `chk-<epoch>/`:
//!
//! - `task-<i>.bin`, one per task: its operator states by chain stage. Layout (little endian):
//!   magic `EDDYCHK1`, `u32` stage count, then per stage a tag byte (`0` = stateless, `1` =
//!   state) followed, for a state, by a `u64` length and the bytes.
//! - `task-<i>.inflight`, only for a task snapshotted unaligned: the input it had taken but not
//!   processed when it snapshotted, replayed first on restore (encoded by the runtime).
//! - chunked states ([`state::blob`](crate::state::blob)) keep runs of references only; their
//!   chunks are in segment files in `../segments/` (see `segments`), listed in the manifest.
//! - `MANIFEST.json`, written last: the format version, the epoch, the job's key groups, the
//!   tasks (name, subtask and parallelism, the operator ids of the source and of each chain
//!   stage, position, state file) and every file with its length and xxh3-64 checksum. It reads
//!   `{"checksum":"<16 hex>","manifest":<body>}` where the checksum is the xxh3-64 of the exact
//!   bytes of `<body>`, so the manifest checks itself without re-serializing anything.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::source::SourcePosition;

/// Name of the manifest file; its presence marks a checkpoint as complete.
pub(crate) const MANIFEST: &str = "MANIFEST.json";

/// Version of the layout written by this code. Version 2 addresses state by operator id and
/// records the key groups; version 1 (state by task name and chain position) is refused.
pub(crate) const FORMAT_VERSION: u32 = 2;

const STATE_MAGIC: &[u8; 8] = b"EDDYCHK1";
const PREFIX: &[u8] = b"{\"checksum\":\"";
const MIDDLE: &[u8] = b"\",\"manifest\":";
const SUFFIX: &[u8] = b"}\n";
const HEX_LEN: usize = 16;

/// The manifest body: everything needed to rebuild a [`CompletedCheckpoint`](super::CompletedCheckpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    pub(crate) format: u32,
    pub(crate) epoch: u64,
    pub(crate) created_ms: u64,
    /// The job's number of key groups.
    pub(crate) key_groups: u32,
    pub(crate) tasks: Vec<TaskEntry>,
    pub(crate) files: Vec<FileEntry>,
    /// The segment files (in `../segments/`) the tasks' chunked states reference, with their
    /// length and checksum like `files`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) segments: Vec<FileEntry>,
}

/// One task in the manifest; its states live in `file`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskEntry {
    pub(crate) task: String,
    pub(crate) subtask: usize,
    pub(crate) parallelism: usize,
    /// Operator id of the task's source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) source: Option<String>,
    /// Operator ids of the chain stages, in order.
    pub(crate) operators: Vec<String>,
    pub(crate) position: Option<SourcePosition>,
    pub(crate) file: String,
    /// The task's in-flight data file (unaligned snapshots only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) inflight: Option<String>,
    /// The task had finished before the checkpoint (FLIP-147).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) finished: bool,
}

/// One data file in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileEntry {
    pub(crate) name: String,
    pub(crate) len: u64,
    /// xxh3-64 of the contents, 16 lowercase hex digits.
    pub(crate) xxh3: String,
}

/// The xxh3-64 checksum of `bytes` as 16 lowercase hex digits.
pub(crate) fn checksum(bytes: &[u8]) -> String {
    format!("{:016x}", xxh3_64(bytes))
}

/// The bytes of `MANIFEST.json` for `manifest`.
pub(crate) fn encode_manifest(manifest: &Manifest) -> Result<Vec<u8>, String> {
    let body = serde_json::to_vec_pretty(manifest).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(body.len() + 64);
    out.extend_from_slice(PREFIX);
    out.extend_from_slice(checksum(&body).as_bytes());
    out.extend_from_slice(MIDDLE);
    out.extend_from_slice(&body);
    out.extend_from_slice(SUFFIX);
    Ok(out)
}

/// Checks the manifest's own checksum, then parses it. The error says what failed.
pub(crate) fn decode_manifest(bytes: &[u8]) -> Result<Manifest, String> {
    let head = PREFIX.len() + HEX_LEN + MIDDLE.len();
    if bytes.len() < head + SUFFIX.len()
        || !bytes.starts_with(PREFIX)
        || &bytes[PREFIX.len() + HEX_LEN..head] != MIDDLE
        || !bytes.ends_with(SUFFIX)
    {
        return Err(format!(
            "not an eddy manifest: expected `{{\"checksum\":\"<16 hex>\",\"manifest\":...}}` ({} bytes)",
            bytes.len()
        ));
    }
    let stored = &bytes[PREFIX.len()..PREFIX.len() + HEX_LEN];
    let body = &bytes[head..bytes.len() - SUFFIX.len()];
    let actual = checksum(body);
    if stored != actual.as_bytes() {
        return Err(format!(
            "manifest checksum mismatch: it records {}, its contents hash to {actual}",
            String::from_utf8_lossy(stored)
        ));
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("manifest does not parse: {e}"))?;
    match value.get("format").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(FORMAT_VERSION) => {}
        Some(1) => {
            return Err(format!(
                "manifest format 1 (state by task name and chain position) is not supported: \
                 this build reads format {FORMAT_VERSION} (state by operator id and key group); \
                 start the job without this checkpoint"
            ))
        }
        other => {
            return Err(format!(
            "manifest format {other:?} is not supported (this build reads format {FORMAT_VERSION})"
        ))
        }
    }
    serde_json::from_value(value).map_err(|e| format!("manifest does not parse: {e}"))
}

/// The bytes of one task's state file.
pub(crate) fn encode_states(states: &[Option<Vec<u8>>]) -> Result<Vec<u8>, String> {
    let stages = u32::try_from(states.len())
        .map_err(|_| format!("{} chain stages do not fit a state file", states.len()))?;
    let payload: usize = states.iter().flatten().map(|s| s.len() + 8).sum();
    let mut out = Vec::with_capacity(STATE_MAGIC.len() + 4 + states.len() + payload);
    out.extend_from_slice(STATE_MAGIC);
    out.extend_from_slice(&stages.to_le_bytes());
    for state in states {
        match state {
            None => out.push(0),
            Some(bytes) => {
                out.push(1);
                out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                out.extend_from_slice(bytes);
            }
        }
    }
    Ok(out)
}

/// Parses a state file written by [`encode_states`]. The error says what is wrong and where.
pub(crate) fn decode_states(bytes: &[u8]) -> Result<Vec<Option<Vec<u8>>>, String> {
    let mut rest = bytes
        .strip_prefix(STATE_MAGIC.as_slice())
        .ok_or("not an eddy state file (bad magic)")?;
    let stages = u32::from_le_bytes(take::<4>(&mut rest, "stage count")?);
    let mut states = Vec::with_capacity(stages.min(1024) as usize);
    for stage in 0..stages {
        let [tag] = take::<1>(&mut rest, "stage tag")?;
        match tag {
            0 => states.push(None),
            1 => {
                let len = u64::from_le_bytes(take::<8>(&mut rest, "state length")?);
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&l| l <= rest.len())
                    .ok_or_else(|| {
                        format!(
                            "stage {stage}: state of {len} bytes, only {} left",
                            rest.len()
                        )
                    })?;
                let (state, tail) = rest.split_at(len);
                states.push(Some(state.to_vec()));
                rest = tail;
            }
            other => return Err(format!("stage {stage}: unknown tag {other}")),
        }
    }
    if !rest.is_empty() {
        return Err(format!(
            "{} trailing bytes after {stages} stages",
            rest.len()
        ));
    }
    Ok(states)
}

fn take<const N: usize>(rest: &mut &[u8], what: &str) -> Result<[u8; N], String> {
    if rest.len() < N {
        return Err(format!("truncated: {what} missing"));
    }
    let (head, tail) = rest.split_at(N);
    *rest = tail;
    let mut out = [0u8; N];
    out.copy_from_slice(head);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            format: FORMAT_VERSION,
            epoch: 4,
            created_ms: 1_700_000_000_000,
            key_groups: 128,
            tasks: vec![TaskEntry {
                task: "src[0]".into(),
                subtask: 0,
                parallelism: 1,
                source: Some("src".into()),
                operators: vec![],
                position: Some(SourcePosition::of(&serde_json::json!({"offset": 0.1}))),
                file: "task-0.bin".into(),
                inflight: None,
                finished: false,
            }],
            files: vec![FileEntry {
                name: "task-0.bin".into(),
                len: 13,
                xxh3: checksum(b"x"),
            }],
            segments: vec![],
        }
    }

    #[test]
    fn manifest_round_trips_and_is_json() -> Result<(), String> {
        let bytes = encode_manifest(&manifest())?;
        assert_eq!(decode_manifest(&bytes)?, manifest());
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        assert_eq!(value["manifest"]["epoch"], 4);
        Ok(())
    }

    #[test]
    fn an_old_format_manifest_is_refused_with_the_reason() -> Result<(), String> {
        let body = br#"{"format":1,"epoch":4,"created_ms":1,"tasks":[],"files":[]}"#;
        let mut bytes = Vec::new();
        bytes.extend_from_slice(PREFIX);
        bytes.extend_from_slice(checksum(body).as_bytes());
        bytes.extend_from_slice(MIDDLE);
        bytes.extend_from_slice(body);
        bytes.extend_from_slice(SUFFIX);
        let err = decode_manifest(&bytes).err().unwrap_or_default();
        assert!(
            err.contains("format 1") && err.contains("operator id"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn every_single_byte_flip_in_the_manifest_is_caught() -> Result<(), String> {
        let bytes = encode_manifest(&manifest())?;
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(
                decode_manifest(&bad).is_err(),
                "flip at byte {i} undetected"
            );
        }
        assert!(decode_manifest(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_manifest(b"").is_err());
        Ok(())
    }

    #[test]
    fn states_round_trip_including_stateless_and_empty() -> Result<(), String> {
        let cases: Vec<Vec<Option<Vec<u8>>>> = vec![
            vec![],
            vec![None],
            vec![Some(vec![]), None, Some(vec![0, 255, 7])],
        ];
        for states in cases {
            assert_eq!(decode_states(&encode_states(&states)?)?, states);
        }
        Ok(())
    }

    #[test]
    fn malformed_state_files_are_rejected() -> Result<(), String> {
        let good = encode_states(&[Some(vec![1, 2, 3]), None])?;
        for cut in 0..good.len() {
            assert!(
                decode_states(&good[..cut]).is_err(),
                "cut at {cut} accepted"
            );
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode_states(&trailing)
            .err()
            .is_some_and(|e| e.contains("trailing")));
        let mut bad_tag = good;
        bad_tag[12] = 9;
        assert!(decode_states(&bad_tag)
            .err()
            .is_some_and(|e| e.contains("unknown tag 9")));
        Ok(())
    }
}

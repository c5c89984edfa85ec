//! The local-directory checkpoint store end to end: round trip, retention, and refusal of
//! every kind of damaged checkpoint with a fallback to the previous good one.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use eddy_core::checkpoint::{CheckpointStore, CompletedCheckpoint};
use eddy_core::dataflow::TaskAck;
use eddy_core::message::Epoch;
use eddy_core::source::SourcePosition;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A checkpoint with a source task (position, stateless head, stateful tail) and a stateful
/// operator task with several chain stages, one of them stateless.
fn checkpoint(epoch: u64) -> CompletedCheckpoint {
    let acks = vec![
        TaskAck {
            epoch: Epoch(epoch),
            task: "events[0]".into(),
            position: Some(SourcePosition::of(
                &serde_json::json!({"file": "a.csv", "offset": epoch * 100, "line": 7}),
            )),
            states: vec![None, Some(format!("source-{epoch}").into_bytes())],
        },
        TaskAck {
            epoch: Epoch(epoch),
            task: "window[1]".into(),
            position: None,
            states: vec![
                Some(vec![0u8, 255, 1, 2, epoch as u8]),
                None,
                Some(Vec::new()),
                Some(vec![7u8; 10_000]),
            ],
        },
    ];
    let mut chk = CompletedCheckpoint::from_acks(Epoch(epoch), acks).expect("acks of one epoch");
    // the layout the coordinator records: operator ids per chain stage
    for task in &mut chk.tasks {
        let head = task.task.split('[').next().unwrap_or_default().to_string();
        task.operators = (0..task.states.len())
            .map(|i| format!("{head}.{i}"))
            .collect();
    }
    chk
}

fn store(
    retain: usize,
) -> Result<(tempfile::TempDir, CheckpointStore), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let store = CheckpointStore::open(tmp.path().join("checkpoints"), retain)?;
    Ok((tmp, store))
}

/// The state file of `window[1]` (the second task) in checkpoint `epoch`.
fn state_file(store: &CheckpointStore, epoch: u64) -> PathBuf {
    store.checkpoint_dir(Epoch(epoch)).join("task-1.bin")
}

/// Captures the messages of `WARN` events while `f` runs on this thread.
fn warnings<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let subscriber = Capture(seen.clone());
    let out = tracing::subscriber::with_default(subscriber, f);
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    (out, seen)
}

struct Capture(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push_str(&format!("{}={} ", field.name(), value));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            if let Ok(mut seen) = self.0.lock() {
                seen.push(fields.0);
            }
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Writes good checkpoints 1 and 2, damages checkpoint 2 with `damage`, then checks that
/// `latest()` refuses 2 loudly (naming its directory and `warned_reason`) and returns 1, and
/// that `load(2)` fails naming `culprit` (a file name) and `reason`.
fn refused_and_falls_back(
    damage: impl FnOnce(&CheckpointStore) -> std::io::Result<()>,
    culprit: &str,
    reason: &str,
    warned_reason: &str,
) -> TestResult {
    let (_tmp, store) = store(5)?;
    store.write(&checkpoint(1))?;
    store.write(&checkpoint(2))?;
    damage(&store)?;

    let (latest, warned) = warnings(|| store.latest());
    let latest = latest?.ok_or("no checkpoint found")?;
    assert_eq!(latest, checkpoint_with_time(1, &latest));
    let dir2 = store.checkpoint_dir(Epoch(2)).display().to_string();
    assert!(
        warned
            .iter()
            .any(|w| w.contains(&dir2) && w.contains(warned_reason)),
        "expected a warning naming {dir2} and `{warned_reason}`, got {warned:?}"
    );

    let err = store
        .load(Epoch(2))
        .err()
        .ok_or("corrupt checkpoint loaded")?;
    let msg = err.to_string();
    assert!(
        msg.contains(culprit) && msg.contains(reason),
        "error should name `{culprit}` and `{reason}`: {msg}"
    );
    assert_eq!(store.load(Epoch(1))?, latest);
    Ok(())
}

/// `checkpoint(epoch)` with the creation time of `loaded` (which is wall-clock).
fn checkpoint_with_time(epoch: u64, loaded: &CompletedCheckpoint) -> CompletedCheckpoint {
    CompletedCheckpoint {
        created_ms: loaded.created_ms,
        ..checkpoint(epoch)
    }
}

fn rewrite(path: &Path, f: impl FnOnce(&mut Vec<u8>)) -> std::io::Result<()> {
    let mut bytes = fs::read(path)?;
    f(&mut bytes);
    fs::write(path, bytes)
}

/// Inside a module named `checkpoint` so that `cargo test -p eddy-core checkpoint` runs them.
mod checkpoint {
    use super::*;

    #[test]
    fn round_trip_keeps_positions_and_multi_stage_states() -> TestResult {
        let (_tmp, store) = store(3)?;
        assert_eq!(store.latest()?, None);
        assert_eq!(store.list()?, vec![]);

        let written = checkpoint(4);
        let dir = store.write(&written)?;
        assert_eq!(dir, store.checkpoint_dir(Epoch(4)));
        assert_eq!(store.load(Epoch(4))?, written);
        assert_eq!(store.latest()?, Some(written.clone()));
        assert_eq!(store.list()?, vec![Epoch(4)]);

        // Binary state lives in files, never in the JSON manifest; no temp files are left.
        let mut names: Vec<String> = fs::read_dir(&dir)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        names.sort();
        assert_eq!(names, ["MANIFEST.json", "task-0.bin", "task-1.bin"]);
        let manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join("MANIFEST.json"))?)?;
        assert_eq!(manifest["manifest"]["epoch"], 4);
        assert_eq!(
            manifest["manifest"]["files"].as_array().map(Vec::len),
            Some(2)
        );
        assert!(!manifest.to_string().contains("source-4"));
        assert!(fs::read(dir.join("task-0.bin"))?
            .windows(8)
            .any(|w| w == b"source-4"));

        // Writing the same epoch twice is refused; it stays intact.
        assert!(store.write(&written).is_err());
        assert_eq!(store.load(Epoch(4))?, written);
        Ok(())
    }

    #[test]
    fn retention_keeps_exactly_the_newest_n() -> TestResult {
        let (_tmp, store) = store(3)?;
        for epoch in 1..=7 {
            store.write(&checkpoint(epoch))?;
            let expected: Vec<Epoch> = (epoch.saturating_sub(2).max(1)..=epoch)
                .map(Epoch)
                .collect();
            assert_eq!(store.list()?, expected, "after writing {epoch}");
        }
        for gone in 1..=4 {
            assert!(!store.checkpoint_dir(Epoch(gone)).exists());
            assert!(store.load(Epoch(gone)).is_err());
        }
        let entries = fs::read_dir(store.dir())?.count();
        assert_eq!(entries, 3, "only the kept checkpoint directories remain");
        assert_eq!(store.latest()?.map(|c| c.epoch), Some(Epoch(7)));
        Ok(())
    }

    #[test]
    fn retention_removes_crash_leftovers_and_counts_only_sound_checkpoints() -> TestResult {
        let (_tmp, store) = store(2)?;
        store.write(&checkpoint(1))?;
        store.write(&checkpoint(2))?;
        // 3 crashed mid-write (a temp file, no manifest); 4 lost a state file.
        let dir3 = store.checkpoint_dir(Epoch(3));
        fs::create_dir(&dir3)?;
        fs::write(dir3.join(".tmp-task-0.bin"), b"half")?;
        store.write(&checkpoint(4))?;
        fs::remove_file(state_file(&store, 4))?;

        store.write(&checkpoint(5))?;
        // Kept: 5 and the newest sound one before it, 2. Gone: 1, the leftover 3, the broken 4.
        assert_eq!(store.list()?, vec![Epoch(2), Epoch(5)]);
        assert!(!dir3.exists());
        assert!(!store.checkpoint_dir(Epoch(4)).exists());
        Ok(())
    }

    #[test]
    fn flipped_byte_in_a_state_file_is_refused() -> TestResult {
        refused_and_falls_back(
            |s| rewrite(&state_file(s, 2), |b| b[25] ^= 0x10),
            "task-1.bin",
            "checksum mismatch",
            "checksum mismatch",
        )
    }

    #[test]
    fn truncated_state_file_is_refused() -> TestResult {
        refused_and_falls_back(
            |s| rewrite(&state_file(s, 2), |b| b.truncate(b.len() - 1)),
            "task-1.bin",
            "length mismatch",
            "length mismatch",
        )
    }

    #[test]
    fn deleted_state_file_is_refused() -> TestResult {
        refused_and_falls_back(
            |s| fs::remove_file(state_file(s, 2)),
            "task-1.bin",
            "No such file",
            "No such file",
        )
    }

    #[test]
    fn corrupted_manifest_is_refused() -> TestResult {
        refused_and_falls_back(
            |s| {
                let manifest = s.checkpoint_dir(Epoch(2)).join("MANIFEST.json");
                // Still valid JSON, but not what was written.
                rewrite(&manifest, |b| {
                    let text = String::from_utf8_lossy(b).replace("\"epoch\": 2", "\"epoch\": 3");
                    *b = text.into_bytes();
                })
            },
            "MANIFEST.json",
            "manifest checksum mismatch",
            "manifest checksum mismatch",
        )
    }

    #[test]
    fn truncated_manifest_is_refused() -> TestResult {
        refused_and_falls_back(
            |s| {
                let manifest = s.checkpoint_dir(Epoch(2)).join("MANIFEST.json");
                rewrite(&manifest, |b| b.truncate(b.len() / 2))
            },
            "MANIFEST.json",
            "not an eddy manifest",
            "not an eddy manifest",
        )
    }

    #[test]
    fn checkpoint_without_manifest_is_refused() -> TestResult {
        // A crash after the state files but before the manifest: not complete, never listed.
        refused_and_falls_back(
            |s| fs::remove_file(s.checkpoint_dir(Epoch(2)).join("MANIFEST.json")),
            "MANIFEST.json",
            "No such file",
            "incomplete, no MANIFEST.json",
        )?;
        let (_tmp, store) = store(5)?;
        store.write(&checkpoint(1))?;
        store.write(&checkpoint(2))?;
        fs::remove_file(store.checkpoint_dir(Epoch(2)).join("MANIFEST.json"))?;
        assert_eq!(store.list()?, vec![Epoch(1)]);
        let (_, warned) = warnings(|| store.latest());
        assert!(
            warned.iter().any(|w| w.contains("incomplete")),
            "{warned:?}"
        );
        // The next write of epoch 2 replaces the leftover.
        store.write(&checkpoint(2))?;
        assert_eq!(store.latest()?.map(|c| c.epoch), Some(Epoch(2)));
        Ok(())
    }

    #[test]
    fn when_no_completed_checkpoint_verifies_latest_is_an_error_not_a_fresh_start() -> TestResult {
        let (_tmp, store) = store(5)?;
        store.write(&checkpoint(1))?;
        rewrite(&state_file(&store, 1), |b| b[30] ^= 1)?;
        let (latest, warned) = warnings(|| store.latest());
        let msg = latest
            .err()
            .ok_or("a corrupt-only store gave a checkpoint")?
            .to_string();
        assert!(msg.contains("no completed checkpoint verifies"), "{msg}");
        assert!(msg.contains("task-1.bin"), "{msg}");
        assert_eq!(warned.len(), 1, "{warned:?}");

        // Only incomplete directories (a crash during the very first checkpoint): a fresh start.
        let (_tmp, store) = self::store(5)?;
        fs::create_dir(store.checkpoint_dir(Epoch(1)))?;
        assert_eq!(store.latest()?, None);
        Ok(())
    }

    #[test]
    fn unrelated_entries_in_the_directory_are_ignored() -> TestResult {
        let (_tmp, store) = store(1)?;
        fs::write(store.dir().join("notes.txt"), b"hi")?;
        fs::create_dir(store.dir().join("chk-007"))?;
        store.write(&checkpoint(1))?;
        store.write(&checkpoint(2))?;
        assert_eq!(store.list()?, vec![Epoch(2)]);
        assert!(store.dir().join("notes.txt").exists());
        assert!(store.dir().join("chk-007").exists());
        Ok(())
    }
}

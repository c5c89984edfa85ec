//! End-to-end tests of the model registry: round trips, concurrent writers and readers,
//! corruption, stages, retention, subscribers and the cross-process watcher.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eddy_workflow::registry::{
    EventKind, Lineage, NewVersion, Registry, Stage, VersionEvent, VersionMeta, Watcher,
};
use eddy_workflow::Error;

fn model_bytes(seed: f32) -> Vec<u8> {
    eddy_algorithms::model::encode("test-model", &vec![seed, 2.0]).unwrap()
}

fn new_version(producer: &str) -> NewVersion {
    NewVersion {
        producer: producer.to_string(),
        training_rows: 100,
        metrics: BTreeMap::from([("auc".to_string(), 0.8)]),
        lineage: Lineage {
            data: Some("data.csv".into()),
            parent: None,
        },
        stage: Stage::Candidate,
    }
}

fn numbers(metas: &[VersionMeta]) -> Vec<u64> {
    metas.iter().map(|m| m.version).collect()
}

#[test]
fn publish_list_get_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    assert!(reg.models().unwrap().is_empty());
    assert!(reg.versions("ctr").unwrap().is_empty());
    assert!(reg.latest("ctr").unwrap().is_none());

    let v1 = reg
        .publish("ctr", &model_bytes(1.0), new_version("a"))
        .unwrap();
    let mut second = new_version("b");
    second.lineage.parent = Some(1);
    let v2 = reg.publish("ctr", &model_bytes(2.0), second).unwrap();
    reg.publish("fraud", &model_bytes(3.0), new_version("c"))
        .unwrap();

    assert_eq!((v1.version, v2.version), (1, 2));
    assert_eq!(v2.model, "ctr");
    assert_eq!(v2.lineage.parent, Some(1));
    assert_eq!(v2.metrics.get("auc"), Some(&0.8));
    assert!(v2.created_ms > 0);
    assert_eq!(reg.models().unwrap(), vec!["ctr", "fraud"]);
    assert_eq!(reg.versions("ctr").unwrap(), vec![v1.clone(), v2.clone()]);
    assert_eq!(reg.get("ctr", 1).unwrap(), v1);
    assert_eq!(reg.latest("ctr").unwrap(), Some(v2.clone()));
    assert_eq!(reg.by_stage("ctr", Stage::Candidate).unwrap().len(), 2);
    assert!(reg.by_stage("ctr", Stage::Production).unwrap().is_empty());
    assert_eq!(reg.load_bytes("ctr", 2).unwrap(), model_bytes(2.0));
    let decoded: Vec<f32> = reg.load("ctr", 1, "test-model").unwrap();
    assert_eq!(decoded, vec![1.0, 2.0]);
    assert!(matches!(
        reg.load::<Vec<f32>>("ctr", 1, "other-kind"),
        Err(Error::ModelFile { .. })
    ));

    // The files on disk are what the docs say.
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("ctr/v2/meta.json")).unwrap())
            .unwrap();
    assert_eq!(meta["stage"], "candidate");
    assert_eq!(meta["training-rows"], 100);
    assert!(dir.path().join("ctr/v2/model.eddy").is_file());
}

#[test]
fn refuses_bad_names_and_unknown_versions() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    for bad in ["", "../x", ".hidden", "a/b"] {
        assert!(
            matches!(
                reg.publish(bad, &model_bytes(1.0), NewVersion::default()),
                Err(Error::InvalidName { .. })
            ),
            "{bad:?}"
        );
    }
    reg.publish("m", &model_bytes(1.0), NewVersion::default())
        .unwrap();
    assert!(matches!(
        reg.get("m", 9),
        Err(Error::UnknownVersion { version: 9, .. })
    ));
    assert!(matches!(
        reg.load_bytes("m", 9),
        Err(Error::UnknownVersion { .. })
    ));
    assert!(matches!(reg.pin("m", 9), Err(Error::UnknownVersion { .. })));
    assert!(matches!(
        reg.promote("m", 9, Stage::Production),
        Err(Error::UnknownVersion { .. })
    ));
}

/// Checks the raw directory: every `v<N>` holds both files, the metadata parses and names
/// `N`, and the model bytes pass their checksum. Returns the version numbers seen.
fn check_raw_dir(model_dir: &Path) -> BTreeSet<u64> {
    let mut seen = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(model_dir) else {
        return seen;
    };
    for entry in entries {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(n) = name.strip_prefix('v').and_then(|d| d.parse::<u64>().ok()) else {
            continue;
        };
        let dir = model_dir.join(&name);
        let meta: VersionMeta =
            serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap())
                .unwrap_or_else(|e| panic!("{name}: unparsable meta.json: {e}"));
        assert_eq!(meta.version, n);
        let bytes = std::fs::read(dir.join("model.eddy")).unwrap();
        eddy_algorithms::model::read_header(&bytes).unwrap();
        seen.insert(n);
    }
    seen
}

#[test]
fn concurrent_writers_get_distinct_consecutive_complete_versions() {
    const WRITERS: usize = 8;
    const EACH: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let model_dir = dir.path().join("ctr");

    // A reader polling both the raw directory and `versions()` while the writers run.
    let reader = {
        let (stop, model_dir, root) = (stop.clone(), model_dir.clone(), dir.path().to_path_buf());
        std::thread::spawn(move || {
            let reg = Registry::open(root).unwrap();
            let mut polls = 0u64;
            while !stop.load(Ordering::Relaxed) {
                check_raw_dir(&model_dir);
                for meta in reg.versions("ctr").unwrap() {
                    reg.load_bytes("ctr", meta.version).unwrap();
                }
                polls += 1;
            }
            polls
        })
    };

    // Half the writers share one registry, half open their own (as separate processes would).
    let shared = Registry::open(dir.path()).unwrap();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let reg = if w % 2 == 0 {
                shared.clone()
            } else {
                Registry::open(dir.path()).unwrap()
            };
            std::thread::spawn(move || {
                (0..EACH)
                    .map(|i| {
                        let producer = format!("writer-{w}-{i}");
                        reg.publish("ctr", &model_bytes(w as f32), new_version(&producer))
                            .unwrap()
                            .version
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut got: Vec<u64> = writers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);

    got.sort_unstable();
    let expected: Vec<u64> = (1..=(WRITERS * EACH) as u64).collect();
    assert_eq!(got, expected, "versions must be distinct and consecutive");
    let metas = shared.versions("ctr").unwrap();
    assert_eq!(numbers(&metas), expected);
    let producers: BTreeSet<_> = metas.iter().map(|m| m.producer.clone()).collect();
    assert_eq!(
        producers.len(),
        WRITERS * EACH,
        "every publish is stored once"
    );
    assert_eq!(check_raw_dir(&model_dir).len(), WRITERS * EACH);
    // No temporaries are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&model_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn corrupt_model_is_refused_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    reg.publish("ctr", &model_bytes(1.0), new_version("a"))
        .unwrap();
    reg.publish("ctr", &model_bytes(2.0), new_version("b"))
        .unwrap();
    let path = dir.path().join("ctr/v2/model.eddy");
    let mut bytes = std::fs::read(&path).unwrap();
    // A payload byte (the last 8 bytes are the checksum).
    let at = bytes.len() - 12;
    bytes[at] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();

    let err = reg.load_bytes("ctr", 2).unwrap_err();
    assert!(matches!(err, Error::ModelFile { .. }));
    let message = err.to_string();
    assert!(
        message.contains("v2") && message.contains("model.eddy"),
        "{message}"
    );
    assert!(message.contains("checksum"), "{message}");

    let (meta, good) = reg.latest_loadable("ctr").unwrap().unwrap();
    assert_eq!(meta.version, 1);
    assert_eq!(good, model_bytes(1.0));
    // The corrupt version is still listed; it is loading that refuses it.
    assert_eq!(reg.latest("ctr").unwrap().map(|m| m.version), Some(2));
}

#[test]
fn unparsable_meta_hides_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    reg.publish("ctr", &model_bytes(1.0), new_version("a"))
        .unwrap();
    reg.publish("ctr", &model_bytes(2.0), new_version("b"))
        .unwrap();
    std::fs::write(dir.path().join("ctr/v2/meta.json"), b"{ not json").unwrap();
    assert_eq!(numbers(&reg.versions("ctr").unwrap()), vec![1]);
    // The next publish still moves past the damaged directory.
    let v = reg
        .publish("ctr", &model_bytes(3.0), new_version("c"))
        .unwrap();
    assert_eq!(v.version, 3);
}

#[test]
fn promote_to_production_archives_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    for i in 0..3 {
        reg.publish("ctr", &model_bytes(i as f32), new_version("a"))
            .unwrap();
    }
    let mut events = reg.subscribe();
    reg.promote("ctr", 1, Stage::Validated).unwrap();
    reg.promote("ctr", 1, Stage::Production).unwrap();
    assert_eq!(reg.production("ctr").unwrap().map(|m| m.version), Some(1));
    let v2 = reg.promote("ctr", 2, Stage::Production).unwrap();
    assert_eq!(v2.stage, Stage::Production);
    assert_eq!(reg.get("ctr", 1).unwrap().stage, Stage::Archived);
    assert_eq!(
        numbers(&reg.by_stage("ctr", Stage::Production).unwrap()),
        vec![2]
    );
    reg.archive("ctr", 3).unwrap();
    assert_eq!(reg.get("ctr", 3).unwrap().stage, Stage::Archived);

    let seen: Vec<(u64, Stage)> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|e| {
            assert_eq!(e.kind, EventKind::StageChanged);
            (e.version, e.stage)
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (1, Stage::Validated),
            (1, Stage::Production),
            (2, Stage::Production),
            (1, Stage::Archived),
            (3, Stage::Archived),
        ]
    );

    // Publishing straight into production demotes too.
    let mut new = new_version("b");
    new.stage = Stage::Production;
    let v4 = reg.publish("ctr", &model_bytes(4.0), new).unwrap();
    assert_eq!(
        numbers(&reg.by_stage("ctr", Stage::Production).unwrap()),
        vec![v4.version]
    );
    assert_eq!(reg.get("ctr", 2).unwrap().stage, Stage::Archived);
}

#[test]
fn annotations_add_metrics_and_keep_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    reg.publish("ctr", &model_bytes(1.0), new_version("a"))
        .unwrap();
    let extra = BTreeMap::from([("gate.auc".to_string(), 0.75), ("auc".to_string(), 0.9)]);
    let meta = reg.annotate("ctr", 1, &extra).unwrap();
    assert_eq!(
        meta.metrics, extra,
        "added, and a same-named metric replaced"
    );
    let reread = Registry::open(dir.path()).unwrap().get("ctr", 1).unwrap();
    assert_eq!(reread, meta);
    assert_eq!(reg.load_bytes("ctr", 1).unwrap(), model_bytes(1.0));
    assert!(reg.annotate("ctr", 2, &extra).is_err(), "no such version");
}

#[test]
fn pin_is_stored_and_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    reg.publish("ctr", &model_bytes(1.0), new_version("a"))
        .unwrap();
    reg.publish("ctr", &model_bytes(2.0), new_version("a"))
        .unwrap();
    assert_eq!(reg.pinned("ctr").unwrap(), None);
    reg.pin("ctr", 1).unwrap();
    assert_eq!(reg.pinned("ctr").unwrap(), Some(1));
    // Another instance (process) reads the same pin.
    assert_eq!(
        Registry::open(dir.path()).unwrap().pinned("ctr").unwrap(),
        Some(1)
    );
    reg.pin("ctr", 2).unwrap();
    assert_eq!(reg.pinned("ctr").unwrap(), Some(2));
    reg.unpin("ctr").unwrap();
    reg.unpin("ctr").unwrap();
    assert_eq!(reg.pinned("ctr").unwrap(), None);
    std::fs::write(dir.path().join("ctr/PIN"), b"seven").unwrap();
    assert!(matches!(reg.pinned("ctr"), Err(Error::Corrupt { .. })));
}

#[test]
fn retention_keeps_newest_pinned_and_production() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    for i in 0..6 {
        reg.publish("ctr", &model_bytes(i as f32), new_version("a"))
            .unwrap();
    }
    reg.pin("ctr", 1).unwrap();
    reg.promote("ctr", 2, Stage::Production).unwrap();
    assert!(matches!(
        reg.retain("ctr", 0),
        Err(Error::InvalidArgument(_))
    ));

    assert_eq!(reg.retain("ctr", 2).unwrap(), vec![3, 4]);
    assert_eq!(numbers(&reg.versions("ctr").unwrap()), vec![1, 2, 5, 6]);
    assert!(!dir.path().join("ctr/v3").exists());
    assert_eq!(reg.retain("ctr", 2).unwrap(), Vec::<u64>::new());

    reg.unpin("ctr").unwrap();
    assert_eq!(reg.retain("ctr", 1).unwrap(), vec![1, 5]);
    assert_eq!(numbers(&reg.versions("ctr").unwrap()), vec![2, 6]);
    // Numbering continues after the newest kept version.
    let next = reg
        .publish("ctr", &model_bytes(7.0), new_version("a"))
        .unwrap();
    assert_eq!(next.version, 7);
}

#[test]
fn subscriber_receives_publish_events() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    let mut rx = reg.subscribe();
    let clone = reg.clone();
    clone
        .publish("ctr", &model_bytes(1.0), new_version("a"))
        .unwrap();
    reg.publish("fraud", &model_bytes(1.0), new_version("a"))
        .unwrap();
    let expected = |model: &str| VersionEvent {
        kind: EventKind::Published,
        model: model.to_string(),
        version: 1,
        stage: Stage::Candidate,
    };
    assert_eq!(rx.try_recv().unwrap(), expected("ctr"));
    assert_eq!(rx.try_recv().unwrap(), expected("fraud"));
    assert!(rx.try_recv().is_err());
}

#[test]
fn watcher_sees_versions_from_another_instance() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Registry::open(dir.path()).unwrap();
    writer
        .publish("ctr", &model_bytes(1.0), new_version("a"))
        .unwrap();

    let mut watcher = Watcher::new(dir.path(), Duration::from_millis(10)).unwrap();
    assert!(
        watcher.poll_once().unwrap().is_empty(),
        "existing versions count as seen"
    );

    let other = Registry::open(dir.path()).unwrap();
    other
        .publish("ctr", &model_bytes(2.0), new_version("b"))
        .unwrap();
    other
        .publish("fraud", &model_bytes(3.0), new_version("c"))
        .unwrap();
    let fresh: Vec<(String, u64)> = watcher
        .poll_once()
        .unwrap()
        .into_iter()
        .map(|m| (m.model, m.version))
        .collect();
    assert_eq!(
        fresh,
        vec![("ctr".to_string(), 2), ("fraud".to_string(), 1)]
    );
    assert!(watcher.poll_once().unwrap().is_empty());
}

#[tokio::test]
async fn watcher_next_waits_for_a_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut watcher = Watcher::new(dir.path(), Duration::from_millis(5)).unwrap();
    let root = dir.path().to_path_buf();
    let publisher = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(50));
        Registry::open(root)
            .unwrap()
            .publish("ctr", &model_bytes(1.0), new_version("a"))
            .unwrap()
    });
    let fresh = tokio::time::timeout(Duration::from_secs(10), watcher.next())
        .await
        .expect("the watcher saw nothing within 10 s")
        .unwrap();
    let published = publisher.await.unwrap();
    assert_eq!(fresh, vec![published]);
}

/// Damages `ctr` (which has v1 and v2) in every way #14 case 13 lists, as v3 to v6.
#[cfg(unix)]
fn damage(root: &Path) {
    let ctr = root.join("ctr");
    // a stray file where a version directory should be
    std::fs::write(ctr.join("v3"), b"stray").unwrap();
    // a meta.json that is a directory
    std::fs::create_dir_all(ctr.join("v4/meta.json")).unwrap();
    std::fs::write(ctr.join("v4/model.eddy"), model_bytes(4.0)).unwrap();
    // a symlink loop
    std::os::unix::fs::symlink("v5", ctr.join("v5")).unwrap();
    // a version whose meta.json was deleted
    std::fs::create_dir(ctr.join("v6")).unwrap();
    std::fs::write(ctr.join("v6/model.eddy"), model_bytes(6.0)).unwrap();
}

#[cfg(unix)]
#[test]
fn one_bad_entry_is_skipped_and_the_rest_of_the_registry_lists() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    for seed in [1.0, 2.0] {
        reg.publish("ctr", &model_bytes(seed), new_version("a"))
            .unwrap();
    }
    reg.publish("fraud", &model_bytes(9.0), new_version("b"))
        .unwrap();
    damage(dir.path());
    // a stray file beside the model directories
    std::fs::write(dir.path().join("README"), b"notes").unwrap();

    assert_eq!(reg.models().unwrap(), vec!["ctr", "fraud"]);
    for _ in 0..3 {
        assert_eq!(numbers(&reg.versions("ctr").unwrap()), vec![1, 2]);
    }
    assert_eq!(reg.latest("ctr").unwrap().map(|m| m.version), Some(2));
    assert_eq!(numbers(&reg.versions("fraud").unwrap()), vec![1]);
    for bad in 3..=6 {
        assert!(
            matches!(reg.get("ctr", bad), Err(Error::UnknownVersion { .. })),
            "v{bad}"
        );
    }
    let (meta, _) = reg.latest_loadable("ctr").unwrap().unwrap();
    assert_eq!(meta.version, 2);
    // publishing moves past every damaged name
    let v = reg
        .publish("ctr", &model_bytes(7.0), new_version("c"))
        .unwrap();
    assert_eq!(v.version, 7);
    assert_eq!(numbers(&reg.versions("ctr").unwrap()), vec![1, 2, 7]);
}

#[test]
fn promote_and_pin_refuse_a_version_whose_model_fails_its_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    for seed in [1.0, 2.0] {
        reg.publish("ctr", &model_bytes(seed), new_version("a"))
            .unwrap();
    }
    reg.promote("ctr", 1, Stage::Production).unwrap();
    let path = dir.path().join("ctr/v2/model.eddy");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 12;
    bytes[at] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();

    for stage in [Stage::Production, Stage::Validated, Stage::Candidate] {
        let e = reg.promote("ctr", 2, stage).unwrap_err();
        assert!(matches!(e, Error::ModelFile { .. }), "{e:?}");
        assert!(e.to_string().contains("checksum"), "{e}");
    }
    let e = reg.pin("ctr", 2).unwrap_err();
    assert!(matches!(e, Error::ModelFile { .. }), "{e:?}");
    assert_eq!(reg.pinned("ctr").unwrap(), None);
    // nothing changed: v1 is still production, v2 still a candidate
    assert_eq!(reg.production("ctr").unwrap().map(|m| m.version), Some(1));
    assert_eq!(reg.get("ctr", 2).unwrap().stage, Stage::Candidate);
    // archiving a corrupt version is allowed: it takes it out of the way
    assert_eq!(reg.archive("ctr", 2).unwrap().stage, Stage::Archived);
}

#[test]
fn open_existing_refuses_a_missing_registry_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo");
    let e = Registry::open_existing(&typo).unwrap_err().to_string();
    assert!(e.contains("typo") && e.contains("does not exist"), "{e}");
    assert!(!typo.exists());
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert!(Registry::open_existing(&file).is_err());
    Registry::open(dir.path().join("real")).unwrap();
    assert!(Registry::open_existing(dir.path().join("real")).is_ok());
}

//! Hot swap end to end over real HTTP on 127.0.0.1:0: versions published while a load
//! generator runs, versions from another process (polling), and corrupt versions skipped.

mod serving_support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy_workflow::registry::Registry;
use eddy_workflow::serving::ServeConfig;
use serde_json::json;
use serving_support::{client, predict, publish, send, start, trained};

fn fast_poll() -> ServeConfig {
    ServeConfig {
        poll: Duration::from_millis(20),
        ..ServeConfig::default()
    }
}

/// Sends requests until the answer names `version` (a hang guard bounds the attempts).
async fn wait_for_version(addr: std::net::SocketAddr, model: &str, version: u64) {
    let c = client();
    for _ in 0..20_000 {
        let (status, body) = predict(&c, addr, model, json!([{"f": 1.0, "c": "v1"}])).await;
        if status == 200 && body["version"] == version {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("{model} never served version {version}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swap_under_load_fails_no_request_and_names_only_published_versions() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    let published = Arc::new(Mutex::new(BTreeSet::from([
        publish(&registry, "ctr", 50).version
    ])));
    let server = start(registry.clone(), fast_poll(), false).await;
    let addr = server.http;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (stop, ok, failed, seen) = (stop.clone(), ok.clone(), failed.clone(), seen.clone());
        load.push(tokio::spawn(async move {
            let c = client();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let rows = json!([{"f": (i % 7) as f64, "c": format!("v{}", (i + worker) % 4)}]);
                let (status, body) = predict(&c, addr, "ctr", rows).await;
                if status == 200 && body["predictions"].as_array().is_some_and(|p| p.len() == 1) {
                    ok.fetch_add(1, Ordering::Relaxed);
                    seen.lock()
                        .unwrap()
                        .insert(body["version"].as_u64().unwrap());
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("failed request: {status} {body}");
                }
                i += 1;
            }
        }));
    }

    // 20 new versions while the load runs, each a different model.
    let writer_registry = registry.clone();
    let writer_published = published.clone();
    tokio::task::spawn_blocking(move || {
        for k in 0..20 {
            let meta = publish(&writer_registry, "ctr", 60 + 10 * k);
            writer_published.lock().unwrap().insert(meta.version);
            std::thread::sleep(Duration::from_millis(15));
        }
    })
    .await
    .unwrap();
    let newest = *published.lock().unwrap().last().unwrap();
    assert_eq!(newest, 21);
    wait_for_version(addr, "ctr", newest).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }

    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let seen = seen.lock().unwrap().clone();
    let published = published.lock().unwrap().clone();
    eprintln!("{ok} requests answered by versions {seen:?}");
    assert_eq!(failed, 0, "failed requests");
    assert!(ok > 0);
    assert!(seen.is_subset(&published), "{seen:?} ⊄ {published:?}");
    assert!(
        seen.len() > 1,
        "the load saw only {seen:?}: no swap happened under load"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_from_another_process_are_found_by_polling() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    publish(&registry, "ctr", 50);
    let server = start(registry, fast_poll(), false).await;
    // A separately opened registry shares no in-process subscribers: only polling sees it.
    let other = Registry::open(dir.path()).unwrap();
    assert_eq!(publish(&other, "ctr", 80).version, 2);
    wait_for_version(server.http, "ctr", 2).await;
    // A model that did not exist at start is discovered too (serving every model).
    publish(&other, "fraud", 40);
    wait_for_version(server.http, "fraud", 1).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_version_is_skipped_and_the_previous_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    publish(&registry, "ctr", 50);
    let server = start(registry.clone(), fast_poll(), false).await;
    let c = client();

    let mut bytes = trained(70).to_bytes().unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let bad = registry.publish("ctr", &bytes, Default::default()).unwrap();
    assert_eq!(bad.version, 2);
    // Wait until the server has tried (and refused) version 2.
    let mut refused = false;
    for _ in 0..20_000 {
        let (_, metrics) = send(&c, "GET", server.http, "/metrics", "").await;
        if metrics.contains("eddy_serving_model_load_failures_total{model=\"ctr\"} 1") {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(refused, "the corrupt version was never tried");
    let (status, body) = predict(&c, server.http, "ctr", json!([{"f": 2.0, "c": "v1"}])).await;
    assert_eq!((status, body["version"].as_u64()), (200, Some(1)), "{body}");

    // A good version after the corrupt one is served.
    publish(&registry, "ctr", 90);
    wait_for_version(server.http, "ctr", 3).await;
    server.stop().await;
}

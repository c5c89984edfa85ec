//! End to end through the `eddy` binary: `eddy learn --registry --publish-every` publishes
//! versions, `eddy models` lists and promotes them, and a row served by `eddy serve` over HTTP
//! gets exactly the prediction `eddy predict` gives with the same version.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

mod common;
use common::ok_stdout as eddy;

fn write_data(path: &Path, rows: usize, with_label: bool) {
    let mut text = String::from(if with_label { "label,f,c\n" } else { "f,c\n" });
    for i in 0..rows {
        let f = 0.5 * (i % 7) as f64;
        let c = format!("v{}", i % 4);
        if with_label {
            text.push_str(&format!("{},{f},{c}\n", u8::from(i % 4 == 1)));
        } else {
            text.push_str(&format!("{f},{c}\n"));
        }
    }
    std::fs::write(path, text).unwrap();
}

/// Kills the server when the test ends, passing or not.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `eddy serve` on 127.0.0.1:0 and returns it with the address it printed.
fn serve(args: &[&str]) -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let server = Server(child);
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("eddy serve exited before listening")
            .unwrap();
        if let Some(addr) = line.strip_prefix("listening on http://") {
            break addr.trim().to_string();
        }
    };
    (server, addr)
}

/// One HTTP/1.1 POST over a fresh connection; returns the status and the body.
fn post(addr: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn served_prediction_equals_eddy_predict_with_the_same_version() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("train.csv");
    let rows = dir.path().join("rows.csv");
    let reg = dir.path().join("registry");
    let reg_s = reg.to_str().unwrap();
    write_data(&data, 30_000, true);
    write_data(&rows, 5, false);

    eddy(&[
        "learn",
        "--data",
        data.to_str().unwrap(),
        "--label",
        "label",
        "--hash-bits",
        "12",
        "--registry",
        reg_s,
        "--name",
        "ctr",
        "--publish-every",
        "10000rows",
    ]);
    let listing: serde_json::Value =
        serde_json::from_str(&eddy(&["models", "--registry", reg_s, "--json", "ctr"])).unwrap();
    let versions = listing["versions"].as_array().unwrap();
    assert!(versions.len() >= 2, "{listing}");
    let last = versions.last().unwrap();
    assert_eq!(last["training-rows"], 30_000);
    assert_eq!(last["lineage"]["data"], data.to_str().unwrap());
    assert!(last["metrics"]["logloss"].as_f64().is_some(), "{last}");
    for pair in versions.windows(2) {
        assert_eq!(pair[1]["lineage"]["parent"], pair[0]["version"]);
    }
    let version = last["version"].as_u64().unwrap();

    // `eddy predict` with that version's model file.
    let model_file = reg
        .join("ctr")
        .join(format!("v{version}"))
        .join("model.eddy");
    let out = dir.path().join("scored.csv");
    eddy(&[
        "predict",
        "--model",
        model_file.to_str().unwrap(),
        "--data",
        rows.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let scored = std::fs::read_to_string(&out).unwrap();
    let header: Vec<&str> = scored.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "prediction").unwrap();
    let expected: Vec<f32> = scored
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(col).unwrap().parse().unwrap())
        .collect();

    // The same rows over HTTP from `eddy serve`, pinned to the same version.
    let (_server, addr) = serve(&["--registry", reg_s, "--model", &format!("ctr@{version}")]);
    let json_rows: Vec<serde_json::Value> = (0..5)
        .map(|i| serde_json::json!({"f": 0.5 * (i % 7) as f64, "c": format!("v{}", i % 4)}))
        .collect();
    let body = serde_json::json!({ "rows": json_rows }).to_string();
    let (status, answer) = post(&addr, "/v1/models/ctr/predict", &body);
    assert_eq!(status, 200, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["version"], version);
    let served: Vec<f32> = serde_json::from_value(answer["predictions"].clone()).unwrap();
    assert_eq!(served, expected);
}

#[test]
fn models_lists_promotes_archives_and_pins() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("train.csv");
    let reg = dir.path().join("registry");
    let reg_s = reg.to_str().unwrap();
    write_data(&data, 200, true);
    for _ in 0..2 {
        eddy(&[
            "learn",
            "--data",
            data.to_str().unwrap(),
            "--label",
            "label",
            "--hash-bits",
            "10",
            "--registry",
            reg_s,
            "--name",
            "ctr",
        ]);
    }
    let table = eddy(&["models", "--registry", reg_s]);
    assert!(table.lines().any(|l| l.starts_with("ctr ")), "{table}");
    let listing: serde_json::Value =
        serde_json::from_str(&eddy(&["models", "--registry", reg_s, "--json"])).unwrap();
    assert_eq!(listing["models"][0]["versions"], 2);
    assert_eq!(listing["models"][0]["latest"], 2);
    // The second run's parent is the first run's version.
    let v2: serde_json::Value =
        serde_json::from_str(&eddy(&["models", "--registry", reg_s, "--json", "ctr"])).unwrap();
    assert_eq!(v2["versions"][1]["lineage"]["parent"], 1);

    eddy(&["models", "--registry", reg_s, "promote", "ctr", "1"]);
    eddy(&[
        "models",
        "--registry",
        reg_s,
        "promote",
        "ctr",
        "2",
        "--stage",
        "validated",
    ]);
    eddy(&["models", "--registry", reg_s, "pin", "ctr", "2"]);
    let after: serde_json::Value =
        serde_json::from_str(&eddy(&["models", "--registry", reg_s, "--json", "ctr"])).unwrap();
    assert_eq!(after["versions"][0]["stage"], "production");
    assert_eq!(after["versions"][1]["stage"], "validated");
    assert_eq!(after["pinned"], 2);
    eddy(&["models", "--registry", reg_s, "archive", "ctr", "1"]);
    eddy(&["models", "--registry", reg_s, "unpin", "ctr"]);
    let after: serde_json::Value =
        serde_json::from_str(&eddy(&["models", "--registry", reg_s, "--json", "ctr"])).unwrap();
    assert_eq!(after["versions"][0]["stage"], "archived");
    assert_eq!(after["pinned"], serde_json::Value::Null);

    // Unknown versions and stages are refused with a message.
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["models", "--registry", reg_s, "promote", "ctr", "9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no version 9"));
}

#[test]
fn a_running_server_swaps_in_a_version_published_by_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("train.csv");
    let reg = dir.path().join("registry");
    let reg_s = reg.to_str().unwrap();
    write_data(&data, 500, true);
    let learn = [
        "learn",
        "--data",
        data.to_str().unwrap(),
        "--label",
        "label",
        "--hash-bits",
        "10",
        "--registry",
        reg_s,
        "--name",
        "ctr",
    ];
    eddy(&learn);
    let (_server, addr) = serve(&["--registry", reg_s, "--poll", "20ms"]);
    let body = r#"{"rows":[{"f":1.5,"c":"v1"}]}"#;
    let version = || {
        let (status, answer) = post(&addr, "/v1/models/ctr/predict", body);
        assert_eq!(status, 200, "{answer}");
        serde_json::from_str::<serde_json::Value>(&answer).unwrap()["version"].as_u64()
    };
    assert_eq!(version(), Some(1));
    eddy(&learn);
    let mut swapped = false;
    for _ in 0..20_000 {
        if version() == Some(2) {
            swapped = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(swapped, "the server never served version 2");
    let (status, text) = post(&addr, "/v1/models/nope/predict", body);
    assert_eq!(status, 404, "{text}");
}

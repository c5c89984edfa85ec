//! The deployment files stay true: the Kubernetes manifests under `deploy/k8s/` validate
//! strictly against the Kubernetes OpenAPI schemas (`kubernetes-validate`, a pinned version
//! from PyPI that `.ci/run` installs), the kustomization lists every one of them, every
//! container's command line parses with this build's `eddy`, the workflow in the ConfigMap
//! passes `eddy validate`, and the Dockerfile builds the binary the README builds.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The validator's version `.ci/run` installs.
const VALIDATOR_VERSION: &str = "1.37.0";
/// The Kubernetes version the manifests are written for (pod-index label, gRPC probes: 1.28+).
const KUBERNETES_VERSION: &str = "1.30";

fn k8s_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s")
}

/// The manifests: every YAML file under `deploy/k8s/` but the kustomization.
fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(k8s_dir())
        .expect("deploy/k8s exists")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "manifests under deploy/k8s: {files:?}");
    files
}

/// The `kubernetes-validate` on PATH, checked to be the pinned version.
fn validator() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("kubernetes-validate"))
            .find(|p| p.is_file())
    });
    let path = found.unwrap_or_else(|| {
        panic!(
            "kubernetes-validate is not on PATH: `bash .ci/run` installs it \
             (or `pip install kubernetes-validate=={VALIDATOR_VERSION}`)"
        )
    });
    let out = Command::new(&path)
        .arg("--version")
        .output()
        .expect("kubernetes-validate runs");
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        version.ends_with(VALIDATOR_VERSION),
        "kubernetes-validate {version}, pinned {VALIDATOR_VERSION}"
    );
    path
}

/// Every document of every manifest, as JSON (read by the validator's own Python and PyYAML).
fn documents() -> Vec<(PathBuf, Value)> {
    let script = std::fs::read_to_string(validator()).expect("the validator script");
    let python = script
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("#!"))
        .map(str::trim)
        .expect("the validator starts with a #! line");
    manifests()
        .into_iter()
        .flat_map(|file| {
            let out = Command::new(python)
                .args(["-c", "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))"])
                .arg(&file)
                .output()
                .expect("python runs");
            assert!(out.status.success(), "{}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
            let docs: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
            docs.into_iter().map(move |d| (file.clone(), d))
        })
        .collect()
}

#[test]
fn the_manifests_validate_strictly_against_the_kubernetes_schemas() {
    let out = Command::new(validator())
        .args([
            "--strict",
            "--quiet",
            "--kubernetes-version",
            KUBERNETES_VERSION,
        ])
        .args(manifests())
        .output()
        .expect("kubernetes-validate runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_kustomization_lists_every_manifest() {
    let text =
        std::fs::read_to_string(k8s_dir().join("kustomization.yaml")).expect("kustomization");
    let listed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .filter(|r| r.ends_with(".yaml"))
        .collect();
    let files: Vec<String> = manifests()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for f in &files {
        assert!(
            listed.contains(&f.as_str()),
            "{f} is not in kustomization.yaml"
        );
    }
    assert_eq!(
        listed.len(),
        files.len(),
        "kustomization lists {listed:?}, the directory has {files:?}"
    );
}

/// `$(NAME)` in a container argument, with the value a first pod would give it.
fn expand(arg: &str, env: &[Value]) -> String {
    let mut out = arg.to_string();
    for var in env {
        let name = var["name"].as_str().expect("env name");
        let value = match (&var["value"], &var["valueFrom"]["fieldRef"]["fieldPath"]) {
            (Value::String(v), _) => v.clone(),
            (_, Value::String(path)) if path.contains("pod-index") => "0".to_string(),
            (_, other) => panic!("env {name}: no value to test with ({other})"),
        };
        out = out.replace(&format!("$({name})"), &value);
    }
    assert!(!out.contains("$("), "unexpanded variable in `{arg}`");
    out
}

#[test]
fn every_container_command_line_parses_with_this_eddy() {
    let mut checked = 0;
    for (file, doc) in documents() {
        let Some(containers) = doc["spec"]["template"]["spec"]["containers"].as_array() else {
            continue;
        };
        for c in containers {
            let env = c["env"].as_array().cloned().unwrap_or_default();
            let args: Vec<String> = c["args"]
                .as_array()
                .expect("containers give eddy's arguments in `args`")
                .iter()
                .map(|a| expand(a.as_str().expect("string argument"), &env))
                .collect();
            // clap checks every argument and value before it answers --help
            let mut line: Vec<&str> = args.iter().map(String::as_str).collect();
            line.push("--help");
            let out = common::eddy(&line);
            assert!(
                out.status.success(),
                "{}: `eddy {}` does not parse:\n{}",
                file.display(),
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 3, "container command lines checked: {checked}");
}

#[test]
fn the_configmap_workflow_passes_eddy_validate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut found = 0;
    for (file, doc) in documents() {
        if doc["kind"] != "ConfigMap" {
            continue;
        }
        for (key, text) in doc["data"].as_object().expect("ConfigMap data") {
            if !key.ends_with(".toml") {
                continue;
            }
            let path = dir.path().join(key);
            std::fs::write(&path, text.as_str().expect("TOML text")).expect("write");
            let out = common::eddy(&["validate", path.to_str().unwrap()]);
            assert!(
                out.status.success(),
                "{} `{key}`: {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            found += 1;
        }
    }
    assert!(found >= 1, "no workflow TOML in a ConfigMap");
}

#[test]
fn the_dockerfile_builds_the_binary_the_readme_builds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let docker = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    assert!(
        readme.contains("cargo build --release"),
        "the README builds with cargo build --release"
    );
    let build = docker
        .lines()
        .find(|l| l.contains("cargo build"))
        .expect("the Dockerfile runs cargo build");
    assert!(
        build.contains("cargo build --release"),
        "Dockerfile: {build}"
    );
    assert!(
        docker.contains("COPY --from=build /usr/local/bin/eddy /usr/local/bin/eddy")
            && docker.contains("cp target/release/eddy /usr/local/bin/eddy"),
        "the runtime image carries target/release/eddy"
    );
    for (file, doc) in documents() {
        for c in doc["spec"]["template"]["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let image = c["image"].as_str().unwrap_or_default();
            assert!(
                image.starts_with("eddy:"),
                "{}: image {image} is not the Dockerfile's",
                file.display()
            );
        }
    }
}

/// The value after `flag` in a container's arguments.
fn flag_value<'a>(args: &'a [Value], flag: &str) -> &'a str {
    let at = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    args[at + 1].as_str().expect("a string argument")
}

#[test]
fn the_worker_statefulset_runs_the_external_workers_of_the_workflow_node_it_names() {
    let docs = documents();
    let toml = docs
        .iter()
        .find(|(_, d)| d["kind"] == "ConfigMap")
        .and_then(|(_, d)| d["data"]["workflow.toml"].as_str())
        .expect("the workflow ConfigMap");
    let wf = eddy_workflow::spec::Workflow::parse(toml).expect("the workflow parses");
    let (_, set) = docs
        .iter()
        .find(|(_, d)| d["kind"] == "StatefulSet" && d["metadata"]["name"] == "eddy-worker")
        .expect("the eddy-worker StatefulSet");
    let args = set["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args");
    assert_eq!(args[0], "node-worker");
    let node = flag_value(args, "--node");
    let spec = wf
        .nodes
        .iter()
        .find(|n| n.name == node)
        .unwrap_or_else(|| panic!("the workflow has no node `{node}`"));
    let eddy_workflow::spec::NodeKind::StreamTrain(t) = &spec.kind else {
        panic!("`{node}` is not a stream-train node");
    };
    assert!(
        t.external_workers,
        "`{node}` must have supervision = \"external\""
    );
    let replicas = set["spec"]["replicas"].as_u64().expect("replicas");
    assert_eq!(
        Some(replicas as u32),
        t.processes,
        "replicas = the node's processes"
    );
    assert_eq!(flag_value(args, "--workers"), replicas.to_string());
    let eddy_workflow::spec::PsSpec::Remote(shards) = t.ps.as_ref().expect("ps") else {
        panic!("`{node}` trains through running shards");
    };
    assert_eq!(
        flag_value(args, "--ps"),
        format!("grpc://{}", shards.join(",")),
        "the workers train through the node's shards"
    );
}

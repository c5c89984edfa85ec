//! The serving API over real HTTP and gRPC on 127.0.0.1:0: predictions equal the model's own,
//! bad requests answer 400/404/413/422 naming the field, listing, health and metrics, version
//! policies, per-key routing, and gRPC answering exactly as HTTP.

mod serving_support;

use std::time::Duration;

use eddy_algorithms::features::Features;
use eddy_workflow::registry::{Registry, Stage};
use eddy_workflow::serving::grpc::pb;
use eddy_workflow::serving::ServeConfig;
use serde_json::json;
use serving_support::{batch, client, predict, publish, send, start, trained};

fn config(models: &[&str]) -> ServeConfig {
    ServeConfig {
        models: models.iter().map(|m| m.parse().unwrap()).collect(),
        poll: Duration::from_millis(20),
        max_body_bytes: 4096,
        ..ServeConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictions_equal_the_models_own_on_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    publish(&registry, "ctr", 200);
    let server = start(registry, config(&["ctr"]), false).await;
    let rows = batch(8, 3);
    let mut expected = Vec::new();
    let model = trained(200);
    model
        .predict_batch(
            &rows,
            &mut Features::Sparse(Default::default()),
            &mut expected,
        )
        .unwrap();
    let json_rows: Vec<_> = (0..8)
        .map(|i| json!({"f": ((i + 3) % 7) as f64, "c": format!("v{}", (i + 3) % 4), "extra": [1]}))
        .collect();
    let (status, body) = predict(&client(), server.http, "ctr", json!(json_rows)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "ctr");
    assert_eq!(body["version"], 1);
    let got: Vec<f32> = serde_json::from_value(body["predictions"].clone()).unwrap();
    assert_eq!(got, expected);
    let probs: Vec<Vec<f32>> = serde_json::from_value(body["probabilities"].clone()).unwrap();
    assert_eq!(probs[0], vec![1.0 - expected[0], expected[0]]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_answer_400_404_413_422_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    publish(&registry, "ctr", 100);
    let server = start(registry, config(&["ctr"]), false).await;
    let c = client();
    let big = format!("{{\"rows\":[{{\"c\":\"{}\",\"f\":1}}]}}", "x".repeat(5000));
    // (path, body, status, field named in the answer)
    let table: Vec<(&str, String, u16, Option<&str>)> = vec![
        ("/v1/models/ctr/predict", "{\"rows\": [".into(), 400, None),
        ("/v1/models/ctr/predict", "not json".into(), 400, None),
        ("/v1/models/ctr/predict", "{\"row\": []}".into(), 400, None),
        (
            "/v1/models/ctr/predict",
            "{\"rows\": [1, 2]}".into(),
            400,
            None,
        ),
        (
            "/v1/models/nope/predict",
            "{\"rows\": []}".into(),
            404,
            None,
        ),
        ("/v1/models/ctr/predict", big, 413, None),
        (
            "/v1/models/ctr/predict",
            json!({"rows": [{"f": 1.0}]}).to_string(),
            422,
            Some("c"),
        ),
        (
            "/v1/models/ctr/predict",
            json!({"rows": [{"c": "v1"}]}).to_string(),
            422,
            Some("f"),
        ),
        (
            "/v1/models/ctr/predict",
            json!({"rows": [{"c": "v1", "f": 1}, {"c": "v1", "f": "high"}]}).to_string(),
            422,
            Some("f"),
        ),
        (
            "/v1/models/ctr/predict",
            json!({"rows": [{"c": {"a": 1}, "f": 1}]}).to_string(),
            422,
            Some("c"),
        ),
        (
            "/v1/predict",
            json!({"key": "x", "rows": []}).to_string(),
            400,
            None,
        ),
    ];
    for (path, body, status, field) in table {
        let (got, text) = send(&c, "POST", server.http, path, body.clone()).await;
        assert_eq!(got, status, "{path} {body:.80}: {text}");
        if let Some(field) = field {
            let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(answer["field"], field, "{text}");
            assert!(
                answer["error"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("`{field}`")),
                "{text}"
            );
        }
    }
    // The server still answers after every bad request.
    let (status, body) = predict(
        &c,
        server.http,
        "ctr",
        json!([{"f": 1, "c": "v1"}, {"f": null, "c": null}]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["predictions"].as_array().unwrap().len(), 2);
    let (_, metrics) = send(&c, "GET", server.http, "/metrics", "").await;
    assert!(
        metrics.contains("eddy_serving_errors_total{protocol=\"http\",class=\"client\"} 11"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    let c = client();
    // Configured but not published yet: not healthy.
    let server = start(registry.clone(), config(&["ctr"]), false).await;
    let (status, _) = send(&c, "GET", server.http, "/healthz", "").await;
    assert_eq!(status, 503);
    let (status, body) = predict(&c, server.http, "ctr", json!([])).await;
    assert_eq!(status, 503, "{body}");
    publish(&registry, "ctr", 100);
    let mut healthy = false;
    for _ in 0..20_000 {
        if send(&c, "GET", server.http, "/healthz", "").await.0 == 200 {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(healthy);
    let (status, text) = send(&c, "GET", server.http, "/v1/models", "").await;
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list["models"][0]["name"], "ctr");
    assert_eq!(list["models"][0]["version"], 1);
    assert_eq!(list["models"][0]["policy"], "latest");
    assert_eq!(list["models"][0]["learner"], "ftrl");
    assert_eq!(list["models"][0]["inputs"], json!(["f", "c"]));
    let (status, text) = send(&c, "GET", server.http, "/v1/models/ctr", "").await;
    assert_eq!(status, 200);
    assert!(text.contains("\"stage\":\"candidate\""), "{text}");
    assert_eq!(
        send(&c, "GET", server.http, "/v1/models/nope", "").await.0,
        404
    );
    let (status, metrics) = send(&c, "GET", server.http, "/metrics", "").await;
    assert_eq!(status, 200);
    for needle in [
        "eddy_serving_requests_total{protocol=\"http\"} 1",
        "eddy_serving_request_seconds_count{protocol=\"http\"} 1",
        "eddy_serving_model_version{model=\"ctr\"} 1",
        "eddy_serving_model_age_seconds{model=\"ctr\"}",
        "eddy_serving_model_requests_total{model=\"ctr\"} 1",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_policies_stage_pinned_and_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    for rows in [50, 60, 70] {
        publish(&registry, "ctr", rows);
    }
    registry.promote("ctr", 1, Stage::Production).unwrap();
    registry.pin("ctr", 2).unwrap();
    let server = start(
        registry.clone(),
        config(&["ctr@production", "ctr2@3"]),
        false,
    )
    .await;
    let c = client();
    let version = |m: &'static str| {
        let c = c.clone();
        let addr = server.http;
        async move {
            let (_, body) = predict(&c, addr, m, json!([{"f": 1, "c": "v1"}])).await;
            body["version"].as_u64()
        }
    };
    assert_eq!(version("ctr").await, Some(1));
    // Promoting v3 is an in-process stage event: the production policy follows it.
    registry.promote("ctr", 3, Stage::Production).unwrap();
    let mut followed = false;
    for _ in 0..20_000 {
        if version("ctr").await == Some(3) {
            followed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        followed,
        "the production policy did not follow the promotion"
    );
    // `ctr2@3` names a model with no such version: it is not ready, not a crash.
    let (status, _) = predict(&c, server.http, "ctr2", json!([])).await;
    assert_eq!(status, 503);
    server.stop().await;

    let pinned = start(registry, config(&["ctr@pinned"]), false).await;
    let (_, body) = predict(&c, pinned.http, "ctr", json!([{"f": 1, "c": "v1"}])).await;
    assert_eq!(body["version"], 2);
    pinned.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_routing_picks_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    publish(&registry, "seg-a", 50);
    publish(&registry, "seg-b", 50);
    publish(&registry, "seg-b", 90);
    let cfg = ServeConfig {
        route_prefix: Some("seg-".into()),
        ..config(&[])
    };
    let server = start(registry, cfg, false).await;
    let c = client();
    for (key, version) in [("a", 1), ("b", 2)] {
        let body = json!({"key": key, "rows": [{"f": 1, "c": "v1"}]}).to_string();
        let (status, text) = send(&c, "POST", server.http, "/v1/predict", body).await;
        assert_eq!(status, 200, "{text}");
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["model"], format!("seg-{key}"));
        assert_eq!(answer["version"], version);
    }
    let body = json!({"key": "zzz", "rows": []}).to_string();
    assert_eq!(
        send(&c, "POST", server.http, "/v1/predict", body).await.0,
        404
    );
    let body = json!({"rows": []}).to_string();
    assert_eq!(
        send(&c, "POST", server.http, "/v1/predict", body).await.0,
        400
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_predict_equals_http() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    publish(&registry, "ctr", 150);
    let server = start(registry, config(&["ctr"]), true).await;
    let rows = [(3.0, "v1"), (0.0, "v2"), (6.0, "v1")];
    let json_rows: Vec<_> = rows.iter().map(|(f, c)| json!({"f": f, "c": c})).collect();
    let (status, http) = predict(&client(), server.http, "ctr", json!(json_rows)).await;
    assert_eq!(status, 200);

    let addr = format!("http://{}", server.grpc.unwrap());
    let mut grpc = pb::serving_client::ServingClient::connect(addr)
        .await
        .unwrap();
    let value = |kind| pb::Value { kind: Some(kind) };
    let request = pb::PredictRequest {
        model: "ctr".into(),
        key: String::new(),
        rows: rows
            .iter()
            .map(|(f, c)| pb::Row {
                fields: [
                    ("f".to_string(), value(pb::value::Kind::Number(*f))),
                    ("c".to_string(), value(pb::value::Kind::Text(c.to_string()))),
                ]
                .into_iter()
                .collect(),
            })
            .collect(),
    };
    let answer = grpc.predict(request.clone()).await.unwrap().into_inner();
    assert_eq!(answer.model, "ctr");
    assert_eq!(answer.version, http["version"].as_u64().unwrap());
    let http_predictions: Vec<f32> = serde_json::from_value(http["predictions"].clone()).unwrap();
    assert_eq!(answer.predictions, http_predictions);
    assert_eq!(
        answer.probabilities[2].values,
        vec![1.0 - http_predictions[2], http_predictions[2]]
    );

    let unknown = pb::PredictRequest {
        model: "nope".into(),
        ..request.clone()
    };
    assert_eq!(
        grpc.predict(unknown).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    let mut missing = request.clone();
    missing.rows[1].fields.remove("c");
    let status = grpc.predict(missing).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("`c`"), "{}", status.message());
    let list = grpc
        .list_models(pb::ListModelsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.models.len(), 1);
    assert_eq!(list.models[0].inputs, vec!["f", "c"]);
    let info = grpc
        .get_model(pb::GetModelRequest { name: "ctr".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((info.version, info.learner.as_str()), (1, "ftrl"));
    assert!(
        grpc.health(pb::HealthRequest {})
            .await
            .unwrap()
            .into_inner()
            .ok
    );
    server.stop().await;
}

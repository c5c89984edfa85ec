//! The standard gRPC health service on the serving port (#14 case 26): NOT_SERVING while a
//! served model has no version, SERVING once every one has, for `""` and the serving service.

mod serving_support;

use std::time::{Duration, Instant};

use eddy_workflow::registry::Registry;
use eddy_workflow::serving::ServeConfig;
use serving_support::{publish, start};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

async fn status(addr: std::net::SocketAddr, service: &str) -> i32 {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_follows_the_served_models() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    let config = ServeConfig {
        models: vec!["ctr".parse().unwrap()],
        poll: Duration::from_millis(20),
        ..ServeConfig::default()
    };
    let server = start(registry.clone(), config, true).await;
    let grpc = server.grpc.unwrap();
    let not_serving = ServingStatus::NotServing as i32;
    let serving = ServingStatus::Serving as i32;
    // The health task runs beside the server: wait (bounded) for its first report.
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(grpc, "").await != not_serving {
        assert!(
            Instant::now() < deadline,
            "never NOT_SERVING without a version"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    publish(&registry, "ctr", 50);
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(grpc, "").await != serving {
        assert!(
            Instant::now() < deadline,
            "never SERVING after a version loaded"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status(grpc, "eddy.serving.v1.Serving").await, serving);
    server.stop().await;
}

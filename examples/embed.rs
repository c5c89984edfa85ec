//! eddy as a library: build a pipeline and a learner, train from a source with progressive
//! validation, publish versions to a registry, and serve the newest over HTTP — the same engine
//! `eddy learn` and `eddy run` use.
//!
//!     cargo run --release --example embed

use std::io::{Read, Write};
use std::sync::Arc;

use eddy::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let registry = Registry::open(dir.path().join("registry"))?;

    // train FTRL on 100k generated clicks, publishing a version every 25k rows
    let clicks = Arc::new(CtrGenerator::new(7, false));
    let mut config = TrainConfig::new("embed", LearnerSpec::new(LearnerKind::Ftrl));
    config.checkpoint.dir = Some(dir.path().join("checkpoints"));
    config.publish = Some(PublishTo {
        registry: registry.clone(),
        name: "ctr".into(),
        every: PublishEvery::rows(25_000),
        template: NewVersion::default(),
    });
    let job = TrainJob::new(config)?;
    let input = job.flow().source("clicks", clicks.source(Some(100_000)));
    let pipeline = StandardPipeline {
        label: "label".into(),
        numeric: (0..5).map(|i| format!("f{i}")).collect(),
        categorical: (0..10).map(|i| format!("c{i}")).collect(),
        crosses: vec![vec!["c0".into(), "c1".into()]],
        scale: true,
        dense: false,
        hash_bits: 20,
    }
    .build()?;
    let outcome = job.start(input, pipeline, None)?.join()?;
    println!("trained: {}", outcome.report.to_json_line());

    // serve the newest version on 127.0.0.1 and ask it about one row
    let rt = tokio::runtime::Runtime::new()?;
    let answer = rt.block_on(async {
        let config = ServeConfig {
            models: vec!["ctr@latest".parse()?],
            ..ServeConfig::default()
        };
        let server = Server::new(registry, config).await?;
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = http.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.run(http, None, async {
            let _ = stopped.await;
        }));
        let answer = tokio::task::spawn_blocking(move || post(addr, ROW)).await??;
        let _ = stop.send(());
        serving.await??;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(answer)
    });
    println!("served: {}", answer.map_err(|e| e.to_string())?);
    Ok(())
}

const ROW: &str = r#"{"rows":[{"f0":0.1,"f1":-1.2,"f2":0.3,"f3":2.0,"f4":0.0,"c0":"a1","c1":"b2","c2":"c3","c3":"d4","c4":"e5","c5":"f6","c6":"g7","c7":"h8","c8":"i9","c9":"j0"}]}"#;

/// One HTTP/1.1 request with a JSON body; the response body.
fn post(addr: std::net::SocketAddr, body: &str) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    write!(
        stream,
        "POST /v1/models/ctr/predict HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string())
}

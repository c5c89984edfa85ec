//! A real Kafka-API broker for tests: `tansu` on 127.0.0.1, one per [`Broker`] value, killed
//! on drop; in-memory storage, or ([`Broker::start_persistent`]) an SQLite file that survives
//! a [`restart`](Broker::restart) on the same port. Tests that need it fail (never skip) when tansu is
//! missing: `.ci/run` installs it.

#![allow(dead_code)] // each test binary uses its own subset

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// A running tansu broker on a loopback port.
pub struct Broker {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// `--storage-engine`.
    storage: String,
    /// The working directory (an SQLite storage file lives there).
    dir: Option<PathBuf>,
}

/// The tansu binary: `$TANSU`, then PATH, then `~/.cargo/bin/tansu`; panics with the install
/// command when there is none.
pub fn tansu() -> PathBuf {
    if let Some(p) = std::env::var_os("TANSU") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("tansu"))
            .find(|p| p.is_file())
    });
    if let Some(p) = on_path {
        return p;
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let cargo_bin = home.join(".cargo/bin/tansu");
    assert!(
        cargo_bin.is_file(),
        "the Kafka tests need the tansu broker and it is not installed: run .ci/run, or \
         `cargo install tansu --version 0.6.0 --locked --no-default-features \
         --features dynostore,libsql`"
    );
    cargo_bin
}

impl Broker {
    /// Starts a broker with in-memory storage on a free loopback port and waits until it
    /// answers a metadata request (bounded: 5 attempts of 20 s).
    pub fn start() -> Broker {
        Broker::launch("memory://tansu/".into(), None, None)
    }

    /// Starts a broker storing its topics in the SQLite file `dir/tansu.db` (tansu's `libsql`
    /// storage engine), so that they survive [`restart`](Broker::restart).
    pub fn start_persistent(dir: &std::path::Path) -> Broker {
        Broker::launch("sqlite://tansu.db".into(), Some(dir.to_path_buf()), None)
    }

    /// Stops the broker (SIGKILL: nothing flushed on the way out).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the broker again on the same port with the same storage (after [`stop`]).
    ///
    /// [`stop`]: Broker::stop
    pub fn restart(&mut self) {
        self.stop();
        let port = self.addr.rsplit(':').next().and_then(|p| p.parse().ok());
        // the old value's drop finds its process already reaped
        *self = Broker::launch(self.storage.clone(), self.dir.clone(), port);
    }

    fn launch(storage: String, dir: Option<PathBuf>, port: Option<u16>) -> Broker {
        let bin = tansu();
        for _attempt in 0..5 {
            let port = port.unwrap_or_else(|| {
                let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
                l.local_addr().expect("local addr").port()
            });
            let url = format!("tcp://127.0.0.1:{port}");
            let mut command = Command::new(&bin);
            command
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                ])
                .args(["--storage-engine", &storage])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            if let Some(dir) = &dir {
                command.current_dir(dir);
            }
            let mut child = command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            // tansu prints `ready in …` once listening; stdout is then drained by a thread
            let stdout = child.stdout.take().expect("piped stdout");
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut ready = Some(tx);
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if line.contains("ready in") {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                    }
                }
            });
            let addr = format!("127.0.0.1:{port}");
            if rx.recv_timeout(Duration::from_secs(20)).is_ok() && metadata_ok(&addr) {
                return Broker {
                    child,
                    addr,
                    storage,
                    dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(200)); // the same port may need a moment
        }
        panic!("tansu did not come up on 127.0.0.1 in 5 attempts");
    }

    /// `kafka://127.0.0.1:PORT/TOPIC`.
    pub fn uri(&self, topic: &str) -> String {
        format!("kafka://{}/{topic}", self.addr)
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.addr)
            .create()
            .expect("admin client");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = rt
            .block_on(admin.create_topics([&new], &opts))
            .expect("create_topics");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
        }
    }

    /// A producer with default settings (idempotence off, acks=all).
    pub fn producer(&self) -> BaseProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.addr)
            .set("linger.ms", "5")
            .create()
            .expect("producer")
    }

    /// Produces `payloads[i]` to partition `partition(i)` and waits for every delivery.
    pub fn produce(&self, topic: &str, payloads: &[Vec<u8>], partition: impl Fn(usize) -> i32) {
        let producer = self.producer();
        for (i, payload) in payloads.iter().enumerate() {
            let mut record: BaseRecord<'_, (), [u8]> = BaseRecord::to(topic)
                .payload(payload.as_slice())
                .partition(partition(i));
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((e, r)) => {
                        assert!(Instant::now() < deadline, "produce: {e}");
                        record = r;
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
        }
        producer
            .flush(Duration::from_secs(30))
            .expect("flush produced messages");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a metadata request to `addr` succeeds and names the broker.
fn metadata_ok(addr: &str) -> bool {
    let producer: BaseProducer = match ClientConfig::new().set("bootstrap.servers", addr).create() {
        Ok(p) => p,
        Err(_) => return false,
    };
    producer
        .client()
        .fetch_metadata(None, Duration::from_secs(5))
        .is_ok_and(|m| !m.brokers().is_empty())
}

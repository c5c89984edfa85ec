//! Serving metrics as lock-free counters, rendered in the Prometheus text format by
//! `GET /metrics`, and the request log: one `info` line every
//! [`ServeConfig::log_every`](super::ServeConfig::log_every) requests (counts so far) and one
//! line per failed request (`warn` for a server error, `info` for a client error).
//! [`ConnectionMetrics`] counts the HTTP connections of the accept loop
//! ([`listen`](super::listen)): open, waiting for their first byte, accepted, evicted.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram's buckets.
const BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// The failure statuses counted one by one (`eddy_serving_error_responses_total{code}`): every
/// status a predict request fails with ([`status_of`](super::http::status_of); a gRPC code is
/// counted as the HTTP status it maps to); any other is counted as `code="other"`.
const CODES: [u16; 7] = [400, 404, 413, 422, 429, 500, 503];

/// The wire protocol of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/JSON.
    Http,
    /// gRPC.
    Grpc,
}

impl Protocol {
    fn index(self) -> usize {
        match self {
            Protocol::Http => 0,
            Protocol::Grpc => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        }
    }
}

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum of the observations in nanoseconds.
    sum_ns: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| s <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Server-wide request metrics (per-model counters live with each served model).
#[derive(Debug, Default)]
pub struct Metrics {
    latency: [Histogram; 2],
    requests: [AtomicU64; 2],
    /// Failed requests by protocol and class: 0 = client error (4xx), 1 = server error (5xx).
    errors: [[AtomicU64; 2]; 2],
    /// Failed requests by protocol and status: [`CODES`], then every other status.
    codes: [[AtomicU64; CODES.len() + 1]; 2],
    /// A request log line every this many requests (0: none).
    log_every: AtomicU64,
    /// Requests of both protocols, numbering the request log lines.
    all_requests: AtomicU64,
    /// The HTTP accept loop's connection counters.
    connections: Arc<ConnectionMetrics>,
}

impl Metrics {
    /// Records one finished request: its latency and whether it failed (`Some(status)` for an
    /// HTTP status, or the HTTP status a gRPC code maps to).
    pub fn record(&self, protocol: Protocol, latency: Duration, failed_status: Option<u16>) {
        let p = protocol.index();
        self.requests[p].fetch_add(1, Ordering::Relaxed);
        self.latency[p].observe(latency);
        if let Some(status) = failed_status {
            let class = usize::from(status >= 500);
            self.errors[p][class].fetch_add(1, Ordering::Relaxed);
            let code = CODES
                .iter()
                .position(|&c| c == status)
                .unwrap_or(CODES.len());
            self.codes[p][code].fetch_add(1, Ordering::Relaxed);
        }
        let every = self.log_every.load(Ordering::Relaxed);
        let total = self.all_requests.fetch_add(1, Ordering::Relaxed) + 1;
        if every > 0 && total % every == 0 {
            let errors: u64 = self
                .errors
                .iter()
                .flatten()
                .map(|e| e.load(Ordering::Relaxed))
                .sum();
            tracing::info!(
                requests = total,
                errors,
                last_latency_us = latency.as_micros() as u64,
                "served {total} predict requests"
            );
        }
    }

    /// Logs a request log line every `every` predict requests (0: never).
    pub fn set_log_every(&self, every: u64) {
        self.log_every.store(every, Ordering::Relaxed);
    }

    /// Logs one failed request: `warn` for a server error (5xx), `info` for a client error.
    pub fn log_failure(&self, protocol: Protocol, status: u16, error: &dyn std::fmt::Display) {
        let protocol = match protocol {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        };
        if status >= 500 {
            tracing::warn!(protocol, status, "predict request failed: {error}");
        } else {
            tracing::info!(protocol, status, "predict request refused: {error}");
        }
    }

    /// The HTTP connection counters, shared with the accept loop.
    pub fn connections(&self) -> &Arc<ConnectionMetrics> {
        &self.connections
    }

    /// Appends the server-wide metrics in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        self.connections.render(out);
        let protocols = [Protocol::Http, Protocol::Grpc];
        out.push_str("# HELP eddy_serving_requests_total Predict requests received.\n");
        out.push_str("# TYPE eddy_serving_requests_total counter\n");
        for p in protocols {
            let n = self.requests[p.index()].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "eddy_serving_requests_total{{protocol=\"{}\"}} {n}",
                p.name()
            );
        }
        out.push_str("# HELP eddy_serving_errors_total Predict requests that failed.\n");
        out.push_str("# TYPE eddy_serving_errors_total counter\n");
        for p in protocols {
            for (class, label) in ["client", "server"].iter().enumerate() {
                let n = self.errors[p.index()][class].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "eddy_serving_errors_total{{protocol=\"{}\",class=\"{label}\"}} {n}",
                    p.name()
                );
            }
        }
        out.push_str(
            "# HELP eddy_serving_error_responses_total Predict requests that failed, by status \
             code (a gRPC code counts as the HTTP status it maps to; written once seen).\n",
        );
        out.push_str("# TYPE eddy_serving_error_responses_total counter\n");
        for p in protocols {
            for (i, counter) in self.codes[p.index()].iter().enumerate() {
                let n = counter.load(Ordering::Relaxed);
                if n == 0 {
                    continue;
                }
                let code = CODES.get(i).map_or("other".to_string(), u16::to_string);
                let _ = writeln!(
                    out,
                    "eddy_serving_error_responses_total{{protocol=\"{}\",code=\"{code}\"}} {n}",
                    p.name()
                );
            }
        }
        out.push_str("# HELP eddy_serving_request_seconds Predict request latency.\n");
        out.push_str("# TYPE eddy_serving_request_seconds histogram\n");
        for p in protocols {
            self.latency[p.index()].render(
                out,
                "eddy_serving_request_seconds",
                &format!("protocol=\"{}\"", p.name()),
            );
        }
    }
}

/// Counters of the HTTP accept loop (lock-free; see [`listen`](super::listen)).
#[derive(Debug, Default)]
pub struct ConnectionMetrics {
    limit: AtomicU64,
    open: AtomicU64,
    waiting: AtomicU64,
    accepted: AtomicU64,
    evicted: AtomicU64,
}

impl ConnectionMetrics {
    /// The connection limit in force (after lowering it to the open-file limit).
    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Connections holding a slot now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections holding a slot that have not sent their first byte yet.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn accepted_total(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections closed so far to make room for a new one, never having sent a byte.
    pub fn evicted_total(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    pub(crate) fn set_limit(&self, limit: usize) {
        self.limit.store(limit as u64, Ordering::Relaxed);
    }

    pub(crate) fn set_waiting(&self, waiting: usize) {
        self.waiting.store(waiting as u64, Ordering::Relaxed);
    }

    pub(crate) fn on_accept(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn on_close(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn on_evict(&self) {
        self.evicted.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the connection metrics in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let rows = [
            (
                "eddy_http_connections_open",
                "gauge",
                "HTTP connections open (holding a slot).",
                self.open(),
            ),
            (
                "eddy_http_connections_waiting_first_byte",
                "gauge",
                "Open HTTP connections that have not sent a byte yet (evictable).",
                self.waiting(),
            ),
            (
                "eddy_http_connections_limit",
                "gauge",
                "The HTTP connection limit in force (configured, lowered to the open-file limit).",
                self.limit(),
            ),
            (
                "eddy_http_connections_accepted_total",
                "counter",
                "HTTP connections accepted.",
                self.accepted_total(),
            ),
            (
                "eddy_http_connections_evicted_total",
                "counter",
                "HTTP connections closed at the limit to make room, never having sent a byte.",
                self.evicted_total(),
            ),
        ];
        for (name, kind, help, value) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.record(Protocol::Http, Duration::from_micros(70), None);
        m.record(Protocol::Http, Duration::from_millis(3), Some(422));
        m.record(Protocol::Grpc, Duration::from_secs(5), Some(500));
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains("eddy_serving_requests_total{protocol=\"http\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("eddy_serving_request_seconds_bucket{protocol=\"http\",le=\"0.0001\"} 1")
        );
        assert!(
            out.contains("eddy_serving_request_seconds_bucket{protocol=\"http\",le=\"0.005\"} 2")
        );
        assert!(out.contains("eddy_serving_request_seconds_bucket{protocol=\"grpc\",le=\"1\"} 0"));
        assert!(out.contains("eddy_serving_request_seconds_count{protocol=\"grpc\"} 1"));
        assert!(out.contains("eddy_serving_errors_total{protocol=\"http\",class=\"client\"} 1"));
        assert!(out.contains("eddy_serving_errors_total{protocol=\"grpc\",class=\"server\"} 1"));
        assert!(
            out.contains("eddy_serving_error_responses_total{protocol=\"http\",code=\"422\"} 1\n")
        );
        assert!(
            out.contains("eddy_serving_error_responses_total{protocol=\"grpc\",code=\"500\"} 1\n")
        );
        m.record(Protocol::Http, Duration::from_millis(1), Some(418));
        let mut out = String::new();
        m.render(&mut out);
        assert!(out
            .contains("eddy_serving_error_responses_total{protocol=\"http\",code=\"other\"} 1\n"));
        assert!(!out.contains("code=\"404\""), "{out}");
    }

    #[test]
    fn connection_gauges_follow_accepts_closes_and_evictions() {
        let m = Metrics::default();
        let c = m.connections();
        c.set_limit(3);
        c.on_accept();
        c.on_accept();
        c.on_evict();
        c.on_close();
        c.set_waiting(1);
        let mut out = String::new();
        m.render(&mut out);
        for line in [
            "eddy_http_connections_open 1\n",
            "eddy_http_connections_waiting_first_byte 1\n",
            "eddy_http_connections_limit 3\n",
            "eddy_http_connections_accepted_total 2\n",
            "eddy_http_connections_evicted_total 1\n",
            "# TYPE eddy_http_connections_evicted_total counter\n",
        ] {
            assert!(out.contains(line), "{line}: {out}");
        }
    }
}

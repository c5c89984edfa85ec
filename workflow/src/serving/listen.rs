//! The HTTP accept loop: a connection limit with eviction, a header-read timeout, an idle
//! timeout and a graceful shutdown, so idle or half-sent connections cannot exhaust the server
//! nor keep a legitimate client out.
//!
//! - **Connection limit.** At most [`HttpLimits::max_connections`] connections hold a slot, and
//!   never more than the process's open-file limit allows: the limit in force is the configured
//!   one lowered to the soft `RLIMIT_NOFILE` (read from `/proc/self/limits` on Linux) minus
//!   [`FD_RESERVE`] descriptors kept for the listeners, model and registry files and the
//!   runtime ([`effective_max_connections`]).
//! - **Eviction at the limit.** Stopping `accept` at the limit would leave a new client (a
//!   `/healthz` probe, say) queued in the kernel's backlog behind thousands of idle sockets.
//!   Instead, while some connection holding a slot has not sent its first byte, the loop keeps
//!   accepting, and each connection accepted at the limit takes the slot of the connection
//!   that has waited longest for its first byte, which is closed (counted in
//!   `eddy_http_connections_evicted_total`). A connection that has sent a byte (mid-request,
//!   or idle between keep-alive requests) is never evicted; when every slot is held by such a
//!   connection the loop stops accepting until one closes. "Sent a byte" is what the server
//!   has seen: a non-blocking peek right after `accept` (so a request already waiting in the
//!   socket is never mistaken for silence), then the connection's own wait for its first
//!   byte. Cost: a peek per connection; a lock, a map insert and a removal per silent one
//!   (the queue, module `slots`); nothing per request.
//! - **First byte.** A new connection costs a socket and a small task until its first byte
//!   arrives: no HTTP buffers are allocated before that, and a connection that sends nothing
//!   within the header-read timeout is closed.
//! - **Header-read timeout.** hyper closes a connection whose request head (the first, or the
//!   next one on a keep-alive connection) is not complete within
//!   [`HttpLimits::header_read_timeout`] of waiting for it; this also bounds idle keep-alive.
//! - **Idle timeout.** A connection that moves no byte either way for
//!   [`HttpLimits::idle_timeout`] (a stalled body upload, a client that stops reading its
//!   answer) is closed.
//! - **Shutdown.** When the shutdown future completes the listener is closed, every connection
//!   finishes its in-flight request and closes, and [`serve_http`] returns once all have.
//!
//! Gauges and counters (`eddy_http_connections_*` in `/metrics`) are
//! [`ConnectionMetrics`].
//!
//! Measured (debug build, 2 cores, open-file limit 20,000 for server and clients alike):
//! 20,000 idle connections from two client processes against a server whose limit in force
//! is 19,744: 257 evicted, `/healthz` answered in 2 ms at worst (best of three per 1000
//! connections), server RSS 26 MB -> 58 MB, 5 threads
//! (`healthz_answers_within_50ms_while_20k_idle_connections_are_open`).

mod slots;

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit};

use super::metrics::ConnectionMetrics;
use slots::{FirstByte, Slots};

/// The connection limits of the HTTP server (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time allowed for a request head to arrive completely, counted from when the server
    /// starts waiting for it (connection open, or the previous answer sent).
    pub header_read_timeout: Duration,
    /// Time a connection may move no byte in either direction before it is closed.
    pub idle_timeout: Duration,
    /// Open connections at most, lowered to what the open-file limit allows
    /// ([`effective_max_connections`]).
    pub max_connections: usize,
}

/// File descriptors the connection limit leaves to everything else: listeners, model and
/// registry files, the runtime's own descriptors, and sockets of evicted connections that
/// have not closed yet.
pub const FD_RESERVE: u64 = 256;

/// Pause after an accept error other than a failed handshake (too many open files, say), so
/// the loop does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// The connection limit in force: `configured`, lowered to `open_files` (the soft open-file
/// limit, `None` when unknown or unlimited) minus [`FD_RESERVE`], and at least 1.
pub fn effective_max_connections(configured: usize, open_files: Option<u64>) -> usize {
    let allowed = open_files.map_or(u64::MAX, |n| n.saturating_sub(FD_RESERVE));
    let allowed = usize::try_from(allowed).unwrap_or(usize::MAX);
    configured.min(allowed).max(1)
}

/// The soft open-file limit of this process (`None`: unlimited, or not Linux).
pub fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_file_limit(&text)
}

/// The soft limit of the `Max open files` row of a `/proc/PID/limits` text.
fn parse_open_file_limit(limits: &str) -> Option<u64> {
    let row = limits.lines().find(|l| l.starts_with("Max open files"))?;
    row.split_whitespace().nth(3)?.parse().ok()
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then drains.
/// Connection gauges and counters go to `metrics`.
pub(crate) async fn serve_http(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    metrics: Arc<ConnectionMetrics>,
    shutdown: impl Future<Output = ()>,
) {
    let fds = open_file_limit();
    let max = effective_max_connections(limits.max_connections, fds);
    if max < limits.max_connections {
        tracing::info!(
            configured = limits.max_connections,
            open_file_limit = fds,
            "HTTP connection limit lowered to {max} by the open-file limit"
        );
    }
    let slots = Arc::new(Slots::new(max, metrics.clone()));
    let (stop, stopped) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        // A free slot; or, at the limit, none yet if a connection can be evicted for the next
        // one; else (every slot active) wait for one to free.
        let free = if slots.has_waiting() {
            slots.try_acquire()
        } else {
            tokio::select! {
                _ = &mut shutdown => break,
                slot = slots.acquire() => match slot {
                    Some(slot) => Some(slot),
                    None => break, // never closed
                },
            }
        };
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let slot = match free
            .or_else(|| slots.try_acquire())
            .or_else(|| slots.evict_oldest())
        {
            Some(slot) => slot,
            // The waiting connections got their first byte meanwhile: this one waits for a slot.
            None => tokio::select! {
                _ = &mut shutdown => break,
                slot = slots.acquire() => match slot {
                    Some(slot) => slot,
                    None => break,
                },
            },
        };
        metrics.on_accept();
        // Queued here, not in the task: the next turn of this loop must see it as evictable
        // even if its task has not run yet (else, every slot taken, the loop would wait for
        // a free one while a silent connection could have made room). One whose first byte
        // is already here is never queued, so it cannot be evicted before its task runs.
        let slot = if has_sent(&stream) {
            Slot::Held(slot)
        } else {
            Slot::Queued(slots.wait_first_byte(slot))
        };
        let task = Connection {
            router: router.clone(),
            limits,
            stopped: stopped.clone(),
            metrics: metrics.clone(),
        };
        tokio::spawn(task.serve(stream, slot));
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a slot until it ends: having them all back means drained.
    slots.drained().await;
}

/// Errors of one connection's handshake, which say nothing about the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Whether the client of a just accepted connection has sent a byte already (a
/// non-blocking peek; no on an error, which the connection's own read will meet).
fn has_sent(stream: &TcpStream) -> bool {
    let mut byte = [MaybeUninit::uninit()];
    matches!(socket2::SockRef::from(stream).peek(&mut byte), Ok(n) if n > 0)
}

/// A new connection's slot: held outright once its first byte is here, else in the eviction
/// queue.
enum Slot {
    Held(OwnedSemaphorePermit),
    Queued(FirstByte),
}

/// What one connection's task needs from the server.
struct Connection {
    router: Router,
    limits: HttpLimits,
    stopped: watch::Receiver<bool>,
    metrics: Arc<ConnectionMetrics>,
}

impl Connection {
    /// Serves one connection, queued for eviction until its first byte, until it closes,
    /// times out, is evicted, or the server stops.
    async fn serve(mut self, stream: TcpStream, slot: Slot) {
        let slot = match slot {
            Slot::Held(slot) => Some(slot),
            Slot::Queued(queued) => self.first_byte(&stream, queued).await,
        };
        if let Some(slot) = slot {
            // Boxed, so a connection still waiting for its first byte is a small task.
            Box::pin(http(stream, self.router, self.limits, self.stopped)).await;
            drop(slot);
        }
        self.metrics.on_close();
    }

    /// Waits in the eviction queue for the first byte; the slot back if it came in time.
    async fn first_byte(
        &mut self,
        stream: &TcpStream,
        mut queued: FirstByte,
    ) -> Option<OwnedSemaphorePermit> {
        // Nothing is allocated for HTTP until the first byte (or the server stops). `peek`,
        // not `readable`: readiness can be reported for a socket that has sent nothing.
        let mut byte = [0u8; 1];
        tokio::select! {
            peeked = tokio::time::timeout(self.limits.header_read_timeout, stream.peek(&mut byte)) => {
                // A timeout, an error, or the client closed (0 bytes) without sending anything.
                if !matches!(peeked, Ok(Ok(n)) if n > 0) {
                    return None;
                }
            }
            () = queued.evicted() => return None,
            _ = self.stopped.changed() => return None,
        }
        queued.arrived()
    }
}

/// Serves HTTP/1 on a connection that has sent its first byte.
async fn http(
    stream: TcpStream,
    router: Router,
    limits: HttpLimits,
    mut stopped: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let clock = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Tracked {
        inner: stream,
        clock,
        last: last.clone(),
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let mut conn = pin!(builder.serve_connection(io, TowerToHyperService::new(router)));
    let mut draining = false;
    loop {
        let idle_for = Duration::from_millis(last.load(Ordering::Relaxed));
        let deadline = tokio::time::Instant::from_std(clock + idle_for + limits.idle_timeout);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection closed with an error");
                }
                return;
            }
            _ = stopped.changed(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep_until(deadline) => {
                let quiet = clock.elapsed().saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                if quiet >= limits.idle_timeout {
                    tracing::debug!(idle_ms = quiet.as_millis() as u64, "closing an idle connection");
                    return;
                }
            }
        }
    }
}

/// A socket that records when it last moved a byte (milliseconds since `clock`).
struct Tracked {
    inner: TcpStream,
    clock: Instant,
    last: Arc<AtomicU64>,
}

impl Tracked {
    fn touch(&self) {
        self.last
            .store(self.clock.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_limit_in_force_leaves_a_reserve_of_the_open_file_limit() {
        assert_eq!(effective_max_connections(32_768, Some(20_000)), 19_744);
        assert_eq!(effective_max_connections(4, Some(20_000)), 4);
        assert_eq!(effective_max_connections(32_768, None), 32_768);
        assert_eq!(effective_max_connections(100, Some(10)), 1);
    }

    #[test]
    fn the_soft_open_file_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             127431               127431               processes \n\
                    Max open files            20000                40000                files     \n";
        assert_eq!(parse_open_file_limit(text), Some(20_000));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_file_limit(unlimited), None);
        assert_eq!(parse_open_file_limit("Max processes 1 1 processes\n"), None);
    }

    /// A server with `max` slots on a port of 127.0.0.1; the stop sender ends it.
    async fn server(
        max: usize,
    ) -> (
        String,
        Arc<ConnectionMetrics>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let router = Router::new().route("/healthz", get(|| async { "ok" }));
        let limits = HttpLimits {
            header_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_connections: max,
        };
        let metrics = Arc::new(ConnectionMetrics::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let m = metrics.clone();
        tokio::spawn(serve_http(listener, router, limits, m, async {
            let _ = stopped.await;
        }));
        (addr, metrics, stop)
    }

    async fn healthz(addr: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        read_all(&mut s).await
    }

    /// Reads until EOF, failing after 10 s.
    async fn read_all(s: &mut TcpStream) -> String {
        let mut answer = String::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut answer));
        read.await.expect("no answer within 10 s").unwrap();
        answer
    }

    /// Waits (bounded) until `done` holds.
    async fn until(what: &str, done: impl Fn() -> bool) {
        for _ in 0..2_000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{what}: not within 10 s");
    }

    #[tokio::test]
    async fn at_the_limit_a_new_client_evicts_the_oldest_silent_connection_not_an_active_one() {
        eviction_at_the_limit().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_two_threads_too_a_new_client_evicts_a_silent_connection_not_an_active_one() {
        eviction_at_the_limit().await;
    }

    /// One slot, held by a keep-alive connection; behind it in the backlog a client whose
    /// request is already sent, then a silent one. When the slot frees, the loop accepts both
    /// in one go: the one with a request must not be evicted for the silent one.
    #[tokio::test]
    async fn a_connection_whose_request_is_already_here_is_never_evicted() {
        let (addr, metrics, stop) = server(1).await;
        let mut keep_alive = TcpStream::connect(&addr).await.unwrap();
        keep_alive
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let read = tokio::time::timeout(Duration::from_secs(10), keep_alive.read(&mut buf));
        assert!(read.await.unwrap().unwrap() > 0);
        let connect = |head: &[u8]| {
            use std::io::Write;
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(head).unwrap();
            s.set_nonblocking(true).unwrap();
            TcpStream::from_std(s).unwrap()
        };
        let mut sent = connect(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let _silent = connect(b"");
        drop(keep_alive);
        let answer = read_all(&mut sent).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "answered: {answer:?}");
        assert_eq!(metrics.evicted_total(), 0);
        drop(stop);
    }

    /// 3 slots: a silent connection and 2 active ones; a new client evicts the silent one;
    /// with 3 active ones a later client waits for a slot.
    async fn eviction_at_the_limit() {
        let (addr, metrics, stop) = server(3).await;
        // Connected without yielding to the server (blocking connects), so that it accepts
        // all three in one go, before any connection's task has run.
        let connect = |head: &[u8]| {
            use std::io::Write;
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(head).unwrap();
            s.set_nonblocking(true).unwrap();
            TcpStream::from_std(s).unwrap()
        };
        let mut silent = connect(b"");
        let mut active: Vec<_> = (0..2)
            .map(|_| connect(b"GET /healthz HTTP/1.1\r\nHost: x\r\n"))
            .collect();
        until("3 open, 1 waiting", || {
            metrics.open() == 3 && metrics.waiting() == 1
        })
        .await;

        let answer = healthz(&addr).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(metrics.evicted_total(), 1);
        assert_eq!(read_all(&mut silent).await, "", "the silent one is closed");

        // The active ones were kept: each finishes its request and is answered.
        let mut buf = [0u8; 16];
        for s in &mut active {
            s.write_all(b"\r\n").await.unwrap();
            let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf));
            let n = read.await.expect("no answer within 10 s").unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
        }

        // Every slot active (keep-alive, between requests): a new client waits for a slot.
        let third = TcpStream::connect(&addr).await.unwrap();
        third.writable().await.unwrap();
        third
            .try_write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        until("the third one is active", || {
            let c = &metrics;
            (c.accepted_total(), c.waiting(), c.open()) == (5, 0, 3)
        })
        .await;
        let mut late = TcpStream::connect(&addr).await.unwrap();
        late.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            metrics.accepted_total(),
            5,
            "the late one is not accepted yet"
        );
        assert_eq!(
            metrics.evicted_total(),
            1,
            "no active connection is evicted"
        );
        drop(active);
        let answer = read_all(&mut late).await;
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "served once a slot freed: {answer}"
        );
        drop(stop);
    }
}

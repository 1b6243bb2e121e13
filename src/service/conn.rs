//! The HTTP/1.1 connections under the routes (`http.rs`), served by hyper's connection builder
//! itself (axum's `serve` has no header-read timeout):
//!
//! - **header timeout** (`header-timeout`, hyper's own): a request's head (request line and
//!   headers) must have arrived this long after the connection opened or the previous
//!   response ended, else the connection is closed. A keep-alive connection waiting for its
//!   next request is therefore closed after it too. A request body then has as long again
//!   (the SCEP route reads it with [`BodyTimeout`]; the others read none).
//! - **idle timeout** (`idle-timeout`): a watchdog per connection. When no byte has moved
//!   either way for that long, the connection is shut down gracefully (closed at once between
//!   requests, after its response otherwise); when nothing moves for as long again, it is
//!   dropped (a client that stopped reading its response, a request stuck).
//! - **connection cap** (`max-connections`): a semaphore. A connection over the cap is
//!   answered `503 too many connections` (`Connection: close`, `Retry-After: 1`) and closed at
//!   once, without parsing its request: waiting for a slot would queue clients behind slow
//!   ones (the backlog would fill with the same attack), and a refusal is cheap to retry. What
//!   the client sent is read and dropped for up to a second after the answer (at most
//!   [`REFUSALS_DRAINED`] such connections at a time; beyond, they are just closed), so that
//!   closing does not reset the connection before the client has read the 503.
//! - **head size**: at most [`MAX_HEAD`] bytes of request line and headers (hyper answers 431
//!   beyond); bodies are capped per route (`http.rs`).
//! - **shutdown**: the listener is closed at once, every connection is shut down gracefully
//!   (idle ones closed, requests in flight answered; one still sending its head ends at its
//!   header timeout), and [`serve_http`] returns when the last connection has ended (`serve`
//!   gives up on them after its grace period).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

/// The HTTP server's bounds, from the config (`header-timeout`, `idle-timeout`,
/// `max-connections`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// how long a request's head may take to arrive (and then its body)
    pub header_timeout: Duration,
    /// how long nothing may move on a connection
    pub idle_timeout: Duration,
    /// connections served at once
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        super::Config::default().http_limits()
    }
}

/// How long a request's body may take to arrive; in every request's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BodyTimeout(pub Duration);

/// The largest request head (request line and headers): room for the longest URI hyper takes
/// (64 KiB less 2 bytes; longer is 414), a SCEP GET carrying its pkiMessage as base64 in the
/// query, plus headers.
pub(crate) const MAX_HEAD: usize = 96 * 1024;

/// What a connection over the cap is told before it is closed.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain; charset=utf-8\r\n\
content-length: 21\r\n\
retry-after: 1\r\n\
connection: close\r\n\
\r\n\
too many connections\n";

/// Refused connections whose request is drained before they are closed, at most.
const REFUSALS_DRAINED: usize = 64;
/// How long, and how much, a refused connection is drained.
const REFUSAL_DRAIN_TIME: Duration = Duration::from_secs(1);
const REFUSAL_DRAIN_BYTES: usize = 64 * 1024;

/// How often, at most, refused connections are logged (with their count).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);

/// Serves `app` on `listener` until `stop` turns true (or its sender is dropped); then closes
/// the listener, shuts every connection down gracefully and returns once all have ended.
pub(crate) async fn serve_http(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let draining = Arc::new(Semaphore::new(REFUSALS_DRAINED));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(MAX_HEAD);
    let mut connections = JoinSet::new();
    let mut refused = 0u64;
    let mut refusal_logged: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin. A
                // connection reset before it was accepted is nothing to wait for.
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                ) {
                    tracing::error!("cannot accept a connection: {e}");
                    tokio::select! {
                        _ = stop.wait_for(|stop| *stop) => break,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let _ = stream.try_write(REFUSAL);
            if let Ok(slot) = draining.clone().try_acquire_owned() {
                tokio::spawn(drain_and_close(stream, slot));
            }
            refused += 1;
            if refusal_logged.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY) {
                tracing::warn!(
                    "max-connections={} reached: {refused} connection(s) refused (503)",
                    limits.max_connections
                );
                refused = 0;
                refusal_logged = Some(Instant::now());
            }
            continue;
        };
        connections.spawn(connection(
            stream,
            peer,
            app.clone(),
            builder.clone(),
            limits,
            stop.clone(),
            permit,
        ));
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Ends a refused connection's sending side (after the 503 written), then reads and drops
/// what the client sends until it closes, for a little while: closing a socket with unread
/// bytes would reset it, and the client could lose the 503.
async fn drain_and_close(mut stream: TcpStream, _slot: OwnedSemaphorePermit) {
    let _ = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_shutdown(cx)).await;
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while total < REFUSAL_DRAIN_BYTES && stream.readable().await.is_ok() {
            match stream.try_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_DRAIN_TIME, drain).await;
}

/// One connection, holding its slot until it ends.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    builder: http1::Builder,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let body_timeout = BodyTimeout(limits.header_timeout);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(body_timeout);
        app.clone().oneshot(request)
    });
    let conn = builder.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let idle = limits.idle_timeout;
    let mut shutting_down = false;
    let mut idle_once = false;
    let mut deadline = activity.last() + idle;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!("{peer}: connection closed: {e}");
                }
                return;
            }
            _ = stop.wait_for(|stop| *stop), if !shutting_down => {
                conn.as_mut().graceful_shutdown();
                shutting_down = true;
            }
            _ = tokio::time::sleep_until(deadline) => {
                let last = activity.last();
                if last + idle > Instant::now() {
                    deadline = last + idle;
                    continue;
                }
                if idle_once {
                    tracing::debug!(
                        "{peer}: nothing moved for {} s after the idle shutdown: dropped",
                        idle.as_secs()
                    );
                    return;
                }
                tracing::debug!("{peer}: idle for {} s: closing", idle.as_secs());
                conn.as_mut().graceful_shutdown();
                shutting_down = true;
                idle_once = true;
                deadline = Instant::now() + idle;
            }
        }
    }
}

/// When a byte last moved on a connection.
struct Activity {
    start: Instant,
    /// milliseconds after `start`
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }
}

/// A socket that records when bytes move, for the idle watchdog.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// `serve_http` on 127.0.0.1:0: `/`, `/slow` answering after 300 ms, `/sleep/{ms}`.
    struct Server {
        addr: SocketAddr,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start(limits: HttpLimits) -> Server {
        let app = Router::new()
            .route("/", get(|| async { "hi\n" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "slow\n"
                }),
            )
            .route(
                "/sleep/{ms}",
                get(
                    |axum::extract::Path(ms): axum::extract::Path<u64>| async move {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        "woke\n"
                    },
                ),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(serve_http(listener, app, limits, rx));
        Server { addr, stop, task }
    }

    fn limits(header_ms: u64, idle_ms: u64, max: usize) -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_millis(header_ms),
            idle_timeout: Duration::from_millis(idle_ms),
            max_connections: max,
        }
    }

    /// Reads until the server closes (or 5 s pass): what it sent, and after how long.
    async fn read_to_close(s: &mut TcpStream) -> (String, Duration) {
        let started = Instant::now();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Err(_) => panic!("not closed within 5 s"),
            }
        }
        (
            String::from_utf8_lossy(&out).into_owned(),
            started.elapsed(),
        )
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    #[tokio::test]
    async fn a_head_that_does_not_arrive_in_time_closes_the_connection() {
        let s = start(limits(300, 10_000, 16)).await;
        let mut slow = TcpStream::connect(s.addr).await.unwrap();
        slow.write_all(b"GET / HT").await.unwrap();
        let (text, after) = read_to_close(&mut slow).await;
        assert_eq!(text, "");
        assert!(
            after >= Duration::from_millis(250) && after < Duration::from_secs(2),
            "{after:?}"
        );
        // A silent connection too.
        let mut silent = TcpStream::connect(s.addr).await.unwrap();
        let (_, after) = read_to_close(&mut silent).await;
        assert!(after < Duration::from_secs(2), "{after:?}");
        // A whole request is answered.
        let mut ok = TcpStream::connect(s.addr).await.unwrap();
        ok.write_all(GET).await.unwrap();
        let mut buf = [0u8; 256];
        let n = ok.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
        let s = start(limits(10_000, 300, 16)).await;
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(GET).await.unwrap();
        let mut buf = [0u8; 256];
        let n = c.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("hi\n"));
        // keep-alive: a second request on it works
        c.write_all(GET).await.unwrap();
        let n = c.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("hi\n"));
        let (text, after) = read_to_close(&mut c).await;
        assert_eq!(text, "");
        assert!(
            after >= Duration::from_millis(250) && after < Duration::from_secs(2),
            "{after:?}"
        );
    }

    #[tokio::test]
    async fn a_request_silent_past_the_idle_timeout_is_closed_after_it_and_dropped_after_twice_it()
    {
        let s = start(limits(10_000, 700, 16)).await;
        // Silent for 1 s (past 700 ms): answered, and the connection closed after it.
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(b"GET /sleep/1000 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (text, after) = read_to_close(&mut c).await;
        assert!(text.ends_with("woke\n"), "{text}");
        assert!(
            text.to_ascii_lowercase().contains("connection: close"),
            "{text}"
        );
        assert!(after < Duration::from_millis(1_350), "{after:?}");
        // Silent for 10 s: dropped once nothing moved for twice the idle timeout.
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(b"GET /sleep/10000 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (text, after) = read_to_close(&mut c).await;
        assert_eq!(text, "");
        assert!(
            after >= Duration::from_millis(1_300) && after < Duration::from_secs(3),
            "{after:?}"
        );
    }

    #[tokio::test]
    async fn a_connection_over_the_cap_is_answered_503_and_closed_at_once() {
        let s = start(limits(2_000, 10_000, 2)).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut c = TcpStream::connect(s.addr).await.unwrap();
            // a request answered: the connection is surely accepted and counted
            c.write_all(GET).await.unwrap();
            let mut buf = [0u8; 256];
            assert!(c.read(&mut buf).await.unwrap() > 0);
            held.push(c);
        }
        let mut third = TcpStream::connect(s.addr).await.unwrap();
        let (text, after) = read_to_close(&mut third).await;
        assert!(
            text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\ntoo many connections\n"), "{text}");
        assert!(after < Duration::from_millis(500), "{after:?}");
        // A slot freed: served again.
        drop(held.pop());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let (text, _) = read_to_close(&mut c).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    }

    #[tokio::test]
    async fn stopping_closes_idle_connections_and_answers_the_request_in_flight() {
        let s = start(limits(10_000, 10_000, 16)).await;
        let mut idle = TcpStream::connect(s.addr).await.unwrap();
        idle.write_all(GET).await.unwrap();
        let mut buf = [0u8; 256];
        assert!(idle.read(&mut buf).await.unwrap() > 0);
        let mut busy = TcpStream::connect(s.addr).await.unwrap();
        busy.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        s.stop.send(true).unwrap();
        let (text, _) = read_to_close(&mut idle).await;
        assert_eq!(text, "");
        let (text, _) = read_to_close(&mut busy).await;
        assert!(text.ends_with("slow\n"), "{text}");
        assert!(
            text.to_ascii_lowercase().contains("connection: close"),
            "{text}"
        );
        tokio::time::timeout(Duration::from_secs(2), s.task)
            .await
            .expect("serve_http did not return")
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(TcpStream::connect(s.addr).await.is_err());
    }

    #[tokio::test]
    async fn a_head_over_the_limit_is_refused_431() {
        let s = start(limits(2_000, 10_000, 16)).await;
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        let long = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n",
            "a".repeat(MAX_HEAD)
        );
        let _ = c.write_all(long.as_bytes()).await;
        let (text, _) = read_to_close(&mut c).await;
        assert!(text.starts_with("HTTP/1.1 431"), "{text}");
        // The longest URI hyper takes fits, with headers beside it.
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        let fits = format!(
            "GET /?message={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: {}\r\n\r\n",
            "A".repeat(65_000),
            "p".repeat(8_000)
        );
        c.write_all(fits.as_bytes()).await.unwrap();
        let (text, _) = read_to_close(&mut c).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    }
}

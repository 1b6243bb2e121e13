//! Test helpers for outbound HTTP: a tiny HTTP/1.1 server on loopback with scripted replies
//! that records what it was sent, and a fake of the manager's CRL-download port.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::crl_download::CrlDownloads;
use super::fetch::{FetchLimits, Fetcher};
use crate::error::{ManagerError, StoreError};
use crate::manager::{DownloadTarget, DownloadedCrl};

/// What the test server answers for a path.
#[derive(Clone)]
pub(crate) enum Reply {
    /// 200 with Content-Length
    Body(Vec<u8>),
    /// 200 with this Content-Type and Content-Length
    Typed(&'static str, Vec<u8>),
    /// 200, no Content-Length, body until the connection closes
    Unsized(Vec<u8>),
    /// a status line and no body
    Status(&'static str),
    /// 302 to a Location
    Redirect(String),
    /// headers, then nothing for this long
    Stall(Duration),
}

/// A request the test server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    /// GET, POST, …
    pub method: String,
    /// the request target: path and query
    pub target: String,
    /// the Content-Type header, as sent
    pub content_type: Option<String>,
    /// the body (as long as Content-Length said)
    pub body: Vec<u8>,
}

impl Seen {
    /// The query string (after `?`), or "".
    pub(crate) fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1 answering one request per connection, in threads.
/// A route is a path with its query (matched exactly) or without one (matching any query).
pub(crate) struct TestServer {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    routes: Arc<Mutex<Vec<(String, Reply)>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl TestServer {
    pub(crate) fn start(routes: Vec<(&str, Reply)>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let routes: Vec<(String, Reply)> =
            routes.into_iter().map(|(p, r)| (p.to_owned(), r)).collect();
        let routes = Arc::new(Mutex::new(routes));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (h, server_routes, server_seen) = (hits.clone(), routes.clone(), seen.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                h.fetch_add(1, Ordering::SeqCst);
                let routes = server_routes.clone();
                let seen = server_seen.clone();
                thread::spawn(move || answer(stream, &routes, &seen));
            }
        });
        TestServer {
            addr,
            hits,
            routes,
            seen,
        }
    }

    /// The requests received so far, in order.
    pub(crate) fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub(crate) fn add(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().push((path.to_owned(), reply));
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// The largest request body the test server reads.
const MAX_TEST_BODY: usize = 1 << 20;

fn answer(mut stream: TcpStream, routes: &Mutex<Vec<(String, Reply)>>, seen: &Mutex<Vec<Seen>>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut words = head.split(' ');
    let method = words.next().unwrap_or_default().to_owned();
    let path = words.next().unwrap_or("/").to_owned();
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let length = header("content-length")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_TEST_BODY);
    let mut body = vec![0u8; length];
    if stream.read_exact(&mut body).is_err() {
        return;
    }
    seen.lock().unwrap().push(Seen {
        method,
        target: path.clone(),
        content_type: header("content-type"),
        body,
    });
    let without_query = path.split('?').next().unwrap_or_default();
    let reply = {
        let routes = routes.lock().unwrap();
        let find = |want: &str| {
            routes
                .iter()
                .find(|(p, _)| p == want)
                .map(|(_, r)| r.clone())
        };
        find(&path)
            .or_else(|| find(without_query))
            .unwrap_or(Reply::Status("404 Not Found"))
    };
    let _ = match reply {
        Reply::Body(b) => stream
            .write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    b.len()
                )
                .as_bytes(),
            )
            .and_then(|_| stream.write_all(&b)),
        Reply::Typed(t, b) => stream
            .write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {t}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    b.len()
                )
                .as_bytes(),
            )
            .and_then(|_| stream.write_all(&b)),
        Reply::Unsized(b) => stream
            .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            .and_then(|_| stream.write_all(&b)),
        Reply::Status(s) => stream.write_all(
            format!("HTTP/1.1 {s}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        ),
        Reply::Redirect(to) => stream.write_all(
            format!(
                "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        ),
        Reply::Stall(d) => stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n0")
            .map(|_| thread::sleep(d)),
    };
}

pub(crate) fn test_limits() -> FetchLimits {
    FetchLimits {
        max_bytes: 1024,
        timeout: Duration::from_millis(400),
        connect_timeout: Duration::from_millis(200),
    }
}

/// A fetcher like the service's, without proxies from the environment.
pub(crate) fn test_fetcher(limits: &FetchLimits) -> Fetcher {
    Fetcher::without_proxy(*limits)
}

/// Something shaped like a DER CRL (the manager, not fetch, parses it).
pub(crate) fn fake_der(len: usize) -> Vec<u8> {
    let mut v = vec![0x30, 0x82, (len >> 8) as u8, len as u8];
    v.extend((0..len).map(|i| (i % 251) as u8));
    v
}

/// A fake of the manager's CRL-download port: targets set by the test, what is offered and
/// stored recorded, one CRL refused on request.
#[derive(Default)]
pub(crate) struct FakeDownloads {
    targets: Mutex<Vec<DownloadTarget>>,
    /// CRL bytes that store_downloaded_crl refuses, and why
    refused: Mutex<Option<(Vec<u8>, String)>>,
    stored: Mutex<Vec<(DownloadTarget, Vec<u8>)>>,
    offered: AtomicUsize,
    /// every call fails with this (a store that cannot be read)
    store_error: Mutex<Option<String>>,
}

impl FakeDownloads {
    pub(crate) fn set_targets(&self, targets: Vec<(&str, String)>) {
        *self.targets.lock().unwrap() = targets
            .into_iter()
            .map(|(c, url)| DownloadTarget {
                certificate: c.to_owned(),
                url,
            })
            .collect();
    }

    pub(crate) fn refuse_der(&self, der: Vec<u8>, why: &str) {
        *self.refused.lock().unwrap() = Some((der, why.to_owned()));
    }

    pub(crate) fn fail_store(&self, message: &str) {
        *self.store_error.lock().unwrap() = Some(message.to_owned());
    }

    pub(crate) fn stored(&self) -> Vec<(DownloadTarget, Vec<u8>)> {
        self.stored.lock().unwrap().clone()
    }

    /// how many CRLs were handed to store_downloaded_crl
    pub(crate) fn offered(&self) -> usize {
        self.offered.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<(), ManagerError> {
        match &*self.store_error.lock().unwrap() {
            Some(m) => Err(ManagerError::Store(StoreError::Corrupt(m.clone()))),
            None => Ok(()),
        }
    }
}

impl CrlDownloads for FakeDownloads {
    fn crl_download_targets(&self) -> Result<Vec<DownloadTarget>, ManagerError> {
        self.check()?;
        Ok(self.targets.lock().unwrap().clone())
    }

    fn store_downloaded_crl(
        &self,
        target: &DownloadTarget,
        der: &[u8],
    ) -> Result<DownloadedCrl, ManagerError> {
        self.offered.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        if let Some((bad, why)) = &*self.refused.lock().unwrap() {
            if bad == der {
                return Err(ManagerError::refused(
                    crate::error::Refusal::CrlNotAccepted,
                    why.clone(),
                    None,
                ));
            }
        }
        self.stored
            .lock()
            .unwrap()
            .push((target.clone(), der.to_vec()));
        Ok(DownloadedCrl {
            issuer: target.certificate.clone(),
            number: Some(7),
            entries: 0,
            this_update: 0,
            next_update: None,
        })
    }
}

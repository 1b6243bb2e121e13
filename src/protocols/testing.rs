//! Test helpers for outbound HTTP: a tiny HTTP/1.1 server on loopback with scripted replies,
//! and a fake of the manager's CRL-download port.

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
    /// 200, no Content-Length, body until the connection closes
    Unsized(Vec<u8>),
    /// a status line and no body
    Status(&'static str),
    /// 302 to a Location
    Redirect(String),
    /// headers, then nothing for this long
    Stall(Duration),
}

/// A tiny HTTP/1.1 server on 127.0.0.1 answering one request per connection, in threads.
pub(crate) struct TestServer {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    routes: Arc<Mutex<Vec<(String, Reply)>>>,
}

impl TestServer {
    pub(crate) fn start(routes: Vec<(&str, Reply)>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let routes: Vec<(String, Reply)> =
            routes.into_iter().map(|(p, r)| (p.to_owned(), r)).collect();
        let routes = Arc::new(Mutex::new(routes));
        let (h, server_routes) = (hits.clone(), routes.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                h.fetch_add(1, Ordering::SeqCst);
                let routes = server_routes.clone();
                thread::spawn(move || answer(stream, &routes));
            }
        });
        TestServer { addr, hits, routes }
    }

    pub(crate) fn add(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().push((path.to_owned(), reply));
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn answer(mut stream: TcpStream, routes: &Mutex<Vec<(String, Reply)>>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
    let reply = routes
        .lock()
        .unwrap()
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, r)| r.clone())
        .unwrap_or(Reply::Status("404 Not Found"));
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

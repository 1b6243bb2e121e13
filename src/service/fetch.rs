//! Downloading CRLs from trusted certificates' distribution points: http only (as RouterOS),
//! bounded in size and time, redirects only to http.

use std::sync::Arc;
use std::time::Duration;

use super::{blocking, Config, ServiceBackend, ServiceError};
use crate::error::ManagerError;
use crate::manager::{DownloadTarget, DownloadedCrl};

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 3;
/// The PEM label of a CRL (RFC 7468 §5).
const PEM_LABEL: &str = "X509 CRL";

/// Bounds of one CRL download.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchLimits {
    /// the largest body accepted, bytes
    pub max_bytes: usize,
    /// the whole request: connecting, headers, body
    pub timeout: Duration,
    /// connecting (never longer than `timeout`)
    pub connect_timeout: Duration,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            max_bytes: 16 * 1024 * 1024,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl FetchLimits {
    /// The limits a config file sets (`crl-download-max-bytes`, `crl-download-timeout`).
    pub fn from_config(config: &Config) -> Self {
        let timeout = Duration::from_secs(config.crl_download_timeout);
        FetchLimits {
            max_bytes: usize::try_from(config.crl_download_max_bytes).unwrap_or(usize::MAX),
            timeout,
            connect_timeout: Duration::from_secs(10).min(timeout),
        }
    }

    /// An HTTP client with these timeouts and the redirect rule (at most 3, http only).
    /// Proxies named in `http_proxy` / `no_proxy` are honoured.
    pub fn client(&self) -> Result<reqwest::Client, FetchError> {
        self.client_builder()
            .build()
            .map_err(|e| FetchError::Request(error_chain(&e)))
    }

    fn client_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout.min(self.timeout))
            .user_agent(concat!("certman/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                if attempt.url().scheme() != "http" {
                    let refused = format!(
                        "redirect to {} refused: only http:// is followed",
                        attempt.url()
                    );
                    attempt.error(refused)
                } else if attempt.previous().len() > MAX_REDIRECTS {
                    attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
                } else {
                    attempt.follow()
                }
            }))
    }
}

/// Why a CRL could not be downloaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Not an `http://` URL.
    #[error("{0}")]
    Unsupported(String),
    /// The server did not answer 200.
    #[error("the server answered {0}")]
    Status(String),
    /// The body is larger than allowed.
    #[error("the CRL is larger than {max} bytes")]
    TooLarge {
        /// the limit
        max: usize,
    },
    /// Connecting or the whole download took too long.
    #[error("timed out")]
    Timeout,
    /// A redirect was refused.
    #[error("{0}")]
    Redirect(String),
    /// The body is PEM but not a CRL, or not valid PEM.
    #[error("{0}")]
    NotCrl(String),
    /// Connecting or the exchange failed.
    #[error("{0}")]
    Request(String),
}

/// The message of a reqwest error and its causes, without repeating the URL.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let text = match err.downcast_ref::<reqwest::Error>() {
            Some(r) if r.url().is_some() => {
                // reqwest prints "… for url (URL)"; the caller names the URL already.
                let s = r.to_string();
                match s.find(" for url (") {
                    Some(i) => s[..i].to_owned(),
                    None => s,
                }
            }
            _ => err.to_string(),
        };
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}

fn from_reqwest(e: reqwest::Error) -> FetchError {
    if e.is_timeout() {
        return FetchError::Timeout;
    }
    if e.is_redirect() {
        // the policy's own message, not reqwest's wrapper
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            if s.downcast_ref::<reqwest::Error>().is_none() {
                return FetchError::Redirect(s.to_string());
            }
            src = s.source();
        }
        return FetchError::Redirect(error_chain(&e));
    }
    FetchError::Request(error_chain(&e))
}

/// Downloads a CRL from an `http://` URL: status 200, at most `max_bytes`; DER is returned as
/// is, PEM (`-----BEGIN X509 CRL-----`) is converted to DER. Timeouts and redirects are the
/// client's (see [`FetchLimits::client`]).
pub async fn fetch_crl(
    client: &reqwest::Client,
    url: &str,
    max_bytes: usize,
) -> Result<Vec<u8>, FetchError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| FetchError::Unsupported(format!("not a valid URL: {e}")))?;
    if parsed.scheme() != "http" {
        return Err(FetchError::Unsupported(format!(
            "{}:// CRL distribution points are not downloaded: only http:// is supported (as in RouterOS)",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(FetchError::Unsupported("the URL has no host".into()));
    }
    let mut response = client.get(parsed).send().await.map_err(from_reqwest)?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        return Err(FetchError::Status(status.to_string()));
    }
    if response
        .content_length()
        .is_some_and(|n| n > max_bytes as u64)
    {
        return Err(FetchError::TooLarge { max: max_bytes });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(from_reqwest)? {
        if body.len() + chunk.len() > max_bytes {
            return Err(FetchError::TooLarge { max: max_bytes });
        }
        body.extend_from_slice(&chunk);
    }
    pem_to_der(body)
}

/// A PEM CRL as DER; anything else is handed on as it is (the manager parses and verifies it).
fn pem_to_der(body: Vec<u8>) -> Result<Vec<u8>, FetchError> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let Some(start) = body.windows(BEGIN.len()).position(|w| w == BEGIN) else {
        return Ok(body);
    };
    // PEM may follow text (`openssl crl -text` output); DER never starts with text.
    if start > 0 && body.first() == Some(&0x30) {
        return Ok(body);
    }
    let (label, der) = der::pem::decode_vec(&body[start..])
        .map_err(|e| FetchError::NotCrl(format!("not a valid PEM file: {e}")))?;
    if label != PEM_LABEL {
        return Err(FetchError::NotCrl(format!(
            "PEM {label} found where an {PEM_LABEL} was expected"
        )));
    }
    Ok(der)
}

/// Why a downloaded CRL was not stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadError {
    /// It could not be downloaded.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The manager refused it (bad signature, not a CRL, …) or could not store it.
    #[error(transparent)]
    Refused(ManagerError),
    /// The storing job panicked.
    #[error("{0}")]
    Internal(String),
}

/// The outcome of downloading one target's CRL.
#[derive(Debug)]
pub struct DownloadOutcome {
    /// what was downloaded
    pub target: DownloadTarget,
    /// the stored CRL, or why there is none
    pub result: Result<DownloadedCrl, DownloadError>,
}

impl std::fmt::Display for DownloadOutcome {
    /// One line, as logged and as `crl download` prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let DownloadTarget { certificate, url } = &self.target;
        match &self.result {
            Ok(crl) => {
                write!(
                    f,
                    "CRL from {url} for {certificate} stored: issuer {}",
                    crl.issuer
                )?;
                if let Some(n) = crl.number {
                    write!(f, ", number {n}")?;
                }
                write!(f, ", {} entries", crl.entries)
            }
            Err(DownloadError::Refused(e)) => {
                write!(f, "CRL from {url} for {certificate} refused: {e}")
            }
            Err(e) => write!(f, "CRL download from {url} for {certificate} failed: {e}"),
        }
    }
}

impl DownloadOutcome {
    /// Logs the outcome: info when stored, warn otherwise.
    pub(crate) fn log(&self) {
        match &self.result {
            Ok(_) => tracing::info!("{self}"),
            Err(_) => tracing::warn!("{self}"),
        }
    }
}

/// Downloads and stores one target's CRL.
pub(crate) async fn download_one(
    backend: &Arc<dyn ServiceBackend>,
    client: &reqwest::Client,
    max_bytes: usize,
    target: DownloadTarget,
) -> DownloadOutcome {
    let fetched = fetch_crl(client, &target.url, max_bytes).await;
    store_fetched(backend, target, fetched).await
}

/// Hands a fetched CRL to the backend, which verifies and stores it.
pub(crate) async fn store_fetched(
    backend: &Arc<dyn ServiceBackend>,
    target: DownloadTarget,
    fetched: Result<Vec<u8>, FetchError>,
) -> DownloadOutcome {
    let result = match fetched {
        Err(e) => Err(DownloadError::Fetch(e)),
        Ok(der) => {
            let t = target.clone();
            match blocking(backend, "storing a downloaded CRL", move |b| {
                b.store_downloaded_crl(&t, &der)
            })
            .await
            {
                Ok(Ok(crl)) => Ok(crl),
                Ok(Err(e)) => Err(DownloadError::Refused(e)),
                Err(e) => Err(DownloadError::Internal(e.to_string())),
            }
        }
    };
    DownloadOutcome { target, result }
}

/// `certman crl download`: downloads the CRL of every target now (whatever `crl-download` says),
/// one after the other, and stores those that verify. Blocks; runs its own small runtime.
pub fn download_crls(
    backend: &Arc<dyn ServiceBackend>,
    limits: &FetchLimits,
) -> Result<Vec<DownloadOutcome>, ServiceError> {
    let targets = backend.crl_download_targets()?;
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let client = limits.client().map_err(|e| ServiceError::Setup {
        context: "cannot build the HTTP client",
        source: std::io::Error::other(e.to_string()),
    })?;
    download_with(backend, client, limits.max_bytes, targets)
}

fn download_with(
    backend: &Arc<dyn ServiceBackend>,
    client: reqwest::Client,
    max_bytes: usize,
    targets: Vec<DownloadTarget>,
) -> Result<Vec<DownloadOutcome>, ServiceError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ServiceError::Setup {
            context: "cannot start the async runtime",
            source,
        })?;
    Ok(runtime.block_on(async {
        let mut outcomes = Vec::with_capacity(targets.len());
        for target in targets {
            outcomes.push(download_one(backend, &client, max_bytes, target).await);
        }
        outcomes
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::thread;

    use super::*;
    use crate::service::testing::FakeBackend;

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

    /// A client like the service's, without proxies from the environment.
    pub(crate) fn test_client(limits: &FetchLimits) -> reqwest::Client {
        limits.client_builder().no_proxy().build().unwrap()
    }

    /// Something shaped like a DER CRL (the manager, not fetch, parses it).
    pub(crate) fn fake_der(len: usize) -> Vec<u8> {
        let mut v = vec![0x30, 0x82, (len >> 8) as u8, len as u8];
        v.extend((0..len).map(|i| (i % 251) as u8));
        v
    }

    fn fetch(url: &str, limits: &FetchLimits) -> Result<Vec<u8>, FetchError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(fetch_crl(&test_client(limits), url, limits.max_bytes))
    }

    #[test]
    fn der_is_returned_as_served_and_pem_is_converted() {
        let der = fake_der(300);
        let pem = der::pem::encode_string(PEM_LABEL, der::pem::LineEnding::LF, &der).unwrap();
        let with_text = format!("Certificate Revocation List (CRL):\n  Version 2\n{pem}");
        let cert_pem =
            der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &der).unwrap();
        let s = TestServer::start(vec![
            ("/a.crl", Reply::Body(der.clone())),
            ("/a.pem", Reply::Body(pem.into_bytes())),
            ("/text.pem", Reply::Body(with_text.into_bytes())),
            ("/cert.pem", Reply::Body(cert_pem.into_bytes())),
            ("/unsized.crl", Reply::Unsized(der.clone())),
        ]);
        let l = test_limits();
        assert_eq!(fetch(&s.url("/a.crl"), &l).unwrap(), der);
        assert_eq!(fetch(&s.url("/a.pem"), &l).unwrap(), der);
        assert_eq!(fetch(&s.url("/text.pem"), &l).unwrap(), der);
        assert_eq!(fetch(&s.url("/unsized.crl"), &l).unwrap(), der);
        let e = fetch(&s.url("/cert.pem"), &l).unwrap_err();
        assert!(matches!(e, FetchError::NotCrl(_)), "{e:?}");
        assert!(e.to_string().contains("PEM CERTIFICATE"), "{e}");
    }

    #[test]
    fn oversize_bodies_are_refused_with_and_without_content_length() {
        let l = test_limits();
        let big = fake_der(l.max_bytes); // 4 header bytes over
        let exact = fake_der(l.max_bytes - 4);
        let s = TestServer::start(vec![
            ("/big.crl", Reply::Body(big.clone())),
            ("/big-unsized.crl", Reply::Unsized(big)),
            ("/exact.crl", Reply::Unsized(exact.clone())),
        ]);
        for path in ["/big.crl", "/big-unsized.crl"] {
            let e = fetch(&s.url(path), &l).unwrap_err();
            assert!(
                matches!(e, FetchError::TooLarge { max: 1024 }),
                "{path}: {e:?}"
            );
            assert_eq!(e.to_string(), "the CRL is larger than 1024 bytes");
        }
        assert_eq!(fetch(&s.url("/exact.crl"), &l).unwrap(), exact);
    }

    #[test]
    fn a_status_other_than_200_is_an_error() {
        let s = TestServer::start(vec![("/gone.crl", Reply::Status("410 Gone"))]);
        let l = test_limits();
        let e = fetch(&s.url("/missing.crl"), &l).unwrap_err();
        assert_eq!(e.to_string(), "the server answered 404 Not Found");
        let e = fetch(&s.url("/gone.crl"), &l).unwrap_err();
        assert!(matches!(e, FetchError::Status(_)), "{e:?}");
    }

    #[test]
    fn a_slow_server_trips_the_timeout() {
        let s = TestServer::start(vec![("/slow.crl", Reply::Stall(Duration::from_secs(3)))]);
        let l = test_limits();
        let started = std::time::Instant::now();
        let e = fetch(&s.url("/slow.crl"), &l).unwrap_err();
        assert!(matches!(e, FetchError::Timeout), "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn redirects_are_followed_to_http_only_and_at_most_three_times() {
        let der = fake_der(50);
        let s = TestServer::start(vec![("/ok.crl", Reply::Body(der.clone()))]);
        let base = s.url("");
        s.add("/r0", Reply::Redirect(format!("{base}/r1")));
        s.add("/r1", Reply::Redirect(format!("{base}/r2")));
        s.add("/r2", Reply::Redirect(format!("{base}/r3")));
        s.add("/r3", Reply::Redirect(format!("{base}/ok.crl")));
        s.add("/tls", Reply::Redirect("https://127.0.0.1:1/x.crl".into()));
        let l = test_limits();
        // three redirects: followed
        assert_eq!(fetch(&s.url("/r1"), &l).unwrap(), der);
        // four: refused
        let e = fetch(&s.url("/r0"), &l).unwrap_err();
        assert!(matches!(e, FetchError::Redirect(_)), "{e:?}");
        assert_eq!(e.to_string(), "more than 3 redirects");
        // to https: refused, with the target named
        let e = fetch(&s.url("/tls"), &l).unwrap_err();
        assert!(matches!(e, FetchError::Redirect(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "redirect to https://127.0.0.1:1/x.crl refused: only http:// is followed"
        );
    }

    #[test]
    fn other_schemes_are_refused_without_connecting() {
        let s = TestServer::start(vec![]);
        let port = s.addr.port();
        let l = test_limits();
        for url in [
            format!("https://127.0.0.1:{port}/a.crl"),
            format!("ldap://127.0.0.1:{port}/cn=ca?certificateRevocationList"),
            format!("ftp://127.0.0.1:{port}/a.crl"),
            "file:///etc/passwd".to_owned(),
        ] {
            let e = fetch(&url, &l).unwrap_err();
            assert!(matches!(e, FetchError::Unsupported(_)), "{url}: {e:?}");
            assert!(e.to_string().contains("only http:// is supported"), "{e}");
        }
        let e = fetch("not a url", &l).unwrap_err();
        assert!(matches!(e, FetchError::Unsupported(_)), "{e:?}");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(s.hits.load(Ordering::SeqCst), 0, "a connection was made");
    }

    #[test]
    fn a_refused_port_is_a_request_error_naming_the_cause() {
        // bind and drop: the port is (almost certainly) closed now
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = fetch(&format!("http://127.0.0.1:{port}/a.crl"), &test_limits()).unwrap_err();
        assert!(matches!(e, FetchError::Request(_)), "{e:?}");
        assert!(!e.to_string().contains("127.0.0.1"), "URL repeated: {e}");
    }

    #[test]
    fn download_crls_stores_what_verifies_and_reports_every_target() {
        let good = fake_der(100);
        let s = TestServer::start(vec![
            ("/good.crl", Reply::Body(good.clone())),
            ("/bad-sig.crl", Reply::Body(fake_der(60))),
        ]);
        let fake = Arc::new(FakeBackend::default());
        fake.set_targets(vec![
            ("root", s.url("/good.crl")),
            ("other", s.url("/bad-sig.crl")),
            ("gone", s.url("/missing.crl")),
        ]);
        fake.refuse_der(fake_der(60), "signature does not verify");
        let backend: Arc<dyn ServiceBackend> = fake.clone();
        let l = test_limits();
        let outcomes = download_with(
            &backend,
            test_client(&l),
            l.max_bytes,
            backend.crl_download_targets().unwrap(),
        )
        .unwrap();
        assert_eq!(outcomes.len(), 3);
        assert!(outcomes[0].result.is_ok());
        assert_eq!(
            outcomes[0].to_string(),
            format!(
                "CRL from {} for root stored: issuer root, number 7, 0 entries",
                s.url("/good.crl")
            )
        );
        assert!(matches!(outcomes[1].result, Err(DownloadError::Refused(_))));
        assert_eq!(
            outcomes[1].to_string(),
            format!(
                "CRL from {} for other refused: signature does not verify",
                s.url("/bad-sig.crl")
            )
        );
        assert!(matches!(
            outcomes[2].result,
            Err(DownloadError::Fetch(FetchError::Status(_)))
        ));
        assert_eq!(
            outcomes[2].to_string(),
            format!(
                "CRL download from {} for gone failed: the server answered 404 Not Found",
                s.url("/missing.crl")
            )
        );
        // only the good one reached the store, byte for byte; the refused one was offered
        let stored = fake.stored();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].0.certificate, "root");
        assert_eq!(stored[0].1, good);
        assert_eq!(fake.offered(), 2);
    }

    #[test]
    fn download_crls_without_targets_does_nothing() {
        let fake = Arc::new(FakeBackend::default());
        let backend: Arc<dyn ServiceBackend> = fake;
        assert!(download_crls(&backend, &test_limits()).unwrap().is_empty());
    }

    #[test]
    fn download_crls_reports_a_failing_target_list() {
        let fake = Arc::new(FakeBackend::default());
        fake.fail_store("disk on fire");
        let backend: Arc<dyn ServiceBackend> = fake;
        let e = download_crls(&backend, &test_limits()).unwrap_err();
        assert!(matches!(e, ServiceError::Manager(_)), "{e:?}");
    }
}

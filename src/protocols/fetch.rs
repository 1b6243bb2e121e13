//! Bounded outbound HTTP: plain `http://` only (as RouterOS downloads CRLs; SCEP servers are
//! reached the same way), bounded in body size and time, redirects only to http and at most
//! three. Used by CRL downloads (the CLI and the daemon alike) and the SCEP client (GET, and POST
//! for PKIOperation).

use std::time::Duration;

/// Redirects followed at most.
pub const MAX_REDIRECTS: usize = 3;

/// Bounds of one outbound request.
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
    /// Limits of `max_bytes` and `timeout` (connecting: 10 s at most).
    pub fn new(max_bytes: usize, timeout: Duration) -> Self {
        FetchLimits {
            max_bytes,
            timeout,
            connect_timeout: Duration::from_secs(10).min(timeout),
        }
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

/// What is fetched, for error messages: "the CRL is larger than …", "https:// CRL distribution
/// points are not downloaded …".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resource {
    /// what one is called
    pub name: &'static str,
    /// where they are found
    pub locations: &'static str,
}

/// Why an outbound request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Not an `http://` URL.
    #[error("{0}")]
    Unsupported(String),
    /// The server did not answer 200: the status code and reason, e.g. "404 Not Found"
    /// ([`FetchError::status_code`] reads the number).
    #[error("the server answered {0}")]
    Status(String),
    /// The body is larger than allowed.
    #[error("the {} is larger than {max} bytes", what.name)]
    TooLarge {
        /// what was fetched
        what: Resource,
        /// the limit
        max: usize,
    },
    /// Connecting or the whole request took too long.
    #[error("timed out")]
    Timeout,
    /// A redirect was refused.
    #[error("{0}")]
    Redirect(String),
    /// The body is not what was asked for (a PEM file of another kind, …).
    #[error("{0}")]
    Content(String),
    /// Connecting or the exchange failed.
    #[error("{0}")]
    Request(String),
    /// The HTTP client or its runtime could not be set up.
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
}

impl FetchError {
    /// The HTTP status code of a [`FetchError::Status`] (its text starts with the code).
    pub fn status_code(&self) -> Option<u16> {
        match self {
            FetchError::Status(s) => s.split(' ').next()?.parse().ok(),
            _ => None,
        }
    }
}

/// An HTTP client with [`FetchLimits`]: their timeouts, the redirect rule (at most 3, http
/// only), the body cap. Proxies named in `http_proxy` / `no_proxy` are honoured.
#[derive(Clone, Debug)]
pub struct Fetcher {
    client: reqwest::Client,
    limits: FetchLimits,
}

impl Fetcher {
    /// A client with these limits.
    pub fn new(limits: FetchLimits) -> Result<Self, FetchError> {
        Self::build(limits, limits.client_builder())
    }

    /// A client that ignores proxies from the environment (tests on loopback).
    #[cfg(test)]
    pub(crate) fn without_proxy(limits: FetchLimits) -> Self {
        Self::build(limits, limits.client_builder().no_proxy()).unwrap()
    }

    fn build(limits: FetchLimits, builder: reqwest::ClientBuilder) -> Result<Self, FetchError> {
        let client = builder
            .build()
            .map_err(|e| FetchError::Setup(error_chain(&e)))?;
        Ok(Fetcher { client, limits })
    }

    /// The limits.
    pub fn limits(&self) -> &FetchLimits {
        &self.limits
    }

    /// GETs an `http://` URL: status 200 and at most `max_bytes` of body (checked against
    /// Content-Length first, then while reading). `what` names the body in errors.
    pub async fn get(&self, url: &str, what: Resource) -> Result<Vec<u8>, FetchError> {
        Ok(self.get_typed(url, what).await?.1)
    }

    /// [`Fetcher::get`], returning also the Content-Type (lower-cased, parameters stripped).
    pub async fn get_typed(
        &self,
        url: &str,
        what: Resource,
    ) -> Result<(Option<String>, Vec<u8>), FetchError> {
        let url = checked_url(url, what)?;
        self.exchange(self.client.get(url), what).await
    }

    /// POSTs `body` as `content_type` to an `http://` URL, with the rules and bounds of
    /// [`Fetcher::get`]; the reply's Content-Type (as [`Fetcher::get_typed`]) and body.
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
        what: Resource,
    ) -> Result<(Option<String>, Vec<u8>), FetchError> {
        let url = checked_url(url, what)?;
        let request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        self.exchange(request, what).await
    }

    /// Sends `request`; status 200, the Content-Type and at most `max_bytes` of body.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        what: Resource,
    ) -> Result<(Option<String>, Vec<u8>), FetchError> {
        let max = self.limits.max_bytes;
        let mut response = request.send().await.map_err(from_reqwest)?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(FetchError::Status(status.to_string()));
        }
        if response.content_length().is_some_and(|n| n > max as u64) {
            return Err(FetchError::TooLarge { what, max });
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(media_type);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(from_reqwest)? {
            if body.len() + chunk.len() > max {
                return Err(FetchError::TooLarge { what, max });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((content_type, body))
    }
}

/// `url` parsed, if it is `http://` with a host.
fn checked_url(url: &str, what: Resource) -> Result<reqwest::Url, FetchError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| FetchError::Unsupported(format!("not a valid URL: {e}")))?;
    if parsed.scheme() != "http" {
        return Err(FetchError::Unsupported(format!(
            "{}:// {} are not downloaded: only http:// is supported (as in RouterOS)",
            parsed.scheme(),
            what.locations
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(FetchError::Unsupported("the URL has no host".into()));
    }
    Ok(parsed)
}

/// A Content-Type's media type, lower-cased, without parameters; `None` when empty.
fn media_type(header: &str) -> Option<String> {
    let t = header.split(';').next().unwrap_or_default().trim();
    (!t.is_empty()).then(|| t.to_ascii_lowercase())
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

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::protocols::crl_download::CRL;
    use crate::protocols::testing::{fake_der, test_fetcher, test_limits, Reply, TestServer};

    fn fetch(url: &str, limits: &FetchLimits) -> Result<Vec<u8>, FetchError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(test_fetcher(limits).get(url, CRL))
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
                matches!(e, FetchError::TooLarge { max: 1024, .. }),
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
}

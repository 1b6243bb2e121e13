//! The HTTP endpoints: `GET`/`HEAD /crl/<percent-encoded CA name>.crl` (the CDP that
//! `ca-crl-host` puts in issued certificates, see `manager::crl_url`), `GET /health`, the
//! status page (`GET /` and `/status.json`, `service/status_page/`) and the SCEP paths
//! (`service/scep.rs`). Request bodies are capped on every route: none on the CRL, health
//! and status routes, [`MAX_MESSAGE`] on SCEP and anywhere else; a larger `Content-Length` is
//! answered 413 before any of the body is read (a chunked body is cut off at the cap).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Extension, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use tower_http::limit::RequestBodyLimitLayer;

use super::scep::MAX_MESSAGE;
use super::timers::{Leadership, RenewalProblems};
use super::{blocking, status_page, ServiceBackend};
use crate::manager::{HealthProblem, HealthReason, ServedCrl, StatusReport};

/// The longest an HTTP cache may keep a CRL: a revocation made with the CLI reaches clients
/// behind a cache within this time, even though the CRL itself is valid until nextUpdate.
pub(crate) const MAX_CACHE_SECS: i64 = 300;

type Backend = Arc<dyn ServiceBackend>;

/// The largest body of a `GET` route (CRLs, health): none.
const NO_BODY: usize = 0;

/// The service's routes. `get` answers `HEAD` too (without the body); other methods on a known
/// path get 405, unknown paths 404. `renewals` are the problems the CRL renewal timer found,
/// and `leadership` the jobs this node leads, for `/health`.
pub(crate) fn router(
    backend: Backend,
    renewals: Arc<RenewalProblems>,
    leadership: Arc<Leadership>,
) -> Router {
    Router::new()
        .route(
            "/crl/{file}",
            get(crl).layer(RequestBodyLimitLayer::new(NO_BODY)),
        )
        .route(
            "/health",
            get(health).layer(RequestBodyLimitLayer::new(NO_BODY)),
        )
        .route(
            "/",
            get(status_html).layer(RequestBodyLimitLayer::new(NO_BODY)),
        )
        .route(
            "/status.json",
            get(status_json).layer(RequestBodyLimitLayer::new(NO_BODY)),
        )
        .route(
            "/scep/{*rest}",
            get(super::scep::scep).post(super::scep::scep),
        )
        .fallback(not_found)
        .layer(RequestBodyLimitLayer::new(MAX_MESSAGE))
        .layer(Extension(renewals))
        .layer(Extension(leadership))
        .layer(middleware::from_fn(access_log))
        .with_state(backend)
}

async fn access_log(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_else(|| "-".into());
    let response = next.run(request).await;
    tracing::debug!(
        "{peer} {method} {path} {} {} ms",
        response.status().as_u16(),
        started.elapsed().as_millis()
    );
    response
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "not found\n")
}

fn internal_error() -> Response {
    text(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n")
}

/// The CDP file a request path names: the percent-decoded segment after `/crl/`, ending in
/// `.crl`. Decoded from the raw path (not as a query string: `+` stays `+`), the inverse of
/// `utf8_percent_encode(name, NON_ALPHANUMERIC)`.
fn cdp_file(path: &str) -> Option<String> {
    let segment = path.strip_prefix("/crl/")?;
    let file = percent_decode_str(segment).decode_utf8().ok()?;
    (file.len() > ".crl".len() && file.ends_with(".crl") && !file.contains('/'))
        .then(|| file.into_owned())
}

async fn crl(State(backend): State<Backend>, uri: Uri) -> Response {
    let Some(file) = cdp_file(uri.path()) else {
        return not_found().await;
    };
    let lookup = file.clone();
    match blocking(&backend, "reading a CRL", move |b| b.served_crl(&lookup)).await {
        Ok(Ok(Some(crl))) => crl_response(crl, chrono::Utc::now().timestamp()),
        Ok(Ok(None)) => not_found().await,
        Ok(Err(e)) => {
            tracing::error!("cannot serve the CRL {file:?}: {e}");
            internal_error()
        }
        Err(e) => {
            tracing::error!("cannot serve the CRL {file:?}: {e}");
            internal_error()
        }
    }
}

/// An HTTP date (RFC 9110 §5.6.7) for Unix seconds.
fn http_date(secs: i64) -> Option<HeaderValue> {
    let t = chrono::DateTime::from_timestamp(secs, 0)?;
    HeaderValue::from_str(&t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()).ok()
}

fn crl_response(crl: ServedCrl, now: i64) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pkix-crl"),
    );
    if let Some(v) = http_date(crl.this_update) {
        headers.insert(header::LAST_MODIFIED, v);
    }
    if let Some(v) = http_date(crl.next_update) {
        headers.insert(header::EXPIRES, v);
    }
    // The percent-encoded name keeps the tag within the ETag grammar whatever the name holds.
    let etag = format!(
        "\"{}-{}\"",
        utf8_percent_encode(&crl.ca, NON_ALPHANUMERIC),
        crl.number
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    let max_age = (crl.next_update - now).clamp(0, MAX_CACHE_SECS);
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        headers.insert(header::CACHE_CONTROL, v);
    }
    (StatusCode::OK, headers, Body::from(crl.der)).into_response()
}

/// What `/health` learns on the blocking pool, in one trip.
struct HealthView {
    /// the store read fails: why (for the log)
    unreadable: Option<String>,
    problems: Vec<HealthProblem>,
    scep: Vec<serde_json::Value>,
}

fn health_view(b: &dyn ServiceBackend) -> HealthView {
    if let Err(e) = b.check_store() {
        return HealthView {
            unreadable: Some(e.to_string()),
            problems: Vec::new(),
            scep: Vec::new(),
        };
    }
    let problems = match b.health() {
        Ok(p) => p,
        Err(e) => {
            return HealthView {
                unreadable: Some(e.to_string()),
                problems: Vec::new(),
                scep: Vec::new(),
            }
        }
    };
    let scep = b
        .scep_servers()
        .map(|servers| {
            servers
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "path": s.path,
                        "ca-cert": s.ca_cert,
                        "ra-cert": s.ra_cert,
                        "next-ca-cert": s.next_ca_cert,
                        "disabled": s.disabled,
                        "warnings": s.warnings,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    HealthView {
        unreadable: None,
        problems,
        scep,
    }
}

/// `GET /health`: 200 `ok`; 503 `degraded` with the reasons (a served CRL past its
/// nextUpdate, a CA's token absent or its PIN failed at the last CRL renewal, another renewal
/// failure, the store not writable); 503 `error` when the store cannot be read.
async fn health(
    State(backend): State<Backend>,
    Extension(renewals): Extension<Arc<RenewalProblems>>,
    Extension(leadership): Extension<Arc<Leadership>>,
) -> Response {
    let view = match blocking(&backend, "checking health", health_view).await {
        Ok(v) => v,
        Err(e) => HealthView {
            unreadable: Some(e.to_string()),
            problems: Vec::new(),
            scep: Vec::new(),
        },
    };
    if let Some(e) = &view.unreadable {
        tracing::warn!("health: the store is not readable: {e}");
    }
    let mut problems = view.problems;
    problems.extend(renewals.current());
    problems.sort_by(|a, b| (a.reason, &a.ca).cmp(&(b.reason, &b.ca)));
    problems.dedup_by(|a, b| a.reason == b.reason && a.ca == b.ca);
    for p in &problems {
        let detail = p
            .detail
            .as_deref()
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        // Renewal failures are logged by the timer already; an unwritable store only here.
        if p.reason == HealthReason::StoreUnwritable {
            tracing::warn!("health: {}{detail}", p.message);
        } else {
            tracing::debug!("health: {}{detail}", p.message);
        }
    }
    let unwritable = problems
        .iter()
        .any(|p| p.reason == HealthReason::StoreUnwritable);
    let (status, word, store) = if view.unreadable.is_some() {
        (StatusCode::SERVICE_UNAVAILABLE, "error", "error")
    } else if !problems.is_empty() {
        let store = if unwritable { "unwritable" } else { "ok" };
        (StatusCode::SERVICE_UNAVAILABLE, "degraded", store)
    } else {
        (StatusCode::OK, "ok", "ok")
    };
    let reasons: Vec<serde_json::Value> = problems
        .iter()
        .map(|p| {
            let mut v = serde_json::json!({ "reason": p.reason.as_str() });
            if let Some(ca) = &p.ca {
                v["ca"] = ca.as_str().into();
            }
            v["message"] = p.message.as_str().into();
            v
        })
        .collect();
    let body = serde_json::json!({
        "status": word,
        "store": store,
        "reasons": reasons,
        "scep": view.scep,
        "leads": leadership.current().iter().map(|j| j.as_str()).collect::<Vec<_>>(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// What the status page may load: nothing but its own inline CSS and `data:` images; no
/// script, no frame, no form.
const STATUS_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/// `GET /`: the status page (read-only HTML, no script).
async fn status_html(State(backend): State<Backend>) -> Response {
    status(backend, "text/html; charset=utf-8", status_page::html).await
}

/// `GET /status.json`: the status page's report as JSON.
async fn status_json(State(backend): State<Backend>) -> Response {
    status(backend, "application/json", status_page::json).await
}

/// The report, read and rendered on the blocking pool; 500 without details when the store
/// cannot be read.
async fn status(
    backend: Backend,
    content_type: &'static str,
    render: fn(&StatusReport) -> String,
) -> Response {
    let made = blocking(&backend, "building the status page", move |b| {
        b.status().map(|r| render(&r))
    })
    .await;
    let body = match made {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => {
            tracing::error!("cannot build the status page: {e}");
            return internal_error();
        }
        Err(e) => {
            tracing::error!("cannot build the status page: {e}");
            return internal_error();
        }
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, STATUS_CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;
    use crate::manager::crl_url;
    use crate::protocols::fetch::FetchLimits;
    use crate::service::testing::FakeBackend;
    use crate::service::{serve, HttpLimits, Schedule};

    fn sample(ca: &str, der: &[u8], number: u64) -> ServedCrl {
        ServedCrl {
            ca: ca.to_owned(),
            der: der.to_vec(),
            number,
            // Tue, 14 Nov 2023 22:13:20 GMT and a day later
            this_update: 1_700_000_000,
            next_update: 1_700_086_400,
        }
    }

    /// A running service on 127.0.0.1:0 with timers that never fire during the test.
    struct Running {
        addr: SocketAddr,
        fake: Arc<FakeBackend>,
        stop: Option<oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<Result<(), crate::service::ServiceError>>,
        client: reqwest::Client,
    }

    async fn start() -> Running {
        start_with(Schedule::quiet(), FakeBackend::default()).await
    }

    async fn start_with(schedule: Schedule, fake: FakeBackend) -> Running {
        start_limited(schedule, fake, HttpLimits::default()).await
    }

    async fn start_limited(schedule: Schedule, fake: FakeBackend, http: HttpLimits) -> Running {
        let fake = Arc::new(fake);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let backend: Backend = fake.clone();
        let task = tokio::spawn(serve(
            listener,
            backend,
            schedule,
            FetchLimits::default(),
            http,
            async move {
                let _ = rx.await;
            },
        ));
        Running {
            addr,
            fake,
            stop: Some(tx),
            task,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    impl Running {
        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        async fn get(&self, path: &str) -> reqwest::Response {
            self.client.get(self.url(path)).send().await.unwrap()
        }

        fn shutdown(&mut self) -> impl Future<Output = ()> + '_ {
            let _ = self.stop.take().unwrap().send(());
            async {
                tokio::time::timeout(Duration::from_secs(3), &mut self.task)
                    .await
                    .expect("the service did not stop")
                    .unwrap()
                    .unwrap();
            }
        }
    }

    fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
        r.headers()
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    #[tokio::test]
    async fn a_crl_is_served_with_its_bytes_type_and_cache_headers() {
        let mut s = start().await;
        let der = b"\x30\x03\x02\x01\x05".to_vec();
        s.fake.set_crl(sample("ca", &der, 5));
        let r = s.get("/crl/ca.crl").await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type"), "application/pkix-crl");
        assert_eq!(header(&r, "last-modified"), "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(header(&r, "expires"), "Wed, 15 Nov 2023 22:13:20 GMT");
        assert_eq!(header(&r, "etag"), "\"ca-5\"");
        // nextUpdate is in the past here: caches must not keep it
        assert_eq!(header(&r, "cache-control"), "public, max-age=0");
        assert_eq!(header(&r, "content-length"), "5");
        assert_eq!(r.bytes().await.unwrap().as_ref(), der.as_slice());
        s.shutdown().await;
    }

    #[test]
    fn cache_lifetime_is_capped_and_never_negative() {
        let crl = sample("ca", b"\x30\x00", 1);
        let max_age = |now| {
            crl_response(crl.clone(), now)
                .headers()
                .get(header::CACHE_CONTROL)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(max_age(crl.next_update - 60), "public, max-age=60");
        assert_eq!(
            max_age(crl.this_update),
            format!("public, max-age={MAX_CACHE_SECS}")
        );
        assert_eq!(max_age(crl.next_update + 60), "public, max-age=0");
    }

    #[tokio::test]
    async fn head_gives_the_headers_without_the_body() {
        let mut s = start().await;
        s.fake.set_crl(sample("ca", &[0x30, 0x01, 0x00], 2));
        let r = s.client.head(s.url("/crl/ca.crl")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type"), "application/pkix-crl");
        assert_eq!(header(&r, "etag"), "\"ca-2\"");
        assert_eq!(header(&r, "content-length"), "3");
        assert!(r.bytes().await.unwrap().is_empty());
        s.shutdown().await;
    }

    #[tokio::test]
    async fn the_cdp_that_crl_url_writes_is_the_path_served() {
        let mut s = start().await;
        for name in ["my ca", "Ünïcødé CA+1", "a%b.c_d~e"] {
            let der = name.as_bytes().to_vec();
            s.fake.set_crl(sample(name, &der, 1));
            let url = crl_url(&s.addr.to_string(), name);
            let r = s.client.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200, "{url}");
            assert_eq!(r.bytes().await.unwrap().as_ref(), der.as_slice(), "{url}");
        }
        assert!(crl_url("h", "my ca").ends_with("/crl/my%20ca.crl"));
        let r = s.get("/crl/my%20ca.crl").await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "etag"), "\"my%20ca-1\"");
        // '+' in a path is a plus, not a space
        let r = s.get("/crl/my+ca.crl").await;
        assert_eq!(r.status(), 404);
        s.shutdown().await;
    }

    #[tokio::test]
    async fn unknown_cas_and_other_paths_are_404_and_wrong_methods_405() {
        let mut s = start().await;
        s.fake.set_crl(sample("ca", &[0x30, 0x00], 1));
        for path in [
            "/crl/nope.crl",
            "/crl/ca",
            "/crl/ca.pem",
            "/crl/.crl",
            "/crl/%FF.crl",
            "/crl/a%2Fb.crl",
            "/crl/",
            "/crl",
            "/crl/ca.crl/x",
            "/index.html",
            "/status",
            "/scep",
        ] {
            let r = s.get(path).await;
            assert_eq!(r.status(), 404, "{path}");
            assert_eq!(r.text().await.unwrap(), "not found\n", "{path}");
        }
        for (method, path) in [("POST", "/crl/ca.crl"), ("DELETE", "/health")] {
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let r = s.client.request(m, s.url(path)).send().await.unwrap();
            assert_eq!(r.status(), 405, "{method} {path}");
        }
        s.shutdown().await;
    }

    #[tokio::test]
    async fn backend_errors_are_500_without_details() {
        let mut s = start().await;
        s.fake.set_crl(sample("ca", &[0x30, 0x00], 1));
        s.fake.fail_store("secret internals at /var/lib/x");
        let r = s.get("/crl/ca.crl").await;
        assert_eq!(r.status(), 500);
        let body = r.text().await.unwrap();
        assert_eq!(body, "internal server error\n");
        s.shutdown().await;
    }

    #[tokio::test]
    async fn every_request_reads_the_store_again() {
        let mut s = start().await;
        s.fake.set_crl(sample("ca", &[0x30, 0x01, 0x01], 1));
        let first = s.get("/crl/ca.crl").await.bytes().await.unwrap();
        // the CLI revokes: a new CRL in the store
        s.fake.set_crl(sample("ca", &[0x30, 0x01, 0x02], 2));
        let r = s.get("/crl/ca.crl").await;
        assert_eq!(header(&r, "etag"), "\"ca-2\"");
        let second = r.bytes().await.unwrap();
        assert_eq!(first.as_ref(), [0x30, 0x01, 0x01]);
        assert_eq!(second.as_ref(), [0x30, 0x01, 0x02]);
        assert_eq!(s.fake.served_calls.load(Ordering::SeqCst), 2);
        s.shutdown().await;
    }

    #[tokio::test]
    async fn health_reports_the_store() {
        let mut s = start().await;
        let r = s.get("/health").await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type"), "application/json");
        let v = json(r).await;
        assert_eq!(
            v,
            serde_json::json!({"status": "ok", "store": "ok", "reasons": [], "scep": [], "leads": [], "version": env!("CARGO_PKG_VERSION")})
        );
        s.fake.fail_store("locked");
        let r = s.get("/health").await;
        assert_eq!(r.status(), 503);
        let v = json(r).await;
        assert_eq!(v["status"], "error");
        assert_eq!(v["store"], "error");
        s.shutdown().await;
    }

    fn problem(reason: HealthReason, ca: Option<&str>, message: &str) -> HealthProblem {
        HealthProblem {
            reason,
            ca: ca.map(str::to_owned),
            message: message.to_owned(),
            detail: Some("/secret/path: details for the log".into()),
        }
    }

    #[tokio::test]
    async fn health_is_degraded_503_with_the_reasons() {
        let logs = crate::service::testing::capture_logs();
        // The renewal timer runs at once and finds card-ca's token absent.
        let mut schedule = Schedule::quiet();
        schedule.renew_first = Duration::ZERO;
        let fake = FakeBackend::default();
        fake.set_due(&["soft"], Some("card-ca"));
        let mut s = start_with(schedule, fake).await;
        while s.fake.renewals_done.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.fake.set_problems(vec![
            problem(
                HealthReason::CrlExpired,
                Some("root"),
                "the CRL of CA \"root\" is past its nextUpdate (2026-01-02 00:00:00 UTC)",
            ),
            problem(
                HealthReason::StoreUnwritable,
                None,
                "the store cannot be written",
            ),
        ]);
        let r = s.get("/health").await;
        assert_eq!(r.status(), 503);
        assert_eq!(header(&r, "cache-control"), "no-store");
        let v = json(r).await;
        assert_eq!(v["status"], "degraded", "{v}");
        assert_eq!(v["store"], "unwritable", "{v}");
        let reasons = v["reasons"].as_array().unwrap();
        let got: Vec<(&str, Option<&str>)> = reasons
            .iter()
            .map(|r| (r["reason"].as_str().unwrap(), r["ca"].as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("crl-expired", Some("root")),
                ("token-absent", Some("card-ca")),
                ("store-unwritable", None),
            ]
        );
        assert!(reasons[0]["message"]
            .as_str()
            .unwrap()
            .contains("past its nextUpdate"));
        // details go to the log, not to the answer
        assert!(!v.to_string().contains("/secret/path"), "{v}");
        assert!(
            logs.text()
                .lines()
                .any(|l| l.contains("WARN")
                    && l.contains("the store cannot be written: /secret/path")),
            "{}",
            logs.text()
        );

        // The same problem twice (renewal timer and manager) is one reason.
        s.fake.set_problems(vec![problem(
            HealthReason::TokenAbsent,
            Some("card-ca"),
            "absent",
        )]);
        let v = json(s.get("/health").await).await;
        assert_eq!(v["reasons"].as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v["store"], "ok");
        s.shutdown().await;
    }

    /// Sends `head` (no body, or only `body`), returns the status line (or "" if the server
    /// closed without answering) and how long the answer took.
    async fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> (String, Duration) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        c.write_all(head.as_bytes()).await.unwrap();
        let _ = c.write_all(body).await;
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        while !out.windows(2).any(|w| w == b"\r\n") {
            match tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Err(_) => panic!("no answer to {head:?} within 5 s"),
            }
        }
        let text = String::from_utf8_lossy(&out).into_owned();
        let line = text.lines().next().unwrap_or("").to_owned();
        (line, started.elapsed())
    }

    #[tokio::test]
    async fn every_route_refuses_a_body_over_its_cap_before_reading_it() {
        let mut s = start().await;
        s.fake.set_crl(sample("ca", &[0x30, 0x00], 1));
        let big = 1 << 30;
        for (method, path) in [
            ("GET", "/crl/ca.crl"),
            ("POST", "/crl/ca.crl"),
            ("GET", "/health"),
            ("GET", "/"),
            ("GET", "/status.json"),
            ("POST", "/scep/x?operation=PKIOperation"),
            ("GET", "/scep/x?operation=GetCACaps"),
            ("PUT", "/elsewhere"),
        ] {
            // 1 GiB announced, none sent: answered at once
            let head =
                format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {big}\r\n\r\n");
            let (line, after) = raw(s.addr, &head, b"").await;
            assert_eq!(line, "HTTP/1.1 413 Payload Too Large", "{method} {path}");
            assert!(after < Duration::from_secs(1), "{method} {path}: {after:?}");
        }
        // Just over the SCEP cap; and the CRL and health routes take no body at all.
        let over = format!(
            "POST /scep/x?operation=PKIOperation HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            MAX_MESSAGE + 1
        );
        assert_eq!(
            raw(s.addr, &over, b"").await.0,
            "HTTP/1.1 413 Payload Too Large"
        );
        for path in ["/health", "/", "/status.json"] {
            let one = format!("GET {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n");
            assert_eq!(
                raw(s.addr, &one, b"x").await.0,
                "HTTP/1.1 413 Payload Too Large",
                "{path}"
            );
        }
        // A chunked SCEP body is cut off at the cap.
        let chunked = "POST /scep/x?operation=PKIOperation HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        let chunk = format!(
            "{:x}\r\n{}\r\n",
            MAX_MESSAGE + 10,
            "a".repeat(MAX_MESSAGE + 10)
        );
        let (line, _) = raw(s.addr, chunked, chunk.as_bytes()).await;
        assert_eq!(line, "HTTP/1.1 413 Payload Too Large");
        // Without a body, the routes answer as before.
        assert_eq!(s.get("/crl/ca.crl").await.status(), 200);
        assert_eq!(s.get("/health").await.status(), 200);
        s.shutdown().await;
    }

    /// A report whose names are hostile: markup, quotes, a control character, an RTL override.
    fn hostile_report() -> StatusReport {
        use crate::manager::status::{Band, CaNode, CertNode, Mark};
        use crate::manager::Flags;
        let evil = "<script>alert('x')</script>\u{1b}[31m\u{202e}\"&";
        let mut r = crate::service::testing::empty_report(1_700_000_000);
        r.ca_tree.push(CaNode {
            ca: CertNode {
                name: evil.into(),
                flags: Flags {
                    authority: true,
                    ..Flags::default()
                },
                not_after: 1_700_000_000 + 86_400 * 3,
                expires_in: 86_400 * 3,
            },
            sub_cas: Vec::new(),
            issued: Vec::new(),
            more_issued: 0,
        });
        r.expiry.bands.push(Band {
            id: "7",
            from_days: Some(0),
            to_days: 7,
            total: 1,
            marks: vec![Mark {
                name: evil.into(),
                not_after: 1_700_000_000 + 86_400 * 3,
                expires_in: 86_400 * 3,
                authority: true,
            }],
        });
        r
    }

    #[tokio::test]
    async fn the_status_page_is_read_only_html_with_a_strict_policy_and_escaped_names() {
        let mut s = start().await;
        s.fake.set_status(hostile_report());
        let r = s.get("/").await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&r, "cache-control"), "no-store");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff");
        assert_eq!(
            header(&r, "content-security-policy"),
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
        );
        let html = r.text().await.unwrap();
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains('\u{1b}'), "a raw control character");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;\\x1b[31m"));
        // the name is isolated where it is shown as text
        assert!(html.contains("<bdi>&lt;script&gt;"), "{html}");
        assert!(html.contains("id=\"band-7\""), "{html}");

        let r = s.get("/status.json").await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type"), "application/json");
        assert_eq!(header(&r, "cache-control"), "no-store");
        let v = json(r).await;
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["generated"], "2023-11-14T22:13:20Z");
        assert_eq!(v["ca-tree"][0]["flags"], "A");
        assert!(v["ca-tree"][0]["name"]
            .as_str()
            .unwrap()
            .starts_with("<script>"));

        // HEAD answers without a body; other methods are 405
        let r = s.client.head(s.url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.bytes().await.unwrap().is_empty());
        for path in ["/", "/status.json"] {
            let r = s.client.post(s.url(path)).send().await.unwrap();
            assert_eq!(r.status(), 405, "{path}");
        }
        // a store that cannot be read: 500 without details
        s.fake.fail_store("secret internals at /var/lib/x");
        for path in ["/", "/status.json"] {
            let r = s.get(path).await;
            assert_eq!(r.status(), 500, "{path}");
            assert_eq!(r.text().await.unwrap(), "internal server error\n");
        }
        s.shutdown().await;
    }

    #[tokio::test]
    async fn a_scep_body_that_does_not_arrive_in_time_is_408() {
        let http = HttpLimits {
            header_timeout: Duration::from_millis(400),
            ..HttpLimits::default()
        };
        let mut s = start_limited(Schedule::quiet(), FakeBackend::default(), http).await;
        let head = "POST /scep/x?operation=PKIOperation HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n";
        let (line, after) = raw(s.addr, head, &[0u8; 10]).await;
        assert_eq!(line, "HTTP/1.1 408 Request Timeout");
        assert!(
            after >= Duration::from_millis(350) && after < Duration::from_secs(2),
            "{after:?}"
        );
        s.shutdown().await;
    }

    async fn json(r: reqwest::Response) -> serde_json::Value {
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn shutdown_stops_accepting_and_lets_a_request_in_flight_finish() {
        let mut s = start().await;
        s.fake.set_crl(sample("ca", &[0x30, 0x00], 1));
        s.fake.set_served_delay(Duration::from_millis(300));
        let client = s.client.clone();
        let url = s.url("/crl/ca.crl");
        let in_flight = tokio::spawn(async move { client.get(url).send().await });
        // let the request reach the backend, then shut down while it runs
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(s.fake.served_calls.load(Ordering::SeqCst), 1);
        let addr = s.addr;
        let started = Instant::now();
        s.shutdown().await;
        // the service ended only once the request had been answered
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "{:?}",
            started.elapsed()
        );
        let r = in_flight.await.unwrap().unwrap();
        assert_eq!(r.status(), 200);
        // nothing listens any more
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn shutdown_waits_for_a_renewal_in_progress() {
        let mut schedule = Schedule::quiet();
        schedule.renew_first = Duration::ZERO;
        let fake = FakeBackend::default();
        fake.set_due(&["ca"], None);
        fake.set_renew_delay(Duration::from_millis(300));
        let mut s = start_with(schedule, fake).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(s.fake.renew_calls().len(), 1);
        assert_eq!(s.fake.renewals_done.load(Ordering::SeqCst), 0);
        s.shutdown().await;
        assert_eq!(s.fake.renewals_done.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn shutdown_gives_up_after_the_grace_period() {
        let mut schedule = Schedule::quiet();
        schedule.grace = Duration::from_millis(200);
        let mut s = start_with(schedule, FakeBackend::default()).await;
        s.fake.set_crl(sample("ca", &[0x30, 0x00], 1));
        s.fake.set_served_delay(Duration::from_millis(800));
        let client = s.client.clone();
        let url = s.url("/crl/ca.crl");
        let _in_flight = tokio::spawn(async move { client.get(url).send().await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        s.shutdown().await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn the_bound_address_and_the_stop_are_logged_and_requests_at_debug() {
        let logs = crate::service::testing::capture_logs();
        let mut s = start().await;
        let r = s.get("/nothing-here").await;
        assert_eq!(r.status(), 404);
        s.shutdown().await;
        let text = logs.text();
        let listening = text
            .lines()
            .find_map(|l| l.split_once("listening on ").map(|(_, a)| a.to_owned()))
            .unwrap_or_else(|| panic!("no listening line in {text}"));
        assert_eq!(listening.parse::<SocketAddr>().unwrap(), s.addr);
        assert!(
            text.lines()
                .any(|l| l.contains("DEBUG") && l.contains("GET /nothing-here 404")),
            "{text}"
        );
        assert!(
            text.lines()
                .last()
                .unwrap()
                .ends_with("INFO certman::service: stopped"),
            "{text}"
        );
    }

    #[test]
    fn cdp_file_decoding() {
        assert_eq!(cdp_file("/crl/my%20ca.crl").as_deref(), Some("my ca.crl"));
        assert_eq!(cdp_file("/crl/ca.crl").as_deref(), Some("ca.crl"));
        assert_eq!(cdp_file("/crl/%C3%BC.crl").as_deref(), Some("ü.crl"));
        assert_eq!(cdp_file("/crl/a+b.crl").as_deref(), Some("a+b.crl"));
        assert_eq!(cdp_file("/crl/.crl"), None);
        assert_eq!(cdp_file("/crl/ca.der"), None);
        assert_eq!(cdp_file("/crl/%C3.crl"), None);
        assert_eq!(cdp_file("/crl/a%2fb.crl"), None);
        assert_eq!(cdp_file("/other/ca.crl"), None);
    }
}

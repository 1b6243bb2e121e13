//! The daemon (`certman serve`): the HTTP endpoints (CRLs at the CDP paths `ca-crl-host` puts in
//! issued certificates, the SCEP servers' paths, `/health`, the status page at `/` and
//! `/status.json`), the CRL timers (renewal of local CAs' CRLs, download of the
//! CRLs of trusted certificates) and graceful shutdown. The connections are bounded
//! (`conn.rs`: header and idle timeouts, a connection cap) and so are request bodies
//! (`http.rs`).
//!
//! The service talks to the certificate manager only through [`ServiceBackend`], whose methods
//! block (SQLite, token signing): async code calls them through `spawn_blocking`. No state is
//! cached between requests: the CLI may revoke while the daemon runs, and the next request must
//! see the new CRL (or the SCEP server's new settings). What is kept is keyed by content and
//! cannot go stale: parsed software keys (by key id and sealed blob) and inspected certificates
//! (by their DER's SHA-256).

mod backend;
mod config;
mod conn;
mod http;
mod scep;
mod status_page;
mod timers;

#[cfg(test)]
mod testing;

use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use self::config::Config;
pub use self::conn::HttpLimits;
pub use self::timers::Schedule;
use crate::error::{ExitCode, ManagerError};
use crate::manager::{
    CrlRenewal, HealthProblem, ScepServerView, ServedCrl, Settings, StatusReport,
};
use crate::protocols::crl_download::CrlDownloads;
use crate::protocols::fetch::{FetchLimits, Fetcher};
use crate::protocols::scep::server::ScepCa;

/// What the service needs from the certificate manager (with the CRL-download port the
/// download timer uses). Every method blocks.
pub trait ServiceBackend: CrlDownloads + Send + Sync + 'static {
    /// The current CRL of the local CA a CDP file names. `file` is the percent-decoded last
    /// path segment, e.g. "my ca.crl". `None` when there is no such CA or it has no CRL.
    fn served_crl(&self, file: &str) -> Result<Option<ServedCrl>, ManagerError>;
    /// Renews the CRL of every local CA whose current CRL is older than `max_age` (or missing).
    fn renew_due_crls(&self, max_age: Duration) -> Vec<CrlRenewal>;
    /// RouterOS `/certificate settings`.
    fn settings(&self) -> Result<Settings, ManagerError>;
    /// A cheap read of the store, for `/health`.
    fn check_store(&self) -> Result<(), ManagerError>;
    /// Whether this node leads `job` now (`Store::lead`): the timers skip a round of a job
    /// another node leads.
    fn lead(&self, job: crate::store::Job) -> Result<bool, ManagerError>;
    /// What keeps the service from doing its job, for `/health` (`manager::health`): CRLs
    /// past their nextUpdate, CAs whose renewal failed on the PIN, an unwritable store. Quick,
    /// and never touches a token.
    fn health(&self) -> Result<Vec<HealthProblem>, ManagerError>;
    /// The CA side of SCEP, when this backend serves it.
    fn scep_ca(&self) -> Option<&dyn ScepCa> {
        None
    }
    /// What the status page shows (`manager::status`): read-only, never logs in to a token.
    fn status(&self) -> Result<StatusReport, ManagerError>;
    /// The SCEP servers, for `/health`.
    fn scep_servers(&self) -> Result<Vec<ScepServerView>, ManagerError> {
        Ok(Vec::new())
    }
    /// The SCEP clients' side, when this backend keeps clients (the timers run them).
    fn scep_clients(
        self: Arc<Self>,
    ) -> Option<Arc<dyn crate::protocols::scep::enrolment::ScepClients>> {
        None
    }
}

/// How long shutdown waits for in-flight requests and running jobs.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Errors of the service layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The config file (or a value in it) is not valid; one line saying where and why.
    #[error("{0}")]
    Config(String),
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ConfigFile {
        /// the file
        path: PathBuf,
        /// why
        #[source]
        source: std::io::Error,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// the address
        addr: SocketAddr,
        /// why (address in use, permission denied, …)
        #[source]
        source: std::io::Error,
    },
    /// The runtime, a signal handler or the logger could not be set up.
    #[error("{context}: {source}")]
    Setup {
        /// what was being set up
        context: &'static str,
        /// why
        #[source]
        source: std::io::Error,
    },
    /// A job on the blocking pool panicked.
    #[error("internal error: {0}")]
    Internal(String),
    /// The certificate manager failed.
    #[error(transparent)]
    Manager(#[from] ManagerError),
}

impl ServiceError {
    /// The CLI exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            ServiceError::Config(_) => ExitCode::Usage,
            ServiceError::Manager(e) => e.exit_code(),
            _ => ExitCode::Failed,
        }
    }
}

/// Runs `certman serve` until SIGTERM or SIGINT: sets up logging (stderr; `log=` of the config,
/// overridden by `$CERTMAN_LOG`), binds `listen`, serves, runs the timers, shuts down
/// gracefully.
pub fn run(config: Config, backend: Arc<dyn ServiceBackend>) -> Result<(), ServiceError> {
    config.validate()?;
    init_tracing(&config.log)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("certman-serve")
        .build()
        .map_err(|source| ServiceError::Setup {
            context: "cannot start the async runtime",
            source,
        })?;
    let schedule = Schedule::from_config(&config);
    let limits = config.fetch_limits();
    let http_limits = config.http_limits();
    let result = runtime.block_on(async {
        let signal = shutdown_signal()?;
        let listener = bind(config.listen).map_err(|source| ServiceError::Bind {
            addr: config.listen,
            source,
        })?;
        serve(listener, backend, schedule, limits, http_limits, signal).await
    });
    // Everything the service started was awaited (or given up on after the grace period);
    // blocking jobs still running then are not waited for again.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// The listen queue's length (the kernel caps it at `net.core.somaxconn`): tokio's `bind`
/// takes std's 128, which a burst of connections (200 slow sockets opened at once) overflows,
/// so that further clients' SYNs are dropped and they wait a second for the retransmission.
const LISTEN_BACKLOG: u32 = 1024;

/// Binds `addr` for serving, with [`LISTEN_BACKLOG`].
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The log filter: `$CERTMAN_LOG` if set, else the config's `log=`.
fn init_tracing(config_filter: &str) -> Result<(), ServiceError> {
    let (filter, origin) = match std::env::var("CERTMAN_LOG") {
        Ok(v) if !v.trim().is_empty() => (v, "CERTMAN_LOG"),
        _ => (config_filter.to_owned(), "log"),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .map_err(|e| ServiceError::Config(format!("{origin}={filter}: {e}")))?;
    // A subscriber already installed (embedding, tests) is kept.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(log_colours(
            std::env::var_os("NO_COLOR").as_deref(),
            std::env::var_os("CLICOLOR_FORCE").as_deref(),
            std::io::stderr().is_terminal(),
        ))
        .try_init();
    Ok(())
}

/// Whether the log lines on stderr get ANSI colours, decided as clap (anstream) decides for
/// `--help`: never with `NO_COLOR` set and not empty (no-color.org), always with
/// `CLICOLOR_FORCE` set and not empty, else only on a terminal.
fn log_colours(
    no_color: Option<&std::ffi::OsStr>,
    clicolor_force: Option<&std::ffi::OsStr>,
    stderr_is_terminal: bool,
) -> bool {
    if no_color.is_some_and(|v| !v.is_empty()) {
        return false;
    }
    if clicolor_force.is_some_and(|v| !v.is_empty()) {
        return true;
    }
    stderr_is_terminal
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed now, so a signal that arrives
/// while starting up is not lost.
fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static, ServiceError> {
    use tokio::signal::unix::{signal, SignalKind};
    let setup = |source| ServiceError::Setup {
        context: "cannot install the signal handlers",
        source,
    };
    let mut term = signal(SignalKind::terminate()).map_err(setup)?;
    let mut int = signal(SignalKind::interrupt()).map_err(setup)?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("{name} received, shutting down");
    })
}

/// Serves on `listener` (within `http`'s bounds) and runs the timers until `shutdown` resolves;
/// then stops accepting, lets in-flight requests and running jobs finish (up to the schedule's
/// grace period) and returns.
pub async fn serve(
    listener: TcpListener,
    backend: Arc<dyn ServiceBackend>,
    schedule: Schedule,
    limits: FetchLimits,
    http: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    let addr = listener
        .local_addr()
        .map_err(|source| ServiceError::Setup {
            context: "cannot read the bound address",
            source,
        })?;
    let fetcher = Fetcher::new(limits).map_err(|e| ServiceError::Setup {
        context: "cannot build the HTTP client",
        source: std::io::Error::other(e.to_string()),
    })?;
    let (stop_tx, stop_rx) = watch::channel(false);

    let renewals = Arc::new(timers::RenewalProblems::default());
    let leadership = Arc::new(timers::Leadership::default());
    let timers = timers::spawn(
        backend.clone(),
        schedule,
        fetcher,
        renewals.clone(),
        leadership.clone(),
        stop_rx.clone(),
    );
    let app = http::router(backend, renewals, leadership);
    let mut server = tokio::spawn(conn::serve_http(listener, app, http, stop_rx.clone()));
    tracing::info!("listening on {addr}");

    let early_end = tokio::select! {
        _ = shutdown => None,
        r = &mut server => Some(r),
    };
    let _ = stop_tx.send(true);
    if let Some(r) = early_end {
        // the accept loop does not end by itself; if it did, say so.
        tracing::error!("the HTTP server stopped unexpectedly: {r:?}");
    }

    let drain = async {
        if !server.is_finished() {
            let _ = (&mut server).await;
        }
        for t in timers {
            let _ = t.await;
        }
    };
    if tokio::time::timeout(schedule.grace, drain).await.is_err() {
        server.abort();
        tracing::warn!(
            "requests or jobs still running after {} s; stopping anyway",
            schedule.grace.as_secs()
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// Runs a backend call on the blocking pool.
pub(crate) async fn blocking<T, F>(
    backend: &Arc<dyn ServiceBackend>,
    what: &'static str,
    f: F,
) -> Result<T, ServiceError>
where
    T: Send + 'static,
    F: FnOnce(&dyn ServiceBackend) -> T + Send + 'static,
{
    let backend = backend.clone();
    tokio::task::spawn_blocking(move || f(backend.as_ref()))
        .await
        .map_err(|e| ServiceError::Internal(format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_colours_follow_no_color_then_clicolor_force_then_the_terminal() {
        use std::ffi::OsStr;
        let set = |s: &'static str| Some(OsStr::new(s));
        assert!(log_colours(None, None, true));
        assert!(!log_colours(None, None, false));
        assert!(!log_colours(set("1"), None, true), "NO_COLOR on a terminal");
        assert!(
            log_colours(set(""), None, true),
            "an empty NO_COLOR is not set"
        );
        assert!(
            log_colours(None, set("1"), false),
            "CLICOLOR_FORCE off a terminal"
        );
        assert!(!log_colours(set("1"), set("1"), true), "NO_COLOR wins");
    }

    #[test]
    fn manager_is_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<crate::manager::Manager>();
    }

    /// `run` for real: binds, serves, and stops on a real SIGTERM sent to this process (tokio's
    /// handler is installed before the port is bound, so the signal cannot kill the tests).
    #[test]
    fn run_serves_until_sigterm() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            crl_renew_check: 3600,
            // the global subscriber `run` installs would write into the other tests' output
            log: "off".into(),
            ..Config::default()
        };
        let fake = Arc::new(testing::FakeBackend::default());
        let backend: Arc<dyn ServiceBackend> = fake.clone();
        let service = std::thread::spawn(move || run(config, backend));
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(5), "never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        // the renewal look at start has run
        while fake.renew_calls().is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "no renewal look"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let started = std::time::Instant::now();
        while !service.is_finished() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "SIGTERM did not stop it"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        service.join().unwrap().unwrap();
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
        assert_eq!(fake.renew_calls(), [Duration::from_secs(24 * 3600)]);
    }

    #[test]
    fn run_says_when_the_address_is_taken() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let config = Config {
            listen: taken.local_addr().unwrap(),
            log: "off".into(),
            ..Config::default()
        };
        let backend: Arc<dyn ServiceBackend> = Arc::new(testing::FakeBackend::default());
        let e = run(config, backend).unwrap_err();
        assert!(matches!(e, ServiceError::Bind { .. }), "{e:?}");
        assert!(
            e.to_string().starts_with("cannot listen on 127.0.0.1:"),
            "{e}"
        );
    }

    #[test]
    fn service_errors_keep_their_exit_code_and_line_through_the_cli() {
        use crate::cli::CliError;
        let bind = ServiceError::Bind {
            addr: "127.0.0.1:8080".parse().unwrap(),
            source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
        };
        let line = bind.to_string();
        assert!(
            line.starts_with("cannot listen on 127.0.0.1:8080: "),
            "{line}"
        );
        let m = CliError::from(bind);
        assert_eq!(m.exit_code(), ExitCode::Failed);
        assert!(m.to_string().contains(&line), "{m}");

        let m = CliError::from(ServiceError::Config("bad".into()));
        assert_eq!(m.exit_code(), ExitCode::Usage);
        assert_eq!(m.to_string(), "bad");
    }
}

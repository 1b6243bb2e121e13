//! `certman agent`: one process that keeps a store open and runs the `certman` command lines
//! its user types, so that a script's loop of commands pays neither a process start-up nor an
//! opening of the store per command.
//!
//! The `certman` program is a small launcher (`src/main.rs`): when an agent serves the store a
//! command line names, it sends the line (with its working directory, environment and
//! terminal session, [`wire`]) over the agent's socket and prints what comes back; otherwise,
//! or when the agent answers "run it yourself", it runs `certman-core`, the whole program.
//!
//! - The socket is `agent-HASH.sock` in the private directory the `#` numbers use
//!   (`$XDG_RUNTIME_DIR/certman`, else a 0700 `certman-UID`, checked for owner and mode),
//!   0600, one per store; the agent serves only its own user (`SO_PEERCRED`).
//! - It runs only command lines that would run the same in it as in a process of their own
//!   ([`request`]): the same environment, the same store and token profiles, a command that
//!   neither prompts nor reads a secret. Anything else is run by the client.
//! - One command at a time, each its own transactions as in its own process; one set of
//!   providers for the agent's life (one PIN try per token, as in a script).

mod request;
pub mod wire;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{CliError, Ctx};
use crate::error::ManagerError;

/// `certman agent`.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// End after this long without a command (RouterOS duration: 30s, 10m, 1h; 0: never).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = idle_timeout)]
    pub idle_timeout: Duration,
}

fn idle_timeout(s: &str) -> Result<Duration, String> {
    super::filter::parse_duration(s)
        .ok_or_else(|| format!("'{s}' is not a duration (30s, 10m, 1h, 0)"))
}

/// Set by SIGTERM, SIGINT and SIGHUP: the agent ends once the command it runs is done.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

impl AgentArgs {
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let manager = ctx.resident_manager()?;
        let store =
            std::fs::canonicalize(ctx.store_dir()).map_err(|source| ManagerError::File {
                path: ctx.store_dir().to_owned(),
                source,
            })?;
        let socket = wire::socket_path(&store, true).ok_or_else(|| {
            ManagerError::Failed(
                "no private directory for the agent's socket ($XDG_RUNTIME_DIR/certman, or \
                 certman-UID in the temporary directory, must be a 0700 directory of this user)"
                    .into(),
            )
        })?;
        let served = request::Served::new(manager, store.clone(), ctx)?;
        let listener = bind(&socket)?;
        let _socket_file = SocketFile::of(&socket);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            unsafe {
                libc::signal(sig, on_stop_signal as *const () as libc::sighandler_t);
            }
        }
        let pid = std::process::id();
        if ctx.json {
            super::json::print(&serde_json::json!({
                "store": store.display().to_string(),
                "socket": socket.display().to_string(),
                "pid": pid,
            }));
        } else if !ctx.quiet {
            super::out::outln!(
                "certman agent: serving {} on {} (pid {pid})",
                store.display(),
                socket.display()
            );
        }
        // the announcement is read by whoever waits for the agent to be ready
        super::out::finish().map_err(CliError::Output)?;
        let mut last = Instant::now();
        while !STOP.load(Ordering::SeqCst) {
            let idle = last.elapsed();
            if !self.idle_timeout.is_zero() && idle >= self.idle_timeout {
                break;
            }
            let wait = if self.idle_timeout.is_zero() {
                Duration::from_millis(500)
            } else {
                (self.idle_timeout - idle).min(Duration::from_millis(500))
            };
            if !readable(&listener, wait) {
                continue;
            }
            match listener.accept() {
                Ok((conn, _)) => {
                    served.answer(conn);
                    last = Instant::now();
                }
                Err(e) => note(&format!("cannot accept a connection: {e}")),
            }
        }
        Ok(())
    }
}

/// One line on the agent's own stderr (never a command line: it may hold a secret).
fn note(what: &str) {
    super::out::err_line(&format!("certman agent: {what}"));
}

/// Whether a connection waits on `listener` within `wait` (false on a signal).
fn readable(listener: &UnixListener, wait: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: poll reads and writes the one pollfd it is given.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    n > 0 && pfd.revents & libc::POLLIN != 0
}

/// Binds the socket, 0600: an agent that answers there already is refused; a socket file no
/// one answers on (an agent that was killed) is replaced.
fn bind(socket: &Path) -> Result<UnixListener, CliError> {
    if socket.exists() {
        if UnixStream::connect(socket).is_ok() {
            return Err(ManagerError::Failed(format!(
                "an agent already serves this store (socket {})",
                socket.display()
            ))
            .into());
        }
        let _ = std::fs::remove_file(socket);
    }
    let file_err = |source| ManagerError::File {
        path: socket.to_owned(),
        source,
    };
    // SAFETY: umask only swaps the process's file mode mask; the old one is put back below.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(socket);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(file_err)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).map_err(file_err)?;
    Ok(listener)
}

/// Removes the agent's socket file when the agent ends, unless another agent's replaced it.
struct SocketFile {
    path: PathBuf,
    ino: Option<u64>,
}

impl SocketFile {
    fn of(path: &Path) -> SocketFile {
        SocketFile {
            path: path.to_owned(),
            ino: std::fs::symlink_metadata(path).ok().map(|m| m.ino()),
        }
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let now = std::fs::symlink_metadata(&self.path).ok().map(|m| m.ino());
        if now.is_some() && now == self.ino {
            let _ = std::fs::remove_file(&self.path);
        }
        let _ = std::io::stdout().flush();
    }
}

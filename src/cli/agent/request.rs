//! One client's command line in the agent: whether it would run here as it would in a process
//! of its own, and running it with its output caught for the client.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::note;
use super::wire::{self, Answer, Request};
use crate::cli::{normalize_args, Cli, Command, Ctx, Host};
use crate::error::ManagerError;
use crate::manager::Manager;

/// How long a client has to send its command line once connected, and to take its answer
/// (the launcher reads it whole before printing it).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the agent serves with, and what a client must share with it to be served.
pub(super) struct Served {
    manager: Arc<Manager>,
    /// the store, canonical
    store: PathBuf,
    /// the token profiles directory, absolute
    tokens: PathBuf,
    /// the agent's environment as compared ([`wire::compared_env`])
    env: Vec<(OsString, OsString)>,
    /// the agent's working directory
    cwd: PathBuf,
    /// whether a variable of that environment looks like a relative path (`a/b`, `../x`),
    /// which means something else in another working directory
    relative_paths: bool,
    /// the agent's user
    uid: u32,
    /// --seal-key-source, as the agent was given it
    seal_key_source: Option<String>,
    /// clap's command tree, built once (building it is most of a parse)
    command: std::cell::RefCell<clap::Command>,
}

impl Served {
    pub(super) fn new(
        manager: Arc<Manager>,
        store: PathBuf,
        ctx: &Ctx,
    ) -> Result<Self, ManagerError> {
        let cwd = super::super::cwd()?;
        let env = wire::compared_env(std::env::vars_os());
        let relative_paths = env.iter().any(|(_, v)| {
            let v = v.as_encoded_bytes();
            !v.starts_with(b"/") && (v.contains(&b'/') || v.starts_with(b"."))
        });
        Ok(Served {
            manager,
            store,
            tokens: cwd.join(ctx.tokens_dir().0),
            env,
            cwd,
            relative_paths,
            // SAFETY: geteuid cannot fail.
            uid: unsafe { libc::geteuid() },
            seal_key_source: ctx.seal_key_source().map(str::to_owned),
            command: std::cell::RefCell::new(<Cli as clap::CommandFactory>::command()),
        })
    }

    /// Reads a client's command line, runs it or tells the client to, and answers. Problems
    /// with the connection are noted on the agent's stderr; the agent goes on.
    pub(super) fn answer(&self, mut conn: UnixStream) {
        match peer_uid(&conn) {
            Ok(uid) if uid == self.uid => {}
            Ok(uid) => return note(&format!("refused a connection from uid {uid}")),
            Err(e) => return note(&format!("cannot tell who connected: {e}")),
        }
        let _ = conn.set_read_timeout(Some(REQUEST_TIMEOUT));
        let _ = conn.set_write_timeout(Some(REQUEST_TIMEOUT));
        let mut req = match Request::read_from(&mut conn) {
            Ok(r) => r,
            Err(e) => return note(&format!("unreadable request: {e}")),
        };
        let answers = match self.admit(&req) {
            Ok((cli, ctx)) => self.run(&req, &cli, &ctx),
            Err(why) => vec![Answer::RunLocally(why)],
        };
        req.zeroize(); // the command line may hold a secret (`passphrase=…`)
                       // one write: the client wakes once
        let mut bytes = Vec::new();
        let sent = answers
            .iter()
            .try_for_each(|a| a.write_to(&mut bytes))
            .and_then(|()| conn.write_all(&bytes));
        if let Err(e) = sent {
            note(&format!("cannot answer a client: {e}"));
        }
    }

    /// The command line parsed with its context, if it would run here as in its own process;
    /// else why not.
    fn admit(&self, req: &Request) -> Result<(Cli, Ctx), String> {
        if req.env != self.env {
            return Err("its environment is not the agent's".into());
        }
        if req.cwd != self.cwd && self.relative_paths {
            return Err(
                "the environment names relative paths and the working directory is not the agent's"
                    .into(),
            );
        }
        let args = normalize_args(req.argv.iter().cloned());
        let usage = |_| String::from("help, the version and usage errors are certman's own");
        let matches = self
            .command
            .borrow_mut()
            .try_get_matches_from_mut(&args)
            .map_err(usage)?;
        let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches).map_err(usage)?;
        if !served(&cli.command) {
            return Err("the command is not one the agent runs".into());
        }
        if cli.force_last_pin_try {
            return Err("--force-last-pin-try is for a process of its own".into());
        }
        if cli.seal_key_source != self.seal_key_source {
            return Err("it names another seal-key-source".into());
        }
        let ctx = Ctx::from_cli(
            &cli,
            &Host::Agent {
                manager: &self.manager,
                sid: req.sid,
                width: (req.width > 0).then_some(usize::from(req.width)),
            },
        );
        let store = std::fs::canonicalize(req.cwd.join(ctx.store_dir()));
        if store.ok().as_deref() != Some(self.store.as_path()) {
            return Err("it names another store".into());
        }
        if req.cwd.join(ctx.tokens_dir().0) != self.tokens {
            return Err("it names other token profiles".into());
        }
        Ok((cli, ctx))
    }

    /// Runs an admitted command line in the client's working directory, with its output
    /// caught: the output and exit code, or "run it yourself" when it asked for a secret
    /// before changing anything.
    fn run(&self, req: &Request, cli: &Cli, ctx: &Ctx) -> Vec<Answer> {
        if let Err(e) = std::env::set_current_dir(&req.cwd) {
            return vec![Answer::RunLocally(format!(
                "cannot enter its directory: {e}"
            ))];
        }
        let commits = self.manager.commits();
        crate::secret::hold_back_secrets(true);
        let ran = with_output_caught(|| super::super::run(cli, ctx));
        let asked_secret = crate::secret::secret_was_held_back();
        crate::secret::hold_back_secrets(false);
        if let Err(e) = std::env::set_current_dir(&self.cwd) {
            note(&format!("cannot go back to {}: {e}", self.cwd.display()));
        }
        match ran {
            Err(e) => vec![Answer::RunLocally(format!("cannot catch its output: {e}"))],
            Ok(_) if asked_secret && self.manager.commits() == commits => {
                vec![Answer::RunLocally("the command reads a secret".into())]
            }
            Ok((code, out, err)) => {
                vec![Answer::Stdout(out), Answer::Stderr(err), Answer::Exit(code)]
            }
        }
    }
}

/// The commands the agent runs: those that work on the store and the key providers alone
/// (files only in the client's directory, secrets only as `X=` values). The rest — the
/// service, the agent, scripts, token and card work, imports, SCEP enrolment, CRL downloads —
/// run in a process of their own.
fn served(command: &Command) -> bool {
    match command {
        Command::Add(_)
        | Command::Sign(_)
        | Command::Print(_)
        | Command::Set(_)
        | Command::ExportCertificate(_)
        | Command::SignCertificateRequest(_)
        | Command::Verify(_) => true,
        // a token key deleted after the commit would want its PIN then
        Command::Remove(r) => r.delete_key != Some(true),
        _ => false,
    }
}

/// The user at the other end of a unix socket.
fn peer_uid(conn: &UnixStream) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED writes at most `len` bytes into the ucred it is given.
    let rc = unsafe {
        libc::getsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// Runs `f` with stdin on /dev/null and stdout and stderr caught in memory files (whatever
/// writes them: certman's own output, clap, a library's warning); its result and the two.
fn with_output_caught(f: impl FnOnce() -> u8) -> io::Result<(u8, Vec<u8>, Vec<u8>)> {
    let out = memfd(c"certman-agent-stdout")?;
    let err = memfd(c"certman-agent-stderr")?;
    let null = File::open("/dev/null")?;
    let _ = io::stdout().flush();
    let saved = [dup(0)?, dup(1)?, dup(2)?];
    let targets = [null.as_raw_fd(), out.as_raw_fd(), err.as_raw_fd()];
    let redirected = (0..3).try_for_each(|fd| dup2(targets[fd], fd as i32));
    let code = redirected.as_ref().ok().map(|()| f());
    let _ = io::stdout().flush();
    for (fd, s) in saved.iter().enumerate() {
        dup2(s.as_raw_fd(), fd as i32)?;
    }
    redirected?;
    let code = code.unwrap_or(1);
    Ok((code, read_all(out)?, read_all(err)?))
}

fn memfd(name: &std::ffi::CStr) -> io::Result<File> {
    // SAFETY: memfd_create reads the name and returns a new descriptor we own, or -1.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor owned by no one else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn dup(fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor we own, or -1.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: new is a new descriptor owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

fn dup2(from: i32, to: i32) -> io::Result<()> {
    // SAFETY: dup2 makes `to` a copy of `from`; both are descriptors of this process.
    if unsafe { libc::dup2(from, to) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn read_all(mut f: File) -> io::Result<Vec<u8>> {
    f.rewind()?;
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_caught_and_the_descriptors_restored() {
        let before = std::fs::read_link("/proc/self/fd/1").ok();
        let (code, out, err) = with_output_caught(|| {
            let _ = writeln!(io::stdout(), "to stdout");
            let _ = writeln!(io::stderr(), "to stderr");
            7
        })
        .unwrap();
        assert_eq!(code, 7);
        // the test harness may print another test's result to the same descriptor meanwhile
        // (descriptors are the process's): the line written here is among what was caught
        let lines = |b: &[u8]| {
            String::from_utf8_lossy(b)
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert!(
            lines(&out).contains(&"to stdout".to_owned()),
            "{:?}",
            lines(&out)
        );
        assert!(
            lines(&err).contains(&"to stderr".to_owned()),
            "{:?}",
            lines(&err)
        );
        assert_eq!(std::fs::read_link("/proc/self/fd/1").ok(), before);
    }

    #[test]
    fn served_commands() {
        let parse = |v: &[&str]| {
            <Cli as clap::Parser>::try_parse_from(normalize_args(v.iter().map(OsString::from)))
                .unwrap()
                .command
        };
        assert!(served(&parse(&["c", "add", "name=a"])));
        assert!(served(&parse(&["c", "remove", "a"])));
        assert!(!served(&parse(&["c", "remove", "a", "delete-key=yes"])));
        assert!(!served(&parse(&["c", "agent"])));
        assert!(!served(&parse(&["c", "script", "-"])));
        assert!(!served(&parse(&["c", "issued-revoke", "a"])));
    }
}

//! What the `certman` launcher and `certman agent` share: where an agent's socket is, what a
//! request and its answer look like on it, and the facts of the calling terminal a command's
//! output depends on. The standard library and libc only: the launcher includes this file
//! (`#[path]`) to stay a small program that starts in a fraction of a millisecond.
//!
//! A request is one frame: `CMA1`, a u32 length, then the body (all integers big-endian):
//! sid i32, width u16 (0: none), then length-prefixed byte strings: cwd, the environment
//! (a count, then NAME and VALUE of each) and argv (a count, then each). The answer is frames
//! of a tag byte and a u32 length: `O` stdout bytes, `E` stderr bytes, then `X` (one byte, the
//! exit code) or `L` (run it yourself: the reason, text). Sizes are bounded both ways.

#![allow(dead_code)] // each of the two programs uses its half

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"CMA1";
/// The largest request body (argv and environment of a command line).
pub const MAX_REQUEST: usize = 1 << 20;
/// The largest answer frame (a command's output is sent in frames of at most this).
pub const MAX_FRAME: usize = 1 << 20;
/// Environment variables that do not take part in the comparison of a client's environment
/// with the agent's: set by shells per command or per directory, or (COLUMNS, LINES) sent as
/// the terminal width. `CERTMAN_AGENT` only tells the launcher what to do.
pub const ENV_IGNORED: &[&str] = &[
    "_",
    "PWD",
    "OLDPWD",
    "SHLVL",
    "LINES",
    "COLUMNS",
    "CERTMAN_AGENT",
];

/// One command line sent to an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// the client's terminal session (`getsid`), for the `#` numbers of its last print
    pub sid: i32,
    /// the width a table fits (see [`output_width`]); 0 when none
    pub width: u16,
    /// the client's working directory
    pub cwd: PathBuf,
    /// the client's environment, less [`ENV_IGNORED`]
    pub env: Vec<(OsString, OsString)>,
    /// the command line, argv[0] first
    pub argv: Vec<OsString>,
}

impl Request {
    /// This process's request for `argv`.
    pub fn of_this_process(argv: Vec<OsString>) -> io::Result<Request> {
        // SAFETY: getsid(0) only reads the calling process's session id.
        let sid = unsafe { libc::getsid(0) };
        Ok(Request {
            sid,
            width: output_width().map_or(0, |w| u16::try_from(w).unwrap_or(u16::MAX)),
            cwd: std::env::current_dir()?,
            env: compared_env(std::env::vars_os()),
            argv,
        })
    }

    /// Overwrites the command line and environment (they may hold a secret) and empties them.
    pub fn zeroize(&mut self) {
        for s in self
            .argv
            .drain(..)
            .chain(self.env.drain(..).flat_map(|(k, v)| [k, v]))
        {
            wipe(&mut s.into_vec());
        }
    }

    /// The frame on the wire.
    pub fn encode(&self) -> io::Result<Vec<u8>> {
        let mut body = Vec::with_capacity(256);
        body.extend_from_slice(&self.sid.to_be_bytes());
        body.extend_from_slice(&self.width.to_be_bytes());
        put(&mut body, self.cwd.as_os_str().as_bytes());
        body.extend_from_slice(&(self.env.len() as u32).to_be_bytes());
        for (k, v) in &self.env {
            put(&mut body, k.as_bytes());
            put(&mut body, v.as_bytes());
        }
        body.extend_from_slice(&(self.argv.len() as u32).to_be_bytes());
        for a in &self.argv {
            put(&mut body, a.as_bytes());
        }
        if body.len() > MAX_REQUEST {
            wipe(&mut body);
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the command line and environment are too large for the agent",
            ));
        }
        let mut frame = Vec::with_capacity(8 + body.len());
        frame.extend_from_slice(MAGIC);
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        wipe(&mut body);
        Ok(frame)
    }

    /// Reads one request (at most [`MAX_REQUEST`] bytes of body).
    pub fn read_from(r: &mut impl Read) -> io::Result<Request> {
        let mut head = [0u8; 8];
        r.read_exact(&mut head)?;
        if &head[..4] != MAGIC {
            return Err(bad("not a certman agent request"));
        }
        let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        if len > MAX_REQUEST {
            return Err(bad("request too large"));
        }
        let mut body = vec![0u8; len];
        let read = r.read_exact(&mut body).and_then(|()| Request::parse(&body));
        wipe(&mut body);
        read
    }

    fn parse(body: &[u8]) -> io::Result<Request> {
        let mut c = Cursor { b: body };
        let sid = i32::from_be_bytes(c.take_array()?);
        let width = u16::from_be_bytes(c.take_array()?);
        let cwd = PathBuf::from(c.string()?);
        let n = c.count()?;
        let mut env = Vec::with_capacity(n.min(4096));
        for _ in 0..n {
            env.push((c.string()?, c.string()?));
        }
        let n = c.count()?;
        let mut argv = Vec::with_capacity(n.min(4096));
        for _ in 0..n {
            argv.push(c.string()?);
        }
        if !c.b.is_empty() {
            return Err(bad("trailing bytes after the request"));
        }
        Ok(Request {
            sid,
            width,
            cwd,
            env,
            argv,
        })
    }
}

/// The environment as compared (sorted, [`ENV_IGNORED`] left out).
pub fn compared_env(vars: impl Iterator<Item = (OsString, OsString)>) -> Vec<(OsString, OsString)> {
    let mut env: Vec<_> = vars
        .filter(|(k, _)| !ENV_IGNORED.iter().any(|i| k.as_bytes() == i.as_bytes()))
        .collect();
    env.sort();
    env
}

/// Overwrites `bytes` with zeros (writes the compiler may not drop as dead: the memory is about
/// to be freed) — for buffers that held a command line.
pub fn wipe(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        // SAFETY: a volatile write to a byte this Vec owns.
        unsafe { std::ptr::write_volatile(b, 0) }
    }
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

struct Cursor<'a> {
    b: &'a [u8],
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.b.len() < n {
            return Err(bad("truncated request"));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn take_array<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// A count of items that follow; each takes at least 4 bytes, so a count the rest of the
    /// body cannot hold is refused before anything is reserved for it.
    fn count(&mut self) -> io::Result<usize> {
        let n = u32::from_be_bytes(self.take_array()?) as usize;
        if n > self.b.len() / 4 {
            return Err(bad("item count larger than the request"));
        }
        Ok(n)
    }

    fn string(&mut self) -> io::Result<OsString> {
        let n = u32::from_be_bytes(self.take_array()?) as usize;
        Ok(OsString::from_vec(self.take(n)?.to_vec()))
    }
}

/// One frame of an agent's answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// bytes for the client's stdout
    Stdout(Vec<u8>),
    /// bytes for the client's stderr
    Stderr(Vec<u8>),
    /// the command ran: its exit code
    Exit(u8),
    /// the agent does not run this command: the client runs it itself (why)
    RunLocally(String),
}

impl Answer {
    /// Writes the frame (output longer than [`MAX_FRAME`] as several).
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        let (tag, bytes): (u8, &[u8]) = match self {
            Answer::Stdout(b) => (b'O', b),
            Answer::Stderr(b) => (b'E', b),
            Answer::Exit(c) => (b'X', std::slice::from_ref(c)),
            Answer::RunLocally(r) => (b'L', r.as_bytes()),
        };
        if bytes.is_empty() && matches!(tag, b'O' | b'E') {
            return Ok(());
        }
        for chunk in bytes.chunks(MAX_FRAME) {
            let mut head = [tag, 0, 0, 0, 0];
            head[1..].copy_from_slice(&(chunk.len() as u32).to_be_bytes());
            w.write_all(&head)?;
            w.write_all(chunk)?;
        }
        Ok(())
    }

    /// Reads one frame.
    pub fn read_from(r: &mut impl Read) -> io::Result<Answer> {
        let mut head = [0u8; 5];
        r.read_exact(&mut head)?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_FRAME {
            return Err(bad("answer frame too large"));
        }
        let mut bytes = vec![0u8; len];
        r.read_exact(&mut bytes)?;
        match (head[0], bytes.as_slice()) {
            (b'O', _) => Ok(Answer::Stdout(bytes)),
            (b'E', _) => Ok(Answer::Stderr(bytes)),
            (b'X', [code]) => Ok(Answer::Exit(*code)),
            (b'L', _) => Ok(Answer::RunLocally(
                String::from_utf8_lossy(&bytes).into_owned(),
            )),
            _ => Err(bad("not a certman agent answer")),
        }
    }
}

/// The store directory a command line names: `--store DIR`, `--store=DIR` or `store=DIR`
/// before a `--` or `where`, else `$CERTMAN_STORE`, else the default.
pub fn store_dir(argv: &[OsString]) -> PathBuf {
    let mut named = None;
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        let b = a.as_bytes();
        if b == b"--" || b == b"where" {
            break;
        }
        if b == b"--store" {
            named = it.next().cloned();
        } else if let Some(v) = b
            .strip_prefix(b"--store=")
            .or_else(|| b.strip_prefix(b"store="))
        {
            named = Some(OsString::from_vec(v.to_vec()));
        }
    }
    named
        .or_else(|| std::env::var_os("CERTMAN_STORE").filter(|s| !s.is_empty()))
        .map_or_else(default_store_dir, PathBuf::from)
}

/// The store directory when none is named: `$XDG_DATA_HOME/certman`, else
/// `~/.local/share/certman`.
pub fn default_store_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("certman");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/certman"),
        None => PathBuf::from(".certman"),
    }
}

/// The socket of the agent serving the store at `store` (however it is spelt), in the
/// private directory (made if `make_dir`, as the agent does; the launcher only looks); none
/// without one.
pub fn socket_path(store: &Path, make_dir: bool) -> Option<PathBuf> {
    let store = std::fs::canonicalize(store).ok()?;
    let dir = checked_private_dir(make_dir)?;
    Some(dir.join(format!(
        "agent-{:016x}.sock",
        fnv1a(store.as_os_str().as_bytes())
    )))
}

/// `$XDG_RUNTIME_DIR/certman`, else `$TMPDIR/certman-UID`: made 0700, and used only if it is
/// a real directory of ours that no one else can enter.
pub fn private_dir() -> Option<PathBuf> {
    checked_private_dir(true)
}

fn checked_private_dir(make: bool) -> Option<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("certman"),
        None => std::env::temp_dir().join(format!("certman-{uid}")),
    };
    if make {
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    }
    let m = std::fs::symlink_metadata(&dir).ok()?;
    (m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0).then_some(dir)
}

/// FNV-1a, 64 bits: a short stable name for a path.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The width a table fits: the terminal's when stdout is one, else `$COLUMNS` if set, else
/// none (whole values, for scripts).
pub fn output_width() -> Option<usize> {
    use std::io::IsTerminal;
    let columns = || {
        std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.trim().parse::<usize>().ok())
            .filter(|c| *c >= 20)
    };
    if std::io::stdout().is_terminal() {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one winsize into the struct it is given.
        let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
        if rc == 0 && ws.ws_col >= 20 {
            return Some(usize::from(ws.ws_col));
        }
        return Some(columns().unwrap_or(80));
    }
    columns()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request {
            sid: 42,
            width: 80,
            cwd: "/tmp/x".into(),
            env: vec![("A".into(), "1".into()), ("B".into(), "".into())],
            argv: ["certman", "add", "name=x"].map(OsString::from).to_vec(),
        }
    }

    #[test]
    fn requests_round_trip_and_truncations_are_refused() {
        let frame = request().encode().unwrap();
        assert_eq!(
            Request::read_from(&mut frame.as_slice()).unwrap(),
            request()
        );
        for cut in [0, 3, 8, 20, frame.len() - 1] {
            assert!(
                Request::read_from(&mut &frame[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = frame.clone();
        longer.push(0);
        let n = (longer.len() - 8) as u32;
        longer[4..8].copy_from_slice(&n.to_be_bytes());
        assert!(Request::read_from(&mut longer.as_slice()).is_err());
    }

    #[test]
    fn hostile_sizes_are_refused_before_allocating() {
        let mut frame = b"CMA1".to_vec();
        frame.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(Request::read_from(&mut frame.as_slice()).is_err());
        // a body claiming 2^32-1 environment entries
        let mut body = Vec::new();
        body.extend_from_slice(&0i32.to_be_bytes());
        body.extend_from_slice(&0u16.to_be_bytes());
        put(&mut body, b"/");
        body.extend_from_slice(&u32::MAX.to_be_bytes());
        let mut frame = b"CMA1".to_vec();
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        let e = Request::read_from(&mut frame.as_slice()).unwrap_err();
        assert!(e.to_string().contains("count"), "{e}");
    }

    #[test]
    fn answers_round_trip() {
        let mut wire = Vec::new();
        for a in [
            Answer::Stdout(b"out".to_vec()),
            Answer::Stderr(b"err".to_vec()),
            Answer::RunLocally("why".into()),
            Answer::Exit(3),
        ] {
            a.write_to(&mut wire).unwrap();
        }
        let mut r = wire.as_slice();
        assert_eq!(
            Answer::read_from(&mut r).unwrap(),
            Answer::Stdout(b"out".to_vec())
        );
        assert_eq!(
            Answer::read_from(&mut r).unwrap(),
            Answer::Stderr(b"err".to_vec())
        );
        assert_eq!(
            Answer::read_from(&mut r).unwrap(),
            Answer::RunLocally("why".into())
        );
        assert_eq!(Answer::read_from(&mut r).unwrap(), Answer::Exit(3));
        assert!(Answer::read_from(&mut r).is_err());
    }

    #[test]
    fn the_store_is_found_as_clap_would() {
        let argv = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            store_dir(&argv(&["c", "--store", "/a", "print"])),
            Path::new("/a")
        );
        assert_eq!(
            store_dir(&argv(&["c", "print", "--store=/b"])),
            Path::new("/b")
        );
        assert_eq!(
            store_dir(&argv(&["c", "store=/c", "print"])),
            Path::new("/c")
        );
        // the words of a where expression are not options
        assert_ne!(
            store_dir(&argv(&["c", "print", "where", "store=/d"])),
            Path::new("/d")
        );
    }

    #[test]
    fn ignored_variables_are_left_out_and_the_rest_sorted() {
        let env = compared_env(
            [
                ("PWD", "/x"),
                ("B", "2"),
                ("A", "1"),
                ("CERTMAN_AGENT", "require"),
            ]
            .into_iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        );
        assert_eq!(
            env,
            vec![("A".into(), "1".into()), ("B".into(), "2".into())]
        );
    }
}

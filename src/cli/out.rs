//! What commands write on stdout. A write that fails does not panic (as `println!` does): the
//! first error is kept, later writes are skipped, and `main` decides once the command is done
//! — a reader that went away (`certman print | head -1`, EPIPE) is a quiet exit 0, any other
//! error (a full disk) is the command's error. This is coreutils' `close_stdout`, in Rust.
//!
//! SIGPIPE stays ignored (Rust's start-up default) rather than restored: `serve` writes to
//! sockets with write(2), and a client that hangs up must not kill the daemon.

use std::io::{self, Write};
use std::sync::Mutex;

/// The first error a write to stdout met, if any.
static FAILED: Mutex<Option<io::Error>> = Mutex::new(None);

/// Writes `bytes` to stdout, unless an earlier write failed.
pub(crate) fn bytes(bytes: &[u8]) {
    let mut failed = FAILED.lock().unwrap_or_else(|p| p.into_inner());
    if failed.is_some() {
        return;
    }
    if let Err(e) = io::stdout().lock().write_all(bytes) {
        *failed = Some(e);
    }
}

/// Writes `text` to stdout, unless an earlier write failed.
pub(crate) fn text(text: &str) {
    bytes(text.as_bytes());
}

/// Writes formatted text and a newline to stdout (see [`outln!`]).
pub(crate) fn line(args: std::fmt::Arguments<'_>) {
    let mut s = args.to_string();
    s.push('\n');
    text(&s);
}

/// Flushes stdout; returns the first error any write met (this one included).
pub(crate) fn finish() -> io::Result<()> {
    let mut failed = FAILED.lock().unwrap_or_else(|p| p.into_inner());
    if failed.is_none() {
        if let Err(e) = io::stdout().lock().flush() {
            *failed = Some(e);
        }
    }
    match failed.take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `println!` on stdout that does not panic when stdout fails (see the module doc).
macro_rules! outln {
    () => {
        $crate::cli::out::text("\n")
    };
    ($($arg:tt)*) => {
        $crate::cli::out::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// Writes `text` and a newline to stderr, ignoring failure (a closed stderr cannot be told).
pub(crate) fn err_line(text: &str) {
    let mut s = String::with_capacity(text.len() + 1);
    s.push_str(text);
    s.push('\n');
    let _ = io::stderr().lock().write_all(s.as_bytes());
}

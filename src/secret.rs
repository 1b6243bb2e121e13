//! Secrets: PINs, passphrases and key bytes, held in zeroizing buffers from the moment they are
//! read, with a redacted `Debug` and no `Display`; and the `*-source` syntax that says where a
//! secret comes from (`file:PATH`, `env:VAR`, `fd:N`, `prompt`).

use std::fmt;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::error::SecretError;

/// A secret text (PIN or passphrase). `Debug` prints `[redacted]`; there is no `Display`.
#[derive(Clone)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wraps a string that is already in memory.
    pub fn new(s: String) -> Self {
        SecretString(Zeroizing::new(s))
    }

    /// The secret itself. Callers must not log or store it.
    pub fn secret_str(&self) -> &str {
        &self.0
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A PIN for a token or card.
pub type Pin = SecretString;
/// A passphrase protecting an exported or imported key.
pub type Passphrase = SecretString;

/// Secret bytes (private key material). `Debug` prints only the length.
#[derive(Clone)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of the bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(bytes))
    }

    /// The secret bytes. Callers must not log or store them in clear.
    pub fn secret_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<Zeroizing<Vec<u8>>> for SecretBytes {
    fn from(z: Zeroizing<Vec<u8>>) -> Self {
        SecretBytes(z)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([redacted; {} bytes])", self.0.len())
    }
}

/// Where a secret comes from: the value of an `X-source=` option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// `file:PATH` — the file's content, one trailing newline removed.
    File(PathBuf),
    /// `env:VAR` — an environment variable.
    Env(String),
    /// `fd:N` — read an inherited file descriptor to its end.
    Fd(u32),
    /// `prompt` — ask on the terminal without echo.
    Prompt,
}

impl std::str::FromStr for SecretSource {
    type Err = SecretError;

    fn from_str(s: &str) -> Result<Self, SecretError> {
        let invalid = || SecretError::InvalidSource(s.to_owned());
        if s == "prompt" {
            return Ok(SecretSource::Prompt);
        }
        let (kind, rest) = s.split_once(':').ok_or_else(invalid)?;
        if rest.is_empty() {
            return Err(invalid());
        }
        match kind {
            "file" => Ok(SecretSource::File(PathBuf::from(rest))),
            "env" => Ok(SecretSource::Env(rest.to_owned())),
            "fd" => rest.parse().map(SecretSource::Fd).map_err(|_| invalid()),
            _ => Err(invalid()),
        }
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::File(p) => write!(f, "file:{}", p.display()),
            SecretSource::Env(v) => write!(f, "env:{v}"),
            SecretSource::Fd(n) => write!(f, "fd:{n}"),
            SecretSource::Prompt => f.write_str("prompt"),
        }
    }
}

impl SecretSource {
    /// Reads the secret. `what` names it in the prompt and in errors ("export passphrase").
    /// An empty result is an error: a failed read never silently becomes "".
    pub fn read(&self, what: &str) -> Result<SecretString, SecretError> {
        if held_back() {
            return Err(SecretError::LeftToClient);
        }
        let unreadable = |reason: String| SecretError::Unreadable {
            source_desc: self.to_string(),
            reason,
        };
        let value = match self {
            SecretSource::File(path) => {
                let f = std::fs::File::open(path).map_err(|e| unreadable(e.to_string()))?;
                // a device or a FIFO may never end (file:/dev/zero): only plain files
                let meta = f.metadata().map_err(|e| unreadable(e.to_string()))?;
                if !meta.is_file() {
                    return Err(unreadable(
                        "not a regular file (for a pipe, use fd:N)".into(),
                    ));
                }
                strip_one_newline(read_bounded(f).map_err(unreadable)?)
            }
            SecretSource::Env(var) => {
                let v = Zeroizing::new(std::env::var(var).map_err(|e| unreadable(e.to_string()))?);
                if v.len() > MAX_SECRET_BYTES {
                    return Err(unreadable(format!("longer than {MAX_SECRET_BYTES} bytes")));
                }
                v
            }
            SecretSource::Fd(n) => {
                let f = std::fs::File::open(format!("/dev/fd/{n}"))
                    .map_err(|e| unreadable(e.to_string()))?;
                strip_one_newline(read_bounded(f).map_err(unreadable)?)
            }
            SecretSource::Prompt => {
                if !std::io::stdin().is_terminal() {
                    return Err(unreadable("stdin is not a terminal".into()));
                }
                let v =
                    prompt_password(format!("{what}: ")).map_err(|e| unreadable(e.to_string()))?;
                Zeroizing::new(v)
            }
        };
        if value.is_empty() {
            return Err(SecretError::Empty(self.to_string()));
        }
        Ok(SecretString(value))
    }
}

/// 0: secrets are read; 1: held back (`certman agent` runs a client's command); 2: held back,
/// and one was asked for.
static HELD_BACK: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// While `on`, no secret is read from a source or asked at a prompt: `certman agent` runs a
/// client's command, and the client's terminal, environment, descriptors and working
/// directory are not the agent's. A command that needs one fails with
/// [`SecretError::LeftToClient`], and the client runs it itself.
pub fn hold_back_secrets(on: bool) {
    HELD_BACK.store(u8::from(on), std::sync::atomic::Ordering::SeqCst);
}

/// Whether a secret was asked for since [`hold_back_secrets`] was turned on.
pub fn secret_was_held_back() -> bool {
    HELD_BACK.load(std::sync::atomic::Ordering::SeqCst) == 2
}

fn held_back() -> bool {
    use std::sync::atomic::Ordering;
    HELD_BACK
        .compare_exchange(1, 2, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
        || HELD_BACK.load(Ordering::SeqCst) == 2
}

/// What prompts run inside: set once by the CLI, so that a progress spinner on the terminal
/// stands aside while a prompt waits (a token's PIN asked in the middle of a key generation).
static PROMPT_AROUND: std::sync::OnceLock<fn(&mut dyn FnMut())> = std::sync::OnceLock::new();

/// Makes every prompt run inside `around` (which must call the function it is given once).
/// The first call wins: there is one terminal per process.
pub fn set_prompt_around(around: fn(&mut dyn FnMut())) {
    let _ = PROMPT_AROUND.set(around);
}

/// Asks on the terminal without echo, inside the prompt wrapper if one is set.
fn prompt_password(text: String) -> std::io::Result<String> {
    let mut answer = None;
    let mut ask = || answer = Some(rpassword::prompt_password(&text));
    match PROMPT_AROUND.get() {
        Some(around) => around(&mut ask),
        None => ask(),
    }
    answer.unwrap_or_else(|| Err(std::io::Error::other("the prompt did not run")))
}

/// The longest secret read from a source: passphrases and PINs are short, and a source that
/// never ends (`/dev/zero`, `yes |`) must not be read to its end.
pub const MAX_SECRET_BYTES: usize = 4096;

/// Reads at most [`MAX_SECRET_BYTES`] (one more tells that it is longer), as text.
fn read_bounded(f: std::fs::File) -> Result<Zeroizing<String>, String> {
    let mut bytes = Zeroizing::new(Vec::new());
    f.take(MAX_SECRET_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() > MAX_SECRET_BYTES {
        return Err(format!("longer than {MAX_SECRET_BYTES} bytes"));
    }
    match std::str::from_utf8(&bytes) {
        Ok(text) => Ok(Zeroizing::new(text.to_owned())),
        Err(_) => Err("not text (UTF-8)".into()),
    }
}

fn strip_one_newline(mut s: Zeroizing<String>) -> Zeroizing<String> {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

/// Resolves a secret option given as `X=value` and/or `X-source=…`.
///
/// With neither: prompts when stdin is a terminal and `required`, fails when it is not a
/// terminal and `required`, and gives `None` when not required.
pub fn resolve_secret(
    value: Option<SecretString>,
    source: Option<&SecretSource>,
    what: &str,
    option: &str,
    required: bool,
) -> Result<Option<SecretString>, SecretError> {
    resolve(value, source, what, option, required, false)
}

/// [`resolve_secret`] for a secret being made (a passphrase that will encrypt a key file or
/// an export, a CA's export passphrase), not one that opens something: typed at a prompt,
/// it is asked twice and a mismatch is refused (RouterOS v2.8: "You must enter it twice to
/// be sure you have not made any typing errors"). From `X=`, a file, a variable or a
/// descriptor it is read once.
pub fn resolve_new_secret(
    value: Option<SecretString>,
    source: Option<&SecretSource>,
    what: &str,
    option: &str,
    required: bool,
) -> Result<Option<SecretString>, SecretError> {
    resolve(value, source, what, option, required, true)
}

fn resolve(
    value: Option<SecretString>,
    source: Option<&SecretSource>,
    what: &str,
    option: &str,
    required: bool,
    new: bool,
) -> Result<Option<SecretString>, SecretError> {
    let prompt = |src: &SecretSource| match src {
        _ if held_back() => Err(SecretError::LeftToClient),
        SecretSource::Prompt if new => read_new_at_prompt(what).map(Some),
        src => src.read(what).map(Some),
    };
    match (value, source) {
        (Some(v), _) if !v.is_empty() => Ok(Some(v)),
        (Some(_), None) => Err(SecretError::Empty(format!("{option}="))),
        (_, Some(src)) => prompt(src),
        (None, None) if required => {
            if held_back() {
                Err(SecretError::LeftToClient)
            } else if std::io::stdin().is_terminal() {
                prompt(&SecretSource::Prompt)
            } else {
                Err(SecretError::NoTerminal(what.to_owned(), option.to_owned()))
            }
        }
        (None, None) => Ok(None),
    }
}

/// A new secret from the terminal, typed twice.
fn read_new_at_prompt(what: &str) -> Result<SecretString, SecretError> {
    if !std::io::stdin().is_terminal() {
        return Err(SecretError::Unreadable {
            source_desc: SecretSource::Prompt.to_string(),
            reason: "stdin is not a terminal".into(),
        });
    }
    confirm_new(what, prompt_password)
}

/// Asks for a new secret twice through `ask` (given the prompt text) and gives it when both
/// answers are the same and not empty. One try: a mismatch is an error, not a loop.
pub fn confirm_new(
    what: &str,
    mut ask: impl FnMut(String) -> std::io::Result<String>,
) -> Result<SecretString, SecretError> {
    let unreadable = |e: std::io::Error| SecretError::Unreadable {
        source_desc: SecretSource::Prompt.to_string(),
        reason: e.to_string(),
    };
    let first = Zeroizing::new(ask(format!("{what}: ")).map_err(unreadable)?);
    if first.is_empty() {
        return Err(SecretError::Empty(SecretSource::Prompt.to_string()));
    }
    let second = Zeroizing::new(ask(format!("{what} (again): ")).map_err(unreadable)?);
    if *first != *second {
        return Err(SecretError::Mismatch(what.to_owned()));
    }
    Ok(SecretString(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = SecretString::new("hunter2".into());
        assert_eq!(format!("{s:?}"), "[redacted]");
        let b = SecretBytes::new(vec![1, 2, 3]);
        assert!(!format!("{b:?}").contains("1, 2"));
    }

    #[test]
    fn sources_parse_and_print() {
        for s in ["file:/etc/x.pin", "env:PIN", "fd:3", "prompt"] {
            let src: SecretSource = s.parse().unwrap();
            assert_eq!(src.to_string(), s);
        }
        for bad in ["", "file:", "pin:1234", "fd:x", "1234"] {
            assert!(bad.parse::<SecretSource>().is_err(), "{bad}");
        }
    }

    #[test]
    fn file_source_strips_one_newline_and_rejects_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pin");
        std::fs::write(&p, "1234\n\n").unwrap();
        let src = SecretSource::File(p.clone());
        assert_eq!(src.read("PIN").unwrap().secret_str(), "1234\n");
        std::fs::write(&p, "\n").unwrap();
        assert!(matches!(src.read("PIN"), Err(SecretError::Empty(_))));
        let missing = SecretSource::File(dir.path().join("nope"));
        assert!(matches!(
            missing.read("PIN"),
            Err(SecretError::Unreadable { .. })
        ));
    }

    /// Answers prompts from a list, recording the prompts.
    fn answers(
        list: &[&str],
    ) -> (
        impl FnMut(String) -> std::io::Result<String>,
        std::rc::Rc<std::cell::RefCell<Vec<String>>>,
    ) {
        let asked = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let log = asked.clone();
        let mut it: Vec<String> = list.iter().rev().map(|s| (*s).to_owned()).collect();
        let ask = move |prompt: String| {
            log.borrow_mut().push(prompt);
            it.pop().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no more input")
            })
        };
        (ask, asked)
    }

    #[test]
    fn a_new_secret_is_asked_twice_and_must_match() {
        let (ask, asked) = answers(&["s3cret", "s3cret"]);
        let s = confirm_new("export passphrase", ask).unwrap();
        assert_eq!(s.secret_str(), "s3cret");
        assert_eq!(
            *asked.borrow(),
            ["export passphrase: ", "export passphrase (again): "]
        );
        // a typing error is refused, once: no third prompt
        let (ask, asked) = answers(&["s3cret", "s3crte", "s3cret"]);
        let e = confirm_new("key passphrase", ask).unwrap_err();
        assert!(matches!(e, SecretError::Mismatch(ref w) if w == "key passphrase"));
        assert_eq!(
            e.to_string(),
            "the two key passphrases typed differ; nothing was done"
        );
        assert_eq!(asked.borrow().len(), 2);
        // an empty first answer is refused before the second is asked
        let (ask, asked) = answers(&["", ""]);
        assert!(matches!(confirm_new("x", ask), Err(SecretError::Empty(_))));
        assert_eq!(asked.borrow().len(), 1);
        // end of input on the second prompt
        let (ask, _) = answers(&["only-once"]);
        assert!(matches!(
            confirm_new("x", ask),
            Err(SecretError::Unreadable { .. })
        ));
    }

    #[test]
    fn a_new_secret_from_a_value_or_a_source_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pass");
        std::fs::write(&p, "from-file\n").unwrap();
        let src = SecretSource::File(p);
        let s = resolve_new_secret(None, Some(&src), "key passphrase", "key-passphrase", true)
            .unwrap()
            .unwrap();
        assert_eq!(s.secret_str(), "from-file");
        let v = SecretString::new("given".into());
        let s = resolve_new_secret(Some(v), None, "key passphrase", "key-passphrase", true)
            .unwrap()
            .unwrap();
        assert_eq!(s.secret_str(), "given");
        assert!(resolve_new_secret(None, None, "x", "x", false)
            .unwrap()
            .is_none());
    }

    #[test]
    fn env_source() {
        std::env::set_var("CERTMAN_TEST_SECRET_ENV", "s3cret");
        let src: SecretSource = "env:CERTMAN_TEST_SECRET_ENV".parse().unwrap();
        assert_eq!(src.read("x").unwrap().secret_str(), "s3cret");
        let src: SecretSource = "env:CERTMAN_TEST_SECRET_UNSET_VAR".parse().unwrap();
        assert!(src.read("x").is_err());
    }
}

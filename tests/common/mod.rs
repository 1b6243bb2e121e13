//! Helpers for the end-to-end tests: every test gets its own [`Env`] (a temporary store, a
//! machine-id file and a working directory) and runs the real `certman` binary in it. OpenSSL
//! (the `openssl` command) is the independent verifier of everything certman writes.

#![allow(dead_code)] // each test crate uses a different part of this module

pub mod daemon;
pub mod piv;
pub mod scep;
pub mod softhsm;

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;
use tempfile::TempDir;

/// The binary under test.
pub const CERTMAN: &str = env!("CARGO_BIN_EXE_certman");

/// Exit codes of the CLI contract.
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_NOT_FOUND: i32 = 3;
pub const EXIT_REFUSED: i32 = 4;
pub const EXIT_TOKEN: i32 = 5;

/// One test's world: `store/` (the certman store), `work/` (the current directory of every
/// command, where exports land) and `machine-id`.
pub struct Env {
    root: TempDir,
    /// the store directory (passed as `CERTMAN_STORE`)
    pub store: PathBuf,
    /// the working directory of every command
    pub work: PathBuf,
    /// the machine-id file (passed as `CERTMAN_MACHINE_ID_FILE`)
    pub machine_id: PathBuf,
    /// extra environment of every command (see [`Env::with_env`])
    extra_env: Vec<(OsString, OsString)>,
    /// options put before the arguments of every command (see [`Env::with_global_args`])
    global_args: Vec<OsString>,
    /// the PostgreSQL database holding the store, when the tests run on that backend
    pg: Option<PgDatabase>,
}

/// The store backend of the CLI tests: `CERTMAN_TEST_BACKEND=postgres` puts each [`Env`]'s store
/// in a fresh database of the server at `$CERTMAN_TEST_POSTGRES_URL` (scripts/test.sh runs the
/// CLI tests that make sense on both backends that way too); anything else, SQLite.
pub fn on_postgres() -> bool {
    std::env::var("CERTMAN_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// A database made for one test, dropped with it.
struct PgDatabase {
    /// the server's URL (its maintenance database)
    admin: String,
    name: String,
}

impl PgDatabase {
    fn create() -> (PgDatabase, String) {
        let admin = std::env::var("CERTMAN_TEST_POSTGRES_URL").expect(
            "CERTMAN_TEST_BACKEND=postgres needs CERTMAN_TEST_POSTGRES_URL \
             (scripts/postgres.sh start DIR prints it)",
        );
        let name = format!("certman_it_{}", random_hex(8));
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let url = with_database(&admin, &name);
        (PgDatabase { admin, name }, url)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// Runs `sql` with psql on the database at `url`; its rows, one per line, fields split by `|`.
pub fn psql_rows(url: &str, sql: &str) -> String {
    let out = Command::new("/usr/lib/postgresql/15/bin/psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn psql(url: &str, sql: &str) {
    let out = Command::new("/usr/lib/postgresql/15/bin/psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Everything the store holds, as bytes: its files (SQLite), or a dump of its database.
pub fn store_contents(env: &Env) -> Vec<Vec<u8>> {
    if env.pg.is_some() {
        let out = Command::new("/usr/lib/postgresql/15/bin/pg_dump")
            .arg(&env.store)
            .output()
            .expect("run pg_dump");
        assert!(
            out.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return vec![out.stdout];
    }
    fs::read_dir(&env.store)
        .expect("the store directory")
        .map(|e| fs::read(e.expect("dir entry").path()).expect("a store file"))
        .collect()
}

/// `url` (`postgresql://AUTHORITY/DB?QUERY`) naming database `db` instead.
pub fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgresql:// URL");
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or_default();
    match query {
        Some(q) => format!("{scheme}://{authority}/{db}?{q}"),
        None => format!("{scheme}://{authority}/{db}"),
    }
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    /// A fresh store, machine id and working directory.
    pub fn new() -> Env {
        Env::on_backend(on_postgres())
    }

    /// A fresh env whose store is a fresh PostgreSQL database whatever the backend of this
    /// run (the tests of several `serve` nodes on one store); `None`, with the reason printed,
    /// when there is no PostgreSQL server (`$CERTMAN_TEST_POSTGRES_URL`) — which fails the
    /// test in CI (`CERTMAN_REQUIRE_TOKENS=1`).
    pub fn on_postgres_server() -> Option<Env> {
        if std::env::var_os("CERTMAN_TEST_POSTGRES_URL").is_none() {
            assert!(
                !softhsm::tokens_required(),
                "no PostgreSQL server: CERTMAN_TEST_POSTGRES_URL is unset \
                 (scripts/postgres.sh start DIR prints it)"
            );
            eprintln!("skipped: no PostgreSQL server (CERTMAN_TEST_POSTGRES_URL is unset)");
            return None;
        }
        Some(Env::on_backend(true))
    }

    fn on_backend(postgres: bool) -> Env {
        require_openssl();
        let root = tempfile::Builder::new()
            .prefix("certman-it-")
            .tempdir()
            .expect("temp dir");
        let store = root.path().join("store");
        let work = root.path().join("work");
        fs::create_dir(&work).expect("work dir");
        let machine_id = root.path().join("machine-id");
        fs::write(&machine_id, format!("{}\n", random_hex(16))).expect("machine-id");
        let (pg, store) = if postgres {
            let (db, url) = PgDatabase::create();
            (Some(db), PathBuf::from(url))
        } else {
            (None, store)
        };
        Env {
            root,
            store,
            work,
            machine_id,
            extra_env: Vec::new(),
            global_args: Vec::new(),
            pg,
        }
    }

    /// Sets `key=value` in the environment of every command of this env (applied last, so it
    /// also overrides what [`Env::command`] sets or removes).
    pub fn with_env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Env {
        self.extra_env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Puts `args` (global options such as `--tokens DIR`) before the arguments of every command.
    pub fn with_global_args<S: AsRef<OsStr>>(mut self, args: &[S]) -> Env {
        self.global_args
            .extend(args.iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// The temporary root (for extra files that must not land in `work/`).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A `certman` command with this env's store, machine id and working directory.
    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(CERTMAN);
        c.args(&self.global_args)
            .args(args)
            .current_dir(&self.work)
            .env("CERTMAN_STORE", &self.store)
            .env("CERTMAN_MACHINE_ID_FILE", &self.machine_id)
            .env_remove("CERTMAN_TOKENS")
            .env("TZ", "UTC")
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        c
    }

    /// Runs certman with `args`.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.command(args).output().expect("run certman")
    }

    /// Runs certman and requires success; returns stdout.
    pub fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let out = self.run(args);
        assert_success(&out, &describe(args));
        stdout(&out)
    }

    /// Runs certman, requires exit `code` and the one-line error format; returns stderr.
    pub fn fail<S: AsRef<OsStr>>(&self, args: &[S], code: i32) -> String {
        let out = self.run(args);
        assert_error(&out, code, &describe(args))
    }

    /// `print --json`, parsed.
    pub fn json(&self) -> Vec<Value> {
        let text = if self.pg.is_some() {
            // an empty database reads as an empty store
            self.ok(&["print", "--json", "--create"])
        } else if !self.store.join("certman.db").exists() {
            return Vec::new(); // no store yet: nothing in it (`print` would refuse it)
        } else {
            self.ok(&["print", "--json"])
        };
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Array(v)) => v,
            other => panic!("print --json is not a JSON array: {other:?}\n{text}"),
        }
    }

    /// The `print --json` object of `name`.
    pub fn entry(&self, name: &str) -> Value {
        self.json()
            .into_iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no entry {name:?} in print --json"))
    }

    /// The names in `print --json`, in order.
    pub fn names(&self) -> Vec<String> {
        self.json()
            .iter()
            .map(|e| e["name"].as_str().expect("name is a string").to_owned())
            .collect()
    }

    /// What must not change when a command is refused: `print --json` byte for byte, except
    /// the `expires-after` countdown (it ticks every second), and the files in `work/`. A store
    /// not there yet reads as an empty one (it is made: `add` makes it before it validates).
    pub fn snapshot(&self) -> String {
        let json: String = self
            .ok(&["print", "--json", "--create"])
            .lines()
            .filter(|l| !l.trim_start().starts_with("\"expires-after\""))
            .map(|l| format!("{l}\n"))
            .collect();
        format!("{json}--- files: {:?}", self.work_files())
    }

    /// File names in `work/`.
    pub fn work_files(&self) -> BTreeSet<String> {
        fs::read_dir(&self.work)
            .expect("read work dir")
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }

    /// A path in `work/`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }

    /// `add` a template and self-sign it as a CA (key-cert-sign,crl-sign) with extra props.
    pub fn make_ca(&self, name: &str, props: &[&str]) {
        let tpl = format!("{name}-tpl");
        let mut add = vec![
            "add".to_owned(),
            format!("name={tpl}"),
            format!("common-name={name}"),
            "key-usage=key-cert-sign,crl-sign".to_owned(),
        ];
        add.extend(props.iter().map(|s| s.to_string()));
        self.ok(&add);
        self.ok(&["sign", &tpl, &format!("name={name}")]);
    }

    /// `add` a template and issue it from `ca` (under the same name) with extra props.
    pub fn issue(&self, name: &str, ca: &str, props: &[&str]) {
        let mut add = vec![
            "add".to_owned(),
            format!("name={name}"),
            format!("common-name={name}"),
        ];
        add.extend(props.iter().map(|s| s.to_string()));
        self.ok(&add);
        self.ok(&["sign", name, &format!("ca={ca}")]);
    }

    /// `export-certificate NAME` (certificate only); returns the `.crt` path.
    pub fn export_cert(&self, name: &str) -> PathBuf {
        self.ok(&["export-certificate", name]);
        let p = self.path(&format!("cert_export_{name}.crt"));
        assert!(p.is_file(), "{} was not written", p.display());
        p
    }

    /// `export-certificate NAME export-passphrase=PASS`; returns (`.crt`, `.key`).
    pub fn export_with_key(&self, name: &str, pass: &str) -> (PathBuf, PathBuf) {
        self.ok(&[
            "export-certificate",
            name,
            &format!("export-passphrase={pass}"),
        ]);
        let crt = self.path(&format!("cert_export_{name}.crt"));
        let key = self.path(&format!("cert_export_{name}.key"));
        assert!(
            crt.is_file() && key.is_file(),
            "export of {name} incomplete"
        );
        (crt, key)
    }
}

fn describe<S: AsRef<OsStr>>(args: &[S]) -> String {
    let v: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    format!("certman {}", v.join(" "))
}

/// stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Requires exit 0.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
}

/// Requires exit `code`, nothing on stdout, and on stderr exactly one error line
/// `certman…: error: <message>` (message not empty, not cut off after a colon), optionally
/// followed by one `  hint: …` line. Returns stderr.
pub fn assert_error(out: &Output, code: i32, what: &str) -> String {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit {code}\nstdout:\n{}\nstderr:\n{err}",
        stdout(out)
    );
    assert!(
        out.stdout.is_empty(),
        "{what}: a failed command printed on stdout: {}",
        stdout(out)
    );
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        !lines.is_empty() && lines.len() <= 2,
        "{what}: expected one error line (+ optional hint), got:\n{err}"
    );
    let (prefix, message) = lines[0]
        .split_once(": error: ")
        .unwrap_or_else(|| panic!("{what}: not a `certman…: error: …` line: {:?}", lines[0]));
    assert!(
        prefix.starts_with("certman"),
        "{what}: error line does not start with certman: {:?}",
        lines[0]
    );
    let message = message.trim();
    // A message ending in a lower-case word and a colon announces something that did not
    // follow (clap puts it on the next line); `… or URI:` is fine.
    let cut_off = message.ends_with(':')
        && message
            .chars()
            .rev()
            .nth(1)
            .is_some_and(|c| c.is_ascii_lowercase());
    assert!(
        !message.is_empty() && !cut_off,
        "{what}: error message is empty or cut off: {:?}",
        lines[0]
    );
    if let Some(h) = lines.get(1) {
        assert!(
            h.starts_with("  hint: ") && h.len() > "  hint: ".len(),
            "{what}: second stderr line is not a hint: {h:?}"
        );
    }
    err
}

/// The `openssl` binary exists, or the test fails saying so.
pub fn require_openssl() {
    static FOUND: OnceLock<Result<String, String>> = OnceLock::new();
    let found = FOUND.get_or_init(|| match Command::new("openssl").arg("version").output() {
        Ok(o) if o.status.success() => Ok(stdout(&o)),
        Ok(o) => Err(format!("`openssl version` failed: {}", stderr(&o))),
        Err(e) => Err(format!("cannot run `openssl`: {e}")),
    });
    if let Err(e) = found {
        panic!(
            "these tests need the OpenSSL command line tool on PATH as the independent verifier \
             ({e}); install it (e.g. `apt-get install openssl`) and run again"
        );
    }
}

/// Runs `openssl args…` in `cwd`.
pub fn openssl_output<S: AsRef<OsStr>>(args: &[S], cwd: &Path) -> Output {
    require_openssl();
    Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl")
}

/// Runs `openssl args…` in `cwd`, requires success, returns stdout.
pub fn openssl<S: AsRef<OsStr>>(args: &[S], cwd: &Path) -> String {
    let out = openssl_output(args, cwd);
    let v: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    assert_success(&out, &format!("openssl {}", v.join(" ")));
    stdout(&out)
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

// ---- CRLs, checked by OpenSSL

/// `crl export CA file-name=-`: the CA's current CRL, DER.
pub fn crl_der(env: &Env, ca: &str) -> Vec<u8> {
    let out = env.run(&["crl", "export", ca, "file-name=-"]);
    assert_success(&out, "crl export");
    out.stdout
}

/// `crl export CA` to `<CA>-<tag>.crl` (DER); returns the path.
pub fn export_crl(env: &Env, ca: &str, tag: &str) -> PathBuf {
    let file = format!("{ca}-{tag}.crl");
    env.ok(&["crl", "export", ca, &format!("file-name={file}")]);
    env.path(&file)
}

/// `openssl crl -text` of a DER CRL.
pub fn crl_text(crl: &Path) -> String {
    openssl(
        &["crl", "-inform", "DER", "-in", p(crl), "-noout", "-text"],
        Path::new("/"),
    )
}

/// The CRL's number, as OpenSSL reads it.
pub fn crl_number(crl: &Path) -> u64 {
    let out = openssl(
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            p(crl),
            "-noout",
            "-crlnumber",
        ],
        Path::new("/"),
    );
    let hex = out.trim().trim_start_matches("crlNumber=0x");
    u64::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("crl number in {out:?}"))
}

/// `openssl crl -verify` against the CA certificate passes.
pub fn assert_crl_signed_by(crl: &Path, ca_crt: &Path) {
    let out = openssl_output(
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            p(crl),
            "-noout",
            "-CAfile",
            p(ca_crt),
            "-verify",
        ],
        Path::new("/"),
    );
    assert!(
        out.status.success() && stderr(&out).contains("verify OK"),
        "openssl crl -verify: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// A PEM copy of a DER CRL (openssl verify -CRLfile wants PEM).
pub fn crl_pem(crl: &Path) -> PathBuf {
    let out = crl.with_extension("pem");
    openssl(
        &["crl", "-inform", "DER", "-in", p(crl), "-out", p(&out)],
        Path::new("/"),
    );
    out
}

/// `openssl verify -crl_check_all -CAfile root [-untrusted …] [-CRLfile …] crt`.
pub fn openssl_verify_crl(
    root: &Path,
    untrusted: &[&Path],
    crls: &[&Path],
    crt: &Path,
) -> (bool, String) {
    let pems: Vec<PathBuf> = crls.iter().map(|c| crl_pem(c)).collect();
    let mut args = vec!["verify", "-crl_check_all", "-CAfile", p(root)];
    for u in untrusted {
        args.push("-untrusted");
        args.push(p(u));
    }
    for c in &pems {
        args.push("-CRLfile");
        args.push(p(c));
    }
    args.push(p(crt));
    let out = openssl_output(&args, Path::new("/"));
    (
        out.status.success(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

/// `openssl x509 -text` of a PEM certificate.
pub fn cert_text(crt: &Path) -> String {
    openssl(&["x509", "-in", p(crt), "-noout", "-text"], Path::new("/"))
}

/// `openssl verify -CAfile ca crt` succeeds and says OK.
pub fn assert_verifies(ca: &Path, crt: &Path) {
    assert_verifies_chain(ca, &[], crt);
}

/// `openssl verify -CAfile root [-untrusted intermediates…] crt` succeeds and says OK.
pub fn assert_verifies_chain(root: &Path, untrusted: &[&Path], crt: &Path) {
    let mut args = vec!["verify", "-CAfile", p(root)];
    for u in untrusted {
        args.push("-untrusted");
        args.push(p(u));
    }
    args.push(p(crt));
    let out = openssl(&args, Path::new("/"));
    assert_eq!(
        out.trim(),
        format!("{}: OK", crt.display()),
        "openssl verify"
    );
}

/// The value lines of an extension in `x509 -text`: the header line (`X509v3 Key Usage:
/// critical`) and the following value line(s) up to the next header, trimmed.
pub fn extension(text: &str, name: &str) -> Option<(String, Vec<String>)> {
    let mut lines = text.lines();
    let header = lines.find(|l| l.trim_start().starts_with(&format!("{name}:")))?;
    let indent = header.len() - header.trim_start().len();
    let mut values = Vec::new();
    for l in lines {
        let ind = l.len() - l.trim_start().len();
        if ind <= indent {
            break;
        }
        values.push(l.trim().to_owned());
    }
    Some((header.trim().to_owned(), values))
}

/// The first value line of an extension (panics when absent).
pub fn extension_value(text: &str, name: &str) -> String {
    let (_, v) = extension(text, name).unwrap_or_else(|| panic!("no {name} in:\n{text}"));
    v.join(" ")
}

/// Whether the extension is marked critical.
pub fn extension_critical(text: &str, name: &str) -> bool {
    let (h, _) = extension(text, name).unwrap_or_else(|| panic!("no {name} in:\n{text}"));
    h.ends_with("critical")
}

/// The certificate's signature algorithm as OpenSSL names it.
pub fn signature_algorithm(text: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Signature Algorithm: "))
        .expect("Signature Algorithm line")
        .trim()
        .to_owned()
}

/// The certificate's public key algorithm as OpenSSL names it.
pub fn public_key_algorithm(text: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Public Key Algorithm: "))
        .expect("Public Key Algorithm line")
        .trim()
        .to_owned()
}

/// Colon-hex → lower-case hex without separators, `keyid:` prefix removed.
pub fn norm_hex(s: &str) -> String {
    s.trim()
        .trim_start_matches("keyid:")
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// SHA-256 fingerprint of a PEM certificate by OpenSSL, lower-case hex.
pub fn openssl_fingerprint(crt: &Path) -> String {
    let out = openssl(
        &["x509", "-in", p(crt), "-noout", "-fingerprint", "-sha256"],
        Path::new("/"),
    );
    let (_, fp) = out.trim().split_once('=').expect("Fingerprint=…");
    norm_hex(fp)
}

/// Serial number by OpenSSL, upper-case hex as it prints it.
pub fn openssl_serial(crt: &Path) -> String {
    let out = openssl(
        &["x509", "-in", p(crt), "-noout", "-serial"],
        Path::new("/"),
    );
    out.trim()
        .strip_prefix("serial=")
        .expect("serial=…")
        .to_owned()
}

/// notBefore and notAfter by OpenSSL, as Unix seconds.
pub fn openssl_dates(crt: &Path) -> (i64, i64) {
    let out = openssl(
        &[
            "x509",
            "-in",
            p(crt),
            "-noout",
            "-dateopt",
            "iso_8601",
            "-startdate",
            "-enddate",
        ],
        Path::new("/"),
    );
    let get = |key: &str| -> i64 {
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {out}"));
        // e.g. 2026-11-25 02:33:46Z
        chrono::NaiveDateTime::parse_from_str(line.trim(), "%Y-%m-%d %H:%M:%SZ")
            .unwrap_or_else(|e| panic!("bad date {line:?}: {e}"))
            .and_utc()
            .timestamp()
    };
    (get("notBefore="), get("notAfter="))
}

/// A JSON RFC 3339 time field as Unix seconds.
pub fn json_time(v: &Value, key: &str) -> i64 {
    let s = v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string: {v}"));
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{key}={s:?} is not RFC 3339: {e}"))
        .timestamp()
}

/// `openssl x509 -pubkey` of a certificate (PEM SubjectPublicKeyInfo).
pub fn cert_public_key(crt: &Path) -> String {
    openssl(
        &["x509", "-in", p(crt), "-noout", "-pubkey"],
        Path::new("/"),
    )
}

/// `openssl pkey -pubout` of an encrypted key file.
pub fn key_public_key(key: &Path, pass: &str) -> String {
    openssl(
        &[
            "pkey",
            "-in",
            p(key),
            "-passin",
            &format!("pass:{pass}"),
            "-pubout",
        ],
        Path::new("/"),
    )
}

/// Decrypts an exported key to its (unencrypted) PKCS#8 PrivateKeyInfo DER with OpenSSL.
/// (`openssl pkey -outform DER` would write RSA keys as PKCS#1.)
pub fn key_pkcs8_der(key: &Path, pass: &str) -> Vec<u8> {
    let out = openssl_output(
        &[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            p(key),
            "-passin",
            &format!("pass:{pass}"),
            "-outform",
            "DER",
        ],
        Path::new("/"),
    );
    assert_success(&out, "openssl pkcs8 -topk8 -nocrypt -outform DER");
    assert!(!out.stdout.is_empty());
    out.stdout
}

/// Unix permission bits of a path.
pub fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// `n` random bytes as hex, from the OS.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    let mut f = fs::File::open("/dev/urandom").expect("/dev/urandom");
    std::io::Read::read_exact(&mut f, &mut buf).expect("random bytes");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// DER of a PEM certificate file.
pub fn openssl_der(pem: &std::path::Path) -> Vec<u8> {
    let dir = pem.parent().unwrap();
    let out = dir.join("der.tmp");
    openssl(
        &[
            "x509",
            "-in",
            pem.to_str().unwrap(),
            "-outform",
            "DER",
            "-out",
            out.to_str().unwrap(),
        ],
        dir,
    );
    std::fs::read(out).unwrap()
}

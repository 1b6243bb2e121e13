//! TLS to the PostgreSQL store, against a real server: this test starts its own cluster with
//! a TLS listener on 127.0.0.1 (scripts/postgres.sh, CERTMAN_PG_TLS_PORT) in a temporary
//! directory, and stops it at the end. Plain TCP is refused by that server (pg_hba), so every
//! command that works over TCP here worked over TLS.
//!
//! Without PostgreSQL 15 or openssl the test is skipped with the reason printed; with
//! CERTMAN_REQUIRE_TOKENS=1 (CI) it fails instead.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{softhsm, Env, EXIT_FAILED, EXIT_USAGE};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres.sh");

/// The cluster; stopped when dropped.
struct Server {
    dir: tempfile::TempDir,
    port: u16,
}

impl Server {
    /// Starts it, or says why it cannot (the test then skips, or fails in CI).
    fn start() -> Option<Server> {
        let missing = if !Path::new("/usr/lib/postgresql/15/bin/initdb").exists() {
            Some("PostgreSQL 15 is not installed")
        } else if Command::new("openssl").arg("version").output().is_err() {
            Some("openssl is not installed")
        } else {
            None
        };
        if let Some(why) = missing {
            assert!(
                !softhsm::tokens_required(),
                "no PostgreSQL TLS server: {why}"
            );
            eprintln!("skipped: no PostgreSQL TLS server: {why}");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("certman-pg-tls-")
            .tempdir()
            .expect("temp dir");
        // a free port, let go just before the server takes it
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let out = Command::new(SCRIPT)
            .args(["start", &dir.path().to_string_lossy()])
            .env("CERTMAN_PG_TLS_PORT", port.to_string())
            .output()
            .expect("run scripts/postgres.sh");
        let server = Server { dir, port };
        assert!(
            out.status.success(),
            "scripts/postgres.sh start with CERTMAN_PG_TLS_PORT={port}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(server)
    }

    fn tls(&self, name: &str) -> PathBuf {
        self.dir.path().join("tls").join(name)
    }

    /// `postgresql://USER@HOST:PORT/DB?QUERY`
    fn url(&self, user_db: &str, host: &str, query: &str) -> String {
        format!(
            "postgresql://{user_db}@{host}:{}/{user_db}?{query}",
            self.port
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // pg_ctl stop, else the postmaster by its PID (the script's `stop`)
        let _ = Command::new(SCRIPT)
            .args(["stop", &self.dir.path().to_string_lossy()])
            .output();
    }
}

/// A self-signed CA of openssl's that signed nothing of the server's.
fn other_ca(dir: &Path) -> PathBuf {
    let (key, crt) = (dir.join("other-ca.key"), dir.join("other-ca.crt"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-new", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=not the test CA"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    crt
}

fn with_store(env: &mut Env, url: String) {
    env.store = PathBuf::from(url);
}

/// Fails with one line naming `what`.
fn refused(env: &Env, what: &str) {
    refused_as(env, what, EXIT_FAILED);
}

/// Fails with exit `code` and one line naming `what`.
fn refused_as(env: &Env, what: &str, code: i32) {
    let err = env.fail(&["print", "--create"], code);
    assert!(err.contains(what), "expected {what:?} in: {err}");
}

#[test]
fn tls_to_postgres_verifies_the_server_as_sslmode_says() {
    let Some(server) = Server::start() else {
        return;
    };
    let ca = server.tls("ca.crt");
    let root = format!("sslrootcert={}", ca.display());
    let mut env = Env::new();

    // verify-full against the test CA, by IP address and by DNS name: a CA signs a certificate
    with_store(
        &mut env,
        server.url(
            "certman",
            "127.0.0.1",
            &format!("sslmode=verify-full&{root}"),
        ),
    );
    env.make_ca("tls-ca", &[]);
    env.issue("tls-leaf", "tls-ca", &[]);
    let printed = env.ok(&["print"]);
    assert!(
        printed.contains("tls-ca") && printed.contains("tls-leaf"),
        "{printed}"
    );
    with_store(
        &mut env,
        server.url(
            "certman",
            "localhost",
            &format!("sslmode=verify-full&{root}"),
        ),
    );
    assert!(env.ok(&["print"]).contains("tls-leaf"));

    // require: TLS without checking the certificate
    with_store(
        &mut env,
        server.url("certman", "127.0.0.1", "sslmode=require"),
    );
    assert!(env.ok(&["print"]).contains("tls-leaf"));
    // no sslmode over TCP is prefer: TLS when offered (plain TCP is refused by this server)
    with_store(&mut env, server.url("certman", "127.0.0.1", ""));
    assert!(env.ok(&["print"]).contains("tls-leaf"));
    // disable: no TLS, which this server refuses
    with_store(
        &mut env,
        server.url("certman", "127.0.0.1", "sslmode=disable"),
    );
    refused(&env, "no encryption");

    // the wrong root CA
    let other = other_ca(env.root());
    let wrong = format!("sslrootcert={}", other.display());
    for mode in ["verify-full", "verify-ca", "require"] {
        with_store(
            &mut env,
            server.url("certman", "127.0.0.1", &format!("sslmode={mode}&{wrong}")),
        );
        refused(&env, "the server's certificate is not trusted");
    }

    // a name the certificate does not hold (the connection goes to 127.0.0.1 by hostaddr)
    for host in ["127.0.0.2", "db.example"] {
        with_store(
            &mut env,
            server.url(
                "certman",
                host,
                &format!("hostaddr=127.0.0.1&sslmode=verify-full&{root}"),
            ),
        );
        refused(
            &env,
            &format!("the server's certificate does not name {host}"),
        );
    }
    // verify-ca does not check names
    with_store(
        &mut env,
        server.url(
            "certman",
            "127.0.0.2",
            &format!("hostaddr=127.0.0.1&sslmode=verify-ca&{root}"),
        ),
    );
    assert!(env.ok(&["print"]).contains("tls-leaf"));

    // verify-* without a root file is refused
    with_store(
        &mut env,
        server.url("certman", "127.0.0.1", "sslmode=verify-full"),
    );
    // (a location error: exit 2, as for any malformed store location)
    refused_as(
        &env,
        "sslmode=verify-full needs sslrootcert=FILE",
        EXIT_USAGE,
    );

    // a client certificate: role certman_cert must present one
    let cert_url = |extra: &str| {
        server.url(
            "certman_cert",
            "127.0.0.1",
            &format!("sslmode=verify-full&{root}{extra}"),
        )
    };
    with_store(&mut env, cert_url(""));
    refused(&env, "connection requires a valid client certificate");
    let key = env.root().join("client.key");
    std::fs::copy(server.tls("client.key"), &key).expect("copy the client key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let client = format!(
        "&sslcert={}&sslkey={}",
        server.tls("client.crt").display(),
        key.display()
    );
    with_store(&mut env, cert_url(&client));
    refused_as(&env, "group or others may access it", EXIT_USAGE);
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    env.make_ca("by-client-cert", &[]);
    assert!(env.ok(&["print"]).contains("by-client-cert"));
}

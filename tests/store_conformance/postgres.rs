//! The PostgreSQL backend of the conformance suite: a fresh database per check on the server at
//! `$CERTMAN_TEST_POSTGRES_URL` (`scripts/postgres.sh start DIR` prints the URL, scripts/test.sh
//! exports it), made and dropped with `psql` as tests/common does for the CLI tests.

use std::path::Path;
use std::process::Command;

use certman::app::{open_store, StoreLocation};
use certman::store::Store;

use super::Backend;

/// The server's URL (role `certman`, which may create databases).
const URL_VAR: &str = "CERTMAN_TEST_POSTGRES_URL";
const PSQL: &str = "/usr/lib/postgresql/15/bin/psql";

/// A database `certman_conf_<random hex>` of the test server, dropped (`WITH (FORCE)`) with
/// the value.
pub struct PgBackend {
    /// the server's URL, as given (its own database)
    admin: String,
    name: String,
    /// the URL of this backend's database
    url: String,
}

impl Backend for PgBackend {
    fn unavailable() -> Option<String> {
        match std::env::var(URL_VAR) {
            Ok(url) if !url.is_empty() => None,
            _ => Some(format!(
                "no PostgreSQL server: {URL_VAR} is not set (scripts/postgres.sh start DIR \
                 prints the URL; scripts/test.sh exports it)"
            )),
        }
    }

    fn fresh() -> Self {
        let admin = std::env::var(URL_VAR).unwrap_or_else(|_| panic!("{URL_VAR} is not set"));
        let name = format!("certman_conf_{}", random_hex(8));
        psql(&admin, &format!("CREATE DATABASE {name}")).unwrap_or_else(|e| panic!("{e}"));
        let url = with_database(&admin, &name);
        PgBackend { admin, name, url }
    }

    fn open(&self) -> Box<dyn Store> {
        let location = StoreLocation::parse(Path::new(&self.url))
            .unwrap_or_else(|e| panic!("{} as a store location: {e}", self.url));
        open_store(&location).expect("open the PostgreSQL store")
    }
}

impl Drop for PgBackend {
    fn drop(&mut self) {
        let drop_db = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = psql(&self.admin, &drop_db) {
            // No second panic while a failed check unwinds (that would abort the test binary).
            if std::thread::panicking() {
                eprintln!("{e}");
            } else {
                panic!("{e}");
            }
        }
    }
}

/// Runs one SQL command through `psql` on `url`.
fn psql(url: &str, sql: &str) -> Result<(), String> {
    let out = Command::new(PSQL)
        .args([url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .map_err(|e| format!("cannot run {PSQL} (Debian package postgresql): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `url` (`postgresql://AUTHORITY/DB?QUERY`) naming database `db` instead.
fn with_database(url: &str, db: &str) -> String {
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

fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    let mut f = std::fs::File::open("/dev/urandom").expect("/dev/urandom");
    std::io::Read::read_exact(&mut f, &mut buf).expect("random bytes");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

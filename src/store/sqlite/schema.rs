//! The schema, version by version, and the migration of a store to the newest.

use rusqlite::{params, Connection, OptionalExtension};

use super::SCHEMA_VERSION;
use crate::error::StoreError;
use crate::store::Result;

pub(super) const SCHEMA_V1: &str = "
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE keys (
    id           TEXT PRIMARY KEY,
    uri          TEXT NOT NULL,
    algorithm    TEXT NOT NULL,
    sealed       BLOB,
    token_serial TEXT,
    slot         TEXT,
    created_at   INTEGER NOT NULL
);
CREATE TABLE templates (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    properties TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE certificates (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    der         BLOB NOT NULL,
    serial      TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    key_id      TEXT REFERENCES keys(id),
    issuer_id   INTEGER REFERENCES certificates(id),
    trusted     INTEGER NOT NULL,
    ca_crl_host TEXT,
    properties  TEXT NOT NULL,
    not_after   INTEGER NOT NULL,
    revoked_at  INTEGER,
    created_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX certificates_issuer_serial ON certificates(issuer_id, serial);
CREATE INDEX certificates_key ON certificates(key_id);
";

/// v2: certificate requests made here, remembered so that the signed certificate, when it
/// comes back, joins its key.
pub(super) const SCHEMA_V2: &str = "
CREATE TABLE requests (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    key_id      TEXT REFERENCES keys(id),
    subject     TEXT NOT NULL,
    public_key  BLOB NOT NULL,
    der         BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX requests_public_key ON requests(public_key);
CREATE TABLE encrypted_keys (
    id                  INTEGER PRIMARY KEY,
    sealed              BLOB NOT NULL,
    hint_certificate_id INTEGER REFERENCES certificates(id),
    key_id              TEXT REFERENCES keys(id),
    certificate_id      INTEGER REFERENCES certificates(id),
    created_at          INTEGER NOT NULL
);
CREATE TABLE ca_passphrases (
    certificate_id INTEGER PRIMARY KEY REFERENCES certificates(id) ON DELETE CASCADE,
    sealed         BLOB NOT NULL
);
";

/// v3: revocations (one row per revoked certificate, with its encoded CRL entry), each local
/// CA's current CRL, the CDP paths a CA's CRL is published at, `/certificate settings`, and CRLs
/// downloaded for trusted certificates. Everything goes with its CA (ON DELETE CASCADE).
pub(super) const SCHEMA_V3: &str = "
CREATE TABLE revocations (
    ca_id          INTEGER NOT NULL REFERENCES certificates(id) ON DELETE CASCADE,
    serial         BLOB NOT NULL,
    certificate_id INTEGER NOT NULL UNIQUE REFERENCES certificates(id) ON DELETE CASCADE,
    revoked_at     INTEGER NOT NULL,
    reason         INTEGER,
    not_after      INTEGER NOT NULL,
    entry          BLOB NOT NULL,
    PRIMARY KEY (ca_id, serial)
) WITHOUT ROWID;
CREATE TABLE crls (
    ca_id       INTEGER PRIMARY KEY REFERENCES certificates(id) ON DELETE CASCADE,
    number      INTEGER NOT NULL,
    this_update INTEGER NOT NULL,
    next_update INTEGER NOT NULL,
    entries     INTEGER NOT NULL,
    der         BLOB NOT NULL
);
CREATE TABLE crl_paths (
    path  TEXT PRIMARY KEY,
    ca_id INTEGER NOT NULL REFERENCES certificates(id) ON DELETE CASCADE
);
CREATE INDEX crl_paths_ca ON crl_paths(ca_id);
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE downloaded_crls (
    certificate_id INTEGER PRIMARY KEY REFERENCES certificates(id) ON DELETE CASCADE,
    url            TEXT NOT NULL,
    number         INTEGER,
    this_update    INTEGER NOT NULL,
    next_update    INTEGER,
    entries        INTEGER NOT NULL,
    der            BLOB NOT NULL,
    fetched_at     INTEGER NOT NULL
);
";

/// v4: one namespace for templates and certificates as a constraint: a row per name, inserted,
/// renamed and deleted with its template or certificate, so that two writers cannot both take
/// a name; and a certificate held once (its fingerprint unique: two imports of one file at
/// once cannot both add it). Stores of v3 hold no certificate twice: import checked the
/// fingerprint under SQLite's one writer.
pub(super) const SCHEMA_V4: &str = "
CREATE TABLE names (
    name TEXT PRIMARY KEY
) WITHOUT ROWID;
INSERT OR IGNORE INTO names(name) SELECT name FROM templates;
INSERT OR IGNORE INTO names(name) SELECT name FROM certificates;
CREATE UNIQUE INDEX certificates_fingerprint ON certificates(fingerprint);
";

/// v5: SCEP servers, their one-time passwords (hashes only) and the request queue. A server
/// goes with its CA; a removed RA or next CA leaves the server without it; OTPs and requests go
/// with their server; a request keeps its row when its certificate is removed.
pub(super) const SCHEMA_V5: &str = "
CREATE TABLE scep_servers (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    path             TEXT NOT NULL UNIQUE,
    ca_id            INTEGER NOT NULL REFERENCES certificates(id) ON DELETE CASCADE,
    ra_id            INTEGER REFERENCES certificates(id) ON DELETE SET NULL,
    next_ca_id       INTEGER REFERENCES certificates(id) ON DELETE SET NULL,
    days_valid       INTEGER NOT NULL,
    request_lifetime INTEGER NOT NULL,
    disabled         INTEGER NOT NULL,
    created_at       INTEGER NOT NULL
);
CREATE TABLE scep_otps (
    id         INTEGER PRIMARY KEY,
    server_id  INTEGER REFERENCES scep_servers(id) ON DELETE CASCADE,
    hash       BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE TABLE scep_requests (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id        INTEGER NOT NULL REFERENCES scep_servers(id) ON DELETE CASCADE,
    transaction_id   TEXT NOT NULL,
    status           TEXT NOT NULL,
    csr              BLOB NOT NULL,
    signer           BLOB NOT NULL,
    subject          TEXT NOT NULL,
    common_name      TEXT NOT NULL,
    subject_alt_name TEXT NOT NULL,
    fingerprint      TEXT NOT NULL,
    certificate_id   INTEGER REFERENCES certificates(id) ON DELETE SET NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX scep_requests_transaction ON scep_requests(transaction_id, server_id);
CREATE INDEX scep_requests_status ON scep_requests(server_id, status, created_at);
";

/// v6: SCEP clients (`add-scep`, and the RA certificate of `scep-server ra`): what each is and
/// where it stands, the request in flight included, so that a restart resumes it. A client
/// goes with its certificate entry; a removed CA leaves it without. A SCEP server may be an RA
/// in front of an upstream server (`upstream_id`, the client that holds its RA certificate).
pub(super) const SCHEMA_V6: &str = "
CREATE TABLE scep_clients (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    url             TEXT NOT NULL,
    ca_identity     TEXT,
    properties      TEXT NOT NULL,
    key_profile     TEXT,
    refresh         INTEGER NOT NULL,
    status          TEXT NOT NULL,
    detail          TEXT NOT NULL,
    ca_id           INTEGER REFERENCES certificates(id) ON DELETE SET NULL,
    next_ca_id      INTEGER REFERENCES certificates(id) ON DELETE SET NULL,
    certificate_id  INTEGER REFERENCES certificates(id) ON DELETE CASCADE,
    key_id          TEXT REFERENCES keys(id),
    challenge       BLOB,
    tx_id           TEXT,
    tx_type         INTEGER,
    tx_csr          BLOB,
    tx_signer       BLOB,
    tx_recipient    BLOB,
    tx_started      INTEGER,
    req_fingerprint TEXT NOT NULL,
    ca_fingerprint  TEXT NOT NULL,
    capabilities    TEXT NOT NULL,
    next_attempt    INTEGER NOT NULL,
    attempts        INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX scep_clients_certificate ON scep_clients(certificate_id);
ALTER TABLE scep_servers ADD COLUMN upstream_id INTEGER REFERENCES scep_clients(id) ON DELETE CASCADE;
";

/// v7 (issue 17): a CA marked compromised (its key was on a token reported lost: no further
/// issuance), and the series of CRLs signed ahead for an offline root (`crl presign`), served
/// each from its thisUpdate; a series goes with its CA.
pub(super) const SCHEMA_V7: &str = "
ALTER TABLE certificates ADD COLUMN compromised_at INTEGER;
CREATE TABLE crl_series (
    ca_id       INTEGER NOT NULL REFERENCES certificates(id) ON DELETE CASCADE,
    number      INTEGER NOT NULL,
    this_update INTEGER NOT NULL,
    next_update INTEGER NOT NULL,
    entries     INTEGER NOT NULL,
    der         BLOB NOT NULL,
    signed_at   INTEGER NOT NULL,
    PRIMARY KEY (ca_id, number)
) WITHOUT ROWID;
";

/// The store's salt, after bringing its schema to [`SCHEMA_VERSION`]. A store that is current
/// is only read: opening it (every CLI command does) writes nothing and syncs nothing.
pub(super) fn migrate(conn: &Connection) -> Result<Vec<u8>> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version == SCHEMA_VERSION {
        if let Some(salt) = read_salt(conn)? {
            return Ok(salt);
        }
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version < 1 {
            conn.execute_batch(SCHEMA_V1)?;
            let mut salt = [0u8; 32];
            aws_lc_rs::rand::fill(&mut salt)
                .map_err(|_| StoreError::Corrupt("random generator failed".into()))?;
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('salt', ?1)",
                params![salt.to_vec()],
            )?;
        }
        if version < 2 {
            conn.execute_batch(SCHEMA_V2)?;
        }
        if version < 3 {
            conn.execute_batch(SCHEMA_V3)?;
        }
        if version < 4 {
            conn.execute_batch(SCHEMA_V4)?;
        }
        if version < 5 {
            conn.execute_batch(SCHEMA_V5)?;
        }
        if version < 6 {
            conn.execute_batch(SCHEMA_V6)?;
        }
        if version < 7 {
            conn.execute_batch(SCHEMA_V7)?;
        }
        if version < SCHEMA_VERSION {
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        read_salt(conn)?.ok_or_else(|| StoreError::Corrupt("no salt in meta".into()))
    })();
    match result {
        Ok(salt) => {
            conn.execute_batch("COMMIT")?;
            Ok(salt)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

pub(super) fn read_salt(conn: &Connection) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = 'salt'", [], |r| {
            r.get(0)
        })
        .optional()?)
}

//! The SQLite store: files, modes, rollback, migrations from every older schema.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rusqlite::Connection;

use super::*;
use crate::store::{NewCertificate, RevocationRecord};

#[test]
fn open_creates_private_files_and_keeps_salt() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("store");
    let s = SqliteStore::open(&dir).unwrap();
    let salt = s.salt().to_vec();
    assert_eq!(salt.len(), 32);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(DB_FILE)), 0o600);
    drop(s);
    let s2 = SqliteStore::open(&dir).unwrap();
    assert_eq!(s2.salt(), &salt[..]);
}

#[test]
fn a_missing_store_is_no_store_unless_made() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("store");
    let e = SqliteStore::open_with(&dir, false).unwrap_err();
    assert!(matches!(e, StoreError::NoStore { .. }), "{e:?}");
    assert!(!dir.exists());
    std::fs::create_dir(&dir).unwrap();
    let e = SqliteStore::open_with(&dir, false).unwrap_err();
    assert!(matches!(e, StoreError::NoStore { .. }), "{e:?}");
    drop(SqliteStore::open_with(&dir, true).unwrap());
    drop(SqliteStore::open_with(&dir, false).unwrap());
}

/// Each process (here: each store opened) commits one transaction, as the CLI does: the WAL
/// stays between them, is emptied once it passes WAL_CHECKPOINT_PAGES, and every commit is
/// seen by the next opening.
#[test]
fn the_wal_stays_between_processes_and_is_emptied_when_large() {
    let d = tempfile::tempdir().unwrap();
    let wal = d.path().join(format!("{DB_FILE}-wal"));
    let mut emptied = 0;
    for i in 0..300 {
        let s = SqliteStore::open(d.path()).unwrap();
        let mut t = s.begin(TxnMode::Write).unwrap();
        t.insert_template(
            &format!("t{i}"),
            &format!("{{\"pad\":\"{}\"}}", "x".repeat(3000)),
        )
        .unwrap();
        t.commit().unwrap();
        drop(s);
        let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
        assert!(
            size <= (WAL_CHECKPOINT_PAGES + 8) * WAL_FRAME_BYTES + 32,
            "the WAL grew to {size} bytes"
        );
        emptied += usize::from(size == 0);
    }
    assert!(emptied >= 2, "the WAL was emptied {emptied} times");
    let s = SqliteStore::open(d.path()).unwrap();
    let t = s.begin(TxnMode::Read).unwrap();
    assert_eq!(t.templates().unwrap().len(), 300);
    drop(t);
    drop(s);
    // the database and its WAL together are the store: a plain reader sees it all
    let c = Connection::open(d.path().join(DB_FILE)).unwrap();
    let n: i64 = c
        .query_row("SELECT COUNT(*) FROM templates", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 300);
}

#[test]
fn uncommitted_transactions_roll_back() {
    let d = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(d.path()).unwrap();
    {
        let mut t = s.begin(TxnMode::Write).unwrap();
        t.insert_template("a", "{}").unwrap();
        assert!(t.name_in_use("a").unwrap());
    }
    let t = s.begin(TxnMode::Read).unwrap();
    assert!(!t.name_in_use("a").unwrap());
    drop(t);
    let mut t = s.begin(TxnMode::Write).unwrap();
    t.insert_template("a", "{}").unwrap();
    t.commit().unwrap();
    let t = s.begin(TxnMode::Read).unwrap();
    assert_eq!(t.templates().unwrap().len(), 1);
}

#[test]
fn a_version_1_store_gains_the_version_2_tables() {
    let d = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(d.path()).unwrap());
    let c = Connection::open(d.path().join(DB_FILE)).unwrap();
    c.execute_batch(
        "DROP TABLE crl_series; ALTER TABLE certificates DROP COLUMN compromised_at; \
         DROP TABLE scep_clients; DROP TABLE scep_requests; DROP TABLE scep_otps; DROP TABLE scep_servers; \
         DROP TABLE requests; DROP TABLE encrypted_keys; DROP TABLE ca_passphrases; \
         DROP TABLE revocations; DROP TABLE crls; DROP TABLE crl_paths; \
         DROP TABLE settings; DROP TABLE downloaded_crls; DROP TABLE names; \
         DROP INDEX certificates_fingerprint; \
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(c);
    let s = SqliteStore::open(d.path()).unwrap();
    let t = s.begin(TxnMode::Read).unwrap();
    assert!(t.requests().unwrap().is_empty());
    assert!(t.encrypted_keys().unwrap().is_empty());
    assert_eq!(t.ca_passphrase(1).unwrap(), None);
}

#[test]
fn a_version_2_store_gains_the_version_3_tables_and_keeps_its_rows() {
    let d = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(d.path()).unwrap();
    let mut t = s.begin(TxnMode::Write).unwrap();
    t.insert_template("kept", "{}").unwrap();
    t.commit().unwrap();
    drop(s);
    let c = Connection::open(d.path().join(DB_FILE)).unwrap();
    c.execute_batch(
        "DROP TABLE crl_series; ALTER TABLE certificates DROP COLUMN compromised_at; \
         DROP TABLE scep_clients; DROP TABLE scep_requests; DROP TABLE scep_otps; DROP TABLE scep_servers; \
         DROP TABLE revocations; DROP TABLE crls; DROP TABLE crl_paths; \
         DROP TABLE settings; DROP TABLE downloaded_crls; DROP TABLE names; \
         DROP INDEX certificates_fingerprint; \
         PRAGMA user_version = 2;",
    )
    .unwrap();
    drop(c);
    let s = SqliteStore::open(d.path()).unwrap();
    let mut t = s.begin(TxnMode::Write).unwrap();
    assert!(t.template("kept").unwrap().is_some());
    assert_eq!(t.setting("crl-use").unwrap(), None);
    t.set_setting("crl-use", "yes").unwrap();
    assert_eq!(t.setting("crl-use").unwrap().as_deref(), Some("yes"));
    assert!(t.crl_summaries().unwrap().is_empty());
    assert!(t.downloaded_crls().unwrap().is_empty());
    let v: i64 = t_version(&d);
    assert_eq!(v, SCHEMA_VERSION);
}

#[test]
fn a_version_3_store_gains_the_names_of_its_templates_and_certificates() {
    let d = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(d.path()).unwrap();
    let mut t = s.begin(TxnMode::Write).unwrap();
    t.insert_template("tpl", "{}").unwrap();
    t.commit().unwrap();
    drop(s);
    let c = Connection::open(d.path().join(DB_FILE)).unwrap();
    c.execute_batch(
        "DROP TABLE crl_series; ALTER TABLE certificates DROP COLUMN compromised_at; \
         DROP TABLE scep_clients; DROP TABLE scep_requests; DROP TABLE scep_otps; DROP TABLE scep_servers; \
         DROP TABLE names; DROP INDEX certificates_fingerprint; PRAGMA user_version = 3;",
    )
    .unwrap();
    drop(c);
    let s = SqliteStore::open(d.path()).unwrap();
    let mut t = s.begin(TxnMode::Write).unwrap();
    assert!(matches!(
        t.insert_template("tpl", "{}"),
        Err(StoreError::NameTaken(n)) if n == "tpl"
    ));
    assert_eq!(t_version(&d), SCHEMA_VERSION);
}

#[test]
fn a_version_4_store_gains_the_scep_tables_and_keeps_its_rows() {
    let d = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(d.path()).unwrap();
    let mut t = s.begin(TxnMode::Write).unwrap();
    let ca = t.insert_certificate(&record("ca", "01", None)).unwrap();
    t.commit().unwrap();
    drop(s);
    let c = Connection::open(d.path().join(DB_FILE)).unwrap();
    c.execute_batch(
        "DROP TABLE crl_series; ALTER TABLE certificates DROP COLUMN compromised_at; \
         DROP TABLE scep_clients; DROP TABLE scep_requests; DROP TABLE scep_otps; DROP TABLE scep_servers; \
         PRAGMA user_version = 4;",
    )
    .unwrap();
    drop(c);
    let s = SqliteStore::open(d.path()).unwrap();
    let mut t = s.begin(TxnMode::Write).unwrap();
    assert!(t.certificate("ca").unwrap().is_some());
    assert!(t.scep_servers().unwrap().is_empty());
    t.insert_scep_server(&crate::store::NewScepServer {
        path: "/scep/test".into(),
        ca_id: ca,
        ra_id: None,
        next_ca_id: None,
        days_valid: 1,
        request_lifetime: 300,
        disabled: false,
        upstream_id: None,
    })
    .unwrap();
    t.commit().unwrap();
    assert_eq!(t_version(&d), SCHEMA_VERSION);
}

#[test]
fn a_version_5_store_gains_the_scep_clients_and_keeps_its_servers() {
    let d = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(d.path()).unwrap();
    let mut t = s.begin(TxnMode::Write).unwrap();
    let ca = t.insert_certificate(&record("ca", "01", None)).unwrap();
    t.commit().unwrap();
    drop(s);
    // a version-5 store: no client table, no upstream column, one server
    let c = Connection::open(d.path().join(DB_FILE)).unwrap();
    c.execute_batch(&format!(
        "DROP TABLE crl_series; ALTER TABLE certificates DROP COLUMN compromised_at; \
         DROP TABLE scep_clients; ALTER TABLE scep_servers DROP COLUMN upstream_id; \
         INSERT INTO scep_servers(path, ca_id, days_valid, request_lifetime, disabled, created_at) \
         VALUES ('/scep/old', {ca}, 1, 300, 0, 1); PRAGMA user_version = 5;"
    ))
    .unwrap();
    drop(c);
    let s = SqliteStore::open(d.path()).unwrap();
    let t = s.begin(TxnMode::Read).unwrap();
    let servers = t.scep_servers().unwrap();
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0].server.path, "/scep/old");
    assert_eq!(servers[0].server.upstream_id, None);
    assert!(t.scep_clients().unwrap().is_empty());
    drop(t);
    assert_eq!(t_version(&d), SCHEMA_VERSION);
}

#[test]
fn a_version_6_store_gains_the_crl_series_and_the_compromised_mark() {
    let d = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(d.path()).unwrap();
    let mut t = s.begin(TxnMode::Write).unwrap();
    t.insert_template("kept", "{}").unwrap();
    t.commit().unwrap();
    drop(s);
    let c = Connection::open(d.path().join(DB_FILE)).unwrap();
    c.execute_batch(&format!("{V7_UNDONE} PRAGMA user_version = 6;"))
        .unwrap();
    drop(c);
    let s = SqliteStore::open(d.path()).unwrap();
    let t = s.begin(TxnMode::Read).unwrap();
    assert_eq!(t.templates().unwrap().len(), 1);
    drop(t);
    drop(s);
    assert_eq!(t_version(&d), SCHEMA_VERSION);
    let c = Connection::open(d.path().join(DB_FILE)).unwrap();
    let has: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM pragma_table_info('certificates') WHERE name = 'compromised_at'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(has, 1);
    c.execute_batch("SELECT * FROM crl_series").unwrap();
}

/// What undoes version 7 (for stores of older versions).
const V7_UNDONE: &str =
    "DROP TABLE crl_series; ALTER TABLE certificates DROP COLUMN compromised_at;";

fn t_version(d: &tempfile::TempDir) -> i64 {
    let c = Connection::open(d.path().join(DB_FILE)).unwrap();
    c.pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

#[test]
fn newer_schema_is_refused() {
    let d = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(d.path()).unwrap());
    let c = Connection::open(d.path().join(DB_FILE)).unwrap();
    c.pragma_update(None, "user_version", 99).unwrap();
    drop(c);
    assert!(matches!(
        SqliteStore::open(d.path()),
        Err(StoreError::SchemaTooNew { found: 99, .. })
    ));
}

/// A certificate record for the tests below (the store does not parse the DER).
fn record(name: &str, serial: &str, issuer: Option<i64>) -> NewCertificate {
    NewCertificate {
        name: name.into(),
        der: name.as_bytes().to_vec(),
        serial: serial.into(),
        fingerprint: format!("{name:0>64}"),
        key_id: None,
        issuer_id: issuer,
        trusted: false,
        ca_crl_host: None,
        properties: "{}".into(),
        not_after: 0,
    }
}

#[test]
fn a_failed_operation_leaves_no_part_of_itself_behind() {
    let d = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(d.path()).unwrap();
    let mut t = s.begin(TxnMode::Write).unwrap();
    let ca = t.insert_certificate(&record("ca", "01", None)).unwrap();
    t.insert_certificate(&record("a", "0A", Some(ca))).unwrap();
    t.set_ca_passphrase(ca, b"sealed").unwrap();
    // a duplicate serial: the name it claimed first is free again
    assert!(matches!(
        t.insert_certificate(&record("b", "0A", Some(ca))),
        Err(StoreError::Duplicate(_))
    ));
    assert!(!t.name_in_use("b").unwrap());
    t.insert_template("b", "{}").unwrap();
    // a CA with issued certificates cannot go (foreign key): its name and passphrase stay
    assert!(t.delete_certificate(ca).is_err());
    assert!(t.name_in_use("ca").unwrap());
    assert_eq!(
        t.ca_passphrase(ca).unwrap().as_deref(),
        Some(&b"sealed"[..])
    );
    // a serial the CA revoked already, for another certificate: not marked revoked
    let other = t.insert_certificate(&record("c", "0C", Some(ca))).unwrap();
    let revocation = |certificate_id, serial: &[u8]| RevocationRecord {
        ca_id: ca,
        certificate_id,
        serial: serial.to_vec(),
        revoked_at: 1,
        reason: None,
        not_after: 2,
        entry: vec![0x30, 0x00],
    };
    let a = t.certificate("a").unwrap().unwrap().id;
    t.insert_revocation(&revocation(a, &[0x0A])).unwrap();
    assert!(matches!(
        t.insert_revocation(&revocation(other, &[0x0A])),
        Err(StoreError::Duplicate(_))
    ));
    assert_eq!(t.certificate("c").unwrap().unwrap().revoked_at, None);
}

#[test]
fn an_update_of_a_row_gone_meanwhile_is_a_conflict() {
    let d = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(d.path()).unwrap();
    let mut t = s.begin(TxnMode::Write).unwrap();
    assert!(matches!(
        t.update_template(42, "x", "{}"),
        Err(StoreError::Conflict)
    ));
    assert!(matches!(
        t.update_certificate(42, "x", false),
        Err(StoreError::Conflict)
    ));
}

#[test]
fn check_writable_probes_the_directory_without_waiting_for_the_writer() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("store");
    let writer = SqliteStore::open(&dir).unwrap();
    let reads = SqliteStore::open(&dir).unwrap();
    reads.check_writable().unwrap();
    // A writer holding the write lock (signing on a slow token) does not delay the check.
    let txn = writer.begin(TxnMode::Write).unwrap();
    let started = std::time::Instant::now();
    reads.check_writable().unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(txn);
    // No probe is left behind.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("probe")), "{names:?}");
    // The directory gone (the open database still reads): not writable, saying where.
    std::fs::rename(&dir, d.path().join("moved")).unwrap();
    let e = reads.check_writable().unwrap_err();
    assert!(matches!(e, StoreError::Io { .. }), "{e:?}");
    assert!(e.to_string().contains(".write-probe-"), "{e}");
}

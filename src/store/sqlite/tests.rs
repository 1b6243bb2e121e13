//! The SQLite store: files, modes, rollback, migrations from every older schema.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rusqlite::Connection;

use super::*;

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
        "DROP TABLE requests; DROP TABLE encrypted_keys; DROP TABLE ca_passphrases; \
         DROP TABLE revocations; DROP TABLE crls; DROP TABLE crl_paths; \
         DROP TABLE settings; DROP TABLE downloaded_crls; DROP TABLE names; \
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
        "DROP TABLE revocations; DROP TABLE crls; DROP TABLE crl_paths; \
         DROP TABLE settings; DROP TABLE downloaded_crls; DROP TABLE names; \
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
    c.execute_batch("DROP TABLE names; PRAGMA user_version = 3;")
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

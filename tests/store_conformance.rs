//! The store conformance suite: the store contract of `src/store/mod.rs` (its module docs and
//! the `Store`/`Transaction` trait docs), checked on every store backend.
//!
//! Each check is a generic function over a [`Backend`] (a way to make a fresh, empty store and
//! to open new handles — each its own connection — to it). `conformance_suite!` turns the list
//! of checks into one `#[test]` per check in a module per backend. A new backend adds one
//! `Backend` impl and one `conformance_suite!` line at the bottom of this file.
//!
//! The backends: SQLite in a temporary directory, and PostgreSQL (`store_conformance/postgres.rs`)
//! in a fresh database of the server at `$CERTMAN_TEST_POSTGRES_URL`. Without that server the
//! PostgreSQL checks are skipped with a note on stderr, unless `CERTMAN_REQUIRE_TOKENS=1` (CI),
//! where they fail.
//!
//! The checks use only the `Store` trait, never a backend's own API, and they never go on using
//! a transaction after an operation failed: the failing operation is the last in its
//! transaction, which is then dropped (PostgreSQL aborts a transaction at its first error).
//! What the records hold (DER, serials, CRL entries) is made-up bytes: the store does not parse
//! them.
//!
//! The concurrency checks run real threads, each on its own handle, started together by a
//! `Barrier`; a transaction that meets `Conflict` or `Busy` is retried whole, a bounded number
//! of times, as the manager does.

use std::fmt::Debug;
use std::sync::Barrier;

use certman::app::{open_store, StoreLocation};
use certman::error::StoreError;
use certman::store::{
    CrlRecord, CrlSeriesRecord, DownloadedCrlRecord, Job, KeyRecord, Lock, NewCertificate,
    NewRequest, Result, RevocationRecord, Store, Transaction, TxnMode,
};

// ---------------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------------

/// A store backend under test.
trait Backend {
    /// Why this backend cannot be tested here (a server it needs is not given), or `None`.
    fn unavailable() -> Option<String> {
        None
    }
    /// A new, empty store of this kind (dropped with the value).
    fn fresh() -> Self;
    /// A new handle to this store: its own connection, so that handles used by different
    /// threads are as independent as two processes.
    fn open(&self) -> Box<dyn Store>;
}

/// The embedded SQLite store, in a temporary directory.
struct SqliteBackend {
    dir: tempfile::TempDir,
}

impl Backend for SqliteBackend {
    fn fresh() -> Self {
        SqliteBackend {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    fn open(&self) -> Box<dyn Store> {
        open_store(&StoreLocation::Sqlite {
            dir: self.dir.path().join("store"),
        })
        .expect("open the SQLite store")
    }
}

#[path = "store_conformance/postgres.rs"]
mod postgres_backend;
use postgres_backend::PgBackend;

/// Whether the checks on `B` run here: false, with a note on stderr, when `B` is unavailable —
/// a panic instead under `CERTMAN_REQUIRE_TOKENS=1` (CI), where every backend must be tested.
fn available<B: Backend>(check: &str) -> bool {
    let Some(reason) = B::unavailable() else {
        return true;
    };
    assert!(
        std::env::var("CERTMAN_REQUIRE_TOKENS").as_deref() != Ok("1"),
        "CERTMAN_REQUIRE_TOKENS=1 but {check} cannot run: {reason}"
    );
    eprintln!("skipping {check}: {reason}");
    false
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

/// A fixed "now", Unix seconds.
const NOW: i64 = 1_700_000_000;
const DAY: i64 = 86_400;

/// A made-up SHA-256 fingerprint (hex), distinct per name.
fn fingerprint(name: &str) -> String {
    let hex: String = name.bytes().map(|b| format!("{b:02X}")).collect();
    format!("{hex:0>64}")
}

/// An end-entity certificate `name` with `serial`, issued by `issuer` (a local CA) or imported.
fn cert(name: &str, serial: &str, issuer: Option<i64>) -> NewCertificate {
    NewCertificate {
        name: name.to_owned(),
        der: format!("DER of {name}").into_bytes(),
        serial: serial.to_owned(),
        fingerprint: fingerprint(name),
        key_id: None,
        issuer_id: issuer,
        trusted: false,
        ca_crl_host: None,
        properties: format!(r#"{{"common-name":"{name}"}}"#),
        not_after: NOW + 365 * DAY,
    }
}

/// A root CA certificate `name` (trusted, with a CRL host).
fn ca_cert(name: &str, serial: &str) -> NewCertificate {
    NewCertificate {
        trusted: true,
        ca_crl_host: Some("crl.example.net".to_owned()),
        ..cert(name, serial, None)
    }
}

/// A sealed software key.
fn soft_key(id: &str) -> KeyRecord {
    KeyRecord {
        id: id.to_owned(),
        uri: format!("soft:id={id}"),
        algorithm: "ec/prime256v1".to_owned(),
        sealed: Some(format!("sealed PKCS#8 of {id}").into_bytes()),
        token_serial: None,
        slot: None,
        created_at: NOW * 1_000_000,
    }
}

/// The inventory entry of a token key.
fn token_key(id: &str) -> KeyRecord {
    KeyRecord {
        id: id.to_owned(),
        uri: format!("pkcs11:token=t1;id=%01;object={id}"),
        algorithm: "rsa/2048".to_owned(),
        sealed: None,
        token_serial: Some("0123456789abcdef".to_owned()),
        slot: Some("0".to_owned()),
        created_at: NOW * 1_000_000 + 1,
    }
}

/// A certificate request made here.
fn request(name: &str, key_id: Option<&str>) -> NewRequest {
    NewRequest {
        name: name.to_owned(),
        key_id: key_id.map(str::to_owned),
        subject: format!("CN={name}"),
        public_key: format!("SPKI of {name}").into_bytes(),
        der: format!("CSR of {name}").into_bytes(),
    }
}

/// The recognisable CRL entry bytes of a revoked certificate: `<entry ID>`.
fn entry(certificate_id: i64) -> Vec<u8> {
    format!("<entry {certificate_id}>").into_bytes()
}

/// Splits what `revocation_entries` appended back into `<entry ID>` strings, sorted.
fn entries_in(bytes: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(bytes).expect("entries are the test's ASCII");
    let mut out: Vec<String> = text.split_inclusive('>').map(str::to_owned).collect();
    assert!(
        out.iter()
            .all(|e| e.starts_with("<entry ") && e.ends_with('>')),
        "not whole entries: {text:?}"
    );
    out.sort();
    out
}

/// The same entries as [`entries_in`] gives, for these certificates.
fn expected_entries(ids: &[i64]) -> Vec<String> {
    let mut out: Vec<String> = ids
        .iter()
        .map(|&id| String::from_utf8(entry(id)).unwrap())
        .collect();
    out.sort();
    out
}

/// The revocation of `certificate_id` by `ca_id`.
fn revocation(
    ca_id: i64,
    certificate_id: i64,
    revoked_at: i64,
    not_after: i64,
) -> RevocationRecord {
    RevocationRecord {
        ca_id,
        certificate_id,
        serial: certificate_id.to_be_bytes().to_vec(),
        revoked_at,
        reason: Some(1),
        not_after,
        entry: entry(certificate_id),
    }
}

/// CRL number `number` of CA `ca_id`.
fn crl(ca_id: i64, number: u64) -> CrlRecord {
    CrlRecord {
        ca_id,
        number,
        this_update: NOW + number as i64,
        next_update: NOW + number as i64 + DAY,
        entries: number as i64 % 7,
        der: format!("CRL #{number} of CA {ca_id}").into_bytes(),
    }
}

/// A CRL downloaded for certificate `certificate_id`.
fn downloaded(certificate_id: i64, url: &str, number: Option<u64>) -> DownloadedCrlRecord {
    DownloadedCrlRecord {
        certificate_id,
        url: url.to_owned(),
        number,
        this_update: NOW - DAY,
        next_update: number.map(|_| NOW + DAY),
        entries: 3,
        der: format!("downloaded CRL from {url}").into_bytes(),
        fetched_at: NOW,
    }
}

// ---------------------------------------------------------------------------------------------
// Transactions
// ---------------------------------------------------------------------------------------------

/// Runs `f` in a write transaction and commits; panics on any error.
#[track_caller]
fn write<T>(store: &dyn Store, f: impl FnOnce(&mut dyn Transaction) -> Result<T>) -> T {
    let mut txn = store
        .begin(TxnMode::Write)
        .expect("begin a write transaction");
    let value = f(txn.as_mut()).expect("the write transaction's operations");
    txn.commit().expect("commit");
    value
}

/// Runs `f` in a read transaction; panics on any error.
#[track_caller]
fn read<T>(store: &dyn Store, f: impl FnOnce(&dyn Transaction) -> Result<T>) -> T {
    let txn = store
        .begin(TxnMode::Read)
        .expect("begin a read transaction");
    f(txn.as_ref()).expect("the read transaction's operations")
}

/// Runs `f` in a write transaction that must fail; drops (rolls back) the transaction and
/// returns the error.
#[track_caller]
fn refused<T: Debug>(
    store: &dyn Store,
    f: impl FnOnce(&mut dyn Transaction) -> Result<T>,
) -> StoreError {
    let mut txn = store
        .begin(TxnMode::Write)
        .expect("begin a write transaction");
    match f(txn.as_mut()) {
        Ok(v) => panic!("expected the store to refuse, got Ok({v:?})"),
        Err(e) => e,
    }
}

/// How many times a concurrent transaction is tried before the test gives up.
const ATTEMPTS: usize = 200;

/// Runs `op` in a write transaction and commits, trying the whole transaction again on
/// `Conflict` or `Busy` (at most [`ATTEMPTS`] times); any other outcome is returned.
fn write_retrying<T>(
    store: &dyn Store,
    mut op: impl FnMut(&mut dyn Transaction) -> Result<T>,
) -> Result<T> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = store.begin(TxnMode::Write).and_then(|mut txn| {
            let value = op(txn.as_mut())?;
            txn.commit()?;
            Ok(value)
        });
        match outcome {
            Err(StoreError::Conflict | StoreError::Busy) if attempt < ATTEMPTS => {
                std::thread::yield_now();
            }
            other => return other,
        }
    }
}

/// `n` handles to the store, one per thread.
fn handles<B: Backend>(backend: &B, n: usize) -> Vec<Box<dyn Store>> {
    (0..n).map(|_| backend.open()).collect()
}

/// Runs `op(i, store)` on one thread per handle, all released together; the results in handle
/// order.
fn race<T: Send>(stores: &[Box<dyn Store>], op: impl Fn(usize, &dyn Store) -> T + Sync) -> Vec<T> {
    let barrier = Barrier::new(stores.len());
    std::thread::scope(|scope| {
        let threads: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, store)| {
                let (barrier, op) = (&barrier, &op);
                scope.spawn(move || {
                    barrier.wait();
                    op(i, store.as_ref())
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("a racing thread panicked"))
            .collect()
    })
}

/// Threads in the concurrency checks.
const THREADS: usize = 8;
/// Rounds each thread runs in the CRL-number check.
const ROUNDS: usize = 10;

#[track_caller]
fn assert_name_taken(e: StoreError, name: &str) {
    match e {
        StoreError::NameTaken(n) => assert_eq!(n, name, "NameTaken names the taken name"),
        other => panic!("expected NameTaken({name:?}), got {other:?}"),
    }
}

#[track_caller]
fn assert_duplicate(e: StoreError) {
    assert!(
        matches!(e, StoreError::Duplicate(_)),
        "expected Duplicate, got {e:?}"
    );
}

#[track_caller]
fn assert_conflict(e: StoreError) {
    assert!(
        matches!(e, StoreError::Conflict),
        "expected Conflict, got {e:?}"
    );
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn template_names(store: &dyn Store) -> Vec<String> {
    read(store, |t| t.templates())
        .into_iter()
        .map(|t| t.name)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------------

/// Templates: insert, get, list in creation order, update (with rename), delete once; a
/// rename into a taken name is `NameTaken`.
fn templates<B: Backend>() {
    let backend = B::fresh();
    let s = backend.open();
    assert!(read(&*s, |t| t.templates()).is_empty());

    let (bravo, alpha) = write(&*s, |t| {
        Ok((
            t.insert_template("bravo", r#"{"days-valid":30}"#)?,
            t.insert_template("alpha", "{}")?,
        ))
    });
    let charlie = write(&*s, |t| t.insert_template("charlie", "{}"));
    assert!(bravo != alpha && alpha != charlie && bravo != charlie);

    let got = read(&*s, |t| t.template("bravo")).expect("bravo is stored");
    assert_eq!(got.id, bravo);
    assert_eq!(got.name, "bravo");
    assert_eq!(got.properties, r#"{"days-valid":30}"#);
    assert!(got.created_at > 0);
    assert_eq!(read(&*s, |t| t.template("nobody")), None);
    // creation order, not name order
    assert_eq!(template_names(&*s), ["bravo", "alpha", "charlie"]);
    let listed = read(&*s, |t| t.templates());
    assert_eq!(listed[0], got);

    // properties only
    write(&*s, |t| {
        t.update_template(bravo, "bravo", r#"{"days-valid":60}"#)
    });
    assert_eq!(
        read(&*s, |t| t.template("bravo")).unwrap().properties,
        r#"{"days-valid":60}"#
    );
    // rename
    let before = read(&*s, |t| t.template("alpha")).unwrap();
    write(&*s, |t| {
        t.update_template(alpha, "delta", r#"{"key-usage":"crl-sign"}"#)
    });
    assert_eq!(read(&*s, |t| t.template("alpha")), None);
    let delta = read(&*s, |t| t.template("delta")).expect("renamed");
    assert_eq!(delta.id, alpha);
    assert_eq!(delta.properties, r#"{"key-usage":"crl-sign"}"#);
    assert_eq!(
        delta.created_at, before.created_at,
        "a rename keeps its creation time"
    );
    assert_eq!(template_names(&*s), ["bravo", "delta", "charlie"]);
    assert!(!read(&*s, |t| t.name_in_use("alpha")));
    assert!(read(&*s, |t| t.name_in_use("delta")));
    // the old name is free again
    let alpha2 = write(&*s, |t| t.insert_template("alpha", "{}"));
    assert!(alpha2 != alpha);
    assert_eq!(template_names(&*s), ["bravo", "delta", "charlie", "alpha"]);

    // a rename into a taken name
    assert_name_taken(
        refused(&*s, |t| t.update_template(charlie, "delta", "{}")),
        "delta",
    );
    assert_eq!(read(&*s, |t| t.template("charlie")).unwrap().id, charlie);
    assert_eq!(read(&*s, |t| t.template("delta")).unwrap().id, alpha);
    // a new template under a taken name
    assert_name_taken(refused(&*s, |t| t.insert_template("bravo", "{}")), "bravo");
    assert_eq!(read(&*s, |t| t.templates()).len(), 4);

    // deleted once
    assert!(write(&*s, |t| t.delete_template(charlie)));
    assert!(!write(&*s, |t| t.delete_template(charlie)));
    assert_eq!(read(&*s, |t| t.template("charlie")), None);
    assert!(!read(&*s, |t| t.name_in_use("charlie")));
    assert_eq!(template_names(&*s), ["bravo", "delta", "alpha"]);
}

/// One namespace for templates and certificates: either kind's name refuses the other;
/// deleting or renaming frees a name; a template consumed and its name reused in one
/// transaction (what `sign` does).
fn one_namespace<B: Backend>() {
    let backend = B::fresh();
    let s = backend.open();
    let shared = write(&*s, |t| t.insert_template("shared", "{}"));
    assert_name_taken(
        refused(&*s, |t| t.insert_certificate(&cert("shared", "01", None))),
        "shared",
    );
    let c1 = write(&*s, |t| t.insert_certificate(&cert("c1", "02", None)));
    assert_name_taken(refused(&*s, |t| t.insert_template("c1", "{}")), "c1");
    assert_name_taken(
        refused(&*s, |t| t.insert_certificate(&cert("c1", "03", None))),
        "c1",
    );
    read(&*s, |t| {
        assert!(t.name_in_use("shared")?);
        assert!(t.name_in_use("c1")?);
        assert!(!t.name_in_use("free")?);
        assert_eq!(t.certificate("shared")?, None);
        assert_eq!(t.template("c1")?, None);
        Ok(())
    });

    // renames into a taken name
    assert_name_taken(
        refused(&*s, |t| t.update_template(shared, "c1", "{}")),
        "c1",
    );
    let c2 = write(&*s, |t| t.insert_certificate(&cert("c2", "03", None)));
    assert_name_taken(
        refused(&*s, |t| t.update_certificate(c2, "shared", false)),
        "shared",
    );
    assert_name_taken(
        refused(&*s, |t| t.update_certificate(c2, "c1", false)),
        "c1",
    );
    assert_eq!(read(&*s, |t| t.certificate("c2")).unwrap().id, c2);

    // a rename into a free name frees the old one, and sets `trusted`
    write(&*s, |t| t.update_certificate(c2, "c2-renamed", true));
    let renamed = read(&*s, |t| t.certificate("c2-renamed")).expect("renamed");
    assert_eq!(renamed.id, c2);
    assert!(renamed.cert.trusted);
    assert_eq!(read(&*s, |t| t.certificate("c2")), None);
    assert!(!read(&*s, |t| t.name_in_use("c2")));
    write(&*s, |t| t.insert_template("c2", "{}"));
    // same name, `trusted` only
    write(&*s, |t| t.update_certificate(c1, "c1", true));
    assert!(read(&*s, |t| t.certificate("c1")).unwrap().cert.trusted);

    // deleting frees a name for the other kind
    assert!(write(&*s, |t| t.delete_template(shared)));
    assert!(!read(&*s, |t| t.name_in_use("shared")));
    write(&*s, |t| t.insert_certificate(&cert("shared", "04", None)));
    write(&*s, |t| t.delete_certificate(c1));
    assert!(!read(&*s, |t| t.name_in_use("c1")));
    write(&*s, |t| t.insert_template("c1", "{}"));
    assert!(read(&*s, |t| t.name_in_use("c1")));

    // consumed and reused in one transaction: the template becomes the certificate
    let tpl = write(&*s, |t| t.insert_template("signed", "{}"));
    write(&*s, |t| {
        assert!(t.delete_template(tpl)?);
        t.insert_certificate(&cert("signed", "05", None))
    });
    assert_eq!(read(&*s, |t| t.template("signed")), None);
    assert!(read(&*s, |t| t.certificate("signed")).is_some());
}

/// Certificates: insert, by name/id/fingerprint, listing, `issued_by`, keys given and taken,
/// delete; a serial once per issuing CA.
fn certificates<B: Backend>() {
    let backend = B::fresh();
    let s = backend.open();
    let (ca, a, b) = write(&*s, |t| {
        let ca = t.insert_certificate(&ca_cert("ca", "0A"))?;
        let a = t.insert_certificate(&cert("a", "01", Some(ca)))?;
        let b = t.insert_certificate(&cert("b", "02", Some(ca)))?;
        Ok((ca, a, b))
    });

    let rec = read(&*s, |t| t.certificate("a")).expect("a is stored");
    assert_eq!(rec.id, a);
    assert_eq!(rec.cert, cert("a", "01", Some(ca)));
    assert_eq!(rec.revoked_at, None);
    assert!(rec.created_at > 0);
    read(&*s, |t| {
        assert_eq!(t.certificate_by_id(a)?.as_ref(), Some(&rec));
        assert_eq!(
            t.certificate_by_fingerprint(&fingerprint("a"))?.as_ref(),
            Some(&rec)
        );
        assert_eq!(t.certificate("nobody")?, None);
        assert_eq!(t.certificate_by_id(ca + a + b + 1000)?, None);
        assert_eq!(t.certificate_by_fingerprint(&fingerprint("nobody"))?, None);
        assert_eq!(t.certificate("ca")?.unwrap().cert, ca_cert("ca", "0A"));
        let all = t.certificates()?;
        let names: Vec<_> = all.iter().map(|c| c.cert.name.as_str()).collect();
        assert_eq!(names, ["ca", "a", "b"], "creation order");
        assert_eq!(all[1], rec);
        assert_eq!(sorted(t.issued_by(ca)?), sorted(vec![a, b]));
        assert!(t.issued_by(a)?.is_empty());
        Ok(())
    });

    // a key given after the certificate, and taken away
    write(&*s, |t| {
        t.insert_key(&soft_key("k1"))?;
        t.set_certificate_key(a, "k1")
    });
    assert_eq!(
        read(&*s, |t| t.certificate_by_id(a))
            .unwrap()
            .cert
            .key_id
            .as_deref(),
        Some("k1")
    );
    // only to a certificate without one: a second key (given meanwhile) is a conflict
    let mut t = s.begin(TxnMode::Write).unwrap();
    t.insert_key(&soft_key("k1b")).unwrap();
    assert!(matches!(
        t.set_certificate_key(a, "k1b"),
        Err(StoreError::Conflict)
    ));
    drop(t);
    write(&*s, |t| t.clear_certificate_key(a));
    assert_eq!(
        read(&*s, |t| t.certificate_by_id(a)).unwrap().cert.key_id,
        None
    );
    assert!(read(&*s, |t| t.key("k1")).is_some(), "the key row stays");
    // a key from the start
    let with_key = NewCertificate {
        key_id: Some("k1".to_owned()),
        ..cert("keyed", "03", Some(ca))
    };
    let keyed = write(&*s, |t| t.insert_certificate(&with_key));
    assert_eq!(
        read(&*s, |t| t.certificate_by_id(keyed)).unwrap().cert,
        with_key
    );

    // a serial once per issuing CA
    assert_duplicate(refused(&*s, |t| {
        t.insert_certificate(&cert("a-again", "01", Some(ca)))
    }));
    assert!(!read(&*s, |t| t.name_in_use("a-again")));
    assert_eq!(read(&*s, |t| t.issued_by(ca)).len(), 3);
    // the same serial from another CA is another certificate
    let ca2 = write(&*s, |t| t.insert_certificate(&ca_cert("ca2", "0B")));
    let a2 = write(&*s, |t| {
        t.insert_certificate(&cert("a-by-ca2", "01", Some(ca2)))
    });
    assert_eq!(read(&*s, |t| t.issued_by(ca2)), [a2]);
    // certificates with no local issuer (imported) do not share a serial space
    write(&*s, |t| t.insert_certificate(&ca_cert("root-x", "01")));
    write(&*s, |t| t.insert_certificate(&ca_cert("root-y", "01")));
    // a certificate is held once: the same one (fingerprint) under another name is refused,
    // and the name it tried stays free
    assert_duplicate(refused(&*s, |t| {
        t.insert_certificate(&NewCertificate {
            name: "root-x-again".to_owned(),
            ..ca_cert("root-x", "01")
        })
    }));
    assert!(!read(&*s, |t| t.name_in_use("root-x-again")));

    // delete
    write(&*s, |t| t.delete_certificate(b));
    read(&*s, |t| {
        assert_eq!(t.certificate("b")?, None);
        assert_eq!(t.certificate_by_id(b)?, None);
        assert_eq!(t.certificate_by_fingerprint(&fingerprint("b"))?, None);
        assert!(!t.name_in_use("b")?);
        assert_eq!(sorted(t.issued_by(ca)?), sorted(vec![a, keyed]));
        let names: Vec<_> = t.certificates()?.into_iter().map(|c| c.cert.name).collect();
        assert_eq!(
            names,
            ["ca", "a", "keyed", "ca2", "a-by-ca2", "root-x", "root-y"]
        );
        Ok(())
    });
    // by issuer and serial: the same serial under two CAs is two certificates
    read(&*s, |t| {
        assert_eq!(t.certificate_by_serial(ca, "01")?.map(|c| c.id), Some(a));
        let by_ca2 = t.certificate_by_serial(ca2, "01")?.map(|c| c.cert.name);
        assert_eq!(by_ca2.as_deref(), Some("a-by-ca2"));
        assert_eq!(t.certificate_by_serial(ca, "02")?, None);
        Ok(())
    });
    // its serial is free again under its CA
    write(&*s, |t| t.insert_certificate(&cert("b2", "02", Some(ca))));
}

/// Keys: insert, get, delete; `key_users` counts the certificates and requests using a key.
fn keys<B: Backend>() {
    let backend = B::fresh();
    let s = backend.open();
    write(&*s, |t| {
        t.insert_key(&soft_key("k1"))?;
        t.insert_key(&token_key("k2"))
    });
    read(&*s, |t| {
        assert_eq!(t.key("k1")?, Some(soft_key("k1")));
        assert_eq!(t.key("k2")?, Some(token_key("k2")));
        assert_eq!(t.key("k3")?, None);
        assert_eq!(t.key_users("k1")?, 0);
        Ok(())
    });

    let keyed = |name: &str, serial: &str| NewCertificate {
        key_id: Some("k1".to_owned()),
        ..cert(name, serial, None)
    };
    let c1 = write(&*s, |t| t.insert_certificate(&keyed("c1", "01")));
    assert_eq!(read(&*s, |t| t.key_users("k1")), 1);
    write(&*s, |t| t.insert_request(&request("r1", Some("k1"))));
    assert_eq!(read(&*s, |t| t.key_users("k1")), 2);
    write(&*s, |t| t.insert_certificate(&keyed("c2", "02")));
    write(&*s, |t| t.insert_request(&request("r2", None)));
    assert_eq!(read(&*s, |t| t.key_users("k1")), 3);
    assert_eq!(read(&*s, |t| t.key_users("k2")), 0);
    write(&*s, |t| t.clear_certificate_key(c1));
    assert_eq!(read(&*s, |t| t.key_users("k1")), 2);
    write(&*s, |t| t.set_certificate_key(c1, "k2"));
    assert_eq!(read(&*s, |t| t.key_users("k2")), 1);
    write(&*s, |t| t.delete_certificate(c1));
    assert_eq!(read(&*s, |t| t.key_users("k2")), 0);

    // a key's URI changes (set pin-source=), its id stays; a key gone is a conflict
    write(&*s, |t| {
        t.set_key_uri("k2", "pkcs11:token=t;id=%02?pin-source=env:P")
    });
    assert_eq!(
        read(&*s, |t| t.key("k2")).map(|k| k.uri),
        Some("pkcs11:token=t;id=%02?pin-source=env:P".to_owned())
    );
    let mut t = s.begin(TxnMode::Write).unwrap();
    assert_conflict(t.set_key_uri("nope", "x").unwrap_err());
    drop(t);

    write(&*s, |t| t.delete_key("k2"));
    assert_eq!(read(&*s, |t| t.key("k2")), None);
    assert_eq!(read(&*s, |t| t.key("k1")), Some(soft_key("k1")));
}

/// Requests, keys imported still encrypted, CA export passphrases.
fn requests_encrypted_keys_passphrases<B: Backend>() {
    let backend = B::fresh();
    let s = backend.open();

    // requests
    assert!(read(&*s, |t| t.requests()).is_empty());
    let (r1, r2) = write(&*s, |t| {
        t.insert_key(&soft_key("k1"))?;
        Ok((
            t.insert_request(&request("one", Some("k1")))?,
            t.insert_request(&request("two", None))?,
        ))
    });
    assert_ne!(r1, r2);
    let mut got = read(&*s, |t| t.requests());
    got.sort_by_key(|r| r.id);
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].id, &got[0].request),
        (r1, &request("one", Some("k1")))
    );
    assert_eq!((got[1].id, &got[1].request), (r2, &request("two", None)));
    assert!(got.iter().all(|r| r.created_at > 0));

    // encrypted keys
    let ca = write(&*s, |t| t.insert_certificate(&ca_cert("ca", "01")));
    let imported = write(&*s, |t| t.insert_certificate(&cert("imported", "02", None)));
    assert!(read(&*s, |t| t.encrypted_keys()).is_empty());
    let (e1, e2) = write(&*s, |t| {
        Ok((
            t.insert_encrypted_key(b"encrypted one", None)?,
            t.insert_encrypted_key(b"encrypted two", Some(ca))?,
        ))
    });
    let enc = |s: &dyn Store| {
        let mut v = read(s, |t| t.encrypted_keys());
        v.sort_by_key(|k| k.id);
        v
    };
    let keys = enc(&*s);
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].id, e1);
    assert_eq!(keys[0].sealed, b"encrypted one");
    assert_eq!(keys[0].hint_certificate_id, None);
    assert_eq!(
        (keys[0].key_id.as_deref(), keys[0].certificate_id),
        (None, None)
    );
    assert_eq!(keys[1].id, e2);
    assert_eq!(keys[1].sealed, b"encrypted two");
    assert_eq!(keys[1].hint_certificate_id, Some(ca));
    assert_eq!(
        (keys[1].key_id.as_deref(), keys[1].certificate_id),
        (None, None)
    );

    // decrypted: the copy is recorded, then dropped
    write(&*s, |t| {
        t.insert_key(&soft_key("k2"))?;
        t.set_encrypted_key_copy(e1, Some("k2"), Some(imported))
    });
    let keys = enc(&*s);
    assert_eq!(keys[0].key_id.as_deref(), Some("k2"));
    assert_eq!(keys[0].certificate_id, Some(imported));
    assert_eq!(keys[0].sealed, b"encrypted one");
    assert_eq!(keys[1].key_id, None, "the other encrypted key is untouched");
    write(&*s, |t| t.set_encrypted_key_copy(e1, None, None));
    let keys = enc(&*s);
    assert_eq!(
        (keys[0].key_id.as_deref(), keys[0].certificate_id),
        (None, None)
    );
    assert_eq!(keys[0].sealed, b"encrypted one");
    // deleting a certificate an encrypted key names leaves no key naming it
    write(&*s, |t| {
        t.set_encrypted_key_copy(e1, Some("k2"), Some(imported))
    });
    write(&*s, |t| t.delete_certificate(imported));
    assert!(enc(&*s)
        .iter()
        .all(|k| k.certificate_id != Some(imported) && k.hint_certificate_id != Some(imported)));

    // CA passphrases
    let ca2 = write(&*s, |t| t.insert_certificate(&ca_cert("ca2", "03")));
    assert_eq!(read(&*s, |t| t.ca_passphrase(ca)), None);
    write(&*s, |t| t.set_ca_passphrase(ca, b"sealed passphrase 1"));
    assert_eq!(
        read(&*s, |t| t.ca_passphrase(ca)).as_deref(),
        Some(&b"sealed passphrase 1"[..])
    );
    write(&*s, |t| t.set_ca_passphrase(ca, b"sealed passphrase 2"));
    assert_eq!(
        read(&*s, |t| t.ca_passphrase(ca)).as_deref(),
        Some(&b"sealed passphrase 2"[..])
    );
    assert_eq!(read(&*s, |t| t.ca_passphrase(ca2)), None);
}

/// Revocations: the certificate marked revoked, the record read back, revoked once; the CRL
/// entries of a CA, without those of certificates that expired and were revoked before the
/// cutoff.
fn revocations<B: Backend>() {
    let backend = B::fresh();
    let s = backend.open();
    let (ca, ca2) = write(&*s, |t| {
        Ok((
            t.insert_certificate(&ca_cert("ca", "01"))?,
            t.insert_certificate(&ca_cert("ca2", "02"))?,
        ))
    });
    let leaf = write(&*s, |t| t.insert_certificate(&cert("leaf", "10", Some(ca))));
    let other = write(&*s, |t| {
        t.insert_certificate(&cert("other", "11", Some(ca)))
    });

    let r = revocation(ca, leaf, NOW - 10, NOW + DAY);
    write(&*s, |t| t.insert_revocation(&r));
    read(&*s, |t| {
        assert_eq!(
            t.certificate_by_id(leaf)?.unwrap().revoked_at,
            Some(NOW - 10)
        );
        assert_eq!(t.certificate("leaf")?.unwrap().revoked_at, Some(NOW - 10));
        assert_eq!(t.revocation(leaf)?, Some(r.clone()));
        assert_eq!(t.certificate_by_id(other)?.unwrap().revoked_at, None);
        assert_eq!(t.revocation(other)?, None);
        Ok(())
    });
    // revoked once
    assert_duplicate(refused(&*s, |t| {
        t.insert_revocation(&revocation(ca, leaf, NOW, NOW + DAY))
    }));
    assert_eq!(read(&*s, |t| t.revocation(leaf)), Some(r.clone()));
    assert_eq!(
        read(&*s, |t| t.certificate_by_id(leaf)).unwrap().revoked_at,
        Some(NOW - 10)
    );

    // revocation_entries: an entry leaves when its certificate expired (not_after) AND was
    // revoked before the cutoff; "before" is strict.
    let cutoff = NOW;
    let cases: [(&str, i64, i64, bool); 6] = [
        // (name, not_after, revoked_at, listed at `cutoff`)
        ("valid-revoked-long-ago", cutoff + 100, cutoff - 100, true),
        ("expired-revoked-after", cutoff - 100, cutoff + 5, true),
        ("expired-revoked-before", cutoff - 100, cutoff - 50, false),
        ("expires-at-cutoff", cutoff, cutoff - 1, true),
        ("revoked-at-cutoff", cutoff - 1, cutoff, true),
        ("both-just-before", cutoff - 1, cutoff - 1, false),
    ];
    let mut listed = Vec::new();
    let mut all = vec![leaf];
    let ca2_leaf = write(&*s, |t| {
        for (i, (name, not_after, revoked_at, keep)) in cases.iter().enumerate() {
            let serial = format!("{:02X}", 0x20 + i);
            let id = t.insert_certificate(&cert(name, &serial, Some(ca)))?;
            t.insert_revocation(&revocation(ca, id, *revoked_at, *not_after))?;
            all.push(id);
            if *keep {
                listed.push(id);
            }
        }
        // another CA's revocation, expired and revoked long before
        let id = t.insert_certificate(&cert("by-ca2", "20", Some(ca2)))?;
        t.insert_revocation(&revocation(ca2, id, cutoff - 1000, cutoff - 1000))?;
        Ok(id)
    });
    listed.push(leaf); // not_after NOW + DAY

    let mut out = b"HEAD".to_vec();
    let n = read(&*s, |t| t.revocation_entries(ca, cutoff, &mut out));
    assert!(out.starts_with(b"HEAD"), "entries are appended");
    assert_eq!(entries_in(&out[4..]), expected_entries(&listed));
    assert_eq!(n, listed.len() as i64);

    let mut out = Vec::new();
    let n = read(&*s, |t| t.revocation_entries(ca, 0, &mut out));
    assert_eq!(entries_in(&out), expected_entries(&all));
    assert_eq!(n, all.len() as i64);

    let mut out = Vec::new();
    let n = read(&*s, |t| t.revocation_entries(ca, NOW + 2 * DAY, &mut out));
    assert_eq!(
        (n, out.len()),
        (0, 0),
        "everything expired and revoked before"
    );

    let mut out = Vec::new();
    let n = read(&*s, |t| t.revocation_entries(ca2, 0, &mut out));
    assert_eq!(entries_in(&out), expected_entries(&[ca2_leaf]));
    assert_eq!(n, 1);
    let mut out = Vec::new();
    let n = read(&*s, |t| t.revocation_entries(ca2, cutoff, &mut out));
    assert_eq!((n, out.len()), (0, 0));
}

/// CRLs: stored, read whole, as state, as summaries (no DER); the number only grows.
fn crls<B: Backend>() {
    let backend = B::fresh();
    let s = backend.open();
    let (ca, ca2) = write(&*s, |t| {
        Ok((
            t.insert_certificate(&ca_cert("ca", "01"))?,
            t.insert_certificate(&ca_cert("ca2", "02"))?,
        ))
    });
    read(&*s, |t| {
        assert_eq!(t.crl(ca)?, None);
        assert_eq!(t.crl_state(ca)?, None);
        assert!(t.crl_summaries()?.is_empty());
        Ok(())
    });

    write(&*s, |t| t.put_crl(&crl(ca, 1)));
    assert_eq!(read(&*s, |t| t.crl(ca)), Some(crl(ca, 1)));
    assert_eq!(
        read(&*s, |t| t.crl_state(ca)),
        Some((1, crl(ca, 1).this_update))
    );
    write(&*s, |t| t.put_crl(&crl(ca, 2)));
    assert_eq!(read(&*s, |t| t.crl(ca)), Some(crl(ca, 2)));
    write(&*s, |t| t.put_crl(&crl(ca2, 7)));
    assert_eq!(read(&*s, |t| t.crl(ca2)), Some(crl(ca2, 7)));
    assert_eq!(read(&*s, |t| t.crl(ca)), Some(crl(ca, 2)));

    let mut summaries = read(&*s, |t| t.crl_summaries());
    summaries.sort_by_key(|c| c.ca_id);
    let bare = |c: CrlRecord| CrlRecord {
        der: Vec::new(),
        ..c
    };
    let mut expected = vec![bare(crl(ca, 2)), bare(crl(ca2, 7))];
    expected.sort_by_key(|c| c.ca_id);
    assert_eq!(summaries, expected);

    // the number only grows
    let impostor = CrlRecord {
        der: b"another CRL #2".to_vec(),
        ..crl(ca, 2)
    };
    assert_conflict(refused(&*s, |t| t.put_crl(&impostor)));
    assert_conflict(refused(&*s, |t| t.put_crl(&crl(ca, 1))));
    assert_eq!(read(&*s, |t| t.crl(ca)), Some(crl(ca, 2)));
    assert_eq!(
        read(&*s, |t| t.crl_state(ca)),
        Some((2, crl(ca, 2).this_update))
    );
    // any higher number
    write(&*s, |t| t.put_crl(&crl(ca, 10)));
    assert_eq!(read(&*s, |t| t.crl(ca)), Some(crl(ca, 10)));
    assert_conflict(refused(&*s, |t| t.put_crl(&crl(ca, 9))));
    assert_eq!(read(&*s, |t| t.crl(ca2)), Some(crl(ca2, 7)));
}

/// Presigned CRL number `number` of CA `ca_id`, due `number` days after [`NOW`].
fn presigned(ca_id: i64, number: u64) -> CrlSeriesRecord {
    CrlSeriesRecord {
        ca_id,
        number,
        this_update: NOW + number as i64 * DAY,
        next_update: NOW + (number as i64 + 2) * DAY,
        entries: 3,
        der: format!("presigned CRL #{number} of CA {ca_id}").into_bytes(),
        signed_at: NOW,
    }
}

/// Presigned series: stored whole (under the CA's lock), listed without DER, the due one read
/// with its DER; a number is taken once (above the current CRL's and the replaced series');
/// a series goes with its CA.
fn crl_series<B: Backend>() {
    let backend = B::fresh();
    let s = backend.open();
    let (ca, ca2) = write(&*s, |t| {
        Ok((
            t.insert_certificate(&ca_cert("ca", "01"))?,
            t.insert_certificate(&ca_cert("ca2", "02"))?,
        ))
    });
    read(&*s, |t| {
        assert!(t.crl_series(ca)?.is_empty());
        assert!(t.crl_series_summaries()?.is_empty());
        assert_eq!(t.crl_series_last_number(ca)?, None);
        assert_eq!(t.due_crl_series(ca, NOW + 100 * DAY)?, None);
        Ok(())
    });
    write(&*s, |t| t.put_crl(&crl(ca, 1)));
    let series: Vec<_> = (2..=4).map(|n| presigned(ca, n)).collect();
    write(&*s, |t| {
        t.lock(Lock::Ca(ca))?;
        t.replace_crl_series(ca, &series)
    });
    write(&*s, |t| {
        t.lock(Lock::Ca(ca2))?;
        t.replace_crl_series(ca2, &[presigned(ca2, 1)])
    });
    let bare = |r: &CrlSeriesRecord| CrlSeriesRecord {
        der: Vec::new(),
        ..r.clone()
    };
    assert_eq!(
        read(&*s, |t| t.crl_series(ca)),
        series.iter().map(bare).collect::<Vec<_>>()
    );
    let mut all: Vec<_> = series.iter().map(bare).collect();
    all.push(bare(&presigned(ca2, 1)));
    all.sort_by_key(|r| (r.ca_id, r.number));
    assert_eq!(read(&*s, |t| t.crl_series_summaries()), all);
    assert_eq!(read(&*s, |t| t.crl_series_last_number(ca)), Some(4));
    // the due one: the highest number whose thisUpdate has come, with its DER
    read(&*s, |t| {
        assert_eq!(t.due_crl_series(ca, NOW + DAY)?, None);
        assert_eq!(t.due_crl_series(ca, NOW + 2 * DAY)?, Some(presigned(ca, 2)));
        assert_eq!(
            t.due_crl_series(ca, NOW + 3 * DAY + 5)?,
            Some(presigned(ca, 3))
        );
        assert_eq!(
            t.due_crl_series(ca, NOW + 40 * DAY)?,
            Some(presigned(ca, 4))
        );
        assert_eq!(
            t.due_crl_series(ca2, NOW + 40 * DAY)?,
            Some(presigned(ca2, 1))
        );
        Ok(())
    });
    // a number is taken once: not again by a new series (nor at or below the current CRL's)
    for bad in [
        vec![presigned(ca, 4), presigned(ca, 5)],
        vec![presigned(ca, 1)],
    ] {
        assert_conflict(refused(&*s, |t| {
            t.lock(Lock::Ca(ca))?;
            t.replace_crl_series(ca, &bad)
        }));
    }
    // nor another CA's rows under this one
    assert_conflict(refused(&*s, |t| {
        t.lock(Lock::Ca(ca))?;
        t.replace_crl_series(ca, &[presigned(ca2, 9)])
    }));
    // nor twice in one series
    assert_duplicate(refused(&*s, |t| {
        t.lock(Lock::Ca(ca))?;
        t.replace_crl_series(ca, &[presigned(ca, 7), presigned(ca, 7)])
    }));
    assert_eq!(read(&*s, |t| t.crl_series_last_number(ca)), Some(4));
    // a new series replaces the old one whole
    write(&*s, |t| {
        t.lock(Lock::Ca(ca))?;
        t.replace_crl_series(ca, &[presigned(ca, 5), presigned(ca, 6)])
    });
    assert_eq!(
        read(&*s, |t| t.crl_series(ca)),
        vec![bare(&presigned(ca, 5)), bare(&presigned(ca, 6))]
    );
    // a CRL past the series: the series' numbers stay below it
    write(&*s, |t| t.put_crl(&crl(ca, 7)));
    assert_conflict(refused(&*s, |t| {
        t.lock(Lock::Ca(ca))?;
        t.replace_crl_series(ca, &[presigned(ca, 7)])
    }));
    // a series goes with its CA
    write(&*s, |t| t.delete_certificate(ca2));
    read(&*s, |t| {
        assert!(t.crl_series(ca2)?.is_empty());
        assert_eq!(t.due_crl_series(ca2, NOW + 40 * DAY)?, None);
        assert_eq!(t.crl_series_summaries()?.len(), 2);
        Ok(())
    });
}

/// CRL paths: claimed once; a second CA claiming a held path gets the holder back.
fn crl_paths<B: Backend>() {
    let backend = B::fresh();
    let s = backend.open();
    let (ca, ca2) = write(&*s, |t| {
        Ok((
            t.insert_certificate(&ca_cert("ca", "01"))?,
            t.insert_certificate(&ca_cert("ca2", "02"))?,
        ))
    });
    assert_eq!(read(&*s, |t| t.crl_path_owner("/crl/ca.crl")), None);
    assert_eq!(write(&*s, |t| t.claim_crl_path("/crl/ca.crl", ca)), ca);
    assert_eq!(read(&*s, |t| t.crl_path_owner("/crl/ca.crl")), Some(ca));
    // held: the holder comes back
    assert_eq!(write(&*s, |t| t.claim_crl_path("/crl/ca.crl", ca2)), ca);
    assert_eq!(read(&*s, |t| t.crl_path_owner("/crl/ca.crl")), Some(ca));
    // claimed again by its holder
    assert_eq!(write(&*s, |t| t.claim_crl_path("/crl/ca.crl", ca)), ca);
    // a CA may hold several paths (kept across renames)
    assert_eq!(
        write(&*s, |t| t.claim_crl_path("/crl/ca renamed.crl", ca)),
        ca
    );
    assert_eq!(write(&*s, |t| t.claim_crl_path("/crl/ca2.crl", ca2)), ca2);
    read(&*s, |t| {
        assert_eq!(t.crl_path_owner("/crl/ca.crl")?, Some(ca));
        assert_eq!(t.crl_path_owner("/crl/ca renamed.crl")?, Some(ca));
        assert_eq!(t.crl_path_owner("/crl/ca2.crl")?, Some(ca2));
        assert_eq!(t.crl_path_owner("/crl/nobody.crl")?, None);
        Ok(())
    });
    // what serve answers: the path's holder first, else the CA so named; none without a CRL
    assert_eq!(
        read(&*s, |t| t.served_crl("/crl/ca2.crl", Some("ca"))),
        None
    );
    write(&*s, |t| {
        t.put_crl(&crl(ca, 1))?;
        t.put_crl(&crl(ca2, 5))
    });
    let served = |path: &str, name: Option<&str>| {
        read(&*s, |t| t.served_crl(path, name)).map(|(n, c)| (n, c.ca_id, c.number, c.der))
    };
    assert_eq!(
        served("/crl/ca2.crl", Some("ca")),
        Some(("ca2".to_owned(), ca2, 5, crl(ca2, 5).der))
    );
    assert_eq!(
        served("/crl/unclaimed.crl", Some("ca")),
        Some(("ca".to_owned(), ca, 1, crl(ca, 1).der))
    );
    assert_eq!(served("/crl/unclaimed.crl", Some("nobody")), None);
    assert_eq!(served("/crl/unclaimed.crl", None), None);
}

/// Settings, and CRLs downloaded for trusted certificates.
fn settings_and_downloaded_crls<B: Backend>() {
    let backend = B::fresh();
    let s = backend.open();
    assert_eq!(read(&*s, |t| t.setting("crl-use")), None);
    write(&*s, |t| t.set_setting("crl-use", "yes"));
    write(&*s, |t| t.set_setting("crl-download", "no"));
    assert_eq!(read(&*s, |t| t.setting("crl-use")).as_deref(), Some("yes"));
    write(&*s, |t| t.set_setting("crl-use", "no"));
    assert_eq!(read(&*s, |t| t.setting("crl-use")).as_deref(), Some("no"));
    assert_eq!(
        read(&*s, |t| t.setting("crl-download")).as_deref(),
        Some("no")
    );

    let (x, y, z) = write(&*s, |t| {
        Ok((
            t.insert_certificate(&ca_cert("x", "01"))?,
            t.insert_certificate(&ca_cert("y", "02"))?,
            t.insert_certificate(&ca_cert("z", "03"))?,
        ))
    });
    read(&*s, |t| {
        assert!(t.downloaded_crls()?.is_empty());
        assert!(t.certificates_with_crl()?.is_empty());
        assert_eq!(t.downloaded_crl(x)?, None);
        Ok(())
    });
    let dx = downloaded(x, "http://crl.example.net/x.crl", Some(3));
    let dy = downloaded(y, "http://crl.example.net/y.crl", None);
    write(&*s, |t| {
        t.put_downloaded_crl(&dx)?;
        t.put_downloaded_crl(&dy)
    });
    let by_id = |s: &dyn Store| {
        let mut v = read(s, |t| t.downloaded_crls());
        v.sort_by_key(|c| c.certificate_id);
        v
    };
    let mut expected = vec![dx.clone(), dy.clone()];
    expected.sort_by_key(|c| c.certificate_id);
    assert_eq!(by_id(&*s), expected);
    assert_eq!(read(&*s, |t| t.downloaded_crl(x)), Some(dx.clone()));
    assert_eq!(read(&*s, |t| t.downloaded_crl(z)), None);
    assert_eq!(
        sorted(read(&*s, |t| t.certificates_with_crl())),
        sorted(vec![x, y])
    );

    // replaces
    let dx2 = DownloadedCrlRecord {
        this_update: NOW,
        fetched_at: NOW + 60,
        entries: 9,
        ..downloaded(x, "http://crl2.example.net/x.crl", Some(4))
    };
    write(&*s, |t| t.put_downloaded_crl(&dx2));
    assert_eq!(read(&*s, |t| t.downloaded_crl(x)), Some(dx2.clone()));
    assert_eq!(by_id(&*s).len(), 2);
    assert_eq!(read(&*s, |t| t.downloaded_crl(y)), Some(dy));

    assert_eq!(write(&*s, |t| t.delete_downloaded_crls()), 2);
    read(&*s, |t| {
        assert!(t.downloaded_crls()?.is_empty());
        assert!(t.certificates_with_crl()?.is_empty());
        assert_eq!(t.downloaded_crl(x)?, None);
        Ok(())
    });
    assert_eq!(write(&*s, |t| t.delete_downloaded_crls()), 0);
}

/// Deleting a CA certificate (its issued certificates first, as the manager does) takes its
/// revocations, CRL, CRL paths, downloaded CRL and passphrase with it, and nothing of another
/// CA's.
fn ca_deletion_cascades<B: Backend>() {
    let backend = B::fresh();
    let s = backend.open();
    let (ca, revoked, kept, other) = write(&*s, |t| {
        let ca = t.insert_certificate(&ca_cert("ca", "01"))?;
        let revoked = t.insert_certificate(&cert("revoked", "10", Some(ca)))?;
        let kept = t.insert_certificate(&cert("kept", "11", Some(ca)))?;
        let other = t.insert_certificate(&ca_cert("other", "02"))?;
        Ok((ca, revoked, kept, other))
    });
    let other_leaf = write(&*s, |t| {
        t.insert_certificate(&cert("other-leaf", "10", Some(other)))
    });
    write(&*s, |t| {
        for (ca_id, leaf, name) in [(ca, revoked, "ca"), (other, other_leaf, "other")] {
            t.lock(Lock::Ca(ca_id))?;
            t.insert_revocation(&revocation(ca_id, leaf, NOW, NOW + DAY))?;
            t.put_crl(&crl(ca_id, 1))?;
            assert_eq!(t.claim_crl_path(&format!("/crl/{name}.crl"), ca_id)?, ca_id);
            assert_eq!(
                t.claim_crl_path(&format!("/crl/{name}-old.crl"), ca_id)?,
                ca_id
            );
            t.put_downloaded_crl(&downloaded(ca_id, &format!("http://h/{name}.crl"), Some(1)))?;
            t.set_ca_passphrase(ca_id, b"sealed")?;
        }
        Ok(())
    });
    assert_eq!(
        sorted(read(&*s, |t| t.certificates_with_crl())),
        sorted(vec![ca, other])
    );

    write(&*s, |t| {
        for child in t.issued_by(ca)? {
            t.delete_certificate(child)?;
        }
        t.delete_certificate(ca)
    });

    read(&*s, |t| {
        for id in [ca, revoked, kept] {
            assert_eq!(t.certificate_by_id(id)?, None);
        }
        assert_eq!(t.revocation(revoked)?, None);
        let mut out = Vec::new();
        assert_eq!(t.revocation_entries(ca, 0, &mut out)?, 0);
        assert!(out.is_empty());
        assert_eq!(t.crl(ca)?, None);
        assert_eq!(t.crl_state(ca)?, None);
        assert_eq!(t.crl_path_owner("/crl/ca.crl")?, None);
        assert_eq!(t.crl_path_owner("/crl/ca-old.crl")?, None);
        assert_eq!(t.downloaded_crl(ca)?, None);
        assert_eq!(t.ca_passphrase(ca)?, None);
        // the other CA keeps everything
        let bare = CrlRecord {
            der: Vec::new(),
            ..crl(other, 1)
        };
        assert_eq!(t.crl_summaries()?, vec![bare]);
        assert_eq!(t.certificates_with_crl()?, vec![other]);
        assert_eq!(t.downloaded_crls()?.len(), 1);
        assert_eq!(t.revocation(other_leaf)?.map(|r| r.ca_id), Some(other));
        let mut out = Vec::new();
        assert_eq!(t.revocation_entries(other, 0, &mut out)?, 1);
        assert_eq!(t.crl_path_owner("/crl/other.crl")?, Some(other));
        assert_eq!(t.ca_passphrase(other)?.as_deref(), Some(&b"sealed"[..]));
        Ok(())
    });

    // the name and the paths are free for a new CA
    let new_ca = write(&*s, |t| t.insert_certificate(&ca_cert("ca", "03")));
    assert_eq!(
        write(&*s, |t| t.claim_crl_path("/crl/ca.crl", new_ca)),
        new_ca
    );
    assert_eq!(read(&*s, |t| t.crl(new_ca)), None);
    assert_eq!(read(&*s, |t| t.ca_passphrase(new_ca)), None);
}

/// A transaction dropped uncommitted leaves nothing behind, on its handle or another.
fn dropped_transaction_rolls_back<B: Backend>() {
    let backend = B::fresh();
    let s = backend.open();
    let ca = write(&*s, |t| t.insert_certificate(&ca_cert("ca", "01")));
    {
        let mut t = s.begin(TxnMode::Write).unwrap();
        t.insert_template("gone", "{}").unwrap();
        t.insert_certificate(&cert("gone-too", "02", Some(ca)))
            .unwrap();
        t.set_setting("crl-use", "yes").unwrap();
        t.put_crl(&crl(ca, 1)).unwrap();
        assert!(
            t.name_in_use("gone").unwrap(),
            "a transaction sees its own writes"
        );
        assert_eq!(t.crl_state(ca).unwrap().map(|c| c.0), Some(1));
    }
    let s2 = backend.open();
    for store in [&s, &s2] {
        read(&**store, |t| {
            assert!(!t.name_in_use("gone")?);
            assert!(!t.name_in_use("gone-too")?);
            assert!(t.templates()?.is_empty());
            assert_eq!(t.certificates()?.len(), 1);
            assert_eq!(t.setting("crl-use")?, None);
            assert_eq!(t.crl(ca)?, None);
            Ok(())
        });
    }
    // the handle is usable, and the rolled-back names and numbers are free
    write(&*s, |t| {
        t.insert_template("gone", "{}")?;
        t.put_crl(&crl(ca, 1))
    });
    assert!(read(&*s2, |t| t.name_in_use("gone")));
}

/// A committed transaction is visible to a new handle, and to a handle opened after every
/// handle was closed.
fn committed_transaction_is_durable<B: Backend>() {
    let backend = B::fresh();
    let s = backend.open();
    let (tpl, ca) = write(&*s, |t| {
        let tpl = t.insert_template("kept", r#"{"a":1}"#)?;
        let ca = t.insert_certificate(&ca_cert("ca", "01"))?;
        t.put_crl(&crl(ca, 3))?;
        t.set_setting("crl-use", "yes")?;
        Ok((tpl, ca))
    });
    let check = |store: &dyn Store| {
        read(store, |t| {
            assert_eq!(t.template("kept")?.map(|r| r.id), Some(tpl));
            assert_eq!(t.certificate("ca")?.map(|r| r.id), Some(ca));
            assert_eq!(t.crl(ca)?, Some(crl(ca, 3)));
            assert_eq!(t.setting("crl-use")?.as_deref(), Some("yes"));
            Ok(())
        })
    };
    let s2 = backend.open();
    check(&*s2);
    drop(s);
    drop(s2);
    check(&*backend.open());
}

/// A read transaction sees one snapshot: a write committed meanwhile (on another handle, not
/// blocked by the reader) shows only in the next transaction.
fn read_transaction_is_a_snapshot<B: Backend>() {
    let backend = B::fresh();
    let (reader, writer) = (backend.open(), backend.open());
    let ca = write(&*writer, |t| t.insert_certificate(&ca_cert("ca", "01")));
    write(&*writer, |t| t.put_crl(&crl(ca, 1)));

    let snapshot = reader.begin(TxnMode::Read).unwrap();
    assert_eq!(snapshot.templates().unwrap().len(), 0);
    assert_eq!(snapshot.certificates().unwrap().len(), 1);
    assert_eq!(snapshot.crl_state(ca).unwrap().map(|c| c.0), Some(1));

    write(&*writer, |t| {
        t.insert_template("new", "{}")?;
        t.insert_certificate(&cert("leaf", "02", Some(ca)))?;
        t.put_crl(&crl(ca, 2))
    });

    assert_eq!(snapshot.templates().unwrap().len(), 0);
    assert!(!snapshot.name_in_use("new").unwrap());
    assert_eq!(snapshot.certificate("leaf").unwrap(), None);
    assert_eq!(snapshot.certificates().unwrap().len(), 1);
    assert_eq!(snapshot.crl(ca).unwrap(), Some(crl(ca, 1)));
    drop(snapshot);

    read(&*reader, |t| {
        assert!(t.name_in_use("new")?);
        assert_eq!(t.certificates()?.len(), 2);
        assert_eq!(t.crl(ca)?, Some(crl(ca, 2)));
        Ok(())
    });
}

/// THREADS × ROUNDS transactions each lock the CA, read its CRL number and store the next:
/// no number is handed out twice, none is skipped.
fn concurrent_crl_numbers<B: Backend>() {
    let backend = B::fresh();
    let s = backend.open();
    let ca = write(&*s, |t| t.insert_certificate(&ca_cert("ca", "01")));
    let stores = handles(&backend, THREADS);
    let per_thread = race(&stores, |_, store| {
        (0..ROUNDS)
            .map(|_| {
                write_retrying(store, |t| {
                    t.lock(Lock::Ca(ca))?;
                    let next = t.crl_state(ca)?.map_or(0, |(n, _)| n) + 1;
                    t.put_crl(&crl(ca, next))?;
                    Ok(next)
                })
                .expect("a CRL number transaction")
            })
            .collect::<Vec<u64>>()
    });
    for numbers in &per_thread {
        assert!(
            numbers.windows(2).all(|w| w[0] < w[1]),
            "one thread's numbers grow: {numbers:?}"
        );
    }
    let all = sorted(per_thread.concat());
    let total = (THREADS * ROUNDS) as u64;
    assert_eq!(all, (1..=total).collect::<Vec<_>>());
    assert_eq!(read(&*s, |t| t.crl(ca)), Some(crl(ca, total)));
}

/// THREADS transactions insert a template under the same name: one succeeds, the others get
/// `NameTaken`.
fn concurrent_name_claims<B: Backend>() {
    let backend = B::fresh();
    let stores = handles(&backend, THREADS);
    let outcomes = race(&stores, |i, store| {
        write_retrying(store, |t| {
            t.insert_template("contested", &format!(r#"{{"thread":{i}}}"#))
        })
    });
    let mut winner = None;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(id) => {
                assert!(winner.is_none(), "two threads took the name");
                winner = Some((i, id));
            }
            Err(e) => assert_name_taken(e, "contested"),
        }
    }
    let (i, id) = winner.expect("one thread takes the name");
    let templates = read(&*stores[0], |t| t.templates());
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0].id, id);
    assert_eq!(templates[0].properties, format!(r#"{{"thread":{i}}}"#));
}

/// THREADS transactions delete (consume) the same template: exactly one sees it there.
fn concurrent_template_consumption<B: Backend>() {
    let backend = B::fresh();
    let s = backend.open();
    let id = write(&*s, |t| t.insert_template("once", "{}"));
    let stores = handles(&backend, THREADS);
    let outcomes = race(&stores, |_, store| {
        write_retrying(store, |t| t.delete_template(id)).expect("delete_template")
    });
    assert_eq!(
        outcomes.iter().filter(|&&deleted| deleted).count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(read(&*s, |t| t.template("once")), None);
    assert!(!read(&*s, |t| t.name_in_use("once")));
}

/// THREADS CAs claim the same CRL path at once: all are told the same holder, one of them.
fn concurrent_crl_path_claims<B: Backend>() {
    let backend = B::fresh();
    let s = backend.open();
    let cas = write(&*s, |t| {
        (0..THREADS)
            .map(|i| t.insert_certificate(&ca_cert(&format!("ca{i}"), &format!("{i:02X}"))))
            .collect::<Result<Vec<i64>>>()
    });
    let stores = handles(&backend, THREADS);
    let owners = race(&stores, |i, store| {
        write_retrying(store, |t| t.claim_crl_path("/crl/contested.crl", cas[i]))
            .expect("claim_crl_path")
    });
    let owner = owners[0];
    assert!(owners.iter().all(|&o| o == owner), "{owners:?}");
    assert!(cas.contains(&owner));
    assert_eq!(
        read(&*s, |t| t.crl_path_owner("/crl/contested.crl")),
        Some(owner)
    );
}

/// THREADS transactions revoke the same certificate: one succeeds, the others get
/// `Duplicate`; the stored revocation is the winner's.
fn concurrent_revocations<B: Backend>() {
    let backend = B::fresh();
    let s = backend.open();
    let (ca, leaf) = write(&*s, |t| {
        let ca = t.insert_certificate(&ca_cert("ca", "01"))?;
        Ok((ca, t.insert_certificate(&cert("leaf", "02", Some(ca)))?))
    });
    let stores = handles(&backend, THREADS);
    let outcomes = race(&stores, |i, store| {
        write_retrying(store, |t| {
            t.lock(Lock::Ca(ca))?;
            t.insert_revocation(&revocation(ca, leaf, NOW + i as i64, NOW + DAY))
        })
    });
    let mut winner = None;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(()) => {
                assert!(winner.is_none(), "revoked twice");
                winner = Some(i);
            }
            Err(e) => assert_duplicate(e),
        }
    }
    let i = winner.expect("one thread revokes") as i64;
    assert_eq!(
        read(&*s, |t| t.revocation(leaf)),
        Some(revocation(ca, leaf, NOW + i, NOW + DAY))
    );
    assert_eq!(
        read(&*s, |t| t.certificate_by_id(leaf)).unwrap().revoked_at,
        Some(NOW + i)
    );
    let mut out = Vec::new();
    assert_eq!(read(&*s, |t| t.revocation_entries(ca, 0, &mut out)), 1);
}

/// THREADS transactions insert certificates under different names with the same serial from
/// the same CA: one succeeds, the others get `Duplicate`.
fn concurrent_serials<B: Backend>() {
    let backend = B::fresh();
    let s = backend.open();
    let ca = write(&*s, |t| t.insert_certificate(&ca_cert("ca", "01")));
    let stores = handles(&backend, THREADS);
    let outcomes = race(&stores, |i, store| {
        write_retrying(store, |t| {
            t.insert_certificate(&cert(&format!("leaf{i}"), "77", Some(ca)))
        })
    });
    let mut winner = None;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(id) => {
                assert!(winner.is_none(), "one serial issued twice");
                winner = Some((i, id));
            }
            Err(e) => assert_duplicate(e),
        }
    }
    let (i, id) = winner.expect("one thread inserts");
    assert_eq!(read(&*s, |t| t.issued_by(ca)), [id]);
    assert_eq!(
        read(&*s, |t| t.certificate_by_id(id)).unwrap().cert.name,
        format!("leaf{i}")
    );
    // the losers' names were not kept
    for j in (0..THREADS).filter(|&j| j != i) {
        assert!(!read(&*s, |t| t.name_in_use(&format!("leaf{j}"))));
    }
}

/// THREADS transactions give their own key to the same keyless certificate: one does, the
/// others get `Conflict` (and their key rows go with their transactions).
fn concurrent_key_gifts<B: Backend>() {
    let backend = B::fresh();
    let s = backend.open();
    let c = write(&*s, |t| t.insert_certificate(&cert("keyless", "01", None)));
    let stores = handles(&backend, THREADS);
    let outcomes = race(&stores, |i, store| {
        write_retrying(store, |t| {
            t.insert_key(&soft_key(&format!("k{i}")))?;
            t.set_certificate_key(c, &format!("k{i}"))
        })
    });
    let winners: Vec<usize> = (0..THREADS).filter(|&i| outcomes[i].is_ok()).collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    for o in &outcomes {
        assert!(matches!(o, Ok(()) | Err(StoreError::Conflict)), "{o:?}");
    }
    let key = read(&*s, |t| t.certificate_by_id(c)).unwrap().cert.key_id;
    assert_eq!(key, Some(format!("k{}", winners[0])));
    assert_eq!(read(&*s, |t| t.key_uris()).len(), 1, "no key row left over");
}

#[path = "store_conformance/scep.rs"]
mod scep;
use scep::*;
#[path = "store_conformance/token_loss.rs"]
mod token_loss;
use token_loss::*;

#[path = "store_conformance/scep_client.rs"]
mod scep_client;
use scep_client::*;

// ---------------------------------------------------------------------------------------------
// Every check, on every backend
// ---------------------------------------------------------------------------------------------

/// `conformance_suite!(module, BackendType)`: a `#[test]` per check, in `mod module`.
/// One handle of the store leads a job at a time; the job is another handle's once the leader
/// is dropped (its connection closed: the server frees the lock as the session ends, so the
/// handover is awaited a little).
fn one_leader_per_job<B: Backend>() {
    let backend = B::fresh();
    let (first, second) = (backend.open(), backend.open());
    assert!(first.lead(Job::CrlRenewal).unwrap());
    assert!(first.lead(Job::CrlRenewal).unwrap(), "a leader stays one");
    assert!(!second.lead(Job::CrlRenewal).unwrap());
    assert!(
        second.lead(Job::ScepClients).unwrap(),
        "each job has its own leader"
    );
    assert!(!first.lead(Job::ScepClients).unwrap());
    drop(first);
    let start = std::time::Instant::now();
    while !second.lead(Job::CrlRenewal).unwrap() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "no handover within 5 s of the leader's end"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let third = backend.open();
    assert!(!third.lead(Job::CrlRenewal).unwrap());
    assert!(third.lead(Job::CrlDownload).unwrap());
}

/// `meta` values (a `piv:` sealing key's wrapped data key): insert-if-absent keeps the first
/// value, never replaces it, rolls back with its transaction, and leaves the salt alone.
fn meta_values<B: Backend>() {
    let backend = B::fresh();
    let s = backend.open();
    let name = "seal-wrap:00ff";
    assert_eq!(read(&*s, |t| t.meta_value(name)), None);
    {
        let mut txn = s.begin(TxnMode::Write).unwrap();
        assert_eq!(
            txn.insert_meta_if_absent(name, b"dropped").unwrap(),
            b"dropped"
        );
        // dropped: rolled back
    }
    assert_eq!(read(&*s, |t| t.meta_value(name)), None);
    assert_eq!(
        write(&*s, |t| t.insert_meta_if_absent(name, b"first")),
        b"first"
    );
    assert_eq!(
        write(&*s, |t| t.insert_meta_if_absent(name, b"second")),
        b"first"
    );
    assert_eq!(read(&*s, |t| t.meta_value(name)), Some(b"first".to_vec()));
    assert_eq!(
        read(&*backend.open(), |t| t.meta_value(name)),
        Some(b"first".to_vec())
    );
    // the store's own values are never replaced through it
    let salt = s.salt().to_vec();
    assert_eq!(write(&*s, |t| t.insert_meta_if_absent("salt", b"x")), salt);
    assert_eq!(backend.open().salt(), salt.as_slice());
}

/// THREADS handles insert different values under one meta name at once (nodes making the
/// store's data key together): one value is kept, and every one of them gets it back.
fn concurrent_meta_inserts<B: Backend>() {
    let backend = B::fresh();
    let stores = handles(&backend, THREADS);
    let kept = race(&stores, |i, store| {
        write_retrying(store, |t| {
            t.insert_meta_if_absent("seal-wrap:race", format!("value-{i}").as_bytes())
        })
        .expect("insert_meta_if_absent")
    });
    let stored = read(&*stores[0], |t| t.meta_value("seal-wrap:race")).expect("a value kept");
    assert!(
        kept.iter().all(|k| *k == stored),
        "each got the value kept: {kept:?}"
    );
    assert!(String::from_utf8(stored).unwrap().starts_with("value-"));
}

macro_rules! conformance_suite {
    ($module:ident, $backend:ident) => {
        conformance_suite!(@module $module, $backend;
            templates,
            one_namespace,
            certificates,
            keys,
            requests_encrypted_keys_passphrases,
            revocations,
            crls,
            crl_series,
            crl_paths,
            settings_and_downloaded_crls,
            ca_deletion_cascades,
            dropped_transaction_rolls_back,
            committed_transaction_is_durable,
            read_transaction_is_a_snapshot,
            concurrent_crl_numbers,
            concurrent_name_claims,
            concurrent_template_consumption,
            concurrent_crl_path_claims,
            concurrent_revocations,
            concurrent_serials,
            concurrent_key_gifts,
            scep_servers,
            scep_otps,
            scep_requests,
            concurrent_otp_consumption,
            concurrent_request_grants,
            concurrent_scep_server_lock,
            scep_clients,
            concurrent_scep_client_updates,
            certificate_replacement,
            one_leader_per_job,
            meta_values,
            concurrent_meta_inserts,
            token_keys_by_serial,
            compromise_marks,
            concurrent_compromise_marks,
        );
    };
    (@module $module:ident, $backend:ident; $($check:ident),* $(,)?) => {
        mod $module {
            $(
                #[test]
                fn $check() {
                    if super::available::<super::$backend>(
                        concat!(stringify!($module), "::", stringify!($check)),
                    ) {
                        super::$check::<super::$backend>()
                    }
                }
            )*
        }
    };
}

conformance_suite!(sqlite, SqliteBackend);
conformance_suite!(postgres, PgBackend);

//! The SCEP part of the store contract (`src/store/scep.rs`): servers (a path held once; gone
//! with their CA), OTP hashes (consumed once, only while unexpired and for their server),
//! the request queue (moved by compare-and-set), on every backend.

use std::sync::atomic::{AtomicUsize, Ordering};

use certman::store::{Lock, NewScepRequest, NewScepServer, Store, TxnMode};

use super::{
    assert_duplicate, ca_cert, cert, handles, race, read, write, write_retrying, Backend, ROUNDS,
    THREADS,
};

fn server(path: &str, ca_id: i64) -> NewScepServer {
    NewScepServer {
        path: path.to_owned(),
        ca_id,
        ra_id: None,
        next_ca_id: None,
        days_valid: 1,
        request_lifetime: 300,
        disabled: false,
        upstream_id: None,
    }
}

fn request(server_id: i64, txid: &str, status: &str) -> NewScepRequest {
    NewScepRequest {
        server_id,
        transaction_id: txid.to_owned(),
        status: status.to_owned(),
        csr: format!("CSR of {txid}").into_bytes(),
        signer: b"signer".to_vec(),
        subject: "CN=x".into(),
        common_name: "x".into(),
        subject_alt_name: String::new(),
        fingerprint: "00".repeat(32),
    }
}

/// A CA with one SCEP server at /scep/test; (store, ca, server).
fn with_server<B: Backend>(backend: &B) -> (Box<dyn Store>, i64, i64) {
    let s = backend.open();
    let (ca, srv) = write(&*s, |t| {
        let ca = t.insert_certificate(&ca_cert("ca", "01"))?;
        let srv = t.insert_scep_server(&server("/scep/test", ca))?;
        Ok((ca, srv))
    });
    (s, ca, srv)
}

pub(super) fn scep_servers<B: Backend>() {
    let backend = B::fresh();
    let (s, ca, srv) = with_server(&backend);
    let (ra, next) = write(&*s, |t| {
        Ok((
            t.insert_certificate(&cert("ra", "10", Some(ca)))?,
            t.insert_certificate(&ca_cert("next", "02"))?,
        ))
    });
    // A path is held once, on insert and on update.
    let mut t = s.begin(TxnMode::Write).unwrap();
    assert_duplicate(t.insert_scep_server(&server("/scep/test", ca)).unwrap_err());
    drop(t);
    let other = write(&*s, |t| t.insert_scep_server(&server("/scep/other", ca)));
    let mut t = s.begin(TxnMode::Write).unwrap();
    assert_duplicate(
        t.update_scep_server(other, &server("/scep/test", ca))
            .unwrap_err(),
    );
    drop(t);
    let changed = NewScepServer {
        ra_id: Some(ra),
        next_ca_id: Some(next),
        days_valid: 30,
        request_lifetime: 3600,
        disabled: true,
        upstream_id: None,
        ..server("/scep/test", ca)
    };
    write(&*s, |t| t.update_scep_server(srv, &changed));
    let all = read(&*s, |t| t.scep_servers());
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id, srv);
    assert_eq!(all[0].server, changed);
    // A removed RA or next CA leaves the server without it.
    write(&*s, |t| {
        t.delete_certificate(ra)?;
        t.delete_certificate(next)
    });
    let srv_now = read(&*s, |t| t.scep_servers()).remove(0);
    assert_eq!(
        (srv_now.server.ra_id, srv_now.server.next_ca_id),
        (None, None)
    );
    // OTPs and requests go with their server; the server goes with its CA.
    write(&*s, |t| {
        t.insert_otp(Some(srv), b"hash-1", i64::MAX)?;
        t.insert_scep_request(&request(srv, "t1", "pending"), None)
    });
    assert!(write(&*s, |t| t.delete_scep_server(srv)));
    assert!(!write(&*s, |t| t.delete_scep_server(srv)));
    assert!(read(&*s, |t| t.otps()).is_empty());
    assert!(read(&*s, |t| t.scep_requests()).is_empty());
    write(&*s, |t| t.delete_certificate(ca));
    assert!(read(&*s, |t| t.scep_servers()).is_empty());
}

pub(super) fn scep_otps<B: Backend>() {
    let backend = B::fresh();
    let (s, ca, srv) = with_server(&backend);
    let other = write(&*s, |t| t.insert_scep_server(&server("/scep/other", ca)));
    let now = 1_000_000;
    write(&*s, |t| {
        t.insert_otp(Some(srv), b"for-test", now + 60)?;
        t.insert_otp(None, b"for-any", now + 60)?;
        t.insert_otp(Some(srv), b"expired", now - 1)
    });
    let mut t = s.begin(TxnMode::Write).unwrap();
    assert_duplicate(t.insert_otp(None, b"for-any", now).unwrap_err());
    drop(t);
    // Consumed only for its server, only unexpired, only once.
    assert!(!write(&*s, |t| t.consume_otp(b"for-test", other, now)));
    assert!(!write(&*s, |t| t.consume_otp(b"expired", srv, now)));
    assert!(!write(&*s, |t| t.consume_otp(b"unknown", srv, now)));
    assert!(write(&*s, |t| t.consume_otp(b"for-test", srv, now)));
    assert!(!write(&*s, |t| t.consume_otp(b"for-test", srv, now)));
    assert!(write(&*s, |t| t.consume_otp(b"for-any", other, now)));
    let used = read(&*s, |t| t.otp_by_hash(b"for-test")).expect("kept after use");
    assert_eq!(used.used_at, Some(now));
    assert_eq!(used.server_id, Some(srv));
    assert_eq!(read(&*s, |t| t.otps()).len(), 3);
    assert_eq!(read(&*s, |t| t.otp_by_hash(b"unknown")), None);
    // A consumption in a dropped transaction is undone.
    write(&*s, |t| t.insert_otp(None, b"undone", now + 60));
    {
        let mut t = s.begin(TxnMode::Write).unwrap();
        assert!(t.consume_otp(b"undone", srv, now).unwrap());
    }
    assert!(write(&*s, |t| t.consume_otp(b"undone", srv, now)));
}

pub(super) fn scep_requests<B: Backend>() {
    let backend = B::fresh();
    let (s, ca, srv) = with_server(&backend);
    let leaf = write(&*s, |t| {
        t.insert_certificate(&cert("issued_2", "10", Some(ca)))
    });
    let (first, second, issued) = write(&*s, |t| {
        Ok((
            t.insert_scep_request(&request(srv, "txn", "pending"), None)?,
            t.insert_scep_request(&request(srv, "txn", "pending"), None)?,
            t.insert_scep_request(&request(srv, "other", "issued"), Some(leaf))?,
        ))
    });
    assert!(first < second && second < issued);
    let newest = read(&*s, |t| t.scep_request_by_transaction(srv, "txn")).unwrap();
    assert_eq!(newest.id, second);
    assert_eq!(
        read(&*s, |t| t.scep_request_by_transaction(srv, "none")),
        None
    );
    assert_eq!(
        read(&*s, |t| t.scep_request(issued))
            .unwrap()
            .certificate_id,
        Some(leaf)
    );
    // Compare-and-set: only from the status it is in.
    assert!(!write(&*s, |t| t
        .move_scep_request(first, "granted", "issued", None)));
    assert!(write(&*s, |t| t.move_scep_request(
        first,
        "pending",
        "granted",
        Some(leaf)
    )));
    assert!(!write(&*s, |t| t
        .move_scep_request(first, "pending", "denied", None)));
    let r = read(&*s, |t| t.scep_request(first)).unwrap();
    assert_eq!(
        (r.request.status.as_str(), r.certificate_id),
        ("granted", Some(leaf))
    );
    assert!(r.updated_at >= r.created_at);
    // The queue's length without reading it; the newest by transaction id at any server.
    assert_eq!(read(&*s, |t| t.count_scep_requests(srv, "pending", 0)), 1);
    assert_eq!(read(&*s, |t| t.count_scep_requests(srv, "granted", 0)), 1);
    assert_eq!(read(&*s, |t| t.count_scep_requests(srv, "issued", 0)), 1);
    assert_eq!(
        read(&*s, |t| t.count_scep_requests(srv, "pending", i64::MAX)),
        0
    );
    assert_eq!(
        read(&*s, |t| t.count_scep_requests(srv + 1, "pending", 0)),
        0
    );
    let other = write(&*s, |t| t.insert_scep_server(&server("/scep/other", ca)));
    let elsewhere = write(&*s, |t| {
        t.insert_scep_request(&request(other, "txn", "pending"), None)
    });
    assert_eq!(
        read(&*s, |t| t.scep_request_by_any_transaction("txn"))
            .unwrap()
            .id,
        elsewhere
    );
    assert_eq!(
        read(&*s, |t| t.scep_request_by_transaction(srv, "txn"))
            .unwrap()
            .id,
        second
    );
    assert_eq!(
        read(&*s, |t| t.scep_request_by_any_transaction("none")),
        None
    );
    // A removed certificate leaves its request without it.
    write(&*s, |t| t.delete_certificate(leaf));
    assert_eq!(
        read(&*s, |t| t.scep_request(first)).unwrap().certificate_id,
        None
    );
    assert_eq!(read(&*s, |t| t.scep_requests()).len(), 4);
}

/// THREADS transactions consume the same OTP: exactly one does.
pub(super) fn concurrent_otp_consumption<B: Backend>() {
    let backend = B::fresh();
    let (s, _, srv) = with_server(&backend);
    write(&*s, |t| t.insert_otp(Some(srv), b"once", i64::MAX));
    let stores = handles(&backend, THREADS);
    let outcomes = race(&stores, |_, store| {
        write_retrying(store, |t| t.consume_otp(b"once", srv, 5)).expect("consume_otp")
    });
    assert_eq!(outcomes.iter().filter(|&&c| c).count(), 1, "{outcomes:?}");
}

/// THREADS transactions grant the same pending request: exactly one moves it.
pub(super) fn concurrent_request_grants<B: Backend>() {
    let backend = B::fresh();
    let (s, _, srv) = with_server(&backend);
    let id = write(&*s, |t| {
        t.insert_scep_request(&request(srv, "t", "pending"), None)
    });
    let stores = handles(&backend, THREADS);
    let outcomes = race(&stores, |_, store| {
        write_retrying(store, |t| {
            t.move_scep_request(id, "pending", "granted", None)
        })
        .expect("move_scep_request")
    });
    assert_eq!(outcomes.iter().filter(|&&c| c).count(), 1, "{outcomes:?}");
}

/// A SCEP server's lock: THREADS transactions at once, ROUNDS each, take it, count the
/// server's pending requests and add one while fewer than CAP wait (the manager's pending
/// cap). Two holders never overlap (a shared count of holders is 1 inside), and the queue
/// stops at exactly CAP.
pub(super) fn concurrent_scep_server_lock<B: Backend>() {
    const CAP: i64 = (THREADS * ROUNDS / 2) as i64;
    let backend = B::fresh();
    let (s, _, srv) = with_server(&backend);
    let holders = AtomicUsize::new(0);
    let stores = handles(&backend, THREADS);
    let added = race(&stores, |i, store| {
        (0..ROUNDS)
            .filter(|round| {
                write_retrying(store, |t| {
                    t.lock(Lock::ScepServer(srv))?;
                    let inside = holders.fetch_add(1, Ordering::SeqCst);
                    // the holder leaves whatever the work came to (a retry starts clean)
                    let pending = t.count_scep_requests(srv, "pending", 0);
                    let added = match pending {
                        Ok(n) if n < CAP => t
                            .insert_scep_request(
                                &request(srv, &format!("{i}-{round}"), "pending"),
                                None,
                            )
                            .map(|_| true),
                        Ok(_) => Ok(false),
                        Err(e) => Err(e),
                    };
                    std::thread::yield_now();
                    holders.fetch_sub(1, Ordering::SeqCst);
                    assert_eq!(inside, 0, "two transactions held one server's lock");
                    added
                })
                .expect("a locked count and insert")
            })
            .count()
    });
    assert_eq!(added.iter().sum::<usize>() as i64, CAP, "{added:?}");
    assert_eq!(read(&*s, |t| t.count_scep_requests(srv, "pending", 0)), CAP);
}

//! The SCEP-client part of the store contract (`src/store/scep_client.rs`) and
//! `replace_certificate`: a client name held once; its state moved by compare-and-set (one of
//! several racing writers wins); a client gone with its certificate entry, its CA leaving it
//! without; an entry's certificate replaced in place, on every backend.

use certman::store::{NewScepClient, ScepClientState, ScepClientTransaction, Store, TxnMode};

use super::{
    assert_conflict, assert_duplicate, ca_cert, cert, handles, race, read, write, Backend, THREADS,
};

fn client(name: &str) -> NewScepClient {
    NewScepClient {
        name: name.to_owned(),
        kind: "client".into(),
        url: "http://ca.example/scep/test/pkiclient.exe".into(),
        ca_identity: None,
        properties: "{}".into(),
        key_profile: None,
        refresh: false,
    }
}

fn state(ca: i64, entry: i64) -> ScepClientState {
    ScepClientState {
        status: "requesting-certificate".into(),
        detail: String::new(),
        ca_id: Some(ca),
        next_ca_id: None,
        certificate_id: Some(entry),
        key_id: None,
        challenge: Some(b"sealed".to_vec()),
        transaction: Some(ScepClientTransaction {
            transaction_id: "TX1".into(),
            message_type: 19,
            csr: b"csr".to_vec(),
            signer: b"signer".to_vec(),
            recipient: b"recipient".to_vec(),
            started_at: 7,
        }),
        req_fingerprint: "aa".into(),
        ca_fingerprint: "bb".into(),
        capabilities: "AES".into(),
        next_attempt: 0,
        attempts: 0,
    }
}

/// A CA, an entry and a client keeping it; (store, ca, entry).
fn with_client<B: Backend>(backend: &B) -> (Box<dyn Store>, i64, i64) {
    let s = backend.open();
    let (ca, entry) = write(&*s, |t| {
        let ca = t.insert_certificate(&ca_cert("c_CA", "01"))?;
        let entry = t.insert_certificate(&cert("c", "02", None))?;
        t.insert_scep_client(&client("c"), &state(ca, entry))?;
        Ok((ca, entry))
    });
    (s, ca, entry)
}

pub(super) fn scep_clients<B: Backend>() {
    let backend = B::fresh();
    let (s, ca, entry) = with_client(&backend);
    // What was stored reads back, the request in flight included.
    let rec = read(&*s, |t| t.scep_client("c")).unwrap();
    assert_eq!(rec.client, client("c"));
    assert_eq!(rec.state, state(ca, entry));
    assert_eq!(read(&*s, |t| t.scep_clients()).len(), 1);
    // A name is held once.
    let mut t = s.begin(TxnMode::Write).unwrap();
    assert_duplicate(
        t.insert_scep_client(&client("c"), &state(ca, entry))
            .unwrap_err(),
    );
    drop(t);
    // Compare-and-set: the stamp it was read at wins once; a stale stamp changes nothing.
    let mut next = rec.state.clone();
    next.status = "issued".into();
    next.transaction = None;
    next.challenge = None;
    let stamp = write(&*s, |t| t.update_scep_client(rec.id, rec.updated_at, &next))
        .expect("the first update wins");
    assert!(stamp > rec.updated_at);
    let mut stale = next.clone();
    stale.status = "gave-up".into();
    assert_eq!(
        write(&*s, |t| t.update_scep_client(
            rec.id,
            rec.updated_at,
            &stale
        )),
        None
    );
    let now = read(&*s, |t| t.scep_client("c")).unwrap();
    assert_eq!(now.state, next);
    assert_eq!(now.updated_at, stamp);
    // Removing the CA leaves the client without it; removing the entry removes the client.
    write(&*s, |t| t.delete_certificate(ca));
    assert_eq!(read(&*s, |t| t.scep_client("c")).unwrap().state.ca_id, None);
    write(&*s, |t| t.delete_certificate(entry));
    assert!(read(&*s, |t| t.scep_client("c")).is_none());
    // delete says whether it was there
    let (ca2, entry2) = write(&*s, |t| {
        Ok((
            t.insert_certificate(&ca_cert("d_CA", "03"))?,
            t.insert_certificate(&cert("d", "04", None))?,
        ))
    });
    let id = write(&*s, |t| {
        t.insert_scep_client(&client("d"), &state(ca2, entry2))
    });
    assert!(write(&*s, |t| t.delete_scep_client(id)));
    assert!(!write(&*s, |t| t.delete_scep_client(id)));
}

pub(super) fn concurrent_scep_client_updates<B: Backend>() {
    let backend = B::fresh();
    let (s, _, _) = with_client(&backend);
    let rec = read(&*s, |t| t.scep_client("c")).unwrap();
    let stores = handles(&backend, THREADS);
    let won = race(&stores, |i, store| {
        let mut st = rec.state.clone();
        st.detail = format!("writer {i}");
        let mut txn = match store.begin(TxnMode::Write) {
            Ok(t) => t,
            Err(_) => return false,
        };
        match txn.update_scep_client(rec.id, rec.updated_at, &st) {
            Ok(Some(_)) => txn.commit().is_ok(),
            _ => false,
        }
    });
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
}

pub(super) fn certificate_replacement<B: Backend>() {
    let backend = B::fresh();
    let (s, _, entry) = with_client(&backend);
    let mut renewed = cert("c", "05", None);
    renewed.der = b"renewed".to_vec();
    renewed.fingerprint = "renewed-fingerprint".into();
    write(&*s, |t| t.replace_certificate(entry, &renewed));
    let now = read(&*s, |t| t.certificate("c")).unwrap();
    assert_eq!(now.id, entry, "the entry keeps its id");
    assert_eq!(now.cert.der, b"renewed");
    assert_eq!(now.cert.serial, "05");
    assert_eq!(
        read(&*s, |t| t.certificate_by_fingerprint("renewed-fingerprint"))
            .unwrap()
            .id,
        entry
    );
    // the client still keeps it
    assert_eq!(
        read(&*s, |t| t.scep_client("c"))
            .unwrap()
            .state
            .certificate_id,
        Some(entry)
    );
    // a certificate held under another name already: Duplicate; an entry gone: Conflict
    let other = write(&*s, |t| t.insert_certificate(&cert("other", "06", None)));
    let held = read(&*s, |t| t.certificate_by_id(other)).unwrap().cert;
    let mut t = s.begin(TxnMode::Write).unwrap();
    assert_duplicate(t.replace_certificate(entry, &held).unwrap_err());
    drop(t);
    let mut t = s.begin(TxnMode::Write).unwrap();
    assert_conflict(t.replace_certificate(9_999, &renewed).unwrap_err());
}

//! The lost-token part of the store contract (`src/store/token_loss.rs`): the keys on tokens
//! by serial, and a CA marked compromised once (the first mark stays; a certificate gone is a
//! conflict; the mark goes with its row), on every backend.

use certman::store::{KeyRecord, Lock, TxnMode};

use super::{
    assert_conflict, ca_cert, cert, handles, race, read, soft_key, token_key, write,
    write_retrying, Backend, THREADS,
};

fn on_token(id: &str, serial: &str) -> KeyRecord {
    KeyRecord {
        token_serial: Some(serial.to_owned()),
        ..token_key(id)
    }
}

/// Keys by token serial, without sealed parts; software keys are on no token.
pub(super) fn token_keys_by_serial<B: Backend>() {
    let backend = B::fresh();
    let s = backend.open();
    write(&*s, |t| {
        t.insert_key(&soft_key("k0"))?;
        t.insert_key(&on_token("k1", "AAAA"))?;
        t.insert_key(&on_token("k2", "BBBB"))?;
        t.insert_key(&on_token("k3", "AAAA"))
    });
    read(&*s, |t| {
        let all: Vec<String> = t.token_keys(None)?.into_iter().map(|k| k.id).collect();
        assert_eq!(all, ["k1", "k2", "k3"]);
        let a = t.token_keys(Some("AAAA"))?;
        assert_eq!(a, vec![on_token("k1", "AAAA"), on_token("k3", "AAAA")]);
        assert!(a.iter().all(|k| k.sealed.is_none()));
        assert!(t.token_keys(Some("CCCC"))?.is_empty());
        Ok(())
    });
}

/// A CA is marked compromised once; the first time stays; unmarked certificates read `None`;
/// a certificate gone is a conflict; the mark goes with the certificate.
pub(super) fn compromise_marks<B: Backend>() {
    let backend = B::fresh();
    let s = backend.open();
    let (ca, leaf) = write(&*s, |t| {
        let ca = t.insert_certificate(&ca_cert("ca", "01"))?;
        let leaf = t.insert_certificate(&cert("leaf", "02", Some(ca)))?;
        Ok((ca, leaf))
    });
    read(&*s, |t| {
        assert_eq!(t.compromised_at(ca)?, None);
        assert!(t.compromised()?.is_empty());
        Ok(())
    });
    assert!(write(&*s, |t| {
        t.lock(Lock::Ca(ca))?;
        t.mark_compromised(ca, 1_000)
    }));
    assert!(!write(&*s, |t| {
        t.lock(Lock::Ca(ca))?;
        t.mark_compromised(ca, 2_000)
    }));
    read(&*s, |t| {
        assert_eq!(t.compromised_at(ca)?, Some(1_000));
        assert_eq!(t.compromised_at(leaf)?, None);
        assert_eq!(t.compromised()?, vec![(ca, 1_000)]);
        // the rest of the row is as it was
        let rec = t.certificate_by_id(ca)?.expect("ca");
        assert_eq!(rec.cert, ca_cert("ca", "01"));
        assert_eq!(rec.revoked_at, None);
        Ok(())
    });
    let mut t = s.begin(TxnMode::Write).unwrap();
    assert_conflict(t.mark_compromised(9_999, 1).unwrap_err());
    drop(t);
    // an uncommitted mark is no mark
    {
        let mut t = s.begin(TxnMode::Write).unwrap();
        assert!(t.mark_compromised(leaf, 5).unwrap());
    }
    assert_eq!(read(&*s, |t| t.compromised_at(leaf)), None);
    write(&*s, |t| {
        t.delete_certificate(leaf)?;
        t.delete_certificate(ca)
    });
    assert!(read(&*s, |t| t.compromised()).is_empty());
    let again = write(&*s, |t| t.insert_certificate(&ca_cert("ca", "01")));
    assert_eq!(read(&*s, |t| t.compromised_at(again)), None);
}

/// Of several writers marking one CA at once, exactly one marks it, and its time stays.
pub(super) fn concurrent_compromise_marks<B: Backend>() {
    let backend = B::fresh();
    let s = backend.open();
    let ca = write(&*s, |t| t.insert_certificate(&ca_cert("ca", "01")));
    let stores = handles(&backend, THREADS);
    let outcomes = race(&stores, |i, store| {
        write_retrying(store, |t| {
            t.lock(Lock::Ca(ca))?;
            t.mark_compromised(ca, 100 + i as i64)
        })
        .expect("mark")
    });
    let winners: Vec<usize> = (0..THREADS).filter(|i| outcomes[*i]).collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    assert_eq!(
        read(&*s, |t| t.compromised_at(ca)),
        Some(100 + winners[0] as i64)
    );
}

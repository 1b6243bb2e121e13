//! `store reseal`: every secret the store keeps sealed (software keys, keys kept encrypted,
//! CA export passphrases, SCEP clients' challenge passwords and requests in flight) opened
//! with the current sealing key and sealed again with another, in one write transaction: all
//! of them or, when one does not open, none.

use super::Manager;
use crate::error::{ManagerError, Result};
use crate::seal::{SealLabel, SealingKeySource};
use crate::store::{SealedBlob, SealedRow, TxnMode};

/// How many secrets of each kind `store reseal` sealed again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResealReport {
    /// software private keys
    pub soft_keys: usize,
    /// keys imported still encrypted (flag Q)
    pub encrypted_keys: usize,
    /// CA export passphrases
    pub ca_passphrases: usize,
    /// SCEP clients' challenge passwords
    pub scep_challenges: usize,
    /// SCEP clients' requests in flight
    pub scep_requests: usize,
}

impl ResealReport {
    /// The counts by their `print` names, in order.
    pub fn counts(&self) -> [(&'static str, usize); 5] {
        [
            ("soft-keys-resealed", self.soft_keys),
            ("encrypted-keys-resealed", self.encrypted_keys),
            ("ca-passphrases-resealed", self.ca_passphrases),
            ("scep-challenges-resealed", self.scep_challenges),
            ("scep-requests-resealed", self.scep_requests),
        ]
    }

    fn count(&mut self, row: &SealedRow) {
        match row {
            SealedRow::SoftKey(_) => self.soft_keys += 1,
            SealedRow::EncryptedKey(_) => self.encrypted_keys += 1,
            SealedRow::CaPassphrase(_) => self.ca_passphrases += 1,
            SealedRow::ScepChallenge { .. } => self.scep_challenges += 1,
            SealedRow::ScepRequest { .. } => self.scep_requests += 1,
        }
    }
}

/// The label a blob was sealed with, by where it sits.
fn label(row: &SealedRow) -> SealLabel<'_> {
    match row {
        SealedRow::SoftKey(id) => SealLabel::SoftKey(id),
        SealedRow::EncryptedKey(_) => SealLabel::EncryptedKey,
        SealedRow::CaPassphrase(id) => SealLabel::CaPassphrase(*id),
        SealedRow::ScepChallenge { name, .. } => SealLabel::ScepChallenge(name),
        SealedRow::ScepRequest { name, .. } => SealLabel::ScepRequest(name),
    }
}

impl Manager {
    /// `store reseal seal-key-source=NEW`: seals every secret at rest again under `to` (its
    /// key reached through this manager's token providers, for a `pkcs11:` or `piv:` source).
    /// The new sealer is had first (for a `piv:` source: the store's data key for the card
    /// unwrapped on it, or a new one wrapped to it and checked on it); then, in one write
    /// transaction, every blob is opened with the current key, a new data key is kept, and
    /// the blobs are sealed again. A blob that does not open, or a data key another process
    /// kept meanwhile, fails the whole, and the store is as it was.
    pub fn reseal(&self, to: &SealingKeySource) -> Result<ResealReport> {
        // (meta name, wrapped data key) to keep with the blobs
        let mut new_data_key: Option<(String, Vec<u8>)> = None;
        let new = match to.key_transport(Some(&self.keys))? {
            None => to.sealer_with(self.store.salt(), Some(&self.keys))?,
            Some(transport) => {
                let found = self
                    .store
                    .begin(TxnMode::Read)?
                    .meta_value(&transport.meta_name)?;
                match found {
                    Some(wrapped) => transport.open(self.store.salt(), &wrapped)?,
                    None => {
                        let (sealer, wrapped) = transport.make(self.store.salt())?;
                        new_data_key = Some((transport.meta_name.clone(), wrapped));
                        sealer
                    }
                }
            }
        };
        self.write(|txn| {
            let blobs: Vec<SealedBlob> = txn.sealed_blobs()?;
            // open all first: nothing is written unless everything opens
            let mut opened = Vec::with_capacity(blobs.len());
            for b in &blobs {
                // zeroized when dropped
                opened.push(self.sealer.open(label(&b.row), &b.blob)?);
            }
            if let Some((name, wrapped)) = &new_data_key {
                if txn.insert_meta_if_absent(name, wrapped)? != *wrapped {
                    return Err(ManagerError::Failed(format!(
                        "another process kept a data key under meta \"{name}\" meanwhile: \
                         nothing was resealed; run `store reseal` again"
                    )));
                }
            }
            let mut report = ResealReport::default();
            for (b, secret) in blobs.iter().zip(&opened) {
                let sealed = new.seal(label(&b.row), secret.secret_bytes())?;
                txn.replace_sealed(&b.row, &sealed)?;
                report.count(&b.row);
            }
            Ok(report)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::keys::soft::SoftProvider;
    use crate::keys::KeyRouter;
    use crate::seal::Sealer;
    use crate::store::{NewScepClient, ScepClientState, ScepClientTransaction, Store};

    const MACHINE: &[u8] = b"unit-test-machine-id-0123456789ab";

    fn manager(dir: &std::path::Path) -> Manager {
        let store: Box<dyn Store> = crate::app::open_store(&crate::app::StoreLocation::Sqlite {
            dir: dir.join("store"),
        })
        .unwrap();
        let sealer = Arc::new(Sealer::new(MACHINE, store.salt()).unwrap());
        let router = KeyRouter::new(Arc::new(SoftProvider::new(sealer.clone())));
        Manager::with_parts(store, router, sealer)
    }

    /// A SCEP client row with a challenge and a request in flight, sealed by `sealer`.
    fn add_client(m: &Manager, name: &str, sealer: &Sealer) -> i64 {
        let mut txn = m.store.begin(TxnMode::Write).unwrap();
        let state = ScepClientState {
            status: "requesting-certificate".into(),
            challenge: Some(
                sealer
                    .seal(SealLabel::ScepChallenge(name), b"challenge-1")
                    .unwrap(),
            ),
            transaction: Some(ScepClientTransaction {
                transaction_id: format!("tx-{name}"),
                message_type: 19,
                csr: sealer.seal(SealLabel::ScepRequest(name), b"csr-1").unwrap(),
                signer: Vec::new(),
                recipient: Vec::new(),
                started_at: 1,
            }),
            ..Default::default()
        };
        let client = NewScepClient {
            name: name.into(),
            kind: "client".into(),
            url: "http://scep.example/".into(),
            ca_identity: None,
            properties: "{}".into(),
            key_profile: None,
            refresh: false,
        };
        let id = txn.insert_scep_client(&client, &state).unwrap();
        txn.commit().unwrap();
        id
    }

    fn blobs(m: &Manager) -> Vec<SealedBlob> {
        m.store
            .begin(TxnMode::Read)
            .unwrap()
            .sealed_blobs()
            .unwrap()
    }

    fn key_file(dir: &std::path::Path) -> SealingKeySource {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("seal.key");
        std::fs::write(&path, "k".repeat(40)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        SealingKeySource::KeyFile { path }
    }

    #[test]
    fn scep_client_secrets_move_to_the_new_key() {
        let d = tempfile::tempdir().unwrap();
        let m = manager(d.path());
        let old = Sealer::new(MACHINE, m.store.salt()).unwrap();
        let id = add_client(&m, "router1", &old);
        let stamp = m
            .store
            .begin(TxnMode::Read)
            .unwrap()
            .scep_clients()
            .unwrap()[0]
            .updated_at;
        let to = key_file(d.path());
        let report = m.reseal(&to).unwrap();
        assert_eq!(
            report,
            ResealReport {
                scep_challenges: 1,
                scep_requests: 1,
                ..Default::default()
            }
        );
        let new = to.sealer(m.store.salt()).unwrap();
        let now = blobs(&m);
        assert_eq!(now.len(), 2);
        for b in &now {
            assert!(new.open(label(&b.row), &b.blob).is_ok(), "{:?}", b.row);
            assert!(old.open(label(&b.row), &b.blob).is_err(), "{:?}", b.row);
        }
        // a client step that read the row before the reseal loses its compare-and-set
        let mut txn = m.store.begin(TxnMode::Write).unwrap();
        let rec = txn.scep_client("router1").unwrap().unwrap();
        assert!(rec.updated_at > stamp);
        assert_eq!(txn.update_scep_client(id, stamp, &rec.state).unwrap(), None);
    }

    #[test]
    fn one_secret_that_does_not_open_leaves_every_one_as_it_was() {
        let d = tempfile::tempdir().unwrap();
        let m = manager(d.path());
        let old = Sealer::new(MACHINE, m.store.salt()).unwrap();
        add_client(&m, "a", &old);
        let stranger = Sealer::new(b"another-machine-id-0123456789abc", m.store.salt()).unwrap();
        add_client(&m, "b", &stranger);
        let before = blobs(&m);
        let e = m.reseal(&key_file(d.path())).unwrap_err().to_string();
        assert!(e.contains("cannot unseal a SCEP challenge password"), "{e}");
        assert_eq!(blobs(&m), before);
    }
}

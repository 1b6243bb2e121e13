//! `store reseal`: every secret the store keeps sealed (software keys, keys kept encrypted,
//! CA export passphrases, SCEP clients' challenge passwords and requests in flight) opened
//! with the current sealing key and sealed again with another, in one write transaction: all
//! of them or, when one does not open, none.

use super::Manager;
use crate::error::Result;
use crate::seal::{SealLabel, SealingKeySource};
use crate::store::{SealedBlob, SealedRow};

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
    /// key reached through this manager's token providers, for a `pkcs11:` source). Every
    /// blob is opened with the current key before anything is written; one that does not
    /// open fails the whole, naming it, and the store is as it was.
    pub fn reseal(&self, to: &SealingKeySource) -> Result<ResealReport> {
        let new = to.sealer_with(self.store.salt(), Some(&self.keys))?;
        self.write(|txn| {
            let blobs: Vec<SealedBlob> = txn.sealed_blobs()?;
            // open all first: nothing is written unless everything opens
            let mut opened = Vec::with_capacity(blobs.len());
            for b in &blobs {
                // zeroized when dropped
                opened.push(self.sealer.open(label(&b.row), &b.blob)?);
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

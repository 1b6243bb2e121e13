//! Keys on tokens and cards: `card-verify`, `card-reinstall`, `token print`.

use super::Manager;
use crate::error::{ManagerError, ObjectKind, Refusal, Result};
use crate::keys::KeyHandle;
use crate::store::{CertificateRecord, TxnMode};
use crate::x509;

/// What `card-verify` found.
#[derive(Clone, Debug)]
pub struct CardVerifyResult {
    /// the key's URI (no secrets)
    pub key_uri: String,
    /// what was checked
    pub report: crate::keys::CardVerifyReport,
    /// the token's state (PIN tries), where the provider can tell
    pub token_status: Option<String>,
    /// `Some(Some(true))`: the token's certificate object equals the stored certificate;
    /// `Some(Some(false))`: it differs; `Some(None)`: there is none; `None`: no such objects
    pub certificate_object: Option<Option<bool>>,
}

impl Manager {
    // ---------------------------------------------------------------- tokens

    /// `card-verify NAME`: proves the certificate's key is present where its URI says and
    /// belongs to the certificate (public key compared where readable, and a fresh challenge
    /// signed and verified); reports what was checked and the token's state.
    pub fn card_verify(&self, name: &str) -> Result<CardVerifyResult> {
        let (rec, handle) = self.certificate_and_key(name)?;
        let provider = self.keys.provider(&handle.uri)?;
        let info = x509::inspect_certificate(&rec.cert.der)?;
        let token_status = provider.token_status(&handle);
        let report = crate::keys::card_verify(provider, &handle, &info.public_key)?;
        let certificate_object = match provider.certificate_objects() {
            Some(objects) => Some(
                objects
                    .load_certificate(&handle)?
                    .map(|der| der == rec.cert.der),
            ),
            None => None,
        };
        Ok(CardVerifyResult {
            key_uri: handle.uri.to_string(),
            report,
            token_status,
            certificate_object,
        })
    }

    /// `card-reinstall NAME [--force]`: writes the certificate object back onto the token
    /// beside its key, after card-verify (unless forced).
    pub fn card_reinstall(&self, name: &str, force: bool) -> Result<Option<CardVerifyResult>> {
        let (rec, handle) = self.certificate_and_key(name)?;
        let provider = self.keys.provider(&handle.uri)?;
        let objects = provider.certificate_objects().ok_or_else(|| {
            ManagerError::refused(
                Refusal::NotOnToken,
                format!(
                    "the key of \"{name}\" is in {} storage, not on a token",
                    provider.name()
                ),
                Some("card-reinstall applies to certificates whose print flags show C"),
            )
        })?;
        let verified = if force {
            None
        } else {
            Some(self.card_verify(name)?)
        };
        objects.store_certificate(&handle, &rec.cert.der)?;
        Ok(verified)
    }

    /// `token print [PROFILE]`.
    pub fn token_listing(
        &self,
        profile: Option<&str>,
        login: bool,
    ) -> Result<Vec<crate::keys::ProfileListing>> {
        Ok(self.keys.token_listing(profile, login)?)
    }

    pub(super) fn certificate_and_key(&self, name: &str) -> Result<(CertificateRecord, KeyHandle)> {
        let rec = self.certificate_record(name)?;
        let handle = self.key_handle(name)?.ok_or_else(|| {
            ManagerError::refused(
                Refusal::NoPrivateKey,
                format!("certificate \"{name}\" has no private key here"),
                None,
            )
        })?;
        Ok((rec, handle))
    }

    /// The key handle of a stored certificate (for card-verify and the like).
    pub fn key_handle(&self, name: &str) -> Result<Option<KeyHandle>> {
        let txn = self.store.begin(TxnMode::Read)?;
        let rec = txn
            .certificate(name)?
            .ok_or_else(|| ManagerError::not_found(ObjectKind::Certificate, name))?;
        let Some(id) = rec.cert.key_id else {
            return Ok(None);
        };
        let key = txn.key(&id)?.ok_or_else(|| {
            ManagerError::Store(crate::error::StoreError::Corrupt(format!(
                "key {id} missing"
            )))
        })?;
        Ok(Some(KeyHandle {
            uri: key.uri.parse()?,
            sealed: key.sealed,
        }))
    }
}

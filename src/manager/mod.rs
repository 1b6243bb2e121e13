//! The certificate manager: RouterOS's `/certificate` rules (see `../shared/seeds/`) over the
//! key-provider seam and the store. Names no backend type and no SQL.

mod cards;
pub mod crl;
mod crl_download;
mod crl_series;
mod edit;
mod export;
mod health;
mod import;
mod issue;
pub mod progress;
mod requests;
mod reseal;
mod revoke;
pub mod scep;
pub mod scep_client;
mod sign;
pub mod status;
pub mod template;
mod token_loss;
mod verify;
pub mod view;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use der::referenced::OwnedToRef;

pub use self::cards::CardVerifyResult;
pub use self::crl::{CrlRenewal, ServedCrl, Settings};
pub use self::crl_download::{DownloadTarget, DownloadedCrl};
pub use self::crl_series::{CrlSeriesStatus, PresignReport};
pub use self::edit::{RemoveReport, SetRequest};
pub use self::export::{ExportRequest, ExportType};
pub use self::health::{renewal_problem, HealthProblem, HealthReason};
pub use self::import::{ImportReport, ImportRequest};
pub use self::issue::{crl_url, CertifiedRequest, IssueRequest, IssuedCertificate, KeyLocation};
pub use self::requests::{CreateRequest, SignRequestFile};
pub use self::reseal::ResealReport;
pub use self::revoke::RevokeReport;
pub use self::scep::{
    EnrolOutcome, ScepEndpoint, ScepEnrolment, ScepRequestStatus, ScepRequestView, ScepResponder,
    ScepServerChanges, ScepServerView,
};
pub use self::scep_client::{
    AddScep, ClientAnswer, ClientJob, ClientMessage, ClientStep, ClientTiming, RaServer,
    ScepClientKind, ScepClientStatus, ScepClientView, ServerCertificates,
};
pub use self::sign::SignRequest;
pub use self::status::StatusReport;
pub use self::template::{TemplateProperties, TEMPLATE_PROPERTIES};
pub use self::token_loss::{
    CaRevocations, CompromisedCa, CrlOutcome, InventoryCertificate, TokenInventory, TokenLossReport,
};
pub use self::verify::VerifyOptions;
pub use self::view::{Entry, Flags, Value};
use crate::error::{ManagerError, ObjectKind, Refusal, Result, StoreError};
use crate::keys::{GeneratedKey, KeyHandle, KeyRouter, KeySigner};
use crate::seal::Sealer;
use crate::store::{now_micros, CertificateRecord, KeyRecord, Store, Transaction, TxnMode};
use crate::x509;

/// How many times an operation runs again when the store reports a conflict with another
/// writer (PostgreSQL; SQLite's writers never overlap).
const CONFLICT_RETRIES: usize = 3;

/// How few presigned CRLs left make `/health` warn, unless `serve` is told otherwise.
pub const DEFAULT_CRL_SERIES_LOW: usize = 2;

/// The certificate manager.
pub struct Manager {
    store: Box<dyn Store>,
    keys: KeyRouter,
    /// seals the secrets the store keeps besides software keys (CA export passphrases, keys
    /// kept encrypted)
    sealer: Arc<Sealer>,
    /// CAs whose scheduled CRL renewal failed on the PIN: not tried again by this process, so
    /// that a wrong PIN in a profile does not spend the token's tries one renewal at a time
    crl_pin_failures: std::sync::Mutex<HashSet<i64>>,
    /// a second connection for what `serve` answers, see [`Manager::with_read_store`]
    reads: Option<Box<dyn Store>>,
    /// seconds added to the SCEP client's clock and to the one `/health` and CRL renewal
    /// judge CRLs by (tests: `CERTMAN_TEST_CLOCK_OFFSET`)
    clock_offset: i64,
    /// `/health` warns when fewer presigned CRLs of a CA are left to publish (`crl presign`)
    crl_series_low: usize,
    /// who watches long work (key generation on tokens, cards, big RSA; bulk imports)
    progress: Arc<dyn progress::ProgressSink>,
    /// write transactions committed by this manager
    commits: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Manager")
    }
}

pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn validate_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 255
        || name.starts_with('-')
        || name.chars().any(|c| c.is_control() || c == '/' || c == '=')
    {
        return Err(ManagerError::InvalidValue(format!(
            "name '{name}' is not valid (1-255 characters, not starting with '-', no '/', '=' or control characters)"
        )));
    }
    Ok(())
}

impl Manager {
    /// A manager over a store, the key providers and the sealer of secrets at rest. The
    /// composition root (`app.rs`) builds them; tests build their own.
    pub fn with_parts(store: Box<dyn Store>, keys: KeyRouter, sealer: Arc<Sealer>) -> Self {
        Manager {
            store,
            keys,
            sealer,
            crl_pin_failures: std::sync::Mutex::default(),
            reads: None,
            clock_offset: 0,
            crl_series_low: DEFAULT_CRL_SERIES_LOW,
            progress: Arc::new(progress::NoProgress),
            commits: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Reports long work to `sink` (the CLI draws it on a terminal; the default watches
    /// nothing).
    pub fn with_progress(mut self, sink: Arc<dyn progress::ProgressSink>) -> Self {
        self.progress = sink;
        self
    }

    /// Shifts the SCEP client's clock by `seconds` (its renewal, expiry and CA roll-over
    /// decisions) and the one [`Manager::health`] and CRL renewal judge CRLs by: how tests
    /// make a certificate or a CA near its end, or a CRL past its nextUpdate or due. Signatures and
    /// validity checks keep the system's clock.
    pub fn with_clock_offset(mut self, seconds: i64) -> Self {
        self.clock_offset = seconds;
        self
    }

    /// Makes `/health` warn (`crl-series-low`) when fewer than `count` presigned CRLs of a CA
    /// are left to publish (`serve`'s `crl-series-low`).
    pub fn with_crl_series_low(mut self, count: usize) -> Self {
        self.crl_series_low = count;
        self
    }

    /// Gives the manager a second store connection for what `serve` answers (CRLs, health),
    /// so that requests never wait behind a transaction that is signing on a token.
    pub fn with_read_store(mut self, reads: Box<dyn Store>) -> Self {
        self.reads = Some(reads);
        self
    }

    /// Runs `op` in a write transaction and commits what it did. When the store reports a
    /// conflict with another writer, the whole of `op` runs again in a new transaction, at most
    /// [`CONFLICT_RETRIES`] more times; `op` must therefore start from what it reads in `txn`.
    pub(crate) fn write<T>(
        &self,
        mut op: impl FnMut(&mut dyn Transaction) -> Result<T>,
    ) -> Result<T> {
        let mut retries = 0;
        loop {
            let mut txn = self.store.begin(TxnMode::Write)?;
            let outcome = match op(txn.as_mut()) {
                Ok(v) => txn.commit().map(|()| v).map_err(ManagerError::from),
                Err(e) => Err(e),
            };
            if outcome.is_ok() {
                self.commits
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            match outcome {
                Err(ManagerError::Store(StoreError::Conflict)) if retries < CONFLICT_RETRIES => {
                    retries += 1;
                }
                other => return other,
            }
        }
    }

    /// How many write transactions this manager has committed: whether an operation that
    /// failed changed the store before it did (`certman agent`).
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The key router.
    pub fn keys(&self) -> &KeyRouter {
        &self.keys
    }

    /// A stored certificate's record.
    pub fn certificate_record(&self, name: &str) -> Result<CertificateRecord> {
        let txn = self.store.begin(TxnMode::Read)?;
        txn.certificate(name)?
            .ok_or_else(|| ManagerError::not_found(ObjectKind::Certificate, name))
    }
}

/// The key of CA `rec` as the store knows it: its store id and handle.
pub(crate) fn ca_key_handle(
    txn: &dyn Transaction,
    rec: &CertificateRecord,
) -> Result<(String, KeyHandle)> {
    let ca = &rec.cert.name;
    let key_id = rec.cert.key_id.clone().ok_or_else(|| {
        ManagerError::refused(
            Refusal::NoPrivateKey,
            format!("CA \"{ca}\" has no private key here, so it cannot sign"),
            Some("import the CA's private key, or sign with a CA whose print flags show K"),
        )
    })?;
    let key = txn.key(&key_id)?.ok_or_else(|| {
        ManagerError::Store(crate::error::StoreError::Corrupt(format!(
            "key {key_id} of \"{ca}\" is missing"
        )))
    })?;
    let handle = KeyHandle {
        uri: key.uri.parse()?,
        sealed: key.sealed.clone(),
    };
    Ok((key_id, handle))
}

/// The identifier of a CA's key, as the AKI of what it signs: its certificate's SKI, else
/// derived from the key.
pub(crate) fn signing_key_identifier(info: &x509::CertificateInfo) -> Vec<u8> {
    info.subject_key_identifier
        .clone()
        .unwrap_or_else(|| x509::key_identifier(info.public_key.owned_to_ref()))
}

/// The scheme `signer` signs with for `digest-algorithm` (or its default), refused as a
/// usage error when the key or its provider cannot make it.
pub(crate) fn signature_scheme_for(
    signer: &dyn KeySigner,
    digest: Option<crate::keys::HashAlgorithm>,
    signer_name: &str,
) -> Result<crate::keys::SignatureScheme> {
    let alg = signer.algorithm();
    let refuse = |why: String| {
        ManagerError::InvalidValue(format!(
            "digest-algorithm: the {alg} key of \"{signer_name}\" {why}"
        ))
    };
    let scheme = alg
        .signature_scheme(digest)
        .map_err(|e| refuse(format!("cannot use it ({})", crate::error::key_detail(&e))))?;
    if !signer.supports(scheme) {
        return Err(refuse(format!("cannot sign with {scheme}")));
    }
    Ok(scheme)
}

/// The store's record of a key just generated or taken in.
pub(crate) fn key_record(key: &GeneratedKey) -> KeyRecord {
    KeyRecord {
        id: key.uri.store_id(),
        uri: key.uri.without_secrets().to_string(),
        algorithm: format!("{}/{}", key.algorithm.key_type(), key.algorithm.key_size()),
        sealed: key.sealed.clone(),
        token_serial: key.token_serial.clone(),
        slot: key.slot.clone(),
        created_at: now_micros(),
    }
}

/// Writes `data` to be `path` (mode `mode`), invisible until published.
pub(crate) fn prepare(path: &Path, data: &[u8], mode: u32) -> Result<crate::fsutil::PendingFile> {
    crate::fsutil::prepare(path, data, mode).map_err(|source| ManagerError::File {
        path: path.to_owned(),
        source,
    })
}

/// Publishes prepared files in order; returns their paths. After a commit, a failure says what
/// the store holds (`stored`) and how to get the file (`hint`).
pub(crate) fn publish(
    files: Vec<crate::fsutil::PendingFile>,
    after_commit: Option<(&str, &str)>,
) -> Result<Vec<PathBuf>> {
    let mut written = Vec::with_capacity(files.len());
    for f in files {
        let path = f.path().to_owned();
        if let Err(source) = f.publish() {
            return Err(match after_commit {
                Some((stored, hint)) => ManagerError::NotWritten {
                    stored: stored.to_owned(),
                    path,
                    source,
                    hint: hint.to_owned(),
                },
                None => ManagerError::File { path, source },
            });
        }
        written.push(path);
    }
    Ok(written)
}

fn with_extension(base: &Path, ext: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests;

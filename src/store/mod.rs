//! Persistence: templates, certificates, sealed software keys and the key inventory, revocations
//! and CRLs. Records, not RouterOS rules.
//!
//! [`Store`] is a trait so that a second backend (PostgreSQL for several `serve` nodes) is an
//! addition, not a rewrite; the embedded default is [`sqlite::SqliteStore`], opened by the
//! composition root (`app.rs`).
//!
//! # The contract
//!
//! What every backend guarantees, and all the manager may assume (`tests/store_conformance.rs`
//! checks it on every backend):
//! - every operation of the manager is one [`Transaction`]; dropping it uncommitted rolls back;
//!   a committed transaction is durable;
//! - a write transaction that reads a value it will increment or re-check (a CA's CRL number,
//!   "is this CRL due", whether a certificate is revoked, the CRL held for a certificate) first
//!   takes that object's [`Lock`], and holds it until it ends; two transactions holding the same
//!   lock never overlap. The same holds for a SCEP server's settings and request queue (the
//!   settings an edit changes, the pending requests counted against the cap, whether a
//!   transactionID is queued already). (SQLite: a write transaction holds the database's one
//!   write lock from `BEGIN IMMEDIATE` on, so the lock is already held; PostgreSQL: a row or
//!   advisory lock.)
//! - uniqueness is a constraint, not a read-then-insert: one name across templates and
//!   certificates ([`StoreError::NameTaken`]), a certificate held once, a serial once per
//!   issuing CA and a certificate revoked once ([`StoreError::Duplicate`]), a template deleted (consumed) once
//!   ([`Transaction::delete_template`] says whether it was there), a CRL path claimed once
//!   ([`Transaction::claim_crl_path`]), a CA's CRL number only growing ([`Transaction::put_crl`]);
//! - an operation (a method) that fails changes nothing, and the caller then drops the
//!   transaction rather than committing it (PostgreSQL aborts it anyway);
//! - of each [`Job`], one handle of the store leads at a time ([`Store::lead`]);
//! - a conflict with another writer is [`StoreError::Conflict`] (also: a row this transaction
//!   read and then updates has gone); the caller may retry the whole transaction a bounded
//!   number of times. A store held too long by another process is [`StoreError::Busy`].

pub mod crl_series;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod scep;
pub mod scep_client;
pub mod sealed;
pub mod sqlite;
pub mod token_loss;

pub use crl_series::{CrlSeriesRecord, CrlSeriesStore};
pub use scep::{
    NewScepRequest, NewScepServer, OtpRecord, ScepRequestRecord, ScepServerRecord, ScepTransaction,
};
pub use scep_client::{
    NewScepClient, ScepClientRecord, ScepClientState, ScepClientStore, ScepClientTransaction,
};
pub use sealed::{SealedBlob, SealedRow, SealedStore};
pub use token_loss::TokenLossTransaction;

use crate::error::StoreError;

/// Store result.
pub type Result<T> = std::result::Result<T, StoreError>;

/// A certificate template (`add`), its properties as JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateRecord {
    /// row id
    pub id: i64,
    /// unique name (shared namespace with certificates)
    pub name: String,
    /// the template's properties, JSON
    pub properties: String,
    /// creation time, Unix microseconds (orders `print`)
    pub created_at: i64,
}

/// A key the store knows: a sealed software key, or the inventory entry of a token key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    /// store id (for software keys, the `soft:id=`)
    pub id: String,
    /// the key URI, without secrets
    pub uri: String,
    /// `key-type`/`key-size`, e.g. `ec/prime256v1`
    pub algorithm: String,
    /// software keys: the sealed PKCS#8
    pub sealed: Option<Vec<u8>>,
    /// token keys: the token's serial
    pub token_serial: Option<String>,
    /// token keys: slot or object
    pub slot: Option<String>,
    /// creation time, Unix microseconds
    pub created_at: i64,
}

/// A certificate to insert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCertificate {
    /// unique name
    pub name: String,
    /// DER
    pub der: Vec<u8>,
    /// serial, upper-case hex
    pub serial: String,
    /// SHA-256 fingerprint, hex
    pub fingerprint: String,
    /// its private key, if certman has one
    pub key_id: Option<String>,
    /// the local CA that issued it
    pub issuer_id: Option<i64>,
    /// `trusted`
    pub trusted: bool,
    /// `ca-crl-host` (CAs)
    pub ca_crl_host: Option<String>,
    /// template properties it was made from, JSON (for `print detail`)
    pub properties: String,
    /// notAfter, Unix seconds
    pub not_after: i64,
}

/// A stored certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateRecord {
    /// row id
    pub id: i64,
    /// creation time, Unix microseconds
    pub created_at: i64,
    /// revocation time, Unix seconds
    pub revoked_at: Option<i64>,
    /// the rest
    pub cert: NewCertificate,
}

/// A certificate request made here (`create-certificate-request`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRequest {
    /// the template's name
    pub name: String,
    /// its key
    pub key_id: Option<String>,
    /// subject, as text
    pub subject: String,
    /// the SubjectPublicKeyInfo DER (how a returning certificate finds its key)
    pub public_key: Vec<u8>,
    /// the request DER
    pub der: Vec<u8>,
}

/// A stored request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// row id
    pub id: i64,
    /// the rest
    pub request: NewRequest,
    /// creation time, Unix microseconds
    pub created_at: i64,
}

/// A key imported still encrypted (v2.8 flag Q), kept sealed until `decrypt`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedKeyRecord {
    /// row id
    pub id: i64,
    /// the EncryptedPrivateKeyInfo, sealed
    pub sealed: Vec<u8>,
    /// a certificate imported from the same file (shows Q)
    pub hint_certificate_id: Option<i64>,
    /// the decrypted copy, while decrypted
    pub key_id: Option<String>,
    /// the certificate the decrypted copy joined
    pub certificate_id: Option<i64>,
}

/// A revocation: one row per revoked certificate, with its encoded CRL entry, so that a CRL is
/// assembled from stored entries instead of being rebuilt from the certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationRecord {
    /// the issuing CA
    pub ca_id: i64,
    /// the revoked certificate
    pub certificate_id: i64,
    /// its serial, big-endian magnitude
    pub serial: Vec<u8>,
    /// revocation time, Unix seconds
    pub revoked_at: i64,
    /// CRLReason code
    pub reason: Option<u8>,
    /// the certificate's notAfter, Unix seconds (expired entries may leave the CRL)
    pub not_after: i64,
    /// the encoded revokedCertificates entry
    pub entry: Vec<u8>,
}

/// A local CA's current CRL (one row per CA; `number` only grows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlRecord {
    /// the CA
    pub ca_id: i64,
    /// cRLNumber
    pub number: u64,
    /// thisUpdate, Unix seconds
    pub this_update: i64,
    /// nextUpdate, Unix seconds
    pub next_update: i64,
    /// how many entries it lists
    pub entries: i64,
    /// the CRL, DER
    pub der: Vec<u8>,
}

/// A CRL downloaded for a trusted certificate (one per issuing certificate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadedCrlRecord {
    /// the store certificate whose key signed it
    pub certificate_id: i64,
    /// where it came from
    pub url: String,
    /// cRLNumber
    pub number: Option<u64>,
    /// thisUpdate, Unix seconds
    pub this_update: i64,
    /// nextUpdate, Unix seconds
    pub next_update: Option<i64>,
    /// how many entries it lists
    pub entries: i64,
    /// the CRL, DER
    pub der: Vec<u8>,
    /// when it was fetched, Unix seconds
    pub fetched_at: i64,
}

/// Read-only or read-write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnMode {
    /// a consistent snapshot for reading
    Read,
    /// takes the write lock at once (no upgrade deadlocks between processes)
    Write,
}

/// An object a write transaction locks before reading what it will change (see the contract).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Lock {
    /// a CA certificate's row: its CRL (number, due-ness), its revocations, the CRL downloaded
    /// for it
    Ca(i64),
    /// a SCEP server's row: its settings (read, changed and written back whole) and its
    /// request queue (how many are pending, which transactionIDs it holds)
    ScepServer(i64),
}

/// Work that one node of a store does at a time (see [`Store::lead`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Job {
    /// renewing local CAs' CRLs when they are due
    CrlRenewal,
    /// downloading trusted certificates' CRLs (`crl-download=yes`)
    CrlDownload,
    /// the SCEP clients' polls, retries and renewals
    ScepClients,
}

impl Job {
    /// Every job.
    pub const ALL: [Job; 3] = [Job::CrlRenewal, Job::CrlDownload, Job::ScepClients];

    /// The job's name, as logs and lock files show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Job::CrlRenewal => "crl-renewal",
            Job::CrlDownload => "crl-download",
            Job::ScepClients => "scep-clients",
        }
    }

    /// A small number per job (lock keys).
    pub fn number(self) -> i32 {
        match self {
            Job::CrlRenewal => 1,
            Job::CrlDownload => 2,
            Job::ScepClients => 3,
        }
    }
}

/// A place certman's state lives.
pub trait Store: Send + Sync {
    /// Starts a transaction.
    fn begin(&self, mode: TxnMode) -> Result<Box<dyn Transaction + '_>>;
    /// The store's random salt (for deriving the software-key sealing key).
    fn salt(&self) -> &[u8];
    /// Whether the store can take a write now (`/health`): cheap, and without taking the
    /// store's write lock, so that it never waits behind a writer. An error says why not
    /// (read-only, no space left, the store gone).
    fn check_writable(&self) -> Result<()>;
    /// Whether this store handle leads `job` now: true for one handle of the store at a time,
    /// among every process on every machine that has it open. The first handle to ask gets
    /// it and keeps it while it lives and can reach the store; when it is dropped, or its
    /// process dies, or it loses its connection, the next handle that asks gets it. Asked at
    /// each of the job's rounds: a handle that answers false does not run it, and learns
    /// here when it has lost what it held. Leadership saves work and log noise; it is not
    /// what keeps the store consistent (two leaders at once — a partition the store has not
    /// noticed yet — still meet the contract's locks and constraints).
    fn lead(&self, job: Job) -> Result<bool>;
}

/// One transaction. Dropped without [`Transaction::commit`] = rolled back.
pub trait Transaction:
    ScepTransaction + ScepClientStore + SealedStore + CrlSeriesStore + TokenLossTransaction
{
    /// Makes the changes durable.
    fn commit(self: Box<Self>) -> Result<()>;

    /// Takes `what`'s lock until the transaction ends (write transactions; see the contract).
    fn lock(&mut self, what: Lock) -> Result<()>;

    /// Whether a template or certificate has this name.
    fn name_in_use(&self, name: &str) -> Result<bool>;

    /// A template by name.
    fn template(&self, name: &str) -> Result<Option<TemplateRecord>>;
    /// All templates.
    fn templates(&self) -> Result<Vec<TemplateRecord>>;
    /// Adds a template; [`StoreError::NameTaken`] if a template or certificate has the name.
    fn insert_template(&mut self, name: &str, properties: &str) -> Result<i64>;
    /// Changes a template (a new name must be free: [`StoreError::NameTaken`]).
    fn update_template(&mut self, id: i64, name: &str, properties: &str) -> Result<()>;
    /// Deletes a template; false when it was not there (deleted meanwhile: a template is
    /// consumed once).
    fn delete_template(&mut self, id: i64) -> Result<bool>;

    /// A certificate by name.
    fn certificate(&self, name: &str) -> Result<Option<CertificateRecord>>;
    /// A certificate by id.
    fn certificate_by_id(&self, id: i64) -> Result<Option<CertificateRecord>>;
    /// All certificates.
    fn certificates(&self) -> Result<Vec<CertificateRecord>>;
    /// The highest certificate row id (0 without certificates): names like `issued_N` start
    /// from it instead of reading every certificate.
    fn last_certificate_id(&self) -> Result<i64>;
    /// Ids of the certificates a local CA issued directly.
    fn issued_by(&self, issuer_id: i64) -> Result<Vec<i64>>;
    /// Adds a certificate; [`StoreError::NameTaken`] if its name is in use,
    /// [`StoreError::Duplicate`] if its issuer already has its serial or the store holds the
    /// certificate already (by fingerprint).
    fn insert_certificate(&mut self, cert: &NewCertificate) -> Result<i64>;
    /// A certificate by its SHA-256 fingerprint.
    fn certificate_by_fingerprint(&self, fingerprint: &str) -> Result<Option<CertificateRecord>>;
    /// The certificate `issuer_id` issued with this serial (upper-case hex), if any.
    fn certificate_by_serial(
        &self,
        issuer_id: i64,
        serial: &str,
    ) -> Result<Option<CertificateRecord>>;
    /// Gives a certificate without a key its private key (a key imported after the
    /// certificate); [`StoreError::Conflict`] if it has one (given meanwhile) or is gone.
    fn set_certificate_key(&mut self, id: i64, key_id: &str) -> Result<()>;
    /// Renames a certificate (the new name must be free) and sets `trusted`.
    fn update_certificate(&mut self, id: i64, name: &str, trusted: bool) -> Result<()>;
    /// Puts another certificate under an entry, keeping its name and id (a SCEP client's
    /// renewed certificate replaces the old one in the transaction that stores it). A revoked
    /// entry, or one gone meanwhile, is [`StoreError::Conflict`]; a certificate held already
    /// under another name is [`StoreError::Duplicate`]. `name` and `ca_crl_host` stay.
    fn replace_certificate(&mut self, id: i64, cert: &NewCertificate) -> Result<()>;
    /// Deletes a certificate, with what is its alone: its CA passphrase, the keys kept
    /// encrypted that came in its file (flag Q) or were decrypted for it, and (as a CA) its
    /// revocations, CRL, CRL paths and downloaded CRL. The certificates it issued must be gone
    /// first.
    fn delete_certificate(&mut self, id: i64) -> Result<()>;

    /// A key by store id.
    fn key(&self, id: &str) -> Result<Option<KeyRecord>>;
    /// Every key's store id and URI (what `print` shows of keys), without the sealed parts.
    fn key_uris(&self) -> Result<Vec<(String, String)>>;
    /// Adds a key.
    fn insert_key(&mut self, key: &KeyRecord) -> Result<()>;
    /// Deletes a key.
    fn delete_key(&mut self, id: &str) -> Result<()>;
    /// Changes a key's URI (its `pin-source`), keeping its id; [`StoreError::Conflict`] if
    /// it is gone.
    fn set_key_uri(&mut self, id: &str, uri: &str) -> Result<()>;
    /// How many certificates and requests use a key.
    fn key_users(&self, id: &str) -> Result<i64>;

    /// Keeps a key imported still encrypted.
    fn insert_encrypted_key(&mut self, sealed: &[u8], hint: Option<i64>) -> Result<i64>;
    /// The keys imported still encrypted.
    fn encrypted_keys(&self) -> Result<Vec<EncryptedKeyRecord>>;
    /// Records (or drops, with `None`) the decrypted copy of an encrypted key.
    fn set_encrypted_key_copy(
        &mut self,
        id: i64,
        key_id: Option<&str>,
        certificate_id: Option<i64>,
    ) -> Result<()>;
    /// Takes a certificate's key away (the key row stays until deleted).
    fn clear_certificate_key(&mut self, id: i64) -> Result<()>;

    /// Stores (sealed) the export passphrase of a CA.
    fn set_ca_passphrase(&mut self, certificate_id: i64, sealed: &[u8]) -> Result<()>;
    /// The sealed export passphrase of a CA.
    fn ca_passphrase(&self, certificate_id: i64) -> Result<Option<Vec<u8>>>;

    /// Remembers a request made here.
    fn insert_request(&mut self, request: &NewRequest) -> Result<i64>;
    /// The requests made here.
    fn requests(&self) -> Result<Vec<RequestRecord>>;

    /// Marks a certificate revoked (flag R) and records its CRL entry;
    /// [`StoreError::Duplicate`] if it is revoked already.
    fn insert_revocation(&mut self, r: &RevocationRecord) -> Result<()>;
    /// The revocation of a certificate.
    fn revocation(&self, certificate_id: i64) -> Result<Option<RevocationRecord>>;
    /// Appends to `out` the encoded entries of a CA's revocations, except those of
    /// certificates that expired and were revoked before `cutoff` (Unix seconds); returns how
    /// many.
    fn revocation_entries(&self, ca_id: i64, cutoff: i64, out: &mut Vec<u8>) -> Result<i64>;

    /// A local CA's current CRL.
    fn crl(&self, ca_id: i64) -> Result<Option<CrlRecord>>;
    /// A CA's current CRL number and thisUpdate, without the CRL itself.
    fn crl_state(&self, ca_id: i64) -> Result<Option<(u64, i64)>>;
    /// Every local CA's current CRL, without the DER (`der` empty).
    fn crl_summaries(&self) -> Result<Vec<CrlRecord>>;
    /// Replaces a CA's current CRL by one with a higher number; [`StoreError::Conflict`] if
    /// the stored one's number is not lower (the number only grows).
    fn put_crl(&mut self, crl: &CrlRecord) -> Result<()>;
    /// What `serve` answers for a CDP file, in one statement: the current CRL of the CA that
    /// holds the path `path` (claimed with [`Transaction::claim_crl_path`]), else of the CA
    /// named `name`, with that CA's name.
    fn served_crl(&self, path: &str, name: Option<&str>) -> Result<Option<(String, CrlRecord)>>;
    /// The CA whose CRL a CDP path (`/crl/<name>.crl`, decoded) names.
    fn crl_path_owner(&self, path: &str) -> Result<Option<i64>>;
    /// Claims `path` for a CA's CRL (kept across renames) unless another CA holds it; returns
    /// the CA that holds it now.
    fn claim_crl_path(&mut self, path: &str, ca_id: i64) -> Result<i64>;

    /// A setting (`/certificate settings`).
    fn setting(&self, key: &str) -> Result<Option<String>>;
    /// Changes a setting.
    fn set_setting(&mut self, key: &str, value: &str) -> Result<()>;

    /// The downloaded CRL signed by a certificate's key.
    fn downloaded_crl(&self, certificate_id: i64) -> Result<Option<DownloadedCrlRecord>>;
    /// Every downloaded CRL.
    fn downloaded_crls(&self) -> Result<Vec<DownloadedCrlRecord>>;
    /// Stores (replacing) the downloaded CRL of a certificate.
    fn put_downloaded_crl(&mut self, crl: &DownloadedCrlRecord) -> Result<()>;
    /// Drops every downloaded CRL; returns how many.
    fn delete_downloaded_crls(&mut self) -> Result<usize>;
    /// Ids of the certificates that a downloaded CRL is held for (flag L, as RouterOS shows
    /// it; a local CA's own CRL is listed by `crl print`).
    fn certificates_with_crl(&self) -> Result<Vec<i64>>;
}

/// Now, in Unix microseconds.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

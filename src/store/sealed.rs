//! The secrets the store keeps sealed, as the blobs they are at rest: what `store reseal`
//! lists, opens with the old sealing key and writes back sealed with the new one. Records,
//! not rules: which [`crate::seal::SealLabel`] a blob carries is the manager's.
//!
//! The contract adds (see `store/mod.rs`): [`SealedStore::replace_sealed`] changes one blob
//! of a row that is there ([`StoreError::Conflict`](crate::error::StoreError::Conflict) when
//! it is gone), and a SCEP client's row gets a new `updated_at`, so that a client step that
//! read it before (and would write back a blob sealed with the old key) loses its
//! compare-and-set. [`SealedStore::insert_meta_if_absent`] is insert-if-absent across every
//! writer of the store: of two that insert under one name at once, one value is kept and both
//! get it back.

use super::Result;

/// Where a sealed blob sits: its column and row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SealedRow {
    /// `keys.sealed`: a software private key, by its store id
    SoftKey(String),
    /// `encrypted_keys.sealed`: a key imported still encrypted, by row id
    EncryptedKey(i64),
    /// `ca_passphrases.sealed`: a CA's export passphrase, by its certificate's id
    CaPassphrase(i64),
    /// `scep_clients.challenge`: a SCEP client's challenge password
    ScepChallenge {
        /// the client's row id
        id: i64,
        /// its name (the blob's label)
        name: String,
    },
    /// `scep_clients.tx_csr`: a SCEP client's request in flight
    ScepRequest {
        /// the client's row id
        id: i64,
        /// its name (the blob's label)
        name: String,
    },
}

/// One sealed blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedBlob {
    /// where it is
    pub row: SealedRow,
    /// the blob as stored (sealed: no secret in clear)
    pub blob: Vec<u8>,
}

/// The sealed blobs of a store (a supertrait of [`super::Transaction`]).
pub trait SealedStore {
    /// Every sealed blob the store holds: software keys, keys kept encrypted, CA export
    /// passphrases, SCEP clients' challenge passwords and requests in flight.
    fn sealed_blobs(&self) -> Result<Vec<SealedBlob>>;
    /// Replaces the blob at `row` (write transactions).
    fn replace_sealed(&mut self, row: &SealedRow, blob: &[u8]) -> Result<()>;
    /// The value of the store's `meta` under `name` (a `piv:` sealing key's wrapped data key
    /// is kept under `seal-wrap:…`).
    fn meta_value(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Keeps `value` under `name` in `meta` unless the name holds a value already, and
    /// returns the value the name holds afterwards: `value`, or the one another writer kept
    /// first (write transactions). A value is never replaced.
    fn insert_meta_if_absent(&mut self, name: &str, value: &[u8]) -> Result<Vec<u8>>;
}

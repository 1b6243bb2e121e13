//! SCEP client records: one row per enrolment that certman keeps up to date (`add-scep`, and
//! the RA certificate of `scep-server ra`). Records, not RouterOS rules (those are in
//! `manager/scep_client`).
//!
//! The contract adds (see `store/mod.rs`): a client name is held once
//! ([`StoreError::Duplicate`](crate::error::StoreError::Duplicate)); a client's state moves
//! by compare-and-set on its `updated_at` ([`ScepClientTransaction::update_scep_client`]);
//! a client goes with its certificate, and loses a removed CA or next CA.

use super::Result;

/// What a SCEP client is: set once, at `add-scep`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewScepClient {
    /// the client's name, unique (`add-scep name=`, default the template's)
    pub name: String,
    /// `client` (add-scep) or `ra` (scep-server ra), as the manager's kind word
    pub kind: String,
    /// the server's URL, with its CGI path and program
    pub url: String,
    /// `ca-identity`, sent as GetCACert's `message=`
    pub ca_identity: Option<String>,
    /// the template's properties, JSON (renewals ask for the same)
    pub properties: String,
    /// `on-smart-card=PROFILE`; `None` = a software key
    pub key_profile: Option<String>,
    /// `refresh=yes`: an expired certificate is enrolled again
    pub refresh: bool,
}

/// One request on the wire, kept until it is answered for good (a restart resumes it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScepClientTransaction {
    /// the transactionID
    pub transaction_id: String,
    /// the messageType number (PKCSReq 19 or RenewalReq 17)
    pub message_type: u8,
    /// the PKCS#10 request, DER
    pub csr: Vec<u8>,
    /// the certificate the request is signed with, DER (self-signed, or the current one)
    pub signer: Vec<u8>,
    /// the certificate the request is encrypted to (the RA's, else the CA's), DER
    pub recipient: Vec<u8>,
    /// when it was first sent (µs)
    pub started_at: i64,
}

/// Where a client stands: changed by every step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScepClientState {
    /// the manager's status word
    pub status: String,
    /// why, for `print detail` (never a secret)
    pub detail: String,
    /// the CA certificate (`<name>_CA`)
    pub ca_id: Option<i64>,
    /// the next CA, once the server offered one
    pub next_ca_id: Option<i64>,
    /// the certificate entry (the template's name): a temporary self-signed certificate
    /// until the first one is issued, as RouterOS shows it
    pub certificate_id: Option<i64>,
    /// the key the requests are made with
    pub key_id: Option<String>,
    /// the challenge password, sealed, while a request may still need it
    pub challenge: Option<Vec<u8>>,
    /// the request in flight, if any
    pub transaction: Option<ScepClientTransaction>,
    /// SHA-256 of the last request, hex
    pub req_fingerprint: String,
    /// SHA-256 of the CA certificate, hex
    pub ca_fingerprint: String,
    /// the server's capabilities, as last read
    pub capabilities: String,
    /// when the timers should look at it next (µs)
    pub next_attempt: i64,
    /// attempts since the last answer (back-off)
    pub attempts: i64,
}

/// A stored SCEP client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScepClientRecord {
    /// row id
    pub id: i64,
    /// what it is
    pub client: NewScepClient,
    /// where it stands
    pub state: ScepClientState,
    /// µs
    pub created_at: i64,
    /// µs; the compare-and-set token of [`ScepClientTransaction::update_scep_client`]
    pub updated_at: i64,
}

/// The SCEP-client part of a [`Transaction`](super::Transaction).
pub trait ScepClientStore {
    /// Every SCEP client, in the order added.
    fn scep_clients(&self) -> Result<Vec<ScepClientRecord>>;
    /// One client by name.
    fn scep_client(&self, name: &str) -> Result<Option<ScepClientRecord>>;
    /// Adds a client; a name held by another is `Duplicate`.
    fn insert_scep_client(
        &mut self,
        client: &NewScepClient,
        state: &ScepClientState,
    ) -> Result<i64>;
    /// Replaces a client's state if it was last changed at `updated_at`: the new
    /// `updated_at`, or `None` when another writer changed it first (or it is gone).
    fn update_scep_client(
        &mut self,
        id: i64,
        updated_at: i64,
        state: &ScepClientState,
    ) -> Result<Option<i64>>;
    /// Removes a client; whether it was there.
    fn delete_scep_client(&mut self, id: i64) -> Result<bool>;
}

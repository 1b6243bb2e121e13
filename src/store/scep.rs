//! SCEP server records: server instances, one-time passwords (hashed) and the request queue.
//! Records, not RouterOS rules (those are in `manager/scep`).
//!
//! The contract adds (see `store/mod.rs`): a server path is held once
//! ([`StoreError::Duplicate`](crate::error::StoreError::Duplicate)); an OTP is consumed once
//! ([`ScepTransaction::consume_otp`] says whether this transaction consumed it); a request
//! moves from one status to the next once ([`ScepTransaction::move_scep_request`] is a
//! compare-and-set). Servers go with their CA (and lose a removed RA or next CA); requests
//! and OTPs go with their server.

use super::Result;

/// A SCEP server instance (`/certificate scep-server`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewScepServer {
    /// the HTTP path (`/scep/NAME`), unique
    pub path: String,
    /// the issuing CA (a certificate id)
    pub ca_id: i64,
    /// the RA certificate that decrypts and signs for the CA, if any
    pub ra_id: Option<i64>,
    /// the next CA (GetNextCACert), if any
    pub next_ca_id: Option<i64>,
    /// validity of issued certificates
    pub days_valid: u32,
    /// how long a request may wait for a grant, seconds
    pub request_lifetime: i64,
    /// flag X
    pub disabled: bool,
    /// RA mode (`scep-server ra`): the SCEP client whose certificate is this server's RA and
    /// whose server the requests are forwarded to; `None` = the CA here issues
    pub upstream_id: Option<i64>,
}

/// A stored SCEP server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScepServerRecord {
    /// row id
    pub id: i64,
    /// its settings
    pub server: NewScepServer,
    /// when it was added (µs)
    pub created_at: i64,
}

/// A one-time password: only its hash is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtpRecord {
    /// row id
    pub id: i64,
    /// the server it is good for; `None` = any
    pub server_id: Option<i64>,
    /// the password's hash (the password itself is never stored)
    pub hash: Vec<u8>,
    /// µs
    pub created_at: i64,
    /// µs
    pub expires_at: i64,
    /// when it was consumed (µs)
    pub used_at: Option<i64>,
}

/// A request that reached a SCEP server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewScepRequest {
    /// the server it came to
    pub server_id: i64,
    /// the client's transactionID
    pub transaction_id: String,
    /// the status (the manager's `ScepRequestStatus`, as its word)
    pub status: String,
    /// the PKCS#10 request, DER (empty once issued with a challenge password in it)
    pub csr: Vec<u8>,
    /// the certificate that signed the message (the reply is encrypted to its key), DER
    pub signer: Vec<u8>,
    /// the request's subject, as `print` shows it
    pub subject: String,
    /// its common name
    pub common_name: String,
    /// its subjectAltName, as `print` shows it
    pub subject_alt_name: String,
    /// SHA-256 of the PKCS#10 request, hex
    pub fingerprint: String,
}

/// A stored SCEP request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScepRequestRecord {
    /// row id
    pub id: i64,
    /// what came in and its status
    pub request: NewScepRequest,
    /// the certificate issued for it
    pub certificate_id: Option<i64>,
    /// µs
    pub created_at: i64,
    /// µs
    pub updated_at: i64,
}

/// The SCEP part of a [`Transaction`](super::Transaction).
pub trait ScepTransaction {
    /// Every SCEP server, in the order added.
    fn scep_servers(&self) -> Result<Vec<ScepServerRecord>>;
    /// Adds a server; a path held by another is `Duplicate`.
    fn insert_scep_server(&mut self, server: &NewScepServer) -> Result<i64>;
    /// Replaces a server's settings; a path held by another is `Duplicate`; a server gone
    /// meanwhile is `Conflict`.
    fn update_scep_server(&mut self, id: i64, server: &NewScepServer) -> Result<()>;
    /// Removes a server with its OTPs and requests; whether it was there.
    fn delete_scep_server(&mut self, id: i64) -> Result<bool>;

    /// Adds a one-time password (its hash).
    fn insert_otp(&mut self, server_id: Option<i64>, hash: &[u8], expires_at: i64) -> Result<i64>;
    /// Every OTP, oldest first.
    fn otps(&self) -> Result<Vec<OtpRecord>>;
    /// The OTP with this hash, if any.
    fn otp_by_hash(&self, hash: &[u8]) -> Result<Option<OtpRecord>>;
    /// Consumes the OTP with this hash if it is unused, unexpired at `now` and good for
    /// `server_id`; whether this call consumed it (a second consumer gets `false`).
    fn consume_otp(&mut self, hash: &[u8], server_id: i64, now: i64) -> Result<bool>;

    /// Adds a request, with the certificate issued for it at once, if any.
    fn insert_scep_request(
        &mut self,
        request: &NewScepRequest,
        certificate_id: Option<i64>,
    ) -> Result<i64>;
    /// Every request, oldest first.
    fn scep_requests(&self) -> Result<Vec<ScepRequestRecord>>;
    /// How many requests of a server are in `status` and were created after `created_after`
    /// (µs): the pending queue's length, without reading the requests.
    fn count_scep_requests(&self, server_id: i64, status: &str, created_after: i64) -> Result<i64>;
    /// The newest request with this transactionID, at any server.
    fn scep_request_by_any_transaction(
        &self,
        transaction_id: &str,
    ) -> Result<Option<ScepRequestRecord>>;
    /// One request.
    fn scep_request(&self, id: i64) -> Result<Option<ScepRequestRecord>>;
    /// The newest request of a server with this transactionID.
    fn scep_request_by_transaction(
        &self,
        server_id: i64,
        transaction_id: &str,
    ) -> Result<Option<ScepRequestRecord>>;
    /// Moves a request from status `from` to `to` (and records the certificate issued for
    /// it); `false` when it was not in `from` (another writer moved it first).
    fn move_scep_request(
        &mut self,
        id: i64,
        from: &str,
        to: &str,
        certificate_id: Option<i64>,
    ) -> Result<bool>;
}

//! RouterOS `add-scep` and `scep-renew`: SCEP clients whose certificates certman keeps up to
//! date — issued, polled while pending, renewed at ¾ of their lifetime, moved to the next CA
//! when the server rolls over — and the RA certificate of `scep-server ra`, enrolled the same
//! way. This room holds the rules and the state (`add`: the first request; `steps`: what a
//! client does next and what an answer changes); the wire is `protocols::scep::enrolment`.
//!
//! Everything a client does is in the store: a `serve` restart resumes polling and renewal
//! where it was.

mod add;
mod answer;
mod steps;

use std::time::Duration;

pub use self::add::{AddScep, RaServer, ServerCertificates};
pub use self::answer::ClientAnswer;
pub use self::steps::{ClientJob, ClientMessage, ClientStep, ClientTiming};

use super::Manager;
use crate::error::{ManagerError, ObjectKind, RequestFault, Result};
use crate::store::{ScepClientRecord, Transaction, TxnMode};
use crate::x509;

/// What a SCEP client is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScepClientKind {
    /// `add-scep`: a certificate for this device
    Client,
    /// `scep-server ra`: the RA certificate of a SCEP server here that forwards upstream
    Ra,
}

impl ScepClientKind {
    /// The word the store keeps.
    pub fn as_str(self) -> &'static str {
        match self {
            ScepClientKind::Client => "client",
            ScepClientKind::Ra => "ra",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "client" => Ok(ScepClientKind::Client),
            "ra" => Ok(ScepClientKind::Ra),
            other => Err(ManagerError::Store(crate::error::StoreError::Corrupt(
                format!("unknown SCEP client kind '{other}'"),
            ))),
        }
    }
}

/// Where a SCEP client stands (`status` in `print`; README lists them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScepClientStatus {
    /// a request was made and is sent (again) until the server answers it
    RequestingCertificate,
    /// the server queued the request: polled with CertPoll (the seed's word)
    RequestingPendingCertificate,
    /// a certificate is held and valid; renewed at ¾ of its lifetime
    Issued,
    /// the server refused the last request, with this failInfo
    Rejected(RequestFault),
    /// the server could not be reached, or answered 503: tried again with back-off
    ServerUnreachable,
    /// the server answered something SCEP does not allow: tried again with back-off
    ServerError,
    /// the key's token or card is absent, or its PIN failed (not retried on a PIN failure)
    KeyUnavailable,
    /// the certificate expired (`refresh=no`)
    Expired,
    /// a pending request was not granted within the client's patience (7 days)
    GaveUp,
    /// the server now sends a CA that is neither the recorded one nor the next one
    CaChanged,
}

impl ScepClientStatus {
    /// The word `print` shows.
    pub fn as_str(self) -> &'static str {
        use ScepClientStatus::*;
        match self {
            RequestingCertificate => "requesting-certificate",
            RequestingPendingCertificate => "requesting-pending-certificate",
            Issued => "issued",
            Rejected(RequestFault::BadAlgorithm) => "rejected-bad-alg",
            Rejected(RequestFault::BadSignature) => "rejected-bad-message-check",
            Rejected(RequestFault::BadTime) => "rejected-bad-time",
            Rejected(RequestFault::UnknownCertificate) => "rejected-bad-cert-id",
            Rejected(_) => "rejected-bad-request",
            ServerUnreachable => "server-unreachable",
            ServerError => "server-error",
            KeyUnavailable => "key-unavailable",
            Expired => "expired",
            GaveUp => "gave-up",
            CaChanged => "ca-changed",
        }
    }

    /// Every status, for the README and tests.
    pub const ALL: [ScepClientStatus; 14] = [
        ScepClientStatus::RequestingCertificate,
        ScepClientStatus::RequestingPendingCertificate,
        ScepClientStatus::Issued,
        ScepClientStatus::Rejected(RequestFault::BadAlgorithm),
        ScepClientStatus::Rejected(RequestFault::BadSignature),
        ScepClientStatus::Rejected(RequestFault::BadRequest),
        ScepClientStatus::Rejected(RequestFault::BadTime),
        ScepClientStatus::Rejected(RequestFault::UnknownCertificate),
        ScepClientStatus::ServerUnreachable,
        ScepClientStatus::ServerError,
        ScepClientStatus::KeyUnavailable,
        ScepClientStatus::Expired,
        ScepClientStatus::GaveUp,
        ScepClientStatus::CaChanged,
    ];

    fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                ManagerError::Store(crate::error::StoreError::Corrupt(format!(
                    "unknown SCEP client status '{s}'"
                )))
            })
    }
}

/// A SCEP client as `print` and `scep-server ra print` show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScepClientView {
    /// its name
    pub name: String,
    /// client or RA
    pub kind: ScepClientKind,
    /// the certificate entry it keeps
    pub certificate: Option<String>,
    /// `scep-url` / `server-url`
    pub url: String,
    /// `ca-identity`
    pub ca_identity: Option<String>,
    /// `status`
    pub status: ScepClientStatus,
    /// why (never a secret)
    pub detail: String,
    /// the CA entry (`<name>_CA`)
    pub ca: Option<String>,
    /// the next CA entry, once the server offered one
    pub next_ca: Option<String>,
    /// `ca-fingerprint` (SHA-256)
    pub ca_fingerprint: String,
    /// `req-fingerprint` (SHA-256 of the last request)
    pub req_fingerprint: String,
    /// the transactionID of the request in flight
    pub transaction_id: Option<String>,
    /// the server's capabilities as last read
    pub capabilities: String,
    /// notAfter of the certificate held, if it was issued (Unix seconds)
    pub expires: Option<i64>,
    /// when the timers look at it next (Unix seconds)
    pub next_attempt: i64,
    /// `on-smart-card`
    pub key_profile: Option<String>,
    /// `refresh`
    pub refresh: bool,
}

/// How long the timers wait after a failure to reach the server: doubled per attempt from
/// `base`, at most an hour.
pub(crate) fn backoff(base: Duration, attempts: i64) -> Duration {
    let factor = 1u32 << attempts.clamp(0, 7) as u32;
    (base * factor).min(Duration::from_secs(3600))
}

impl Manager {
    /// Every SCEP client, in the order added.
    pub fn scep_clients(&self) -> Result<Vec<ScepClientView>> {
        let txn = self.store.begin(TxnMode::Read)?;
        let clients = txn.scep_clients()?;
        clients
            .iter()
            .map(|c| client_view(txn.as_ref(), c))
            .collect()
    }

    /// One SCEP client, by its name or its certificate's.
    pub fn scep_client(&self, name: &str) -> Result<ScepClientView> {
        let txn = self.store.begin(TxnMode::Read)?;
        let rec = find_client(txn.as_ref(), name)?;
        client_view(txn.as_ref(), &rec)
    }

    /// The SCEP client's clock, Unix seconds: the system's, shifted by the test clock offset.
    pub(crate) fn client_now(&self) -> i64 {
        super::unix_secs(std::time::SystemTime::now()) + self.clock_offset
    }
}

/// A client by its name, or by the name of the certificate it keeps.
pub(crate) fn find_client(txn: &dyn Transaction, name: &str) -> Result<ScepClientRecord> {
    if let Some(c) = txn.scep_client(name)? {
        return Ok(c);
    }
    if let Some(cert) = txn.certificate(name)? {
        if let Some(c) = txn
            .scep_clients()?
            .into_iter()
            .find(|c| c.state.certificate_id == Some(cert.id))
        {
            return Ok(c);
        }
    }
    Err(ManagerError::not_found(ObjectKind::ScepClient, name))
}

fn cert_name(txn: &dyn Transaction, id: Option<i64>) -> Result<Option<String>> {
    Ok(match id {
        Some(id) => txn.certificate_by_id(id)?.map(|c| c.cert.name),
        None => None,
    })
}

pub(crate) fn client_view(txn: &dyn Transaction, c: &ScepClientRecord) -> Result<ScepClientView> {
    let s = &c.state;
    let status = ScepClientStatus::parse(&s.status)?;
    let expires = match s.certificate_id {
        Some(id) => match txn.certificate_by_id(id)? {
            Some(rec) => {
                let info = x509::inspect_certificate_cached(&rec.cert.der)?;
                // the temporary self-signed certificate is not an issued one
                (!info.self_issued).then_some(rec.cert.not_after)
            }
            None => None,
        },
        None => None,
    };
    Ok(ScepClientView {
        name: c.client.name.clone(),
        kind: ScepClientKind::parse(&c.client.kind)?,
        certificate: cert_name(txn, s.certificate_id)?,
        url: c.client.url.clone(),
        ca_identity: c.client.ca_identity.clone(),
        status,
        detail: s.detail.clone(),
        ca: cert_name(txn, s.ca_id)?,
        next_ca: cert_name(txn, s.next_ca_id)?,
        ca_fingerprint: s.ca_fingerprint.clone(),
        req_fingerprint: s.req_fingerprint.clone(),
        transaction_id: s.transaction.as_ref().map(|t| t.transaction_id.clone()),
        capabilities: s.capabilities.clone(),
        expires,
        next_attempt: s.next_attempt / 1_000_000,
        key_profile: c.client.key_profile.clone(),
        refresh: c.client.refresh,
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod word_tests {
    use super::*;

    #[test]
    fn every_status_word_reads_back() {
        for s in ScepClientStatus::ALL {
            assert_eq!(ScepClientStatus::parse(s.as_str()).unwrap(), s);
        }
        assert!(ScepClientStatus::parse("granted").is_err());
    }

    #[test]
    fn the_back_off_doubles_to_an_hour() {
        let b = Duration::from_secs(30);
        assert_eq!(backoff(b, 0), Duration::from_secs(30));
        assert_eq!(backoff(b, 1), Duration::from_secs(60));
        assert_eq!(backoff(b, 6), Duration::from_secs(1920));
        assert_eq!(backoff(b, 7), Duration::from_secs(3600));
        assert_eq!(backoff(b, 1000), Duration::from_secs(3600));
    }
}

//! `scep-server requests print|grant|reject`: the queue of requests that came without a
//! one-time password, and the record of those issued at once.
//!
//! A request is referred to by the `#` that `print` shows — a stable number (its row's, from
//! 0), so that `grant 0` grants what the operator saw even when requests arrive meanwhile —
//! or by its transaction id.

use std::time::SystemTime;

use super::enrol::{ScepEnrolment, ISSUED_PREFIX};
use super::micros_to_time;
use crate::error::{ManagerError, ObjectKind, Refusal, Result};
use crate::manager::Manager;
use crate::store::{now_micros, NewScepRequest, ScepRequestRecord, Transaction, TxnMode};
use crate::x509;

/// A request's status (RouterOS's words).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScepRequestStatus {
    /// waiting for the operator
    Pending,
    /// granted by the operator: the certificate is issued, the client has not fetched it yet
    Granted,
    /// rejected by the operator
    Denied,
    /// the certificate was delivered (or issued at once, with an OTP or as a renewal)
    Issued,
    /// issuing failed
    Failed,
    /// not granted within the server's `request-lifetime`
    Expired,
}

impl ScepRequestStatus {
    /// The word `print` shows and the store keeps.
    pub fn word(self) -> &'static str {
        match self {
            ScepRequestStatus::Pending => "pending",
            ScepRequestStatus::Granted => "granted",
            ScepRequestStatus::Denied => "denied",
            ScepRequestStatus::Issued => "issued",
            ScepRequestStatus::Failed => "failed",
            ScepRequestStatus::Expired => "expired",
        }
    }

    fn from_word(word: &str) -> Option<Self> {
        [
            ScepRequestStatus::Pending,
            ScepRequestStatus::Granted,
            ScepRequestStatus::Denied,
            ScepRequestStatus::Issued,
            ScepRequestStatus::Failed,
            ScepRequestStatus::Expired,
        ]
        .into_iter()
        .find(|s| s.word() == word)
    }
}

impl std::fmt::Display for ScepRequestStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// A request as `requests print` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScepRequestView {
    /// `#`
    pub number: i64,
    /// `authority`: `ca`, or `ra` when the server answers through an RA
    pub authority: &'static str,
    /// the server's path
    pub server: String,
    /// `status`
    pub status: ScepRequestStatus,
    /// `common-name`
    pub common_name: String,
    /// the whole subject
    pub subject: String,
    /// `subject-alt-name`
    pub subject_alt_name: String,
    /// `transaction-id`
    pub transaction_id: String,
    /// `req-fingerprint`: SHA-256 of the PKCS#10 request
    pub req_fingerprint: String,
    /// `created`
    pub created: SystemTime,
    /// the certificate issued for it, by name
    pub certificate: Option<String>,
}

/// The status a request has now: a pending one past its server's lifetime is expired.
pub(super) fn effective_status(
    r: &ScepRequestRecord,
    lifetime_secs: i64,
    now: i64,
) -> ScepRequestStatus {
    let status =
        ScepRequestStatus::from_word(&r.request.status).unwrap_or(ScepRequestStatus::Failed);
    if status == ScepRequestStatus::Pending
        && now.saturating_sub(r.created_at) > lifetime_secs.saturating_mul(1_000_000)
    {
        return ScepRequestStatus::Expired;
    }
    status
}

/// The row recorded for a request. A request that carried a challenge password keeps no
/// CSR (the password is in it, in clear, and could be a reused static secret); its
/// fingerprint still identifies it when it is sent again. Only pending requests, which carry
/// none, keep theirs, for the grant.
pub(super) fn request_record(
    server_id: i64,
    enrolment: &ScepEnrolment<'_>,
    info: &x509::csr::RequestInfo,
    status: ScepRequestStatus,
) -> NewScepRequest {
    let has_secret = info
        .challenge_password
        .as_deref()
        .is_some_and(|p| !p.is_empty());
    NewScepRequest {
        server_id,
        transaction_id: enrolment.transaction_id.to_owned(),
        status: status.word().to_owned(),
        csr: if has_secret {
            Vec::new()
        } else {
            enrolment.csr.to_vec()
        },
        signer: enrolment.signer.to_vec(),
        subject: info.subject_text.clone(),
        common_name: x509::subject_fields(&info.subject)
            .common_name
            .unwrap_or_default(),
        subject_alt_name: x509::general_names_to_string(&info.subject_alt_names),
        fingerprint: x509::fingerprint(enrolment.csr),
    }
}

/// A request by the `#` of `requests print` or its transaction id.
fn find_request(txn: &dyn Transaction, reference: &str) -> Result<ScepRequestRecord> {
    if let Ok(n) = reference.parse::<i64>() {
        if let Some(r) = txn.scep_request(n.saturating_add(1))? {
            return Ok(r);
        }
    }
    txn.scep_request_by_any_transaction(reference)?
        .ok_or_else(|| ManagerError::not_found(ObjectKind::ScepRequest, reference))
}

impl Manager {
    /// `scep-server requests print`.
    pub fn scep_requests(&self) -> Result<Vec<ScepRequestView>> {
        let txn = self.store.begin(TxnMode::Read)?;
        let servers = txn.scep_servers()?;
        let now = now_micros();
        let mut out = Vec::new();
        for r in txn.scep_requests()? {
            let server = servers.iter().find(|s| s.id == r.request.server_id);
            let lifetime = server.map_or(0, |s| s.server.request_lifetime);
            let certificate = match r.certificate_id {
                Some(id) => txn.certificate_by_id(id)?.map(|c| c.cert.name),
                None => None,
            };
            out.push(ScepRequestView {
                number: r.id - 1,
                authority: if server.is_some_and(|s| s.server.ra_id.is_some()) {
                    "ra"
                } else {
                    "ca"
                },
                server: server.map(|s| s.server.path.clone()).unwrap_or_default(),
                status: effective_status(&r, lifetime, now),
                common_name: r.request.common_name.clone(),
                subject: r.request.subject.clone(),
                subject_alt_name: r.request.subject_alt_name.clone(),
                transaction_id: r.request.transaction_id.clone(),
                req_fingerprint: r.request.fingerprint.clone(),
                created: micros_to_time(r.created_at),
                certificate,
            });
        }
        Ok(out)
    }

    /// `scep-server requests grant N`: issues the certificate now (the CA's key signs), in the
    /// transaction that moves the request from pending to granted; the client gets it at its
    /// next poll. Returns the certificate's name.
    pub fn scep_grant(&self, reference: &str) -> Result<String> {
        let (request, server) = {
            let txn = self.store.begin(TxnMode::Read)?;
            let r = find_request(txn.as_ref(), reference)?;
            let server = txn
                .scep_servers()?
                .into_iter()
                .find(|s| s.id == r.request.server_id)
                .ok_or_else(|| ManagerError::not_found(ObjectKind::ScepServer, reference))?;
            (r, server)
        };
        let status = effective_status(&request, server.server.request_lifetime, now_micros());
        if status != ScepRequestStatus::Pending {
            return Err(not_pending(reference, status));
        }
        let endpoint = self
            .scep_endpoint(&server.server.path)?
            .filter(|e| e.server_id == server.id)
            .ok_or_else(|| {
                ManagerError::refused(
                    Refusal::NotPending,
                    format!("the SCEP server {} is disabled", server.server.path),
                    Some("enable it first: certman scep-server enable"),
                )
            })?;
        // A request the CA's rules refuse can never be issued: it is marked failed (the
        // client's next poll gets FAILURE) and the refusal is the command's error.
        let certified = match x509::csr::parse_request(&request.request.csr)
            .map_err(ManagerError::from)
            .and_then(|info| self.scep_certify(&endpoint, &server, &info))
        {
            Ok(c) => c,
            Err(e) if never_issuable(&e) => {
                self.write(|txn| {
                    Ok(txn.move_scep_request(
                        request.id,
                        ScepRequestStatus::Pending.word(),
                        ScepRequestStatus::Failed.word(),
                        None,
                    )?)
                })?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        self.write(|txn| {
            let id = self.store_certified_in(txn, &certified, Some(ISSUED_PREFIX))?;
            let moved = txn.move_scep_request(
                request.id,
                ScepRequestStatus::Pending.word(),
                ScepRequestStatus::Granted.word(),
                Some(id),
            )?;
            if !moved {
                let now = txn
                    .scep_request(request.id)?
                    .and_then(|r| ScepRequestStatus::from_word(&r.request.status))
                    .unwrap_or(ScepRequestStatus::Failed);
                return Err(not_pending(reference, now));
            }
            Ok(txn
                .certificate_by_id(id)?
                .map(|c| c.cert.name)
                .unwrap_or_default())
        })
    }

    /// `scep-server requests reject N`: the client's next poll gets FAILURE.
    pub fn scep_reject(&self, reference: &str) -> Result<()> {
        self.write(|txn| {
            let r = find_request(txn, reference)?;
            let lifetime = txn
                .scep_servers()?
                .into_iter()
                .find(|s| s.id == r.request.server_id)
                .map_or(0, |s| s.server.request_lifetime);
            let status = effective_status(&r, lifetime, now_micros());
            if status != ScepRequestStatus::Pending
                || !txn.move_scep_request(
                    r.id,
                    ScepRequestStatus::Pending.word(),
                    ScepRequestStatus::Denied.word(),
                    None,
                )?
            {
                return Err(not_pending(reference, status));
            }
            Ok(())
        })
    }
}

/// Whether an error of issuing says the request itself cannot be issued by this CA (its
/// content, the CA's rules), rather than that the CA could not act now (token, PIN, store).
fn never_issuable(e: &ManagerError) -> bool {
    match e {
        ManagerError::BadRequest { .. } | ManagerError::InvalidValue(_) => true,
        // the request's content (not a signing failure of the CA's key)
        ManagerError::X509(x) => matches!(
            x,
            crate::error::X509Error::Asn1(_)
                | crate::error::X509Error::Malformed(_)
                | crate::error::X509Error::BadSignature(_)
                | crate::error::X509Error::UnsupportedAlgorithm(_)
                | crate::error::X509Error::Value(_)
        ),
        ManagerError::Refused { reason, .. } => {
            matches!(reason, Refusal::CaRequestNotAllowed | Refusal::NameInUse)
        }
        _ => false,
    }
}

fn not_pending(reference: &str, status: ScepRequestStatus) -> ManagerError {
    ManagerError::refused(
        Refusal::NotPending,
        format!("SCEP request {reference} is {status}, not pending"),
        None,
    )
}

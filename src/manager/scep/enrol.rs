//! What a SCEP server asks of the CA: which server answers a path, whose key decrypts and
//! signs its messages (the RA's or the CA's), and the decisions on a request — issue it now
//! (a valid one-time password, or a renewal signed by a certificate this CA issued), queue it
//! for the operator, answer a poll, or refuse it with the fault SCEP's failInfo names.
//!
//! An issuance consumes its OTP, stores the certificate and records the request in one
//! transaction.

use std::sync::Arc;
use std::time::SystemTime;

use super::otp::otp_hash;
use super::queue::{effective_status, request_record, ScepRequestStatus};
use crate::error::{KeyError, ManagerError, ObjectKind, RequestFault, Result};
use crate::keys::{KeyHandle, KeySigner};
use crate::manager::{ca_key_handle, CertifiedRequest, IssueRequest, Manager};
use crate::secret::SecretBytes;
use crate::store::{
    now_micros, CertificateRecord, Lock, NewScepRequest, ScepServerRecord, Transaction, TxnMode,
};
use crate::x509;

/// The most requests one server keeps pending: past it, requests without a password are
/// refused (anyone can send one; the queue must not grow without end).
pub(super) const MAX_PENDING: usize = 1_000;
/// Certificates a SCEP server issues are named as RouterOS names them: `issued_N`.
pub(super) const ISSUED_PREFIX: &str = "issued_";

/// An enabled SCEP server, as a request to its path finds it.
#[derive(Clone, Debug)]
pub struct ScepEndpoint {
    /// the server's row
    pub server_id: i64,
    /// its path
    pub path: String,
    /// the CA's name
    pub ca_name: String,
    /// the CA certificate, DER
    pub ca_certificate: Vec<u8>,
    /// the RA certificate, DER, if the server has one
    pub ra_certificate: Option<Vec<u8>>,
    /// the next CA certificate, DER (GetNextCACert), if set
    pub next_ca_certificate: Option<Vec<u8>>,
    /// why the server cannot answer now (its CA or RA revoked or expired since it was set up)
    pub out_of_service: Option<String>,
    /// RA mode (`scep-server ra`): the server requests are forwarded to
    pub upstream: Option<ScepUpstream>,
    /// the server's settings as they were read for this message
    pub(super) server: ScepServerRecord,
    ca_id: i64,
    /// whose key decrypts and signs (the RA, else the CA): name and key, read with the rest
    responder_name: String,
    responder_key: std::result::Result<KeyHandle, String>,
}

/// Where an RA-mode server forwards its requests: the upstream server its RA certificate came
/// from, and the CA it must show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScepUpstream {
    /// the SCEP client holding the RA certificate
    pub client: String,
    /// the upstream server's URL
    pub url: String,
    /// its `ca-identity`
    pub ca_identity: Option<String>,
    /// the SHA-256 fingerprint its CA must have
    pub ca_fingerprint: String,
}

/// The key that decrypts requests and signs replies for a server (its RA's, else its CA's).
pub struct ScepResponder {
    /// its certificate, DER (the CertRep signer)
    pub certificate: Vec<u8>,
    /// its signer
    pub signer: Arc<dyn KeySigner>,
    handle: KeyHandle,
}

impl std::fmt::Debug for ScepResponder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScepResponder")
            .field("key", &self.handle.uri.to_string())
            .finish_non_exhaustive()
    }
}

/// A PKCSReq or RenewalReq, its envelope opened and its signature verified by the protocol.
#[derive(Clone, Copy, Debug)]
pub struct ScepEnrolment<'a> {
    /// a RenewalReq (else a PKCSReq)
    pub renewal: bool,
    /// the client's transactionID
    pub transaction_id: &'a str,
    /// the PKCS#10 request, DER
    pub csr: &'a [u8],
    /// the certificate that signed the message, DER
    pub signer: &'a [u8],
    /// its public key (read leniently by the message layer)
    pub signer_public_key: &'a spki::SubjectPublicKeyInfoOwned,
}

/// What the CA decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnrolOutcome {
    /// issued (now or earlier): the certificate, DER
    Issued(Vec<u8>),
    /// queued for the operator (`scep-server requests grant`)
    Pending,
    /// refused: the fault (SCEP failInfo) and why, for the log
    Rejected(RequestFault, String),
}

/// Why an OTP (by hash) cannot be used for `server_id` now, if it cannot: checked before the
/// CA's key is reached; the consumption in the write transaction has the last word.
fn otp_unusable(
    txn: &dyn Transaction,
    hash: &[u8],
    server_id: i64,
) -> Result<Option<&'static str>> {
    Ok(match txn.otp_by_hash(hash)? {
        None => Some("wrong one-time password"),
        Some(o) if o.used_at.is_some() => Some("the one-time password was used already"),
        Some(o) if o.expires_at <= now_micros() => Some("the one-time password has expired"),
        Some(o) if o.server_id.is_some_and(|s| s != server_id) => {
            Some("the one-time password is for another SCEP server")
        }
        Some(_) => None,
    })
}

/// Why a CA or RA certificate cannot serve now: revoked, or not valid now.
pub(super) fn unusable(rec: &CertificateRecord) -> Result<Option<&'static str>> {
    if rec.revoked_at.is_some() {
        return Ok(Some("is revoked"));
    }
    let info = x509::inspect_certificate_cached(&rec.cert.der)?;
    let now = SystemTime::now();
    Ok((info.not_after < now || info.not_before > now).then_some("is not valid now"))
}

fn reject(fault: RequestFault, why: impl Into<String>) -> EnrolOutcome {
    EnrolOutcome::Rejected(fault, why.into())
}

/// The segment-wise match of a request path to a server path (`/scep/test` answers
/// `/scep/test`, `/scep/test/pkiclient.exe`, `/scep/test/cgi-bin/pkiclient.exe`).
fn path_matches(server: &str, request: &str) -> bool {
    request == server
        || request
            .strip_prefix(server)
            .is_some_and(|r| r.starts_with('/'))
}

impl Manager {
    fn read_txn(&self) -> Result<Box<dyn Transaction + '_>> {
        Ok(self
            .reads
            .as_deref()
            .unwrap_or(&*self.store)
            .begin(TxnMode::Read)?)
    }

    /// The enabled SCEP server answering `path`, if any.
    pub fn scep_endpoint(&self, path: &str) -> Result<Option<ScepEndpoint>> {
        let txn = self.read_txn()?;
        let Some(s) = txn
            .scep_servers()?
            .into_iter()
            .find(|s| !s.server.disabled && path_matches(&s.server.path, path))
        else {
            return Ok(None);
        };
        let der = |id: Option<i64>| -> Result<Option<Vec<u8>>> {
            Ok(match id {
                Some(id) => txn.certificate_by_id(id)?.map(|c| c.cert.der),
                None => None,
            })
        };
        let ca = txn
            .certificate_by_id(s.server.ca_id)?
            .ok_or_else(|| ManagerError::not_found(ObjectKind::CaCertificate, &s.server.path))?;
        let ra = match s.server.ra_id {
            Some(id) => txn.certificate_by_id(id)?,
            None => None,
        };
        let upstream = match s.server.upstream_id {
            Some(id) => txn
                .scep_clients()?
                .into_iter()
                .find(|c| c.id == id)
                .map(|c| ScepUpstream {
                    client: c.client.name,
                    url: c.client.url,
                    ca_identity: c.client.ca_identity,
                    ca_fingerprint: c.state.ca_fingerprint,
                }),
            None => None,
        };
        let mut out_of_service = match unusable(&ca)? {
            Some(why) => Some(format!("its CA \"{}\" {why}", ca.cert.name)),
            None => match &ra {
                Some(ra) => unusable(ra)?.map(|why| format!("its RA \"{}\" {why}", ra.cert.name)),
                None => None,
            },
        };
        if let (Some(up), Some(ra)) = (&upstream, &ra) {
            if x509::inspect_certificate_cached(&ra.cert.der)?.self_issued {
                out_of_service.get_or_insert_with(|| {
                    format!(
                        "its RA certificate \"{}\" is not issued yet (see SCEP client {})",
                        ra.cert.name, up.client
                    )
                });
            }
        }
        let responder = ra.as_ref().unwrap_or(&ca);
        let responder_name = responder.cert.name.clone();
        let responder_key = ca_key_handle(txn.as_ref(), responder)
            .map(|(_, handle)| handle)
            .map_err(|e| e.to_string());
        Ok(Some(ScepEndpoint {
            out_of_service,
            upstream,
            server: s.clone(),
            server_id: s.id,
            path: s.server.path.clone(),
            ca_name: ca.cert.name.clone(),
            ca_certificate: ca.cert.der.clone(),
            ra_certificate: ra.as_ref().map(|r| r.cert.der.clone()),
            next_ca_certificate: der(s.server.next_ca_id)?,
            ca_id: s.server.ca_id,
            responder_name,
            responder_key,
        }))
    }

    /// The key that decrypts and signs for `endpoint` (reaching it: token login, PIN),
    /// checked against its certificate.
    pub fn scep_responder(&self, endpoint: &ScepEndpoint) -> Result<ScepResponder> {
        let handle = endpoint
            .responder_key
            .clone()
            .map_err(|why| ManagerError::Failed(format!("the SCEP responder's key: {why}")))?;
        let certificate = endpoint
            .ra_certificate
            .clone()
            .unwrap_or_else(|| endpoint.ca_certificate.clone());
        let info = x509::inspect_certificate_cached(&certificate)?;
        let signer = self.ca_signer(&endpoint.responder_name, &handle, &info)?;
        Ok(ScepResponder {
            certificate,
            signer,
            handle,
        })
    }

    /// RSA PKCS#1 v1.5 decryption of a request's content-encryption key by the responder's
    /// key, on its token or card.
    pub fn scep_decrypt(
        &self,
        responder: &ScepResponder,
        ciphertext: &[u8],
    ) -> std::result::Result<SecretBytes, KeyError> {
        let provider = self.keys.provider(&responder.handle.uri)?;
        let decrypter = provider.decrypter().ok_or_else(|| {
            KeyError::Unsupported(format!("{} keys cannot decrypt", provider.name()))
        })?;
        decrypter.decrypt_pkcs1v15(&responder.handle, ciphertext)
    }

    /// A PKCSReq or RenewalReq to `endpoint`.
    pub fn scep_enrol(
        &self,
        endpoint: &ScepEndpoint,
        enrolment: &ScepEnrolment<'_>,
    ) -> Result<EnrolOutcome> {
        let info = match x509::csr::parse_request(enrolment.csr) {
            Ok(info) => info,
            Err(e) => return Ok(reject(e.request_fault(), format!("the request: {e}"))),
        };
        if let Err(why) = x509::names::check_subject(&info.subject)
            .and_then(|()| x509::names::check_general_names(&info.subject_alt_names))
        {
            return Ok(reject(
                RequestFault::BadRequest,
                format!("the request's names: {why}"),
            ));
        }
        let otp = match info.challenge_password.as_deref() {
            Some(pw) if !pw.is_empty() => Some(otp_hash(self.store.salt(), pw)),
            _ => None,
        };
        // What the store knows of it, in one read.
        // (The server itself was read with the endpoint, for this message.)
        let server = &endpoint.server;
        let (known, signer_record, otp_problem) = {
            let txn = self.read_txn()?;
            let known =
                txn.scep_request_by_transaction(endpoint.server_id, enrolment.transaction_id)?;
            let signer = txn.certificate_by_fingerprint(&x509::fingerprint(enrolment.signer))?;
            let otp_problem = match &otp {
                Some(hash) => otp_unusable(txn.as_ref(), hash, endpoint.server_id)?,
                None => None,
            };
            (known, signer, otp_problem)
        };
        // The same request again (micromdm's scepclient polls by re-sending its PKCSReq; a
        // reply may have been lost): answer from the queue.
        let fingerprint = x509::fingerprint(enrolment.csr);
        if let Some(r) = known.filter(|r| r.request.fingerprint == fingerprint) {
            return self.scep_answer(server, r.id);
        }
        // Signed by a certificate this CA issued for another subject: a request an RA
        // forwards (RFC 8894 §2.4); it needs its OTP or a grant like any new request.
        let forwarded = match &signer_record {
            Some(c) if c.cert.issuer_id == Some(endpoint.ca_id) && !enrolment.renewal => {
                x509::inspect_certificate_cached(&c.cert.der)?.subject_name != info.subject
            }
            _ => false,
        };
        match signer_record {
            Some(c) if c.cert.issuer_id == Some(endpoint.ca_id) && !forwarded => {
                self.scep_renew(server, endpoint, enrolment, &info, &c)
            }
            Some(c) if forwarded && c.revoked_at.is_some() => Ok(reject(
                RequestFault::BadRequest,
                format!("forwarded by \"{}\", which is revoked", c.cert.name),
            )),
            Some(_) if forwarded => match (otp, otp_problem) {
                (Some(_), Some(why)) => Ok(reject(RequestFault::BadRequest, why)),
                (Some(hash), None) => {
                    self.scep_issue(server, endpoint, enrolment, &info, Some(hash))
                }
                (None, _) => self.scep_queue(server, enrolment, &info),
            },
            _ if enrolment.renewal => Ok(reject(
                RequestFault::BadRequest,
                "a renewal must be signed by a certificate this CA issued",
            )),
            // A new request: signed by its own key (usually a self-signed certificate; sscep's
            // has a serial too long for a strict parser, so the key comes from the message
            // layer's lenient reading).
            _ if enrolment.signer_public_key != &info.public_key => Ok(reject(
                RequestFault::BadRequest,
                "the message is signed by a key other than the request's",
            )),
            _ => match (otp, otp_problem) {
                (Some(_), Some(why)) => Ok(reject(RequestFault::BadRequest, why)),
                (Some(hash), None) => {
                    self.scep_issue(server, endpoint, enrolment, &info, Some(hash))
                }
                (None, _) => self.scep_queue(server, enrolment, &info),
            },
        }
    }

    /// A renewal: signed by `current`, a certificate this CA issued — valid, unrevoked, for
    /// the same subject — it is issued without a challenge.
    fn scep_renew(
        &self,
        server: &ScepServerRecord,
        endpoint: &ScepEndpoint,
        enrolment: &ScepEnrolment<'_>,
        info: &x509::csr::RequestInfo,
        current: &CertificateRecord,
    ) -> Result<EnrolOutcome> {
        let signer = x509::inspect_certificate(&current.cert.der)?;
        if current.revoked_at.is_some() {
            return Ok(reject(
                RequestFault::BadRequest,
                format!("signed by \"{}\", which is revoked", current.cert.name),
            ));
        }
        let now = SystemTime::now();
        if signer.not_after < now || signer.not_before > now {
            return Ok(reject(
                RequestFault::BadRequest,
                format!(
                    "signed by \"{}\", which is not valid now",
                    current.cert.name
                ),
            ));
        }
        if signer.subject_name != info.subject {
            return Ok(reject(
                RequestFault::BadRequest,
                "a renewal must ask for the subject of the certificate that signs it",
            ));
        }
        self.scep_issue(server, endpoint, enrolment, info, None)
    }

    fn scep_queue(
        &self,
        server: &ScepServerRecord,
        enrolment: &ScepEnrolment<'_>,
        info: &x509::csr::RequestInfo,
    ) -> Result<EnrolOutcome> {
        let record = request_record(server.id, enrolment, info, ScepRequestStatus::Pending);
        let lifetime = server.server.request_lifetime;
        self.write(|txn| {
            if let Some(id) = lock_queue(txn, &record)? {
                return answer_in(txn, lifetime, id);
            }
            // Pending and not yet expired: created within the request lifetime.
            let since = now_micros() - lifetime.saturating_mul(1_000_000);
            let pending =
                txn.count_scep_requests(server.id, ScepRequestStatus::Pending.word(), since)?;
            if pending >= MAX_PENDING as i64 {
                return Ok(reject(
                    RequestFault::BadRequest,
                    format!("{MAX_PENDING} requests are waiting already"),
                ));
            }
            txn.insert_scep_request(&record, None)?;
            Ok(EnrolOutcome::Pending)
        })
    }

    /// Signs the certificate (outside any transaction: the CA's key may be on a token), then
    /// in one transaction consumes the OTP (if one was given), stores the certificate and
    /// records the request as issued.
    fn scep_issue(
        &self,
        server: &ScepServerRecord,
        endpoint: &ScepEndpoint,
        enrolment: &ScepEnrolment<'_>,
        info: &x509::csr::RequestInfo,
        otp: Option<Vec<u8>>,
    ) -> Result<EnrolOutcome> {
        let certified = match self.scep_certify(endpoint, server, info) {
            Ok(c) => c,
            Err(e @ ManagerError::BadRequest { .. }) => {
                let fault = match &e {
                    ManagerError::BadRequest { fault, .. } => *fault,
                    _ => RequestFault::BadRequest,
                };
                return Ok(reject(fault, e.to_string()));
            }
            Err(e @ (ManagerError::InvalidValue(_) | ManagerError::Refused { .. })) => {
                return Ok(reject(RequestFault::BadRequest, e.to_string()))
            }
            Err(e) => return Err(e),
        };
        let record = request_record(server.id, enrolment, info, ScepRequestStatus::Issued);
        self.write(|txn| {
            if let Some(id) = lock_queue(txn, &record)? {
                // issued (or queued) by another node meanwhile: this certificate is dropped
                return answer_in(txn, server.server.request_lifetime, id);
            }
            if let Some(hash) = &otp {
                if !txn.consume_otp(hash, server.id, now_micros())? {
                    // used by another request meanwhile: nothing was written
                    return Ok(reject(
                        RequestFault::BadRequest,
                        "the one-time password was used meanwhile",
                    ));
                }
            }
            let id = self.store_certified_in(txn, &certified, Some(ISSUED_PREFIX))?;
            txn.insert_scep_request(&record, Some(id))?;
            Ok(EnrolOutcome::Issued(certified.der().to_vec()))
        })
    }

    /// The certificate for a request, signed by the server's CA (no writes).
    pub(super) fn scep_certify(
        &self,
        endpoint: &ScepEndpoint,
        server: &ScepServerRecord,
        info: &x509::csr::RequestInfo,
    ) -> Result<CertifiedRequest> {
        self.certify_request_unnamed(&IssueRequest {
            ca: &endpoint.ca_name,
            request: info,
            name: None,
            days_valid: Some(server.server.days_valid),
            allow_ca: false,
        })
    }

    /// The answer to a request in the queue: its certificate once granted (it is then
    /// issued: delivered), else pending, or refused once rejected or expired.
    pub(super) fn scep_answer(&self, server: &ScepServerRecord, id: i64) -> Result<EnrolOutcome> {
        let lifetime = server.server.request_lifetime;
        self.write(|txn| answer_in(txn, lifetime, id))
    }

    /// CertPoll (GetCertInitial): the request with this transactionID.
    pub fn scep_poll(&self, endpoint: &ScepEndpoint, transaction_id: &str) -> Result<EnrolOutcome> {
        let server = &endpoint.server;
        let known = {
            let txn = self.read_txn()?;
            txn.scep_request_by_transaction(server.id, transaction_id)?
        };
        match known {
            Some(r) => self.scep_answer(server, r.id),
            None => Ok(reject(
                RequestFault::UnknownCertificate,
                "no request with this transaction id",
            )),
        }
    }

    /// GetCert: a certificate this server's CA issued, by issuer and serial number.
    pub fn scep_certificate(
        &self,
        endpoint: &ScepEndpoint,
        issuer: &[u8],
        serial: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        Ok(self
            .scep_issued(endpoint, issuer, serial)?
            .map(|c| c.cert.der))
    }

    /// GetCRL: the current CRL of this server's CA, for a certificate it issued (by issuer
    /// and serial number).
    pub fn scep_crl(
        &self,
        endpoint: &ScepEndpoint,
        issuer: &[u8],
        serial: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        let ca_info = x509::inspect_certificate_cached(&endpoint.ca_certificate)?;
        let issuer_matches = der::Encode::to_der(&ca_info.subject_name)
            .map(|d| d == issuer)
            .unwrap_or(false);
        if !issuer_matches {
            return Ok(None);
        }
        let _ = serial; // the CA's one CRL covers every serial it issued
        let txn = self.read_txn()?;
        Ok(txn.crl(endpoint.ca_id)?.map(|c| c.der))
    }

    fn scep_issued(
        &self,
        endpoint: &ScepEndpoint,
        issuer: &[u8],
        serial: &[u8],
    ) -> Result<Option<CertificateRecord>> {
        let ca_info = x509::inspect_certificate_cached(&endpoint.ca_certificate)?;
        let issuer_matches = der::Encode::to_der(&ca_info.subject_name)
            .map(|d| d == issuer)
            .unwrap_or(false);
        if !issuer_matches {
            return Ok(None);
        }
        // Serials are stored as hex of their DER content bytes.
        let txn = self.read_txn()?;
        Ok(txn.certificate_by_serial(endpoint.ca_id, &hex::encode_upper(serial))?)
    }
}

/// Takes the lock of the request's server, then finds whether its queue holds this request
/// (same transactionID and request) already: sent to two nodes at once, or again while the
/// first was being decided. Under the lock, the check and the insert that follows are one
/// step on every node, as is the pending count.
fn lock_queue(txn: &mut dyn Transaction, record: &NewScepRequest) -> Result<Option<i64>> {
    txn.lock(Lock::ScepServer(record.server_id))?;
    Ok(txn
        .scep_request_by_transaction(record.server_id, &record.transaction_id)?
        .filter(|r| r.request.fingerprint == record.fingerprint)
        .map(|r| r.id))
}

/// [`Manager::scep_answer`] in `txn`.
fn answer_in(txn: &mut dyn Transaction, lifetime: i64, id: i64) -> Result<EnrolOutcome> {
    let Some(r) = txn.scep_request(id)? else {
        return Ok(reject(RequestFault::UnknownCertificate, "no such request"));
    };
    Ok(match effective_status(&r, lifetime, now_micros()) {
        ScepRequestStatus::Pending => EnrolOutcome::Pending,
        ScepRequestStatus::Granted | ScepRequestStatus::Issued => {
            let cert = match r.certificate_id {
                Some(c) => txn.certificate_by_id(c)?,
                None => None,
            };
            let Some(cert) = cert else {
                return Ok(reject(
                    RequestFault::BadRequest,
                    "the certificate issued for this request was removed",
                ));
            };
            if cert.revoked_at.is_some() {
                return Ok(reject(
                    RequestFault::BadRequest,
                    "the certificate issued for this request is revoked",
                ));
            }
            if r.request.status == ScepRequestStatus::Granted.word() {
                txn.move_scep_request(
                    r.id,
                    ScepRequestStatus::Granted.word(),
                    ScepRequestStatus::Issued.word(),
                    None,
                )?;
            }
            EnrolOutcome::Issued(cert.cert.der)
        }
        ScepRequestStatus::Expired => {
            if r.request.status == ScepRequestStatus::Pending.word() {
                txn.move_scep_request(
                    r.id,
                    ScepRequestStatus::Pending.word(),
                    ScepRequestStatus::Expired.word(),
                    None,
                )?;
            }
            reject(
                RequestFault::BadRequest,
                "the request expired before it was granted",
            )
        }
        ScepRequestStatus::Denied => reject(RequestFault::BadRequest, "the request was rejected"),
        ScepRequestStatus::Failed => reject(RequestFault::BadRequest, "the request failed"),
    })
}

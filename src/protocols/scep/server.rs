//! The SCEP server side (RFC 8894 §4): GetCACaps, GetCACert, GetNextCACert and PKIOperation
//! (PKCSReq, RenewalReq, CertPoll, GetCert, GetCRL) answered for the server a path names. No
//! HTTP framework here: `service/scep.rs` hands in the path, the operation and the message, and
//! sends back the [`Reply`]. The CA is reached through the [`ScepCa`] port, which the manager
//! implements; every call blocks (the CA's key may be on a token).

use std::str::FromStr;

use super::message::{
    self, CertRep, ContentCipher, FailInfo, MessageDigest, MessageLimits, MessageType, PkiStatus,
    ReceivedMessage, ReplyPayload, RequestContent,
};
use crate::error::{KeyError, ManagerError, RequestFault};
use crate::manager::{EnrolOutcome, Manager, ScepEndpoint, ScepEnrolment, ScepResponder};
use crate::secret::SecretBytes;

/// What a SCEP server needs of the CA. Every method blocks.
pub trait ScepCa: Send + Sync {
    /// The enabled server answering `path`.
    fn scep_endpoint(&self, path: &str) -> Result<Option<ScepEndpoint>, ManagerError>;
    /// The key that decrypts and signs for it.
    fn scep_responder(&self, endpoint: &ScepEndpoint) -> Result<ScepResponder, ManagerError>;
    /// RSA PKCS#1 v1.5 decryption with the responder's key.
    fn scep_decrypt(
        &self,
        responder: &ScepResponder,
        ciphertext: &[u8],
    ) -> Result<SecretBytes, KeyError>;
    /// PKCSReq / RenewalReq.
    fn scep_enrol(
        &self,
        endpoint: &ScepEndpoint,
        enrolment: &ScepEnrolment<'_>,
    ) -> Result<EnrolOutcome, ManagerError>;
    /// CertPoll.
    fn scep_poll(
        &self,
        endpoint: &ScepEndpoint,
        transaction_id: &str,
    ) -> Result<EnrolOutcome, ManagerError>;
    /// GetCert.
    fn scep_certificate(
        &self,
        endpoint: &ScepEndpoint,
        issuer: &[u8],
        serial: &[u8],
    ) -> Result<Option<Vec<u8>>, ManagerError>;
    /// GetCRL.
    fn scep_crl(
        &self,
        endpoint: &ScepEndpoint,
        issuer: &[u8],
        serial: &[u8],
    ) -> Result<Option<Vec<u8>>, ManagerError>;
    /// RA mode: a request pending upstream too long is given up (the answer to send).
    fn scep_forward_check(
        &self,
        endpoint: &ScepEndpoint,
        transaction_id: &str,
    ) -> Result<Option<EnrolOutcome>, ManagerError>;
    /// RA mode: what the upstream server answered, for the queue.
    fn scep_forwarded(
        &self,
        endpoint: &ScepEndpoint,
        transaction_id: &str,
        enrolment: Option<&ScepEnrolment<'_>>,
        outcome: &EnrolOutcome,
    ) -> Result<(), ManagerError>;
}

impl ScepCa for Manager {
    fn scep_endpoint(&self, path: &str) -> Result<Option<ScepEndpoint>, ManagerError> {
        Manager::scep_endpoint(self, path)
    }
    fn scep_responder(&self, endpoint: &ScepEndpoint) -> Result<ScepResponder, ManagerError> {
        Manager::scep_responder(self, endpoint)
    }
    fn scep_decrypt(
        &self,
        responder: &ScepResponder,
        ciphertext: &[u8],
    ) -> Result<SecretBytes, KeyError> {
        Manager::scep_decrypt(self, responder, ciphertext)
    }
    fn scep_enrol(
        &self,
        endpoint: &ScepEndpoint,
        enrolment: &ScepEnrolment<'_>,
    ) -> Result<EnrolOutcome, ManagerError> {
        Manager::scep_enrol(self, endpoint, enrolment)
    }
    fn scep_poll(
        &self,
        endpoint: &ScepEndpoint,
        transaction_id: &str,
    ) -> Result<EnrolOutcome, ManagerError> {
        Manager::scep_poll(self, endpoint, transaction_id)
    }
    fn scep_certificate(
        &self,
        endpoint: &ScepEndpoint,
        issuer: &[u8],
        serial: &[u8],
    ) -> Result<Option<Vec<u8>>, ManagerError> {
        Manager::scep_certificate(self, endpoint, issuer, serial)
    }
    fn scep_crl(
        &self,
        endpoint: &ScepEndpoint,
        issuer: &[u8],
        serial: &[u8],
    ) -> Result<Option<Vec<u8>>, ManagerError> {
        Manager::scep_crl(self, endpoint, issuer, serial)
    }
    fn scep_forward_check(
        &self,
        endpoint: &ScepEndpoint,
        transaction_id: &str,
    ) -> Result<Option<EnrolOutcome>, ManagerError> {
        Manager::scep_forward_check(self, endpoint, transaction_id)
    }
    fn scep_forwarded(
        &self,
        endpoint: &ScepEndpoint,
        transaction_id: &str,
        enrolment: Option<&ScepEnrolment<'_>>,
        outcome: &EnrolOutcome,
    ) -> Result<(), ManagerError> {
        Manager::scep_forwarded(self, endpoint, transaction_id, enrolment, outcome)
    }
}

/// `?operation=`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// the server's capabilities
    GetCaCaps,
    /// the CA (and RA) certificates
    GetCaCert,
    /// the next CA certificate, signed
    GetNextCaCert,
    /// a pkiMessage
    PkiOperation,
}

impl FromStr for Operation {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        // Clients differ in case; RFC 8894 spells them as below.
        Ok(match s.to_ascii_lowercase().as_str() {
            "getcacaps" => Operation::GetCaCaps,
            "getcacert" => Operation::GetCaCert,
            "getnextcacert" => Operation::GetNextCaCert,
            "pkioperation" => Operation::PkiOperation,
            _ => return Err(()),
        })
    }
}

/// An HTTP answer, framework-free.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status
    pub status: u16,
    /// Content-Type
    pub content_type: &'static str,
    /// body
    pub body: Vec<u8>,
    /// one line for the log: what was asked and decided (never a secret)
    pub log: String,
}

fn plain(status: u16, text: &str) -> Reply {
    Reply {
        status,
        content_type: "text/plain; charset=utf-8",
        body: format!("{text}\n").into_bytes(),
        log: text.to_owned(),
    }
}

/// The capabilities certman's server has (RFC 8894 §3.5.2), one per line;
/// GetNextCACert only while a next CA is set.
pub fn capabilities(next_ca: bool) -> String {
    let mut caps = vec!["AES", "DES3"];
    if next_ca {
        caps.push("GetNextCACert");
    }
    caps.extend([
        "POSTPKIOperation",
        "Renewal",
        "SCEPStandard",
        "SHA-1",
        "SHA-256",
        "SHA-512",
    ]);
    let mut s = caps.join("\n");
    s.push('\n');
    s
}

/// The failInfo a fault is answered with.
pub fn fail_info(fault: RequestFault) -> FailInfo {
    match fault {
        RequestFault::BadAlgorithm => FailInfo::BadAlg,
        RequestFault::BadSignature => FailInfo::BadMessageCheck,
        RequestFault::BadTime => FailInfo::BadTime,
        RequestFault::UnknownCertificate => FailInfo::BadCertId,
        _ => FailInfo::BadRequest,
    }
}

/// Answers one SCEP request to `path` (any suffix under a server's path).
pub fn handle(
    ca: &dyn ScepCa,
    path: &str,
    operation: Option<&str>,
    message: Option<&[u8]>,
    limits: &MessageLimits,
) -> Reply {
    let endpoint = match ca.scep_endpoint(path) {
        Ok(Some(e)) => e,
        Ok(None) => return plain(404, "no SCEP server at this path"),
        Err(e) => return internal(&e.to_string()),
    };
    let Some(operation) = operation else {
        return plain(400, "operation= is missing");
    };
    let Ok(operation) = operation.parse::<Operation>() else {
        return plain(400, "unknown operation");
    };
    if let Some(why) = &endpoint.out_of_service {
        return unavailable(&format!(
            "the SCEP server at {} is out of service: {why}",
            endpoint.path
        ));
    }
    match operation {
        Operation::GetCaCaps => Reply {
            status: 200,
            content_type: "text/plain",
            body: capabilities(endpoint.next_ca_certificate.is_some()).into_bytes(),
            log: "GetCACaps".into(),
        },
        Operation::GetCaCert => match &endpoint.ra_certificate {
            Some(ra) => Reply {
                status: 200,
                content_type: "application/x-x509-ca-ra-cert",
                body: message::degenerate_certificates(&[ra, &endpoint.ca_certificate]),
                log: "GetCACert (RA and CA)".into(),
            },
            None => Reply {
                status: 200,
                content_type: "application/x-x509-ca-cert",
                body: endpoint.ca_certificate.clone(),
                log: "GetCACert".into(),
            },
        },
        Operation::GetNextCaCert => next_ca(ca, &endpoint),
        Operation::PkiOperation => match message {
            None => plain(400, "PKIOperation without a message"),
            Some(m) => pki_operation(ca, &endpoint, m, limits),
        },
    }
}

/// The CA could not act now (its token absent, a PIN refused, the store busy): HTTP 503, which
/// clients retry (certmonger: CA_UNREACHABLE), rather than a FAILURE they would take as final.
fn unavailable(why: &str) -> Reply {
    Reply {
        status: 503,
        content_type: "text/plain; charset=utf-8",
        body: b"the CA cannot answer now; try again later\n".to_vec(),
        log: format!("unavailable: {why}"),
    }
}

fn internal(why: &str) -> Reply {
    Reply {
        status: 500,
        content_type: "text/plain; charset=utf-8",
        body: b"internal server error\n".to_vec(),
        log: format!("internal error: {why}"),
    }
}

fn next_ca(ca: &dyn ScepCa, endpoint: &ScepEndpoint) -> Reply {
    let Some(next) = &endpoint.next_ca_certificate else {
        return plain(404, "this SCEP server has no next CA");
    };
    let responder = match ca.scep_responder(endpoint) {
        Ok(r) => r,
        Err(e) => return unavailable(&format!("the responder's key: {e}")),
    };
    match message::signed_certificates(&[next], responder.signer.as_ref(), &responder.certificate) {
        Ok(body) => Reply {
            status: 200,
            content_type: "application/x-x509-next-ca-cert",
            body,
            log: "GetNextCACert".into(),
        },
        Err(e) => internal(&e.to_string()),
    }
}

/// The reply's digest: SHA-512 when the client used it, else SHA-256 (certman's signers
/// make no SHA-1 or MD5 signatures).
fn reply_digest(request: MessageDigest) -> MessageDigest {
    match request {
        MessageDigest::Sha512 => MessageDigest::Sha512,
        _ => MessageDigest::Sha256,
    }
}

fn pki_operation(
    ca: &dyn ScepCa,
    endpoint: &ScepEndpoint,
    input: &[u8],
    limits: &MessageLimits,
) -> Reply {
    let received = match message::parse_request(input, limits) {
        Ok(r) => r,
        Err(e) => return plain(400, &format!("not a SCEP message: {e}")),
    };
    let responder = match ca.scep_responder(endpoint) {
        Ok(r) => r,
        Err(e) => return unavailable(&format!("the responder's key: {e}")),
    };
    let kind = received.message_type;
    let (status, payload, note) = match decide(ca, endpoint, &responder, &received, limits) {
        Ok(d) => d,
        Err(why) => {
            return unavailable(&format!(
                "{kind:?} transaction-id={}: {why}",
                received.transaction_id
            ))
        }
    };
    let cipher = received
        .content_cipher()
        .unwrap_or(ContentCipher::Aes256Cbc);
    let rep = CertRep {
        transaction_id: &received.transaction_id,
        recipient_nonce: &received.sender_nonce,
        status,
        digest: reply_digest(received.digest),
        cipher,
        payload,
        recipient: Some(&received.signer),
    };
    let log = format!(
        "{kind:?} transaction-id={} cipher={} digest={:?} -> {} ({note})",
        received.transaction_id,
        received
            .content_cipher()
            .map(|c| format!("{c:?}"))
            .unwrap_or_else(|_| "unknown".into()),
        received.digest,
        status_word(status)
    );
    match message::encode_cert_rep(&rep, responder.signer.as_ref(), &responder.certificate) {
        Ok(body) => Reply {
            status: 200,
            content_type: "application/x-pki-message",
            body,
            log,
        },
        Err(e) => internal(&format!("{log}; the reply: {e}")),
    }
}

fn status_word(s: PkiStatus) -> String {
    match s {
        PkiStatus::Success => "SUCCESS".into(),
        PkiStatus::Pending => "PENDING".into(),
        PkiStatus::Failure(f) => format!("FAILURE {f:?}"),
    }
}

/// What to answer (status, payload, a note for the log); `Err` = the CA cannot act now.
type Decision = Result<(PkiStatus, Option<ReplyPayload>, String), String>;

fn failure(info: FailInfo, note: impl Into<String>) -> Decision {
    Ok((PkiStatus::Failure(info), None, note.into()))
}

fn outcome(o: Result<EnrolOutcome, ManagerError>) -> Decision {
    match o {
        Ok(EnrolOutcome::Issued(cert)) => Ok((
            PkiStatus::Success,
            Some(ReplyPayload::Certificates(vec![cert])),
            "issued".into(),
        )),
        Ok(EnrolOutcome::Pending) => Ok((PkiStatus::Pending, None, "queued".into())),
        Ok(EnrolOutcome::Rejected(fault, why)) => failure(fail_info(fault), why),
        // The CA could not sign (token absent, PIN, store busy): the client tries again.
        Err(e) => Err(format!("the CA failed: {e}")),
    }
}

/// Verifies, decrypts and acts on a message; what to answer.
fn decide(
    ca: &dyn ScepCa,
    endpoint: &ScepEndpoint,
    responder: &ScepResponder,
    received: &ReceivedMessage,
    limits: &MessageLimits,
) -> Decision {
    if let Err(e) = received.verify() {
        return failure(e.fail_info(), format!("the signature: {e}"));
    }
    // The envelope may name several recipients (micromdm encrypts to every certificate
    // GetCACert gave it): open the one for the responder's key.
    let me = match message::MessageCertificate::parse(&responder.certificate) {
        Ok(c) => c,
        Err(e) => {
            return failure(
                FailInfo::BadRequest,
                format!("the responder certificate: {e}"),
            )
        }
    };
    let mut decrypt = |ct: &[u8]| ca.scep_decrypt(responder, ct);
    let content = match received.open_for(&me.issuer, &me.serial, &mut decrypt, limits) {
        Ok(c) => c,
        Err(e) => return failure(e.fail_info(), format!("the envelope: {e}")),
    };
    if let Some(upstream) = &endpoint.upstream {
        return outcome(super::ra::forward(
            ca, endpoint, upstream, responder, received, &content, limits,
        ));
    }
    match (received.message_type, &content) {
        (
            MessageType::PkcsReq | MessageType::RenewalReq,
            RequestContent::CertificationRequest(csr),
        ) => outcome(ca.scep_enrol(
            endpoint,
            &ScepEnrolment {
                renewal: received.message_type == MessageType::RenewalReq,
                transaction_id: &received.transaction_id,
                csr,
                signer: &received.signer.der,
                signer_public_key: &received.signer.public_key,
            },
        )),
        (MessageType::CertPoll, RequestContent::IssuerAndSubject { .. }) => {
            outcome(ca.scep_poll(endpoint, &received.transaction_id))
        }
        (MessageType::GetCert, RequestContent::IssuerAndSerial { issuer, serial }) => {
            match ca.scep_certificate(endpoint, issuer, serial) {
                Ok(Some(cert)) => Ok((
                    PkiStatus::Success,
                    Some(ReplyPayload::Certificates(vec![cert])),
                    "certificate".into(),
                )),
                Ok(None) => failure(FailInfo::BadCertId, "no such certificate"),
                Err(e) => Err(format!("the CA failed: {e}")),
            }
        }
        (MessageType::GetCrl, RequestContent::IssuerAndSerial { issuer, serial }) => {
            match ca.scep_crl(endpoint, issuer, serial) {
                Ok(Some(crl)) => Ok((
                    PkiStatus::Success,
                    Some(ReplyPayload::Crl(crl)),
                    "CRL".into(),
                )),
                Ok(None) => failure(FailInfo::BadCertId, "no CRL for this issuer"),
                Err(e) => Err(format!("the CA failed: {e}")),
            }
        }
        (t, _) => failure(FailInfo::BadRequest, format!("{t:?} is not answered here")),
    }
}

//! RA mode (RouterOS `scep-server ra`): a request that reached an RA-mode server, its
//! envelope opened with the RA's key, is sent on to the upstream server — same transactionID
//! and content, signed by the RA's certificate and encrypted to the upstream CA or RA — and
//! the upstream answer becomes this server's answer to the client. The upstream CA must be
//! the one recorded when the RA enrolled (by fingerprint).
//!
//! A RenewalReq is forwarded as a PKCSReq: the upstream server cannot see the client's
//! signature, so it treats the request as a new one (its OTP, or a grant there).

use std::sync::OnceLock;
use std::time::Duration;

use super::client::ScepService;
use super::message::{
    self, FailInfo, MessageCertificate, MessageLimits, MessageType, PkiRequest, PkiStatus,
    ReceivedMessage, ReplyPayload, RequestContent,
};
use super::server::ScepCa;
use crate::error::{ManagerError, Refusal, RequestFault};
use crate::manager::scep::ScepUpstream;
use crate::manager::{EnrolOutcome, ScepEndpoint, ScepEnrolment, ScepResponder};
use crate::protocols::fetch::{FetchLimits, Fetcher};
use crate::x509;

/// One exchange with the upstream server, at most.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(20);

fn fetcher() -> Result<Fetcher, ManagerError> {
    static FETCHER: OnceLock<Fetcher> = OnceLock::new();
    if let Some(f) = FETCHER.get() {
        return Ok(f.clone());
    }
    let f = Fetcher::new(FetchLimits::new(256 * 1024, UPSTREAM_TIMEOUT))
        .map_err(|e| ManagerError::Failed(format!("the upstream HTTP client: {e}")))?;
    Ok(FETCHER.get_or_init(|| f).clone())
}

fn upstream_failed(url: &str, why: impl std::fmt::Display) -> ManagerError {
    ManagerError::Failed(format!("the upstream SCEP server {url}: {why}"))
}

/// Forwards a PKCSReq, RenewalReq or CertPoll upstream and returns what to answer. An
/// upstream that cannot be reached is an `Err`: the client is told to try again (503).
pub(super) fn forward(
    ca: &dyn ScepCa,
    endpoint: &ScepEndpoint,
    upstream: &ScepUpstream,
    responder: &ScepResponder,
    received: &ReceivedMessage,
    content: &RequestContent,
    limits: &MessageLimits,
) -> Result<EnrolOutcome, ManagerError> {
    let txid = received.transaction_id.as_str();
    let (message_type, csr) = match (received.message_type, content) {
        (
            MessageType::PkcsReq | MessageType::RenewalReq,
            RequestContent::CertificationRequest(c),
        ) => (MessageType::PkcsReq, Some(c.as_slice())),
        (MessageType::CertPoll, RequestContent::IssuerAndSubject { .. }) => {
            (MessageType::CertPoll, None)
        }
        (t, _) => {
            return Ok(EnrolOutcome::Rejected(
                RequestFault::BadRequest,
                format!("{t:?} is not forwarded by this RA"),
            ))
        }
    };
    if let Some(given_up) = ca.scep_forward_check(endpoint, txid)? {
        return Ok(given_up);
    }
    let enrolment = csr.map(|csr| ScepEnrolment {
        renewal: false,
        transaction_id: txid,
        csr,
        signer: &received.signer.der,
        signer_public_key: &received.signer.public_key,
    });
    let exchange = exchange(
        ca,
        upstream,
        responder,
        message_type,
        txid,
        content,
        csr,
        limits,
    );
    let outcome = match tokio::runtime::Handle::try_current() {
        Ok(h) => h.block_on(exchange),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ManagerError::Failed(format!("the async runtime: {e}")))?
            .block_on(exchange),
    }?;
    ca.scep_forwarded(endpoint, txid, enrolment.as_ref(), &outcome)?;
    Ok(outcome)
}

#[allow(clippy::too_many_arguments)]
async fn exchange(
    ca: &dyn ScepCa,
    upstream: &ScepUpstream,
    responder: &ScepResponder,
    message_type: MessageType,
    txid: &str,
    content: &RequestContent,
    csr: Option<&[u8]>,
    limits: &MessageLimits,
) -> Result<EnrolOutcome, ManagerError> {
    let url = upstream.url.as_str();
    let service = ScepService::new(fetcher()?, url, upstream.ca_identity.as_deref())
        .map_err(|e| upstream_failed(url, e))?;
    let caps = service
        .capabilities()
        .await
        .map_err(|e| upstream_failed(url, e))?;
    let certs = service
        .ca_certificates(limits)
        .await
        .map_err(|e| upstream_failed(url, e))?;
    if x509::fingerprint(&certs.ca) != upstream.ca_fingerprint {
        return Err(ManagerError::refused(
            Refusal::CaFingerprintMismatch,
            format!(
                "the upstream SCEP server {url} now sends another CA ({}); nothing forwarded",
                x509::fingerprint(&certs.ca)
            ),
            None,
        ));
    }
    let recipient =
        MessageCertificate::parse(certs.recipient()).map_err(|e| upstream_failed(url, e))?;
    let mut nonce = [0u8; 16];
    aws_lc_rs::rand::fill(&mut nonce)
        .map_err(|_| ManagerError::Failed("the random generator failed".into()))?;
    let request = PkiRequest {
        message_type,
        transaction_id: txid,
        sender_nonce: &nonce,
        content,
        cipher: caps.cipher(),
        digest: caps.digest(),
        recipient: &recipient,
    };
    let msg = message::encode_request(&request, responder.signer.as_ref(), &responder.certificate)
        .map_err(|e| ManagerError::Failed(format!("writing the forwarded request: {e}")))?;
    let body = service
        .pki_operation(&caps, &msg)
        .await
        .map_err(|e| upstream_failed(url, e))?;
    let signers = certs.signers();
    let rep = message::decode_cert_rep(
        &body,
        &signers,
        &mut |ct| ca.scep_decrypt(responder, ct),
        limits,
    )
    .map_err(|e| upstream_failed(url, format!("its CertRep: {e}")))?;
    if rep.transaction_id != txid || rep.recipient_nonce != nonce {
        return Err(upstream_failed(
            url,
            "its CertRep does not answer the forwarded request",
        ));
    }
    Ok(match rep.status {
        PkiStatus::Success => {
            let Some(ReplyPayload::Certificates(issued)) = rep.payload else {
                return Err(upstream_failed(url, "a SUCCESS without a certificate"));
            };
            let wanted = csr.and_then(|c| x509::csr::parse_request(c).ok());
            let pick = issued.into_iter().find(|der| {
                x509::inspect_certificate(der).is_ok_and(|i| match &wanted {
                    Some(w) => i.public_key == w.public_key,
                    None => !i.is_ca,
                })
            });
            match pick {
                Some(der) => EnrolOutcome::Issued(der),
                None => {
                    return Err(upstream_failed(
                        url,
                        "its SUCCESS holds no certificate for the request",
                    ))
                }
            }
        }
        PkiStatus::Pending => EnrolOutcome::Pending,
        PkiStatus::Failure(info) => {
            EnrolOutcome::Rejected(fault_of(info), format!("refused upstream ({info:?})"))
        }
    })
}

/// The failInfo as a request fault (the inverse of the server's choice).
pub(super) fn fault_of(info: FailInfo) -> RequestFault {
    match info {
        FailInfo::BadAlg => RequestFault::BadAlgorithm,
        FailInfo::BadMessageCheck => RequestFault::BadSignature,
        FailInfo::BadTime => RequestFault::BadTime,
        FailInfo::BadCertId => RequestFault::UnknownCertificate,
        FailInfo::BadRequest => RequestFault::BadRequest,
    }
}

//! SCEP pkiMessage (RFC 8894 §3) in both directions, on the CMS layer
//! ([`crate::x509::cms`]): requests read and opened by the server, CertRep written by it;
//! requests written and CertRep read by a client. No I/O, bounded by [`MessageLimits`].
//!
//! What peers do that shaped this: CertRep FAILURE and PENDING carry an empty eContent (as
//! micromdm and step-ca send it; OpenSSL-based clients refuse a detached one); the reply's
//! senderNonce is fresh; the transactionID is any PrintableString (micromdm sends base64,
//! others hex); signer certificates may have 32-byte serial numbers (sscep).

use der::asn1::ObjectIdentifier;
use spki::SubjectPublicKeyInfoOwned;

use crate::error::KeyError;
pub use crate::x509::cms::ContentCipher;
pub use crate::x509::cms::DigestAlgorithm as MessageDigest;
use crate::x509::cms::{self, ber, enveloped, CertificateView, CmsError};

const fn scep_oid(s: &str) -> ObjectIdentifier {
    ObjectIdentifier::new_unwrap(s)
}
/// `messageType` (RFC 8894 §3.2.1.2), PrintableString.
pub const ID_MESSAGE_TYPE: ObjectIdentifier = scep_oid("2.16.840.1.113733.1.9.2");
/// `pkiStatus` (§3.2.1.3), PrintableString.
pub const ID_PKI_STATUS: ObjectIdentifier = scep_oid("2.16.840.1.113733.1.9.3");
/// `failInfo` (§3.2.1.4), PrintableString.
pub const ID_FAIL_INFO: ObjectIdentifier = scep_oid("2.16.840.1.113733.1.9.4");
/// `senderNonce` (§3.2.1.5), OCTET STRING.
pub const ID_SENDER_NONCE: ObjectIdentifier = scep_oid("2.16.840.1.113733.1.9.5");
/// `recipientNonce` (§3.2.1.5), OCTET STRING.
pub const ID_RECIPIENT_NONCE: ObjectIdentifier = scep_oid("2.16.840.1.113733.1.9.6");
/// `transactionID` (§3.2.1.1), PrintableString.
pub const ID_TRANSACTION_ID: ObjectIdentifier = scep_oid("2.16.840.1.113733.1.9.7");
/// `failInfoText` (§3.2.1.4, id-scep-failInfoText), UTF8String; read, never required.
pub const ID_FAIL_INFO_TEXT: ObjectIdentifier = scep_oid("1.3.6.1.5.5.7.24.1");

/// `messageType` values (RFC 8894 §3.2.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// 3: the response to every request
    CertRep,
    /// 17: renewal, signed with the certificate being renewed
    RenewalReq,
    /// 19: enrolment
    PkcsReq,
    /// 20 (was GetCertInitial): polling a pending request
    CertPoll,
    /// 21: a certificate by issuer and serial number
    GetCert,
    /// 22: a CRL
    GetCrl,
}

impl MessageType {
    /// The number on the wire.
    pub fn number(self) -> u32 {
        match self {
            MessageType::CertRep => 3,
            MessageType::RenewalReq => 17,
            MessageType::PkcsReq => 19,
            MessageType::CertPoll => 20,
            MessageType::GetCert => 21,
            MessageType::GetCrl => 22,
        }
    }

    /// The type a number names; any other number is an error.
    pub fn from_number(n: u32) -> Result<Self, MessageError> {
        use MessageType::*;
        [CertRep, RenewalReq, PkcsReq, CertPoll, GetCert, GetCrl]
            .into_iter()
            .find(|t| t.number() == n)
            .ok_or_else(|| MessageError::UnknownMessageType(n.to_string()))
    }
}

/// `failInfo` values (RFC 8894 §3.2.1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailInfo {
    /// "0": unrecognised or unsupported algorithm
    BadAlg,
    /// "1": integrity check (signature) failed
    BadMessageCheck,
    /// "2": transaction not permitted or supported
    BadRequest,
    /// "3": the signingTime was not close enough to the system time
    BadTime,
    /// "4": no certificate could be identified matching the criteria
    BadCertId,
}

impl FailInfo {
    /// The number on the wire.
    pub fn number(self) -> u32 {
        self as u32
    }

    /// The failInfo a number names.
    pub fn from_number(n: u32) -> Result<Self, MessageError> {
        use FailInfo::*;
        [BadAlg, BadMessageCheck, BadRequest, BadTime, BadCertId]
            .into_iter()
            .find(|f| f.number() == n)
            .ok_or_else(|| MessageError::BadAttribute {
                name: "failInfo",
                reason: format!("unknown value {n}"),
            })
    }
}

/// `pkiStatus` (RFC 8894 §3.2.1.3): "0" SUCCESS, "2" FAILURE (with its failInfo), "3" PENDING.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PkiStatus {
    /// the request was granted
    Success,
    /// the request was refused
    Failure(FailInfo),
    /// the request waits for a manual decision; the client polls
    Pending,
}

/// How much reading one message may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageLimits {
    /// largest message (and largest envelope plaintext), bytes
    pub max_input: usize,
    /// deepest ASN.1 nesting
    pub max_depth: usize,
    /// most ASN.1 elements in one message
    pub max_elements: usize,
    /// most certificates in one SignedData
    pub max_certificates: usize,
    /// most signed attributes
    pub max_attributes: usize,
    /// longest transactionID (and other strings), bytes
    pub max_string_len: usize,
    /// longest nonce, bytes (certman sends 16)
    pub max_nonce_len: usize,
}

impl Default for MessageLimits {
    fn default() -> Self {
        MessageLimits {
            max_input: 64 * 1024,
            max_depth: 32,
            max_elements: 16_384,
            max_certificates: 16,
            max_attributes: 32,
            max_string_len: 128,
            max_nonce_len: 64,
        }
    }
}

impl MessageLimits {
    /// The CMS layer's limits for one message.
    pub(crate) fn cms(&self) -> cms::Limits {
        cms::Limits {
            ber: ber::BerLimits {
                max_input: self.max_input,
                max_depth: self.max_depth,
                max_elements: self.max_elements,
                max_output: self.max_input.saturating_mul(2),
            },
            max_certificates: self.max_certificates,
            max_signers: 1,
            max_attributes: self.max_attributes,
            max_recipients: self.max_certificates,
        }
    }
}

/// Why a message could not be read, verified, opened or written. Each variant maps to the
/// failInfo a CertRep FAILURE reports ([`MessageError::fail_info`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Not the structure expected (badRequest).
    #[error("malformed SCEP message: {0}")]
    Malformed(String),
    /// Over one of the [`MessageLimits`] (badRequest).
    #[error("SCEP message over a limit: {0}")]
    Limit(String),
    /// A digest, signature, key-transport or content algorithm, or a key type or size, that
    /// certman does not do (badAlg).
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// A required signed attribute is missing (badRequest).
    #[error("the SCEP attribute {0} is missing")]
    MissingAttribute(&'static str),
    /// A signed attribute has a value that is not allowed (badRequest).
    #[error("the SCEP attribute {name} is invalid: {reason}")]
    BadAttribute {
        /// the attribute
        name: &'static str,
        /// what is wrong
        reason: String,
    },
    /// A messageType this side does not take (badRequest).
    #[error("unknown or unexpected SCEP messageType {0}")]
    UnknownMessageType(String),
    /// The signer's certificate is not in the message (badMessageCheck).
    #[error("the signer's certificate is not in the message")]
    SignerNotFound,
    /// The signer is none of the trusted CA/RA certificates (badMessageCheck).
    #[error("the message is not signed by a trusted CA or RA certificate")]
    UntrustedSigner,
    /// The messageDigest attribute does not match the content (badMessageCheck).
    #[error("the message digest does not match the content")]
    DigestMismatch,
    /// The signature does not verify (badMessageCheck).
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// The envelope cannot be decrypted, or what it holds is not what the message type
    /// needs — one error for all causes (badMessageCheck).
    #[error("the pkcsPKIEnvelope cannot be decrypted")]
    Undecryptable,
    /// The envelope names several recipients: say which one is ours
    /// ([`ReceivedMessage::open_for`]) (badRequest).
    #[error("the envelope has several recipients; the decrypting certificate must be named")]
    AmbiguousRecipient,
    /// Our own key failed to sign (no failInfo fits; badRequest is reported).
    #[error(transparent)]
    Key(KeyError),
    /// The random generator or a cipher failed (badRequest is reported).
    #[error("{0} failed")]
    Crypto(&'static str),
}

impl MessageError {
    /// The failInfo a CertRep FAILURE carries for this error.
    pub fn fail_info(&self) -> FailInfo {
        match self {
            MessageError::UnsupportedAlgorithm(_) => FailInfo::BadAlg,
            MessageError::SignerNotFound
            | MessageError::UntrustedSigner
            | MessageError::DigestMismatch
            | MessageError::BadSignature(_)
            | MessageError::Undecryptable => FailInfo::BadMessageCheck,
            MessageError::Malformed(_)
            | MessageError::Limit(_)
            | MessageError::MissingAttribute(_)
            | MessageError::BadAttribute { .. }
            | MessageError::UnknownMessageType(_)
            | MessageError::AmbiguousRecipient
            | MessageError::Key(_)
            | MessageError::Crypto(_) => FailInfo::BadRequest,
        }
    }
}

impl From<CmsError> for MessageError {
    fn from(e: CmsError) -> Self {
        match e {
            CmsError::Malformed(m) => MessageError::Malformed(m),
            CmsError::Limit(m) => MessageError::Limit(m),
            CmsError::UnsupportedAlgorithm(m) => MessageError::UnsupportedAlgorithm(m),
            CmsError::SignerNotFound => MessageError::SignerNotFound,
            CmsError::DigestMismatch => MessageError::DigestMismatch,
            CmsError::BadSignature(m) => MessageError::BadSignature(m),
            CmsError::Undecryptable => MessageError::Undecryptable,
            CmsError::Key(k) => MessageError::Key(k),
            CmsError::Crypto(m) => MessageError::Crypto(m),
        }
    }
}

impl From<der::Error> for MessageError {
    fn from(e: der::Error) -> Self {
        MessageError::Malformed(e.to_string())
    }
}

/// A pkiMessage's SignedData (DER or BER), bounded by `limits`, with its one SignerInfo
/// (`signers[0]`): what both directions read first.
fn read_signed(input: &[u8], limits: &MessageLimits) -> Result<cms::SignedContent, MessageError> {
    if input.len() > limits.max_input {
        return Err(MessageError::Limit(format!(
            "a message of {} bytes (at most {})",
            input.len(),
            limits.max_input
        )));
    }
    let signed = cms::SignedContent::parse(input, &limits.cms())?;
    if signed.signers.len() != 1 {
        return Err(MessageError::Malformed(format!(
            "a pkiMessage has one signer, not {}",
            signed.signers.len()
        )));
    }
    Ok(signed)
}

/// A lenient view of a certificate carried in a message (signer of a request, or the
/// recipient we encrypt to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageCertificate {
    /// the certificate's DER
    pub der: Vec<u8>,
    /// issuer Name DER
    pub issuer: Vec<u8>,
    /// subject Name DER
    pub subject: Vec<u8>,
    /// serial number (INTEGER contents as encoded)
    pub serial: Vec<u8>,
    /// subject public key
    pub public_key: SubjectPublicKeyInfoOwned,
    /// subjectKeyIdentifier extension, if present
    pub key_identifier: Option<Vec<u8>>,
}

impl MessageCertificate {
    /// Reads a DER certificate leniently (32-byte serials, non-minimal INTEGERs).
    pub fn parse(der: &[u8]) -> Result<Self, MessageError> {
        Ok(CertificateView::parse(der)?.into())
    }

    fn view(&self) -> CertificateView {
        CertificateView {
            der: self.der.clone(),
            issuer: self.issuer.clone(),
            subject: self.subject.clone(),
            serial: self.serial.clone(),
            public_key: self.public_key.clone(),
            key_identifier: self.key_identifier.clone(),
        }
    }

    fn recipient(&self) -> enveloped::Recipient<'_> {
        enveloped::Recipient {
            issuer: &self.issuer,
            serial: &self.serial,
            public_key: &self.public_key,
        }
    }
}

impl From<CertificateView> for MessageCertificate {
    fn from(v: CertificateView) -> Self {
        MessageCertificate {
            der: v.der,
            issuer: v.issuer,
            subject: v.subject,
            serial: v.serial,
            public_key: v.public_key,
            key_identifier: v.key_identifier,
        }
    }
}

/// What a request's envelope holds (RFC 8894 §3.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestContent {
    /// PKCSReq, RenewalReq: the PKCS#10 request (DER; exactly as sent when it was DER)
    CertificationRequest(Vec<u8>),
    /// CertPoll: the issuer (the CA) and the subject of the pending request, Name DER
    IssuerAndSubject {
        /// issuer Name DER
        issuer: Vec<u8>,
        /// subject Name DER
        subject: Vec<u8>,
    },
    /// GetCert, GetCRL: a certificate's issuer Name DER and serial number
    IssuerAndSerial {
        /// issuer Name DER
        issuer: Vec<u8>,
        /// serial number (INTEGER contents)
        serial: Vec<u8>,
    },
}

/// What a SUCCESS CertRep carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyPayload {
    /// certificates, DER; the issued one first
    Certificates(Vec<Vec<u8>>),
    /// a CRL, DER (GetCRL)
    Crl(Vec<u8>),
}

/// Signs `content` into a pkiMessage SignedData with the SCEP attributes `attrs`
/// (contentType, messageDigest and signingTime added), carrying `signer_cert`.
fn sign_message(
    content: &[u8],
    digest: MessageDigest,
    attrs: &[(ObjectIdentifier, Vec<u8>)],
    signer: &dyn crate::keys::KeySigner,
    signer_cert: &[u8],
) -> Result<Vec<u8>, MessageError> {
    let view = CertificateView::parse(signer_cert)?;
    let req = cms::SignRequest {
        content,
        digest,
        attributes: attrs,
        signing_time: Some(std::time::SystemTime::now()),
        certificates: &[signer_cert],
    };
    Ok(cms::signed::sign(&req, signer, &view)?)
}

mod attributes;
mod requester;
mod responder;
#[cfg(test)]
mod tests;

pub use requester::{decode_cert_rep, encode_request, transaction_id, DecodedCertRep, PkiRequest};
pub use responder::{
    degenerate_certificates, encode_cert_rep, parse_request, signed_certificates, CertRep,
    ReceivedMessage,
};

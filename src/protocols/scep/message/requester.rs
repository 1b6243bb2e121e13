//! The requester (client) side: writing requests and reading CertRep — for tests, the
//! benchmark and certman's own SCEP client.

use spki::SubjectPublicKeyInfoOwned;

use super::attributes::{octets, printable, ScepAttributes};
use super::{
    sign_message, ContentCipher, MessageCertificate, MessageDigest, MessageError, MessageLimits,
    MessageType, PkiStatus, ReplyPayload, RequestContent, ID_MESSAGE_TYPE, ID_SENDER_NONCE,
    ID_TRANSACTION_ID,
};
use crate::error::KeyError;
use crate::keys::KeySigner;
use crate::secret::SecretBytes;
use crate::x509::cms::{ber, enveloped, CertificateView, Envelope, SignedContent, ID_DATA};

/// A request to write.
#[derive(Clone, Copy, Debug)]
pub struct PkiRequest<'a> {
    /// PKCSReq, RenewalReq, CertPoll, GetCert or GetCRL
    pub message_type: MessageType,
    /// transactionID (see [`transaction_id`])
    pub transaction_id: &'a str,
    /// senderNonce (16 random bytes)
    pub sender_nonce: &'a [u8],
    /// the envelope's content; must suit `message_type`
    pub content: &'a RequestContent,
    /// the content cipher
    pub cipher: ContentCipher,
    /// the digest (SHA-256 or SHA-512: certman signs with nothing weaker)
    pub digest: MessageDigest,
    /// the CA or RA certificate to encrypt to
    pub recipient: &'a MessageCertificate,
}

/// Writes a pkiMessage: `req.content` encrypted to `req.recipient`, signed by `signer`
/// whose certificate is `signer_cert` (self-signed for a PKCSReq). DER.
pub fn encode_request(
    req: &PkiRequest<'_>,
    signer: &dyn KeySigner,
    signer_cert: &[u8],
) -> Result<Vec<u8>, MessageError> {
    let content = match (req.message_type, req.content) {
        (
            MessageType::PkcsReq | MessageType::RenewalReq,
            RequestContent::CertificationRequest(csr),
        ) => csr.clone(),
        (MessageType::CertPoll, RequestContent::IssuerAndSubject { issuer, subject }) => {
            ber::tlv(0x30, &[issuer.as_slice(), subject].concat())
        }
        (
            MessageType::GetCert | MessageType::GetCrl,
            RequestContent::IssuerAndSerial { issuer, serial },
        ) => ber::tlv(0x30, &[issuer.as_slice(), &ber::tlv(0x02, serial)].concat()),
        (t, _) => {
            return Err(MessageError::Malformed(format!(
                "a {t:?} request cannot carry that content"
            )))
        }
    };
    let envelope = enveloped::seal(&content, &req.recipient.recipient(), req.cipher)?;
    let attrs = [
        (
            ID_MESSAGE_TYPE,
            printable("messageType", &req.message_type.number().to_string())?,
        ),
        (
            ID_TRANSACTION_ID,
            printable("transactionID", req.transaction_id)?,
        ),
        (ID_SENDER_NONCE, octets(req.sender_nonce)?),
    ];
    sign_message(&envelope, req.digest, &attrs, signer, signer_cert)
}

/// A CertRep, verified and opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedCertRep {
    /// pkiStatus (with failInfo)
    pub status: PkiStatus,
    /// transactionID
    pub transaction_id: String,
    /// recipientNonce (must equal the request's senderNonce: the caller checks)
    pub recipient_nonce: Vec<u8>,
    /// senderNonce (empty if the server sent none)
    pub sender_nonce: Vec<u8>,
    /// SUCCESS: the certificates (issued one first) or the CRL
    pub payload: Option<ReplyPayload>,
}

/// Verifies the signer is one of `trusted_signers` (DER certs: the CA or RA from
/// GetCACert), decrypts with the requester's key.
pub fn decode_cert_rep(
    input: &[u8],
    trusted_signers: &[&[u8]],
    decrypt: &mut dyn FnMut(&[u8]) -> Result<SecretBytes, KeyError>,
    limits: &MessageLimits,
) -> Result<DecodedCertRep, MessageError> {
    let signed = super::read_signed(input, limits)?;
    let signer_info = &signed.signers[0];
    let signer = trusted_signers
        .iter()
        .filter_map(|der| CertificateView::parse(der).ok())
        .find(|c| signer_info.sid.matches(c))
        .ok_or(MessageError::UntrustedSigner)?;
    signed.verify(signer_info, &signer)?;
    let attrs = ScepAttributes::read(signer_info, limits)?;
    if attrs.message_type != MessageType::CertRep {
        return Err(MessageError::UnknownMessageType(format!(
            "{} (a CertRep was expected)",
            attrs.message_type.number()
        )));
    }
    let status = attrs
        .status
        .ok_or(MessageError::MissingAttribute("pkiStatus"))?;
    let recipient_nonce = attrs
        .recipient_nonce
        .ok_or(MessageError::MissingAttribute("recipientNonce"))?;
    let payload = match status {
        PkiStatus::Success => {
            if signed.content_type != ID_DATA {
                return Err(MessageError::Malformed(format!(
                    "the CertRep content is {}, not data",
                    signed.content_type
                )));
            }
            let content = signed.content.as_deref().unwrap_or_default();
            let envelope = Envelope::parse(content, &limits.cms())?;
            if envelope.recipients.len() != 1 {
                return Err(MessageError::AmbiguousRecipient);
            }
            let plaintext = envelope.open(0, decrypt)?;
            let inner = SignedContent::parse(&plaintext, &limits.cms())
                .map_err(|_| MessageError::Undecryptable)?;
            Some(match inner.crls.into_iter().next() {
                Some(crl) => ReplyPayload::Crl(crl),
                None => ReplyPayload::Certificates(inner.certificates),
            })
        }
        PkiStatus::Failure(_) | PkiStatus::Pending => None,
    };
    Ok(DecodedCertRep {
        status,
        transaction_id: attrs.transaction_id,
        recipient_nonce,
        sender_nonce: attrs.sender_nonce.unwrap_or_default(),
        payload,
    })
}

/// RFC 8894 §3.2.1.1: a transactionID from the public key — the upper-case hex of the
/// SHA-256 of the subjectPublicKey bits (for RSA, the PKCS#1 RSAPublicKey), so that polls and
/// re-sent requests for one key keep one ID.
pub fn transaction_id(public_key: &SubjectPublicKeyInfoOwned) -> String {
    crate::x509::public_key_digest_hex(public_key)
}

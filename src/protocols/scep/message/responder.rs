//! The CA/RA side: reading and opening requests, writing CertRep and the GetCACert /
//! GetNextCACert bodies.

use der::asn1::AnyRef;
use der::{Decode, Encode, Sequence, Tag, Tagged};

use super::attributes::{octets, printable, ScepAttributes};
use super::{
    sign_message, ContentCipher, MessageCertificate, MessageDigest, MessageError, MessageLimits,
    MessageType, PkiStatus, ReplyPayload, RequestContent, ID_FAIL_INFO, ID_MESSAGE_TYPE,
    ID_PKI_STATUS, ID_RECIPIENT_NONCE, ID_SENDER_NONCE, ID_TRANSACTION_ID,
};
use crate::error::KeyError;
use crate::keys::KeySigner;
use crate::secret::SecretBytes;
use crate::x509::cms::{self, ber, cert::same_integer, enveloped, signed};
use crate::x509::cms::{Envelope, SignedContent, SignerIdentifier, ID_DATA};

/// Length of the nonces certman makes (RFC 8894 §3.2.1.5).
const NONCE_LEN: usize = 16;

/// A PKIOperation request whose structure and signed attributes have been read; not yet
/// verified ([`ReceivedMessage::verify`]) nor opened ([`ReceivedMessage::open`]).
#[derive(Clone, Debug)]
pub struct ReceivedMessage {
    /// messageType (never CertRep)
    pub message_type: MessageType,
    /// transactionID
    pub transaction_id: String,
    /// senderNonce (the reply's recipientNonce)
    pub sender_nonce: Vec<u8>,
    /// the digest the requester signed with
    pub digest: MessageDigest,
    /// the certificate that signed the request (self-signed for a PKCSReq, the certificate
    /// being renewed for a RenewalReq)
    pub signer: MessageCertificate,
    signed: SignedContent,
    envelope: Envelope,
}

/// Parses structure + authenticated attributes of a PKIOperation body (DER or BER).
/// Err = not a pkiMessage at all (the server answers HTTP 400); this includes a digest
/// algorithm certman does not have and a signer whose certificate is not in the message.
pub fn parse_request(
    input: &[u8],
    limits: &MessageLimits,
) -> Result<ReceivedMessage, MessageError> {
    let signed = super::read_signed(input, limits)?;
    let signer_info = &signed.signers[0];
    let attrs = ScepAttributes::read(signer_info, limits)?;
    if attrs.message_type == MessageType::CertRep {
        return Err(MessageError::UnknownMessageType(
            "3 (a CertRep is not a request)".into(),
        ));
    }
    let sender_nonce = attrs
        .sender_nonce
        .ok_or(MessageError::MissingAttribute("senderNonce"))?;
    let digest = signer_info.digest()?;
    let signer = signed.signer_certificate(signer_info)?.into();
    if signed.content_type != ID_DATA {
        return Err(MessageError::Malformed(format!(
            "the pkiMessage content is {}, not data",
            signed.content_type
        )));
    }
    let content = signed
        .content
        .as_deref()
        .ok_or_else(|| MessageError::Malformed("the request has no pkcsPKIEnvelope".into()))?;
    let envelope = Envelope::parse(content, &limits.cms())?;
    Ok(ReceivedMessage {
        message_type: attrs.message_type,
        transaction_id: attrs.transaction_id,
        sender_nonce,
        digest,
        signer,
        signed,
        envelope,
    })
}

/// `IssuerAndSubject ::= SEQUENCE { issuer Name, subject Name }`
/// ([RFC 8894 §3.3.3](https://www.rfc-editor.org/rfc/rfc8894#section-3.3.3)).
#[derive(Sequence)]
struct IssuerAndSubject<'a> {
    issuer: AnyRef<'a>,
    subject: AnyRef<'a>,
}

/// `IssuerAndSerialNumber` ([RFC 8894 §3.3.4](https://www.rfc-editor.org/rfc/rfc8894#section-3.3.4),
/// RFC 5652 §10.2.4), the serial number read as sent.
#[derive(Sequence)]
struct IssuerAndSerialNumber<'a> {
    issuer: AnyRef<'a>,
    serial_number: AnyRef<'a>,
}

/// `CertificationRequest` (RFC 2986 §4.2): only its outline; the manager reads the rest.
#[derive(Sequence)]
struct CertificationRequestOutline<'a> {
    certification_request_info: AnyRef<'a>,
    signature_algorithm: AnyRef<'a>,
    signature: AnyRef<'a>,
}

fn expect(any: &AnyRef<'_>, tag: Tag) -> Result<(), MessageError> {
    if any.tag() == tag {
        Ok(())
    } else {
        Err(MessageError::Undecryptable)
    }
}

impl ReceivedMessage {
    /// The signature (signer's key over signedAttrs) and messageDigest; Err → the server
    /// replies CertRep FAILURE with `err.fail_info()`.
    pub fn verify(&self) -> Result<(), MessageError> {
        let signer_info = self
            .signed
            .signers
            .first()
            .ok_or(MessageError::SignerNotFound)?;
        Ok(self.signed.verify(signer_info, &self.signer.view())?)
    }

    /// The recipients the envelope names (issuer Name DER, serial number), so the server
    /// picks the CA or RA key. Recipients named by key identifier are not listed.
    pub fn recipients(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.envelope
            .recipients
            .iter()
            .filter_map(|r| match &r.rid {
                SignerIdentifier::IssuerSerial { issuer, serial } => {
                    Some((issuer.clone(), serial.clone()))
                }
                SignerIdentifier::KeyIdentifier(_) => None,
            })
            .collect()
    }

    /// The cipher the client used (the reply uses the same).
    pub fn content_cipher(&self) -> Result<ContentCipher, MessageError> {
        Ok(self.envelope.cipher()?)
    }

    /// Decrypts the pkcsPKIEnvelope with `decrypt` (RSA PKCS#1 v1.5 key transport done by
    /// the CA/RA key, e.g. `KeyDecrypt`) and parses its content for the message type. The
    /// envelope must have one key-transport recipient; when it has several (a client that
    /// encrypts to every certificate of GetCACert), use [`ReceivedMessage::open_for`].
    ///
    /// Every failure after the key transport — including a content that is not what the
    /// message type needs — is [`MessageError::Undecryptable`]; `decrypt`'s own errors are
    /// not passed on (they would be a padding oracle).
    pub fn open(
        &self,
        decrypt: &mut dyn FnMut(&[u8]) -> Result<SecretBytes, KeyError>,
        limits: &MessageLimits,
    ) -> Result<RequestContent, MessageError> {
        match self.envelope.recipients.len() {
            0 => Err(MessageError::Malformed(
                "the envelope has no key-transport recipient".into(),
            )),
            1 => self.open_recipient(0, decrypt, limits),
            _ => Err(MessageError::AmbiguousRecipient),
        }
    }

    /// [`ReceivedMessage::open`] for the recipient named by `issuer` (Name DER) and `serial`
    /// — the certificate whose key `decrypt` uses.
    pub fn open_for(
        &self,
        issuer: &[u8],
        serial: &[u8],
        decrypt: &mut dyn FnMut(&[u8]) -> Result<SecretBytes, KeyError>,
        limits: &MessageLimits,
    ) -> Result<RequestContent, MessageError> {
        let index = self
            .envelope
            .recipients
            .iter()
            .position(|r| match &r.rid {
                SignerIdentifier::IssuerSerial {
                    issuer: i,
                    serial: s,
                } => i == issuer && same_integer(s, serial),
                SignerIdentifier::KeyIdentifier(_) => false,
            })
            .ok_or_else(|| {
                MessageError::Malformed("the envelope is not encrypted to that certificate".into())
            })?;
        self.open_recipient(index, decrypt, limits)
    }

    fn open_recipient(
        &self,
        index: usize,
        decrypt: &mut dyn FnMut(&[u8]) -> Result<SecretBytes, KeyError>,
        limits: &MessageLimits,
    ) -> Result<RequestContent, MessageError> {
        let plaintext = self.envelope.open(index, decrypt)?;
        request_content(self.message_type, &plaintext, limits)
            .map_err(|_| MessageError::Undecryptable)
    }
}

/// What the envelope of a `message_type` request holds. Any error here is reported as
/// `Undecryptable` by the caller.
fn request_content(
    message_type: MessageType,
    plaintext: &[u8],
    limits: &MessageLimits,
) -> Result<RequestContent, MessageError> {
    let der = ber::normalize(plaintext, &limits.cms().ber)?;
    Ok(match message_type {
        MessageType::PkcsReq | MessageType::RenewalReq => {
            let csr = CertificationRequestOutline::from_der(&der)?;
            expect(&csr.certification_request_info, Tag::Sequence)?;
            expect(&csr.signature_algorithm, Tag::Sequence)?;
            expect(&csr.signature, Tag::BitString)?;
            RequestContent::CertificationRequest(der)
        }
        MessageType::CertPoll => {
            let ias = IssuerAndSubject::from_der(&der)?;
            expect(&ias.issuer, Tag::Sequence)?;
            expect(&ias.subject, Tag::Sequence)?;
            RequestContent::IssuerAndSubject {
                issuer: ias.issuer.to_der()?,
                subject: ias.subject.to_der()?,
            }
        }
        MessageType::GetCert | MessageType::GetCrl => {
            let ias = IssuerAndSerialNumber::from_der(&der)?;
            expect(&ias.issuer, Tag::Sequence)?;
            expect(&ias.serial_number, Tag::Integer)?;
            if ias.serial_number.value().is_empty() {
                return Err(MessageError::Undecryptable);
            }
            RequestContent::IssuerAndSerial {
                issuer: ias.issuer.to_der()?,
                serial: ias.serial_number.value().to_vec(),
            }
        }
        MessageType::CertRep => return Err(MessageError::Undecryptable),
    })
}

/// A CertRep to write.
#[derive(Clone, Debug)]
pub struct CertRep<'a> {
    /// the request's transactionID
    pub transaction_id: &'a str,
    /// the request's senderNonce
    pub recipient_nonce: &'a [u8],
    /// the answer
    pub status: PkiStatus,
    /// the digest to sign with (SHA-256 or SHA-512; SHA-384 also works)
    pub digest: MessageDigest,
    /// the content cipher (the request's)
    pub cipher: ContentCipher,
    /// SUCCESS only: what the reply carries
    pub payload: Option<ReplyPayload>,
    /// whom to encrypt to (the request's signer); needed with a payload
    pub recipient: Option<&'a MessageCertificate>,
}

/// Signed by `signer` whose certificate is `signer_cert` (the CA or RA); SUCCESS: the payload
/// in a degenerate SignedData, encrypted to `recipient`; FAILURE/PENDING: no envelope (an
/// empty eContent). senderNonce random 16 bytes; signingTime now.
pub fn encode_cert_rep(
    rep: &CertRep<'_>,
    signer: &dyn KeySigner,
    signer_cert: &[u8],
) -> Result<Vec<u8>, MessageError> {
    let content = match (&rep.status, &rep.payload) {
        (PkiStatus::Success, Some(payload)) => {
            let recipient = rep.recipient.ok_or_else(|| {
                MessageError::Malformed("a CertRep with a payload needs a recipient".into())
            })?;
            let inner = match payload {
                ReplyPayload::Certificates(certs) => {
                    let certs: Vec<&[u8]> = certs.iter().map(Vec::as_slice).collect();
                    signed::degenerate(&certs, &[])
                }
                ReplyPayload::Crl(crl) => signed::degenerate(&[], &[crl]),
            };
            enveloped::seal(&inner, &recipient.recipient(), rep.cipher)?
        }
        (PkiStatus::Success, None) => {
            return Err(MessageError::Malformed(
                "a SUCCESS CertRep needs a payload".into(),
            ))
        }
        (_, Some(_)) => {
            return Err(MessageError::Malformed(
                "only a SUCCESS CertRep carries a payload".into(),
            ))
        }
        (_, None) => Vec::new(),
    };
    let (status, fail_info) = match rep.status {
        PkiStatus::Success => ("0", None),
        PkiStatus::Failure(f) => ("2", Some(f)),
        PkiStatus::Pending => ("3", None),
    };
    let mut attrs = vec![
        (ID_MESSAGE_TYPE, printable("messageType", "3")?),
        (ID_PKI_STATUS, printable("pkiStatus", status)?),
        (
            ID_TRANSACTION_ID,
            printable("transactionID", rep.transaction_id)?,
        ),
        (ID_RECIPIENT_NONCE, octets(rep.recipient_nonce)?),
        (ID_SENDER_NONCE, octets(&cms::random_bytes(NONCE_LEN)?)?),
    ];
    if let Some(f) = fail_info {
        attrs.push((
            ID_FAIL_INFO,
            printable("failInfo", &f.number().to_string())?,
        ));
    }
    sign_message(&content, rep.digest, &attrs, signer, signer_cert)
}

/// GetCACert with an RA: degenerate certificates-only SignedData (RA + CA), DER.
pub fn degenerate_certificates(certs: &[&[u8]]) -> Vec<u8> {
    signed::degenerate(certs, &[])
}

/// GetNextCACert (RFC 8894 §4.7.1): a SignedData signed by the current CA/RA (`signer`,
/// `signer_cert`, SHA-256) whose content (id-data) is the DER of a degenerate
/// certificates-only SignedData holding `certs` — the next CA certificate and any new RA
/// certificates.
pub fn signed_certificates(
    certs: &[&[u8]],
    signer: &dyn KeySigner,
    signer_cert: &[u8],
) -> Result<Vec<u8>, MessageError> {
    sign_message(
        &signed::degenerate(certs, &[]),
        MessageDigest::Sha256,
        &[],
        signer,
        signer_cert,
    )
}

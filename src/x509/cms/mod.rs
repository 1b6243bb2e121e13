//! A lenient CMS (RFC 5652) layer for SCEP: reads SignedData and EnvelopedData as real peers
//! send them (BER, indefinite lengths, chunked strings, certificates x509-cert refuses) and
//! writes DER. No I/O; every input from outside goes through [`ber::normalize`] first, with
//! [`Limits`].
//!
//! - [`signed`]: SignedData — signer lookup, messageDigest, signature (RSA PKCS#1 v1.5 with
//!   MD5, SHA-1 or SHA-2); building one signed through [`crate::keys::KeySigner`];
//!   certificates-only ("degenerate") SignedData.
//! - [`enveloped`]: EnvelopedData with RSA key transport and DES/3DES/AES-CBC content,
//!   opened without a padding oracle.
//! - [`cert`]: the few fields of a certificate this layer needs, read leniently.

pub mod ber;
pub mod cert;
mod crypto;
pub mod enveloped;
pub mod signed;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;
mod types;

use der::asn1::ObjectIdentifier;

pub use self::ber::BerLimits;
pub use self::cert::CertificateView;
pub use self::crypto::DigestAlgorithm;
pub use self::enveloped::{ContentCipher, Envelope, KeyTransRecipient, Recipient};
pub use self::signed::{SignRequest, SignedContent, SignerIdentifier, SignerInfo};
use crate::error::KeyError;

/// `id-data` (RFC 5652 §4).
pub const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
/// `id-signedData` (RFC 5652 §5.1).
pub const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
/// `id-envelopedData` (RFC 5652 §6.1).
pub const ID_ENVELOPED_DATA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.3");
/// `id-contentType` attribute (RFC 5652 §11.1).
pub const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
/// `id-messageDigest` attribute (RFC 5652 §11.2).
pub const ID_MESSAGE_DIGEST: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
/// `id-signingTime` attribute (RFC 5652 §11.3).
pub const ID_SIGNING_TIME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.5");
/// `rsaEncryption` (RFC 8017 Appendix C).
pub const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Why a CMS structure could not be read, verified, opened or built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CmsError {
    /// Not the structure expected, or not valid BER/DER.
    #[error("malformed CMS: {0}")]
    Malformed(String),
    /// Over one of the [`Limits`].
    #[error("CMS input over a limit: {0}")]
    Limit(String),
    /// An algorithm (digest, signature, key transport, content cipher, key type or size)
    /// this layer does not do.
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// No certificate in the SignedData matches the signer identifier.
    #[error("the signer's certificate is not in the message")]
    SignerNotFound,
    /// The messageDigest attribute differs from the digest of the content.
    #[error("the message digest does not match the content")]
    DigestMismatch,
    /// The signature does not verify.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// The EnvelopedData could not be decrypted. One error for every cause — RSA padding,
    /// CBC padding, garbage plaintext — so that it tells an attacker nothing.
    #[error("the enveloped content cannot be decrypted")]
    Undecryptable,
    /// The signing key failed (wrong PIN, token absent, …).
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The random generator or a cipher failed.
    #[error("{0} failed")]
    Crypto(&'static str),
}

impl From<der::Error> for CmsError {
    fn from(e: der::Error) -> Self {
        CmsError::Malformed(e.to_string())
    }
}

/// How much work reading one CMS structure may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// BER input, nesting, elements and output
    pub ber: BerLimits,
    /// certificates in one SignedData
    pub max_certificates: usize,
    /// SignerInfos in one SignedData
    pub max_signers: usize,
    /// attributes in one signedAttrs
    pub max_attributes: usize,
    /// recipients in one EnvelopedData
    pub max_recipients: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            ber: BerLimits::default(),
            max_certificates: 16,
            max_signers: 4,
            max_attributes: 32,
            max_recipients: 8,
        }
    }
}

/// Fresh random bytes.
pub(crate) fn random_bytes(n: usize) -> Result<Vec<u8>, CmsError> {
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| CmsError::Crypto("the random generator"))?;
    Ok(b)
}

/// Reads a ContentInfo (RFC 5652 §3) of `expected` type from DER; its content's DER.
pub(crate) fn content_info(der: &[u8], expected: ObjectIdentifier) -> Result<Vec<u8>, CmsError> {
    use der::{Decode, Encode};
    let ci = types::ContentInfo::from_der(der)?;
    if ci.content_type != expected {
        return Err(CmsError::Malformed(format!(
            "content type {} where {expected} was expected",
            ci.content_type
        )));
    }
    Ok(ci.content.to_der()?)
}

/// A ContentInfo of `content_type` around `content` (the DER of the content type's value).
pub(crate) fn encode_content_info(
    content_type: ObjectIdentifier,
    content: &[u8],
) -> Result<Vec<u8>, CmsError> {
    use der::{Decode, Encode};
    Ok(types::ContentInfo {
        content_type,
        content: der::asn1::AnyRef::from_der(content)?,
    }
    .to_der()?)
}

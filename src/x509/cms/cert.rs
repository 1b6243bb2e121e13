//! The fields of a certificate that CMS needs — issuer, subject, serial number, public key,
//! subject key identifier — read leniently from its DER: a 32-byte serial number (sscep's
//! self-signed certificates), a non-minimal INTEGER or an explicit `critical FALSE` do not
//! stop a SCEP request. Nothing here says the certificate is valid or trusted.

use der::asn1::{AnyRef, BitStringRef, ObjectIdentifier, OctetStringRef};
use der::{Decode, Reader, Sequence, SliceReader, Tag};
use spki::SubjectPublicKeyInfoOwned;

use super::types::{elements, RawInteger, RawSequence, RawTlv};
use super::CmsError;

/// Longest serial number accepted (RFC 5280 allows 20 octets; peers send more).
const MAX_SERIAL_LEN: usize = 64;
/// Most extensions read.
const MAX_EXTENSIONS: usize = 64;

const SUBJECT_KEY_IDENTIFIER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");

/// ```text
/// Certificate ::= SEQUENCE { tbsCertificate TBSCertificate,
///   signatureAlgorithm AlgorithmIdentifier, signatureValue BIT STRING }
/// ```
/// [RFC 5280 §4.1](https://www.rfc-editor.org/rfc/rfc5280#section-4.1)
#[derive(Sequence)]
struct Certificate<'a> {
    tbs_certificate: TbsCertificate<'a>,
    signature_algorithm: AnyRef<'a>,
    signature_value: AnyRef<'a>,
}

/// ```text
/// TBSCertificate ::= SEQUENCE {
///   version [0] EXPLICIT Version DEFAULT v1, serialNumber CertificateSerialNumber,
///   signature AlgorithmIdentifier, issuer Name, validity Validity, subject Name,
///   subjectPublicKeyInfo SubjectPublicKeyInfo,
///   issuerUniqueID [1] IMPLICIT UniqueIdentifier OPTIONAL,
///   subjectUniqueID [2] IMPLICIT UniqueIdentifier OPTIONAL,
///   extensions [3] EXPLICIT Extensions OPTIONAL }
/// ```
/// [RFC 5280 §4.1](https://www.rfc-editor.org/rfc/rfc5280#section-4.1), with the serial
/// number, names and extensions kept raw.
#[derive(Sequence)]
struct TbsCertificate<'a> {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    version: Option<AnyRef<'a>>,
    serial_number: RawInteger<'a>,
    signature: AnyRef<'a>,
    issuer: RawTlv<'a>,
    validity: AnyRef<'a>,
    subject: RawTlv<'a>,
    subject_public_key_info: RawTlv<'a>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    issuer_unique_id: Option<BitStringRef<'a>>,
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT", optional = "true")]
    subject_unique_id: Option<BitStringRef<'a>>,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
    extensions: Option<RawSequence<'a>>,
}

/// What CMS uses of a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateView {
    /// the certificate as it was given
    pub der: Vec<u8>,
    /// the issuer Name's DER
    pub issuer: Vec<u8>,
    /// the subject Name's DER
    pub subject: Vec<u8>,
    /// the serial number's INTEGER contents as encoded
    pub serial: Vec<u8>,
    /// the subject public key
    pub public_key: SubjectPublicKeyInfoOwned,
    /// the subjectKeyIdentifier extension, if any
    pub key_identifier: Option<Vec<u8>>,
}

impl CertificateView {
    /// Reads a DER certificate leniently.
    pub fn parse(der: &[u8]) -> Result<Self, CmsError> {
        let bad =
            |what: &str, e: der::Error| CmsError::Malformed(format!("certificate {what}: {e}"));
        let cert = Certificate::from_der(der).map_err(|e| bad("structure", e))?;
        let tbs = cert.tbs_certificate;
        let serial = tbs.serial_number.0;
        if serial.is_empty() || serial.len() > MAX_SERIAL_LEN {
            return Err(CmsError::Malformed(format!(
                "certificate serial number of {} bytes",
                serial.len()
            )));
        }
        for (what, name) in [("issuer", tbs.issuer.0), ("subject", tbs.subject.0)] {
            if name.first() != Some(&0x30) {
                return Err(CmsError::Malformed(format!(
                    "certificate {what} is not a Name"
                )));
            }
        }
        let public_key = SubjectPublicKeyInfoOwned::from_der(tbs.subject_public_key_info.0)
            .map_err(|e| bad("public key", e))?;
        let key_identifier = match tbs.extensions {
            Some(exts) => subject_key_identifier(exts.0)?,
            None => None,
        };
        Ok(CertificateView {
            der: der.to_vec(),
            issuer: tbs.issuer.0.to_vec(),
            subject: tbs.subject.0.to_vec(),
            serial: serial.to_vec(),
            public_key,
            key_identifier,
        })
    }

    /// Whether this is the certificate `issuer` + `serial` names (serials compared as
    /// numbers: a redundant leading zero octet does not matter).
    pub fn is_issuer_serial(&self, issuer: &[u8], serial: &[u8]) -> bool {
        self.issuer == issuer && same_integer(&self.serial, serial)
    }

    /// Whether this certificate has subject key identifier `id`: its extension, or for a
    /// certificate without one, RFC 5280 §4.2.1.2 method 1 (SHA-1 of the key's bits).
    pub fn has_key_identifier(&self, id: &[u8]) -> bool {
        match &self.key_identifier {
            Some(k) => k == id,
            None => {
                let d = aws_lc_rs::digest::digest(
                    &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
                    self.public_key.subject_public_key.raw_bytes(),
                );
                d.as_ref() == id
            }
        }
    }
}

/// INTEGER contents equal as numbers (one redundant leading 0x00 or 0xff aside).
pub(crate) fn same_integer(a: &[u8], b: &[u8]) -> bool {
    fn trim(x: &[u8]) -> &[u8] {
        match x {
            [0x00, next, ..] if next & 0x80 == 0 => trim(&x[1..]),
            [0xff, next, ..] if next & 0x80 != 0 => trim(&x[1..]),
            _ => x,
        }
    }
    trim(a) == trim(b)
}

/// The value (extnValue's octets) of extension `oid` in a DER certificate, read as leniently
/// as [`CertificateView::parse`] reads the rest; `None` when the certificate has no such
/// extension (or none at all).
pub fn extension_value(der: &[u8], oid: ObjectIdentifier) -> Result<Option<Vec<u8>>, CmsError> {
    let cert = Certificate::from_der(der)
        .map_err(|e| CmsError::Malformed(format!("certificate structure: {e}")))?;
    match cert.tbs_certificate.extensions {
        Some(exts) => Ok(find_extension(exts.0, oid)?.map(<[u8]>::to_vec)),
        None => Ok(None),
    }
}

/// The value of extension `oid` in the contents of `Extensions`, read by hand so that an
/// explicit `critical FALSE` is accepted.
fn find_extension(extensions: &[u8], oid: ObjectIdentifier) -> Result<Option<&[u8]>, CmsError> {
    for ext in elements(extensions, MAX_EXTENSIONS, "certificate extensions")? {
        let mut r = SliceReader::new(ext)?;
        let found = r.sequence(|r| {
            let id = ObjectIdentifier::decode(r)?;
            if Tag::peek(r)? == Tag::Boolean {
                r.tlv_bytes()?;
            }
            let value = <&OctetStringRef>::decode(r)?;
            Ok::<_, der::Error>((id == oid).then(|| value.as_bytes()))
        })?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// The subjectKeyIdentifier in the contents of `Extensions`.
fn subject_key_identifier(extensions: &[u8]) -> Result<Option<Vec<u8>>, CmsError> {
    match find_extension(extensions, SUBJECT_KEY_IDENTIFIER)? {
        Some(value) => Ok(Some(
            <&OctetStringRef>::from_der(value)?.as_bytes().to_vec(),
        )),
        None => Ok(None),
    }
}

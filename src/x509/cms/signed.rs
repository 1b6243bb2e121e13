//! SignedData (RFC 5652 §5): reading and verifying what peers sign (RSA PKCS#1 v1.5 with MD5,
//! SHA-1 or SHA-2, signed attributes required), and writing DER signed through a
//! [`KeySigner`] or carrying only certificates.

use std::time::SystemTime;

use der::asn1::{ObjectIdentifier, OctetStringRef};
use der::{Decode, Encode};
use spki::AlgorithmIdentifierRef;

pub use super::crypto::DigestAlgorithm;
use super::types::{self, elements, RawInteger, RawSet, RawTlv};
use super::{ber, crypto, CertificateView, CmsError, Limits};
use super::{ID_CONTENT_TYPE, ID_DATA, ID_MESSAGE_DIGEST, ID_SIGNED_DATA, ID_SIGNING_TIME};
use crate::keys::{KeyAlgorithm, KeySigner, SignatureScheme};

/// Values one attribute may carry.
const MAX_ATTRIBUTE_VALUES: usize = 4;

/// Who signed, as a SignerInfo (or a KeyTransRecipientInfo) names a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignerIdentifier {
    /// the certificate's issuer Name (DER) and serial number (INTEGER contents)
    IssuerSerial {
        /// issuer Name DER
        issuer: Vec<u8>,
        /// serial number INTEGER contents
        serial: Vec<u8>,
    },
    /// the certificate's subjectKeyIdentifier
    KeyIdentifier(Vec<u8>),
}

impl SignerIdentifier {
    pub(crate) fn from_raw(id: &types::Identifier<'_>) -> Self {
        match id {
            types::Identifier::IssuerAndSerialNumber(i) => SignerIdentifier::IssuerSerial {
                issuer: i.issuer.0.to_vec(),
                serial: i.serial_number.0.to_vec(),
            },
            types::Identifier::SubjectKeyIdentifier(k) => {
                SignerIdentifier::KeyIdentifier(k.as_bytes().to_vec())
            }
        }
    }

    /// Whether `cert` is the certificate this identifies.
    pub fn matches(&self, cert: &CertificateView) -> bool {
        match self {
            SignerIdentifier::IssuerSerial { issuer, serial } => {
                cert.is_issuer_serial(issuer, serial)
            }
            SignerIdentifier::KeyIdentifier(id) => cert.has_key_identifier(id),
        }
    }
}

/// One SignerInfo (RFC 5652 §5.3), read.
#[derive(Clone, Debug)]
pub struct SignerInfo {
    /// which certificate signed
    pub sid: SignerIdentifier,
    /// digestAlgorithm's OID (see [`DigestAlgorithm::from_oid`])
    pub digest_algorithm: ObjectIdentifier,
    /// signatureAlgorithm's OID
    pub signature_algorithm: ObjectIdentifier,
    /// the signature
    pub signature: Vec<u8>,
    /// the signed attributes, each with its values' DER, in the order sent
    pub attributes: Vec<(ObjectIdentifier, Vec<Vec<u8>>)>,
    /// what the signature covers: the signed attributes as a DER `SET OF` (tag 0x31);
    /// `None` when the SignerInfo has no signed attributes
    signed_bytes: Option<Vec<u8>>,
}

impl SignerInfo {
    /// The values of the signed attribute `oid`.
    pub fn attribute(&self, oid: ObjectIdentifier) -> Option<&[Vec<u8>]> {
        self.attributes
            .iter()
            .find(|(o, _)| *o == oid)
            .map(|(_, v)| v.as_slice())
    }

    /// The one value of the signed attribute `oid`; an error if it has several.
    pub fn single_attribute(&self, oid: ObjectIdentifier) -> Result<Option<&[u8]>, CmsError> {
        match self.attribute(oid) {
            None => Ok(None),
            Some([one]) => Ok(Some(one.as_slice())),
            Some(_) => Err(CmsError::Malformed(format!(
                "attribute {oid} must have exactly one value"
            ))),
        }
    }

    /// The digest algorithm, if this layer has it.
    pub fn digest(&self) -> Result<DigestAlgorithm, CmsError> {
        DigestAlgorithm::from_oid(&self.digest_algorithm).ok_or_else(|| {
            CmsError::UnsupportedAlgorithm(format!("digest {}", self.digest_algorithm))
        })
    }

    fn from_der(der: &[u8], limits: &Limits) -> Result<Self, CmsError> {
        let si = types::SignerInfo::from_der(der)?;
        let mut attributes: Vec<(ObjectIdentifier, Vec<Vec<u8>>)> = Vec::new();
        if let Some(set) = si.signed_attrs {
            for a in elements(set.0, limits.max_attributes, "signed attributes")? {
                let a = types::Attribute::from_der(a)?;
                if attributes.iter().any(|(o, _)| *o == a.attr_type) {
                    return Err(CmsError::Malformed(format!(
                        "signed attribute {} appears twice",
                        a.attr_type
                    )));
                }
                let values = elements(a.attr_values.0, MAX_ATTRIBUTE_VALUES, "attribute values")?;
                attributes.push((a.attr_type, values.iter().map(|v| v.to_vec()).collect()));
            }
        }
        Ok(SignerInfo {
            sid: SignerIdentifier::from_raw(&si.sid),
            digest_algorithm: si.digest_algorithm.oid,
            signature_algorithm: si.signature_algorithm.oid,
            signature: si.signature.as_bytes().to_vec(),
            attributes,
            signed_bytes: si.signed_attrs.map(|s| ber::tlv(0x31, s.0)),
        })
    }
}

/// A SignedData (RFC 5652 §5.1), read: its content, certificates and signers.
#[derive(Clone, Debug)]
pub struct SignedContent {
    /// eContentType
    pub content_type: ObjectIdentifier,
    /// eContent's octets; `None` when absent (detached or certificates-only)
    pub content: Option<Vec<u8>>,
    /// the certificates (DER, in the order sent; other CertificateChoices are skipped)
    pub certificates: Vec<Vec<u8>>,
    /// the CRLs (DER; other RevocationInfoChoices are skipped)
    pub crls: Vec<Vec<u8>>,
    /// the SignerInfos
    pub signers: Vec<SignerInfo>,
}

impl SignedContent {
    /// Reads a ContentInfo holding a SignedData, BER or DER, within `limits`.
    pub fn parse(input: &[u8], limits: &Limits) -> Result<Self, CmsError> {
        let der = ber::normalize(input, &limits.ber)?;
        let content = super::content_info(&der, ID_SIGNED_DATA)?;
        let sd = types::SignedData::from_der(&content)?;
        let sequences = |set: Option<RawSet<'_>>, max: usize, what: &str| {
            let all = set.map_or(Ok(Vec::new()), |s| elements(s.0, max, what))?;
            Ok::<_, CmsError>(
                all.into_iter()
                    .filter(|c| c.first() == Some(&0x30))
                    .map(<[u8]>::to_vec)
                    .collect::<Vec<_>>(),
            )
        };
        let signers = elements(sd.signer_infos.0, limits.max_signers, "signers")?
            .into_iter()
            .map(|s| SignerInfo::from_der(s, limits))
            .collect::<Result<_, _>>()?;
        Ok(SignedContent {
            content_type: sd.encap_content_info.e_content_type,
            content: sd
                .encap_content_info
                .e_content
                .map(|c| c.as_bytes().to_vec()),
            certificates: sequences(sd.certificates, limits.max_certificates, "certificates")?,
            crls: sequences(sd.crls, limits.max_certificates, "CRLs")?,
            signers,
        })
    }

    /// The certificate (from this SignedData's own) that `signer` names.
    pub fn signer_certificate(&self, signer: &SignerInfo) -> Result<CertificateView, CmsError> {
        for der in &self.certificates {
            // A certificate that cannot be read cannot be the signer's: skip it.
            if let Ok(cert) = CertificateView::parse(der) {
                if signer.sid.matches(&cert) {
                    return Ok(cert);
                }
            }
        }
        Err(CmsError::SignerNotFound)
    }

    /// Verifies `signer` with `cert`'s key (RFC 5652 §5.4–5.6): the signed attributes must be
    /// there, contentType must name eContentType, messageDigest must be the digest of the
    /// content (an absent content counts as empty), and the signature must verify over the
    /// DER `SET OF` of the signed attributes.
    pub fn verify(&self, signer: &SignerInfo, cert: &CertificateView) -> Result<(), CmsError> {
        let digest = signer.digest()?;
        let sig_oid = signer.signature_algorithm;
        if sig_oid != super::RSA_ENCRYPTION && sig_oid != digest.rsa_signature_oid() {
            return Err(CmsError::UnsupportedAlgorithm(format!(
                "signature algorithm {sig_oid} with digest {digest:?}"
            )));
        }
        let signed = signer
            .signed_bytes
            .as_deref()
            .ok_or_else(|| CmsError::Malformed("the signer has no signed attributes".into()))?;
        let content_type = signer
            .single_attribute(ID_CONTENT_TYPE)?
            .ok_or_else(|| CmsError::Malformed("no contentType attribute".into()))?;
        if ObjectIdentifier::from_der(content_type)? != self.content_type {
            return Err(CmsError::BadSignature(
                "the contentType attribute names another content type".into(),
            ));
        }
        let message_digest = signer
            .single_attribute(ID_MESSAGE_DIGEST)?
            .ok_or_else(|| CmsError::Malformed("no messageDigest attribute".into()))?;
        let message_digest = <&OctetStringRef>::from_der(message_digest)?;
        let content = self.content.as_deref().unwrap_or_default();
        if message_digest.as_bytes() != digest.digest(content).as_slice() {
            return Err(CmsError::DigestMismatch);
        }
        crypto::verify_rsa_pkcs1(&cert.public_key, digest, signed, &signer.signature)
    }
}

/// What to sign into a SignedData.
#[derive(Clone, Copy, Debug)]
pub struct SignRequest<'a> {
    /// the content (eContent, type id-data); may be empty
    pub content: &'a [u8],
    /// the digest (SHA-256, SHA-384 or SHA-512: certman does not sign with MD5 or SHA-1)
    pub digest: DigestAlgorithm,
    /// signed attributes besides contentType, messageDigest and signingTime: type and the
    /// DER of its one value
    pub attributes: &'a [(ObjectIdentifier, Vec<u8>)],
    /// a signingTime attribute with this time
    pub signing_time: Option<SystemTime>,
    /// the certificates to carry (DER, in this order), usually the signer's
    pub certificates: &'a [&'a [u8]],
}

fn attribute(oid: ObjectIdentifier, value: &[u8]) -> Result<Vec<u8>, CmsError> {
    Ok(types::Attribute {
        attr_type: oid,
        attr_values: RawSet(value),
    }
    .to_der()?)
}

/// Signs `req.content` with `signer`, whose certificate is `signer_cert`: one SignerInfo
/// (issuerAndSerialNumber, RSA PKCS#1 v1.5), DER ContentInfo out.
pub fn sign(
    req: &SignRequest<'_>,
    signer: &dyn KeySigner,
    signer_cert: &CertificateView,
) -> Result<Vec<u8>, CmsError> {
    let hash = req
        .digest
        .signing_hash()
        .ok_or_else(|| CmsError::UnsupportedAlgorithm(format!("signing with {:?}", req.digest)))?;
    if !matches!(signer.algorithm(), KeyAlgorithm::Rsa { .. }) {
        return Err(CmsError::UnsupportedAlgorithm(format!(
            "signing SCEP messages with a {} key (RSA is needed)",
            signer.algorithm()
        )));
    }
    // The same key: algorithm and key bits (a token may encode the parameters differently).
    let (key, cert_key) = (signer.public_key(), &signer_cert.public_key);
    if key.algorithm.oid != cert_key.algorithm.oid
        || key.subject_public_key != cert_key.subject_public_key
    {
        return Err(CmsError::Key(crate::error::KeyError::Verification(
            "the signing key is not the key of the signer's certificate".into(),
        )));
    }
    let mut attrs = vec![
        attribute(ID_CONTENT_TYPE, &ID_DATA.to_der()?)?,
        attribute(
            ID_MESSAGE_DIGEST,
            &OctetStringRef::new(&req.digest.digest(req.content))?.to_der()?,
        )?,
    ];
    if let Some(t) = req.signing_time {
        let time = x509_cert::time::Time::try_from(t)
            .map_err(|e| CmsError::Malformed(format!("signing time: {e}")))?;
        attrs.push(attribute(ID_SIGNING_TIME, &time.to_der()?)?);
    }
    for (oid, value) in req.attributes {
        attrs.push(attribute(*oid, value)?);
    }
    // DER SET OF: the encodings in ascending order (X.690 §11.6).
    attrs.sort();
    let attrs = attrs.concat();
    let signature = signer.sign(SignatureScheme::RsaPkcs1(hash), &ber::tlv(0x31, &attrs))?;
    let digest_alg = AlgorithmIdentifierRef {
        oid: req.digest.oid(),
        parameters: None,
    }
    .to_der()?;
    let null = der::asn1::AnyRef::from(der::asn1::Null);
    let signer_info = types::SignerInfo {
        version: 1,
        sid: types::Identifier::IssuerAndSerialNumber(types::IssuerAndSerialNumber {
            issuer: RawTlv(&signer_cert.issuer),
            serial_number: RawInteger(&signer_cert.serial),
        }),
        digest_algorithm: AlgorithmIdentifierRef::from_der(&digest_alg)?,
        signed_attrs: Some(RawSet(&attrs)),
        signature_algorithm: AlgorithmIdentifierRef {
            oid: super::RSA_ENCRYPTION,
            parameters: Some(null),
        },
        signature: OctetStringRef::new(&signature)?,
        unsigned_attrs: None,
    }
    .to_der()?;
    encode(&digest_alg, req.content, req.certificates, &signer_info)
}

/// A certificates-only SignedData (RFC 8894 §3.4, the "degenerate" PKCS#7): no signers, no
/// content, the certificates and CRLs in the order given. DER ContentInfo.
///
/// Written with `ber::tlv` rather than the derived types so that it cannot fail: its only
/// inputs are byte strings, and this is what the derived encoding gives for them.
pub fn degenerate(certificates: &[&[u8]], crls: &[&[u8]]) -> Vec<u8> {
    // OID contents of id-data and id-signedData.
    const DATA: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
    const SIGNED_DATA: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
    let mut sd = vec![0x02, 0x01, 0x01, 0x31, 0x00];
    sd.extend(ber::tlv(0x30, &ber::tlv(0x06, &DATA)));
    if !certificates.is_empty() {
        sd.extend(ber::tlv(0xa0, &certificates.concat()));
    }
    if !crls.is_empty() {
        sd.extend(ber::tlv(0xa1, &crls.concat()));
    }
    sd.extend([0x31, 0x00]);
    let mut ci = ber::tlv(0x06, &SIGNED_DATA);
    ci.extend(ber::tlv(0xa0, &ber::tlv(0x30, &sd)));
    ber::tlv(0x30, &ci)
}

fn encode(
    digest_algs: &[u8],
    content: &[u8],
    certificates: &[&[u8]],
    signer_infos: &[u8],
) -> Result<Vec<u8>, CmsError> {
    let certs = certificates.concat();
    let sd = types::SignedData {
        version: 1,
        digest_algorithms: RawSet(digest_algs),
        encap_content_info: types::EncapsulatedContentInfo {
            e_content_type: ID_DATA,
            e_content: Some(OctetStringRef::new(content)?),
        },
        certificates: (!certificates.is_empty()).then_some(RawSet(&certs)),
        crls: None,
        signer_infos: RawSet(signer_infos),
    };
    super::encode_content_info(ID_SIGNED_DATA, &sd.to_der()?)
}

//! RFC 5280 v2 CRLs: entries encoded once (the store keeps them as rows), whole CRLs assembled
//! from encoded entries and signed through [`X509Signer`], and CRLs read back (for serving,
//! downloading and checking).
//!
//! The TBSCertList is assembled by hand from pre-encoded entries instead of through
//! `x509_cert::builder::CrlBuilder`: a CA with 100 000 revocations would otherwise decode and
//! re-encode every entry on every revocation, and the builder copies the *issuer certificate's*
//! AKI into the CRL, where RFC 5280 §5.2.1 wants the identifier of the key that signs it.

use std::str::FromStr;
use std::time::SystemTime;

use der::asn1::{BitString, OctetString};
use der::{Decode, Encode, Header, Length, Reader, SliceReader, Tag, TagNumber, Tagged};
use spki::{AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, SubjectPublicKeyInfoOwned};
use x509_cert::crl::{CertificateList, RevokedCert};
use x509_cert::ext::pkix::crl::{CrlNumber, CrlReason};
use x509_cert::ext::pkix::AuthorityKeyIdentifier;
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Time;

use crate::error::X509Error;
use crate::keys::X509Signer;

/// Why a certificate was revoked (RFC 5280 §5.3.1), by RouterOS-style names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevocationReason {
    /// `unspecified` (RFC 5280: leave the reason out instead; certman does)
    Unspecified,
    /// `key-compromise`
    KeyCompromise,
    /// `ca-compromise`
    CaCompromise,
    /// `affiliation-changed`
    AffiliationChanged,
    /// `superseded`
    Superseded,
    /// `cessation-of-operation`
    CessationOfOperation,
    /// `privilege-withdrawn`
    PrivilegeWithdrawn,
    /// `aa-compromise`
    AaCompromise,
}

/// The reason names `issued-revoke reason=` takes.
pub const REASON_NAMES: &[&str] = &[
    "unspecified",
    "key-compromise",
    "ca-compromise",
    "affiliation-changed",
    "superseded",
    "cessation-of-operation",
    "privilege-withdrawn",
    "aa-compromise",
];

impl RevocationReason {
    /// The CRLReason code.
    pub fn code(self) -> u8 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::CaCompromise => 2,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
            RevocationReason::PrivilegeWithdrawn => 9,
            RevocationReason::AaCompromise => 10,
        }
    }

    /// The reason with this CRLReason code (certificateHold and removeFromCRL are not reasons
    /// certman gives: a revocation here is final).
    pub fn from_code(code: u8) -> Option<Self> {
        REASON_NAMES
            .iter()
            .map(|n| n.parse::<RevocationReason>().expect("listed names parse"))
            .find(|r| r.code() == code)
    }

    /// The RouterOS-style name.
    pub fn name(self) -> &'static str {
        reason_name(self.crl_reason())
    }

    fn crl_reason(self) -> CrlReason {
        match self {
            RevocationReason::Unspecified => CrlReason::Unspecified,
            RevocationReason::KeyCompromise => CrlReason::KeyCompromise,
            RevocationReason::CaCompromise => CrlReason::CaCompromise,
            RevocationReason::AffiliationChanged => CrlReason::AffiliationChanged,
            RevocationReason::Superseded => CrlReason::Superseded,
            RevocationReason::CessationOfOperation => CrlReason::CessationOfOperation,
            RevocationReason::PrivilegeWithdrawn => CrlReason::PrivilegeWithdrawn,
            RevocationReason::AaCompromise => CrlReason::AaCompromise,
        }
    }
}

impl std::fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RevocationReason {
    type Err = X509Error;
    fn from_str(s: &str) -> Result<Self, X509Error> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "unspecified" => RevocationReason::Unspecified,
            "key-compromise" => RevocationReason::KeyCompromise,
            "ca-compromise" => RevocationReason::CaCompromise,
            "affiliation-changed" => RevocationReason::AffiliationChanged,
            "superseded" => RevocationReason::Superseded,
            "cessation-of-operation" => RevocationReason::CessationOfOperation,
            "privilege-withdrawn" => RevocationReason::PrivilegeWithdrawn,
            "aa-compromise" => RevocationReason::AaCompromise,
            "certificate-hold" => {
                return Err(X509Error::Value(
                    "reason=certificate-hold: certman's revocations are final (no hold)".into(),
                ))
            }
            _ => {
                return Err(X509Error::Value(format!(
                    "reason={s}: expected one of {}",
                    REASON_NAMES.join(", ")
                )))
            }
        })
    }
}

/// Encodes one revokedCertificates entry: serial (its big-endian magnitude, as the store keeps
/// it), revocation date, and the reasonCode extension unless the reason is absent or
/// `unspecified` (RFC 5280 §5.3.1).
pub fn encode_entry(
    serial: &[u8],
    revoked_at: SystemTime,
    reason: Option<RevocationReason>,
) -> Result<Vec<u8>, X509Error> {
    let extensions = match reason {
        None | Some(RevocationReason::Unspecified) => None,
        Some(r) => {
            let value = r.crl_reason().to_der()?;
            Some(vec![Extension {
                extn_id: <CrlReason as const_oid::AssociatedOid>::OID,
                critical: false,
                extn_value: OctetString::new(value)?,
            }])
        }
    };
    let entry: RevokedCert = RevokedCert {
        serial_number: SerialNumber::new(serial)?,
        revocation_date: Time::try_from(revoked_at)?,
        crl_entry_extensions: extensions,
    };
    Ok(entry.to_der()?)
}

/// What one CRL says about its issuer and period.
#[derive(Clone, Debug)]
pub struct CrlSpec<'a> {
    /// the CA's subject
    pub issuer: &'a Name,
    /// the identifier of the key that signs (AKI keyIdentifier)
    pub key_identifier: &'a [u8],
    /// cRLNumber
    pub number: u64,
    /// thisUpdate
    pub this_update: SystemTime,
    /// nextUpdate
    pub next_update: SystemTime,
}

fn tlv(tag: Tag, content_len: usize, out: &mut Vec<u8>) -> Result<(), X509Error> {
    let header = Header::new(tag, Length::try_from(content_len)?);
    header.encode_to_vec(out)?;
    Ok(())
}

/// Builds and signs a v2 CRL whose revokedCertificates are the concatenation of `entries`
/// (each an encoded entry from [`encode_entry`], or the raw content of an earlier CRL's list).
pub fn build_crl(
    spec: &CrlSpec<'_>,
    entries: &[&[u8]],
    signer: &X509Signer,
) -> Result<Vec<u8>, X509Error> {
    let algorithm = signer
        .signature_algorithm_identifier()
        .map_err(|e| X509Error::Builder(e.to_string()))?;
    let alg_der = algorithm.to_der()?;
    let issuer_der = spec.issuer.to_der()?;
    let this_update = Time::try_from(spec.this_update)?.to_der()?;
    let next_update = Time::try_from(spec.next_update)?.to_der()?;
    let extensions = vec![
        Extension {
            extn_id: <AuthorityKeyIdentifier as const_oid::AssociatedOid>::OID,
            critical: false,
            extn_value: OctetString::new(
                AuthorityKeyIdentifier {
                    key_identifier: Some(OctetString::new(spec.key_identifier)?),
                    ..Default::default()
                }
                .to_der()?,
            )?,
        },
        Extension {
            extn_id: <CrlNumber as const_oid::AssociatedOid>::OID,
            critical: false,
            extn_value: OctetString::new(CrlNumber::try_from(spec.number)?.to_der()?)?,
        },
    ];
    let ext_der = extensions.to_der()?;

    let list_len: usize = entries.iter().map(|e| e.len()).sum();
    let mut body = Vec::with_capacity(list_len + 512);
    // version v2 (INTEGER 1)
    body.extend_from_slice(&[0x02, 0x01, 0x01]);
    body.extend_from_slice(&alg_der);
    body.extend_from_slice(&issuer_der);
    body.extend_from_slice(&this_update);
    body.extend_from_slice(&next_update);
    if list_len > 0 {
        tlv(Tag::Sequence, list_len, &mut body)?;
        for e in entries {
            body.extend_from_slice(e);
        }
    }
    // crlExtensions [0] EXPLICIT
    tlv(
        Tag::ContextSpecific {
            constructed: true,
            number: TagNumber(0),
        },
        ext_der.len(),
        &mut body,
    )?;
    body.extend_from_slice(&ext_der);

    let mut tbs = Vec::with_capacity(body.len() + 8);
    tlv(Tag::Sequence, body.len(), &mut tbs)?;
    tbs.extend_from_slice(&body);
    drop(body);

    let signature: crate::keys::signer::X509Signature = signature::Signer::try_sign(signer, &tbs)
        .map_err(|e| match signer.take_error() {
        Some(k) => X509Error::Key(k),
        None => X509Error::Builder(format!("signing the CRL failed: {e}")),
    })?;
    if signer.needs_verification() {
        crate::keys::verify::verify_signature(
            signer.public_key(),
            signer.scheme(),
            &tbs,
            &signature.0,
        )
        .map_err(|_| {
            X509Error::Key(crate::error::KeyError::Verification(
                "the CRL signature made by the device does not match the CA's public key".into(),
            ))
        })?;
    }
    let sig_der = BitString::from_bytes(&signature.0)?.to_der()?;
    let mut out = Vec::with_capacity(tbs.len() + alg_der.len() + sig_der.len() + 8);
    tlv(
        Tag::Sequence,
        tbs.len() + alg_der.len() + sig_der.len(),
        &mut out,
    )?;
    out.extend_from_slice(&tbs);
    out.extend_from_slice(&alg_der);
    out.extend_from_slice(&sig_der);
    Ok(out)
}

/// The raw content of a CRL's revokedCertificates (the concatenated entries; empty when the
/// CRL lists none) and the encoded signature AlgorithmIdentifier and issuer of its TBS, without
/// decoding the entries: how one more revocation reuses the previous CRL.
pub fn revoked_entries(crl: &[u8]) -> Result<RawCrlParts<'_>, X509Error> {
    let tbs: der::asn1::AnyRef<'_> = der::asn1::AnyRef::from_der(super::signed_part(crl)?)?;
    let mut r = SliceReader::new(tbs.value())?;
    let version: der::asn1::AnyRef<'_> = r.decode()?;
    if version.tag() != Tag::Integer || version.value() != [1] {
        return Err(X509Error::Malformed("not a v2 CRL".into()));
    }
    let algorithm = r.tlv_bytes()?;
    let issuer = r.tlv_bytes()?;
    let _this_update = r.tlv_bytes()?;
    let mut entries: &[u8] = &[];
    while !r.is_finished() {
        let header = Header::peek(&r)?;
        match header.tag() {
            Tag::UtcTime | Tag::GeneralizedTime => {
                r.tlv_bytes()?;
            }
            Tag::Sequence => {
                let list: der::asn1::AnyRef<'_> = r.decode()?;
                entries = list.value();
            }
            _ => break,
        }
    }
    Ok(RawCrlParts {
        algorithm,
        issuer,
        entries,
    })
}

/// Parts of an encoded CRL, borrowed from it.
#[derive(Clone, Copy, Debug)]
pub struct RawCrlParts<'a> {
    /// the TBS signature AlgorithmIdentifier, DER
    pub algorithm: &'a [u8],
    /// the issuer Name, DER
    pub issuer: &'a [u8],
    /// the content of revokedCertificates (concatenated entries)
    pub entries: &'a [u8],
}

/// What certman shows and checks of a CRL.
#[derive(Clone, Debug)]
pub struct CrlInfo {
    /// issuer as text
    pub issuer: String,
    /// issuer Name
    pub issuer_name: Name,
    /// cRLNumber
    pub number: Option<u64>,
    /// thisUpdate
    pub this_update: SystemTime,
    /// nextUpdate
    pub next_update: Option<SystemTime>,
    /// how many certificates it lists
    pub entries: usize,
    /// AKI keyIdentifier
    pub authority_key_identifier: Option<Vec<u8>>,
    /// the signature algorithm
    pub signature_algorithm: AlgorithmIdentifierOwned,
}

/// Parses a DER CRL (v1 or v2).
pub fn inspect_crl(der: &[u8]) -> Result<CrlInfo, X509Error> {
    let crl: CertificateList = CertificateList::from_der(der)?;
    let tbs = &crl.tbs_cert_list;
    let mut number = None;
    let mut aki = None;
    for e in tbs.crl_extensions.as_deref().unwrap_or(&[]) {
        let v = e.extn_value.as_bytes();
        if e.extn_id == <CrlNumber as const_oid::AssociatedOid>::OID {
            let n = CrlNumber::from_der(v)?;
            let bytes = n.0.as_bytes();
            number = (bytes.len() <= 8)
                .then(|| bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)));
        } else if e.extn_id == <AuthorityKeyIdentifier as const_oid::AssociatedOid>::OID {
            aki = AuthorityKeyIdentifier::from_der(v)?
                .key_identifier
                .map(|k| k.as_bytes().to_vec());
        } else if e.critical {
            return Err(X509Error::Malformed(format!(
                "the CRL has a critical extension certman does not know ({})",
                e.extn_id
            )));
        }
    }
    Ok(CrlInfo {
        issuer: super::name_to_string(&tbs.issuer),
        issuer_name: tbs.issuer.clone(),
        number,
        this_update: tbs.this_update.to_system_time(),
        next_update: tbs.next_update.map(|t| t.to_system_time()),
        entries: tbs.revoked_certificates.as_ref().map_or(0, Vec::len),
        authority_key_identifier: aki,
        signature_algorithm: crl.signature_algorithm.clone(),
    })
}

/// Verifies a CRL's signature with `issuer_key`.
pub fn verify_crl_signature(
    der: &[u8],
    issuer_key: &SubjectPublicKeyInfoOwned,
) -> Result<(), X509Error> {
    let crl: CertificateList = CertificateList::from_der(der)?;
    if crl.signature_algorithm != crl.tbs_cert_list.signature {
        return Err(X509Error::Malformed(
            "the CRL's two signature algorithms differ".into(),
        ));
    }
    let scheme = crate::keys::SignatureScheme::from_algorithm_identifier(&crl.signature_algorithm)
        .ok_or_else(|| {
            X509Error::UnsupportedAlgorithm(format!(
                "unsupported CRL signature algorithm {}",
                crl.signature_algorithm.oid
            ))
        })?;
    // The signature covers the TBS as received (a re-encoding could differ for a CRL made
    // elsewhere).
    let tbs = super::signed_part(der)?;
    let sig = crl
        .signature
        .as_bytes()
        .ok_or_else(|| X509Error::Malformed("the CRL's signature has unused bits".into()))?;
    crate::keys::verify::verify_signature(issuer_key, scheme, tbs, sig)
        .map_err(|e| super::signature_failure(e, "the CRL's signature"))
}

/// The RouterOS-style name of a CRLReason (of any CRL, so also the ones certman never gives).
pub fn reason_name(r: CrlReason) -> &'static str {
    match r {
        CrlReason::Unspecified => "unspecified",
        CrlReason::KeyCompromise => "key-compromise",
        CrlReason::CaCompromise => "ca-compromise",
        CrlReason::AffiliationChanged => "affiliation-changed",
        CrlReason::Superseded => "superseded",
        CrlReason::CessationOfOperation => "cessation-of-operation",
        CrlReason::CertificateHold => "certificate-hold",
        CrlReason::RemoveFromCRL => "remove-from-crl",
        CrlReason::PrivilegeWithdrawn => "privilege-withdrawn",
        CrlReason::AaCompromise => "aa-compromise",
    }
}

/// A serial's magnitude: without the leading zero octets DER puts before a high bit.
pub fn strip_zeros(serial: &[u8]) -> &[u8] {
    let first = serial.iter().position(|b| *b != 0).unwrap_or(serial.len());
    &serial[first..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip() {
        for name in REASON_NAMES {
            let r: RevocationReason = name.parse().unwrap();
            assert_eq!(r.name(), *name);
            assert_eq!(RevocationReason::from_code(r.code()), Some(r));
        }
        assert!("certificate-hold".parse::<RevocationReason>().is_err());
        assert!("bogus".parse::<RevocationReason>().is_err());
        assert_eq!(RevocationReason::from_code(6), None);
    }

    #[test]
    fn entries_decode_as_x509_cert_revoked_certs() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let e = encode_entry(&[0x01, 0x02], t, Some(RevocationReason::KeyCompromise)).unwrap();
        let r = RevokedCert::<x509_cert::certificate::Rfc5280>::from_der(&e).unwrap();
        assert_eq!(r.serial_number.as_bytes(), &[0x01, 0x02]);
        assert_eq!(r.revocation_date.to_system_time(), t);
        assert_eq!(r.crl_entry_extensions.unwrap().len(), 1);
        // unspecified: no extension (RFC 5280 §5.3.1)
        let e = encode_entry(&[0x80], t, Some(RevocationReason::Unspecified)).unwrap();
        let r = RevokedCert::<x509_cert::certificate::Rfc5280>::from_der(&e).unwrap();
        assert!(r.crl_entry_extensions.is_none());
        // DER keeps the sign octet; the magnitude is what matters.
        assert_eq!(strip_zeros(r.serial_number.as_bytes()), &[0x80]);
    }
}

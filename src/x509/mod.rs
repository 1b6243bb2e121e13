//! Building and reading X.509 artefacts with the RustCrypto format crates: certificates,
//! names, subjectAltName, key usages, PEM, encrypted PKCS#8. Signs only through
//! [`X509Signer`]; does no I/O and knows no backend.

pub mod budget;
pub mod cms;
pub mod crl;
pub mod csr;
pub mod import;
pub mod names;
pub mod path;
pub mod pkcs12;
pub mod usage;

use std::net::IpAddr;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use const_oid::db::rfc4519;
use const_oid::AssociatedOid;
use der::asn1::{Any, Ia5String, OctetString};
use der::pem::LineEnding;
use der::referenced::OwnedToRef;
use der::{Decode, Encode, Tag};
use spki::{ObjectIdentifier, SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, CrlDistributionPoints, ExtendedKeyUsage, KeyUsage,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;
use zeroize::Zeroizing;

pub use self::usage::{KeyUsageName, KeyUsageSet};
use crate::error::X509Error;
use crate::keys::{KeyAlgorithm, X509Signer};

/// The subject fields a template can set (RouterOS property names in comments).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubjectFields {
    /// `country` (C), two letters
    pub country: Option<String>,
    /// `state` (ST)
    pub state: Option<String>,
    /// `locality` (L)
    pub locality: Option<String>,
    /// `organization` (O)
    pub organization: Option<String>,
    /// `unit` (OU)
    pub unit: Option<String>,
    /// `common-name` (CN)
    pub common_name: Option<String>,
}

impl SubjectFields {
    /// The X.501 Name, in the conventional order C, ST, L, O, OU, CN.
    pub fn to_name(&self) -> Result<Name, X509Error> {
        let mut seq = RdnSequence::default();
        let fields = [
            (rfc4519::COUNTRY_NAME, &self.country),
            (rfc4519::ST, &self.state),
            (rfc4519::LOCALITY_NAME, &self.locality),
            (rfc4519::ORGANIZATION_NAME, &self.organization),
            (rfc4519::ORGANIZATIONAL_UNIT_NAME, &self.unit),
            (rfc4519::COMMON_NAME, &self.common_name),
        ];
        for (oid, value) in fields {
            let Some(v) = value.as_deref().filter(|v| !v.is_empty()) else {
                continue;
            };
            let value = if oid == rfc4519::COUNTRY_NAME {
                if v.len() != 2 || !v.bytes().all(|b| b.is_ascii_alphabetic()) {
                    return Err(X509Error::Value(format!(
                        "country '{v}' must be a two-letter ISO 3166 code"
                    )));
                }
                Any::new(Tag::PrintableString, v.to_ascii_uppercase().as_bytes())?
            } else {
                if v.chars().count() > 64 {
                    return Err(X509Error::Value(format!(
                        "'{v}' is longer than the 64 characters X.520 allows"
                    )));
                }
                if v.chars().any(char::is_control) {
                    return Err(X509Error::Value(format!(
                        "'{}' holds control characters",
                        names::escape(v)
                    )));
                }
                Any::new(Tag::Utf8String, v.as_bytes())?
            };
            let atv = AttributeTypeAndValue { oid, value };
            seq.push(RelativeDistinguishedName::try_from(vec![atv])?);
        }
        Ok(Name::hazmat_from_rdn_sequence(seq))
    }
}

/// pkcs-9-at-emailAddress (RFC 2985 §5.2.1): the e-mail address in a subject, as PKCS#10
/// requests made by OpenSSL and RouterOS v2.8 carry it.
pub const EMAIL_ADDRESS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.1");

/// `name` with an emailAddress attribute (IA5String, at most 255 characters: RFC 2985's
/// pkcs-9-ub-emailAddress) appended as the last RDN, where `openssl req` puts it.
pub fn with_email_address(name: Name, email: &str) -> Result<Name, X509Error> {
    if email.len() > 255 {
        return Err(X509Error::Value(
            "an email address is at most 255 characters (RFC 2985)".into(),
        ));
    }
    let well_formed = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !domain.contains('@')
    });
    if !email.is_ascii() || email.bytes().any(|b| b.is_ascii_control() || b == b' ') || !well_formed
    {
        return Err(X509Error::Value(format!(
            "'{}' is not an email address (ASCII local@domain)",
            names::escape(email)
        )));
    }
    let value = Any::new(Tag::Ia5String, Ia5String::new(email)?.as_bytes())?;
    let mut seq: RdnSequence = name.into();
    seq.push(RelativeDistinguishedName::try_from(vec![
        AttributeTypeAndValue {
            oid: EMAIL_ADDRESS,
            value,
        },
    ])?);
    Ok(Name::hazmat_from_rdn_sequence(seq))
}

/// A Name as text in the order it is encoded, `C=LV,O=MikroTik,CN=ca` (as RouterOS prints it).
pub fn name_to_string(name: &Name) -> String {
    let mut out = String::new();
    for (i, rdn) in name.iter_rdn().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            write_attribute(&mut out, atv);
        }
    }
    out
}

/// One attribute as x509-cert's `Display` of [`AttributeTypeAndValue`] writes it (RFC 4514),
/// with the attribute's short name looked up once per OID and process: x509-cert scans the
/// whole OID database for every attribute it prints, which was a fifth of `print`'s time.
fn write_attribute(out: &mut String, atv: &AttributeTypeAndValue) {
    use std::collections::HashMap;
    use std::fmt::Write;
    use std::sync::Mutex;
    use x509_cert::der::asn1::{PrintableStringRef, TeletexStringRef, Utf8StringRef};
    static NAMES: Mutex<Option<HashMap<ObjectIdentifier, Option<String>>>> = Mutex::new(None);
    let val = match der::Tagged::tag(&atv.value) {
        Tag::PrintableString => PrintableStringRef::try_from(&atv.value)
            .ok()
            .map(|s| s.as_str()),
        Tag::Utf8String => Utf8StringRef::try_from(&atv.value).ok().map(|s| s.as_str()),
        Tag::Ia5String => der::asn1::Ia5StringRef::try_from(&atv.value)
            .ok()
            .map(|s| s.as_str()),
        Tag::TeletexString => TeletexStringRef::try_from(&atv.value)
            .ok()
            .map(|s| s.as_str()),
        _ => None,
    };
    let key = {
        let mut names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
        names
            .get_or_insert_with(HashMap::new)
            .entry(atv.oid)
            .or_insert_with(|| {
                // x509-cert's choice: the first of the shortest names
                let mut best: Option<&str> = None;
                for m in const_oid::db::DB.find_names_for_oid(atv.oid) {
                    if best.is_none_or(|b| m.len() < b.len()) {
                        best = Some(m);
                    }
                }
                best.map(str::to_ascii_uppercase)
            })
            .clone()
    };
    let (Some(key), Some(val)) = (key, val) else {
        // what x509-cert writes for an unknown attribute or a value that is no string
        let _ = write!(out, "{atv}");
        return;
    };
    out.push_str(&key);
    out.push('=');
    let mut iter = val.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        match c {
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || iter.peek().is_none() => out.push_str("\\ "),
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\x00'..='\x1f' | '\x7f' => {
                let _ = write!(out, "\\{:02x}", c as u8);
            }
            _ => out.push(c),
        }
    }
}

fn name_attribute(name: &Name, oid: ObjectIdentifier) -> Option<String> {
    name.iter().find(|atv| atv.oid == oid).and_then(|atv| {
        let v = &atv.value;
        match der::Tagged::tag(v) {
            Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::TeletexString => {
                std::str::from_utf8(v.value()).ok().map(str::to_owned)
            }
            _ => None,
        }
    })
}

/// The subject fields of a Name (C, ST, L, O, OU, CN).
pub fn subject_fields(name: &Name) -> SubjectFields {
    SubjectFields {
        country: name_attribute(name, rfc4519::COUNTRY_NAME),
        state: name_attribute(name, rfc4519::ST),
        locality: name_attribute(name, rfc4519::LOCALITY_NAME),
        organization: name_attribute(name, rfc4519::ORGANIZATION_NAME),
        unit: name_attribute(name, rfc4519::ORGANIZATIONAL_UNIT_NAME),
        common_name: name_attribute(name, rfc4519::COMMON_NAME),
    }
}

/// Parses RouterOS `subject-alt-name`: `DNS:a.example,IP:192.0.2.1,email:x@y,URI:https://…`.
pub fn parse_subject_alt_names(s: &str) -> Result<Vec<GeneralName>, X509Error> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (kind, value) = item.split_once(':').ok_or_else(|| {
            X509Error::Value(format!(
                "subject-alt-name item '{item}' needs a type prefix: DNS:, IP:, email: or URI:"
            ))
        })?;
        let ia5 = |v: &str| {
            Ia5String::new(v)
                .map_err(|_| X509Error::Value(format!("subject-alt-name '{item}' must be ASCII")))
        };
        let gn = match kind.to_ascii_lowercase().as_str() {
            "dns" => {
                names::check_dns_name(value).map_err(X509Error::Value)?;
                GeneralName::DnsName(ia5(value)?)
            }
            "ip" => {
                let ip = IpAddr::from_str(value).map_err(|_| {
                    X509Error::Value(format!("'{value}' is not an IPv4 or IPv6 address"))
                })?;
                GeneralName::from(ip)
            }
            "email" => {
                if !value.contains('@') {
                    return Err(X509Error::Value(format!(
                        "'{value}' is not an email address"
                    )));
                }
                GeneralName::Rfc822Name(ia5(value)?)
            }
            "uri" => {
                if !value.contains(':') {
                    return Err(X509Error::Value(format!(
                        "'{value}' is not an absolute URI"
                    )));
                }
                GeneralName::UniformResourceIdentifier(ia5(value)?)
            }
            other => {
                return Err(X509Error::Value(format!(
                    "subject-alt-name type '{other}' (use DNS, IP, email or URI)"
                )))
            }
        };
        names::check_general_names(std::slice::from_ref(&gn)).map_err(X509Error::Value)?;
        out.push(gn);
    }
    Ok(out)
}

/// Prints general names the way `subject-alt-name` takes them.
pub fn general_names_to_string(names: &[GeneralName]) -> String {
    names
        .iter()
        .map(|gn| match gn {
            GeneralName::DnsName(s) => format!("DNS:{s}"),
            GeneralName::Rfc822Name(s) => format!("email:{s}"),
            GeneralName::UniformResourceIdentifier(s) => format!("URI:{s}"),
            GeneralName::IpAddress(o) => match o.as_bytes().len() {
                4 => {
                    let b: [u8; 4] = o.as_bytes().try_into().unwrap_or_default();
                    format!("IP:{}", IpAddr::from(b))
                }
                16 => {
                    let b: [u8; 16] = o.as_bytes().try_into().unwrap_or_default();
                    format!("IP:{}", IpAddr::from(b))
                }
                _ => format!("IP:#{}", hex::encode(o.as_bytes())),
            },
            GeneralName::DirectoryName(n) => format!("dirName:{}", name_to_string(n)),
            other => format!("{other:?}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A signature check's failure as this layer reports it: a key or scheme certman cannot verify
/// with is an unsupported algorithm, anything else a signature that does not verify (`what`
/// says whose).
pub(crate) fn signature_failure(e: crate::error::KeyError, what: &str) -> X509Error {
    match e {
        crate::error::KeyError::Unsupported(m) => X509Error::UnsupportedAlgorithm(m),
        _ => X509Error::BadSignature(format!("{what} does not verify")),
    }
}

/// A random positive serial number of 127 bits: 16 octets, top bit clear, second bit set so
/// it never shrinks below 64 bits of entropy-bearing length (RFC 5280 §4.1.2.2: ≤ 20 octets).
pub fn random_serial() -> Result<SerialNumber, X509Error> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| X509Error::Crypto("random generator"))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::new(&bytes)?)
}

/// RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING's bytes.
pub fn key_identifier(spki: SubjectPublicKeyInfoRef<'_>) -> Vec<u8> {
    let d = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        spki.subject_public_key.raw_bytes(),
    );
    d.as_ref().to_vec()
}

/// The issuer of a certificate being built.
#[derive(Clone, Debug)]
pub struct IssuerInfo {
    /// the issuing CA's subject
    pub name: Name,
    /// the issuing CA's subject key identifier (goes into AKI)
    pub key_identifier: Vec<u8>,
}

/// Everything that goes into one certificate.
#[derive(Clone, Debug)]
pub struct CertificateSpec {
    /// subject name
    pub subject: Name,
    /// subject public key
    pub public_key: SubjectPublicKeyInfoOwned,
    /// serial number
    pub serial: SerialNumber,
    /// notBefore
    pub not_before: SystemTime,
    /// notAfter
    pub not_after: SystemTime,
    /// basicConstraints cA
    pub is_ca: bool,
    /// keyUsage bits and EKUs
    pub key_usage: KeyUsageSet,
    /// subjectAltName
    pub subject_alt_names: Vec<GeneralName>,
    /// a CRL distribution point URL
    pub crl_distribution_point: Option<String>,
    /// the issuer; `None` = self-signed
    pub issuer: Option<IssuerInfo>,
}

impl CertificateSpec {
    /// Validity from now for `days`, refusing dates past 9999-12-31 (GeneralizedTime's end).
    pub fn validity_from_now(days: u32) -> Result<(SystemTime, SystemTime), X509Error> {
        let now_secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_err(|_| X509Error::Value("the system clock is before 1970".into()))?
            .as_secs();
        let not_before = SystemTime::UNIX_EPOCH + Duration::from_secs(now_secs);
        let not_after = not_before + Duration::from_secs(u64::from(days) * 86_400);
        // 9999-12-31T23:59:59Z
        if not_after > SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799) {
            return Err(X509Error::Value(format!(
                "days-valid={days} ends after the year 9999"
            )));
        }
        Ok((not_before, not_after))
    }
}

struct Profile<'a>(&'a CertificateSpec);

fn ext<T: Encode + AssociatedOid>(
    value: &T,
    critical: bool,
) -> x509_cert::builder::Result<Extension> {
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}

impl BuilderProfile for Profile<'_> {
    fn get_issuer(&self, subject: &Name) -> Name {
        match &self.0.issuer {
            Some(i) => i.name.clone(),
            None => subject.clone(),
        }
    }

    fn get_subject(&self) -> Name {
        self.0.subject.clone()
    }

    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        _tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let spec = self.0;
        let ski = key_identifier(spk);
        let aki = match &spec.issuer {
            Some(i) => i.key_identifier.clone(),
            None => ski.clone(),
        };
        let mut exts = vec![ext(
            &BasicConstraints {
                ca: spec.is_ca,
                path_len_constraint: None,
            },
            true,
        )?];
        let flags = spec.key_usage.key_usage_flags();
        if !flags.is_empty() {
            exts.push(ext(&KeyUsage(flags), true)?);
        }
        let ekus = spec.key_usage.eku_oids();
        if !ekus.is_empty() {
            exts.push(ext(&ExtendedKeyUsage(ekus), false)?);
        }
        exts.push(ext(&SubjectKeyIdentifier(OctetString::new(ski)?), false)?);
        exts.push(ext(
            &AuthorityKeyIdentifier {
                key_identifier: Some(OctetString::new(aki)?),
                ..Default::default()
            },
            false,
        )?);
        if !spec.subject_alt_names.is_empty() {
            // RFC 5280 §4.2.1.6: critical when the subject is empty.
            exts.push(ext(
                &SubjectAltName(spec.subject_alt_names.clone()),
                spec.subject.is_empty(),
            )?);
        }
        if let Some(url) = &spec.crl_distribution_point {
            let dp = DistributionPoint {
                distribution_point: Some(DistributionPointName::FullName(vec![
                    GeneralName::UniformResourceIdentifier(Ia5String::new(url)?),
                ])),
                reasons: None,
                crl_issuer: None,
            };
            exts.push(ext(&CrlDistributionPoints(vec![dp]), false)?);
        }
        Ok(exts)
    }
}

/// Builds and signs a certificate. For a self-signed certificate, `signer` must hold the key
/// of `spec.public_key`.
pub fn build_certificate(
    spec: &CertificateSpec,
    signer: &X509Signer,
) -> Result<Vec<u8>, X509Error> {
    if spec.issuer.is_none() && signer.public_key() != &spec.public_key {
        return Err(X509Error::Value(
            "a self-signed certificate must be signed by its own key".into(),
        ));
    }
    let validity = Validity::new(
        Time::try_from(spec.not_before)?,
        Time::try_from(spec.not_after)?,
    );
    let builder = CertificateBuilder::new(
        Profile(spec),
        spec.serial.clone(),
        validity,
        spec.public_key.clone(),
    )
    .map_err(|e| X509Error::Builder(e.to_string()))?;
    let cert = builder
        .build::<_, crate::keys::signer::X509Signature>(signer)
        .map_err(|e| match e {
            x509_cert::builder::Error::Signature(s) => match signer.take_error() {
                // Keep the key error itself: a wrong PIN must stay a PIN error.
                Some(key_error) => X509Error::Key(key_error),
                None => X509Error::Builder(format!("signing failed: {s}")),
            },
            other => X509Error::Builder(other.to_string()),
        })?;
    if signer.needs_verification() {
        // The signer's public key was not read from the device: make sure the key in the
        // device is the one we think before anything is stored.
        let tbs = cert.tbs_certificate().to_der()?;
        crate::keys::verify::verify_signature(
            signer.public_key(),
            signer.scheme(),
            &tbs,
            cert.signature().raw_bytes(),
        )
        .map_err(|_| {
            X509Error::Key(crate::error::KeyError::Verification(
                "the signature made by the device does not match the expected public key (wrong key in the slot?)"
                    .into(),
            ))
        })?;
    }
    Ok(cert.to_der()?)
}

/// What certman shows of a certificate.
#[derive(Clone, Debug)]
pub struct CertificateInfo {
    /// subject as text
    pub subject: String,
    /// issuer as text
    pub issuer: String,
    /// subject CN
    pub common_name: Option<String>,
    /// subject C, ST, L, O, OU
    pub subject_fields: SubjectFields,
    /// serial number, upper-case hex
    pub serial_hex: String,
    /// SHA-256 of the DER, lower-case hex
    pub fingerprint: String,
    /// notBefore
    pub not_before: SystemTime,
    /// notAfter
    pub not_after: SystemTime,
    /// the subject key's algorithm, if certman knows it
    pub key_algorithm: Option<KeyAlgorithm>,
    /// keyUsage + EKU names
    pub key_usage: KeyUsageSet,
    /// subjectAltName as RouterOS text
    pub subject_alt_name: String,
    /// basicConstraints cA
    pub is_ca: bool,
    /// subject == issuer
    pub self_issued: bool,
    /// subjectKeyIdentifier
    pub subject_key_identifier: Option<Vec<u8>>,
    /// authorityKeyIdentifier keyIdentifier
    pub authority_key_identifier: Option<Vec<u8>>,
    /// CRL distribution point URLs
    pub crl_distribution_points: Vec<String>,
    /// subject public key
    pub public_key: SubjectPublicKeyInfoOwned,
    /// the subject Name
    pub subject_name: Name,
}

/// How many inspected certificates [`inspect_certificate_cached`] keeps.
const INSPECTED_KEPT: usize = 32;

/// [`inspect_certificate`] for certificates read again and again by a long-running `serve` (a
/// SCEP server's CA and RA at every enrolment): the last few are kept, found by the SHA-256
/// of their DER, so that one certificate is parsed and its names formatted once. What is kept
/// is public and derived from the bytes alone.
pub fn inspect_certificate_cached(
    der: &[u8],
) -> Result<std::sync::Arc<CertificateInfo>, X509Error> {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    type Kept = VecDeque<([u8; 32], Arc<CertificateInfo>)>;
    static KEPT: Mutex<Kept> = Mutex::new(VecDeque::new());
    let mut digest = [0u8; 32];
    digest.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der).as_ref());
    let found = {
        let kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter()
            .find(|(d, _)| *d == digest)
            .map(|(_, i)| i.clone())
    };
    if let Some(info) = found {
        return Ok(info);
    }
    let info = Arc::new(inspect_certificate(der)?);
    let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
    if kept.len() >= INSPECTED_KEPT {
        kept.pop_front();
    }
    kept.push_back((digest, info.clone()));
    Ok(info)
}

/// Parses a DER certificate into what certman shows and needs.
pub fn inspect_certificate(der: &[u8]) -> Result<CertificateInfo, X509Error> {
    let info = inspect_stored_certificate(der)?;
    // An EC key off its curve would only fail later, in the middle of a signature check.
    crate::keys::verify::check_public_key(&info.public_key)
        .map_err(|e| X509Error::Malformed(crate::error::key_detail(&e)))?;
    Ok(info)
}

/// [`inspect_certificate`] of a certificate taken from the store, without checking its
/// public key again: every way into the store (signing, import, SCEP) inspected it with the
/// check. For listing many (`print`), where the check was a tenth of the time.
pub fn inspect_stored_certificate(der: &[u8]) -> Result<CertificateInfo, X509Error> {
    let cert = Certificate::from_der(der)?;
    let tbs = cert.tbs_certificate();
    let fingerprint = fingerprint(der);
    let mut key_flags = der::flagset::FlagSet::default();
    let mut ekus = Vec::new();
    let mut san = String::new();
    let mut is_ca = false;
    let mut ski = None;
    let mut aki = None;
    let mut cdps = Vec::new();
    for e in tbs.extensions().map(|e| e.as_slice()).unwrap_or(&[]) {
        let v = e.extn_value.as_bytes();
        match e.extn_id {
            id if id == KeyUsage::OID => key_flags = KeyUsage::from_der(v)?.0,
            id if id == ExtendedKeyUsage::OID => ekus = ExtendedKeyUsage::from_der(v)?.0,
            id if id == SubjectAltName::OID => {
                san = general_names_to_string(&SubjectAltName::from_der(v)?.0)
            }
            id if id == BasicConstraints::OID => is_ca = BasicConstraints::from_der(v)?.ca,
            id if id == SubjectKeyIdentifier::OID => {
                ski = Some(SubjectKeyIdentifier::from_der(v)?.0.as_bytes().to_vec())
            }
            id if id == AuthorityKeyIdentifier::OID => {
                aki = AuthorityKeyIdentifier::from_der(v)?
                    .key_identifier
                    .map(|k| k.as_bytes().to_vec())
            }
            id if id == CrlDistributionPoints::OID => {
                for dp in CrlDistributionPoints::from_der(v)?.0 {
                    if let Some(DistributionPointName::FullName(names)) = dp.distribution_point {
                        for n in names {
                            if let GeneralName::UniformResourceIdentifier(u) = n {
                                cdps.push(u.to_string());
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let subject = tbs.subject();
    Ok(CertificateInfo {
        subject: name_to_string(subject),
        issuer: name_to_string(tbs.issuer()),
        common_name: name_attribute(subject, rfc4519::COMMON_NAME),
        subject_fields: subject_fields(subject),
        serial_hex: hex::encode_upper(tbs.serial_number().as_bytes()),
        fingerprint,
        not_before: tbs.validity().not_before.to_system_time(),
        not_after: tbs.validity().not_after.to_system_time(),
        key_algorithm: KeyAlgorithm::from_spki(tbs.subject_public_key_info().owned_to_ref()).ok(),
        key_usage: KeyUsageSet::from_extensions(key_flags, &ekus),
        subject_alt_name: san,
        is_ca,
        self_issued: tbs.subject() == tbs.issuer(),
        subject_key_identifier: ski,
        authority_key_identifier: aki,
        crl_distribution_points: cdps,
        public_key: tbs.subject_public_key_info().clone(),
        subject_name: subject.clone(),
    })
}

/// The to-be-signed part of a SIGNED{…} structure (certificate, CRL): the first element of
/// the outer SEQUENCE, exactly as encoded.
pub(crate) fn signed_part(der: &[u8]) -> Result<&[u8], der::Error> {
    use der::{Decode, Reader};
    let mut r = der::SliceReader::new(der)?;
    der::Header::decode(&mut r)?
        .tag()
        .assert_eq(der::Tag::Sequence)?;
    r.tlv_bytes()
}

/// Verifies that `issuer_key` signed the certificate `der` (its signature only: no path, no
/// validity).
pub fn verify_certificate_signature(
    der: &[u8],
    issuer_key: &SubjectPublicKeyInfoOwned,
) -> Result<(), X509Error> {
    let cert = Certificate::from_der(der)?;
    let scheme =
        crate::keys::SignatureScheme::from_algorithm_identifier(cert.signature_algorithm())
            .ok_or_else(|| {
                X509Error::UnsupportedAlgorithm(format!(
                    "unsupported certificate signature algorithm {}",
                    cert.signature_algorithm().oid
                ))
            })?;
    let tbs = signed_part(der)?;
    let sig = cert.signature().as_bytes().ok_or_else(|| {
        X509Error::Malformed("the certificate's signature has unused bits".into())
    })?;
    crate::keys::verify::verify_signature(issuer_key, scheme, tbs, sig)
        .map_err(|e| signature_failure(e, "the certificate's signature"))
}

/// RFC 8894 §3.2.1.1: the upper-case hex of the SHA-256 of a public key's subjectPublicKey
/// bits (for RSA, the PKCS#1 RSAPublicKey): a SCEP transactionID that one key keeps across
/// polls and re-sent requests.
pub fn public_key_digest_hex(public_key: &SubjectPublicKeyInfoOwned) -> String {
    let d = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        public_key.subject_public_key.raw_bytes(),
    );
    hex::encode_upper(d.as_ref())
}

/// RouterOS date format in the local time zone: `nov/25/2026 02:16:20`.
pub fn routeros_time(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Local>::from(t)
        .format("%b/%d/%Y %H:%M:%S")
        .to_string()
        .to_lowercase()
}

/// A certificate's fingerprint: SHA-256 of its DER, lower-case hex (RouterOS v6.18+).
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der))
}

/// PEM `CERTIFICATE` block.
pub fn certificate_pem(der: &[u8]) -> Result<String, X509Error> {
    der::pem::encode_string("CERTIFICATE", LineEnding::LF, der)
        .map_err(|e| X509Error::Malformed(format!("PEM encoding: {e}")))
}

/// PBKDF2 iterations for exported keys (OWASP's figure for PBKDF2-HMAC-SHA256).
pub const EXPORT_PBKDF2_ITERATIONS: u32 = 600_000;

/// An `ENCRYPTED PRIVATE KEY` PEM block (PKCS#8 + PBES2: PBKDF2-HMAC-SHA256, AES-256-CBC) that
/// `openssl pkey -passin` opens.
pub fn encrypted_private_key_pem(
    pkcs8: &[u8],
    passphrase: &str,
) -> Result<Zeroizing<String>, X509Error> {
    let info =
        pkcs8::PrivateKeyInfoRef::from_der(pkcs8).map_err(|e| X509Error::Pkcs8(e.to_string()))?;
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt)
        .and_then(|_| aws_lc_rs::rand::fill(&mut iv))
        .map_err(|_| X509Error::Pkcs8("random generator failed".into()))?;
    let params = pkcs5::pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(
        EXPORT_PBKDF2_ITERATIONS,
        &salt,
        iv,
    )
    .map_err(|e| X509Error::Pkcs8(e.to_string()))?;
    let doc = info
        .encrypt_with_params(params, passphrase.as_bytes())
        .map_err(|e| X509Error::Pkcs8(e.to_string()))?;
    doc.to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
        .map_err(|e| X509Error::Pkcs8(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_print_as_x509_cert_prints_them() {
        use std::str::FromStr;
        for text in [
            "CN=plain",
            "CN=a\\,b+O=x,C=US,ST=st,L=l,OU=u",
            "CN=\\#hash\\ ,O=quote\\\"s\\;\\<\\>\\\\",
            "CN=\\ lead",
            "UID=u1,DC=example,DC=com",
            "emailAddress=a@b.example,serialNumber=42",
        ] {
            let name = Name::from_str(text).unwrap();
            let theirs = name
                .iter_rdn()
                .map(|rdn| {
                    rdn.iter()
                        .map(|atv| atv.to_string())
                        .collect::<Vec<_>>()
                        .join("+")
                })
                .collect::<Vec<_>>()
                .join(",");
            assert_eq!(name_to_string(&name), theirs, "{text}");
        }
        // an attribute without a short name, and a value that is no string: hex, as x509-cert
        let mut rdn = RdnSequence::default();
        let odd = AttributeTypeAndValue {
            oid: ObjectIdentifier::new_unwrap("1.2.3.4.5"),
            value: Any::new(Tag::OctetString, vec![1, 2]).unwrap(),
        };
        rdn.push(RelativeDistinguishedName::try_from(vec![odd.clone()]).unwrap());
        let name = Name::hazmat_from_rdn_sequence(rdn);
        assert_eq!(name_to_string(&name), odd.to_string());
    }

    #[test]
    fn san_parse_and_print_round_trip() {
        let s =
            "DNS:srv.example,IP:127.0.0.1,IP:2001:db8::1,email:a@b.example,URI:https://x.example/p";
        let names = parse_subject_alt_names(s).unwrap();
        assert_eq!(names.len(), 5);
        assert_eq!(general_names_to_string(&names), s);
    }

    #[test]
    fn san_rejects_bad_items() {
        for bad in [
            "srv.example",
            "DNS:",
            "IP:300.1.1.1",
            "email:nobody",
            "FOO:x",
            "DNS:a b",
        ] {
            assert!(parse_subject_alt_names(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_in_routeros_order() {
        let f = SubjectFields {
            country: Some("lv".into()),
            organization: Some("MikroTik".into()),
            common_name: Some("cert, test".into()),
            ..Default::default()
        };
        let n = f.to_name().unwrap();
        assert_eq!(name_to_string(&n), "C=LV,O=MikroTik,CN=cert\\, test");
        assert_eq!(
            name_attribute(&n, rfc4519::COMMON_NAME).as_deref(),
            Some("cert, test")
        );
        let bad = SubjectFields {
            country: Some("Latvia".into()),
            ..Default::default()
        };
        assert!(bad.to_name().is_err());
    }

    #[test]
    fn serials_are_positive_16_octets_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let s = random_serial().unwrap();
            let b = s.as_bytes();
            assert_eq!(b.len(), 16);
            assert!(b[0] & 0x80 == 0 && b[0] & 0x40 != 0);
            assert!(seen.insert(b.to_vec()));
        }
    }

    #[test]
    fn validity_limits() {
        let (nb, na) = CertificateSpec::validity_from_now(365).unwrap();
        assert_eq!(na.duration_since(nb).unwrap().as_secs(), 365 * 86_400);
        assert!(CertificateSpec::validity_from_now(u32::MAX).is_err());
    }
}

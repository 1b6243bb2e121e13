//! PKCS#10 certificate requests (RFC 2986): built through [`X509Signer`], parsed from PEM or
//! DER with bounded input, and verified before anything is taken from them.

use der::{Decode, Encode};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::builder::{Builder, RequestBuilder};
use x509_cert::ext::pkix::name::{DirectoryString, GeneralName};
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAltName};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::request::attributes::ChallengePassword;
use x509_cert::request::{CertReq, ExtensionReq};

use super::{name_to_string, KeyUsageSet};
use crate::error::X509Error;
use crate::keys::{SignatureScheme, X509Signer};

/// The largest request certman reads (a CSR is a few KiB; this bounds hostile input).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// pkcs-9-at-challengePassword (RFC 2985 §5.4.1).
const CHALLENGE_PASSWORD: spki::ObjectIdentifier =
    spki::ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.7");

/// What goes into a request.
#[derive(Clone, Debug)]
pub struct RequestSpec {
    /// subject
    pub subject: Name,
    /// subjectAltName (in the extensionRequest)
    pub subject_alt_names: Vec<GeneralName>,
    /// keyUsage and EKUs asked for (in the extensionRequest)
    pub key_usage: KeyUsageSet,
    /// ask for a CA certificate (basicConstraints cA in the extensionRequest)
    pub ca: bool,
    /// challengePassword attribute
    pub challenge_password: Option<String>,
    /// unstructuredAddress attribute (RouterOS v2.8 asks for it)
    pub unstructured_address: Option<String>,
}

/// pkcs-9-at-unstructuredAddress (RFC 2985 §5.2.4), a request attribute:
///
/// ```text
/// unstructuredAddress ATTRIBUTE ::= {
///         WITH SYNTAX DirectoryString {pkcs-9-ub-unstructuredAddress}
///         EQUALITY MATCHING RULE caseIgnoreMatch
///         ID pkcs-9-at-unstructuredAddress
/// }
/// ```
///
/// [RFC 2985 §5.2.4]: https://www.rfc-editor.org/rfc/rfc2985#section-5.2.4
pub struct UnstructuredAddress(pub DirectoryString);

/// pkcs-9-ub-unstructuredAddress (RFC 2985 appendix A).
const UB_UNSTRUCTURED_ADDRESS: usize = 255;

/// An unstructuredAddress certman puts in a request: at most 255 characters, none a
/// control character.
pub fn check_unstructured_address(addr: &str) -> Result<(), X509Error> {
    if addr.chars().count() > UB_UNSTRUCTURED_ADDRESS || addr.chars().any(char::is_control) {
        return Err(X509Error::Value(format!(
            "an unstructured address is at most {UB_UNSTRUCTURED_ADDRESS} characters, with no \
             control characters"
        )));
    }
    Ok(())
}

impl x509_cert::request::attributes::AsAttribute for UnstructuredAddress {}

impl const_oid::AssociatedOid for UnstructuredAddress {
    const OID: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.8");
}

impl der::Tagged for UnstructuredAddress {
    fn tag(&self) -> der::Tag {
        self.0.tag()
    }
}

impl der::EncodeValue for UnstructuredAddress {
    fn value_len(&self) -> der::Result<der::Length> {
        self.0.value_len()
    }

    fn encode_value(&self, encoder: &mut impl der::Writer) -> der::Result<()> {
        self.0.encode_value(encoder)
    }
}

fn ext<T: Encode + const_oid::AssociatedOid>(
    v: &T,
    critical: bool,
) -> Result<Extension, X509Error> {
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: der::asn1::OctetString::new(v.to_der()?)?,
    })
}

/// Builds and signs a request with `signer`'s key.
pub fn build_request(spec: &RequestSpec, signer: &X509Signer) -> Result<Vec<u8>, X509Error> {
    let mut b =
        RequestBuilder::new(spec.subject.clone()).map_err(|e| X509Error::Builder(e.to_string()))?;
    let builder_err = |e: der::Error| X509Error::Asn1(e);
    if spec.ca {
        b.add_extension(ext(
            &BasicConstraints {
                ca: true,
                path_len_constraint: None,
            },
            true,
        )?)
        .map_err(builder_err)?;
    }
    let flags = spec.key_usage.key_usage_flags();
    if !flags.is_empty() {
        b.add_extension(ext(&KeyUsage(flags), true)?)
            .map_err(builder_err)?;
    }
    let ekus = spec.key_usage.eku_oids();
    if !ekus.is_empty() {
        b.add_extension(ext(&ExtendedKeyUsage(ekus), false)?)
            .map_err(builder_err)?;
    }
    if !spec.subject_alt_names.is_empty() {
        b.add_extension(ext(
            &SubjectAltName(spec.subject_alt_names.clone()),
            spec.subject.is_empty(),
        )?)
        .map_err(builder_err)?;
    }
    if let Some(pw) = &spec.challenge_password {
        b.add_attribute(&ChallengePassword(DirectoryString::Utf8String(pw.clone())))
            .map_err(|e| X509Error::Builder(e.to_string()))?;
    }
    if let Some(addr) = &spec.unstructured_address {
        check_unstructured_address(addr)?;
        b.add_attribute(&UnstructuredAddress(DirectoryString::Utf8String(
            addr.clone(),
        )))
        .map_err(|e| X509Error::Builder(e.to_string()))?;
    }
    let req = b
        .build::<_, crate::keys::signer::X509Signature>(signer)
        .map_err(|e| match e {
            x509_cert::builder::Error::Signature(s) => match signer.take_error() {
                Some(k) => X509Error::Key(k),
                None => X509Error::Builder(format!("signing failed: {s}")),
            },
            other => X509Error::Builder(other.to_string()),
        })?;
    Ok(req.to_der()?)
}

/// What certman takes from a request.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    /// the subject Name
    pub subject: Name,
    /// the subject as text
    pub subject_text: String,
    /// the key to certify
    pub public_key: SubjectPublicKeyInfoOwned,
    /// subjectAltName asked for
    pub subject_alt_names: Vec<GeneralName>,
    /// keyUsage + EKUs asked for
    pub key_usage: KeyUsageSet,
    /// basicConstraints cA asked for
    pub ca: bool,
    /// the challengePassword, if any
    pub challenge_password: Option<String>,
}

/// The request's DER, from PEM (`CERTIFICATE REQUEST`, or the old `NEW CERTIFICATE REQUEST`)
/// or DER input.
pub fn request_der(input: &[u8]) -> Result<Vec<u8>, X509Error> {
    if input.len() > MAX_REQUEST_BYTES {
        return Err(X509Error::Malformed(format!(
            "{} bytes is too large for a certificate request (at most {MAX_REQUEST_BYTES})",
            input.len()
        )));
    }
    if input.starts_with(b"-----BEGIN") || input.trim_ascii_start().starts_with(b"-----BEGIN") {
        let text = std::str::from_utf8(input.trim_ascii())
            .map_err(|_| X509Error::Malformed("PEM that is not text".into()))?;
        let (label, der) = der::pem::decode_vec(text.as_bytes())
            .map_err(|e| X509Error::Malformed(format!("not a PEM certificate request: {e}")))?;
        if label != "CERTIFICATE REQUEST" && label != "NEW CERTIFICATE REQUEST" {
            return Err(X509Error::Malformed(format!(
                "PEM block \"{label}\" is not a certificate request"
            )));
        }
        Ok(der)
    } else {
        Ok(input.to_vec())
    }
}

/// The smallest RSA key a request may carry (RouterOS still makes 1024-bit keys).
pub const MIN_REQUEST_RSA_BITS: u32 = 1024;

/// Parses a request and verifies its self-signature.
pub fn parse_request(input: &[u8]) -> Result<RequestInfo, X509Error> {
    let der = request_der(input)?;
    let req = CertReq::from_der(&der)
        .map_err(|e| X509Error::Malformed(format!("not a PKCS#10 certificate request: {e}")))?;
    let scheme = SignatureScheme::from_algorithm_identifier(&req.algorithm).ok_or_else(|| {
        X509Error::UnsupportedAlgorithm(format!(
            "request signature algorithm {}",
            req.algorithm.oid
        ))
    })?;
    // Say what is wrong with the key itself rather than "the signature does not verify".
    let key = crate::keys::KeyAlgorithm::from_spki(der::referenced::OwnedToRef::owned_to_ref(
        &req.info.public_key,
    ))
    .map_err(|e| {
        X509Error::UnsupportedAlgorithm(format!(
            "the request's key: {}",
            crate::error::key_detail(&e)
        ))
    })?;
    if let crate::keys::KeyAlgorithm::Rsa { bits } = key {
        if bits < MIN_REQUEST_RSA_BITS {
            return Err(X509Error::UnsupportedAlgorithm(format!(
                "the request's RSA key has {bits} bits; at least {MIN_REQUEST_RSA_BITS} are signed"
            )));
        }
    }
    crate::keys::verify::check_public_key(&req.info.public_key).map_err(|e| {
        X509Error::Malformed(format!(
            "the request's key: {}",
            crate::error::key_detail(&e)
        ))
    })?;
    let info_der = req.info.to_der()?;
    crate::keys::verify::verify_signature(
        &req.info.public_key,
        scheme,
        &info_der,
        req.signature.raw_bytes(),
    )
    .map_err(|e| super::signature_failure(e, "the request's signature"))?;
    let mut out = RequestInfo {
        subject_text: name_to_string(&req.info.subject),
        subject: req.info.subject.clone(),
        public_key: req.info.public_key.clone(),
        subject_alt_names: Vec::new(),
        key_usage: KeyUsageSet::default(),
        ca: false,
        challenge_password: None,
    };
    let mut flags = der::flagset::FlagSet::default();
    let mut ekus = Vec::new();
    for attr in req.info.attributes.iter() {
        if attr.oid == <ExtensionReq as const_oid::AssociatedOid>::OID {
            for v in attr.values.iter() {
                let exts: ExtensionReq = v.decode_as()?;
                for e in exts.0 {
                    let bytes = e.extn_value.as_bytes();
                    match e.extn_id {
                        id if id == <SubjectAltName as const_oid::AssociatedOid>::OID => {
                            out.subject_alt_names = SubjectAltName::from_der(bytes)?.0
                        }
                        id if id == <KeyUsage as const_oid::AssociatedOid>::OID => {
                            flags = KeyUsage::from_der(bytes)?.0
                        }
                        id if id == <ExtendedKeyUsage as const_oid::AssociatedOid>::OID => {
                            ekus = ExtendedKeyUsage::from_der(bytes)?.0
                        }
                        id if id == <BasicConstraints as const_oid::AssociatedOid>::OID => {
                            out.ca = BasicConstraints::from_der(bytes)?.ca
                        }
                        _ => {}
                    }
                }
            }
        } else if attr.oid == CHALLENGE_PASSWORD {
            out.challenge_password = attr
                .values
                .iter()
                .next()
                .and_then(|v| std::str::from_utf8(v.value()).ok().map(str::to_owned));
        }
    }
    out.key_usage = KeyUsageSet::from_extensions(flags, &ekus);
    Ok(out)
}

/// PEM `CERTIFICATE REQUEST`.
pub fn request_pem(der: &[u8]) -> Result<String, X509Error> {
    der::pem::encode_string("CERTIFICATE REQUEST", der::pem::LineEnding::LF, der)
        .map_err(|e| X509Error::Malformed(format!("PEM encoding: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::soft::SoftProvider;
    use crate::keys::{EcCurve, GenerateRequest, KeyAlgorithm, KeyHandle, KeyProvider};
    use crate::seal::Sealer;

    #[test]
    fn requests_round_trip_and_tampering_is_caught() {
        let p = SoftProvider::new(std::sync::Arc::new(
            Sealer::new(b"csr-test-machine-id-0123456789ab", b"s").unwrap(),
        ));
        let g = p
            .generate(&GenerateRequest {
                algorithm: KeyAlgorithm::Ec(EcCurve::P256),
                label: String::new(),
                location: None,
            })
            .unwrap();
        let signer = p
            .signer(&KeyHandle {
                uri: g.uri,
                sealed: g.sealed,
            })
            .unwrap();
        let x = X509Signer::new(
            signer,
            KeyAlgorithm::Ec(EcCurve::P256)
                .signature_scheme(None)
                .unwrap(),
        )
        .unwrap();
        let spec = RequestSpec {
            subject: super::super::SubjectFields {
                common_name: Some("req.example".into()),
                country: Some("LV".into()),
                ..Default::default()
            }
            .to_name()
            .unwrap(),
            subject_alt_names: super::super::parse_subject_alt_names(
                "DNS:req.example,IP:192.0.2.7",
            )
            .unwrap(),
            key_usage: "digital-signature,tls-server".parse().unwrap(),
            ca: false,
            challenge_password: Some("otp-1234".into()),
            unstructured_address: Some("Brivibas iela 1, Riga".into()),
        };
        let der = build_request(&spec, &x).unwrap();
        let pem = request_pem(&der).unwrap();
        let info = parse_request(pem.as_bytes()).unwrap();
        assert_eq!(info.subject_text, "C=LV,CN=req.example");
        assert_eq!(info.public_key, g.public_key);
        assert_eq!(
            super::super::general_names_to_string(&info.subject_alt_names),
            "DNS:req.example,IP:192.0.2.7"
        );
        assert_eq!(info.key_usage.to_string(), "digital-signature,tls-server");
        assert_eq!(info.challenge_password.as_deref(), Some("otp-1234"));
        assert!(!info.ca);
        // one flipped bit in the signed part: refused
        let mut bad = der.clone();
        let i = bad.len() / 2;
        bad[i] ^= 1;
        assert!(parse_request(&bad).is_err());
        assert!(parse_request(b"garbage").is_err());
        assert!(parse_request(&vec![0u8; MAX_REQUEST_BYTES + 1]).is_err());
        assert!(
            parse_request(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_err()
        );
    }
}

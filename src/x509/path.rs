//! Certification path validation (`certman verify`).
//!
//! rustls-webpki builds the chain from the store's trust anchors and checks signatures,
//! validity, basic constraints, extended key usage and name constraints. On every candidate path
//! webpki builds, this module then checks what webpki leaves out — the keyUsage extension of the
//! path, the trust anchor's own validity and, with crl-use=yes, revocation — and rejects the path
//! if one fails (webpki then tries the next candidate). It reports each certificate of the chain
//! with its revocation status, the one that decided, for `certman verify` to print.
//!
//! Revocation is certman's own, not webpki's: webpki takes the first CRL whose issuer *name*
//! matches, so a second CA with the same name and a newer CRL would make every certificate of
//! the first fail. With crl-use=yes, for each certificate of the path below the trust anchor:
//! - its CRLs are those naming its issuer whose signature verifies with the key of the issuer
//!   in that path (keyUsage, if present, allowing cRLSign) and whose scope (issuing distribution
//!   point) covers it; CRLs of another certificate with the same name are not its issuer's;
//! - listed on any of them, expired or not: revoked. A revocation is final (otherwise holding
//!   back newer CRLs would un-revoke it); only a certificateHold that a newer CRL no longer
//!   lists is released;
//! - not listed: the newest (cRLNumber, then thisUpdate) decides: current → good; past its
//!   nextUpdate, or no CRL at all → status unknown, and the path fails (RouterOS-like strictness
//!   for crl-use=yes; CRL distribution points are plain http, so an attacker can hold them back).
//!
//! The trust anchor needs no CRL. A trusted certificate verified itself is checked against its
//! issuer's CRLs when that issuer (by name and signature) is among the certificates, unless it
//! is self-issued.
//!
//! Pure: no store and no file I/O; the manager hands in the certificates and CRLs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use const_oid::AssociatedOid;
use der::flagset::FlagSet;
use der::{Decode, Encode, Reader, SliceReader};
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use spki::ObjectIdentifier;
use webpki::{
    EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeIdIter, OwnedCertRevocationList,
    VerifiedPath,
};
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    CrlDistributionPoints, CrlNumber, CrlReason, ExtendedKeyUsage, IssuingDistributionPoint,
    KeyUsage, KeyUsages,
};
use x509_cert::Certificate;

use super::CertificateInfo;
use crate::error::X509Error;
use crate::keys::verify::verify_signature;
use crate::keys::{KeyAlgorithm, SignatureScheme};

/// What the certificate is to be valid for (`purpose=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Purpose {
    /// serverAuth (id-kp 1): an EKU extension, if present, must list it
    TlsServer,
    /// clientAuth (id-kp 2): an EKU extension, if present, must list it
    TlsClient,
    /// no extended key usage required; any EKU extension is accepted
    #[default]
    Any,
}

impl Purpose {
    /// The RouterOS-style name.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::TlsServer => "tls-server",
            Purpose::TlsClient => "tls-client",
            Purpose::Any => "any",
        }
    }

    fn eku_oid(self) -> Option<ObjectIdentifier> {
        match self {
            Purpose::TlsServer => Some(const_oid::db::rfc5280::ID_KP_SERVER_AUTH),
            Purpose::TlsClient => Some(const_oid::db::rfc5280::ID_KP_CLIENT_AUTH),
            Purpose::Any => None,
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Purpose {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tls-server" => Ok(Purpose::TlsServer),
            "tls-client" => Ok(Purpose::TlsClient),
            "any" => Ok(Purpose::Any),
            _ => Err(format!(
                "unknown purpose '{s}': use tls-server, tls-client or any"
            )),
        }
    }
}

/// One certificate of certman's store, as path validation sees it.
#[derive(Clone, Copy, Debug)]
pub struct StoreCert<'a> {
    /// its name in the store
    pub name: &'a str,
    /// the certificate, DER
    pub der: &'a [u8],
    /// `trusted=yes`: a trust anchor
    pub trusted: bool,
}

/// What to validate, and against what.
#[derive(Clone, Copy, Debug)]
pub struct PathInput<'a> {
    /// DER of the certificate to verify (the first certificate of FILE)
    pub target: &'a [u8],
    /// further certificates found in FILE: untrusted intermediates
    pub extra: &'a [Vec<u8>],
    /// every certificate in the store: trusted ones are the anchors, the others may serve as
    /// intermediates
    pub store: &'a [StoreCert<'a>],
    /// `None` = crl-use=no (no revocation checking); `Some` = every CRL certman holds, DER
    pub crls: Option<&'a [Vec<u8>]>,
    /// what the certificate must be valid for
    pub purpose: Purpose,
    /// the time of validation
    pub now: SystemTime,
}

/// A CRL, as the report names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlRef {
    /// the cRLNumber extension, decimal (hex with `0x` when longer than 128 bits)
    pub number: Option<String>,
    /// thisUpdate
    pub this_update: SystemTime,
    /// nextUpdate
    pub next_update: Option<SystemTime>,
}

/// The revocation status of one certificate of the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revocation {
    /// crl-use=no: CRLs are not consulted
    NotChecked,
    /// a trust anchor: trusted by configuration, its revocation is not checked (RFC 5280 §6.1)
    TrustAnchor,
    /// no issuer was found, so there is no CRL to consult (a certificate trusted directly:
    /// valid, its revocation could not be checked)
    IssuerUnknown,
    /// no usable CRL from its issuer: status unknown (with crl-use=yes a failure)
    NoCrl,
    /// not listed on its issuer's CRLs, and the newest of them is current
    Good {
        /// the CRL consulted (the newest)
        crl: CrlRef,
    },
    /// listed on a CRL of its issuer, current or expired (a revocation is final)
    Revoked {
        /// the newest CRL that lists it
        crl: CrlRef,
        /// revocationDate
        at: SystemTime,
        /// the reasonCode entry extension, RouterOS-style (`key-compromise`, …)
        reason: Option<String>,
    },
    /// not listed, but its issuer's newest CRL has passed its nextUpdate: status unknown (with
    /// crl-use=yes a failure)
    CrlExpired {
        /// the newest expired CRL
        crl: CrlRef,
    },
}

/// A CRL of the certificate's issuer (by name; not one of another certificate with that name)
/// that was left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IgnoredCrl {
    /// the CRL
    pub crl: CrlRef,
    /// why it was not used (`signature does not verify`, …)
    pub why: String,
}

/// One certificate of the chain, as `certman verify` prints it.
#[derive(Clone, Debug)]
pub struct ChainCert {
    /// the store name, if this exact certificate (byte for byte) is in the store
    pub store_name: Option<String>,
    /// subject as text
    pub subject: String,
    /// issuer as text
    pub issuer: String,
    /// serial number, upper-case hex
    pub serial_hex: String,
    /// SHA-256 of the DER, lower-case hex
    pub fingerprint: String,
    /// notBefore
    pub not_before: SystemTime,
    /// notAfter
    pub not_after: SystemTime,
    /// the trust anchor the chain ends at
    pub trust_anchor: bool,
    /// revocation status
    pub revocation: Revocation,
    /// CRLs from its issuer that were not used
    pub ignored_crls: Vec<IgnoredCrl>,
}

/// Why a certificate is not valid, by category (for exit codes and tests; the text says more).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// a certificate of the chain (or the anchor) has expired
    Expired,
    /// a certificate of the chain (or the anchor) is not valid yet
    NotYetValid,
    /// no chain to a trusted certificate of the store
    UnknownIssuer,
    /// a certificate of the chain is on its issuer's CRL
    Revoked,
    /// crl-use=yes, and the issuer of a certificate of the chain has no current CRL (none is
    /// held, or the newest has expired): its revocation status is unknown
    RevocationUnknown,
    /// the extended key usage does not allow the purpose
    Purpose,
    /// basic constraints: an issuer is not a CA, the target is a CA, or a path length is exceeded
    BasicConstraints,
    /// the keyUsage extension of an issuer or of the certificate does not allow its use
    KeyUsage,
    /// a signature does not verify, or uses an algorithm that is not accepted
    Signature,
    /// an issuer's RSA key is shorter than 2048 bits
    WeakKey,
    /// a CA's name constraints exclude the certificate
    NameConstraints,
    /// a certificate cannot be parsed or uses an unsupported feature
    Malformed,
    /// anything else webpki refuses
    Other,
}

/// The outcome of path validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// a chain to a trust anchor passed every check
    Valid,
    /// no chain passed
    Invalid {
        /// the category
        kind: Failure,
        /// one line for a human
        reason: String,
    },
}

/// The chain (from the file's certificate up to the anchor) and the verdict.
#[derive(Clone, Debug)]
pub struct PathReport {
    /// position 0 is the certificate verified; the last one is the trust anchor when a chain
    /// was built. When none could be, the certificates that chain by name and signature (at
    /// least the target, unless it does not parse).
    pub chain: Vec<ChainCert>,
    /// the verdict
    pub verdict: Verdict,
}

impl PathReport {
    /// Whether the verdict is `Valid`.
    pub fn is_valid(&self) -> bool {
        self.verdict == Verdict::Valid
    }
}

/// Reads the certificates of FILE: PEM with any number of `CERTIFICATE` blocks (other blocks
/// are ignored), or one DER certificate.
pub fn read_certificates(bytes: &[u8]) -> Result<Vec<Vec<u8>>, X509Error> {
    let max = super::import::MAX_IMPORT_BYTES;
    if bytes.len() > max {
        return Err(X509Error::Invalid(format!(
            "{} bytes is larger than the {max} a certificate file may have",
            bytes.len()
        )));
    }
    if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return read_pem_certificates(bytes);
    }
    match Certificate::from_der(bytes) {
        Ok(_) => Ok(vec![bytes.to_vec()]),
        Err(e) => Err(X509Error::Invalid(format!(
            "not a certificate file: neither PEM nor a DER certificate ({e})"
        ))),
    }
}

fn read_pem_certificates(bytes: &[u8]) -> Result<Vec<Vec<u8>>, X509Error> {
    let text = String::from_utf8_lossy(bytes);
    let mut rest: &str = &text;
    let mut out = Vec::new();
    while let Some(start) = rest.find("-----BEGIN ") {
        let block = &rest[start..];
        let label_end = block[11..]
            .find("-----")
            .ok_or_else(|| X509Error::Invalid("a PEM header is cut off".into()))?;
        let label = &block[11..11 + label_end];
        let end_marker = format!("-----END {label}-----");
        let end = block.find(&end_marker).ok_or_else(|| {
            X509Error::Invalid(format!("PEM block \"{label}\" has no end (truncated?)"))
        })?;
        let whole = &block[..end + end_marker.len()];
        rest = &block[end + end_marker.len()..];
        if !matches!(
            label,
            "CERTIFICATE" | "X509 CERTIFICATE" | "TRUSTED CERTIFICATE"
        ) {
            continue;
        }
        let (_, der) = der::pem::decode_vec(whole.as_bytes())
            .map_err(|e| X509Error::Invalid(format!("PEM block \"{label}\": {e}")))?;
        // OpenSSL's TRUSTED CERTIFICATE is the certificate followed by its trust settings.
        let cert = first_tlv(&der)
            .map_err(|e| X509Error::Invalid(format!("PEM block \"{label}\": {e}")))?
            .to_vec();
        Certificate::from_der(&cert).map_err(|e| {
            X509Error::Invalid(format!("PEM block \"{label}\" is not a certificate: {e}"))
        })?;
        out.push(cert);
    }
    if out.is_empty() {
        return Err(X509Error::Invalid(
            "no CERTIFICATE block in the PEM file".into(),
        ));
    }
    Ok(out)
}

/// The first complete TLV of `der`.
fn first_tlv(der: &[u8]) -> Result<&[u8], der::Error> {
    SliceReader::new(der)?.tlv_bytes()
}

/// Validates `input.target`. Never fails: a certificate that cannot be processed is an
/// `Invalid` verdict.
pub fn validate(input: &PathInput<'_>) -> PathReport {
    let target = match Node::parse(input.target) {
        Ok(n) => n,
        Err(e) => {
            return PathReport {
                chain: Vec::new(),
                verdict: Verdict::Invalid {
                    kind: Failure::Malformed,
                    reason: format!("the certificate cannot be parsed: {e}"),
                },
            }
        }
    };
    let engine = Engine::new(input, target);
    engine.run()
}

/// A certificate of the candidate pool: the target, FILE's extras, the store.
struct Node<'a> {
    der: &'a [u8],
    info: CertificateInfo,
    subject_der: Vec<u8>,
    issuer_der: Vec<u8>,
    serial: Vec<u8>,
    tbs: &'a [u8],
    scheme: Option<SignatureScheme>,
    signature: Vec<u8>,
    key_usage: Option<FlagSet<KeyUsages>>,
    eku: Option<Vec<ObjectIdentifier>>,
    /// the URIs of its CRL distribution points that a CRL's issuing distribution point may
    /// match (full names, no cRLIssuer, no reasons); `None` without the extension
    cdp_uris: Option<Vec<String>>,
    store_name: Option<&'a str>,
    trusted: bool,
}

impl<'a> Node<'a> {
    fn parse(der: &'a [u8]) -> Result<Self, X509Error> {
        let info = super::inspect_certificate(der)?;
        let cert = Certificate::from_der(der)?;
        let tbs = cert.tbs_certificate();
        let mut key_usage = None;
        let mut eku = None;
        let mut cdp_uris = None;
        for e in tbs.extensions().map(|e| e.as_slice()).unwrap_or(&[]) {
            let v = e.extn_value.as_bytes();
            if e.extn_id == KeyUsage::OID {
                key_usage = Some(KeyUsage::from_der(v)?.0);
            } else if e.extn_id == ExtendedKeyUsage::OID {
                eku = Some(ExtendedKeyUsage::from_der(v)?.0);
            } else if e.extn_id == CrlDistributionPoints::OID {
                // Unreadable: no URI a scoped CRL could match (an unscoped one still covers it).
                let dps = CrlDistributionPoints::from_der(v)
                    .map(|d| d.0)
                    .unwrap_or_default();
                let uris = dps
                    .iter()
                    .filter(|dp| dp.crl_issuer.is_none() && dp.reasons.is_none())
                    .filter_map(|dp| match &dp.distribution_point {
                        Some(DistributionPointName::FullName(names)) => Some(uri_names(names)),
                        _ => None,
                    })
                    .flatten()
                    .collect();
                cdp_uris = Some(uris);
            }
        }
        Ok(Node {
            der,
            subject_der: tbs.subject().to_der()?,
            issuer_der: tbs.issuer().to_der()?,
            serial: tbs.serial_number().as_bytes().to_vec(),
            tbs: super::signed_part(der)?,
            scheme: SignatureScheme::from_algorithm_identifier(cert.signature_algorithm()),
            signature: cert.signature().raw_bytes().to_vec(),
            key_usage,
            eku,
            cdp_uris,
            info,
            store_name: None,
            trusted: false,
        })
    }

    /// Whether `issuer`'s key verifies this certificate's signature (with certman's own
    /// verifier, which also takes the short RSA keys webpki refuses).
    fn signed_by(&self, issuer: &Node<'_>) -> bool {
        self.scheme.is_some_and(|s| {
            verify_signature(&issuer.info.public_key, s, self.tbs, &self.signature).is_ok()
        })
    }

    /// Subject and issuer are the same name (a self-signed root, or a CA's key rollover).
    fn self_issued(&self) -> bool {
        self.subject_der == self.issuer_der
    }

    fn may_sign_crls(&self) -> bool {
        self.key_usage
            .is_none_or(|ku| ku.contains(KeyUsages::CRLSign))
    }

    fn short_rsa_bits(&self) -> Option<u32> {
        match self.info.key_algorithm {
            Some(KeyAlgorithm::Rsa { bits }) if bits < 2048 => Some(bits),
            _ => None,
        }
    }
}

/// A CRL certman holds.
struct Crl<'a> {
    list: CertificateList,
    issuer_der: Vec<u8>,
    tbs: &'a [u8],
    scheme: Option<SignatureScheme>,
    /// cRLNumber, big-endian without leading zeros
    number: Option<Vec<u8>>,
    this_update: SystemTime,
    next_update: Option<SystemTime>,
    /// the issuingDistributionPoint extension: which certificates it covers (`None`: all)
    scope: Option<CrlScope>,
    /// whether webpki's CRL parser accepts it: a check that it is a complete CRL certman can
    /// use (it refuses v1 CRLs, CRLs without nextUpdate, delta and indirect CRLs, CRLs by
    /// reason, unknown critical extensions, …)
    supported: Result<(), webpki::Error>,
}

/// A CRL's issuingDistributionPoint, as far as it limits which certificates the CRL covers.
struct CrlScope {
    only_user_certs: bool,
    only_ca_certs: bool,
    /// the URIs of its full name; `None` without one
    uris: Option<Vec<String>>,
}

/// The URIs among general names.
fn uri_names(names: &[GeneralName]) -> Vec<String> {
    names
        .iter()
        .filter_map(|n| match n {
            GeneralName::UniformResourceIdentifier(u) => Some(u.to_string()),
            _ => None,
        })
        .collect()
}

impl<'a> Crl<'a> {
    fn parse(der: &'a [u8]) -> Option<Self> {
        let list: CertificateList = CertificateList::from_der(der).ok()?;
        let tbs = &list.tbs_cert_list;
        let number = tbs
            .crl_extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id == CrlNumber::OID)
            .and_then(|e| CrlNumber::from_der(e.extn_value.as_bytes()).ok())
            .map(|n| {
                let b = n.0.as_bytes();
                let skip = b.iter().take_while(|&&x| x == 0).count();
                b[skip..].to_vec()
            });
        // x509-cert 0.3.0 gives IssuingDistributionPoint a wrong OID: the RFC 5280 one here.
        let idp = tbs
            .crl_extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_ISSUING_DISTRIBUTION_POINT)
            .map(|e| IssuingDistributionPoint::from_der(e.extn_value.as_bytes()));
        let mut supported = OwnedCertRevocationList::from_der(der).map(|_| ());
        let scope = match idp {
            None => None,
            Some(Ok(idp)) => Some(CrlScope {
                only_user_certs: idp.only_contains_user_certs,
                only_ca_certs: idp.only_contains_ca_certs,
                uris: match &idp.distribution_point {
                    Some(DistributionPointName::FullName(names)) => Some(uri_names(names)),
                    _ => None,
                },
            }),
            Some(Err(_)) => {
                supported = supported.and(Err(webpki::Error::MalformedExtensions));
                None
            }
        };
        Some(Crl {
            issuer_der: tbs.issuer.to_der().ok()?,
            tbs: super::signed_part(der).ok()?,
            scheme: SignatureScheme::from_algorithm_identifier(&list.signature_algorithm),
            number,
            this_update: tbs.this_update.to_system_time(),
            next_update: tbs.next_update.map(|t| t.to_system_time()),
            scope,
            supported,
            list,
        })
    }

    fn signed_by(&self, issuer: &Node<'_>) -> bool {
        let Some(sig) = self.list.signature.as_bytes() else {
            return false;
        };
        self.scheme
            .is_some_and(|s| verify_signature(&issuer.info.public_key, s, self.tbs, sig).is_ok())
    }

    /// Why the CRL does not cover `cert`, if its issuing distribution point limits its scope
    /// (RFC 5280 §5.2.5, as webpki reads it: with distribution points in both, one URI must
    /// match).
    fn out_of_scope(&self, cert: &Node<'_>) -> Option<&'static str> {
        let scope = self.scope.as_ref()?;
        if scope.only_ca_certs && !cert.info.is_ca {
            return Some("its scope is CA certificates only");
        }
        if scope.only_user_certs && cert.info.is_ca {
            return Some("its scope is end-entity certificates only");
        }
        let cert_uris = cert.cdp_uris.as_ref()?;
        let matches = scope
            .uris
            .as_ref()
            .is_some_and(|uris| cert_uris.iter().any(|u| uris.contains(u)));
        (!matches).then_some("its scope (distribution point) is not one of the certificate's")
    }

    /// Past its nextUpdate (webpki's rule: expired from nextUpdate on).
    fn expired(&self, now: SystemTime) -> bool {
        self.next_update
            .is_some_and(|n| unix(now).as_secs() >= unix(n).as_secs())
    }

    /// Newer CRLs sort higher: by cRLNumber, then thisUpdate.
    fn order_key(&self) -> (Option<(usize, &[u8])>, SystemTime) {
        (
            self.number.as_deref().map(|n| (n.len(), n)),
            self.this_update,
        )
    }

    fn crl_ref(&self) -> CrlRef {
        CrlRef {
            number: self.number.as_deref().map(number_text),
            this_update: self.this_update,
            next_update: self.next_update,
        }
    }

    /// The entry for `serial`: its revocationDate and reasonCode.
    fn entry(&self, serial: &[u8]) -> Option<(SystemTime, Option<String>)> {
        let entries = self.list.tbs_cert_list.revoked_certificates.as_ref()?;
        let e = entries
            .iter()
            .find(|e| e.serial_number.as_bytes() == serial)?;
        let reason = e
            .crl_entry_extensions
            .iter()
            .flatten()
            .find(|x| x.extn_id == CrlReason::OID)
            .and_then(|x| CrlReason::from_der(x.extn_value.as_bytes()).ok())
            .map(|r| super::crl::reason_name(r).to_owned());
        Some((e.revocation_date.to_system_time(), reason))
    }
}

fn number_text(n: &[u8]) -> String {
    if n.len() <= 16 {
        let mut v: u128 = 0;
        for b in n {
            v = (v << 8) | u128::from(*b);
        }
        v.to_string()
    } else {
        format!("0x{}", hex::encode_upper(n))
    }
}

fn unix(t: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO),
    )
}

type Fail = (Failure, String);

/// The purpose as webpki's EKU policy. `Any` accepts every EKU extension (webpki 0.103's
/// `ExtendedKeyUsageValidator` lets the caller decide); the TLS purposes are webpki's own
/// `KeyUsage::server_auth()` / `client_auth()`: required if the extension is present.
struct PurposeEku(Purpose);

impl ExtendedKeyUsageValidator for PurposeEku {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        match self.0 {
            Purpose::TlsServer => webpki::KeyUsage::server_auth().validate(iter),
            Purpose::TlsClient => webpki::KeyUsage::client_auth().validate(iter),
            Purpose::Any => {
                for id in iter {
                    id?;
                }
                Ok(())
            }
        }
    }
}

struct Engine<'a> {
    /// index 0 is the target
    nodes: Vec<Node<'a>>,
    crls: Option<Vec<Crl<'a>>>,
    purpose: Purpose,
    now: SystemTime,
    /// whether CRL k's signature verifies with node i's key, by (k, i)
    crl_signatures: RefCell<HashMap<(usize, usize), bool>>,
}

/// A failure of certman's checks on a candidate path, and that path (target … anchor).
type PathFail = (Fail, Vec<usize>);

impl<'a> Engine<'a> {
    fn new(input: &PathInput<'a>, mut target: Node<'a>) -> Self {
        if let Some(s) = input.store.iter().find(|s| s.der == input.target) {
            target.store_name = Some(s.name);
            target.trusted = s.trusted;
        }
        let mut nodes = vec![target];
        for der in input.extra {
            if nodes.iter().any(|n| n.der == der.as_slice()) {
                continue;
            }
            if let Ok(n) = Node::parse(der) {
                nodes.push(n);
            }
        }
        for s in input.store {
            if let Some(n) = nodes.iter_mut().find(|n| n.der == s.der) {
                n.store_name = n.store_name.or(Some(s.name));
                n.trusted |= s.trusted;
                continue;
            }
            // A store certificate certman cannot read cannot be part of a chain either.
            if let Ok(mut n) = Node::parse(s.der) {
                n.store_name = Some(s.name);
                n.trusted = s.trusted;
                nodes.push(n);
            }
        }
        let crls = input
            .crls
            .map(|list| list.iter().filter_map(|d| Crl::parse(d)).collect());
        Engine {
            nodes,
            crls,
            purpose: input.purpose,
            now: input.now,
            crl_signatures: RefCell::new(HashMap::new()),
        }
    }

    fn run(&self) -> PathReport {
        if self.nodes[0].trusted {
            return self.trusted_target();
        }
        let (result, own) = self.webpki_path();
        match (result, own) {
            (Ok(chain), _) => PathReport {
                chain: self.report_chain(&chain, true),
                verdict: Verdict::Valid,
            },
            // A chain that reached an anchor and failed only certman's checks: that chain, with
            // the statuses that failed it.
            (Err(_), Some(((kind, reason), chain))) => PathReport {
                chain: self.report_chain(&chain, true),
                verdict: Verdict::Invalid { kind, reason },
            },
            (Err(err), None) => {
                // For the printout: what chains by name and signature.
                let chain = self.best_effort_chain();
                let anchored =
                    chain.len() > 1 && chain.last().is_some_and(|&i| self.nodes[i].trusted);
                let (kind, reason) = self.explain(&err, &chain);
                PathReport {
                    chain: self.report_chain(&chain, anchored),
                    verdict: Verdict::Invalid { kind, reason },
                }
            }
        }
    }

    /// A trusted certificate is its own anchor: webpki does not validate an anchor as an end
    /// entity, and there is no path above it to check. Its validity counts, and with crl-use=yes
    /// its issuer's CRLs when it is not self-issued and its issuer is among the certificates.
    fn trusted_target(&self) -> PathReport {
        let mut chain = self.report_chain(&[0], true);
        let mut failure = self.validity(0);
        if self.crls.is_some() && !self.nodes[0].self_issued() {
            let issuer = self.issuer_of_target();
            let (status, ignored) = self.revocation(0, issuer);
            if let Some(issuer) = issuer {
                failure =
                    failure.or_else(|| self.revocation_failure(&[0, issuer], 0, &status, &ignored));
            }
            chain[0].revocation = status;
            chain[0].ignored_crls = ignored;
        }
        PathReport {
            chain,
            verdict: match failure {
                Some((kind, reason)) => Verdict::Invalid { kind, reason },
                None => Verdict::Valid,
            },
        }
    }

    /// The target's issuer among the other certificates: its subject is the target's issuer
    /// and its key verifies the target's signature (one whose key usage allows cRLSign first).
    fn issuer_of_target(&self) -> Option<usize> {
        let target = &self.nodes[0];
        let candidates: Vec<usize> = (1..self.nodes.len())
            .filter(|&i| {
                let n = &self.nodes[i];
                n.subject_der == target.issuer_der && target.signed_by(n)
            })
            .collect();
        candidates
            .iter()
            .copied()
            .find(|&i| self.nodes[i].may_sign_crls())
            .or(candidates.first().copied())
    }

    /// Runs webpki; returns the node indices of the chain (target … anchor), or webpki's error
    /// and the failure of certman's own checks on a candidate path webpki had accepted (a
    /// revocation before anything else, else the first), with that path.
    fn webpki_path(&self) -> (Result<Vec<usize>, webpki::Error>, Option<PathFail>) {
        let target_der = CertificateDer::from(self.nodes[0].der);
        let ee = match EndEntityCert::try_from(&target_der) {
            Ok(ee) => ee,
            Err(e) => return (Err(e), None),
        };
        let anchor_ders: Vec<(usize, CertificateDer<'_>)> = self
            .nodes
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, n)| n.trusted)
            .map(|(i, n)| (i, CertificateDer::from(n.der)))
            .collect();
        let mut anchors: Vec<TrustAnchor<'_>> = Vec::new();
        let mut anchor_nodes = Vec::new();
        for (i, der) in &anchor_ders {
            if let Ok(a) = webpki::anchor_from_trusted_cert(der) {
                anchors.push(a);
                anchor_nodes.push(*i);
            }
        }
        let intermediates: Vec<CertificateDer<'_>> = self
            .nodes
            .iter()
            .skip(1)
            .filter(|n| !n.trusted)
            .map(|n| CertificateDer::from(n.der))
            .collect();

        let own_failure: RefCell<Option<PathFail>> = RefCell::new(None);
        let path_nodes = |path: &VerifiedPath<'_>| -> Vec<usize> {
            let mut chain = vec![0];
            for c in path.intermediate_certificates() {
                let der = c.der();
                if let Some(i) = self.nodes.iter().position(|n| n.der == der.as_ref()) {
                    chain.push(i);
                }
            }
            let anchor = path.anchor();
            if let Some(k) = anchors.iter().position(|a| std::ptr::addr_eq(a, anchor)) {
                chain.push(anchor_nodes[k]);
            }
            chain
        };
        let own_checks = |path: &VerifiedPath<'_>| -> Result<(), webpki::Error> {
            let chain = path_nodes(path);
            match self.own_checks(&chain) {
                Ok(()) => Ok(()),
                Err(f) => {
                    let mut kept = own_failure.borrow_mut();
                    let replace = match &*kept {
                        None => true,
                        Some(((kind, _), _)) => {
                            f.0 == Failure::Revoked && *kind != Failure::Revoked
                        }
                    };
                    if replace {
                        *kept = Some((f, chain));
                    }
                    // The least specific error: webpki goes on with other candidate paths and,
                    // if all fail, this one only surfaces when nothing more specific did.
                    Err(webpki::Error::UnknownIssuer)
                }
            }
        };
        // No revocation options: certman checks revocation itself, in `own_checks`.
        let result = ee
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                &intermediates,
                unix(self.now),
                PurposeEku(self.purpose),
                None,
                Some(&own_checks),
            )
            .map(|p| path_nodes(&p));
        let own = own_failure.borrow_mut().take();
        match result {
            Ok(chain) => (Ok(chain), None),
            Err(e) => (Err(e), own),
        }
    }

    /// certman's checks on a chain webpki accepted (target … anchor): revocation of every
    /// certificate below the anchor (with crl-use=yes), the anchor's validity, keyCertSign of
    /// every issuer with a keyUsage extension, the target's keyUsage for TLS. A revocation
    /// counts first; an unknown revocation status last.
    fn own_checks(&self, chain: &[usize]) -> Result<(), Fail> {
        let statuses: Vec<(Revocation, Vec<IgnoredCrl>)> = match &self.crls {
            Some(_) => (0..chain.len().saturating_sub(1))
                .map(|pos| self.revocation(chain[pos], Some(chain[pos + 1])))
                .collect(),
            None => Vec::new(),
        };
        let revocation_failure = |revoked: bool| {
            statuses
                .iter()
                .enumerate()
                .find_map(|(pos, (status, ignored))| {
                    if matches!(status, Revocation::Revoked { .. }) != revoked {
                        return None;
                    }
                    self.revocation_failure(chain, pos, status, ignored)
                })
        };
        if let Some(f) = revocation_failure(true) {
            return Err(f);
        }
        if let Some(&anchor) = chain.last().filter(|_| chain.len() > 1) {
            if let Some((kind, reason)) = self.validity(anchor) {
                return Err((kind, format!("trust anchor {reason}")));
            }
        }
        for &i in chain.iter().skip(1) {
            let n = &self.nodes[i];
            if n.key_usage
                .is_some_and(|ku| !ku.contains(KeyUsages::KeyCertSign))
            {
                return Err((
                    Failure::KeyUsage,
                    format!("issuer's key usage lacks keyCertSign: {}", n.info.subject),
                ));
            }
        }
        self.leaf_key_usage(&self.nodes[chain[0]])?;
        match revocation_failure(false) {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// The failure a revocation status means for `chain[pos]` (issued by `chain[pos + 1]`):
    /// revoked, or status unknown (no usable CRL, or the newest has expired).
    fn revocation_failure(
        &self,
        chain: &[usize],
        pos: usize,
        status: &Revocation,
        ignored: &[IgnoredCrl],
    ) -> Option<Fail> {
        let cert = &self.nodes[chain[pos]];
        let issuer = &self.nodes[*chain.get(pos + 1)?].info.subject;
        match status {
            Revocation::Revoked { at, reason, .. } => {
                let why = reason
                    .as_deref()
                    .map(|w| format!(" ({w})"))
                    .unwrap_or_default();
                let what = if pos == 0 {
                    "certificate".to_owned()
                } else {
                    format!("CA certificate {}", cert.info.subject)
                };
                Some((
                    Failure::Revoked,
                    format!("{what} revoked at {}{why}", super::routeros_time(*at)),
                ))
            }
            Revocation::CrlExpired { crl } => Some((
                Failure::RevocationUnknown,
                format!(
                    "revocation status unknown: the CRL of {issuer} expired at {}",
                    crl.next_update
                        .map(super::routeros_time)
                        .unwrap_or_default()
                ),
            )),
            Revocation::NoCrl if ignored.is_empty() => Some((
                Failure::RevocationUnknown,
                format!("revocation status unknown: no CRL of {issuer} is held (crl-use=yes)"),
            )),
            Revocation::NoCrl => {
                let whys: Vec<&str> = ignored.iter().map(|i| i.why.as_str()).collect();
                Some((
                    Failure::RevocationUnknown,
                    format!(
                        "revocation status unknown: no usable CRL of {issuer} is held \
                         (crl-use=yes; ignored: {})",
                        whys.join("; ")
                    ),
                ))
            }
            _ => None,
        }
    }

    /// RFC 5280 §4.2.1.3 for the TLS purposes: the key signs (digitalSignature), or, for a
    /// server, an RSA key is used for key transport (keyEncipherment); an EC key may do
    /// static ECDH (keyAgreement) for either side.
    fn leaf_key_usage(&self, leaf: &Node<'_>) -> Result<(), Fail> {
        let Some(ku) = leaf.key_usage else {
            return Ok(());
        };
        if self.purpose == Purpose::Any || ku.contains(KeyUsages::DigitalSignature) {
            return Ok(());
        }
        let rsa = matches!(leaf.info.key_algorithm, Some(KeyAlgorithm::Rsa { .. }));
        let ec = matches!(leaf.info.key_algorithm, Some(KeyAlgorithm::Ec(_)));
        let server = self.purpose == Purpose::TlsServer;
        if (rsa && server && ku.contains(KeyUsages::KeyEncipherment))
            || (ec && ku.contains(KeyUsages::KeyAgreement))
        {
            return Ok(());
        }
        let alternative = if rsa && server {
            " (or keyEncipherment)"
        } else if ec {
            " (or keyAgreement)"
        } else {
            ""
        };
        Err((
            Failure::KeyUsage,
            format!(
                "key usage lacks digitalSignature{alternative}, needed for {}",
                self.purpose
            ),
        ))
    }

    /// `Some` when `now` is outside the node's validity: "(subject) expired at …".
    fn validity(&self, i: usize) -> Option<Fail> {
        let n = &self.nodes[i];
        let subject = if i == 0 {
            String::new()
        } else {
            format!("{} ", n.info.subject)
        };
        let now = unix(self.now);
        if now < unix(n.info.not_before) {
            Some((
                Failure::NotYetValid,
                format!(
                    "{subject}is not valid before {}",
                    super::routeros_time(n.info.not_before)
                ),
            ))
        } else if now > unix(n.info.not_after) {
            Some((
                Failure::Expired,
                format!(
                    "{subject}expired at {}",
                    super::routeros_time(n.info.not_after)
                ),
            ))
        } else {
            None
        }
    }

    /// What chains by name and signature from the target, preferring trusted and currently
    /// valid issuers; stops at a trusted certificate.
    fn best_effort_chain(&self) -> Vec<usize> {
        let mut chain = vec![0];
        // webpki's limit is 6 intermediates; a little more shows where a long chain goes.
        while chain.len() < 10 {
            let cur = &self.nodes[chain[chain.len() - 1]];
            if chain.len() > 1 && cur.trusted {
                break;
            }
            let next = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(i, n)| {
                    !chain.contains(i) && n.subject_der == cur.issuer_der && cur.signed_by(n)
                })
                .max_by_key(|(i, n)| (n.trusted, self.validity(*i).is_none()))
                .map(|(i, _)| i);
            match next {
                Some(i) => chain.push(i),
                None => break,
            }
        }
        chain
    }

    fn report_chain(&self, chain: &[usize], anchored: bool) -> Vec<ChainCert> {
        chain
            .iter()
            .enumerate()
            .map(|(pos, &i)| {
                let n = &self.nodes[i];
                let is_anchor = anchored && pos + 1 == chain.len();
                let (revocation, ignored_crls) = if is_anchor {
                    (Revocation::TrustAnchor, Vec::new())
                } else {
                    self.revocation(i, chain.get(pos + 1).copied())
                };
                ChainCert {
                    store_name: n.store_name.map(str::to_owned),
                    subject: n.info.subject.clone(),
                    issuer: n.info.issuer.clone(),
                    serial_hex: n.info.serial_hex.clone(),
                    fingerprint: n.info.fingerprint.clone(),
                    not_before: n.info.not_before,
                    not_after: n.info.not_after,
                    trust_anchor: is_anchor,
                    revocation,
                    ignored_crls,
                }
            })
            .collect()
    }

    /// Whether CRL `k` is signed with the key of node `i` (cached: paths share issuers).
    fn crl_signed_by(&self, k: usize, i: usize) -> bool {
        let Some(crls) = &self.crls else {
            return false;
        };
        *self
            .crl_signatures
            .borrow_mut()
            .entry((k, i))
            .or_insert_with(|| crls[k].signed_by(&self.nodes[i]))
    }

    /// The revocation status of node `cert` issued by node `issuer` (the next certificate of
    /// its path), by the rules of the module docs, and the CRLs of the issuer left out.
    fn revocation(&self, cert: usize, issuer: Option<usize>) -> (Revocation, Vec<IgnoredCrl>) {
        let Some(crls) = &self.crls else {
            return (Revocation::NotChecked, Vec::new());
        };
        let Some(issuer) = issuer else {
            return (Revocation::IssuerUnknown, Vec::new());
        };
        let cert = &self.nodes[cert];
        let issuer_node = &self.nodes[issuer];
        let mut ignored = Vec::new();
        let mut usable: Vec<&Crl<'_>> = Vec::new();
        for (k, c) in crls.iter().enumerate() {
            if c.issuer_der != cert.issuer_der {
                continue;
            }
            let why = if !self.crl_signed_by(k, issuer) {
                // The CRL of another certificate with the same name (and another key) is not
                // this issuer's at all.
                let elsewhere = (0..self.nodes.len()).any(|j| {
                    j != issuer
                        && self.nodes[j].subject_der == c.issuer_der
                        && self.crl_signed_by(k, j)
                });
                if elsewhere {
                    continue;
                }
                "signature does not verify with the issuer's key".to_owned()
            } else if !issuer_node.may_sign_crls() {
                "the issuer's key usage lacks cRLSign".to_owned()
            } else if let Err(e) = &c.supported {
                format!("not supported ({e:?})")
            } else if let Some(why) = c.out_of_scope(cert) {
                why.to_owned()
            } else {
                usable.push(c);
                continue;
            };
            ignored.push(IgnoredCrl {
                crl: c.crl_ref(),
                why,
            });
        }
        // Newest first.
        usable.sort_by(|a, b| b.order_key().cmp(&a.order_key()));
        let hold = super::crl::reason_name(CrlReason::CertificateHold);
        // Listed on any of them: revoked, unless on hold and a newer CRL no longer lists it.
        let revoked = usable.iter().enumerate().find_map(|(pos, c)| {
            let (at, reason) = c.entry(&cert.serial)?;
            let released = pos > 0 && reason.as_deref() == Some(hold);
            (!released).then(|| Revocation::Revoked {
                crl: c.crl_ref(),
                at,
                reason,
            })
        });
        let status = match (revoked, usable.first()) {
            (Some(revoked), _) => revoked,
            (None, None) => Revocation::NoCrl,
            (None, Some(c)) if c.expired(self.now) => Revocation::CrlExpired { crl: c.crl_ref() },
            (None, Some(c)) => Revocation::Good { crl: c.crl_ref() },
        };
        (status, ignored)
    }

    /// webpki's error as a one-line reason, naming the certificate where the chain shows it.
    fn explain(&self, err: &webpki::Error, chain: &[usize]) -> Fail {
        use webpki::Error as E;
        let subject = |pos: usize| &self.nodes[chain[pos]].info.subject;
        match err {
            E::CertExpired { not_after, .. } => {
                match chain.iter().find_map(|&i| {
                    self.validity(i)
                        .filter(|(k, _)| *k == Failure::Expired)
                        .map(|f| (i, f))
                }) {
                    Some((0, (_, r))) => (Failure::Expired, format!("certificate {r}")),
                    Some((_, (_, r))) => (Failure::Expired, format!("CA certificate {r}")),
                    None => (
                        Failure::Expired,
                        format!(
                            "a certificate of the chain expired at {}",
                            super::routeros_time(
                                SystemTime::UNIX_EPOCH + Duration::from_secs(not_after.as_secs())
                            )
                        ),
                    ),
                }
            }
            E::CertNotValidYet { not_before, .. } => {
                match chain.iter().find_map(|&i| {
                    self.validity(i)
                        .filter(|(k, _)| *k == Failure::NotYetValid)
                        .map(|f| (i, f))
                }) {
                    Some((0, (_, r))) => (Failure::NotYetValid, format!("certificate {r}")),
                    Some((_, (_, r))) => (Failure::NotYetValid, format!("CA certificate {r}")),
                    None => (
                        Failure::NotYetValid,
                        format!(
                            "a certificate of the chain is not valid before {}",
                            super::routeros_time(
                                SystemTime::UNIX_EPOCH + Duration::from_secs(not_before.as_secs())
                            )
                        ),
                    ),
                }
            }
            E::UnknownIssuer => {
                let last = &self.nodes[chain[chain.len() - 1]];
                let detail = if last.subject_der != last.issuer_der {
                    format!("issuer {} not found", last.info.issuer)
                } else if last.store_name.is_some() {
                    format!("{} is in the store but not trusted", last.info.subject)
                } else {
                    format!(
                        "the chain ends at {}, which is not in the store",
                        last.info.subject
                    )
                };
                (
                    Failure::UnknownIssuer,
                    format!("no trusted issuer in the store (unknown issuer): {detail}"),
                )
            }
            E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => {
                let oid = self.purpose.eku_oid();
                let lacks = |i: usize| match (&self.nodes[i].eku, oid) {
                    (Some(list), Some(oid)) => !list.contains(&oid),
                    (Some(list), None) => list.is_empty(),
                    (None, _) => false,
                };
                let whose = match chain.iter().position(|&i| lacks(i)) {
                    Some(pos) if pos > 0 => format!(" of CA {}", subject(pos)),
                    _ => String::new(),
                };
                (
                    Failure::Purpose,
                    format!("not valid for {} (extended key usage{whose})", self.purpose),
                )
            }
            E::EndEntityUsedAsCa => {
                let who = chain
                    .iter()
                    .skip(1)
                    .map(|&i| &self.nodes[i].info)
                    .find(|info| !info.is_ca)
                    .map(|info| format!(": {}", info.subject))
                    .unwrap_or_default();
                (
                    Failure::BasicConstraints,
                    format!("issuer is not a CA (basic constraints){who}"),
                )
            }
            E::CaUsedAsEndEntity => (
                Failure::BasicConstraints,
                "the certificate is a CA (basic constraints): only end-entity certificates and \
                 trusted CAs can be verified"
                    .to_owned(),
            ),
            E::PathLenConstraintViolated => (
                Failure::BasicConstraints,
                "a CA's path length constraint is exceeded (basic constraints)".to_owned(),
            ),
            E::InvalidSignatureForPublicKey
            | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_)
            | E::UnsupportedSignatureAlgorithmContext(_)
            | E::SignatureAlgorithmMismatch => {
                let weak = chain
                    .iter()
                    .skip(1)
                    .map(|&i| &self.nodes[i])
                    .find_map(|n| n.short_rsa_bits().map(|b| (n, b)));
                match weak {
                    Some((n, bits)) => (
                        Failure::WeakKey,
                        format!(
                            "signature not accepted: RSA keys shorter than 2048 bits are refused ({} has a {bits}-bit key)",
                            n.info.subject
                        ),
                    ),
                    None if matches!(err, E::InvalidSignatureForPublicKey) => {
                        (Failure::Signature, "signature does not verify".to_owned())
                    }
                    None => (
                        Failure::Signature,
                        "unsupported signature algorithm".to_owned(),
                    ),
                }
            }
            E::NameConstraintViolation => (
                Failure::NameConstraints,
                "a CA's name constraints exclude the certificate's names".to_owned(),
            ),
            E::BadDer
            | E::BadDerTime
            | E::TrailingData(_)
            | E::MalformedExtensions
            | E::ExtensionValueInvalid
            | E::InvalidCertValidity
            | E::InvalidSerialNumber
            | E::UnsupportedCertVersion => (
                Failure::Malformed,
                format!("a certificate cannot be processed ({err:?})"),
            ),
            E::UnsupportedCriticalExtension => (
                Failure::Malformed,
                "a certificate has an unsupported critical extension".to_owned(),
            ),
            E::MaximumPathDepthExceeded => (
                Failure::Other,
                "the chain is longer than 6 intermediate CAs".to_owned(),
            ),
            other => (
                Failure::Other,
                format!("rejected by the validator ({other:?})"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::path::PathBuf;
    use std::process::Command;

    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    const CA: &str = "basicConstraints=critical,CA:TRUE\n\
                      keyUsage=critical,keyCertSign,cRLSign\n\
                      subjectKeyIdentifier=hash\n";
    const SERVER: &str = "basicConstraints=CA:FALSE\n\
                          keyUsage=critical,digitalSignature\n\
                          extendedKeyUsage=serverAuth,clientAuth\n\
                          subjectAltName=DNS:srv.example\n";

    /// A throw-away PKI made with the `openssl` command line.
    struct Pki {
        dir: tempfile::TempDir,
        serial: Cell<u32>,
    }

    impl Pki {
        fn new() -> Self {
            Pki {
                dir: tempfile::tempdir().unwrap(),
                serial: Cell::new(0x1000),
            }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn openssl(&self, args: &[&str]) {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(self.dir.path())
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }

        /// `kind`: ec (P-256), p521, rsa2048, rsa1024, ed25519.
        fn key(&self, name: &str, kind: &str) {
            let key = format!("{name}.key");
            let mut args = vec!["genpkey", "-out", &key, "-algorithm"];
            match kind {
                "ec" => args.extend(["EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                "p521" => args.extend(["EC", "-pkeyopt", "ec_paramgen_curve:P-521"]),
                "rsa2048" => args.extend(["RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
                "rsa1024" => args.extend(["RSA", "-pkeyopt", "rsa_keygen_bits:1024"]),
                "ed25519" => args.push("ED25519"),
                _ => panic!("unknown key kind {kind}"),
            }
            self.openssl(&args);
        }

        /// Makes `name.key` and `name.pem` (CN=name), issued by `issuer` (self-signed when
        /// None), valid from now for `days`, with the extensions `ext`; returns the DER.
        fn cert(
            &self,
            name: &str,
            kind: &str,
            issuer: Option<&str>,
            ext: &str,
            days: u32,
        ) -> Vec<u8> {
            self.cert_cn(name, name, kind, issuer, ext, days)
        }

        /// As `cert`, with subject CN=`cn` (files still named after `name`).
        fn cert_cn(
            &self,
            name: &str,
            cn: &str,
            kind: &str,
            issuer: Option<&str>,
            ext: &str,
            days: u32,
        ) -> Vec<u8> {
            self.key(name, kind);
            let ext_file = format!("{name}.ext");
            std::fs::write(self.path(&ext_file), format!("[ext]\n{ext}")).unwrap();
            let (key, csr, pem) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
            );
            let subj = format!("/CN={cn}");
            self.openssl(&["req", "-new", "-key", &key, "-subj", &subj, "-out", &csr]);
            self.serial.set(self.serial.get() + 1);
            let serial = self.serial.get().to_string();
            let days = days.to_string();
            let mut args = vec![
                "x509",
                "-req",
                "-in",
                &csr,
                "-out",
                &pem,
                "-days",
                &days,
                "-set_serial",
                &serial,
                "-extfile",
                &ext_file,
                "-extensions",
                "ext",
            ];
            let (ca_pem, ca_key);
            match issuer {
                None => args.extend(["-signkey", &key]),
                Some(i) => {
                    ca_pem = format!("{i}.pem");
                    ca_key = format!("{i}.key");
                    args.extend(["-CA", &ca_pem, "-CAkey", &ca_key]);
                }
            }
            self.openssl(&args);
            self.der(&pem)
        }

        fn der(&self, pem_file: &str) -> Vec<u8> {
            let text = std::fs::read(self.path(pem_file)).unwrap();
            der::pem::decode_vec(&text).unwrap().1
        }

        /// An `openssl ca` set-up for CA `ca` (to revoke and to make CRLs).
        fn ca_config(&self, ca: &str) -> String {
            let cnf = format!("{ca}.cnf");
            std::fs::write(
                self.path(&cnf),
                format!(
                    "[ca]\ndefault_ca = this\n[this]\ndatabase = {ca}.index\n\
                     crlnumber = {ca}.crlnumber\ncertificate = {ca}.pem\n\
                     private_key = {ca}.key\ndefault_md = sha256\ndefault_crl_days = 30\n"
                ),
            )
            .unwrap();
            std::fs::write(self.path(&format!("{ca}.index")), "").unwrap();
            std::fs::write(self.path(&format!("{ca}.crlnumber")), "01\n").unwrap();
            cnf
        }

        /// A second `openssl ca` set-up for CA `ca` (same database and CRL numbers as
        /// `ca_config`, which must come first) whose CRLs carry the extensions `crl_ext`.
        fn crl_ext_config(&self, ca: &str, crl_ext: &str) -> String {
            let cnf = format!("{ca}-ext.cnf");
            std::fs::write(
                self.path(&cnf),
                format!(
                    "[ca]\ndefault_ca = this\n[this]\ndatabase = {ca}.index\n\
                     crlnumber = {ca}.crlnumber\ncertificate = {ca}.pem\n\
                     private_key = {ca}.key\ndefault_md = sha256\ndefault_crl_days = 30\n\
                     crl_extensions = crl_ext\n[crl_ext]\n{crl_ext}"
                ),
            )
            .unwrap();
            cnf
        }

        /// Takes every revocation out of CA `ca`'s database (as if they had never been made),
        /// so that its next CRL lists nothing.
        fn unrevoke_all(&self, ca: &str) {
            let index = self.path(&format!("{ca}.index"));
            let text = std::fs::read_to_string(&index).unwrap();
            let lines: Vec<String> = text
                .lines()
                .map(|l| {
                    let mut f: Vec<&str> = l.split('\t').collect();
                    if f[0] == "R" {
                        f[0] = "V";
                        f[2] = "";
                    }
                    f.join("\t")
                })
                .collect();
            std::fs::write(&index, lines.join("\n") + "\n").unwrap();
        }

        fn revoke(&self, cnf: &str, cert: &str, reason: &str) {
            let pem = format!("{cert}.pem");
            self.openssl(&["ca", "-config", cnf, "-revoke", &pem, "-crl_reason", reason]);
        }

        /// A CRL of the CA behind `cnf`, DER; `hours` = nextUpdate from now (default 30 days).
        fn crl(&self, cnf: &str, hours: Option<u32>) -> Vec<u8> {
            let out = format!("{cnf}.{}.crl", self.serial.get());
            self.serial.set(self.serial.get() + 1);
            let hours = hours.map(|h| h.to_string());
            let mut args = vec!["ca", "-config", cnf, "-gencrl", "-out", &out];
            if let Some(h) = &hours {
                args.extend(["-crlhours", h]);
            }
            self.openssl(&args);
            self.der(&out)
        }
    }

    /// root (P-256, trusted) → int (P-256) → leaf with `leaf_ext`.
    fn ec_chain(pki: &Pki, leaf_ext: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let root = pki.cert("root", "ec", None, CA, 3650);
        let int = pki.cert("int", "ec", Some("root"), CA, 3650);
        let leaf = pki.cert("leaf", "ec", Some("int"), leaf_ext, 365);
        (root, int, leaf)
    }

    fn check(
        target: &[u8],
        extra: &[Vec<u8>],
        store: &[(&str, &[u8], bool)],
        crls: Option<&[Vec<u8>]>,
        purpose: Purpose,
        now: SystemTime,
    ) -> PathReport {
        let store: Vec<StoreCert<'_>> = store
            .iter()
            .map(|&(name, der, trusted)| StoreCert { name, der, trusted })
            .collect();
        validate(&PathInput {
            target,
            extra,
            store: &store,
            crls,
            purpose,
            now,
        })
    }

    fn failure(report: &PathReport) -> (Failure, &str) {
        match &report.verdict {
            Verdict::Invalid { kind, reason } => (*kind, reason.as_str()),
            Verdict::Valid => panic!("expected invalid, got valid: {report:?}"),
        }
    }

    fn assert_valid(report: &PathReport) {
        assert_eq!(report.verdict, Verdict::Valid, "{report:?}");
    }

    #[test]
    fn ec_chain_is_valid_for_tls_server_through_store_or_file_intermediates() {
        let pki = Pki::new();
        let (root, int, leaf) = ec_chain(&pki, SERVER);
        let now = SystemTime::now();
        let store = [("root", &root[..], true), ("int", &int[..], false)];
        let r = check(&leaf, &[], &store, None, Purpose::TlsServer, now);
        assert_valid(&r);
        let names: Vec<_> = r.chain.iter().map(|c| c.store_name.as_deref()).collect();
        assert_eq!(names, [None, Some("int"), Some("root")]);
        let subjects: Vec<_> = r.chain.iter().map(|c| c.subject.as_str()).collect();
        assert_eq!(subjects, ["CN=leaf", "CN=int", "CN=root"]);
        assert_eq!(r.chain[0].issuer, "CN=int");
        assert_eq!(r.chain[0].serial_hex, format!("{:04X}", pki.serial.get()));
        let anchors: Vec<_> = r.chain.iter().map(|c| c.trust_anchor).collect();
        assert_eq!(anchors, [false, false, true]);
        assert_eq!(r.chain[0].revocation, Revocation::NotChecked);
        assert_eq!(r.chain[2].revocation, Revocation::TrustAnchor);

        // The intermediate from the file instead of the store.
        let r = check(
            &leaf,
            std::slice::from_ref(&int),
            &store[..1],
            None,
            Purpose::TlsServer,
            now,
        );
        assert_valid(&r);
        assert_eq!(r.chain.len(), 3);
        assert_eq!(r.chain[1].store_name, None);
    }

    #[test]
    fn rsa_chain_and_leaf_key_usage_for_tls() {
        let pki = Pki::new();
        let root = pki.cert("root", "rsa2048", None, CA, 3650);
        let int = pki.cert("int", "rsa2048", Some("root"), CA, 3650);
        let leaf = pki.cert("leaf", "rsa2048", Some("int"), SERVER, 365);
        // RSA key transport only: a TLS server (RSA key exchange) but not a client.
        let kx = pki.cert(
            "kx",
            "rsa2048",
            Some("int"),
            "keyUsage=critical,keyEncipherment\n",
            365,
        );
        let store = [("root", &root[..], true), ("int", &int[..], false)];
        let now = SystemTime::now();
        assert_valid(&check(&leaf, &[], &store, None, Purpose::TlsServer, now));
        assert_valid(&check(&kx, &[], &store, None, Purpose::TlsServer, now));
        let r = check(&kx, &[], &store, None, Purpose::TlsClient, now);
        let (kind, reason) = failure(&r);
        assert_eq!(kind, Failure::KeyUsage);
        assert!(reason.contains("digitalSignature"), "{reason}");
        assert!(reason.contains("tls-client"), "{reason}");
        assert_valid(&check(&kx, &[], &store, None, Purpose::Any, now));
    }

    #[test]
    fn ec_leaf_without_signing_key_usage_is_refused_for_tls_only() {
        let pki = Pki::new();
        let (root, int, leaf) = ec_chain(&pki, "keyUsage=critical,keyEncipherment\n");
        let store = [("root", &root[..], true), ("int", &int[..], false)];
        let now = SystemTime::now();
        let r = check(&leaf, &[], &store, None, Purpose::TlsServer, now);
        let (kind, reason) = failure(&r);
        assert_eq!(kind, Failure::KeyUsage);
        assert!(reason.contains("keyAgreement"), "{reason}");
        assert_valid(&check(&leaf, &[], &store, None, Purpose::Any, now));
    }

    #[test]
    fn ed25519_and_p521_signatures_are_accepted() {
        let pki = Pki::new();
        let root = pki.cert("root", "ed25519", None, CA, 3650);
        let int = pki.cert("int", "p521", Some("root"), CA, 3650);
        let leaf = pki.cert("leaf", "ec", Some("int"), SERVER, 365);
        let store = [("root", &root[..], true), ("int", &int[..], false)];
        let r = check(
            &leaf,
            &[],
            &store,
            None,
            Purpose::TlsServer,
            SystemTime::now(),
        );
        assert_valid(&r);
        assert_eq!(r.chain.len(), 3);
    }

    #[test]
    fn client_only_eku_fails_tls_server_but_passes_tls_client_and_any() {
        let pki = Pki::new();
        let (root, int, leaf) = ec_chain(
            &pki,
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        );
        let store = [("root", &root[..], true), ("int", &int[..], false)];
        let now = SystemTime::now();
        let r = check(&leaf, &[], &store, None, Purpose::TlsServer, now);
        let (kind, reason) = failure(&r);
        assert_eq!(kind, Failure::Purpose);
        assert_eq!(reason, "not valid for tls-server (extended key usage)");
        assert_eq!(r.chain.len(), 3, "the chain is still shown");
        assert_valid(&check(&leaf, &[], &store, None, Purpose::TlsClient, now));
        assert_valid(&check(&leaf, &[], &store, None, Purpose::Any, now));
    }

    #[test]
    fn expired_and_not_yet_valid_certificates() {
        let pki = Pki::new();
        let root = pki.cert("root", "ec", None, CA, 3650);
        let int = pki.cert("int", "ec", Some("root"), CA, 3650);
        let leaf = pki.cert("leaf", "ec", Some("int"), SERVER, 1);
        let store = [("root", &root[..], true), ("int", &int[..], false)];
        let now = SystemTime::now();
        assert_valid(&check(&leaf, &[], &store, None, Purpose::Any, now));

        let r = check(&leaf, &[], &store, None, Purpose::Any, now + 2 * DAY);
        let (kind, reason) = failure(&r);
        assert_eq!(kind, Failure::Expired);
        assert!(reason.starts_with("certificate expired at "), "{reason}");
        assert_eq!(r.chain.len(), 3);

        let r = check(&leaf, &[], &store, None, Purpose::Any, now - 2 * DAY);
        let (kind, reason) = failure(&r);
        assert_eq!(kind, Failure::NotYetValid);
        assert!(reason.contains("not valid before"), "{reason}");
    }

    #[test]
    fn an_expired_trust_anchor_fails_the_chain() {
        let pki = Pki::new();
        let root = pki.cert("root", "ec", None, CA, 1);
        let int = pki.cert("int", "ec", Some("root"), CA, 30);
        let leaf = pki.cert("leaf", "ec", Some("int"), SERVER, 30);
        let store = [("root", &root[..], true), ("int", &int[..], false)];
        let later = SystemTime::now() + 2 * DAY;
        let r = check(&leaf, &[], &store, None, Purpose::Any, later);
        let (kind, reason) = failure(&r);
        assert_eq!(kind, Failure::Expired);
        assert!(
            reason.starts_with("trust anchor CN=root expired at"),
            "{reason}"
        );
        // The anchor itself as the target: valid within its validity only.
        assert_valid(&check(
            &root,
            &[],
            &store,
            None,
            Purpose::Any,
            SystemTime::now(),
        ));
        let r = check(&root, &[], &store, None, Purpose::Any, later);
        assert_eq!(failure(&r).0, Failure::Expired);
        assert_eq!(r.chain.len(), 1);
        assert!(r.chain[0].trust_anchor);
        assert_eq!(r.chain[0].store_name.as_deref(), Some("root"));
    }

    #[test]
    fn without_a_trusted_anchor_the_issuer_is_unknown() {
        let pki = Pki::new();
        let (root, int, leaf) = ec_chain(&pki, SERVER);
        let now = SystemTime::now();
        let store = [("root", &root[..], false), ("int", &int[..], false)];
        let r = check(&leaf, &[], &store, None, Purpose::Any, now);
        let (kind, reason) = failure(&r);
        assert_eq!(kind, Failure::UnknownIssuer);
        assert!(
            reason.starts_with("no trusted issuer in the store (unknown issuer)"),
            "{reason}"
        );
        assert!(
            reason.contains("CN=root is in the store but not trusted"),
            "{reason}"
        );
        assert_eq!(r.chain.len(), 3);
        assert!(r.chain.iter().all(|c| !c.trust_anchor));

        let r = check(&leaf, &[], &[], None, Purpose::Any, now);
        let (kind, reason) = failure(&r);
        assert_eq!(kind, Failure::UnknownIssuer);
        assert!(reason.contains("issuer CN=int not found"), "{reason}");
        assert_eq!(r.chain.len(), 1);
        assert_eq!(r.chain[0].subject, "CN=leaf");
    }

    #[test]
    fn an_intermediate_that_is_not_a_ca_cannot_issue() {
        let pki = Pki::new();
        let root = pki.cert("root", "ec", None, CA, 3650);
        let int = pki.cert(
            "int",
            "ec",
            Some("root"),
            "keyUsage=critical,keyCertSign,cRLSign\n",
            3650,
        );
        let leaf = pki.cert("leaf", "ec", Some("int"), SERVER, 365);
        let store = [("root", &root[..], true), ("int", &int[..], false)];
        let r = check(&leaf, &[], &store, None, Purpose::Any, SystemTime::now());
        let (kind, reason) = failure(&r);
        assert_eq!(kind, Failure::BasicConstraints);
        assert_eq!(reason, "issuer is not a CA (basic constraints): CN=int");
    }

    #[test]
    fn a_ca_whose_key_usage_lacks_key_cert_sign_cannot_issue() {
        // webpki ignores keyUsage: this is certman's own check.
        let pki = Pki::new();
        let root = pki.cert("root", "ec", None, CA, 3650);
        let int = pki.cert(
            "int",
            "ec",
            Some("root"),
            "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature,cRLSign\n",
            3650,
        );
        let leaf = pki.cert("leaf", "ec", Some("int"), SERVER, 365);
        let store = [("root", &root[..], true), ("int", &int[..], false)];
        let r = check(&leaf, &[], &store, None, Purpose::Any, SystemTime::now());
        let (kind, reason) = failure(&r);
        assert_eq!(kind, Failure::KeyUsage);
        assert_eq!(reason, "issuer's key usage lacks keyCertSign: CN=int");
        assert_eq!(r.chain.len(), 3);
    }

    #[test]
    fn an_issuer_with_a_short_rsa_key_is_refused_with_a_clear_reason() {
        let pki = Pki::new();
        let root = pki.cert("root", "rsa1024", None, CA, 3650);
        let leaf = pki.cert("leaf", "ec", Some("root"), SERVER, 365);
        let store = [("root", &root[..], true)];
        let r = check(&leaf, &[], &store, None, Purpose::Any, SystemTime::now());
        let (kind, reason) = failure(&r);
        assert_eq!(kind, Failure::WeakKey);
        assert!(reason.contains("shorter than 2048 bits"), "{reason}");
        assert!(reason.contains("CN=root has a 1024-bit key"), "{reason}");
    }

    #[test]
    fn a_revoked_leaf_fails_only_with_crl_use() {
        let pki = Pki::new();
        let (root, int, leaf) = ec_chain(&pki, SERVER);
        let other = pki.cert("other", "ec", Some("int"), SERVER, 365);
        let cnf = pki.ca_config("int");
        pki.revoke(&cnf, "leaf", "keyCompromise");
        let crl = pki.crl(&cnf, None);
        let root_crl = pki.crl(&pki.ca_config("root"), None);
        let store = [("root", &root[..], true), ("int", &int[..], false)];
        let now = SystemTime::now();

        // Only the intermediate's CRL: the leaf's revocation decides, although the
        // intermediate's own status is unknown.
        let crls = [crl.clone()];
        let r = check(&leaf, &[], &store, Some(&crls), Purpose::TlsServer, now);
        let (kind, reason) = failure(&r);
        assert_eq!(kind, Failure::Revoked);
        assert!(reason.starts_with("certificate revoked at "), "{reason}");
        assert!(reason.ends_with("(key-compromise)"), "{reason}");
        assert_eq!(r.chain.len(), 3, "the chain is shown: {r:?}");
        match &r.chain[0].revocation {
            Revocation::Revoked { crl, reason, .. } => {
                assert_eq!(reason.as_deref(), Some("key-compromise"));
                assert_eq!(crl.number.as_deref(), Some("1"));
            }
            other => panic!("leaf status {other:?}"),
        }
        assert_eq!(r.chain[1].revocation, Revocation::NoCrl);
        assert_eq!(r.chain[2].revocation, Revocation::TrustAnchor);

        let crls = [crl, root_crl];
        let r = check(&leaf, &[], &store, Some(&crls), Purpose::TlsServer, now);
        assert_eq!(failure(&r).0, Failure::Revoked);
        assert!(matches!(r.chain[1].revocation, Revocation::Good { .. }));

        // crl-use=no
        let r = check(&leaf, &[], &store, None, Purpose::TlsServer, now);
        assert_valid(&r);
        assert_eq!(r.chain[0].revocation, Revocation::NotChecked);

        // A certificate of the same CA that is not on the CRL.
        let r = check(&other, &[], &store, Some(&crls), Purpose::TlsServer, now);
        assert_valid(&r);
        match &r.chain[0].revocation {
            Revocation::Good { crl } => assert_eq!(crl.number.as_deref(), Some("1")),
            other => panic!("status {other:?}"),
        }
        assert!(r.chain[0].ignored_crls.is_empty());
        assert!(matches!(r.chain[1].revocation, Revocation::Good { .. }));
        assert_eq!(r.chain[2].revocation, Revocation::TrustAnchor);
    }

    #[test]
    fn the_newest_crl_counts_and_a_revoked_ca_fails_the_chain() {
        let pki = Pki::new();
        let (root, int, leaf) = ec_chain(&pki, SERVER);
        let int_cnf = pki.ca_config("int");
        let before = pki.crl(&int_cnf, None); // CRL #1: nothing revoked
        pki.revoke(&int_cnf, "leaf", "superseded");
        let after = pki.crl(&int_cnf, None); // CRL #2: the leaf
        let root_cnf = pki.ca_config("root");
        let root_crl = pki.crl(&root_cnf, None);
        let store = [("root", &root[..], true), ("int", &int[..], false)];
        let now = SystemTime::now();
        // Whatever the order certman holds them in.
        for crls in [
            [before.clone(), after.clone(), root_crl.clone()],
            [root_crl.clone(), after.clone(), before.clone()],
        ] {
            let r = check(&leaf, &[], &store, Some(&crls), Purpose::Any, now);
            let (kind, reason) = failure(&r);
            assert_eq!(kind, Failure::Revoked);
            assert!(reason.ends_with("(superseded)"), "{reason}");
            match &r.chain[0].revocation {
                Revocation::Revoked { crl, .. } => assert_eq!(crl.number.as_deref(), Some("2")),
                other => panic!("status {other:?}"),
            }
        }

        // The root revokes the intermediate: the chain fails at the CA.
        let other = pki.cert("other", "ec", Some("int"), SERVER, 365);
        pki.revoke(&root_cnf, "int", "cACompromise");
        let crls = [pki.crl(&root_cnf, None), before];
        let r = check(&other, &[], &store, Some(&crls), Purpose::Any, now);
        let (kind, reason) = failure(&r);
        assert_eq!(kind, Failure::Revoked);
        assert!(
            reason.starts_with("CA certificate CN=int revoked at ")
                && reason.ends_with("(ca-compromise)"),
            "{reason}"
        );
        assert!(
            matches!(r.chain[0].revocation, Revocation::Good { .. }),
            "{r:?}"
        );
        assert!(
            matches!(r.chain[1].revocation, Revocation::Revoked { .. }),
            "{r:?}"
        );
    }

    #[test]
    fn a_crl_whose_signature_does_not_verify_is_ignored_and_the_status_is_unknown() {
        let pki = Pki::new();
        let (root, int, leaf) = ec_chain(&pki, SERVER);
        let cnf = pki.ca_config("int");
        pki.revoke(&cnf, "leaf", "keyCompromise");
        let mut crl = pki.crl(&cnf, None);
        let last = crl.len() - 1;
        crl[last] ^= 0x01; // inside the signature's s
        let root_crl = pki.crl(&pki.ca_config("root"), None);
        let crls = [crl, root_crl];
        let store = [("root", &root[..], true), ("int", &int[..], false)];
        let r = check(
            &leaf,
            &[],
            &store,
            Some(&crls),
            Purpose::Any,
            SystemTime::now(),
        );
        let (kind, reason) = failure(&r);
        assert_eq!(kind, Failure::RevocationUnknown);
        assert!(
            reason.starts_with("revocation status unknown: no usable CRL of CN=int is held")
                && reason.contains("signature does not verify"),
            "{reason}"
        );
        assert_eq!(r.chain.len(), 3, "{r:?}");
        assert_eq!(r.chain[0].revocation, Revocation::NoCrl);
        assert_eq!(r.chain[0].ignored_crls.len(), 1, "{r:?}");
        assert!(
            r.chain[0].ignored_crls[0]
                .why
                .contains("signature does not verify"),
            "{r:?}"
        );
    }

    #[test]
    fn an_expired_crl_still_revokes_and_leaves_other_certificates_unknown() {
        let pki = Pki::new();
        let (root, int, leaf) = ec_chain(&pki, SERVER);
        let other = pki.cert("other", "ec", Some("int"), SERVER, 365);
        let cnf = pki.ca_config("int");
        pki.revoke(&cnf, "leaf", "keyCompromise");
        let expiring = pki.crl(&cnf, Some(1)); // #1, nextUpdate in an hour
        let root_crl = pki.crl(&pki.ca_config("root"), None);
        let store = [("root", &root[..], true), ("int", &int[..], false)];
        let now = SystemTime::now();
        let later = now + DAY;
        let crls = [expiring.clone(), root_crl.clone()];

        // Fresh: the leaf is revoked, the other certificate good.
        assert_eq!(
            failure(&check(&leaf, &[], &store, Some(&crls), Purpose::Any, now)).0,
            Failure::Revoked
        );
        assert_valid(&check(&other, &[], &store, Some(&crls), Purpose::Any, now));

        // A day later the CRL has expired. A revocation is final: the leaf stays revoked
        // (holding back newer CRLs must not un-revoke it)…
        let r = check(&leaf, &[], &store, Some(&crls), Purpose::Any, later);
        let (kind, reason) = failure(&r);
        assert_eq!(kind, Failure::Revoked);
        assert!(reason.ends_with("(key-compromise)"), "{reason}");
        assert!(
            matches!(&r.chain[0].revocation, Revocation::Revoked { crl, .. }
                if crl.number.as_deref() == Some("1")),
            "{r:?}"
        );
        // …and a certificate it does not list has an unknown status: invalid.
        let r = check(&other, &[], &store, Some(&crls), Purpose::Any, later);
        let (kind, reason) = failure(&r);
        assert_eq!(kind, Failure::RevocationUnknown);
        assert!(
            reason.starts_with("revocation status unknown: the CRL of CN=int expired at "),
            "{reason}"
        );
        assert_eq!(r.chain.len(), 3, "{r:?}");
        match &r.chain[0].revocation {
            Revocation::CrlExpired { crl } => {
                assert!(crl.next_update.is_some_and(|n| n < later));
            }
            other => panic!("status {other:?}"),
        }

        // A fresh CRL makes it valid again; the leaf is still revoked.
        let fresh = pki.crl(&cnf, None); // #2
        let crls = [expiring, fresh, root_crl];
        let r = check(&other, &[], &store, Some(&crls), Purpose::Any, later);
        assert_valid(&r);
        assert!(
            matches!(&r.chain[0].revocation, Revocation::Good { crl }
                if crl.number.as_deref() == Some("2")),
            "{r:?}"
        );
        assert_eq!(
            failure(&check(&leaf, &[], &store, Some(&crls), Purpose::Any, later)).0,
            Failure::Revoked
        );
    }

    #[test]
    fn with_crl_use_an_issuer_without_a_crl_leaves_the_status_unknown() {
        let pki = Pki::new();
        let (root, int, leaf) = ec_chain(&pki, SERVER);
        let int_crl = pki.crl(&pki.ca_config("int"), None);
        let root_crl = pki.crl(&pki.ca_config("root"), None);
        let store = [("root", &root[..], true), ("int", &int[..], false)];
        let now = SystemTime::now();

        let r = check(&leaf, &[], &store, Some(&[]), Purpose::Any, now);
        let (kind, reason) = failure(&r);
        assert_eq!(kind, Failure::RevocationUnknown);
        assert_eq!(
            reason,
            "revocation status unknown: no CRL of CN=int is held (crl-use=yes)"
        );
        assert_eq!(r.chain.len(), 3, "{r:?}");
        assert_eq!(r.chain[0].revocation, Revocation::NoCrl);

        // The intermediate's CRL only: the root has none for the intermediate.
        let crls = [int_crl.clone()];
        let r = check(&leaf, &[], &store, Some(&crls), Purpose::Any, now);
        let (kind, reason) = failure(&r);
        assert_eq!(kind, Failure::RevocationUnknown);
        assert_eq!(
            reason,
            "revocation status unknown: no CRL of CN=root is held (crl-use=yes)"
        );
        assert!(matches!(r.chain[0].revocation, Revocation::Good { .. }));
        assert_eq!(r.chain[1].revocation, Revocation::NoCrl);

        // Both: valid (the trust anchor needs no CRL); crl-use=no: valid without any.
        let crls = [int_crl, root_crl];
        assert_valid(&check(&leaf, &[], &store, Some(&crls), Purpose::Any, now));
        assert_valid(&check(&leaf, &[], &store, None, Purpose::Any, now));
    }

    #[test]
    fn two_cas_with_the_same_name_each_count_only_their_own_crls() {
        let pki = Pki::new();
        let ca = pki.cert("ca", "ec", None, CA, 3650);
        let ca2 = pki.cert_cn("ca2", "ca", "ec", None, CA, 3650);
        let ok = pki.cert("ok", "ec", Some("ca"), SERVER, 365);
        // A certificate of ca2 with the same serial number, revoked by ca2.
        pki.serial.set(pki.serial.get() - 1);
        let twin = pki.cert("twin", "ec", Some("ca2"), SERVER, 365);
        let ca_crl = pki.crl(&pki.ca_config("ca"), None); // #1
        let cnf2 = pki.ca_config("ca2");
        pki.revoke(&cnf2, "twin", "keyCompromise");
        pki.crl(&cnf2, None);
        let ca2_crl = pki.crl(&cnf2, None); // #2: newer than ca's
        let store = [("ca", &ca[..], true), ("ca2", &ca2[..], true)];
        let now = SystemTime::now();
        for crls in [
            [ca_crl.clone(), ca2_crl.clone()],
            [ca2_crl.clone(), ca_crl.clone()],
        ] {
            let r = check(&ok, &[], &store, Some(&crls), Purpose::Any, now);
            assert_valid(&r);
            assert_eq!(r.chain[1].store_name.as_deref(), Some("ca"));
            assert!(
                matches!(&r.chain[0].revocation, Revocation::Good { crl }
                    if crl.number.as_deref() == Some("1")),
                "{r:?}"
            );
            assert!(r.chain[0].ignored_crls.is_empty(), "{r:?}");

            let r = check(&twin, &[], &store, Some(&crls), Purpose::Any, now);
            assert_eq!(failure(&r).0, Failure::Revoked, "{r:?}");
            assert_eq!(r.chain[1].store_name.as_deref(), Some("ca2"));
        }
        // ca's only CRL missing: ca2's does not stand in for it.
        let crls = [ca2_crl];
        let r = check(&ok, &[], &store, Some(&crls), Purpose::Any, now);
        assert_eq!(failure(&r).0, Failure::RevocationUnknown, "{r:?}");
    }

    #[test]
    fn a_trusted_certificate_is_checked_against_its_issuers_crl() {
        let pki = Pki::new();
        let ca = pki.cert("ca", "ec", None, CA, 3650);
        let leaf = pki.cert("leaf", "ec", Some("ca"), SERVER, 365);
        let other = pki.cert("other", "ec", Some("ca"), SERVER, 365);
        let cnf = pki.ca_config("ca");
        pki.revoke(&cnf, "leaf", "keyCompromise");
        let crls = [pki.crl(&cnf, None)];
        let now = SystemTime::now();
        // The CA is in the store (it need not be trusted); the leaves are trusted themselves.
        for ca_trusted in [false, true] {
            let store = [
                ("ca", &ca[..], ca_trusted),
                ("leaf", &leaf[..], true),
                ("other", &other[..], true),
            ];
            let r = check(&leaf, &[], &store, Some(&crls), Purpose::Any, now);
            let (kind, reason) = failure(&r);
            assert_eq!(kind, Failure::Revoked);
            assert!(
                reason.starts_with("certificate revoked at ")
                    && reason.ends_with("(key-compromise)"),
                "{reason}"
            );
            assert_eq!(r.chain.len(), 1);
            assert!(r.chain[0].trust_anchor);
            assert!(matches!(r.chain[0].revocation, Revocation::Revoked { .. }));

            let r = check(&other, &[], &store, Some(&crls), Purpose::Any, now);
            assert_valid(&r);
            assert!(matches!(r.chain[0].revocation, Revocation::Good { .. }));

            let r = check(&other, &[], &store, Some(&[]), Purpose::Any, now);
            let (kind, reason) = failure(&r);
            assert_eq!(kind, Failure::RevocationUnknown);
            assert!(reason.contains("no CRL of CN=ca is held"), "{reason}");

            let r = check(&leaf, &[], &store, None, Purpose::Any, now);
            assert_valid(&r);
            assert_eq!(r.chain[0].revocation, Revocation::TrustAnchor);
        }
        // Trusted directly, its issuer unknown: valid, its revocation not checked.
        let store = [("leaf", &leaf[..], true)];
        let r = check(&leaf, &[], &store, Some(&crls), Purpose::Any, now);
        assert_valid(&r);
        assert_eq!(r.chain[0].revocation, Revocation::IssuerUnknown);
        // The CA itself (self-issued) needs no CRL.
        let store = [("ca", &ca[..], true)];
        let r = check(&ca, &[], &store, Some(&[]), Purpose::Any, now);
        assert_valid(&r);
        assert_eq!(r.chain[0].revocation, Revocation::TrustAnchor);
    }

    #[test]
    fn a_revocation_is_final_but_a_hold_can_be_released() {
        let pki = Pki::new();
        let (root, int, leaf) = ec_chain(&pki, SERVER);
        let held = pki.cert("held", "ec", Some("int"), SERVER, 365);
        let cnf = pki.ca_config("int");
        pki.revoke(&cnf, "leaf", "keyCompromise");
        pki.revoke(&cnf, "held", "certificateHold");
        let first = pki.crl(&cnf, None); // #1: both
        pki.unrevoke_all("int");
        let second = pki.crl(&cnf, None); // #2: neither
        let root_crl = pki.crl(&pki.ca_config("root"), None);
        let store = [("root", &root[..], true), ("int", &int[..], false)];
        let now = SystemTime::now();

        let crls = [first.clone(), root_crl.clone()];
        let r = check(&held, &[], &store, Some(&crls), Purpose::Any, now);
        let (kind, reason) = failure(&r);
        assert_eq!(kind, Failure::Revoked);
        assert!(reason.ends_with("(certificate-hold)"), "{reason}");

        let crls = [first, second, root_crl];
        // A newer CRL that leaves out a revoked certificate does not un-revoke it…
        let r = check(&leaf, &[], &store, Some(&crls), Purpose::Any, now);
        assert_eq!(failure(&r).0, Failure::Revoked, "{r:?}");
        assert!(
            matches!(&r.chain[0].revocation, Revocation::Revoked { crl, .. }
                if crl.number.as_deref() == Some("1")),
            "{r:?}"
        );
        // …but releases a certificate on hold.
        let r = check(&held, &[], &store, Some(&crls), Purpose::Any, now);
        assert_valid(&r);
        assert!(
            matches!(&r.chain[0].revocation, Revocation::Good { crl }
                if crl.number.as_deref() == Some("2")),
            "{r:?}"
        );
    }

    #[test]
    fn a_crl_whose_scope_excludes_the_certificate_does_not_count() {
        let pki = Pki::new();
        let (root, int, leaf) = ec_chain(&pki, SERVER);
        let cnf = pki.ca_config("int");
        let complete = pki.crl(&cnf, Some(1)); // #1, expires in an hour
        let ca_only = pki.crl_ext_config(
            "int",
            "issuingDistributionPoint=critical,@idp\n\
             [idp]\nfullname=URI:http://pki.example/int-ca.crl\nonlyCA=TRUE\n",
        );
        let ca_only = pki.crl(&ca_only, None); // #2, CA certificates only
        let root_crl = pki.crl(&pki.ca_config("root"), None);
        let store = [("root", &root[..], true), ("int", &int[..], false)];
        let crls = [complete, ca_only, root_crl];
        let now = SystemTime::now();

        let r = check(&leaf, &[], &store, Some(&crls), Purpose::Any, now);
        assert_valid(&r);
        assert!(
            matches!(&r.chain[0].revocation, Revocation::Good { crl }
                if crl.number.as_deref() == Some("1")),
            "{r:?}"
        );
        // Once the complete CRL has expired, the newer CA-only CRL does not vouch for the leaf.
        let r = check(&leaf, &[], &store, Some(&crls), Purpose::Any, now + DAY);
        assert_eq!(failure(&r).0, Failure::RevocationUnknown, "{r:?}");
        assert!(
            matches!(r.chain[0].revocation, Revocation::CrlExpired { .. }),
            "{r:?}"
        );
        assert!(
            r.chain[0]
                .ignored_crls
                .iter()
                .any(|i| i.crl.number.as_deref() == Some("2") && i.why.contains("scope")),
            "{r:?}"
        );
    }

    #[test]
    fn certificates_are_read_from_pem_bundles_and_der() {
        let pki = Pki::new();
        let (root, int, _) = ec_chain(&pki, SERVER);
        let root_pem = std::fs::read_to_string(pki.path("root.pem")).unwrap();
        let int_pem = std::fs::read_to_string(pki.path("int.pem")).unwrap();
        let key_pem = std::fs::read_to_string(pki.path("int.key")).unwrap();
        let bundle = format!("subject=CN=int\n{int_pem}{key_pem}\n{root_pem}");
        assert_eq!(
            read_certificates(bundle.as_bytes()).unwrap(),
            [int, root.clone()]
        );
        assert_eq!(read_certificates(&root).unwrap(), [root]);

        for bad in [
            &b"hello, world"[..],
            key_pem.as_bytes(),
            b"-----BEGIN CERTIFICATE-----\nAAAA\n",
        ] {
            let e = read_certificates(bad).unwrap_err().to_string();
            assert!(!e.contains('\n'), "{e}");
            assert!(!e.is_empty());
        }
        let e = read_certificates(b"hello").unwrap_err().to_string();
        assert!(e.starts_with("not a certificate file"), "{e}");
        let e = read_certificates(key_pem.as_bytes())
            .unwrap_err()
            .to_string();
        assert_eq!(e, "no CERTIFICATE block in the PEM file");
    }

    #[test]
    fn purposes_parse_and_print() {
        for p in [Purpose::TlsServer, Purpose::TlsClient, Purpose::Any] {
            assert_eq!(p.to_string().parse::<Purpose>(), Ok(p));
        }
        assert_eq!("TLS-Server".parse::<Purpose>(), Ok(Purpose::TlsServer));
        assert!("server".parse::<Purpose>().is_err());
    }

    #[test]
    fn a_target_that_does_not_parse_is_invalid_without_a_chain() {
        let r = check(
            b"\x30\x03\x02\x01\x01",
            &[],
            &[],
            None,
            Purpose::Any,
            SystemTime::now(),
        );
        assert_eq!(failure(&r).0, Failure::Malformed);
        assert!(r.chain.is_empty());
    }
}

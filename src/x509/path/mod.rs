//! Certification path validation (`certman verify`).
//!
//! rustls-webpki builds the chain from the store's trust anchors and checks signatures,
//! validity, basic constraints, extended key usage and name constraints. On every candidate path
//! webpki builds, this module then checks what webpki leaves out — the RFC 5280 rules of
//! `strict` (critical extensions, key identifiers, keyCertSign without cA, empty CA subjects,
//! malformed name constraints, an issuer that is not a CA, the trust anchor included), the
//! keyUsage extension of the path, the trust anchor's own validity, the longest path allowed
//! and, with crl-use=yes (or CRL files), revocation — and rejects the path if one fails (webpki
//! then tries the next candidate). When webpki refuses every path for a reason one of those
//! rules names, the rule is the reason given. The DNS name or IP address asked for is checked
//! against the certificate's subjectAltName (never its CN). It reports each certificate of the
//! chain with its revocation status, the one that decided, for `certman verify` to print.
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

mod engine;
mod node;
mod revocation;
mod strict;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::SystemTime;

use der::{Decode, Reader, SliceReader};
use spki::ObjectIdentifier;
use x509_cert::Certificate;

use crate::error::X509Error;

use self::engine::Engine;
use self::node::{unix, Fail, Node, PurposeEku};
use self::revocation::{uri_names, Crl};

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
    /// names the certificate's subjectAltName must hold (all of them)
    pub names: &'a [ReferenceName],
    /// the most intermediate CA certificates a path may have (OpenSSL's `-verify_depth`);
    /// `None`: webpki's limit of 6
    pub max_depth: Option<usize>,
}

/// A name the certificate must be valid for (`--dns-name`, `--ip`), matched against its
/// subjectAltName as webpki does (RFC 6125: DNS names with a leading `*.` wildcard label,
/// IP addresses of 4 or 16 octets; the subject's CN is never used).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReferenceName {
    /// a DNS name, checked for syntax
    Dns(String),
    /// an IPv4 or IPv6 address
    Ip(IpAddr),
}

impl ReferenceName {
    /// A DNS name: refused unless it is a syntactically valid host name (no wildcard).
    pub fn dns(name: &str) -> Result<Self, String> {
        if name.parse::<IpAddr>().is_ok() {
            return Err(format!(
                "'{name}' is an IP address, not a DNS name: use --ip"
            ));
        }
        rustls_pki_types::DnsName::try_from(name)
            .map_err(|_| format!("'{}' is not a valid DNS name", name.escape_debug()))?;
        Ok(ReferenceName::Dns(name.to_owned()))
    }
}

impl fmt::Display for ReferenceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReferenceName::Dns(n) => write!(f, "DNS name {n}"),
            ReferenceName::Ip(ip) => write!(f, "IP address {ip}"),
        }
    }
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
    /// the certificate is not valid for the DNS name or IP address asked for
    Name,
    /// every path is longer than the longest allowed (max-depth)
    Depth,
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
        return Err(X509Error::Malformed(format!(
            "{} bytes is larger than the {max} a certificate file may have",
            bytes.len()
        )));
    }
    if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return read_pem_certificates(bytes);
    }
    match Certificate::from_der(bytes) {
        Ok(_) => Ok(vec![bytes.to_vec()]),
        Err(e) => Err(X509Error::Malformed(format!(
            "not a certificate file: neither PEM nor a DER certificate ({e})"
        ))),
    }
}

fn read_pem_certificates(bytes: &[u8]) -> Result<Vec<Vec<u8>>, X509Error> {
    let labels = ["CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE"];
    let mut out = Vec::new();
    for (label, der) in pem_blocks(bytes, &labels)? {
        // OpenSSL's TRUSTED CERTIFICATE is the certificate followed by its trust settings.
        let cert = first_tlv(&der)
            .map_err(|e| X509Error::Malformed(format!("PEM block \"{label}\": {e}")))?
            .to_vec();
        Certificate::from_der(&cert).map_err(|e| {
            X509Error::Malformed(format!("PEM block \"{label}\" is not a certificate: {e}"))
        })?;
        out.push(cert);
    }
    if out.is_empty() {
        return Err(X509Error::Malformed(
            "no CERTIFICATE block in the PEM file".into(),
        ));
    }
    Ok(out)
}

/// Reads the CRLs of a `--crl` FILE: PEM with any number of `X509 CRL` blocks (other blocks are
/// ignored), or one DER CRL.
pub fn read_crls(bytes: &[u8]) -> Result<Vec<Vec<u8>>, X509Error> {
    type CertificateList = x509_cert::crl::CertificateList;
    let max = super::import::MAX_IMPORT_BYTES;
    if bytes.len() > max {
        return Err(X509Error::Malformed(format!(
            "{} bytes is larger than the {max} a CRL file may have",
            bytes.len()
        )));
    }
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return match CertificateList::from_der(bytes) {
            Ok(_) => Ok(vec![bytes.to_vec()]),
            Err(e) => Err(X509Error::Malformed(format!(
                "not a CRL file: neither PEM nor a DER CRL ({e})"
            ))),
        };
    }
    let mut out = Vec::new();
    for (label, der) in pem_blocks(bytes, &["X509 CRL"])? {
        CertificateList::from_der(&der).map_err(|e| {
            X509Error::Malformed(format!("PEM block \"{label}\" is not a CRL: {e}"))
        })?;
        out.push(der);
    }
    if out.is_empty() {
        return Err(X509Error::Malformed(
            "no X509 CRL block in the PEM file".into(),
        ));
    }
    Ok(out)
}

/// The blocks of a PEM file labelled one of `labels`: label and DER (other blocks, such as
/// keys with RFC 1421 headers, are skipped undecoded).
fn pem_blocks(bytes: &[u8], labels: &[&str]) -> Result<Vec<(String, Vec<u8>)>, X509Error> {
    let text = String::from_utf8_lossy(bytes);
    let mut rest: &str = &text;
    let mut out = Vec::new();
    while let Some(start) = rest.find("-----BEGIN ") {
        let block = &rest[start..];
        let label_end = block[11..]
            .find("-----")
            .ok_or_else(|| X509Error::Malformed("a PEM header is cut off".into()))?;
        let label = &block[11..11 + label_end];
        let end_marker = format!("-----END {label}-----");
        let end = block.find(&end_marker).ok_or_else(|| {
            X509Error::Malformed(format!("PEM block \"{label}\" has no end (truncated?)"))
        })?;
        let whole = &block[..end + end_marker.len()];
        rest = &block[end + end_marker.len()..];
        if !labels.contains(&label) {
            continue;
        }
        let (_, der) = der::pem::decode_vec(whole.as_bytes())
            .map_err(|e| X509Error::Malformed(format!("PEM block \"{label}\": {e}")))?;
        out.push((label.to_owned(), der));
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

#[cfg(test)]
mod tests;

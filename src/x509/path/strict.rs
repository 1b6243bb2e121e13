//! The RFC 5280 rules certman checks itself, on top of webpki, wherever webpki is lenient or
//! only answers with a generic error: rules a certificate breaks by itself (whatever its place
//! in a path) and the one rule of a certificate's place (an issuer must be a CA).
//!
//! Critical extensions certman understands (RFC 5280 §4.2: any other critical extension makes
//! the certificate invalid): basicConstraints, keyUsage, extKeyUsage, subjectAltName,
//! nameConstraints and cRLDistributionPoints — the set webpki processes. certman does no policy
//! processing (§6.1 policy tree), so a critical certificatePolicies, policyMappings,
//! policyConstraints or inhibitAnyPolicy is rejected, as webpki does too. The authority and
//! subject key identifiers are understood but must not be critical (§4.2.1.1, §4.2.1.2).
//!
//! Every certificate of a path is held to the same rules, the trust anchor included: a
//! `trusted=yes` certificate is any certificate the operator chose, and one that is not a CA
//! (or that breaks a rule as a certificate) must not become an issuer because it is trusted.

use std::collections::HashSet;

use const_oid::db::rfc5280 as oid;
use const_oid::AssociatedOid;
use der::asn1::AnyRef;
use der::{Decode, Reader, SliceReader, Tag, TagNumber, Tagged};
use spki::ObjectIdentifier;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages, NameConstraints};
use x509_cert::Certificate;

use super::super::CertificateInfo;
use super::node::Fail;
use super::Failure;

/// The critical extensions certman processes (see the module docs).
const UNDERSTOOD_CRITICAL: [ObjectIdentifier; 6] = [
    oid::ID_CE_BASIC_CONSTRAINTS,
    oid::ID_CE_KEY_USAGE,
    oid::ID_CE_EXT_KEY_USAGE,
    oid::ID_CE_SUBJECT_ALT_NAME,
    oid::ID_CE_NAME_CONSTRAINTS,
    oid::ID_CE_CRL_DISTRIBUTION_POINTS,
];

/// The reason text of a broken rule: `RFC 5280 §<section>: <what>`.
fn rule(kind: Failure, section: &str, what: String) -> Fail {
    (kind, format!("RFC 5280 §{section}: {what}"))
}

/// The first rule of RFC 5280 that `cert` breaks by itself, wherever it stands in a path.
pub(super) fn certificate_breach(cert: &Certificate, info: &CertificateInfo) -> Option<Fail> {
    let subject = &who(info);
    let tbs = cert.tbs_certificate();
    let extensions = tbs.extensions().map(|e| e.as_slice()).unwrap_or(&[]);
    let mut seen = HashSet::new();
    let mut basic = None;
    let mut key_usage = None;
    let mut san_critical = None;
    let mut name_constraints = None;
    for e in extensions {
        if !seen.insert(e.extn_id) {
            return Some(rule(
                Failure::Malformed,
                "4.2",
                format!(
                    "{subject} holds the extension {} more than once",
                    extension_name(e.extn_id)
                ),
            ));
        }
        let value = e.extn_value.as_bytes();
        match e.extn_id {
            id if id == oid::ID_CE_AUTHORITY_KEY_IDENTIFIER && e.critical => {
                return Some(rule(
                    Failure::Malformed,
                    "4.2.1.1",
                    format!("the authority key identifier extension is critical in {subject}"),
                ));
            }
            id if id == oid::ID_CE_SUBJECT_KEY_IDENTIFIER && e.critical => {
                return Some(rule(
                    Failure::Malformed,
                    "4.2.1.2",
                    format!("the subject key identifier extension is critical in {subject}"),
                ));
            }
            id if e.critical && !UNDERSTOOD_CRITICAL.contains(&id) => {
                return Some(rule(
                    Failure::Malformed,
                    "4.2",
                    format!(
                        "{subject} has a critical extension certman does not process: {}",
                        extension_name(id)
                    ),
                ));
            }
            id if id == BasicConstraints::OID => {
                basic = Some(BasicConstraints::from_der(value).ok()?);
            }
            id if id == KeyUsage::OID => key_usage = Some(KeyUsage::from_der(value).ok()?.0),
            id if id == oid::ID_CE_SUBJECT_ALT_NAME => san_critical = Some(e.critical),
            id if id == NameConstraints::OID => name_constraints = Some((e.critical, value)),
            _ => {}
        }
    }
    let is_ca = basic.as_ref().is_some_and(|b| b.ca);
    if basic
        .as_ref()
        .is_some_and(|b| !b.ca && b.path_len_constraint.is_some())
    {
        return Some(rule(
            Failure::BasicConstraints,
            "4.2.1.9",
            format!("{subject} has a pathLenConstraint but basicConstraints cA is not TRUE"),
        ));
    }
    if let Some(ku) = key_usage {
        if ku.is_empty() {
            return Some(rule(
                Failure::KeyUsage,
                "4.2.1.3",
                format!("the key usage extension of {subject} has no bit set"),
            ));
        }
        if ku.contains(KeyUsages::KeyCertSign) && !is_ca {
            return Some(rule(
                Failure::KeyUsage,
                "4.2.1.3",
                format!(
                    "{subject} asserts keyCertSign but is not a CA (basicConstraints cA is not \
                     TRUE, §4.2.1.9)"
                ),
            ));
        }
    }
    let subject_empty = tbs.subject().is_empty();
    if subject_empty && is_ca {
        return Some(rule(
            Failure::Malformed,
            "4.1.2.6",
            format!(
                "CA certificate serial {} from {} has an empty subject",
                info.serial_hex, info.issuer
            ),
        ));
    }
    if subject_empty && san_critical != Some(true) {
        let what = match san_critical {
            None => "the subject is empty and there is no subjectAltName",
            Some(_) => "the subject is empty and the subjectAltName extension is not critical",
        };
        return Some(rule(
            Failure::Malformed,
            "4.2.1.6",
            format!("{subject}: {what}"),
        ));
    }
    if let Some((critical, value)) = name_constraints {
        if let Some(what) = name_constraints_breach(critical, is_ca, value) {
            return Some(rule(
                Failure::NameConstraints,
                "4.2.1.10",
                format!("the name constraints of {subject} {what}"),
            ));
        }
    }
    None
}

/// The certificate as reasons name it: its subject, or its serial when the subject is empty.
pub(super) fn who(info: &CertificateInfo) -> String {
    if info.subject.is_empty() {
        format!(
            "serial {} from {} (empty subject)",
            info.serial_hex, info.issuer
        )
    } else {
        info.subject.clone()
    }
}

/// The rule of an issuer's place: every certificate above the first of a path (the trust
/// anchor included, see the module docs) signs certificates, so it must be a CA (§4.2.1.9,
/// §6.1.4 (k)).
pub(super) fn issuer_breach(is_ca: bool, subject: &str) -> Option<Fail> {
    (!is_ca).then(|| {
        rule(
            Failure::BasicConstraints,
            "4.2.1.9",
            format!("{subject} issues certificates but is not a CA (no basicConstraints cA=TRUE)"),
        )
    })
}

/// What is wrong with a nameConstraints extension (RFC 5280 §4.2.1.10), as the end of a
/// sentence "the name constraints of X …".
fn name_constraints_breach(critical: bool, is_ca: bool, value: &[u8]) -> Option<String> {
    if !is_ca {
        return Some(
            "are in a certificate that is not a CA (basicConstraints cA is not TRUE)".into(),
        );
    }
    if !critical {
        return Some("are not marked critical".into());
    }
    let parts = match raw_subtrees(value) {
        Ok(p) => p,
        Err(e) => return Some(format!("cannot be decoded ({e})")),
    };
    if parts.is_empty() {
        return Some("are empty: neither permittedSubtrees nor excludedSubtrees".into());
    }
    for (which, subtrees) in &parts {
        if subtrees.is_empty() {
            return Some(format!("have an empty {which}"));
        }
        if subtrees.iter().any(|&fields| fields > 1) {
            return Some(format!(
                "give a minimum or maximum in {which} (minimum MUST be zero, maximum absent)"
            ));
        }
    }
    let nc = match NameConstraints::from_der(value) {
        Ok(nc) => nc,
        Err(e) => return Some(format!("cannot be decoded ({e})")),
    };
    let bases = nc
        .permitted_subtrees
        .iter()
        .chain(nc.excluded_subtrees.iter())
        .flatten()
        .map(|s| &s.base);
    for base in bases {
        if let GeneralName::IpAddress(ip) = base {
            let b = ip.as_bytes();
            if !matches!(b.len(), 8 | 32) {
                return Some(format!(
                    "hold an iPAddress of {} octets (8 for IPv4, 32 for IPv6: address and mask)",
                    b.len()
                ));
            }
            if !contiguous_mask(&b[b.len() / 2..]) {
                return Some("hold an iPAddress whose mask is not a CIDR prefix".into());
            }
        }
    }
    None
}

/// The subtrees of a NameConstraints value as written: `(field name, number of fields of each
/// GeneralSubtree)` for permittedSubtrees and excludedSubtrees, where present. The typed
/// decoder cannot tell an encoded `minimum` of 0 from an absent one.
fn raw_subtrees(value: &[u8]) -> Result<Vec<(&'static str, Vec<usize>)>, der::Error> {
    let outer = single_tlv(value)?;
    outer.tag().assert_eq(Tag::Sequence)?;
    let mut out = Vec::new();
    for part in tlvs(outer.value())? {
        let which = match part.tag() {
            Tag::ContextSpecific {
                constructed: true,
                number: TagNumber(0),
            } => "permittedSubtrees",
            Tag::ContextSpecific {
                constructed: true,
                number: TagNumber(1),
            } => "excludedSubtrees",
            other => return Err(other.unexpected_error(None).to_error()),
        };
        let mut fields = Vec::new();
        for subtree in tlvs(part.value())? {
            subtree.tag().assert_eq(Tag::Sequence)?;
            fields.push(tlvs(subtree.value())?.len());
        }
        out.push((which, fields));
    }
    Ok(out)
}

fn single_tlv(bytes: &[u8]) -> Result<AnyRef<'_>, der::Error> {
    let mut r = SliceReader::new(bytes)?;
    let any = AnyRef::decode(&mut r)?;
    r.finish()?;
    Ok(any)
}

fn tlvs(bytes: &[u8]) -> Result<Vec<AnyRef<'_>>, der::Error> {
    let mut r = SliceReader::new(bytes)?;
    let mut out = Vec::new();
    while !r.is_finished() {
        out.push(AnyRef::decode(&mut r)?);
    }
    Ok(out)
}

/// Ones then zeros only (RFC 4632 prefix).
fn contiguous_mask(mask: &[u8]) -> bool {
    let mut zero_seen = false;
    for byte in mask {
        for bit in (0..8).rev() {
            let one = byte & (1 << bit) != 0;
            if one && zero_seen {
                return false;
            }
            zero_seen |= !one;
        }
    }
    true
}

/// An extension's RFC 5280 name, or its OID.
fn extension_name(id: ObjectIdentifier) -> String {
    let known = [
        (oid::ID_CE_CERTIFICATE_POLICIES, "certificatePolicies"),
        (oid::ID_CE_POLICY_MAPPINGS, "policyMappings"),
        (oid::ID_CE_POLICY_CONSTRAINTS, "policyConstraints"),
        (oid::ID_CE_INHIBIT_ANY_POLICY, "inhibitAnyPolicy"),
        (oid::ID_CE_ISSUER_ALT_NAME, "issuerAltName"),
        (
            oid::ID_CE_SUBJECT_DIRECTORY_ATTRIBUTES,
            "subjectDirectoryAttributes",
        ),
        (oid::ID_CE_FRESHEST_CRL, "freshestCRL"),
        (oid::ID_PE_AUTHORITY_INFO_ACCESS, "authorityInfoAccess"),
        (oid::ID_PE_SUBJECT_INFO_ACCESS, "subjectInfoAccess"),
        (
            oid::ID_CE_AUTHORITY_KEY_IDENTIFIER,
            "authorityKeyIdentifier",
        ),
        (oid::ID_CE_SUBJECT_KEY_IDENTIFIER, "subjectKeyIdentifier"),
        (oid::ID_CE_BASIC_CONSTRAINTS, "basicConstraints"),
        (oid::ID_CE_KEY_USAGE, "keyUsage"),
        (oid::ID_CE_EXT_KEY_USAGE, "extKeyUsage"),
        (oid::ID_CE_SUBJECT_ALT_NAME, "subjectAltName"),
        (oid::ID_CE_NAME_CONSTRAINTS, "nameConstraints"),
        (oid::ID_CE_CRL_DISTRIBUTION_POINTS, "cRLDistributionPoints"),
    ];
    known
        .iter()
        .find(|(o, _)| *o == id)
        .map(|(_, name)| format!("{name} ({id})"))
        .unwrap_or_else(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_are_prefixes() {
        assert!(contiguous_mask(&[0xff, 0xff, 0xff, 0x00]));
        assert!(contiguous_mask(&[0xff, 0xf0, 0, 0]));
        assert!(contiguous_mask(&[0, 0, 0, 0]));
        assert!(!contiguous_mask(&[0xff, 0x00, 0xff, 0x00]));
        assert!(!contiguous_mask(&[0x0f, 0, 0, 0]));
    }
}

//! The engine: webpki builds candidate paths; certman's own checks (the RFC 5280 rules of
//! `strict`, keyUsage, the anchor's validity, the longest path, revocation) accept or reject
//! each; the names asked for; the report of the chain.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor};
use webpki::{EndEntityCert, VerifiedPath};
use x509_cert::ext::pkix::KeyUsages;

use super::*;
use crate::keys::KeyAlgorithm;

pub(super) struct Engine<'a> {
    /// index 0 is the target
    pub(super) nodes: Vec<Node<'a>>,
    pub(super) crls: Option<Vec<Crl<'a>>>,
    pub(super) purpose: Purpose,
    pub(super) now: SystemTime,
    pub(super) names: &'a [ReferenceName],
    pub(super) max_depth: Option<usize>,
    /// whether CRL k's signature verifies with node i's key, by (k, i)
    pub(super) crl_signatures: RefCell<HashMap<(usize, usize), bool>>,
}

/// A failure of certman's checks on a candidate path, and that path (target … anchor).
pub(super) type PathFail = (Fail, Vec<usize>);

impl<'a> Engine<'a> {
    pub(super) fn new(input: &PathInput<'a>, mut target: Node<'a>) -> Self {
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
            names: input.names,
            max_depth: input.max_depth,
            crl_signatures: RefCell::new(HashMap::new()),
        }
    }

    pub(super) fn run(&self) -> PathReport {
        let mut report = if self.nodes[0].trusted {
            self.trusted_target()
        } else {
            self.path_report()
        };
        if report.is_valid() {
            if let Some((kind, reason)) = self.name_failure() {
                report.verdict = Verdict::Invalid { kind, reason };
            }
        }
        report
    }

    /// The names asked for (`--dns-name`, `--ip`) against the target's subjectAltName, by
    /// webpki's matcher: the first one it is not valid for.
    pub(super) fn name_failure(&self) -> Option<Fail> {
        if self.names.is_empty() {
            return None;
        }
        let target = &self.nodes[0];
        let der = CertificateDer::from(target.der);
        let ee = match EndEntityCert::try_from(&der) {
            Ok(ee) => ee,
            Err(e) => {
                return Some((
                    Failure::Malformed,
                    format!("the certificate's names cannot be read ({e:?})"),
                ))
            }
        };
        for name in self.names {
            let server = match name {
                ReferenceName::Dns(n) => ServerName::try_from(n.as_str()).ok(),
                ReferenceName::Ip(ip) => Some(ServerName::IpAddress((*ip).into())),
            };
            let valid = server.is_some_and(|s| ee.verify_is_valid_for_subject_name(&s).is_ok());
            if !valid {
                let san = &target.info.subject_alt_name;
                let held = if san.is_empty() {
                    "it has no subjectAltName (the subject's CN is not used)".to_owned()
                } else {
                    format!("its subjectAltName holds {san}")
                };
                return Some((Failure::Name, format!("not valid for the {name}: {held}")));
            }
        }
        None
    }

    /// The path webpki and certman's own checks accept, or why there is none.
    pub(super) fn path_report(&self) -> PathReport {
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
                // webpki refuses some breaches of RFC 5280 itself (an unknown critical
                // extension, an issuer that is not a CA) with a generic error: the rule, if
                // the chain shows one, says more.
                let (kind, reason) = match self.strict_path(&chain) {
                    Err(rule) => rule,
                    Ok(()) => self.explain(&err, &chain),
                };
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
    pub(super) fn trusted_target(&self) -> PathReport {
        let mut chain = self.report_chain(&[0], true);
        let mut failure = self.nodes[0].breach.clone().or_else(|| self.validity(0));
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
    pub(super) fn issuer_of_target(&self) -> Option<usize> {
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
    pub(super) fn webpki_path(&self) -> (Result<Vec<usize>, webpki::Error>, Option<PathFail>) {
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
    pub(super) fn own_checks(&self, chain: &[usize]) -> Result<(), Fail> {
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
        let intermediates = chain.len().saturating_sub(2);
        if let Some(max) = self.max_depth.filter(|&max| intermediates > max) {
            return Err((
                Failure::Depth,
                format!(
                    "the chain has {intermediates} intermediate CA certificate{}, more than \
                     max-depth={max}",
                    if intermediates == 1 { "" } else { "s" }
                ),
            ));
        }
        self.strict_path(chain)?;
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

    /// The RFC 5280 rules of `strict` on a chain (target … issuers): every certificate by
    /// itself, and every one above the first as an issuer; the first breach from the target
    /// up.
    pub(super) fn strict_path(&self, chain: &[usize]) -> Result<(), Fail> {
        for (pos, &i) in chain.iter().enumerate() {
            let n = &self.nodes[i];
            if pos > 0 {
                if let Some(f) = super::strict::issuer_breach(n.info.is_ca, &n.who()) {
                    return Err(f);
                }
            }
            if let Some(f) = &n.breach {
                return Err(f.clone());
            }
        }
        Ok(())
    }

    /// RFC 5280 §4.2.1.3 for the TLS purposes: the key signs (digitalSignature), or, for a
    /// server, an RSA key is used for key transport (keyEncipherment); an EC key may do
    /// static ECDH (keyAgreement) for either side.
    pub(super) fn leaf_key_usage(&self, leaf: &Node<'_>) -> Result<(), Fail> {
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
    pub(super) fn validity(&self, i: usize) -> Option<Fail> {
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
                    crate::x509::routeros_time(n.info.not_before)
                ),
            ))
        } else if now > unix(n.info.not_after) {
            Some((
                Failure::Expired,
                format!(
                    "{subject}expired at {}",
                    crate::x509::routeros_time(n.info.not_after)
                ),
            ))
        } else {
            None
        }
    }

    /// What chains by name and signature from the target, preferring trusted and currently
    /// valid issuers; stops at a trusted certificate.
    pub(super) fn best_effort_chain(&self) -> Vec<usize> {
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

    pub(super) fn report_chain(&self, chain: &[usize], anchored: bool) -> Vec<ChainCert> {
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

    /// webpki's error as a one-line reason, naming the certificate where the chain shows it.
    pub(super) fn explain(&self, err: &webpki::Error, chain: &[usize]) -> Fail {
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
                            crate::x509::routeros_time(
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
                            crate::x509::routeros_time(
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
            E::NameConstraintViolation => {
                let target = &self.nodes[chain[0]];
                let names = if target.info.subject_alt_name.is_empty() {
                    String::new()
                } else {
                    format!(" {}", target.info.subject_alt_name)
                };
                let by = chain
                    .iter()
                    .skip(1)
                    .map(|&i| &self.nodes[i])
                    .find(|n| n.name_constraints)
                    .map(|n| format!(" of {}", n.who()))
                    .unwrap_or_default();
                (
                    Failure::NameConstraints,
                    format!(
                        "RFC 5280 §4.2.1.10: the name constraints{by} exclude a name of the \
                         chain (certificate {}{names})",
                        target.who()
                    ),
                )
            }
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
                Failure::Depth,
                "the chain is longer than 6 intermediate CAs".to_owned(),
            ),
            other => (
                Failure::Other,
                format!("rejected by the validator ({other:?})"),
            ),
        }
    }
}

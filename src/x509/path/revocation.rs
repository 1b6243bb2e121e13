//! Revocation by certman's own rules (see the module docs of `path`): the CRLs held, their
//! scope and signer, and the status of a certificate of a candidate path.

use std::time::SystemTime;

use const_oid::AssociatedOid;
use der::{Decode, Encode};
use webpki::OwnedCertRevocationList;
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{CrlNumber, CrlReason, IssuingDistributionPoint};

use super::*;
use crate::keys::verify::verify_signature;
use crate::keys::SignatureScheme;

/// A CRL certman holds.
pub(super) struct Crl<'a> {
    pub(super) list: CertificateList,
    pub(super) issuer_der: Vec<u8>,
    pub(super) tbs: &'a [u8],
    pub(super) scheme: Option<SignatureScheme>,
    /// cRLNumber, big-endian without leading zeros
    pub(super) number: Option<Vec<u8>>,
    pub(super) this_update: SystemTime,
    pub(super) next_update: Option<SystemTime>,
    /// the issuingDistributionPoint extension: which certificates it covers (`None`: all)
    pub(super) scope: Option<CrlScope>,
    /// whether webpki's CRL parser accepts it: a check that it is a complete CRL certman can
    /// use (it refuses v1 CRLs, CRLs without nextUpdate, delta and indirect CRLs, CRLs by
    /// reason, unknown critical extensions, …)
    pub(super) supported: Result<(), webpki::Error>,
}

/// A CRL's issuingDistributionPoint, as far as it limits which certificates the CRL covers.
pub(super) struct CrlScope {
    pub(super) only_user_certs: bool,
    pub(super) only_ca_certs: bool,
    /// the URIs of its full name; `None` without one
    pub(super) uris: Option<Vec<String>>,
}

/// The URIs among general names.
pub(super) fn uri_names(names: &[GeneralName]) -> Vec<String> {
    names
        .iter()
        .filter_map(|n| match n {
            GeneralName::UniformResourceIdentifier(u) => Some(u.to_string()),
            _ => None,
        })
        .collect()
}

impl<'a> Crl<'a> {
    pub(super) fn parse(der: &'a [u8]) -> Option<Self> {
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
            tbs: crate::x509::signed_part(der).ok()?,
            scheme: SignatureScheme::from_algorithm_identifier(&list.signature_algorithm),
            number,
            this_update: tbs.this_update.to_system_time(),
            next_update: tbs.next_update.map(|t| t.to_system_time()),
            scope,
            supported,
            list,
        })
    }

    pub(super) fn signed_by(&self, issuer: &Node<'_>) -> bool {
        let Some(sig) = self.list.signature.as_bytes() else {
            return false;
        };
        self.scheme
            .is_some_and(|s| verify_signature(&issuer.info.public_key, s, self.tbs, sig).is_ok())
    }

    /// Why the CRL does not cover `cert`, if its issuing distribution point limits its scope
    /// (RFC 5280 §5.2.5, as webpki reads it: with distribution points in both, one URI must
    /// match).
    pub(super) fn out_of_scope(&self, cert: &Node<'_>) -> Option<&'static str> {
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
    pub(super) fn expired(&self, now: SystemTime) -> bool {
        self.next_update
            .is_some_and(|n| unix(now).as_secs() >= unix(n).as_secs())
    }

    /// Newer CRLs sort higher: by cRLNumber, then thisUpdate.
    pub(super) fn order_key(&self) -> (Option<(usize, &[u8])>, SystemTime) {
        (
            self.number.as_deref().map(|n| (n.len(), n)),
            self.this_update,
        )
    }

    pub(super) fn crl_ref(&self) -> CrlRef {
        CrlRef {
            number: self.number.as_deref().map(number_text),
            this_update: self.this_update,
            next_update: self.next_update,
        }
    }

    /// The entry for `serial`: its revocationDate and reasonCode.
    pub(super) fn entry(&self, serial: &[u8]) -> Option<(SystemTime, Option<String>)> {
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
            .map(|r| crate::x509::crl::reason_name(r).to_owned());
        Some((e.revocation_date.to_system_time(), reason))
    }
}

pub(super) fn number_text(n: &[u8]) -> String {
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

impl Engine<'_> {
    /// The failure a revocation status means for `chain[pos]` (issued by `chain[pos + 1]`):
    /// revoked, or status unknown (no usable CRL, or the newest has expired).
    pub(super) fn revocation_failure(
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
                    format!("{what} revoked at {}{why}", crate::x509::routeros_time(*at)),
                ))
            }
            Revocation::CrlExpired { crl } => Some((
                Failure::RevocationUnknown,
                format!(
                    "revocation status unknown: the CRL of {issuer} expired at {}",
                    crl.next_update
                        .map(crate::x509::routeros_time)
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

    /// Whether CRL `k` is signed with the key of node `i` (cached: paths share issuers).
    pub(super) fn crl_signed_by(&self, k: usize, i: usize) -> bool {
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
    pub(super) fn revocation(
        &self,
        cert: usize,
        issuer: Option<usize>,
    ) -> (Revocation, Vec<IgnoredCrl>) {
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
        let hold = crate::x509::crl::reason_name(CrlReason::CertificateHold);
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
}

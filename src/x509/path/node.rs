//! The candidate certificates of a path, the EKU policy given to webpki, and time.

use std::time::{Duration, SystemTime};

use const_oid::AssociatedOid;
use der::flagset::FlagSet;
use der::{Decode, Encode};
use rustls_pki_types::UnixTime;
use spki::ObjectIdentifier;
use webpki::{ExtendedKeyUsageValidator, KeyPurposeIdIter};
use x509_cert::ext::pkix::name::DistributionPointName;
use x509_cert::ext::pkix::{CrlDistributionPoints, ExtendedKeyUsage, KeyUsage, KeyUsages};
use x509_cert::Certificate;

use super::super::CertificateInfo;
use super::*;
use crate::error::X509Error;
use crate::keys::verify::verify_signature;
use crate::keys::{KeyAlgorithm, SignatureScheme};

/// A certificate of the candidate pool: the target, FILE's extras, the store.
pub(super) struct Node<'a> {
    pub(super) der: &'a [u8],
    pub(super) info: CertificateInfo,
    pub(super) subject_der: Vec<u8>,
    pub(super) issuer_der: Vec<u8>,
    pub(super) serial: Vec<u8>,
    pub(super) tbs: &'a [u8],
    pub(super) scheme: Option<SignatureScheme>,
    pub(super) signature: Vec<u8>,
    pub(super) key_usage: Option<FlagSet<KeyUsages>>,
    pub(super) eku: Option<Vec<ObjectIdentifier>>,
    /// the URIs of its CRL distribution points that a CRL's issuing distribution point may
    /// match (full names, no cRLIssuer, no reasons); `None` without the extension
    pub(super) cdp_uris: Option<Vec<String>>,
    /// whether it has a nameConstraints extension
    pub(super) name_constraints: bool,
    /// the first RFC 5280 rule it breaks by itself (see `strict`)
    pub(super) breach: Option<Fail>,
    pub(super) store_name: Option<&'a str>,
    pub(super) trusted: bool,
}

impl<'a> Node<'a> {
    pub(super) fn parse(der: &'a [u8]) -> Result<Self, X509Error> {
        let info = crate::x509::inspect_certificate(der)?;
        let cert = Certificate::from_der(der)?;
        let tbs = cert.tbs_certificate();
        let mut key_usage = None;
        let mut eku = None;
        let mut cdp_uris = None;
        let mut name_constraints = false;
        for e in tbs.extensions().map(|e| e.as_slice()).unwrap_or(&[]) {
            let v = e.extn_value.as_bytes();
            if e.extn_id == KeyUsage::OID {
                key_usage = Some(KeyUsage::from_der(v)?.0);
            } else if e.extn_id == ExtendedKeyUsage::OID {
                eku = Some(ExtendedKeyUsage::from_der(v)?.0);
            } else if e.extn_id == const_oid::db::rfc5280::ID_CE_NAME_CONSTRAINTS {
                name_constraints = true;
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
        let breach = super::strict::certificate_breach(&cert, &info);
        Ok(Node {
            der,
            breach,
            name_constraints,
            subject_der: tbs.subject().to_der()?,
            issuer_der: tbs.issuer().to_der()?,
            serial: tbs.serial_number().as_bytes().to_vec(),
            tbs: crate::x509::signed_part(der)?,
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
    pub(super) fn signed_by(&self, issuer: &Node<'_>) -> bool {
        self.scheme.is_some_and(|s| {
            verify_signature(&issuer.info.public_key, s, self.tbs, &self.signature).is_ok()
        })
    }

    /// Subject and issuer are the same name (a self-signed root, or a CA's key rollover).
    pub(super) fn self_issued(&self) -> bool {
        self.subject_der == self.issuer_der
    }

    pub(super) fn may_sign_crls(&self) -> bool {
        self.key_usage
            .is_none_or(|ku| ku.contains(KeyUsages::CRLSign))
    }

    /// The certificate as reasons name it (its subject, or its serial when that is empty).
    pub(super) fn who(&self) -> String {
        super::strict::who(&self.info)
    }

    pub(super) fn short_rsa_bits(&self) -> Option<u32> {
        match self.info.key_algorithm {
            Some(KeyAlgorithm::Rsa { bits }) if bits < 2048 => Some(bits),
            _ => None,
        }
    }
}

pub(super) fn unix(t: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO),
    )
}

pub(super) type Fail = (Failure, String);

/// The purpose as webpki's EKU policy. `Any` accepts every EKU extension (webpki 0.103's
/// `ExtendedKeyUsageValidator` lets the caller decide); the TLS purposes are webpki's own
/// `KeyUsage::server_auth()` / `client_auth()`: required if the extension is present.
pub(super) struct PurposeEku(pub(super) Purpose);

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

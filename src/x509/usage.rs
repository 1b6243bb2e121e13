//! `key-usage=` values: RFC 5280 §4.2.1.3 keyUsage bits under their RouterOS names, plus the
//! extended key usages (§4.2.1.12) RouterOS users ask for by name.

use std::fmt;
use std::str::FromStr;

use const_oid::db::rfc5280;
use der::flagset::FlagSet;
use spki::ObjectIdentifier;
use x509_cert::ext::pkix::KeyUsages;

/// One `key-usage=` item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyUsageName {
    /// digitalSignature
    DigitalSignature,
    /// nonRepudiation / contentCommitment
    ContentCommitment,
    /// keyEncipherment
    KeyEncipherment,
    /// dataEncipherment
    DataEncipherment,
    /// keyAgreement
    KeyAgreement,
    /// keyCertSign
    KeyCertSign,
    /// cRLSign
    CrlSign,
    /// encipherOnly
    EncipherOnly,
    /// decipherOnly
    DecipherOnly,
    /// EKU id-kp-serverAuth
    TlsServer,
    /// EKU id-kp-clientAuth
    TlsClient,
    /// EKU id-kp-codeSigning
    CodeSign,
    /// EKU id-kp-emailProtection
    EmailProtect,
    /// EKU id-kp-timeStamping
    Timestamp,
    /// EKU id-kp-OCSPSigning
    OcspSign,
}

const ALL: [KeyUsageName; 15] = [
    KeyUsageName::DigitalSignature,
    KeyUsageName::ContentCommitment,
    KeyUsageName::KeyEncipherment,
    KeyUsageName::DataEncipherment,
    KeyUsageName::KeyAgreement,
    KeyUsageName::KeyCertSign,
    KeyUsageName::CrlSign,
    KeyUsageName::EncipherOnly,
    KeyUsageName::DecipherOnly,
    KeyUsageName::TlsServer,
    KeyUsageName::TlsClient,
    KeyUsageName::CodeSign,
    KeyUsageName::EmailProtect,
    KeyUsageName::Timestamp,
    KeyUsageName::OcspSign,
];

impl KeyUsageName {
    /// The RouterOS name.
    pub fn as_str(self) -> &'static str {
        use KeyUsageName::*;
        match self {
            DigitalSignature => "digital-signature",
            ContentCommitment => "content-commitment",
            KeyEncipherment => "key-encipherment",
            DataEncipherment => "data-encipherment",
            KeyAgreement => "key-agreement",
            KeyCertSign => "key-cert-sign",
            CrlSign => "crl-sign",
            EncipherOnly => "encipher-only",
            DecipherOnly => "decipher-only",
            TlsServer => "tls-server",
            TlsClient => "tls-client",
            CodeSign => "code-sign",
            EmailProtect => "email-protect",
            Timestamp => "timestamp",
            OcspSign => "ocsp-sign",
        }
    }

    /// The keyUsage bit, for the RFC 5280 names.
    pub fn key_usage_bit(self) -> Option<KeyUsages> {
        use KeyUsageName::*;
        Some(match self {
            DigitalSignature => KeyUsages::DigitalSignature,
            ContentCommitment => KeyUsages::NonRepudiation,
            KeyEncipherment => KeyUsages::KeyEncipherment,
            DataEncipherment => KeyUsages::DataEncipherment,
            KeyAgreement => KeyUsages::KeyAgreement,
            KeyCertSign => KeyUsages::KeyCertSign,
            CrlSign => KeyUsages::CRLSign,
            EncipherOnly => KeyUsages::EncipherOnly,
            DecipherOnly => KeyUsages::DecipherOnly,
            _ => return None,
        })
    }

    /// The extended key usage OID, for the EKU names.
    pub fn eku_oid(self) -> Option<ObjectIdentifier> {
        use KeyUsageName::*;
        Some(match self {
            TlsServer => rfc5280::ID_KP_SERVER_AUTH,
            TlsClient => rfc5280::ID_KP_CLIENT_AUTH,
            CodeSign => rfc5280::ID_KP_CODE_SIGNING,
            EmailProtect => rfc5280::ID_KP_EMAIL_PROTECTION,
            Timestamp => rfc5280::ID_KP_TIME_STAMPING,
            OcspSign => rfc5280::ID_KP_OCSP_SIGNING,
            _ => return None,
        })
    }
}

impl fmt::Display for KeyUsageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyUsageName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        if s == "non-repudiation" {
            return Ok(KeyUsageName::ContentCommitment);
        }
        ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            format!(
                "unknown key-usage '{s}' (one of: {})",
                ALL.iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

/// A set of usages, kept sorted and without duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyUsageSet(Vec<KeyUsageName>);

impl KeyUsageSet {
    /// From names.
    pub fn new(mut v: Vec<KeyUsageName>) -> Self {
        v.sort();
        v.dedup();
        KeyUsageSet(v)
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether it holds `k`.
    pub fn contains(&self, k: KeyUsageName) -> bool {
        self.0.contains(&k)
    }

    /// Adds `k`.
    pub fn insert(&mut self, k: KeyUsageName) {
        if !self.contains(k) {
            self.0.push(k);
            self.0.sort();
        }
    }

    /// The items.
    pub fn iter(&self) -> impl Iterator<Item = KeyUsageName> + '_ {
        self.0.iter().copied()
    }

    /// The keyUsage flag set.
    pub fn key_usage_flags(&self) -> FlagSet<KeyUsages> {
        self.iter()
            .filter_map(KeyUsageName::key_usage_bit)
            .fold(FlagSet::default(), |acc, b| acc | b)
    }

    /// The EKU OIDs.
    pub fn eku_oids(&self) -> Vec<ObjectIdentifier> {
        self.iter().filter_map(KeyUsageName::eku_oid).collect()
    }

    /// Rebuilds the names from a certificate's keyUsage flags and EKU OIDs.
    pub fn from_extensions(flags: FlagSet<KeyUsages>, ekus: &[ObjectIdentifier]) -> Self {
        let v = ALL
            .into_iter()
            .filter(|k| match (k.key_usage_bit(), k.eku_oid()) {
                (Some(bit), _) => flags.contains(bit),
                (_, Some(oid)) => ekus.contains(&oid),
                _ => false,
            })
            .collect();
        KeyUsageSet::new(v)
    }
}

impl FromStr for KeyUsageSet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Ok(KeyUsageSet::default());
        }
        s.split(',')
            .map(str::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(KeyUsageSet::new)
    }
}

impl fmt::Display for KeyUsageSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, k) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(k.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5280_names_map_to_bits_and_ekus_to_oids() {
        let set: KeyUsageSet = "digital-signature,key-encipherment,tls-server,tls-client"
            .parse()
            .unwrap();
        let flags = set.key_usage_flags();
        assert!(flags.contains(KeyUsages::DigitalSignature));
        assert!(flags.contains(KeyUsages::KeyEncipherment));
        assert!(!flags.contains(KeyUsages::KeyCertSign));
        assert_eq!(
            set.eku_oids(),
            vec![rfc5280::ID_KP_SERVER_AUTH, rfc5280::ID_KP_CLIENT_AUTH]
        );
        assert_eq!(KeyUsageSet::from_extensions(flags, &set.eku_oids()), set);
    }

    #[test]
    fn every_name_round_trips() {
        for k in ALL {
            assert_eq!(k.as_str().parse::<KeyUsageName>().unwrap(), k);
            assert!(k.key_usage_bit().is_some() != k.eku_oid().is_some());
        }
        assert_eq!(
            "non-repudiation".parse::<KeyUsageName>().unwrap(),
            KeyUsageName::ContentCommitment
        );
    }

    #[test]
    fn bad_names_and_duplicates() {
        assert!("digital-signature,bogus".parse::<KeyUsageSet>().is_err());
        let s: KeyUsageSet = "crl-sign,key-cert-sign,crl-sign".parse().unwrap();
        assert_eq!(s.to_string(), "key-cert-sign,crl-sign");
        assert!("".parse::<KeyUsageSet>().unwrap().is_empty());
    }
}

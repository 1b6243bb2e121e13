//! Certificate templates (`add`): their RouterOS properties, validation, and resolution into
//! what signing needs.

use serde::{Deserialize, Serialize};
use x509_cert::ext::pkix::name::GeneralName;

use crate::error::{ManagerError, Result};
use crate::keys::{EcCurve, HashAlgorithm, KeyAlgorithm, RSA_SIZES};
use crate::x509::{parse_subject_alt_names, KeyUsageName, KeyUsageSet, SubjectFields};

/// Default `days-valid` (RouterOS).
pub const DEFAULT_DAYS_VALID: u32 = 365;

/// A template's properties as stored (JSON, RouterOS names). Absent = not set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TemplateProperties {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_alt_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_size: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_valid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_usage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest_algorithm: Option<String>,
}

/// The template properties `add` and `set` take, besides `name` and `copy-from`.
pub const TEMPLATE_PROPERTIES: [&str; 13] = [
    "common-name",
    "country",
    "state",
    "locality",
    "organization",
    "unit",
    "subject-alt-name",
    "key-type",
    "key-size",
    "days-valid",
    "key-usage",
    "trusted",
    "digest-algorithm",
];

/// Parses RouterOS `yes`/`no` (also `true`/`false`).
pub fn parse_yes_no(property: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(ManagerError::InvalidValue(format!(
            "{property}={value}: expected yes or no"
        ))),
    }
}

fn invalid(property: &str, value: &str, why: impl std::fmt::Display) -> ManagerError {
    ManagerError::InvalidValue(format!("{property}={value}: {why}"))
}

impl TemplateProperties {
    /// Sets one property from its RouterOS text; an empty value clears it.
    pub fn set(&mut self, property: &str, value: &str) -> Result<()> {
        let text = || (!value.is_empty()).then(|| value.to_owned());
        match property {
            "common-name" => self.common_name = text(),
            "country" => self.country = text(),
            "state" => self.state = text(),
            "locality" => self.locality = text(),
            "organization" => self.organization = text(),
            "unit" => self.unit = text(),
            "subject-alt-name" => self.subject_alt_name = text(),
            "key-type" => self.key_type = text().map(|v| v.to_ascii_lowercase()),
            "key-size" => self.key_size = text().map(|v| v.to_ascii_lowercase()),
            "days-valid" => {
                self.days_valid = if value.is_empty() {
                    None
                } else {
                    let d: u32 = value
                        .parse()
                        .map_err(|_| invalid(property, value, "expected a whole number of days"))?;
                    if d == 0 {
                        return Err(invalid(property, value, "must be at least 1"));
                    }
                    crate::x509::CertificateSpec::validity_from_now(d)
                        .map_err(|_| invalid(property, value, "ends after the year 9999"))?;
                    Some(d)
                }
            }
            "key-usage" => self.key_usage = text(),
            "trusted" => {
                self.trusted = if value.is_empty() {
                    None
                } else {
                    Some(parse_yes_no(property, value)?)
                }
            }
            "digest-algorithm" => self.digest_algorithm = text().map(|v| v.to_ascii_lowercase()),
            other => {
                return Err(ManagerError::InvalidValue(format!(
                    "unknown template property '{other}'"
                )))
            }
        }
        Ok(())
    }

    /// Validates everything and resolves defaults.
    pub fn resolve(&self) -> Result<ResolvedTemplate> {
        let subject = SubjectFields {
            country: self.country.clone(),
            state: self.state.clone(),
            locality: self.locality.clone(),
            organization: self.organization.clone(),
            unit: self.unit.clone(),
            common_name: self.common_name.clone(),
        };
        // Validate the Name now so that `add` fails, not a later `sign`.
        subject
            .to_name()
            .map_err(|e| ManagerError::InvalidValue(e.to_string()))?;
        let subject_alt_names = match &self.subject_alt_name {
            Some(s) => parse_subject_alt_names(s).map_err(|e| invalid("subject-alt-name", s, e))?,
            None => Vec::new(),
        };
        let key_usage: KeyUsageSet = match &self.key_usage {
            Some(s) => s.parse().map_err(|e| invalid("key-usage", s, e))?,
            None => KeyUsageSet::default(),
        };
        let digest = match &self.digest_algorithm {
            Some(d) => Some(
                d.parse::<HashAlgorithm>()
                    .map_err(|e| ManagerError::InvalidValue(crate::error::key_detail(&e)))?,
            ),
            None => None,
        };
        Ok(ResolvedTemplate {
            subject,
            subject_alt_names,
            algorithm: self.key_algorithm()?,
            days_valid: self.days_valid.unwrap_or(DEFAULT_DAYS_VALID),
            key_usage,
            trusted: self.trusted,
            digest,
        })
    }

    fn key_algorithm(&self) -> Result<KeyAlgorithm> {
        let size = self.key_size.as_deref();
        let rsa = |s: &str| -> Result<KeyAlgorithm> {
            let bits: u32 = s.parse().map_err(|_| {
                invalid(
                    "key-size",
                    s,
                    "RSA sizes are 1024, 1536, 2048, 3072, 4096, 8192",
                )
            })?;
            if !RSA_SIZES.contains(&bits) {
                return Err(invalid(
                    "key-size",
                    s,
                    "RSA sizes are 1024, 1536, 2048, 3072, 4096, 8192",
                ));
            }
            Ok(KeyAlgorithm::Rsa { bits })
        };
        let ec = |s: &str| -> Result<KeyAlgorithm> {
            s.parse::<EcCurve>()
                .map(KeyAlgorithm::Ec)
                .map_err(|e| invalid("key-size", s, crate::error::key_detail(&e)))
        };
        match (self.key_type.as_deref(), size) {
            (None | Some("rsa"), None) => Ok(KeyAlgorithm::Rsa { bits: 2048 }),
            (Some("rsa"), Some(s)) => rsa(s),
            (Some("ec"), None) => Ok(KeyAlgorithm::Ec(EcCurve::P256)),
            (Some("ec"), Some(s)) => ec(s),
            (Some("ed25519"), None | Some("ed25519") | Some("25519")) => Ok(KeyAlgorithm::Ed25519),
            (Some("ed25519"), Some(s)) => Err(invalid(
                "key-size",
                s,
                "Ed25519 keys have no size to choose",
            )),
            (None, Some("ed25519")) => Ok(KeyAlgorithm::Ed25519),
            (None, Some(s)) if s.bytes().all(|b| b.is_ascii_digit()) => rsa(s),
            (None, Some(s)) => ec(s),
            (Some(t), _) => Err(invalid("key-type", t, "expected rsa, ec or ed25519")),
        }
    }

    /// As JSON for the store.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    /// From the store's JSON.
    pub fn from_json(s: &str) -> Result<Self> {
        serde_json::from_str(s).map_err(|e| {
            ManagerError::Store(crate::error::StoreError::Corrupt(format!(
                "template properties: {e}"
            )))
        })
    }

    /// (property, value) pairs that are set, in RouterOS order, for printing.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        let mut push = |k: &'static str, val: &Option<String>| {
            if let Some(x) = val {
                v.push((k, x.clone()));
            }
        };
        push("common-name", &self.common_name);
        push("country", &self.country);
        push("state", &self.state);
        push("locality", &self.locality);
        push("organization", &self.organization);
        push("unit", &self.unit);
        push("subject-alt-name", &self.subject_alt_name);
        push("key-type", &self.key_type);
        push("key-size", &self.key_size);
        push("days-valid", &self.days_valid.map(|d| d.to_string()));
        push("key-usage", &self.key_usage);
        push(
            "trusted",
            &self
                .trusted
                .map(|t| if t { "yes" } else { "no" }.to_owned()),
        );
        push("digest-algorithm", &self.digest_algorithm);
        v
    }
}

/// A template checked and with defaults filled in.
#[derive(Clone, Debug)]
pub struct ResolvedTemplate {
    /// subject fields
    pub subject: SubjectFields,
    /// subjectAltName
    pub subject_alt_names: Vec<GeneralName>,
    /// key algorithm
    pub algorithm: KeyAlgorithm,
    /// validity in days
    pub days_valid: u32,
    /// requested usages
    pub key_usage: KeyUsageSet,
    /// `trusted`, if set
    pub trusted: Option<bool>,
    /// digest, if set
    pub digest: Option<HashAlgorithm>,
}

impl ResolvedTemplate {
    /// RouterOS: a CA is made when key-usage has key-cert-sign, or when a self-signed
    /// certificate has no key-usage at all.
    pub fn is_ca(&self, self_signed: bool) -> bool {
        self.key_usage.contains(KeyUsageName::KeyCertSign)
            || (self_signed && self.key_usage.is_empty())
    }

    /// The usages that go into the certificate: a CA always gets keyCertSign + cRLSign (and,
    /// made without key-usage, digitalSignature too: it signs SCEP replies and OpenSSL-based
    /// clients such as certmonger refuse a reply signer without it); a leaf without key-usage
    /// gets the RouterOS defaults for its key type.
    pub fn effective_key_usage(&self, is_ca: bool) -> KeyUsageSet {
        let mut ku = self.key_usage.clone();
        if is_ca {
            if ku.is_empty() {
                ku.insert(KeyUsageName::DigitalSignature);
            }
            ku.insert(KeyUsageName::KeyCertSign);
            ku.insert(KeyUsageName::CrlSign);
        } else if ku.is_empty() {
            ku.insert(KeyUsageName::DigitalSignature);
            match self.algorithm {
                KeyAlgorithm::Rsa { .. } => {
                    ku.insert(KeyUsageName::KeyEncipherment);
                    ku.insert(KeyUsageName::DataEncipherment);
                }
                KeyAlgorithm::Ec(_) => ku.insert(KeyUsageName::KeyAgreement),
                KeyAlgorithm::Ed25519 => {}
            }
        }
        ku
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(pairs: &[(&str, &str)]) -> Result<TemplateProperties> {
        let mut p = TemplateProperties::default();
        for (k, v) in pairs {
            p.set(k, v)?;
        }
        p.resolve()?;
        Ok(p)
    }

    #[test]
    fn key_size_accepts_routeros_values() {
        for (kt, ks, want) in [
            (None, None, KeyAlgorithm::Rsa { bits: 2048 }),
            (None, Some("1536"), KeyAlgorithm::Rsa { bits: 1536 }),
            (Some("rsa"), Some("8192"), KeyAlgorithm::Rsa { bits: 8192 }),
            (None, Some("prime256v1"), KeyAlgorithm::Ec(EcCurve::P256)),
            (Some("ec"), None, KeyAlgorithm::Ec(EcCurve::P256)),
            (
                Some("ec"),
                Some("secp384r1"),
                KeyAlgorithm::Ec(EcCurve::P384),
            ),
            (
                Some("ec"),
                Some("secp521r1"),
                KeyAlgorithm::Ec(EcCurve::P521),
            ),
            (Some("ed25519"), None, KeyAlgorithm::Ed25519),
        ] {
            let mut p = TemplateProperties::default();
            if let Some(kt) = kt {
                p.set("key-type", kt).unwrap();
            }
            if let Some(ks) = ks {
                p.set("key-size", ks).unwrap();
            }
            assert_eq!(p.resolve().unwrap().algorithm, want, "{kt:?} {ks:?}");
        }
        assert!(t(&[("key-size", "1000")]).is_err());
        assert!(t(&[("key-type", "rsa"), ("key-size", "prime256v1")]).is_err());
        assert!(t(&[("key-type", "ec"), ("key-size", "2048")]).is_err());
        assert!(t(&[("key-type", "dsa")]).is_err());
        assert!(t(&[("key-type", "ed25519"), ("key-size", "2048")]).is_err());
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(t(&[("days-valid", "0")]).is_err());
        assert!(t(&[("days-valid", "ten")]).is_err());
        assert!(t(&[("trusted", "maybe")]).is_err());
        assert!(t(&[("key-usage", "tls-server,flying")]).is_err());
        assert!(t(&[("subject-alt-name", "srv.example")]).is_err());
        assert!(t(&[("country", "LVA")]).is_err());
        assert!(t(&[("digest-algorithm", "md5")]).is_err());
        assert!(TemplateProperties::default().set("colour", "red").is_err());
    }

    #[test]
    fn ca_rules() {
        let ca = t(&[("key-usage", "key-cert-sign")])
            .unwrap()
            .resolve()
            .unwrap();
        assert!(ca.is_ca(false));
        let ku = ca.effective_key_usage(true);
        assert!(ku.contains(KeyUsageName::CrlSign));
        let none = t(&[]).unwrap().resolve().unwrap();
        assert!(none.is_ca(true));
        assert!(!none.is_ca(false));
        let leaf = none.effective_key_usage(false);
        assert_eq!(
            leaf.to_string(),
            "digital-signature,key-encipherment,data-encipherment"
        );
    }

    #[test]
    fn json_round_trip_and_clearing() {
        let mut p = t(&[
            ("common-name", "x"),
            ("days-valid", "30"),
            ("trusted", "yes"),
        ])
        .unwrap();
        let back = TemplateProperties::from_json(&p.to_json()).unwrap();
        assert_eq!(back, p);
        p.set("common-name", "").unwrap();
        assert_eq!(p.common_name, None);
    }
}

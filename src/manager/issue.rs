//! The issuance core: a template (or a verified request) and its issuer become a signed
//! certificate ready to store — the issuer loaded and its key reached, the plan checked, the
//! key generated where asked, the certificate built and signed. No file paths: callers write
//! files after their transaction commits.

use std::sync::Arc;
use std::time::SystemTime;

use super::template::{self, TemplateProperties};
use der::referenced::OwnedToRef;

use super::{
    ca_key_handle, key_record, signature_scheme_for, signing_key_identifier, unix_secs,
    validate_name, Entry, Manager,
};
use crate::error::{KeyError, ManagerError, ObjectKind, Refusal, RequestFault, Result};
use crate::keys::{
    GenerateRequest, GeneratedKey, KeyHandle, KeyProvider, KeySigner, KeyUri, X509Signer,
};
use crate::store::{Lock, NewCertificate, Transaction, TxnMode};
use crate::x509::{self, CertificateSpec, IssuerInfo};

/// Where `sign` puts the new certificate's key.
#[derive(Clone, Debug, Default)]
pub enum KeyLocation {
    /// generated in software, sealed in the store
    #[default]
    Software,
    /// `on-smart-card=PROFILE` / `ca-on-smart-card=PROFILE`
    Profile(String),
    /// `key=URI`
    Uri(KeyUri),
}

/// A prepared certificate ready to be stored.
pub(super) struct Issued {
    pub(super) record: NewCertificate,
    pub(super) key: Option<GeneratedKey>,
}

/// `ca-crl-host`: `HOST`, `HOST:PORT` or `[IPv6]:PORT`.
pub(super) fn validate_crl_host(value: &str) -> Result<()> {
    let bad = |why: &str| ManagerError::InvalidValue(format!("ca-crl-host={value}: {why}"));
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or_else(|| bad("missing ']'"))?;
        v6.parse::<std::net::Ipv6Addr>()
            .map_err(|_| bad("not an IPv6 address"))?;
        match after {
            "" => (None, None),
            p => (
                None,
                Some(p.strip_prefix(':').ok_or_else(|| bad("expected :PORT"))?),
            ),
        }
    } else {
        match value.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(value), None),
        }
    };
    if let Some(h) = host {
        let ok = !h.is_empty()
            && h.len() <= 253
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !ok {
            return Err(bad(
                "expected a host name or IPv4 address, optionally :PORT",
            ));
        }
    }
    if let Some(p) = port {
        if !matches!(p.parse::<u16>(), Ok(n) if n > 0) {
            return Err(bad("the port must be a number 1-65535"));
        }
    }
    Ok(())
}

/// The CRL distribution point `serve` answers for a CA: `http://HOST[:PORT]/crl/<CA>.crl`.
pub fn crl_url(host: &str, ca_name: &str) -> String {
    let name = percent_encoding::utf8_percent_encode(ca_name, percent_encoding::NON_ALPHANUMERIC);
    format!("http://{host}/crl/{name}.crl")
}

/// What a key generation that takes seconds is called on a progress line, or `None` when it
/// is quick (EC, Ed25519 and RSA below 4096 bits in software).
pub(super) fn slow_generation(
    location: &KeyLocation,
    algorithm: crate::keys::KeyAlgorithm,
) -> Option<String> {
    use crate::keys::{KeyAlgorithm, Scheme};
    let place = match location {
        KeyLocation::Software => match algorithm {
            KeyAlgorithm::Rsa { bits } if bits >= 4096 => {
                return Some(format!("generating {algorithm} key"))
            }
            _ => return None,
        },
        KeyLocation::Profile(p) => format!("with profile '{p}'"),
        KeyLocation::Uri(uri) => match uri.scheme() {
            Scheme::Pkcs11 => match uri.path_str("token") {
                Some(t) => format!("on token '{}'", x509::names::escape(t)),
                None => "on the PKCS#11 token".to_owned(),
            },
            Scheme::Piv => match uri.path_str("slot-id") {
                Some(s) => format!("on the card (slot {})", x509::names::escape(s)),
                None => "on the card".to_owned(),
            },
            Scheme::Soft => match algorithm {
                KeyAlgorithm::Rsa { bits } if bits >= 4096 => {
                    return Some(format!("generating {algorithm} key"))
                }
                _ => return None,
            },
        },
    };
    Some(format!("generating {algorithm} key {place}"))
}

impl Manager {
    /// A token profile becomes the URI of the token it names.
    pub(super) fn resolve_location(&self, loc: &KeyLocation) -> Result<KeyLocation> {
        Ok(match loc {
            KeyLocation::Profile(p) => KeyLocation::Uri(self.keys.profile_location(p)?),
            other => other.clone(),
        })
    }
    pub(super) fn provider_for(&self, loc: &KeyLocation) -> Result<&dyn KeyProvider> {
        match loc {
            KeyLocation::Software => Ok(self.keys.soft()),
            KeyLocation::Uri(uri) => Ok(self.keys.provider(uri)?),
            KeyLocation::Profile(p) => Ok(self.keys.provider(&self.keys.profile_location(p)?)?),
        }
    }

    /// Generates a key labelled `label` at `location` (resolved); its provider and handle.
    /// The caller stores it, or discards it if what follows fails.
    pub(super) fn generate_key(
        &self,
        location: &KeyLocation,
        algorithm: crate::keys::KeyAlgorithm,
        label: &str,
    ) -> Result<(&dyn KeyProvider, GeneratedKey, KeyHandle)> {
        let provider = self.provider_for(location)?;
        let generated = self.generate_reported(provider, location, algorithm, label)?;
        let handle = KeyHandle {
            uri: generated.uri.clone(),
            sealed: generated.sealed.clone(),
        };
        Ok((provider, generated, handle))
    }

    /// Generates a key labelled `label` at `location` (resolved), telling the progress sink
    /// when it takes seconds: always on a token or card (C_GenerateKeyPair, the card's own
    /// generation), and RSA of 4096 bits or more in software.
    pub(super) fn generate_reported(
        &self,
        provider: &dyn KeyProvider,
        location: &KeyLocation,
        algorithm: crate::keys::KeyAlgorithm,
        label: &str,
    ) -> Result<GeneratedKey> {
        let request = GenerateRequest {
            algorithm,
            label: label.to_owned(),
            location: match location {
                KeyLocation::Uri(u) => Some(u.clone()),
                _ => None,
            },
        };
        let Some(what) = slow_generation(location, algorithm) else {
            return Ok(provider.generate(&request)?);
        };
        let _task = super::progress::Task::start(self.progress.as_ref(), &what, None);
        Ok(provider.generate(&request)?)
    }

    /// The X.509 signer of a key (reaching it: token login, PIN) for `digest` (or the key's
    /// default); `name` names it in errors.
    pub(super) fn x509_signer(
        &self,
        provider: &dyn KeyProvider,
        handle: &KeyHandle,
        public_key: &spki::SubjectPublicKeyInfoOwned,
        digest: Option<crate::keys::HashAlgorithm>,
        name: &str,
    ) -> Result<X509Signer> {
        let key = provider.signer_with_public_key(handle, public_key)?;
        let scheme = signature_scheme_for(key.as_ref(), digest, name)?;
        Ok(X509Signer::new(key, scheme)?)
    }

    pub(super) fn discard_key(&self, provider: &dyn KeyProvider, key: Option<&GeneratedKey>) {
        if let Some(k) = key {
            let _ = provider.delete(&KeyHandle {
                uri: k.uri.clone(),
                sealed: k.sealed.clone(),
            });
        }
    }

    pub(super) fn load_issuer(&self, txn: &dyn Transaction, ca: &str) -> Result<LoadedIssuer> {
        let rec = txn
            .certificate(ca)?
            .ok_or_else(|| ManagerError::not_found(ObjectKind::CaCertificate, ca))?;
        let info = x509::inspect_certificate_cached(&rec.cert.der)?;
        if !info.is_ca {
            return Err(ManagerError::refused(
                Refusal::NotACa,
                format!("\"{ca}\" is not a certificate authority"),
                Some("sign a template with key-usage=key-cert-sign,crl-sign to make a CA"),
            ));
        }
        // Before its key is reached (no PIN try spent), and before "revoked": the
        // more telling reason (`token lost` revokes a compromised CA issued here).
        if let Some(at) = txn.compromised_at(rec.id)? {
            return Err(compromised(ca, at));
        }
        if rec.revoked_at.is_some() {
            return Err(ManagerError::refused(
                Refusal::CaRevoked,
                format!("CA \"{ca}\" is revoked"),
                None,
            ));
        }
        if info.not_after < SystemTime::now() {
            return Err(ManagerError::refused(
                Refusal::CaExpired,
                format!("CA \"{ca}\" has expired"),
                None,
            ));
        }
        let (key_id, handle) = ca_key_handle(txn, &rec)?;
        let signer = self.ca_signer(ca, &handle, &info)?;
        let key_identifier = signing_key_identifier(&info);
        Ok(LoadedIssuer {
            id: rec.id,
            key_id,
            name: rec.cert.name.clone(),
            subject: info.subject_name.clone(),
            key_identifier,
            crl_host: rec.cert.ca_crl_host.clone(),
            signer,
        })
    }

    /// The signer of CA `ca`'s key (reaching it: token login, PIN), checked against the
    /// CA's certificate.
    pub(crate) fn ca_signer(
        &self,
        ca: &str,
        handle: &KeyHandle,
        info: &x509::CertificateInfo,
    ) -> Result<Arc<dyn KeySigner>> {
        let signer = self
            .keys
            .provider(&handle.uri)?
            .signer_with_public_key(handle, &info.public_key)?;
        if signer.public_key() != &info.public_key {
            return Err(ManagerError::Key(KeyError::Verification(format!(
                "the key of CA \"{ca}\" does not match its certificate"
            ))));
        }
        Ok(signer)
    }

    /// Checks a template against its issuer and works out everything the certificates made
    /// from it share, once (a batch issues many certificates from one plan).
    pub(super) fn plan(
        &self,
        props: &TemplateProperties,
        resolved: &template::ResolvedTemplate,
        issuer: Option<&LoadedIssuer>,
        ca_crl_host: Option<&str>,
    ) -> Result<Plan> {
        let self_signed = issuer.is_none();
        let is_ca = resolved.is_ca(self_signed);
        if ca_crl_host.is_some() && !is_ca {
            return Err(ManagerError::InvalidValue(
                "ca-crl-host applies only to CA certificates (key-usage with key-cert-sign)".into(),
            ));
        }
        let subject = resolved.subject.to_name()?;
        if subject.is_empty() && (self_signed || is_ca) {
            return Err(ManagerError::InvalidValue(format!(
                "a {} certificate needs a subject: set common-name",
                if is_ca { "CA" } else { "self-signed" }
            )));
        }
        if subject.is_empty() && resolved.subject_alt_names.is_empty() {
            return Err(ManagerError::InvalidValue(
                "the certificate would have neither a subject nor a subject-alt-name: set common-name"
                    .into(),
            ));
        }
        // Fails now, not after a key was made, if days-valid overflows.
        CertificateSpec::validity_from_now(resolved.days_valid)
            .map_err(|e| ManagerError::InvalidValue(e.to_string()))?;
        // An issuer's signature scheme is known before any key is made: check it first.
        let issuer_signer = match issuer {
            Some(i) => Some(X509Signer::new(
                i.signer.clone(),
                signature_scheme_for(i.signer.as_ref(), resolved.digest, &i.name)?,
            )?),
            None => None,
        };
        Ok(Plan {
            algorithm: resolved.algorithm,
            digest: resolved.digest,
            days_valid: resolved.days_valid,
            subject,
            subject_alt_names: resolved.subject_alt_names.clone(),
            is_ca,
            key_usage: resolved.effective_key_usage(is_ca),
            trusted: resolved.trusted.unwrap_or(self_signed && is_ca),
            ca_crl_host: if is_ca {
                ca_crl_host.map(str::to_owned)
            } else {
                None
            },
            crl_distribution_point: issuer
                .and_then(|i| i.crl_host.as_deref().map(|h| crl_url(h, &i.name))),
            issuer: issuer.map(|i| IssuerInfo {
                name: i.subject.clone(),
                key_identifier: i.key_identifier.clone(),
            }),
            issuer_id: issuer.map(|i| i.id),
            issuer_check: issuer.map(|i| IssuerCheck {
                id: i.id,
                key_id: i.key_id.clone(),
                name: i.name.clone(),
            }),
            issuer_signer,
            properties: props.to_json(),
        })
    }

    /// Generates the key and builds the signed certificate (no store writes). A key made
    /// here is destroyed again if anything after its generation fails.
    pub(super) fn prepare(
        &self,
        plan: &Plan,
        name: &str,
        provider: &dyn KeyProvider,
        location: &KeyLocation,
        report: bool,
    ) -> Result<Issued> {
        // a batch (`issue_batch`) signs on several threads: one progress line would not do
        let generated = if report {
            self.generate_reported(provider, location, plan.algorithm, name)?
        } else {
            provider.generate(&GenerateRequest {
                algorithm: plan.algorithm,
                label: name.to_owned(),
                location: match location {
                    KeyLocation::Uri(u) => Some(u.clone()),
                    _ => None,
                },
            })?
        };
        let result = (|| {
            let self_signer;
            let signer = match &plan.issuer_signer {
                Some(s) => s,
                None => {
                    let key = provider.signer_with_public_key(
                        &KeyHandle {
                            uri: generated.uri.clone(),
                            sealed: generated.sealed.clone(),
                        },
                        &generated.public_key,
                    )?;
                    let scheme = signature_scheme_for(key.as_ref(), plan.digest, name)?;
                    self_signer = X509Signer::new(key, scheme)?;
                    &self_signer
                }
            };
            let mut record = Self::certify(plan, name, &generated.public_key, signer)?;
            record.key_id = Some(generated.uri.store_id());
            Ok(record)
        })();
        match result {
            Ok(record) => Ok(Issued {
                record,
                key: Some(generated),
            }),
            Err(e) => {
                self.discard_key(provider, Some(&generated));
                Err(e)
            }
        }
    }

    /// Builds and signs the certificate of `plan` for `public_key` (no store writes).
    pub(super) fn certify(
        plan: &Plan,
        name: &str,
        public_key: &spki::SubjectPublicKeyInfoOwned,
        signer: &X509Signer,
    ) -> Result<NewCertificate> {
        let (not_before, not_after) = CertificateSpec::validity_from_now(plan.days_valid)?;
        let spec = CertificateSpec {
            subject: plan.subject.clone(),
            public_key: public_key.clone(),
            serial: x509::random_serial()?,
            not_before,
            not_after,
            is_ca: plan.is_ca,
            key_usage: plan.key_usage.clone(),
            subject_alt_names: plan.subject_alt_names.clone(),
            crl_distribution_point: plan.crl_distribution_point.clone(),
            issuer: plan.issuer.clone(),
        };
        let der = x509::build_certificate(&spec, signer)?;
        Ok(NewCertificate {
            name: name.to_owned(),
            serial: hex::encode_upper(spec.serial.as_bytes()),
            fingerprint: x509::fingerprint(&der),
            der,
            key_id: None,
            issuer_id: plan.issuer_id,
            trusted: plan.trusted,
            ca_crl_host: plan.ca_crl_host.clone(),
            properties: plan.properties.clone(),
            not_after: unix_secs(not_after),
        })
    }

    pub(super) fn insert_issued(txn: &mut dyn Transaction, issued: &Issued) -> Result<i64> {
        if let Some(k) = &issued.key {
            txn.insert_key(&key_record(k))?;
        }
        Ok(txn.insert_certificate(&issued.record)?)
    }

    // ------------------------------------------------------------ requests from outside

    /// The issuance core for requests from outside, first half: checks the verified request
    /// against the policy and the CA, reaches the CA's key (token login, PIN) and signs the
    /// certificate for the request's key, with its subject as asked, its SANs and usages. No
    /// store writes and no files.
    pub fn certify_request(&self, req: &IssueRequest<'_>) -> Result<CertifiedRequest> {
        self.certify_request_named(req, true)
    }

    /// [`Manager::certify_request`] for a certificate whose name is chosen when it is stored
    /// ([`Manager::store_certified_in`] with a prefix): no name is checked now.
    pub(super) fn certify_request_unnamed(
        &self,
        req: &IssueRequest<'_>,
    ) -> Result<CertifiedRequest> {
        self.certify_request_named(req, false)
    }

    fn certify_request_named(
        &self,
        req: &IssueRequest<'_>,
        check_name: bool,
    ) -> Result<CertifiedRequest> {
        let info = req.request;
        // What a request asks to be signed is checked before anything is signed for it.
        x509::names::check_subject(&info.subject)
            .and_then(|()| x509::names::check_general_names(&info.subject_alt_names))
            .map_err(|why| ManagerError::BadRequest {
                fault: RequestFault::BadRequest,
                message: format!("the request's names: {why}"),
            })?;
        let asks_ca = info.ca || info.key_usage.contains(x509::KeyUsageName::KeyCertSign);
        if asks_ca && !req.allow_ca {
            return Err(ManagerError::refused(
                Refusal::CaRequestNotAllowed,
                "the request asks for a CA certificate",
                Some("give allow-ca=yes to issue a sub-CA for it"),
            ));
        }
        let fields = x509::subject_fields(&info.subject);
        let name = match req.name {
            Some(n) => n.to_owned(),
            None if !check_name => String::new(),
            None => fields.common_name.clone().ok_or_else(|| {
                ManagerError::InvalidValue(
                    "the request has no common name: give name= for the certificate".into(),
                )
            })?,
        };
        if check_name {
            validate_name(&name)?;
        }
        let mut props = TemplateProperties::default();
        if let Some(d) = req.days_valid {
            props.set("days-valid", &d.to_string())?;
        }
        let issuer = {
            let txn = self.store.begin(TxnMode::Read)?;
            // Early, before the CA's key is reached; the store has the last word.
            if check_name && txn.name_in_use(&name)? {
                return Err(ManagerError::refused(
                    Refusal::NameInUse,
                    format!("name \"{name}\" is already in use"),
                    Some("give name= for the certificate"),
                ));
            }
            self.load_issuer(txn.as_ref(), req.ca)?
        };
        let algorithm = crate::keys::KeyAlgorithm::from_spki(info.public_key.owned_to_ref())
            .map_err(|e| ManagerError::BadRequest {
                fault: RequestFault::BadAlgorithm,
                message: format!("the request's key: {}", crate::error::key_detail(&e)),
            })?;
        let resolved = template::ResolvedTemplate {
            subject: fields,
            subject_alt_names: info.subject_alt_names.clone(),
            algorithm,
            days_valid: req.days_valid.unwrap_or(template::DEFAULT_DAYS_VALID),
            key_usage: if info.ca {
                let mut k = info.key_usage.clone();
                k.insert(x509::KeyUsageName::KeyCertSign);
                k
            } else {
                info.key_usage.clone()
            },
            trusted: None,
            digest: None,
        };
        let mut plan = self.plan(&props, &resolved, Some(&issuer), None)?;
        // The request's subject as it was asked for, not as certman would spell it.
        plan.subject = info.subject.clone();
        let signer = plan.issuer_signer.clone().ok_or_else(|| {
            ManagerError::Failed("an issued certificate's plan has no issuer".into())
        })?;
        Ok(CertifiedRequest {
            record: Self::certify(&plan, &name, &info.public_key, &signer)?,
            issuer: plan.issuer_check.clone(),
            // A CA gets its first CRL, a CDP its path claimed; a leaf without a CDP (most
            // SCEP enrolments) needs neither, and no re-read of what was just signed.
            after_insert: plan.is_ca || plan.crl_distribution_point.is_some(),
        })
    }

    /// The issuance core, second half: stores a certificate [`Manager::certify_request`]
    /// signed (flag I) in one transaction — a name taken meanwhile is refused — and gives a
    /// CA its first CRL. Files the caller writes for it are written after this returns.
    pub fn store_certified(&self, certified: CertifiedRequest) -> Result<IssuedCertificate> {
        let CertifiedRequest {
            record,
            issuer,
            after_insert,
        } = certified;
        self.write(|txn| {
            if let Some(issuer) = &issuer {
                issuer.recheck(txn)?;
            }
            let id = txn.insert_certificate(&record)?;
            if after_insert {
                self.after_insert(txn, id)?;
            }
            Ok(())
        })?;
        Ok(IssuedCertificate {
            entry: self.entry(&record.name)?,
            der: record.der,
        })
    }

    /// [`Manager::store_certified`] inside the caller's transaction (which records more with
    /// it: a SCEP request, its OTP consumed). With `name_prefix`, the certificate is named
    /// `<prefix>N` with the first N free (RouterOS's `issued_N`). Returns its row id.
    pub(super) fn store_certified_in(
        &self,
        txn: &mut dyn Transaction,
        certified: &CertifiedRequest,
        name_prefix: Option<&str>,
    ) -> Result<i64> {
        if let Some(issuer) = &certified.issuer {
            issuer.recheck(txn)?;
        }
        let mut record = certified.record.clone();
        if let Some(prefix) = name_prefix {
            record.name = free_name(txn, prefix)?;
        }
        let id = txn.insert_certificate(&record)?;
        if certified.after_insert {
            self.after_insert(txn, id)?;
        }
        Ok(id)
    }

    /// The issuance core: [`Manager::certify_request`] then [`Manager::store_certified`].
    pub fn issue_request(&self, req: &IssueRequest<'_>) -> Result<IssuedCertificate> {
        self.store_certified(self.certify_request(req)?)
    }
}

/// `<prefix>N` with the first N from the last certificate's row id on that is free.
fn free_name(txn: &dyn Transaction, prefix: &str) -> Result<String> {
    let start = txn.last_certificate_id()?.max(0) as u64;
    for n in start..start + 10_000 {
        let name = format!("{prefix}{n}");
        if !txn.name_in_use(&name)? {
            return Ok(name);
        }
    }
    Err(ManagerError::refused(
        Refusal::NoFreeName,
        format!("no free name {prefix}N"),
        None,
    ))
}

/// A request from outside to issue a certificate for (a PKCS#10 file; a SCEP PKCSReq next):
/// its verified content and the issuing policy.
#[derive(Clone, Copy, Debug)]
pub struct IssueRequest<'a> {
    /// the issuing CA
    pub ca: &'a str,
    /// the request, parsed and its self-signature verified
    pub request: &'a x509::csr::RequestInfo,
    /// the certificate's name (default: the request's common name)
    pub name: Option<&'a str>,
    /// validity in days (default 365)
    pub days_valid: Option<u32>,
    /// issue a CA certificate when the request asks for one (refused otherwise)
    pub allow_ca: bool,
}

/// A certificate signed for a request and not yet stored.
#[derive(Debug)]
pub struct CertifiedRequest {
    record: NewCertificate,
    issuer: Option<IssuerCheck>,
    /// whether storing it needs `after_insert` (a CA, or a CDP to claim)
    after_insert: bool,
}

impl CertifiedRequest {
    /// The name it will be stored under.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// The certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.record.der
    }
}

/// A certificate issued and stored.
#[derive(Debug)]
pub struct IssuedCertificate {
    /// as `print` shows it
    pub entry: Entry,
    /// the certificate, DER
    pub der: Vec<u8>,
}

/// What every certificate made from one template by one issuer shares.
pub(super) struct Plan {
    pub(super) algorithm: crate::keys::KeyAlgorithm,
    pub(super) digest: Option<crate::keys::HashAlgorithm>,
    pub(super) days_valid: u32,
    pub(super) subject: x509_cert::name::Name,
    pub(super) subject_alt_names: Vec<x509_cert::ext::pkix::name::GeneralName>,
    pub(super) is_ca: bool,
    pub(super) key_usage: x509::KeyUsageSet,
    pub(super) trusted: bool,
    pub(super) ca_crl_host: Option<String>,
    pub(super) crl_distribution_point: Option<String>,
    pub(super) issuer: Option<IssuerInfo>,
    pub(super) issuer_id: Option<i64>,
    /// what the write transaction re-checks of the issuer
    pub(super) issuer_check: Option<IssuerCheck>,
    /// the issuer's key with its scheme; `None` = self-signed by the new key
    pub(super) issuer_signer: Option<X509Signer>,
    pub(super) properties: String,
}

/// What was checked of an issuing CA when its key was reached, re-checked under its lock when
/// the certificate is stored: the CA may have been removed, revoked or given another key by
/// another process meanwhile.
#[derive(Clone, Debug)]
pub(super) struct IssuerCheck {
    id: i64,
    key_id: String,
    name: String,
}

impl IssuerCheck {
    /// Takes the CA's lock and re-checks it.
    pub(super) fn recheck(&self, txn: &mut dyn Transaction) -> Result<()> {
        txn.lock(Lock::Ca(self.id))?;
        let name = &self.name;
        // marked by `token lost` meanwhile (it takes this lock before marking)
        if let Some(at) = txn.compromised_at(self.id)? {
            return Err(compromised(name, at));
        }
        match txn.certificate_by_id(self.id)? {
            None => Err(ManagerError::refused(
                Refusal::ChangedMeanwhile,
                format!("CA \"{name}\" was removed meanwhile"),
                None,
            )),
            Some(ca) if ca.revoked_at.is_some() => Err(ManagerError::refused(
                Refusal::CaRevoked,
                format!("CA \"{name}\" is revoked"),
                None,
            )),
            Some(ca) if ca.cert.key_id.as_deref() != Some(self.key_id.as_str()) => {
                Err(ManagerError::refused(
                    Refusal::ChangedMeanwhile,
                    format!("the key of CA \"{name}\" changed meanwhile; try again"),
                    None,
                ))
            }
            Some(_) => Ok(()),
        }
    }
}

/// The refusal of issuance by a CA marked compromised at `at` (Unix seconds).
pub(super) fn compromised(ca: &str, at: i64) -> ManagerError {
    ManagerError::refused(
        Refusal::CaCompromised,
        format!(
            "CA \"{ca}\" is marked compromised (its key was on a token reported lost, {}): it issues no more certificates",
            super::crl::fmt_unix(at)
        ),
        Some("issue from another CA; `token inventory` shows which keys were on the token"),
    )
}

pub(super) struct LoadedIssuer {
    pub(super) id: i64,
    /// the store id of its key when it was loaded (re-checked when the certificate is stored)
    pub(super) key_id: String,
    pub(super) name: String,
    pub(super) subject: x509_cert::name::Name,
    pub(super) key_identifier: Vec<u8>,
    pub(super) crl_host: Option<String>,
    pub(super) signer: Arc<dyn KeySigner>,
}

#[cfg(test)]
mod crl_host_tests {
    use super::*;

    #[test]
    fn crl_hosts() {
        for ok in [
            "127.0.0.1:8080",
            "crl.example",
            "crl.example:80",
            "[::1]:8080",
            "[2001:db8::1]",
        ] {
            validate_crl_host(ok).unwrap();
        }
        for bad in [
            "",
            "a b",
            "host:0",
            "host:x",
            "host:70000",
            "[::1",
            "[zz]:1",
            "http://x",
            "a:1:2",
        ] {
            assert!(validate_crl_host(bad).is_err(), "{bad}");
        }
        assert_eq!(
            crl_url("127.0.0.1:8080", "my ca"),
            "http://127.0.0.1:8080/crl/my%20ca.crl"
        );
    }
}

//! `add-scep` (and the RA of `scep-server ra add`): the CA the server sent is checked and
//! recorded, the key generated where asked, a temporary self-signed certificate and the
//! request made from the template — all stored in one transaction with the client, before the
//! request goes on the wire.

use std::time::{Duration, SystemTime};

use super::steps::{job_for, ClientJob, ClientMessage};
use super::{ScepClientKind, ScepClientStatus};
use crate::error::{ManagerError, ObjectKind, Refusal, Result, StoreError};
use crate::keys::KeyAlgorithm;
use crate::manager::template::TemplateProperties;
use crate::manager::{key_record, validate_name, KeyLocation, Manager};
use crate::seal::SealLabel;
use crate::secret::SecretString;
use crate::store::{
    NewCertificate, NewScepClient, NewScepServer, ScepClientState, ScepClientTransaction,
    Transaction, TxnMode,
};
use crate::x509::{self, CertificateSpec, KeyUsageName, KeyUsageSet};

/// `add-scep template=… scep-url=… [name=] [challenge-password=] [ca-identity=]
/// [on-smart-card=] [refresh=] [ca-fingerprint=]`.
#[derive(Debug, Default)]
pub struct AddScep {
    /// the template (consumed); the certificate keeps its name
    pub template: String,
    /// the client's name (default the template's); the CA is recorded as `<name>_CA`
    pub name: Option<String>,
    /// the server's URL with its CGI path and program
    pub url: String,
    /// the challenge password, put in the request
    pub challenge_password: Option<SecretString>,
    /// `ca-identity` (GetCACert's `message=`)
    pub ca_identity: Option<String>,
    /// where the key is generated (software, or `on-smart-card=PROFILE`)
    pub key_location: KeyLocation,
    /// `refresh=yes`: enrol again once the certificate has expired
    pub refresh: bool,
    /// the SHA-256 fingerprint the operator expects of the CA
    pub ca_fingerprint: Option<String>,
    /// client, or an RA for `scep-server ra`
    pub kind: Option<ScepClientKind>,
    /// `scep-server ra`: the server that forwards to `url` with this client's certificate
    pub ra: Option<RaServer>,
}

/// The SCEP server an RA client serves (`scep-server ra add ra-path= ra-transaction-lifetime=`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaServer {
    /// the path clients enrol at (`/scep/NAME`)
    pub path: String,
    /// how long a forwarded request may stay pending at the RA
    pub transaction_lifetime: Duration,
}

impl AddScep {
    /// The client's name.
    pub fn client_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.template)
    }
}

/// What GetCACert answered: the CA, and the RA if the server has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerCertificates {
    /// the CA certificate, DER
    pub ca: Vec<u8>,
    /// the RA certificate, DER
    pub ra: Option<Vec<u8>>,
}

impl ServerCertificates {
    /// The certificate requests are encrypted to.
    pub fn recipient(&self) -> &[u8] {
        self.ra.as_deref().unwrap_or(&self.ca)
    }
}

/// A fingerprint as operators write it: hex, any case, `:` or spaces between bytes.
pub(super) fn normalise_fingerprint(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, ':' | ' '))
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Checks the CA and RA a server sent: the CA a CA, the RA (if any) not one, issued by the CA
/// and able to take the content key (RSA).
pub(super) fn check_server_certificates(certs: &ServerCertificates) -> Result<()> {
    let unusable = |why: String| ManagerError::refused(Refusal::UnusableScepAnswer, why, None);
    let ca = x509::inspect_certificate(&certs.ca)
        .map_err(|e| unusable(format!("the SCEP server's CA certificate: {e}")))?;
    if !ca.is_ca {
        return Err(unusable(format!(
            "the SCEP server's CA certificate ({}) is not a CA",
            ca.subject
        )));
    }
    let recipient = match &certs.ra {
        Some(ra) => {
            let info = x509::inspect_certificate(ra)
                .map_err(|e| unusable(format!("the SCEP server's RA certificate: {e}")))?;
            if info.is_ca {
                return Err(unusable(format!(
                    "the SCEP server's RA certificate ({}) is a CA; an RA must not be one",
                    info.subject
                )));
            }
            x509::verify_certificate_signature(ra, &ca.public_key).map_err(|e| {
                unusable(format!(
                    "the SCEP server's RA was not issued by its CA: {e}"
                ))
            })?;
            info
        }
        None => ca,
    };
    if !matches!(recipient.key_algorithm, Some(KeyAlgorithm::Rsa { .. })) {
        return Err(unusable(format!(
            "the SCEP server's {} has no RSA key to encrypt the request to",
            if certs.ra.is_some() { "RA" } else { "CA" }
        )));
    }
    Ok(())
}

impl Manager {
    /// What `add-scep` can check before reaching the server: the template (RSA), the names
    /// and the URL, so that a typo costs no network round and no key.
    pub fn scep_client_check_add(&self, add: &AddScep) -> Result<()> {
        let name = add.client_name();
        validate_name(name)?;
        let url = add.url.as_str();
        if !url.starts_with("http://") || url.len() <= "http://".len() {
            return Err(ManagerError::InvalidValue(format!(
                "scep-url={url}: an http:// URL with the CGI path and program is needed, e.g. \
                 http://ca.example/scep/test/pkiclient.exe"
            )));
        }
        if let Some(f) = &add.ca_fingerprint {
            let f = normalise_fingerprint(f);
            if f.len() != 64 || !f.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ManagerError::InvalidValue(
                    "ca-fingerprint: 64 hex digits (the CA certificate's SHA-256) are expected"
                        .into(),
                ));
            }
        }
        let txn = self.store.begin(TxnMode::Read)?;
        let t = txn
            .template(&add.template)?
            .ok_or_else(|| ManagerError::not_found(ObjectKind::Template, &add.template))?;
        let resolved = TemplateProperties::from_json(&t.properties)?.resolve()?;
        if !matches!(resolved.algorithm, KeyAlgorithm::Rsa { .. }) {
            return Err(ManagerError::refused(
                Refusal::NotRsa,
                format!(
                    "template \"{}\" makes a {} key; SCEP needs RSA (the server encrypts its \
                     answer to the request's key)",
                    add.template, resolved.algorithm
                ),
                Some("set key-type=rsa on the template"),
            ));
        }
        if let Some(ra) = &add.ra {
            crate::manager::scep::check_path(txn.as_ref(), &ra.path, None)?;
            if txn.scep_servers()?.iter().any(|s| s.server.path == ra.path) {
                return Err(ManagerError::refused(
                    Refusal::NameInUse,
                    format!("another SCEP server has the path {}", ra.path),
                    Some("give another ra-path=/scep/NAME"),
                ));
            }
        }
        if add.kind == Some(ScepClientKind::Ra) && resolved.is_ca(false) {
            return Err(ManagerError::refused(
                Refusal::UnusableScepAnswer,
                format!(
                    "template \"{}\" asks for a CA certificate; an RA certificate must not \
                     be one",
                    add.template
                ),
                Some("give the RA template key-usage=digital-signature,key-encipherment"),
            ));
        }
        if txn.scep_client(name)?.is_some() {
            return Err(ManagerError::refused(
                Refusal::NameInUse,
                format!("a SCEP client named \"{name}\" exists already"),
                None,
            ));
        }
        Ok(())
    }

    /// `add-scep`, once the server's capabilities and CA are read: checks the CA (against
    /// `ca-fingerprint` when given, before any key is made), generates the key where asked,
    /// makes a temporary self-signed certificate and the request, and stores the CA as
    /// `<name>_CA` (A T), the template's entry (the temporary certificate with its key, as
    /// RouterOS shows a pending client) and the client, in one transaction. Returns the
    /// PKCSReq to send.
    pub fn scep_client_add(
        &self,
        add: &AddScep,
        certs: &ServerCertificates,
        capabilities: &str,
    ) -> Result<ClientJob> {
        self.scep_client_check_add(add)?;
        let name = add.client_name().to_owned();
        let ca_fingerprint = x509::fingerprint(&certs.ca);
        if let Some(expected) = &add.ca_fingerprint {
            if normalise_fingerprint(expected) != ca_fingerprint {
                return Err(ManagerError::refused(
                    Refusal::CaFingerprintMismatch,
                    format!(
                        "the SCEP server's CA has fingerprint {ca_fingerprint}, not the \
                         ca-fingerprint given: nothing was generated or stored"
                    ),
                    Some("check scep-url and the fingerprint with the CA's operator"),
                ));
            }
        }
        check_server_certificates(certs)?;
        let (template_id, props) = {
            let txn = self.store.begin(TxnMode::Read)?;
            let t = txn
                .template(&add.template)?
                .ok_or_else(|| ManagerError::not_found(ObjectKind::Template, &add.template))?;
            (t.id, TemplateProperties::from_json(&t.properties)?)
        };
        let resolved = props.resolve()?;
        let subject = resolved.subject.to_name()?;
        if subject.is_empty() {
            return Err(ManagerError::InvalidValue(
                "a SCEP request needs a subject: set common-name on the template".into(),
            ));
        }
        let location = self.resolve_location(&add.key_location)?;
        let (provider, generated, handle) =
            self.generate_key(&location, resolved.algorithm, &add.template)?;
        let result = (|| {
            let signer = self.x509_signer(
                provider,
                &handle,
                &generated.public_key,
                resolved.digest,
                &add.template,
            )?;
            // The temporary certificate the request is signed with (RFC 8894 §2.3).
            let now = SystemTime::now();
            let temporary = x509::build_certificate(
                &CertificateSpec {
                    subject: subject.clone(),
                    public_key: generated.public_key.clone(),
                    serial: x509::random_serial()?,
                    not_before: now - Duration::from_secs(3600),
                    not_after: now + Duration::from_secs(u64::from(resolved.days_valid) * 86_400),
                    is_ca: false,
                    key_usage: KeyUsageSet::new(vec![
                        KeyUsageName::DigitalSignature,
                        KeyUsageName::KeyEncipherment,
                    ]),
                    subject_alt_names: Vec::new(),
                    crl_distribution_point: None,
                    issuer: None,
                },
                &signer,
            )?;
            let csr = x509::csr::build_request(
                &x509::csr::RequestSpec {
                    subject: subject.clone(),
                    subject_alt_names: resolved.subject_alt_names.clone(),
                    key_usage: resolved.key_usage.clone(),
                    ca: false,
                    challenge_password: add
                        .challenge_password
                        .as_ref()
                        .map(|p| p.secret_str().to_owned()),
                    unstructured_address: None,
                },
                &signer,
            )?;
            let challenge = match &add.challenge_password {
                Some(p) => Some(
                    self.sealer
                        .seal(SealLabel::ScepChallenge(&name), p.secret_str().as_bytes())?,
                ),
                None => None,
            };
            // As sign does: the certificate goes onto the card beside its key, which marks
            // the slot as in use (a later key generation there is refused).
            if let (None, Some(objects)) = (&generated.sealed, provider.certificate_objects()) {
                objects.store_certificate(&handle, &temporary)?;
            }
            let ca_info = x509::inspect_certificate(&certs.ca)?;
            let temp_info = x509::inspect_certificate(&temporary)?;
            let key_id = generated.uri.store_id();
            let transaction = ScepClientTransaction {
                transaction_id: x509::public_key_digest_hex(&generated.public_key),
                message_type: ClientMessage::PkcsReq.number(),
                // sealed: it carries the challenge password
                csr: self.sealer.seal(SealLabel::ScepRequest(&name), &csr)?,
                signer: temporary.clone(),
                recipient: certs.recipient().to_vec(),
                started_at: self.client_now() * 1_000_000,
            };
            let client = NewScepClient {
                name: name.clone(),
                kind: add.kind.unwrap_or(ScepClientKind::Client).as_str().into(),
                url: add.url.clone(),
                ca_identity: add.ca_identity.clone(),
                properties: props.to_json(),
                key_profile: match &add.key_location {
                    KeyLocation::Profile(p) => Some(p.clone()),
                    _ => None,
                },
                refresh: add.refresh,
            };
            let record = self.write(|txn| {
                match txn.template(&add.template)? {
                    Some(t) if t.id == template_id && txn.delete_template(t.id)? => {}
                    _ => return Err(ManagerError::not_found(ObjectKind::Template, &add.template)),
                }
                txn.insert_key(&key_record(&generated))?;
                let ca_id = record_ca(txn, &format!("{name}_CA"), &certs.ca, &ca_info)?;
                let certificate_id = txn.insert_certificate(&NewCertificate {
                    name: add.template.clone(),
                    der: temporary.clone(),
                    serial: temp_info.serial_hex.clone(),
                    fingerprint: temp_info.fingerprint.clone(),
                    key_id: Some(key_id.clone()),
                    issuer_id: None,
                    trusted: false,
                    ca_crl_host: None,
                    properties: props.to_json(),
                    not_after: super::super::unix_secs(temp_info.not_after),
                })?;
                let state = ScepClientState {
                    status: ScepClientStatus::RequestingCertificate.as_str().into(),
                    detail: "the request is being sent".into(),
                    ca_id: Some(ca_id),
                    next_ca_id: None,
                    certificate_id: Some(certificate_id),
                    key_id: Some(key_id.clone()),
                    challenge: challenge.clone(),
                    transaction: Some(transaction.clone()),
                    req_fingerprint: x509::fingerprint(&csr),
                    ca_fingerprint: ca_fingerprint.clone(),
                    capabilities: capabilities.to_owned(),
                    next_attempt: self.client_now() * 1_000_000,
                    attempts: 0,
                };
                let client_id = txn
                    .insert_scep_client(&client, &state)
                    .map_err(|e| match e {
                        StoreError::Duplicate(_) => ManagerError::refused(
                            Refusal::NameInUse,
                            format!("a SCEP client named \"{name}\" exists already"),
                            None,
                        ),
                        e => e.into(),
                    })?;
                if let Some(ra) = &add.ra {
                    txn.insert_scep_server(&NewScepServer {
                        path: ra.path.clone(),
                        ca_id,
                        ra_id: Some(certificate_id),
                        next_ca_id: None,
                        days_valid: 1,
                        request_lifetime: ra.transaction_lifetime.as_secs() as i64,
                        disabled: false,
                        upstream_id: Some(client_id),
                    })
                    .map_err(crate::manager::scep::path_taken)?;
                }
                Ok(txn.scep_client(&name)?.ok_or(StoreError::Conflict)?)
            })?;
            job_for(
                &self.sealer,
                &record,
                &certs.ca,
                handle.clone(),
                generated.public_key.clone(),
                false,
            )
        })();
        if result.is_err() {
            // Nothing was stored: a key made here goes again, with its certificate object.
            if let (None, Some(objects)) = (&generated.sealed, provider.certificate_objects()) {
                let _ = objects.delete_certificate(&handle);
            }
            self.discard_key(provider, Some(&generated));
        }
        result
    }
}

/// The CA the server sent, as `name` (A T) — or the entry that holds it already.
pub(super) fn record_ca(
    txn: &mut dyn Transaction,
    name: &str,
    der: &[u8],
    info: &x509::CertificateInfo,
) -> Result<i64> {
    if let Some(held) = txn.certificate_by_fingerprint(&info.fingerprint)? {
        if !held.cert.trusted {
            txn.update_certificate(held.id, &held.cert.name, true)?;
        }
        return Ok(held.id);
    }
    Ok(txn.insert_certificate(&NewCertificate {
        name: name.to_owned(),
        der: der.to_vec(),
        serial: info.serial_hex.clone(),
        fingerprint: info.fingerprint.clone(),
        key_id: None,
        issuer_id: None,
        trusted: true,
        ca_crl_host: None,
        properties: "{}".into(),
        not_after: super::super::unix_secs(info.not_after),
    })?)
}

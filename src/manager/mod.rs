//! The certificate manager: RouterOS's `/certificate` rules (see `../shared/seeds/`) over the
//! key-provider seam and the store. Names no backend type and no SQL.

pub mod crl;
pub mod template;
mod verify;
pub mod view;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use der::referenced::OwnedToRef;

pub use self::crl::{CrlRenewal, DownloadTarget, DownloadedCrl, ServedCrl, Settings};
pub use self::template::{TemplateProperties, TEMPLATE_PROPERTIES};
pub use self::view::{Entry, Flags, Value};
use crate::error::{KeyError, ManagerError, Result};
use crate::keys::{
    GenerateRequest, GeneratedKey, KeyHandle, KeyProvider, KeyRouter, KeySigner, KeyUri, X509Signer,
};
use crate::seal::{SealLabel, Sealer};
use crate::secret::Passphrase;
use crate::store::{
    now_micros, CertificateRecord, KeyRecord, NewCertificate, Store, Transaction, TxnMode,
};
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

/// `sign TEMPLATE …`.
#[derive(Clone, Debug, Default)]
pub struct SignRequest {
    /// the template to consume
    pub template: String,
    /// the certificate's name (default: the template's)
    pub name: Option<String>,
    /// the issuing CA (absent: self-signed)
    pub ca: Option<String>,
    /// `ca-crl-host=HOST[:PORT]` for a CA
    pub ca_crl_host: Option<String>,
    /// where the key goes
    pub key_location: KeyLocation,
}

/// The file type of `export-certificate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportType {
    /// PEM certificate (+ encrypted PKCS#8 key with a passphrase)
    Pem,
    /// PKCS#12 with the key (when a passphrase is given and the key may leave) and the CA
    /// chain kept here; `legacy`: 3DES + SHA-1 MAC for old Windows and Java, else AES-256
    Pkcs12 {
        /// the legacy encryption
        legacy: bool,
    },
}

/// `export-certificate NAME …`.
#[derive(Debug)]
pub struct ExportRequest {
    /// the certificate
    pub name: String,
    /// file type
    pub kind: ExportType,
    /// with a passphrase, the private key is exported too, encrypted
    pub passphrase: Option<Passphrase>,
    /// base file name (default `cert_export_NAME`)
    pub file_name: Option<String>,
    /// the directory relative names are written in
    pub dir: PathBuf,
}

/// `create-certificate-request template=… [key-passphrase=…] [file-name=…] [on-smart-card=…]`.
#[derive(Debug, Default)]
pub struct CreateRequest {
    /// the template to consume
    pub template: String,
    /// encrypts the key file of a software key (required for one)
    pub key_passphrase: Option<Passphrase>,
    /// the challengePassword attribute
    pub challenge_password: Option<crate::secret::SecretString>,
    /// base file name (default `certificate-request`)
    pub file_name: Option<String>,
    /// the directory relative names are written in
    pub dir: PathBuf,
    /// where the key goes
    pub key_location: KeyLocation,
}

/// `sign-certificate-request ca=… file-name=… [days-valid=…] [name=…]`.
#[derive(Debug, Default)]
pub struct SignRequestFile {
    /// the issuing CA
    pub ca: String,
    /// the PKCS#10 file (PEM or DER)
    pub file: PathBuf,
    /// validity (default 365)
    pub days_valid: Option<u32>,
    /// the certificate's name (default: the request's common name)
    pub name: Option<String>,
    /// issue a CA certificate when the request asks for one (refused otherwise)
    pub allow_ca: bool,
    /// the directory relative names are written in
    pub dir: PathBuf,
}

/// `import [file-name=…] [passphrase=…] [name=…] [trusted=…]`.
#[derive(Debug, Default)]
pub struct ImportRequest {
    /// a file or a directory; `None`: every file in `dir`
    pub file_name: Option<PathBuf>,
    /// opens encrypted keys
    pub passphrase: Option<Passphrase>,
    /// the name of the (first) imported certificate
    pub name: Option<String>,
    /// `trusted` of the imported certificates
    pub trusted: Option<bool>,
    /// the current directory
    pub dir: PathBuf,
}

/// The RouterOS import counters, and what went wrong per file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// new certificates
    pub certificates_imported: usize,
    /// private keys that joined a certificate
    pub private_keys_imported: usize,
    /// files with at least one item imported
    pub files_imported: usize,
    /// files whose encrypted content the passphrase did not open
    pub decryption_failures: usize,
    /// keys that opened but match no certificate
    pub keys_with_no_certificate: usize,
    /// encrypted keys kept (sealed, still encrypted) until `decrypt passphrase=`
    pub keys_kept_encrypted: usize,
    /// (file, why) for every file that could not be read
    pub errors: Vec<(PathBuf, String)>,
}

/// What `remove` removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoveReport {
    /// names of removed templates
    pub templates: Vec<String>,
    /// names of removed certificates, the asked-for ones and the chains they took with them
    pub certificates: Vec<String>,
    /// (certificate, key URI) of token keys left on their tokens
    pub token_keys_kept: Vec<(String, String)>,
    /// (certificate, key URI) of token keys destroyed (`--delete-key`)
    pub token_keys_deleted: Vec<(String, String)>,
    /// (certificate, error) of token keys that could not be destroyed
    pub token_key_errors: Vec<(String, String)>,
}

/// What `card-verify` found.
#[derive(Clone, Debug)]
pub struct CardVerifyResult {
    /// the key's URI (no secrets)
    pub key_uri: String,
    /// what was checked
    pub report: crate::keys::CardVerifyReport,
    /// the token's state (PIN tries), where the provider can tell
    pub token_status: Option<String>,
    /// `Some(Some(true))`: the token's certificate object equals the stored certificate;
    /// `Some(Some(false))`: it differs; `Some(None)`: there is none; `None`: no such objects
    pub certificate_object: Option<Option<bool>>,
}

/// Changes for `set NAME …`.
#[derive(Clone, Debug, Default)]
pub struct SetRequest {
    /// the template or certificate
    pub name: String,
    /// (property, value) in the order given; `name` and `trusted` included
    pub changes: Vec<(String, String)>,
}

/// The certificate manager.
pub struct Manager {
    store: Box<dyn Store>,
    keys: KeyRouter,
    /// seals the secrets the store keeps besides software keys (CA export passphrases, keys
    /// kept encrypted)
    sealer: Arc<Sealer>,
    /// CAs whose scheduled CRL renewal failed on the PIN: not tried again by this process, so
    /// that a wrong PIN in a profile does not spend the token's tries one renewal at a time
    crl_pin_failures: std::sync::Mutex<HashSet<i64>>,
    /// a second connection for what `serve` answers, see [`Manager::with_read_store`]
    reads: Option<Box<dyn Store>>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Manager")
    }
}

/// A prepared certificate ready to be stored.
struct Issued {
    record: NewCertificate,
    key: Option<GeneratedKey>,
}

pub(crate) fn not_found(kind: &'static str, name: &str) -> ManagerError {
    ManagerError::NotFound {
        kind,
        name: name.to_owned(),
    }
}

pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn validate_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 255
        || name.starts_with('-')
        || name.chars().any(|c| c.is_control() || c == '/' || c == '=')
    {
        return Err(ManagerError::InvalidValue(format!(
            "name '{name}' is not valid (1-255 characters, not starting with '-', no '/', '=' or control characters)"
        )));
    }
    Ok(())
}

/// `ca-crl-host`: `HOST`, `HOST:PORT` or `[IPv6]:PORT`.
fn validate_crl_host(value: &str) -> Result<()> {
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

impl Manager {
    /// A manager over a store, the key providers and the sealer of secrets at rest. The
    /// composition root (`app.rs`) builds them; tests build their own.
    pub fn with_parts(store: Box<dyn Store>, keys: KeyRouter, sealer: Arc<Sealer>) -> Self {
        Manager {
            store,
            keys,
            sealer,
            crl_pin_failures: std::sync::Mutex::default(),
            reads: None,
        }
    }

    /// Gives the manager a second store connection for what `serve` answers (CRLs, health),
    /// so that requests never wait behind a transaction that is signing on a token.
    pub fn with_read_store(mut self, reads: Box<dyn Store>) -> Self {
        self.reads = Some(reads);
        self
    }

    /// The key router.
    pub fn keys(&self) -> &KeyRouter {
        &self.keys
    }

    // ---------------------------------------------------------------- add

    /// `add name=… [copy-from=…] props…`: adds a template.
    pub fn add_template(
        &self,
        name: &str,
        copy_from: Option<&str>,
        changes: &[(String, String)],
    ) -> Result<()> {
        validate_name(name)?;
        let mut txn = self.store.begin(TxnMode::Write)?;
        let mut props = match copy_from {
            Some(src) => copy_properties(txn.as_ref(), src)?,
            None => TemplateProperties::default(),
        };
        for (k, v) in changes {
            props.set(k, v)?;
        }
        props.resolve()?;
        if txn.name_in_use(name)? {
            return Err(ManagerError::refused(
                format!("name \"{name}\" is already in use"),
                Some("pick another name, or `remove` the existing item first"),
            ));
        }
        txn.insert_template(name, &props.to_json())?;
        txn.commit()?;
        Ok(())
    }

    // ---------------------------------------------------------------- sign

    /// `sign TEMPLATE [name=] [ca=] [ca-crl-host=] …`: makes a self-signed certificate (no `ca`)
    /// or issues one from a local CA. The template is consumed in the same transaction.
    pub fn sign(&self, req: &SignRequest) -> Result<Entry> {
        let (template_id, props, name, issuer) = {
            let txn = self.store.begin(TxnMode::Read)?;
            let t = txn
                .template(&req.template)?
                .ok_or_else(|| not_found("template", &req.template))?;
            let name = req.name.clone().unwrap_or_else(|| t.name.clone());
            validate_name(&name)?;
            if name != t.name && txn.name_in_use(&name)? {
                return Err(ManagerError::refused(
                    format!("name \"{name}\" is already in use"),
                    Some("choose another name= for the certificate"),
                ));
            }
            let issuer = match &req.ca {
                Some(ca) => Some(self.load_issuer(txn.as_ref(), ca)?),
                None => None,
            };
            (
                t.id,
                TemplateProperties::from_json(&t.properties)?,
                name,
                issuer,
            )
        };
        if let Some(h) = &req.ca_crl_host {
            validate_crl_host(h)?;
        }
        let resolved = props.resolve()?;
        let location = self.resolve_location(&req.key_location)?;
        let provider = self.provider_for(&location)?;
        let mut plan = self.plan(
            &props,
            &resolved,
            issuer.as_ref(),
            req.ca_crl_host.as_deref(),
        )?;
        if issuer.is_none() {
            // A root CA made with ca-crl-host names its own CRL (as RouterOS does): that is
            // where a store trusting it downloads the CRL from.
            if let Some(h) = &plan.ca_crl_host {
                plan.crl_distribution_point = Some(crl_url(h, &name));
            }
        }
        let issued = self.prepare(&plan, &name, provider, &location)?;
        // RouterOS writes the certificate onto the card beside its key.
        let on_token = match (&issued.key, provider.certificate_objects()) {
            (Some(k), Some(objects)) if k.sealed.is_none() => {
                let handle = KeyHandle {
                    uri: k.uri.clone(),
                    sealed: None,
                };
                if let Err(e) = objects.store_certificate(&handle, &issued.record.der) {
                    self.discard_key(provider, issued.key.as_ref());
                    return Err(e.into());
                }
                Some((objects, handle))
            }
            _ => None,
        };
        let result = (|| {
            let mut txn = self.store.begin(TxnMode::Write)?;
            match txn.template(&req.template)? {
                Some(t) if t.id == template_id => txn.delete_template(t.id)?,
                _ => return Err(not_found("template", &req.template)),
            }
            if txn.name_in_use(&name)? {
                return Err(ManagerError::refused(
                    format!("name \"{name}\" is already in use"),
                    None,
                ));
            }
            let id = Self::insert_issued(txn.as_mut(), &issued)?;
            self.after_insert(txn.as_mut(), id)?;
            txn.commit()?;
            Ok(())
        })();
        if let Err(e) = result {
            if let Some((objects, handle)) = &on_token {
                let _ = objects.delete_certificate(handle);
            }
            self.discard_key(provider, issued.key.as_ref());
            return Err(e);
        }
        self.entry(&name)
    }

    /// A token profile becomes the URI of the token it names.
    fn resolve_location(&self, loc: &KeyLocation) -> Result<KeyLocation> {
        Ok(match loc {
            KeyLocation::Profile(p) => KeyLocation::Uri(self.keys.profile_location(p)?),
            other => other.clone(),
        })
    }

    /// Issues one certificate per name from `template` by `ca`, all in one transaction, so
    /// that each is durable (fsync'd) when this returns — the batch form of `sign` for bulk
    /// issuance (`benches/issue.rs`, scripts). Keys are generated in software. `threads` > 1
    /// signs in parallel.
    pub fn issue_batch(
        &self,
        ca: &str,
        template: &TemplateProperties,
        names: &[String],
        threads: usize,
    ) -> Result<usize> {
        let resolved = template.resolve()?;
        let issuer = {
            let txn = self.store.begin(TxnMode::Read)?;
            let mut seen = HashSet::new();
            for n in names {
                validate_name(n)?;
                if !seen.insert(n) || txn.name_in_use(n)? {
                    return Err(ManagerError::refused(
                        format!("name \"{n}\" is already in use"),
                        None,
                    ));
                }
            }
            self.load_issuer(txn.as_ref(), ca)?
        };
        let plan = self.plan(template, &resolved, Some(&issuer), None)?;
        let soft = self.keys.soft();
        let threads = threads.clamp(1, 64).min(names.len().max(1));
        let chunk = names.len().div_ceil(threads).max(1);
        let sign_part = |part: &[String]| {
            part.iter()
                .map(|n| self.prepare(&plan, n, soft, &KeyLocation::Software))
                .collect::<Result<Vec<_>>>()
        };
        // One thread: sign right here (a new thread would also seed a new RNG state).
        let prepared: Vec<Result<Vec<Issued>>> = if threads == 1 {
            vec![sign_part(names)]
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = names
                    .chunks(chunk)
                    .map(|part| s.spawn(|| sign_part(part)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(ManagerError::X509(crate::error::X509Error::Invalid(
                                "a signing thread panicked".into(),
                            )))
                        })
                    })
                    .collect()
            })
        };
        let mut txn = self.store.begin(TxnMode::Write)?;
        let mut n = 0;
        for part in prepared {
            for issued in part? {
                let id = Self::insert_issued(txn.as_mut(), &issued)?;
                // Every certificate of the batch names the same CDP: one claim will do.
                if plan.is_ca || n == 0 {
                    self.after_insert(txn.as_mut(), id)?;
                }
                n += 1;
            }
        }
        txn.commit()?;
        Ok(n)
    }

    fn provider_for(&self, loc: &KeyLocation) -> Result<&dyn KeyProvider> {
        match loc {
            KeyLocation::Software => Ok(self.keys.soft()),
            KeyLocation::Uri(uri) => Ok(self.keys.provider(uri)?),
            KeyLocation::Profile(p) => Ok(self.keys.provider(&self.keys.profile_location(p)?)?),
        }
    }

    fn discard_key(&self, provider: &dyn KeyProvider, key: Option<&GeneratedKey>) {
        if let Some(k) = key {
            let _ = provider.delete(&KeyHandle {
                uri: k.uri.clone(),
                sealed: k.sealed.clone(),
            });
        }
    }

    fn load_issuer(&self, txn: &dyn Transaction, ca: &str) -> Result<LoadedIssuer> {
        let rec = txn
            .certificate(ca)?
            .ok_or_else(|| not_found("CA certificate", ca))?;
        let info = x509::inspect_certificate(&rec.cert.der)?;
        if !info.is_ca {
            return Err(ManagerError::refused(
                format!("\"{ca}\" is not a certificate authority"),
                Some("sign a template with key-usage=key-cert-sign,crl-sign to make a CA"),
            ));
        }
        if rec.revoked_at.is_some() {
            return Err(ManagerError::refused(
                format!("CA \"{ca}\" is revoked"),
                None,
            ));
        }
        if info.not_after < SystemTime::now() {
            return Err(ManagerError::refused(
                format!("CA \"{ca}\" has expired"),
                None,
            ));
        }
        let (_, handle) = ca_key_handle(txn, &rec)?;
        let signer = self.ca_signer(ca, &handle, &info)?;
        let key_identifier = signing_key_identifier(&info);
        Ok(LoadedIssuer {
            id: rec.id,
            name: rec.cert.name.clone(),
            subject: info.subject_name,
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
    fn plan(
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
            issuer_signer,
            properties: props.to_json(),
        })
    }

    /// Generates the key and builds the signed certificate (no store writes). A key made
    /// here is destroyed again if anything after its generation fails.
    fn prepare(
        &self,
        plan: &Plan,
        name: &str,
        provider: &dyn KeyProvider,
        location: &KeyLocation,
    ) -> Result<Issued> {
        let generated = provider.generate(&GenerateRequest {
            algorithm: plan.algorithm,
            label: name.to_owned(),
            location: match location {
                KeyLocation::Uri(u) => Some(u.clone()),
                _ => None,
            },
        })?;
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
    fn certify(
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

    fn insert_issued(txn: &mut dyn Transaction, issued: &Issued) -> Result<i64> {
        if let Some(k) = &issued.key {
            txn.insert_key(&KeyRecord {
                id: k.uri.store_id(),
                uri: k.uri.without_secrets().to_string(),
                algorithm: format!("{}/{}", k.algorithm.key_type(), k.algorithm.key_size()),
                sealed: k.sealed.clone(),
                token_serial: k.token_serial.clone(),
                slot: k.slot.clone(),
                created_at: now_micros(),
            })?;
        }
        Ok(txn.insert_certificate(&issued.record)?)
    }

    // ---------------------------------------------------------------- print

    /// All templates and certificates in creation order, or those named (in the order asked).
    pub fn entries(&self, names: &[String]) -> Result<Vec<Entry>> {
        let txn = self.store.begin(TxnMode::Read)?;
        if names.is_empty() {
            return view::collect(txn.as_ref());
        }
        names
            .iter()
            .map(|n| {
                view::lookup(txn.as_ref(), n)?
                    .ok_or_else(|| not_found("certificate or template", n))
            })
            .collect()
    }

    /// One entry by name.
    pub fn entry(&self, name: &str) -> Result<Entry> {
        let txn = self.store.begin(TxnMode::Read)?;
        view::lookup(txn.as_ref(), name)?.ok_or_else(|| not_found("certificate or template", name))
    }

    // ---------------------------------------------------------------- set

    /// `set NAME prop=value…`: any property of a template; only `name` and `trusted` of a
    /// certificate (the rest is read-only once signed).
    pub fn set(&self, req: &SetRequest) -> Result<()> {
        let mut txn = self.store.begin(TxnMode::Write)?;
        let new_name = req
            .changes
            .iter()
            .rev()
            .find(|(k, _)| k == "name")
            .map(|(_, v)| v.clone());
        if let Some(n) = &new_name {
            validate_name(n)?;
            if n != &req.name && txn.name_in_use(n)? {
                return Err(ManagerError::refused(
                    format!("name \"{n}\" is already in use"),
                    None,
                ));
            }
        }
        if let Some(t) = txn.template(&req.name)? {
            let mut props = TemplateProperties::from_json(&t.properties)?;
            for (k, v) in req.changes.iter().filter(|(k, _)| k != "name") {
                props.set(k, v)?;
            }
            props.resolve()?;
            txn.update_template(
                t.id,
                new_name.as_deref().unwrap_or(&t.name),
                &props.to_json(),
            )?;
        } else if let Some(c) = txn.certificate(&req.name)? {
            let mut trusted = c.cert.trusted;
            for (k, v) in &req.changes {
                match k.as_str() {
                    "name" => {}
                    "trusted" => trusted = template::parse_yes_no("trusted", v)?,
                    other => {
                        if !TEMPLATE_PROPERTIES.contains(&other) {
                            return Err(ManagerError::InvalidValue(format!(
                                "unknown property '{other}'"
                            )));
                        }
                        return Err(ManagerError::refused(
                            format!("{other} of certificate \"{}\" is read-only after signing", req.name),
                            Some("only name and trusted can change; make a new template to change the rest"),
                        ));
                    }
                }
            }
            if let Some(n) = &new_name {
                self.check_crl_rename(txn.as_ref(), &c, n)?;
            }
            txn.update_certificate(c.id, new_name.as_deref().unwrap_or(&c.cert.name), trusted)?;
        } else {
            return Err(not_found("certificate or template", &req.name));
        }
        txn.commit()?;
        Ok(())
    }

    // ---------------------------------------------------------------- remove

    /// `remove NAME…`: templates and self-signed/imported certificates go; a CA takes every
    /// certificate it issued with it (recursively); an issued certificate is refused. All or
    /// nothing.
    pub fn remove(&self, names: &[String], delete_token_keys: bool) -> Result<RemoveReport> {
        let mut txn = self.store.begin(TxnMode::Write)?;
        let mut token_keys: Vec<(String, KeyHandle)> = Vec::new();
        let mut report = RemoveReport::default();
        // Issued certificates last, so that `remove leaf ca` works like `remove ca leaf`: the
        // leaf goes with its CA; asked for alone it is refused.
        let mut ordered: Vec<&String> = Vec::with_capacity(names.len());
        let mut issued = Vec::new();
        for name in names {
            match txn.certificate(name)? {
                Some(c) if c.cert.issuer_id.is_some() => issued.push(name),
                _ => ordered.push(name),
            }
        }
        ordered.extend(issued);
        for name in ordered {
            if let Some(t) = txn.template(name)? {
                txn.delete_template(t.id)?;
                report.templates.push(t.name);
                continue;
            }
            let Some(c) = txn.certificate(name)? else {
                if report.certificates.contains(name) {
                    continue; // already removed with its CA
                }
                return Err(not_found("certificate or template", name));
            };
            if let Some(issuer_id) = c.cert.issuer_id {
                let ca = txn
                    .certificate_by_id(issuer_id)?
                    .map(|r| r.cert.name)
                    .unwrap_or_default();
                return Err(ManagerError::refused(
                    format!("\"{name}\" was issued by CA \"{ca}\" and cannot be removed"),
                    Some(&format!(
                        "revoke it with `certman issued-revoke {name}`; issued certificates go when their CA is removed"
                    )),
                ));
            }
            // Depth-first: every descendant before its issuer (foreign keys).
            let mut order = Vec::new();
            let mut stack = vec![(c.id, false)];
            while let Some((id, expanded)) = stack.pop() {
                if expanded {
                    order.push(id);
                } else {
                    stack.push((id, true));
                    for child in txn.issued_by(id)? {
                        stack.push((child, false));
                    }
                }
            }
            for id in order {
                let rec = txn
                    .certificate_by_id(id)?
                    .ok_or_else(|| not_found("certificate", &id.to_string()))?;
                txn.delete_certificate(id)?;
                if let Some(key_id) = &rec.cert.key_id {
                    if txn.key_users(key_id)? == 0 {
                        if let Some(k) = txn.key(key_id)? {
                            if k.sealed.is_none() {
                                token_keys.push((
                                    rec.cert.name.clone(),
                                    KeyHandle {
                                        uri: k.uri.parse()?,
                                        sealed: None,
                                    },
                                ));
                            }
                        }
                        txn.delete_key(key_id)?;
                    }
                }
                report.certificates.push(rec.cert.name);
            }
        }
        txn.commit()?;
        // Token keys outlive their certificates unless asked: a token is the operator's.
        for (name, handle) in token_keys {
            if !delete_token_keys {
                report.token_keys_kept.push((name, handle.uri.to_string()));
                continue;
            }
            let result = self.keys.provider(&handle.uri).and_then(|p| {
                if let Some(objects) = p.certificate_objects() {
                    objects.delete_certificate(&handle)?;
                }
                p.delete(&handle)
            });
            match result {
                Ok(()) => report
                    .token_keys_deleted
                    .push((name, handle.uri.to_string())),
                Err(e) => report
                    .token_key_errors
                    .push((name, format!("{}: {e}", handle.uri))),
            }
        }
        Ok(report)
    }

    // ---------------------------------------------------------------- export

    /// `export-certificate NAME [type=pem] [export-passphrase=…] [file-name=…]`: writes
    /// `<base>.crt`, and with a passphrase `<base>.key` (encrypted PKCS#8, mode 0600).
    /// Returns the files written.
    pub fn export_certificate(&self, req: &ExportRequest) -> Result<Vec<PathBuf>> {
        let (rec, key, stored_pass) = {
            let txn = self.store.begin(TxnMode::Read)?;
            let rec = txn
                .certificate(&req.name)?
                .ok_or_else(|| not_found("certificate", &req.name))?;
            let key = match &rec.cert.key_id {
                Some(id) => txn.key(id)?,
                None => None,
            };
            let stored = txn.ca_passphrase(rec.id)?;
            (rec, key, stored)
        };
        // A CA with a passphrase set by ca-set-passphrase exports its key with it.
        let stored_pass = match (&req.passphrase, stored_pass) {
            (None, Some(sealed)) => {
                let bytes = self.sealer.open(SealLabel::CaPassphrase(rec.id), &sealed)?;
                Some(Passphrase::new(
                    String::from_utf8(bytes.secret_bytes().to_vec()).map_err(|_| {
                        ManagerError::Store(crate::error::StoreError::Corrupt(
                            "CA passphrase is not text".into(),
                        ))
                    })?,
                ))
            }
            _ => None,
        };
        let passphrase = req.passphrase.as_ref().or(stored_pass.as_ref());
        let base = req
            .file_name
            .clone()
            .unwrap_or_else(|| format!("cert_export_{}", req.name));
        let base = req.dir.join(base);
        // With a passphrase, the key goes too: only where it may leave its provider.
        let pkcs8 = match passphrase {
            None => None,
            Some(_) => {
                let key = key.ok_or_else(|| {
                    ManagerError::refused(
                        format!("certificate \"{}\" has no private key to export", req.name),
                        Some("export without export-passphrase to write the certificate alone"),
                    )
                })?;
                let handle = KeyHandle {
                    uri: key.uri.parse()?,
                    sealed: key.sealed,
                };
                let provider = self.keys.provider(&handle.uri)?;
                let exporter = provider.exporter().ok_or_else(|| {
                    ManagerError::refused(
                        format!(
                            "the private key of \"{}\" is on a {} token and cannot be exported",
                            req.name,
                            provider.name()
                        ),
                        None,
                    )
                })?;
                Some(exporter.export_pkcs8(&handle)?)
            }
        };
        let write = |path: &Path, data: &[u8], mode: u32| {
            crate::fsutil::write_atomic(path, data, mode).map_err(|source| ManagerError::File {
                path: path.to_owned(),
                source,
            })
        };
        let mut written = Vec::new();
        match req.kind {
            ExportType::Pem => {
                if let (Some(k), Some(pass)) = (&pkcs8, passphrase) {
                    let pem = x509::encrypted_private_key_pem(k.secret_bytes(), pass.secret_str())?;
                    let path = with_extension(&base, "key");
                    write(&path, pem.as_bytes(), 0o600)?;
                    written.push(path);
                }
                let crt = with_extension(&base, "crt");
                write(
                    &crt,
                    x509::certificate_pem(&rec.cert.der)?.as_bytes(),
                    0o644,
                )?;
                written.insert(0, crt);
            }
            ExportType::Pkcs12 { legacy } => {
                // RouterOS: a certificate issued here is exported with its CA chain.
                let chain = {
                    let txn = self.store.begin(TxnMode::Read)?;
                    let mut chain = Vec::new();
                    let mut next = rec.cert.issuer_id;
                    while let Some(id) = next {
                        let Some(ca) = txn.certificate_by_id(id)? else {
                            break;
                        };
                        if chain.len() > 16 || ca.id == rec.id {
                            break;
                        }
                        next = ca.cert.issuer_id;
                        chain.push(ca.cert.der);
                    }
                    chain
                };
                let p12 = x509::pkcs12::encode(
                    pkcs8.as_ref().map(|k| k.secret_bytes()),
                    &rec.cert.der,
                    &chain,
                    passphrase.map(|p| p.secret_str()).unwrap_or(""),
                    Some(&req.name),
                    if legacy {
                        x509::pkcs12::Pkcs12Encryption::Legacy3Des
                    } else {
                        x509::pkcs12::Pkcs12Encryption::Aes256Pbkdf2
                    },
                )?;
                let path = with_extension(&base, "p12");
                write(&path, &p12, 0o600)?;
                written.push(path);
            }
        }
        Ok(written)
    }

    // ---------------------------------------------------------------- CA passphrase

    /// `ca-set-passphrase NAME passphrase=…`: stores, sealed like the keys, the passphrase
    /// this CA's key exports use when none is given.
    pub fn ca_set_passphrase(&self, name: &str, passphrase: &Passphrase) -> Result<()> {
        let mut txn = self.store.begin(TxnMode::Write)?;
        let rec = txn
            .certificate(name)?
            .ok_or_else(|| not_found("certificate", name))?;
        if !x509::inspect_certificate(&rec.cert.der)?.is_ca {
            return Err(ManagerError::refused(
                format!("\"{name}\" is not a certificate authority"),
                None,
            ));
        }
        let sealed = self.sealer.seal(
            SealLabel::CaPassphrase(rec.id),
            passphrase.secret_str().as_bytes(),
        )?;
        txn.set_ca_passphrase(rec.id, &sealed)?;
        txn.commit()?;
        Ok(())
    }

    // ---------------------------------------------------------------- import

    /// `import`: certificates and keys from files (formats found by content). Keys join the
    /// certificates (already in the store, or in the same import) whose public key they
    /// match. Duplicates are skipped. A file that cannot be read is reported and changes
    /// nothing; the rest is imported in one transaction.
    pub fn import(&self, req: &ImportRequest) -> Result<ImportReport> {
        let files: Vec<PathBuf> = {
            let target = match &req.file_name {
                Some(f) if f.is_absolute() => f.clone(),
                Some(f) => req.dir.join(f),
                None => req.dir.clone(),
            };
            let meta = std::fs::metadata(&target).map_err(|source| ManagerError::File {
                path: target.clone(),
                source,
            })?;
            if meta.is_dir() {
                let mut v: Vec<PathBuf> = std::fs::read_dir(&target)
                    .map_err(|source| ManagerError::File {
                        path: target.clone(),
                        source,
                    })?
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect();
                v.sort();
                v
            } else {
                vec![target]
            }
        };
        if let Some(n) = &req.name {
            validate_name(n)?;
        }
        let mut report = ImportReport::default();
        let pass = req.passphrase.as_ref().map(|p| p.secret_str());
        let mut parsed = Vec::new();
        for f in files {
            let bytes = match std::fs::metadata(&f) {
                Ok(m) if m.len() > x509::import::MAX_IMPORT_BYTES as u64 => {
                    report
                        .errors
                        .push((f, format!("{} bytes is too large to import", m.len())));
                    continue;
                }
                _ => match std::fs::read(&f) {
                    Ok(b) => b,
                    Err(e) => {
                        report.errors.push((f, e.to_string()));
                        continue;
                    }
                },
            };
            match x509::import::read_file(&bytes, pass) {
                Ok(c) => parsed.push((f, c)),
                Err(x509::import::ImportError::Decryption(m)) => {
                    report.decryption_failures += 1;
                    report.errors.push((f, m));
                }
                Err(e) => report.errors.push((f, e.to_string())),
            }
        }
        let importer = self
            .keys
            .soft()
            .importer()
            .ok_or_else(|| ManagerError::Key(KeyError::NotCapable("no key importer".into())))?;
        let mut txn = self.store.begin(TxnMode::Write)?;
        // Certificates without a key, by public key DER: where imported keys go.
        let mut keyless = keyless_certificates(txn.as_ref())?;
        // Keys of requests made here: a certificate coming back for one joins its key.
        let requested: Vec<(Vec<u8>, String)> = txn
            .requests()?
            .into_iter()
            .filter_map(|r| Some((r.request.public_key, r.request.key_id?)))
            .collect();
        let mut n_named = 0usize;
        for (file, contents) in &parsed {
            let mut imported = false;
            let mut file_certificate: Option<i64> = None;
            // Names from file names: characters a name may not hold become '_'.
            let stem: String = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
                .chars()
                .map(|c| {
                    if c.is_control() || c == '/' || c == '=' {
                        '_'
                    } else {
                        c
                    }
                })
                .scan(0usize, |bytes, c| {
                    // at most 200 bytes, so that `_N` keeps it under the 255-byte limit
                    *bytes += c.len_utf8();
                    (*bytes <= 200).then_some(c)
                })
                .collect::<String>()
                .trim_start_matches('-')
                .to_owned();
            let stem = if stem.is_empty() {
                "cert".to_owned()
            } else {
                stem
            };
            for der_cert in &contents.certificates {
                let info = x509::inspect_certificate(der_cert)?;
                if txn.certificate_by_fingerprint(&info.fingerprint)?.is_some() {
                    continue; // already here
                }
                let name = loop {
                    let candidate = match (&req.name, n_named) {
                        (Some(n), 0) => n.clone(),
                        (Some(n), i) => format!("{n}_{i}"),
                        (None, i) => format!("{stem}_{i}"),
                    };
                    n_named += 1;
                    if validate_name(&candidate).is_ok() && !txn.name_in_use(&candidate)? {
                        break candidate;
                    }
                    if n_named > 100_000 {
                        return Err(ManagerError::refused(
                            format!("no free name for a certificate from {}", file.display()),
                            Some("give name="),
                        ));
                    }
                    if req.name.is_some() && n_named == 1 {
                        return Err(ManagerError::refused(
                            format!("name \"{candidate}\" is already in use"),
                            Some("give another name="),
                        ));
                    }
                };
                let spki = der::Encode::to_der(&info.public_key).unwrap_or_default();
                let request_key = requested
                    .iter()
                    .find(|(pk, _)| *pk == spki)
                    .map(|(_, k)| k.clone());
                let id = txn.insert_certificate(&NewCertificate {
                    name,
                    serial: info.serial_hex.clone(),
                    fingerprint: info.fingerprint.clone(),
                    der: der_cert.clone(),
                    key_id: request_key.clone(),
                    issuer_id: None,
                    trusted: req.trusted.unwrap_or(false),
                    ca_crl_host: None,
                    properties: "{}".into(),
                    not_after: unix_secs(info.not_after),
                })?;
                file_certificate.get_or_insert(id);
                if request_key.is_none() {
                    keyless.push((id, spki));
                }
                report.certificates_imported += 1;
                imported = true;
            }
            for key in &contents.keys {
                let g = match importer.import_pkcs8(key.secret_bytes()) {
                    Ok(g) => g,
                    Err(e) => {
                        report
                            .errors
                            .push((file.clone(), format!("private key: {e}")));
                        continue;
                    }
                };
                let spki = der::Encode::to_der(&g.public_key).unwrap_or_default();
                match keyless.iter().position(|(_, pk)| *pk == spki) {
                    Some(i) => {
                        let (cert_id, _) = keyless.remove(i);
                        give_key(txn.as_mut(), cert_id, &g)?;
                        report.private_keys_imported += 1;
                        imported = true;
                    }
                    None => report.keys_with_no_certificate += 1,
                }
            }
            // v2.8: without a passphrase an encrypted key is kept, sealed and still
            // encrypted (flag Q on the certificate of the same file), until `decrypt`.
            for enc in &contents.encrypted_keys {
                let sealed = self.sealer.seal(SealLabel::EncryptedKey, enc)?;
                txn.insert_encrypted_key(&sealed, file_certificate)?;
                report.keys_kept_encrypted += 1;
                imported = true;
            }
            if imported {
                report.files_imported += 1;
            }
        }
        txn.commit()?;
        Ok(report)
    }

    /// `decrypt passphrase=…` (v2.8): opens the keys imported still encrypted; each that
    /// matches a certificate without a key is cached (decrypted, sealed) and gives it K.
    /// Returns `keys-decrypted`.
    pub fn decrypt_keys(&self, passphrase: &Passphrase) -> Result<usize> {
        let importer = self
            .keys
            .soft()
            .importer()
            .ok_or_else(|| ManagerError::Key(KeyError::NotCapable("no key importer".into())))?;
        let mut txn = self.store.begin(TxnMode::Write)?;
        let mut keyless = keyless_certificates(txn.as_ref())?;
        let mut decrypted = 0;
        for k in txn.encrypted_keys()? {
            if k.key_id.is_some() {
                continue;
            }
            let enc = self.sealer.open(SealLabel::EncryptedKey, &k.sealed)?;
            let Ok(pkcs8) =
                x509::import::open_encrypted_key(enc.secret_bytes(), passphrase.secret_str())
            else {
                continue; // another passphrase's key
            };
            let g = importer.import_pkcs8(pkcs8.secret_bytes())?;
            let spki = der::Encode::to_der(&g.public_key).unwrap_or_default();
            let Some(i) = keyless.iter().position(|(_, pk)| *pk == spki) else {
                continue;
            };
            let (cert_id, _) = keyless.remove(i);
            give_key(txn.as_mut(), cert_id, &g)?;
            txn.set_encrypted_key_copy(k.id, Some(&g.uri.store_id()), Some(cert_id))?;
            decrypted += 1;
        }
        txn.commit()?;
        Ok(decrypted)
    }

    /// `reset-certificate-cache` (v2.8): drops the decrypted copies of keys imported
    /// encrypted; their certificates go back to Q until the next `decrypt`. Returns how many.
    pub fn reset_certificate_cache(&self) -> Result<usize> {
        let mut txn = self.store.begin(TxnMode::Write)?;
        let mut dropped = 0;
        for k in txn.encrypted_keys()? {
            let Some(key_id) = &k.key_id else { continue };
            if let Some(cert_id) = k.certificate_id {
                txn.clear_certificate_key(cert_id)?;
            }
            txn.set_encrypted_key_copy(k.id, None, None)?;
            if txn.key_users(key_id)? == 0 {
                txn.delete_key(key_id)?;
            }
            dropped += 1;
        }
        txn.commit()?;
        Ok(dropped)
    }

    // ---------------------------------------------------------------- requests

    /// `create-certificate-request`: a PKCS#10 request from a template (consumed), written to
    /// `<base>.pem`, its key to `<base>_key.pem` encrypted with `key-passphrase` (mode 0600),
    /// or kept on the token with `on-smart-card=`. The request is remembered, with its key,
    /// so the signed certificate can join the key when it comes back. Returns the files.
    pub fn create_certificate_request(&self, req: &CreateRequest) -> Result<Vec<PathBuf>> {
        let (template_id, props) = {
            let txn = self.store.begin(TxnMode::Read)?;
            let t = txn
                .template(&req.template)?
                .ok_or_else(|| not_found("template", &req.template))?;
            (t.id, TemplateProperties::from_json(&t.properties)?)
        };
        let resolved = props.resolve()?;
        let location = self.resolve_location(&req.key_location)?;
        let provider = self.provider_for(&location)?;
        let soft = matches!(location, KeyLocation::Software);
        if soft && req.key_passphrase.is_none() {
            return Err(ManagerError::InvalidValue(
                "key-passphrase is needed: the request's private key is written encrypted with it \
                 (or keep the key on a token with on-smart-card=)"
                    .into(),
            ));
        }
        let subject = resolved.subject.to_name()?;
        if subject.is_empty() && resolved.subject_alt_names.is_empty() {
            return Err(ManagerError::InvalidValue(
                "the request would have neither a subject nor a subject-alt-name: set common-name"
                    .into(),
            ));
        }
        let base = req.dir.join(
            req.file_name
                .clone()
                .unwrap_or_else(|| "certificate-request".into()),
        );
        let csr_path = with_extension(&base, "pem");
        let mut key_path = base.as_os_str().to_owned();
        key_path.push("_key.pem");
        let key_path = PathBuf::from(key_path);

        let generated = provider.generate(&GenerateRequest {
            algorithm: resolved.algorithm,
            label: req.template.clone(),
            location: match &location {
                KeyLocation::Uri(u) => Some(u.clone()),
                _ => None,
            },
        })?;
        let handle = KeyHandle {
            uri: generated.uri.clone(),
            sealed: generated.sealed.clone(),
        };
        let mut written: Vec<PathBuf> = Vec::new();
        let result = (|| {
            let key = provider.signer_with_public_key(&handle, &generated.public_key)?;
            let scheme = signature_scheme_for(key.as_ref(), resolved.digest, &req.template)?;
            let signer = X509Signer::new(key, scheme)?;
            let der = x509::csr::build_request(
                &x509::csr::RequestSpec {
                    subject,
                    subject_alt_names: resolved.subject_alt_names.clone(),
                    key_usage: resolved.key_usage.clone(),
                    ca: resolved.is_ca(false),
                    challenge_password: req
                        .challenge_password
                        .as_ref()
                        .map(|p| p.secret_str().to_owned()),
                },
                &signer,
            )?;
            let key_pem = match (&req.key_passphrase, provider.exporter()) {
                (Some(pass), Some(exporter)) if soft => {
                    let pkcs8 = exporter.export_pkcs8(&handle)?;
                    Some(x509::encrypted_private_key_pem(
                        pkcs8.secret_bytes(),
                        pass.secret_str(),
                    )?)
                }
                _ => None,
            };
            let write = |path: &Path, data: &[u8], mode: u32| {
                crate::fsutil::write_atomic(path, data, mode).map_err(|source| ManagerError::File {
                    path: path.to_owned(),
                    source,
                })
            };
            write(&csr_path, x509::csr::request_pem(&der)?.as_bytes(), 0o644)?;
            written.push(csr_path.clone());
            if let Some(k) = key_pem {
                write(&key_path, k.as_bytes(), 0o600)?;
                written.push(key_path.clone());
            }
            let mut txn = self.store.begin(TxnMode::Write)?;
            match txn.template(&req.template)? {
                Some(t) if t.id == template_id => txn.delete_template(t.id)?,
                _ => return Err(not_found("template", &req.template)),
            }
            txn.insert_key(&KeyRecord {
                id: generated.uri.store_id(),
                uri: generated.uri.without_secrets().to_string(),
                algorithm: format!(
                    "{}/{}",
                    generated.algorithm.key_type(),
                    generated.algorithm.key_size()
                ),
                sealed: generated.sealed.clone(),
                token_serial: generated.token_serial.clone(),
                slot: generated.slot.clone(),
                created_at: now_micros(),
            })?;
            txn.insert_request(&crate::store::NewRequest {
                name: req.template.clone(),
                key_id: Some(generated.uri.store_id()),
                subject: x509::name_to_string(&resolved.subject.to_name()?),
                public_key: der::Encode::to_der(&generated.public_key)
                    .map_err(|e| ManagerError::X509(e.into()))?,
                der,
            })?;
            txn.commit()?;
            Ok(())
        })();
        if let Err(e) = result {
            for f in &written {
                let _ = std::fs::remove_file(f);
            }
            self.discard_key(provider, Some(&generated));
            return Err(e);
        }
        Ok(written)
    }

    /// `sign-certificate-request`: verifies a PKCS#10 request made elsewhere, issues a
    /// certificate for its key from `ca` with its subject, SANs and requested usages, stores it
    /// (flag I) and writes `cert_export_<name>.crt`. Returns the entry and the file.
    pub fn sign_certificate_request(&self, req: &SignRequestFile) -> Result<(Entry, PathBuf)> {
        let meta = std::fs::metadata(&req.file).map_err(|source| ManagerError::File {
            path: req.file.clone(),
            source,
        })?;
        if meta.len() > x509::csr::MAX_REQUEST_BYTES as u64 {
            return Err(ManagerError::InvalidValue(format!(
                "{}: {} bytes is too large for a certificate request",
                req.file.display(),
                meta.len()
            )));
        }
        let bytes = std::fs::read(&req.file).map_err(|source| ManagerError::File {
            path: req.file.clone(),
            source,
        })?;
        let info = x509::csr::parse_request(&bytes)
            .map_err(|e| ManagerError::InvalidValue(format!("{}: {e}", req.file.display())))?;
        let asks_ca = info.ca || info.key_usage.contains(x509::KeyUsageName::KeyCertSign);
        if asks_ca && !req.allow_ca {
            return Err(ManagerError::refused(
                format!(
                    "{}: the request asks for a CA certificate",
                    req.file.display()
                ),
                Some("give allow-ca=yes to issue a sub-CA for it"),
            ));
        }
        let fields = x509::subject_fields(&info.subject);
        let name = match &req.name {
            Some(n) => n.clone(),
            None => fields.common_name.clone().ok_or_else(|| {
                ManagerError::InvalidValue(
                    "the request has no common name: give name= for the certificate".into(),
                )
            })?,
        };
        validate_name(&name)?;
        let mut props = TemplateProperties::default();
        if let Some(d) = req.days_valid {
            props.set("days-valid", &d.to_string())?;
        }
        let issuer = {
            let txn = self.store.begin(TxnMode::Read)?;
            if txn.name_in_use(&name)? {
                return Err(ManagerError::refused(
                    format!("name \"{name}\" is already in use"),
                    Some("give name= for the certificate"),
                ));
            }
            self.load_issuer(txn.as_ref(), &req.ca)?
        };
        let algorithm = crate::keys::KeyAlgorithm::from_spki(info.public_key.owned_to_ref())?;
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
        let signer = plan
            .issuer_signer
            .clone()
            .ok_or_else(|| ManagerError::InvalidValue("no issuer".into()))?;
        let record = Self::certify(&plan, &name, &info.public_key, &signer)?;
        let out = req.dir.join(format!("cert_export_{name}.crt"));
        {
            let mut txn = self.store.begin(TxnMode::Write)?;
            if txn.name_in_use(&name)? {
                return Err(ManagerError::refused(
                    format!("name \"{name}\" is already in use"),
                    None,
                ));
            }
            let id = txn.insert_certificate(&record)?;
            self.after_insert(txn.as_mut(), id)?;
            crate::fsutil::write_atomic(
                &out,
                x509::certificate_pem(&record.der)?.as_bytes(),
                0o644,
            )
            .map_err(|source| ManagerError::File {
                path: out.clone(),
                source,
            })?;
            if let Err(e) = txn.commit() {
                let _ = std::fs::remove_file(&out);
                return Err(e.into());
            }
        }
        Ok((self.entry(&name)?, out))
    }

    // ---------------------------------------------------------------- tokens

    /// `card-verify NAME`: proves the certificate's key is present where its URI says and
    /// belongs to the certificate (public key compared where readable, and a fresh challenge
    /// signed and verified); reports what was checked and the token's state.
    pub fn card_verify(&self, name: &str) -> Result<CardVerifyResult> {
        let (rec, handle) = self.certificate_and_key(name)?;
        let provider = self.keys.provider(&handle.uri)?;
        let info = x509::inspect_certificate(&rec.cert.der)?;
        let token_status = provider.token_status(&handle);
        let report = crate::keys::card_verify(provider, &handle, &info.public_key)?;
        let certificate_object = match provider.certificate_objects() {
            Some(objects) => Some(
                objects
                    .load_certificate(&handle)?
                    .map(|der| der == rec.cert.der),
            ),
            None => None,
        };
        Ok(CardVerifyResult {
            key_uri: handle.uri.to_string(),
            report,
            token_status,
            certificate_object,
        })
    }

    /// `card-reinstall NAME [--force]`: writes the certificate object back onto the token
    /// beside its key, after card-verify (unless forced).
    pub fn card_reinstall(&self, name: &str, force: bool) -> Result<Option<CardVerifyResult>> {
        let (rec, handle) = self.certificate_and_key(name)?;
        let provider = self.keys.provider(&handle.uri)?;
        let objects = provider.certificate_objects().ok_or_else(|| {
            ManagerError::refused(
                format!(
                    "the key of \"{name}\" is in {} storage, not on a token",
                    provider.name()
                ),
                Some("card-reinstall applies to certificates whose print flags show C"),
            )
        })?;
        let verified = if force {
            None
        } else {
            Some(self.card_verify(name)?)
        };
        objects.store_certificate(&handle, &rec.cert.der)?;
        Ok(verified)
    }

    /// `token print [PROFILE]`.
    pub fn token_listing(&self, profile: Option<&str>) -> Result<Vec<crate::keys::ProfileListing>> {
        Ok(self.keys.token_listing(profile)?)
    }

    fn certificate_and_key(&self, name: &str) -> Result<(CertificateRecord, KeyHandle)> {
        let rec = self.certificate_record(name)?;
        let handle = self.key_handle(name)?.ok_or_else(|| {
            ManagerError::refused(
                format!("certificate \"{name}\" has no private key here"),
                None,
            )
        })?;
        Ok((rec, handle))
    }

    /// The key handle of a stored certificate (for card-verify and the like).
    pub fn key_handle(&self, name: &str) -> Result<Option<KeyHandle>> {
        let txn = self.store.begin(TxnMode::Read)?;
        let rec = txn
            .certificate(name)?
            .ok_or_else(|| not_found("certificate", name))?;
        let Some(id) = rec.cert.key_id else {
            return Ok(None);
        };
        let key = txn.key(&id)?.ok_or_else(|| {
            ManagerError::Store(crate::error::StoreError::Corrupt(format!(
                "key {id} missing"
            )))
        })?;
        Ok(Some(KeyHandle {
            uri: key.uri.parse()?,
            sealed: key.sealed,
        }))
    }

    /// A stored certificate's record.
    pub fn certificate_record(&self, name: &str) -> Result<CertificateRecord> {
        let txn = self.store.begin(TxnMode::Read)?;
        txn.certificate(name)?
            .ok_or_else(|| not_found("certificate", name))
    }
}

/// The key of CA `rec` as the store knows it: its store id and handle.
pub(crate) fn ca_key_handle(
    txn: &dyn Transaction,
    rec: &CertificateRecord,
) -> Result<(String, KeyHandle)> {
    let ca = &rec.cert.name;
    let key_id = rec.cert.key_id.clone().ok_or_else(|| {
        ManagerError::refused(
            format!("CA \"{ca}\" has no private key here, so it cannot sign"),
            Some("import the CA's private key, or sign with a CA whose print flags show K"),
        )
    })?;
    let key = txn.key(&key_id)?.ok_or_else(|| {
        ManagerError::Store(crate::error::StoreError::Corrupt(format!(
            "key {key_id} of \"{ca}\" is missing"
        )))
    })?;
    let handle = KeyHandle {
        uri: key.uri.parse()?,
        sealed: key.sealed.clone(),
    };
    Ok((key_id, handle))
}

/// The identifier of a CA's key, as the AKI of what it signs: its certificate's SKI, else
/// derived from the key.
pub(crate) fn signing_key_identifier(info: &x509::CertificateInfo) -> Vec<u8> {
    info.subject_key_identifier
        .clone()
        .unwrap_or_else(|| x509::key_identifier(info.public_key.owned_to_ref()))
}

/// The scheme `signer` signs with for `digest-algorithm` (or its default), refused as a
/// usage error when the key or its provider cannot make it.
pub(crate) fn signature_scheme_for(
    signer: &dyn KeySigner,
    digest: Option<crate::keys::HashAlgorithm>,
    signer_name: &str,
) -> Result<crate::keys::SignatureScheme> {
    let alg = signer.algorithm();
    let refuse = |why: String| {
        ManagerError::InvalidValue(format!(
            "digest-algorithm: the {alg} key of \"{signer_name}\" {why}"
        ))
    };
    let scheme = alg
        .signature_scheme(digest)
        .map_err(|e| refuse(format!("cannot use it ({})", crate::error::key_detail(&e))))?;
    if !signer.supports(scheme) {
        return Err(refuse(format!("cannot sign with {scheme}")));
    }
    Ok(scheme)
}

/// Certificates without a private key, with their public keys (DER): where keys coming from
/// outside go.
fn keyless_certificates(txn: &dyn Transaction) -> Result<Vec<(i64, Vec<u8>)>> {
    let mut out = Vec::new();
    for c in txn.certificates()? {
        if c.cert.key_id.is_none() {
            if let Ok(info) = x509::inspect_certificate(&c.cert.der) {
                out.push((
                    c.id,
                    der::Encode::to_der(&info.public_key).unwrap_or_default(),
                ));
            }
        }
    }
    Ok(out)
}

/// Stores a key taken from outside and gives it to a certificate.
fn give_key(txn: &mut dyn Transaction, certificate_id: i64, key: &GeneratedKey) -> Result<()> {
    txn.insert_key(&KeyRecord {
        id: key.uri.store_id(),
        uri: key.uri.without_secrets().to_string(),
        algorithm: format!("{}/{}", key.algorithm.key_type(), key.algorithm.key_size()),
        sealed: key.sealed.clone(),
        token_serial: key.token_serial.clone(),
        slot: key.slot.clone(),
        created_at: now_micros(),
    })?;
    txn.set_certificate_key(certificate_id, &key.uri.store_id())?;
    Ok(())
}

fn with_extension(base: &Path, ext: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

fn copy_properties(txn: &dyn Transaction, src: &str) -> Result<TemplateProperties> {
    if let Some(t) = txn.template(src)? {
        return TemplateProperties::from_json(&t.properties);
    }
    // copy-from a certificate: take what it was made of, as RouterOS does.
    let c = txn
        .certificate(src)?
        .ok_or_else(|| not_found("template or certificate", src))?;
    let info = x509::inspect_certificate(&c.cert.der)?;
    let mut p = TemplateProperties::from_json(&c.cert.properties).unwrap_or_default();
    let f = info.subject_fields;
    p.common_name = f.common_name;
    p.country = f.country;
    p.state = f.state;
    p.locality = f.locality;
    p.organization = f.organization;
    p.unit = f.unit;
    p.subject_alt_name = (!info.subject_alt_name.is_empty()).then_some(info.subject_alt_name);
    if let Some(a) = info.key_algorithm {
        p.key_type = Some(a.key_type().to_owned());
        p.key_size = match a {
            crate::keys::KeyAlgorithm::Ed25519 => None,
            _ => Some(a.key_size()),
        };
    }
    p.key_usage = (!info.key_usage.is_empty()).then(|| info.key_usage.to_string());
    Ok(p)
}

/// What every certificate made from one template by one issuer shares.
struct Plan {
    algorithm: crate::keys::KeyAlgorithm,
    digest: Option<crate::keys::HashAlgorithm>,
    days_valid: u32,
    subject: x509_cert::name::Name,
    subject_alt_names: Vec<x509_cert::ext::pkix::name::GeneralName>,
    is_ca: bool,
    key_usage: x509::KeyUsageSet,
    trusted: bool,
    ca_crl_host: Option<String>,
    crl_distribution_point: Option<String>,
    issuer: Option<IssuerInfo>,
    issuer_id: Option<i64>,
    /// the issuer's key with its scheme; `None` = self-signed by the new key
    issuer_signer: Option<X509Signer>,
    properties: String,
}

struct LoadedIssuer {
    id: i64,
    name: String,
    subject: x509_cert::name::Name,
    key_identifier: Vec<u8>,
    crl_host: Option<String>,
    signer: Arc<dyn KeySigner>,
}

#[cfg(test)]
mod tests;

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

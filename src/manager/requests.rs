//! Certificate requests: `create-certificate-request` (a PKCS#10 from a template, its key kept)
//! and `sign-certificate-request` (a request made elsewhere, issued by a local CA).

use std::path::{Path, PathBuf};

use der::referenced::OwnedToRef;

use super::template::{self, TemplateProperties};
use super::{
    not_found, signature_scheme_for, validate_name, with_extension, Entry, KeyLocation, Manager,
};
use crate::error::{ManagerError, Result};
use crate::keys::{GenerateRequest, KeyHandle, X509Signer};
use crate::secret::Passphrase;
use crate::store::{now_micros, KeyRecord, TxnMode};
use crate::x509;

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

impl Manager {
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
}

//! Certificate requests: `create-certificate-request` (a PKCS#10 from a template, its key kept)
//! and `sign-certificate-request` (a request made elsewhere, issued by a local CA).

use std::path::{Path, PathBuf};

use super::template::TemplateProperties;
use super::{
    key_record, prepare, publish, with_extension, Entry, IssueRequest, KeyLocation, Manager,
};
use crate::error::{ManagerError, ObjectKind, Refusal, RequestFault, Result};
use crate::secret::Passphrase;
use crate::store::TxnMode;
use crate::x509;

/// `create-certificate-request template=… [key-passphrase=…] [file-name=…] [on-smart-card=…]`,
/// or RouterOS v2.8's dialogue (`certificate-request-file-name`, `file-name`, `passphrase`,
/// `rsa-key-bits`, the subject's fields, `email-address`, `challenge-password`,
/// `unstructured-address`) with or without a template.
#[derive(Debug, Default)]
pub struct CreateRequest {
    /// the template to consume; `None`: the request is described by `properties` alone
    pub template: Option<String>,
    /// template properties (`common-name`, `country`, `key-type`, `key-size`, …) set on top
    /// of the template's, as `set` would
    pub properties: Vec<(String, String)>,
    /// the subject's emailAddress (PKCS#9, after the CN as OpenSSL puts it): v2.8's "email
    /// address"
    pub email_address: Option<String>,
    /// the PKCS#9 unstructuredAddress attribute: v2.8's "unstructured address"
    pub unstructured_address: Option<String>,
    /// encrypts the key file of a software key (required for one)
    pub key_passphrase: Option<Passphrase>,
    /// the challengePassword attribute
    pub challenge_password: Option<crate::secret::SecretString>,
    /// base file name (default `certificate-request`: `<base>.pem`, `<base>_key.pem`); with
    /// `request_file_name`, the key file's name itself (v2.8's "file name")
    pub file_name: Option<String>,
    /// the request file's name itself (v2.8's "certificate request file name")
    pub request_file_name: Option<String>,
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

/// Where the request and its key are written: `<base>.pem` and `<base>_key.pem` (base
/// `file_name`, default `certificate-request`); with v2.8's `certificate-request-file-name`,
/// the request there exactly and the key at `file_name` exactly (default: the request's name
/// with `_key.pem` for its extension).
fn request_paths(
    dir: &Path,
    request_file_name: Option<&str>,
    file_name: Option<&str>,
) -> (PathBuf, PathBuf) {
    let key_beside = |base: &Path| {
        let mut key = base.as_os_str().to_owned();
        key.push("_key.pem");
        PathBuf::from(key)
    };
    match request_file_name {
        Some(csr) => {
            let csr = dir.join(csr);
            let key = match file_name {
                Some(k) => dir.join(k),
                None => key_beside(&csr.with_extension("")),
            };
            (csr, key)
        }
        None => {
            let base = dir.join(file_name.unwrap_or("certificate-request"));
            (with_extension(&base, "pem"), key_beside(&base))
        }
    }
}

impl Manager {
    // ---------------------------------------------------------------- requests

    /// `create-certificate-request`: a PKCS#10 request from a template (consumed) and/or the
    /// properties given, written to `<base>.pem` (or v2.8's `certificate-request-file-name`),
    /// its key to `<base>_key.pem` (or v2.8's `file-name`) encrypted with `key-passphrase`
    /// (mode 0600),
    /// or kept on the token with `on-smart-card=`. The request is remembered, with its key,
    /// so the signed certificate can join the key when it comes back. Returns the files.
    pub fn create_certificate_request(&self, req: &CreateRequest) -> Result<Vec<PathBuf>> {
        let (template_id, mut props) = match &req.template {
            Some(name) => {
                let txn = self.store.begin(TxnMode::Read)?;
                let t = txn
                    .template(name)?
                    .ok_or_else(|| ManagerError::not_found(ObjectKind::Template, name))?;
                (Some(t.id), TemplateProperties::from_json(&t.properties)?)
            }
            None => (None, TemplateProperties::default()),
        };
        for (property, value) in &req.properties {
            props.set(property, value)?;
        }
        let resolved = props.resolve()?;
        let location = self.resolve_location(&req.key_location)?;
        // an unknown profile or key URI is refused before anything else
        self.provider_for(&location)?;
        let soft = matches!(location, KeyLocation::Software);
        if soft && req.key_passphrase.is_none() {
            return Err(ManagerError::InvalidValue(
                "key-passphrase is needed: the request's private key is written encrypted with it \
                 (or keep the key on a token with on-smart-card=)"
                    .into(),
            ));
        }
        let mut subject = resolved.subject.to_name()?;
        if let Some(email) = req.email_address.as_deref().filter(|e| !e.is_empty()) {
            subject = x509::with_email_address(subject, email)
                .map_err(|e| ManagerError::InvalidValue(format!("email-address: {e}")))?;
        }
        if let Some(addr) = &req.unstructured_address {
            x509::csr::check_unstructured_address(addr)
                .map_err(|e| ManagerError::InvalidValue(format!("unstructured-address: {e}")))?;
        }
        if subject.is_empty() && resolved.subject_alt_names.is_empty() {
            return Err(ManagerError::InvalidValue(
                "the request would have neither a subject nor a subject-alt-name: set common-name"
                    .into(),
            ));
        }
        let (csr_path, key_path) = request_paths(
            &req.dir,
            req.request_file_name.as_deref(),
            req.file_name.as_deref(),
        );
        if csr_path == key_path {
            return Err(ManagerError::InvalidValue(format!(
                "the request and its key would both be written to {}",
                csr_path.display()
            )));
        }
        // what the request and its key are called: the template's name, or the file's
        let label = match &req.template {
            Some(t) => t.clone(),
            None => csr_path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "certificate-request".into()),
        };

        let (provider, generated, handle) =
            self.generate_key(&location, resolved.algorithm, &label)?;
        let result = (|| {
            let signer = self.x509_signer(
                provider,
                &handle,
                &generated.public_key,
                resolved.digest,
                &label,
            )?;
            let der = x509::csr::build_request(
                &x509::csr::RequestSpec {
                    subject: subject.clone(),
                    subject_alt_names: resolved.subject_alt_names.clone(),
                    key_usage: resolved.key_usage.clone(),
                    ca: resolved.is_ca(false),
                    challenge_password: req
                        .challenge_password
                        .as_ref()
                        .map(|p| p.secret_str().to_owned()),
                    unstructured_address: req
                        .unstructured_address
                        .clone()
                        .filter(|a| !a.is_empty()),
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
            // Written now, published only after the commit.
            let mut files = vec![prepare(
                &csr_path,
                x509::csr::request_pem(&der)?.as_bytes(),
                0o644,
            )?];
            if let Some(k) = key_pem {
                files.push(prepare(&key_path, k.as_bytes(), 0o600)?);
            }
            let request = crate::store::NewRequest {
                name: label.clone(),
                key_id: Some(generated.uri.store_id()),
                subject: x509::name_to_string(&subject),
                public_key: der::Encode::to_der(&generated.public_key)
                    .map_err(|e| ManagerError::X509(e.into()))?,
                der,
            };
            self.write(|txn| {
                // consumed once: a request or sign of the same template meanwhile took it
                if let (Some(name), Some(id)) = (&req.template, template_id) {
                    match txn.template(name)? {
                        Some(t) if t.id == id && txn.delete_template(t.id)? => {}
                        _ => return Err(ManagerError::not_found(ObjectKind::Template, name)),
                    }
                }
                txn.insert_key(&key_record(&generated))?;
                txn.insert_request(&request)?;
                Ok(())
            })?;
            Ok(files)
        })();
        match result {
            Ok(files) => publish(
                files,
                Some((
                    &format!("the request \"{label}\" is kept with its key"),
                    if req.template.is_some() {
                        "make the request again from a new template (this one was consumed)"
                    } else {
                        "make the request again"
                    },
                )),
            ),
            Err(e) => {
                // The files were never published; a key made here goes again.
                self.discard_key(provider, Some(&generated));
                Err(e)
            }
        }
    }

    /// `sign-certificate-request`: reads and verifies a PKCS#10 request made elsewhere, issues
    /// a certificate for its key from `ca` through the issuance core (one transaction), then
    /// writes `cert_export_<name>.crt` — prepared before the commit, published after it, so
    /// that no certificate file exists for a certificate the store does not hold. Returns the
    /// entry and the file.
    pub fn sign_certificate_request(&self, req: &SignRequestFile) -> Result<(Entry, PathBuf)> {
        let file = &req.file;
        let bytes = read_bounded(file, x509::csr::MAX_REQUEST_BYTES, "a certificate request")?;
        let info = x509::csr::parse_request(&bytes).map_err(|e| ManagerError::BadRequest {
            fault: e.request_fault(),
            message: format!("{}: {e}", file.display()),
        })?;
        let about_file = |e: ManagerError| match e {
            ManagerError::Refused {
                reason: reason @ Refusal::CaRequestNotAllowed,
                message,
                hint,
            } => ManagerError::Refused {
                reason,
                message: format!("{}: {message}", file.display()),
                hint,
            },
            ManagerError::BadRequest { fault, message } => ManagerError::BadRequest {
                fault,
                message: format!("{}: {message}", file.display()),
            },
            e => e,
        };
        let certified = self
            .certify_request(&IssueRequest {
                ca: &req.ca,
                request: &info,
                name: req.name.as_deref(),
                days_valid: req.days_valid,
                allow_ca: req.allow_ca,
            })
            .map_err(about_file)?;
        let out = req
            .dir
            .join(format!("cert_export_{}.crt", certified.name()));
        let pending = prepare(
            &out,
            x509::certificate_pem(certified.der())?.as_bytes(),
            0o644,
        )?;
        let issued = self.store_certified(certified)?;
        let name = &issued.entry.name;
        publish(
            vec![pending],
            Some((
                &format!("certificate \"{name}\" was issued and stored"),
                &format!("`certman export-certificate {name}` writes it"),
            )),
        )?;
        Ok((issued.entry, out))
    }
}

/// Reads a file from outside of at most `max` bytes (`what` it should be, for the message).
fn read_bounded(path: &Path, max: usize, what: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let file_err = |source| ManagerError::File {
        path: path.to_owned(),
        source,
    };
    let f = std::fs::File::open(path).map_err(file_err)?;
    let mut bytes = Vec::new();
    f.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(file_err)?;
    if bytes.len() > max {
        return Err(ManagerError::BadRequest {
            fault: RequestFault::BadRequest,
            message: format!(
                "{}: too large for {what} (more than {max} bytes)",
                path.display()
            ),
        });
    }
    Ok(bytes)
}

//! `export-certificate` (PEM, PKCS#12) and `ca-set-passphrase`.

use std::path::PathBuf;

use super::{prepare, publish, with_extension, Manager};
use crate::error::{ManagerError, ObjectKind, Refusal, Result};
use crate::keys::KeyHandle;
use crate::seal::SealLabel;
use crate::secret::Passphrase;
use crate::store::TxnMode;
use crate::x509;

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

impl Manager {
    // ---------------------------------------------------------------- export

    /// `export-certificate NAME [type=pem] [export-passphrase=…] [file-name=…]`: writes
    /// `<base>.crt`, and with a passphrase `<base>.key` (encrypted PKCS#8, mode 0600).
    /// Returns the files written.
    pub fn export_certificate(&self, req: &ExportRequest) -> Result<Vec<PathBuf>> {
        let (rec, key, stored_pass) = {
            let txn = self.store.begin(TxnMode::Read)?;
            let rec = txn
                .certificate(&req.name)?
                .ok_or_else(|| ManagerError::not_found(ObjectKind::Certificate, &req.name))?;
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
                        Refusal::NoPrivateKey,
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
                        Refusal::KeyNotExportable,
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
        // Every file written in full before any is published.
        let mut files = Vec::new();
        match req.kind {
            ExportType::Pem => {
                if let (Some(k), Some(pass)) = (&pkcs8, passphrase) {
                    let pem = x509::encrypted_private_key_pem(k.secret_bytes(), pass.secret_str())?;
                    files.push(prepare(
                        &with_extension(&base, "key"),
                        pem.as_bytes(),
                        0o600,
                    )?);
                }
                let crt = x509::certificate_pem(&rec.cert.der)?;
                files.push(prepare(
                    &with_extension(&base, "crt"),
                    crt.as_bytes(),
                    0o644,
                )?);
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
                files.push(prepare(&with_extension(&base, "p12"), &p12, 0o600)?);
            }
        }
        let mut written = publish(files, None)?;
        // The key is published before its certificate; the report names the certificate first.
        if written.len() == 2 {
            written.swap(0, 1);
        }
        Ok(written)
    }

    // ---------------------------------------------------------------- CA passphrase

    /// `ca-set-passphrase NAME passphrase=…`: stores, sealed like the keys, the passphrase
    /// this CA's key exports use when none is given.
    pub fn ca_set_passphrase(&self, name: &str, passphrase: &Passphrase) -> Result<()> {
        self.write(|txn| {
            let rec = txn
                .certificate(name)?
                .ok_or_else(|| ManagerError::not_found(ObjectKind::Certificate, name))?;
            if !x509::inspect_certificate(&rec.cert.der)?.is_ca {
                return Err(ManagerError::refused(
                    Refusal::NotACa,
                    format!("\"{name}\" is not a certificate authority"),
                    None,
                ));
            }
            let sealed = self.sealer.seal(
                SealLabel::CaPassphrase(rec.id),
                passphrase.secret_str().as_bytes(),
            )?;
            txn.set_ca_passphrase(rec.id, &sealed)?;
            Ok(())
        })
    }
}

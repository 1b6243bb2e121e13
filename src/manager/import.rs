//! `import` (certificates and keys by content), and RouterOS v2.8's `decrypt` and
//! `reset-certificate-cache` for keys kept encrypted.

use std::path::PathBuf;

use super::{unix_secs, validate_name, Manager};
use crate::error::{KeyError, ManagerError, Refusal, Result, StoreError};
use crate::keys::GeneratedKey;
use crate::seal::SealLabel;
use crate::secret::Passphrase;
use crate::store::{NewCertificate, Transaction};
use crate::x509;

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
    /// encrypted keys kept (sealed, still encrypted) until `decrypt passphrase=`; each is
    /// also counted in `private_keys_imported` (its certificate shows Q) or, when no
    /// certificate could be told for it, in `keys_with_no_certificate`
    pub keys_kept_encrypted: usize,
    /// of `keys_kept_encrypted`, those counted in `keys_with_no_certificate`
    pub keys_kept_encrypted_with_no_certificate: usize,
    /// (file, why) for every file that could not be read
    pub errors: Vec<(PathBuf, String)>,
}

impl Manager {
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
        // a directory of files, each perhaps with a key derivation to run: a bar
        let task = (files.len() > 1).then(|| {
            super::progress::Task::start(
                self.progress.as_ref(),
                &format!("importing {} files", files.len()),
                Some(files.len() as u64),
            )
        });
        for f in files {
            match read_one(&f, pass) {
                Ok(c) => parsed.push((f, c)),
                Err((why, decryption)) => {
                    if decryption {
                        report.decryption_failures += 1;
                    }
                    report.errors.push((f, why));
                }
            }
            if let Some(t) = &task {
                t.advance(1);
            }
        }
        drop(task);
        let importer = self
            .keys
            .soft()
            .importer()
            .ok_or_else(|| ManagerError::Key(KeyError::NotCapable("no key importer".into())))?;
        // Every file that could be read, in one transaction (run again whole on a conflict).
        let read = report;
        self.write(|txn| {
            let mut report = read.clone();
            // Certificates without a key, by public key DER: where imported keys go.
            let mut keyless = keyless_certificates(txn)?;
            // Keys of requests made here: a certificate coming back for one joins its key.
            let requested: Vec<(Vec<u8>, String)> = txn
                .requests()?
                .into_iter()
                .filter_map(|r| Some((r.request.public_key, r.request.key_id?)))
                .collect();
            let mut n_named = 0usize;
            // encrypted keys kept (file, EncryptedPrivateKeyInfo, that file's certificate)
            let mut kept: Vec<(&PathBuf, &Vec<u8>, Option<i64>)> = Vec::new();
            // certificates imported now, by the file they came from
            let mut from_files: Vec<(&PathBuf, i64)> = Vec::new();
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
                                Refusal::NoFreeName,
                                format!("no free name for a certificate from {}", file.display()),
                                Some("give name="),
                            ));
                        }
                        if req.name.is_some() && n_named == 1 {
                            return Err(ManagerError::refused(
                                Refusal::NameInUse,
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
                    let id = txn
                        .insert_certificate(&NewCertificate {
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
                        })
                        // The name and the fingerprint were read free in this transaction: taken
                        // now means another writer took them meanwhile (PostgreSQL). The whole
                        // import runs again and reads them anew.
                        .map_err(|e| match e {
                            StoreError::NameTaken(_) | StoreError::Duplicate(_) => {
                                StoreError::Conflict
                            }
                            e => e,
                        })?;
                    file_certificate.get_or_insert(id);
                    from_files.push((file, id));
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
                            give_key(txn, cert_id, &g)?;
                            report.private_keys_imported += 1;
                            imported = true;
                        }
                        None => report.keys_with_no_certificate += 1,
                    }
                }
                // v2.8: without a passphrase an encrypted key is kept, sealed and still
                // encrypted, until `decrypt`; which certificate shows Q is decided below, once
                // every file's certificates are in.
                for enc in &contents.encrypted_keys {
                    kept.push((file, enc, file_certificate));
                    imported = true;
                }
                if imported {
                    report.files_imported += 1;
                }
            }
            // The certificate each kept key is for, as far as can be told without opening it
            // (`decrypt` matches by public key and corrects it): the certificate of its own
            // file; else one imported now from its pair file (`x.crt` + `x.key`,
            // `NAME.pem` + `NAME_key.pem`); else the only certificate that has no key and
            // awaits none and is not a trust anchor. No guess: no Q, counted as a key with no
            // certificate.
            let mut awaiting: std::collections::HashSet<i64> = txn
                .encrypted_keys()?
                .into_iter()
                .filter(|k| k.key_id.is_none())
                .filter_map(|k| k.certificate_id.or(k.hint_certificate_id))
                .collect();
            // trusted certificates without a key are trust anchors, kept keyless on purpose:
            // never the guess for a key that came alone
            let anchors: std::collections::HashSet<i64> = txn
                .certificates()?
                .into_iter()
                .filter(|c| c.cert.trusted && c.cert.key_id.is_none())
                .map(|c| c.id)
                .collect();
            for (file, enc, own) in kept {
                let free =
                    |id: &i64| keyless.iter().any(|(c, _)| c == id) && !awaiting.contains(id);
                let hint = own.filter(free).or_else(|| {
                    let stem = pair_stem(file);
                    let pair: Vec<i64> = from_files
                        .iter()
                        .filter(|(f, id)| *f != file && pair_stem(f) == stem && free(id))
                        .map(|(_, id)| *id)
                        .collect();
                    match pair[..] {
                        [only] => Some(only),
                        _ => None,
                    }
                });
                let hint = hint.or_else(|| {
                    let open: Vec<i64> = keyless
                        .iter()
                        .map(|(id, _)| *id)
                        .filter(|id| !awaiting.contains(id) && !anchors.contains(id))
                        .collect();
                    match open[..] {
                        [only] => Some(only),
                        _ => None,
                    }
                });
                let sealed = self.sealer.seal(SealLabel::EncryptedKey, enc)?;
                txn.insert_encrypted_key(&sealed, hint)?;
                report.keys_kept_encrypted += 1;
                match hint {
                    Some(id) => {
                        awaiting.insert(id);
                        report.private_keys_imported += 1;
                    }
                    None => {
                        report.keys_with_no_certificate += 1;
                        report.keys_kept_encrypted_with_no_certificate += 1;
                    }
                }
            }
            Ok(report)
        })
    }

    /// `decrypt passphrase=…` (v2.8): opens the keys imported still encrypted; each that
    /// matches a certificate without a key is cached (decrypted, sealed) and gives it K.
    /// Returns `keys-decrypted`; a `decrypt` that decrypts nothing (no key waits, or the
    /// passphrase opens none of them) is a failure, so that a mistyped passphrase is not
    /// taken for success.
    pub fn decrypt_keys(&self, passphrase: &Passphrase) -> Result<usize> {
        let importer = self
            .keys
            .soft()
            .importer()
            .ok_or_else(|| ManagerError::Key(KeyError::NotCapable("no key importer".into())))?;
        self.write(|txn| {
            let mut keyless = keyless_certificates(txn)?;
            let mut decrypted = 0;
            // keys waiting (not decrypted yet), and those the passphrase opened
            let (mut waiting, mut opened) = (0usize, 0usize);
            // every key is tried with the passphrase: their key derivations together are
            // bounded, as one file's are
            let mut budget = x509::budget::Budget::command();
            for k in txn.encrypted_keys()? {
                if k.key_id.is_some() {
                    continue;
                }
                waiting += 1;
                let enc = self.sealer.open(SealLabel::EncryptedKey, &k.sealed)?;
                let pkcs8 = match x509::import::open_encrypted_key(
                    enc.secret_bytes(),
                    passphrase.secret_str(),
                    &mut budget,
                ) {
                    Ok(p) => p,
                    Err(x509::import::ImportError::Invalid(why)) => {
                        return Err(ManagerError::BadRequest {
                            fault: crate::error::RequestFault::BadRequest,
                            message: format!("decrypt: {why}"),
                        })
                    }
                    Err(_) => continue, // another passphrase's key
                };
                opened += 1;
                let g = importer.import_pkcs8(pkcs8.secret_bytes())?;
                let spki = der::Encode::to_der(&g.public_key).unwrap_or_default();
                let Some(i) = keyless.iter().position(|(_, pk)| *pk == spki) else {
                    continue;
                };
                let (cert_id, _) = keyless.remove(i);
                give_key(txn, cert_id, &g)?;
                txn.set_encrypted_key_copy(k.id, Some(&g.uri.store_id()), Some(cert_id))?;
                decrypted += 1;
            }
            match (waiting, opened, decrypted) {
                (0, _, _) => Err(ManagerError::Failed(
                    "decrypt: no private key waits to be decrypted (none was imported still \
                     encrypted, or all are decrypted already)"
                        .into(),
                )),
                (n, 0, _) => Err(ManagerError::Failed(format!(
                    "decrypt: the passphrase opens none of the {n} private key(s) kept encrypted \
                     (flag Q); nothing was decrypted"
                ))),
                (_, o, 0) => Err(ManagerError::Failed(format!(
                    "decrypt: the passphrase opens {o} private key(s), but none belongs to a \
                     certificate without a key; import its certificate first"
                ))),
                _ => Ok(decrypted),
            }
        })
    }

    /// `reset-certificate-cache` (v2.8): drops the decrypted copies of keys imported
    /// encrypted; their certificates go back to Q until the next `decrypt`. Returns how many.
    pub fn reset_certificate_cache(&self) -> Result<usize> {
        self.write(|txn| {
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
            Ok(dropped)
        })
    }
}

/// What names a certificate file and its key file alike: the file name without its
/// extension and a `_key`/`-key` suffix (`x.crt`/`x.key`, `req.pem`/`req_key.pem`).
fn pair_stem(file: &std::path::Path) -> String {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    ["_key", "-key", ".key"]
        .iter()
        .find_map(|suffix| stem.strip_suffix(suffix))
        .map(str::to_owned)
        .unwrap_or(stem)
}

/// One file's content, or why it could not be read (and whether because it did not decrypt).
fn read_one(
    file: &std::path::Path,
    pass: Option<&str>,
) -> std::result::Result<x509::import::FileContents, (String, bool)> {
    let bytes = match std::fs::metadata(file) {
        Ok(m) if m.len() > x509::import::MAX_IMPORT_BYTES as u64 => {
            return Err((format!("{} bytes is too large to import", m.len()), false));
        }
        _ => std::fs::read(file).map_err(|e| (e.to_string(), false))?,
    };
    x509::import::read_file(&bytes, pass).map_err(|e| match e {
        x509::import::ImportError::Decryption(m) => (m, true),
        e => (e.to_string(), false),
    })
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

/// Stores a key taken from outside and gives it to a certificate read keyless. Given one
/// meanwhile (another node's import or `decrypt` of the same key), the store answers
/// `Conflict`: the whole operation runs again and finds the certificate keyed.
fn give_key(txn: &mut dyn Transaction, certificate_id: i64, key: &GeneratedKey) -> Result<()> {
    txn.insert_key(&super::key_record(key))?;
    txn.set_certificate_key(certificate_id, &key.uri.store_id())?;
    Ok(())
}

//! `verify FILE`: a certificate checked against the store's trusted certificates (and, with
//! `crl-use=yes` or CRL files, CRLs) by the path validator in `x509::path`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{Manager, Result};
use crate::error::ManagerError;
use crate::store::TxnMode;
use crate::x509::path::{self, PathInput, PathReport, Purpose, ReferenceName, StoreCert};

/// The largest certificate or CRL file `verify` reads.
const MAX_FILE: u64 = 1024 * 1024;

/// What `verify` checks the certificate for, beyond a path to a trusted certificate.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// what the certificate must be valid for (`purpose=`)
    pub purpose: Purpose,
    /// names its subjectAltName must hold (`--dns-name`, `--ip`)
    pub names: Vec<ReferenceName>,
    /// the time of validation (`--at`); `None`: now
    pub at: Option<SystemTime>,
    /// CRL files (`--crl`): revocation is checked, with these CRLs and the store's, whatever
    /// crl-use says
    pub crl_files: Vec<PathBuf>,
    /// the most intermediate CA certificates a path may have (`--max-depth`)
    pub max_depth: Option<usize>,
}

impl Manager {
    /// Builds and checks the chain of the first certificate in `file` (further certificates
    /// in it may serve as intermediates).
    pub fn verify_file(&self, file: &Path, options: &VerifyOptions) -> Result<PathReport> {
        let bytes = read_small(file, "certificate")?;
        let mut certs = path::read_certificates(&bytes)
            .map_err(|e| ManagerError::InvalidValue(format!("{}: {e}", file.display())))?;
        if certs.is_empty() {
            return Err(ManagerError::InvalidValue(format!(
                "{}: no certificate in it",
                file.display()
            )));
        }
        let mut file_crls = Vec::new();
        for crl_file in &options.crl_files {
            let bytes = read_small(crl_file, "CRL")?;
            file_crls.extend(
                path::read_crls(&bytes).map_err(|e| {
                    ManagerError::InvalidValue(format!("{}: {e}", crl_file.display()))
                })?,
            );
        }
        let target = certs.remove(0);
        let txn = self.store.begin(TxnMode::Read)?;
        let records = txn.certificates()?;
        let crl_use = txn.setting("crl-use")?.as_deref() == Some("yes");
        let crls = if crl_use || !options.crl_files.is_empty() {
            let mut all = file_crls;
            all.extend(self.all_crls(txn.as_ref())?);
            Some(all)
        } else {
            None
        };
        drop(txn);
        let store: Vec<StoreCert<'_>> = records
            .iter()
            .map(|r| StoreCert {
                name: &r.cert.name,
                der: &r.cert.der,
                trusted: r.cert.trusted,
            })
            .collect();
        Ok(path::validate(&PathInput {
            target: &target,
            extra: &certs,
            store: &store,
            crls: crls.as_deref(),
            purpose: options.purpose,
            now: options.at.unwrap_or_else(SystemTime::now),
            names: &options.names,
            max_depth: options.max_depth,
        }))
    }
}

/// Reads a file `verify` was given, refusing one larger than [`MAX_FILE`].
fn read_small(file: &Path, what: &str) -> Result<Vec<u8>> {
    let file_err = |source| ManagerError::File {
        path: file.to_owned(),
        source,
    };
    let meta = std::fs::metadata(file).map_err(file_err)?;
    if meta.len() > MAX_FILE {
        return Err(ManagerError::InvalidValue(format!(
            "{}: larger than {} KiB, not a {what} file",
            file.display(),
            MAX_FILE / 1024
        )));
    }
    std::fs::read(file).map_err(file_err)
}

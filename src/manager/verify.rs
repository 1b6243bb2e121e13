//! `verify FILE`: a certificate checked against the store's trusted certificates (and, with
//! `crl-use=yes`, the CRLs certman holds) by the path validator in `x509::path`.

use std::path::Path;
use std::time::SystemTime;

use super::{Manager, Result};
use crate::error::ManagerError;
use crate::store::TxnMode;
use crate::x509::path::{self, PathInput, PathReport, Purpose, StoreCert};

/// The largest certificate file `verify` reads.
const MAX_FILE: u64 = 1024 * 1024;

impl Manager {
    /// Builds and checks the chain of the first certificate in `file` (further certificates
    /// in it may serve as intermediates).
    pub fn verify_file(&self, file: &Path, purpose: Purpose) -> Result<PathReport> {
        let file_err = |source| ManagerError::File {
            path: file.to_owned(),
            source,
        };
        let meta = std::fs::metadata(file).map_err(file_err)?;
        if meta.len() > MAX_FILE {
            return Err(ManagerError::InvalidValue(format!(
                "{}: larger than {} KiB, not a certificate file",
                file.display(),
                MAX_FILE / 1024
            )));
        }
        let bytes = std::fs::read(file).map_err(file_err)?;
        let mut certs = path::read_certificates(&bytes)
            .map_err(|e| ManagerError::InvalidValue(format!("{}: {e}", file.display())))?;
        if certs.is_empty() {
            return Err(ManagerError::InvalidValue(format!(
                "{}: no certificate in it",
                file.display()
            )));
        }
        let target = certs.remove(0);
        let txn = self.store.begin(TxnMode::Read)?;
        let records = txn.certificates()?;
        let crl_use = txn.setting("crl-use")?.as_deref() == Some("yes");
        let crls = if crl_use {
            Some(self.all_crls(txn.as_ref())?)
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
            purpose,
            now: SystemTime::now(),
        }))
    }
}

//! `issued-revoke`: certificates issued here are marked revoked and each CA concerned gets
//! its next CRL, in one transaction.

use std::collections::HashSet;

use super::crl::{at, fmt_unix, unix_now, CrlKey};
use super::Manager;
use crate::error::{ManagerError, ObjectKind, Refusal, Result};
use crate::store::{CertificateRecord, Lock, RevocationRecord, TxnMode};
use crate::x509::crl::{self as x509crl, RevocationReason};

/// What `issued-revoke` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevokeReport {
    /// the certificates revoked
    pub revoked: Vec<String>,
    /// the CRLs made: (CA, cRLNumber)
    pub crls: Vec<(String, u64)>,
    /// CAs whose presigned series this revocation made stale: (CA, how many of its presigned
    /// CRLs were still to be published; they will not be)
    pub stale_series: Vec<(String, usize)>,
}

impl Manager {
    // ------------------------------------------------------------- issued-revoke

    /// `issued-revoke NAME… [reason=]`: marks certificates issued by local CAs revoked (flag
    /// R) and gives each CA concerned its next CRL, all in one transaction. The CAs' keys are
    /// reached (token login, PIN) before the store's write lock is taken.
    pub fn revoke(
        &self,
        names: &[String],
        reason: Option<RevocationReason>,
    ) -> Result<RevokeReport> {
        // 1. What to revoke, and by which CAs (read only).
        let mut targets: Vec<(String, i64, i64)> = Vec::new();
        let mut keys: Vec<CrlKey> = Vec::new();
        {
            let txn = self.store.begin(TxnMode::Read)?;
            let mut seen = HashSet::new();
            for name in names {
                if !seen.insert(name) {
                    continue;
                }
                let c = txn
                    .certificate(name)?
                    .ok_or_else(|| ManagerError::not_found(ObjectKind::Certificate, name))?;
                let ca_id = revocable(&c)?;
                if !keys.iter().any(|k| k.ca_id == ca_id) {
                    let ca = txn.certificate_by_id(ca_id)?.ok_or_else(|| {
                        ManagerError::not_found(ObjectKind::Ca, ca_id.to_string())
                    })?;
                    keys.push(self.crl_key(txn.as_ref(), &ca)?);
                }
                targets.push((name.clone(), c.id, ca_id));
            }
        }
        // 2. The CAs' keys, outside any lock.
        let signers = keys
            .into_iter()
            .map(|k| self.crl_signer(k))
            .collect::<Result<Vec<_>>>()?;
        // 3. The rows and the CRLs, in one transaction.
        // Each CA's lock first (ascending, so that two revocations never wait on each other),
        // then the re-checks: a certificate revoked meanwhile is refused, not revoked twice.
        let mut cas: Vec<i64> = signers.iter().map(|s| s.ca_id).collect();
        cas.sort_unstable();
        self.write(|txn| {
            for ca_id in &cas {
                txn.lock(Lock::Ca(*ca_id))?;
            }
            let now = unix_now();
            let mut report = RevokeReport::default();
            let mut by_ca: Vec<(i64, Vec<Vec<u8>>)> = Vec::new();
            for (name, cert_id, ca_id) in &targets {
                let c = txn
                    .certificate_by_id(*cert_id)?
                    .ok_or_else(|| ManagerError::not_found(ObjectKind::Certificate, name))?;
                if revocable(&c)? != *ca_id {
                    return Err(ManagerError::refused(
                        Refusal::ChangedMeanwhile,
                        format!("\"{name}\" changed meanwhile; try again"),
                        None,
                    ));
                }
                let serial = hex::decode(&c.cert.serial).map_err(|_| {
                    crate::error::StoreError::Corrupt(format!("serial of \"{name}\" is not hex"))
                })?;
                let serial = x509crl::strip_zeros(&serial).to_vec();
                let entry = x509crl::encode_entry(&serial, at(now), reason)?;
                txn.insert_revocation(&RevocationRecord {
                    ca_id: *ca_id,
                    certificate_id: c.id,
                    serial,
                    revoked_at: now,
                    reason: reason
                        .filter(|r| *r != RevocationReason::Unspecified)
                        .map(RevocationReason::code),
                    not_after: c.cert.not_after,
                    entry: entry.clone(),
                })?;
                match by_ca.iter_mut().find(|(id, _)| id == ca_id) {
                    Some((_, entries)) => entries.push(entry),
                    None => by_ca.push((*ca_id, vec![entry])),
                }
                report.revoked.push(name.clone());
            }
            for (ca_id, entries) in &by_ca {
                let ca = txn
                    .certificate_by_id(*ca_id)?
                    .ok_or_else(|| ManagerError::not_found(ObjectKind::Ca, ca_id.to_string()))?;
                let signer = signers
                    .iter()
                    .find(|s| s.ca_id == *ca_id)
                    .ok_or_else(|| ManagerError::not_found(ObjectKind::Ca, &ca.cert.name))?;
                let left = self.presigned_left(txn, *ca_id)?;
                let number = self.write_crl(txn, &ca, signer, Some(entries))?;
                if left > 0 {
                    report.stale_series.push((ca.cert.name.clone(), left));
                }
                report.crls.push((ca.cert.name.clone(), number));
            }
            Ok(report)
        })
    }
}

/// The local CA a certificate may be revoked by, or why not.
fn revocable(c: &CertificateRecord) -> Result<i64> {
    let name = &c.cert.name;
    let Some(ca_id) = c.cert.issuer_id else {
        return Err(ManagerError::refused(
            Refusal::NotRevocable,
            format!("\"{name}\" was not issued by a CA here, so it cannot be revoked here"),
            Some("only certificates a local CA issued (flag I) can be revoked; `remove` takes others"),
        ));
    };
    if let Some(t) = c.revoked_at {
        return Err(ManagerError::refused(
            Refusal::AlreadyRevoked,
            format!("\"{name}\" is already revoked (since {})", fmt_unix(t)),
            None,
        ));
    }
    Ok(ca_id)
}

//! CRLs downloaded for trusted certificates: what to download (their http CDPs), checking
//! and storing what came (`crl download`, the daemon's hourly job), `crl flush`.

use std::time::SystemTime;

use super::crl::{fmt_unix, unix_now};
use super::Manager;
use crate::error::{ManagerError, Refusal, Result};
use crate::store::{DownloadedCrlRecord, Lock, TxnMode};
use crate::x509;
use crate::x509::crl::{self as x509crl};

/// A CRL to download: a trusted certificate's http CRL distribution point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadTarget {
    /// the trusted certificate's name
    pub certificate: String,
    /// the CDP URL (`http://…`)
    pub url: String,
}

/// A downloaded CRL, verified and stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadedCrl {
    /// the store certificate whose key signed it (flag L)
    pub issuer: String,
    /// its cRLNumber, if it has one
    pub number: Option<u64>,
    /// how many revoked certificates it lists
    pub entries: usize,
    /// thisUpdate, Unix seconds
    pub this_update: i64,
    /// nextUpdate, Unix seconds
    pub next_update: Option<i64>,
}

impl Manager {
    // ------------------------------------------------------------- downloaded CRLs

    /// The http CDPs of trusted certificates whose CRLs certman does not make itself.
    pub fn crl_download_targets(&self) -> Result<Vec<DownloadTarget>> {
        let txn = self.store.begin(TxnMode::Read)?;
        let mut out: Vec<DownloadTarget> = Vec::new();
        for c in txn.certificates()? {
            if !c.cert.trusted || c.cert.issuer_id.is_some() {
                continue; // a local CA's CRL is made here
            }
            let Ok(info) = x509::inspect_certificate(&c.cert.der) else {
                continue;
            };
            if info.self_issued && c.cert.key_id.is_some() && txn.crl(c.id)?.is_some() {
                continue; // our own CA, whose CRL points back at us
            }
            for url in info.crl_distribution_points {
                if url.to_ascii_lowercase().starts_with("http://")
                    && !out.iter().any(|t| t.url == url)
                {
                    out.push(DownloadTarget {
                        certificate: c.cert.name.clone(),
                        url,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Checks a downloaded CRL — it parses, it is signed by a trusted certificate of the store
    /// whose subject is its issuer (the target's own key, or its issuer's), it has not expired,
    /// and it is not older than the one held — and stores it (flag L on the signer).
    pub fn store_downloaded_crl(
        &self,
        target: &DownloadTarget,
        der: &[u8],
    ) -> Result<DownloadedCrl> {
        let refuse_as = |reason: Refusal, why: String| {
            ManagerError::refused(
                reason,
                format!(
                    "CRL from {} for \"{}\" refused: {why}",
                    target.url, target.certificate
                ),
                None,
            )
        };
        let refuse = |why: String| refuse_as(Refusal::CrlNotAccepted, why);
        let info = x509crl::inspect_crl(der).map_err(|e| refuse(format!("not a CRL: {e}")))?;
        // The trusted certificates named as its issuer, read first: the signature (of up to
        // 16 MiB) is checked outside the write lock.
        let candidates = {
            let txn = self.store.begin(TxnMode::Read)?;
            txn.certificates()?
        };
        let mut tried = Vec::new();
        let mut signer = None;
        for c in candidates {
            if !c.cert.trusted {
                continue;
            }
            let Ok(ci) = x509::inspect_certificate(&c.cert.der) else {
                continue;
            };
            if ci.subject_name != info.issuer_name {
                continue;
            }
            tried.push(c.cert.name.clone());
            if x509crl::verify_crl_signature(der, &ci.public_key).is_ok() {
                if !ci.key_usage.key_usage_flags().is_empty()
                    && !ci.key_usage.contains(x509::KeyUsageName::CrlSign)
                {
                    return Err(refuse(format!(
                        "\"{}\" signed it, but its key usage lacks crl-sign",
                        c.cert.name
                    )));
                }
                signer = Some(c);
                break;
            }
        }
        let Some(signer) = signer else {
            return Err(refuse(if tried.is_empty() {
                format!(
                    "no trusted certificate in the store is its issuer ({})",
                    info.issuer
                )
            } else {
                format!(
                    "its signature does not verify with the key of {}",
                    tried
                        .iter()
                        .map(|n| format!("\"{n}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }));
        };
        let now = SystemTime::now();
        if let Some(next) = info.next_update {
            if next < now {
                return Err(refuse(format!(
                    "it expired at {} (nextUpdate)",
                    fmt_unix(super::unix_secs(next))
                )));
            }
        }
        let record = DownloadedCrlRecord {
            certificate_id: signer.id,
            url: target.url.clone(),
            number: info.number,
            this_update: super::unix_secs(info.this_update),
            next_update: info.next_update.map(super::unix_secs),
            entries: info.entries as i64,
            der: der.to_vec(),
            fetched_at: unix_now(),
        };
        self.write(|txn| {
            // the held CRL is re-checked: another download may have stored a newer one
            txn.lock(Lock::Ca(signer.id))?;
            match txn.certificate_by_id(signer.id)? {
                Some(now_) if now_.cert.trusted && now_.cert.der == signer.cert.der => {}
                _ => {
                    return Err(refuse_as(
                        Refusal::ChangedMeanwhile,
                        format!("\"{}\" changed meanwhile", signer.cert.name),
                    ))
                }
            }
            if let Some(old) = txn.downloaded_crl(signer.id)? {
                let older = match (info.number, old.number) {
                    (Some(new), Some(held)) => new < held,
                    _ => record.this_update < old.this_update,
                };
                if older {
                    return Err(refuse(format!(
                        "it is older than the CRL held (number {}, thisUpdate {})",
                        old.number.map_or("none".into(), |n| n.to_string()),
                        fmt_unix(old.this_update)
                    )));
                }
            }
            Ok(txn.put_downloaded_crl(&record)?)
        })?;
        Ok(DownloadedCrl {
            issuer: signer.cert.name,
            number: info.number,
            entries: info.entries,
            this_update: record.this_update,
            next_update: record.next_update,
        })
    }

    /// `crl flush`: drops the downloaded CRLs (the CAs' own stay).
    pub fn crl_flush(&self) -> Result<usize> {
        self.write(|txn| Ok(txn.delete_downloaded_crls()?))
    }
}

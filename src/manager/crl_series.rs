//! `crl presign`: CRLs signed ahead for an offline root, so that its token can go back to the
//! safe while `serve` publishes one after the other; what is left of a series, and whether a
//! revocation made it stale (`crl print`, `/health`).
//!
//! The rules:
//! - numbers: a series takes the numbers right after the CA's newest (its current CRL's, or a
//!   previous series'); they are reserved, so the CA's next ordinary CRL (a revocation, `crl
//!   renew`) goes past them (`crl.rs` `write_crl`), and a CRL number is never signed twice;
//! - times: the first presigned CRL's thisUpdate is one `interval` after the CRL served now was
//!   issued (at once when that is past; at once, too, when a presigned one is served now), each
//!   next one `interval` later; each is valid for [`CRL_VALIDITY`], or for `interval` plus the
//!   same day of slack when the interval is longer, so that there is never a gap;
//! - serving: `serve` answers the newest (highest number) CRL whose thisUpdate has come: the
//!   stored one or a presigned one (`crl.rs` `served_crl`), by the manager's clock (which the
//!   test offset moves). Nothing here touches a token but `presign` itself;
//! - staleness: a CRL made after the series (a revocation, `crl renew`) has a higher number, so
//!   the rest of the series will never be served: it is stale. The renewal timer leaves a CA
//!   alone while its series covers now (it would need the token that is in the safe).

use std::time::Duration;

use super::crl::{unix_now, CRL_RENEWAL, CRL_VALIDITY};
use super::{Manager, Result};
use crate::error::{ManagerError, ObjectKind};
use crate::store::{CrlSeriesRecord, Lock, Transaction, TxnMode};

/// The most CRLs one series holds.
pub const MAX_PRESIGNED: u32 = 1000;
/// The shortest and the longest interval between two presigned CRLs.
pub const MIN_INTERVAL: Duration = Duration::from_secs(3600);
/// See [`MIN_INTERVAL`].
pub const MAX_INTERVAL: Duration = Duration::from_secs(366 * 86_400);
/// The longest a series may reach into the future (ten years).
const MAX_SPAN: i64 = 10 * 366 * 86_400;

/// What `crl presign` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresignReport {
    /// the CA
    pub ca: String,
    /// the presigned CRLs, in order (without DER)
    pub crls: Vec<CrlSeriesRecord>,
    /// how many CRLs of a previous series were dropped (not yet served, or served before)
    pub replaced: usize,
}

/// A CA's series, as `crl print` and `/health` show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlSeriesStatus {
    /// the CA's name
    pub ca: String,
    /// the first and last numbers of the series
    pub first: u64,
    /// see `first`
    pub last: u64,
    /// how many CRLs it holds
    pub count: usize,
    /// how many are still to be published (thisUpdate not come yet)
    pub left: usize,
    /// the next one's thisUpdate, if any is left
    pub next_publication: Option<i64>,
    /// the last one's nextUpdate: until when the series keeps the CA's CRL valid
    pub until: i64,
    /// a CRL made after the series (a revocation, `crl renew`) supersedes it: what is left of
    /// it will not be served
    pub stale: bool,
}

/// How long each presigned CRL is valid: certman's CRL validity, or the interval with the same
/// slack past it when the interval is longer than the renewal period.
fn validity(interval: Duration) -> i64 {
    let slack = CRL_VALIDITY.saturating_sub(CRL_RENEWAL);
    CRL_VALIDITY.max(interval + slack).as_secs() as i64
}

/// Whether `ca_id`'s presigned series keeps its CRL fresh at `now` (so the renewal timer
/// leaves it alone): a live CRL of it (numbered past the current CRL `current`) is still to be
/// published, or the one published last was published after `cutoff`.
pub(super) fn covers(
    txn: &dyn Transaction,
    ca_id: i64,
    current: u64,
    now: i64,
    cutoff: i64,
) -> Result<bool> {
    Ok(txn
        .crl_series(ca_id)?
        .iter()
        .filter(|r| r.number > current)
        .any(|r| r.this_update > now || r.this_update > cutoff))
}

/// The status of `ca_id`'s series at `now`, `None` without one.
pub(super) fn series_status(
    txn: &dyn Transaction,
    ca_id: i64,
    ca: &str,
    now: i64,
) -> Result<Option<CrlSeriesStatus>> {
    let rows = txn.crl_series(ca_id)?;
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(None);
    };
    let current = txn.crl_state(ca_id)?.map_or(0, |(n, _)| n);
    let pending: Vec<&CrlSeriesRecord> = rows.iter().filter(|r| r.this_update > now).collect();
    Ok(Some(CrlSeriesStatus {
        ca: ca.to_owned(),
        first: first.number,
        last: last.number,
        count: rows.len(),
        left: pending.len(),
        next_publication: pending.first().map(|r| r.this_update),
        until: last.next_update,
        stale: last.number < current,
    }))
}

impl Manager {
    /// `crl presign CA count=N interval=…`: signs `count` future CRLs of `ca` (its key is
    /// reached here, before the store's lock) listing its current revocations, and stores them
    /// as its series in one transaction under the CA's lock, replacing any previous series
    /// (whose numbers the new one follows).
    pub fn presign_crls(&self, ca: &str, count: u32, interval: Duration) -> Result<PresignReport> {
        // No count=0 that would drop a series: its numbers would be forgotten, and signed
        // again by the next one.
        if !(1..=MAX_PRESIGNED).contains(&count) {
            return Err(ManagerError::InvalidValue(format!(
                "count={count}: from 1 to {MAX_PRESIGNED} CRLs are presigned at once"
            )));
        }
        if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
            return Err(ManagerError::InvalidValue(format!(
                "interval={}s: from 1h to 366d",
                interval.as_secs()
            )));
        }
        let step = interval.as_secs() as i64;
        if i64::from(count) * step > MAX_SPAN {
            return Err(ManagerError::InvalidValue(format!(
                "count={count} interval={}s reaches more than ten years ahead",
                interval.as_secs()
            )));
        }
        let ca_id = {
            let txn = self.store.begin(TxnMode::Read)?;
            txn.certificate(ca)?
                .ok_or_else(|| ManagerError::not_found(ObjectKind::Certificate, ca))?
                .id
        };
        let (_, signer) = self.crl_signer_of(ca_id)?;
        self.write(|txn| {
            txn.lock(Lock::Ca(ca_id))?;
            let rec = txn
                .certificate_by_id(ca_id)?
                .ok_or_else(|| ManagerError::not_found(ObjectKind::Ca, ca))?;
            let old = txn.crl_series(ca_id)?;
            signer.check_still(&rec)?;
            // A CA signed here has had a CRL since it was made (`crl renew CA` makes one).
            let current = txn
                .crl(ca_id)?
                .ok_or_else(|| ManagerError::not_found(ObjectKind::Crl, ca))?;
            let now = unix_now();
            let reserved = txn.crl_series_last_number(ca_id)?.unwrap_or(0);
            let first_number = current.number.max(reserved) + 1;
            // A presigned CRL served now (numbered past the current one) is followed at once:
            // the new series must not go back to an older number.
            let served_presigned = txn
                .due_crl_series(ca_id, self.judged_now())?
                .is_some_and(|r| r.number > current.number);
            let first = if served_presigned {
                now
            } else {
                (current.this_update + step).clamp(now, now + step)
            };
            // The same entries the next ordinary CRL would list.
            let mut entries = Vec::new();
            let listed = txn.revocation_entries(ca_id, current.this_update, &mut entries)?;
            let valid = validity(interval);
            let mut rows = Vec::with_capacity(count as usize);
            for i in 0..count {
                let this_update = first + i64::from(i) * step;
                let number = first_number + u64::from(i);
                let next_update = this_update + valid;
                rows.push(CrlSeriesRecord {
                    ca_id,
                    number,
                    this_update,
                    next_update,
                    entries: listed,
                    der: signer.sign(number, this_update, next_update, &[entries.as_slice()])?,
                    signed_at: now,
                });
            }
            txn.replace_crl_series(ca_id, &rows)?;
            Ok(PresignReport {
                ca: rec.cert.name.clone(),
                crls: rows
                    .into_iter()
                    .map(|r| CrlSeriesRecord {
                        der: Vec::new(),
                        ..r
                    })
                    .collect(),
                replaced: old.len(),
            })
        })
    }

    /// Every CA's presigned series at the manager's now (`crl print`, `/health`).
    pub fn crl_series_status(&self) -> Result<Vec<CrlSeriesStatus>> {
        let store = self.reads.as_deref().unwrap_or(&*self.store);
        let txn = store.begin(TxnMode::Read)?;
        self.series_in(txn.as_ref())
    }

    pub(super) fn series_in(&self, txn: &dyn Transaction) -> Result<Vec<CrlSeriesStatus>> {
        let now = self.judged_now();
        let mut ids: Vec<i64> = txn
            .crl_series_summaries()?
            .iter()
            .map(|r| r.ca_id)
            .collect();
        ids.dedup();
        let mut out = Vec::new();
        for id in ids {
            let name = txn
                .certificate_by_id(id)?
                .map(|c| c.cert.name)
                .unwrap_or_default();
            out.extend(series_status(txn, id, &name, now)?);
        }
        Ok(out)
    }

    /// How many presigned CRLs of `ca_id` that were still to be published a CRL made now
    /// leaves stale (read before it is made, inside the write transaction).
    pub(super) fn presigned_left(&self, txn: &dyn Transaction, ca_id: i64) -> Result<usize> {
        let current = txn.crl_state(ca_id)?.map_or(0, |(n, _)| n);
        let now = self.judged_now();
        Ok(txn
            .crl_series(ca_id)?
            .iter()
            .filter(|r| r.number > current && r.this_update > now)
            .count())
    }
}

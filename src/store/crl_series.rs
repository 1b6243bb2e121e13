//! The CRLs signed ahead for an offline root (`crl presign`): a series per CA, each CRL with
//! its own number and thisUpdate, published by `serve` from its thisUpdate on. Records, not
//! rules (which one is served, when a series is stale: `manager/crl_series.rs`).
//!
//! The contract adds (see `store/mod.rs`): a CRL number is used once per CA —
//! [`CrlSeriesStore::replace_crl_series`] takes only numbers above the CA's current CRL's and
//! above every number of the series it replaces
//! ([`StoreError::Conflict`](crate::error::StoreError::Conflict) otherwise, changing nothing),
//! so a presigned number is never signed again, by a later series or (the manager's part) by a
//! later renewal. The caller holds the CA's [`super::Lock::Ca`]. A series goes with its CA.

use super::Result;

/// One presigned CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlSeriesRecord {
    /// the CA
    pub ca_id: i64,
    /// cRLNumber
    pub number: u64,
    /// thisUpdate, Unix seconds: served from then on
    pub this_update: i64,
    /// nextUpdate, Unix seconds
    pub next_update: i64,
    /// how many entries it lists
    pub entries: i64,
    /// the CRL, DER (empty in summaries)
    pub der: Vec<u8>,
    /// when it was signed, Unix seconds
    pub signed_at: i64,
}

/// The presigned CRLs of a store (a supertrait of [`super::Transaction`]).
pub trait CrlSeriesStore {
    /// A CA's presigned CRLs by number, without their DER (`der` empty).
    fn crl_series(&self, ca_id: i64) -> Result<Vec<CrlSeriesRecord>>;
    /// Every CA's presigned CRLs by CA and number, without their DER.
    fn crl_series_summaries(&self) -> Result<Vec<CrlSeriesRecord>>;
    /// The highest number a CA's series holds (reserved: the CA's next CRL takes a higher one).
    fn crl_series_last_number(&self, ca_id: i64) -> Result<Option<u64>>;
    /// The CA's presigned CRL with the highest number among those whose thisUpdate is at or
    /// before `now` (Unix seconds), with its DER: what is due for serving.
    fn due_crl_series(&self, ca_id: i64, now: i64) -> Result<Option<CrlSeriesRecord>>;
    /// Replaces the CA's series by `rows` (every one of `ca_id`; none drops the series, and
    /// with it the record of the numbers it held).
    /// Their numbers must be above the CA's current CRL's and the replaced series' highest:
    /// [`StoreError::Conflict`](crate::error::StoreError::Conflict) otherwise.
    fn replace_crl_series(&mut self, ca_id: i64, rows: &[CrlSeriesRecord]) -> Result<()>;
}

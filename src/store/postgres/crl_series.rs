//! The presigned CRLs of the PostgreSQL store (`crl presign`). The caller holds the CA's
//! lock (an advisory transaction lock), so the floor read here cannot move before the rows are
//! written.

use postgres::Row;

use super::PgTxn;
use crate::error::StoreError;
use crate::store::{CrlSeriesRecord, CrlSeriesStore, Result};

const COLUMNS: &str = "ca_id, number, this_update, next_update, entries, ''::bytea, signed_at";

fn from_row(r: &Row) -> Result<CrlSeriesRecord> {
    let number: i64 = r.try_get(1)?;
    Ok(CrlSeriesRecord {
        ca_id: r.try_get(0)?,
        number: u64::try_from(number)
            .map_err(|_| StoreError::Corrupt("crl_series.number is negative".into()))?,
        this_update: r.try_get(2)?,
        next_update: r.try_get(3)?,
        entries: r.try_get(4)?,
        der: r.try_get(5)?,
        signed_at: r.try_get(6)?,
    })
}

impl CrlSeriesStore for PgTxn<'_> {
    fn crl_series(&self, ca_id: i64) -> Result<Vec<CrlSeriesRecord>> {
        self.query(
            &format!("SELECT {COLUMNS} FROM crl_series WHERE ca_id = $1 ORDER BY number"),
            &[&ca_id],
        )?
        .iter()
        .map(from_row)
        .collect()
    }

    fn crl_series_summaries(&self) -> Result<Vec<CrlSeriesRecord>> {
        self.query(
            &format!("SELECT {COLUMNS} FROM crl_series ORDER BY ca_id, number"),
            &[],
        )?
        .iter()
        .map(from_row)
        .collect()
    }

    fn crl_series_last_number(&self, ca_id: i64) -> Result<Option<u64>> {
        let r = self.query_one(
            "SELECT MAX(number) FROM crl_series WHERE ca_id = $1",
            &[&ca_id],
        )?;
        Ok(r.try_get::<_, Option<i64>>(0)?.map(|n| n as u64))
    }

    fn due_crl_series(&self, ca_id: i64, now: i64) -> Result<Option<CrlSeriesRecord>> {
        self.query_opt(
            "SELECT ca_id, number, this_update, next_update, entries, der, signed_at \
             FROM crl_series WHERE ca_id = $1 AND this_update <= $2 \
             ORDER BY number DESC LIMIT 1",
            &[&ca_id, &now],
        )?
        .as_ref()
        .map(from_row)
        .transpose()
    }

    fn replace_crl_series(&mut self, ca_id: i64, rows: &[CrlSeriesRecord]) -> Result<()> {
        let floor: i64 = self
            .query_one(
                "SELECT GREATEST(COALESCE((SELECT number FROM crls WHERE ca_id = $1), 0), \
                                 COALESCE((SELECT MAX(number) FROM crl_series WHERE ca_id = $1), 0))",
                &[&ca_id],
            )?
            .try_get(0)?;
        let mut numbers = Vec::with_capacity(rows.len());
        for row in rows {
            let n = i64::try_from(row.number)
                .map_err(|_| StoreError::Corrupt("CRL number past 2^63".into()))?;
            if row.ca_id != ca_id || n <= floor {
                return Err(StoreError::Conflict);
            }
            numbers.push(n);
        }
        self.execute("DELETE FROM crl_series WHERE ca_id = $1", &[&ca_id])?;
        for (r, n) in rows.iter().zip(&numbers) {
            self.try_execute(
                "INSERT INTO crl_series(ca_id, number, this_update, next_update, entries, der, \
                 signed_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &r.ca_id,
                    n,
                    &r.this_update,
                    &r.next_update,
                    &r.entries,
                    &r.der,
                    &r.signed_at,
                ],
            )
            .map_err(|e| {
                if super::is_unique_violation(&e) {
                    StoreError::Duplicate("a CRL number of the series")
                } else {
                    e.into()
                }
            })?;
        }
        Ok(())
    }
}

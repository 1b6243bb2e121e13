//! The presigned CRLs of the SQLite store (`crl presign`).

use rusqlite::{params, OptionalExtension, Row};

use super::SqliteTxn;
use crate::error::StoreError;
use crate::store::{CrlSeriesRecord, CrlSeriesStore, Result};

fn from_row(r: &Row<'_>) -> rusqlite::Result<CrlSeriesRecord> {
    Ok(CrlSeriesRecord {
        ca_id: r.get(0)?,
        number: r.get::<_, i64>(1)? as u64,
        this_update: r.get(2)?,
        next_update: r.get(3)?,
        entries: r.get(4)?,
        der: r.get(5)?,
        signed_at: r.get(6)?,
    })
}

impl CrlSeriesStore for SqliteTxn<'_> {
    fn crl_series(&self, ca_id: i64) -> Result<Vec<CrlSeriesRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT ca_id, number, this_update, next_update, entries, X'', signed_at \
             FROM crl_series WHERE ca_id = ?1 ORDER BY number",
        )?;
        let rows = stmt.query_map(params![ca_id], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn crl_series_summaries(&self) -> Result<Vec<CrlSeriesRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT ca_id, number, this_update, next_update, entries, X'', signed_at \
             FROM crl_series ORDER BY ca_id, number",
        )?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn crl_series_last_number(&self, ca_id: i64) -> Result<Option<u64>> {
        Ok(self
            .conn
            .prepare_cached("SELECT MAX(number) FROM crl_series WHERE ca_id = ?1")?
            .query_row(params![ca_id], |r| r.get::<_, Option<i64>>(0))?
            .map(|n| n as u64))
    }

    fn due_crl_series(&self, ca_id: i64, now: i64) -> Result<Option<CrlSeriesRecord>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT ca_id, number, this_update, next_update, entries, der, signed_at \
                 FROM crl_series WHERE ca_id = ?1 AND this_update <= ?2 \
                 ORDER BY number DESC LIMIT 1",
            )?
            .query_row(params![ca_id, now], from_row)
            .optional()?)
    }

    fn replace_crl_series(&mut self, ca_id: i64, rows: &[CrlSeriesRecord]) -> Result<()> {
        let floor: i64 = self
            .conn
            .prepare_cached(
                "SELECT MAX(COALESCE((SELECT number FROM crls WHERE ca_id = ?1), 0), \
                        COALESCE((SELECT MAX(number) FROM crl_series WHERE ca_id = ?1), 0))",
            )?
            .query_row(params![ca_id], |r| r.get(0))?;
        for row in rows {
            let n = i64::try_from(row.number)
                .map_err(|_| StoreError::Corrupt("CRL number past 2^63".into()))?;
            if row.ca_id != ca_id || n <= floor {
                return Err(StoreError::Conflict);
            }
        }
        self.atomic(|t| {
            t.conn
                .prepare_cached("DELETE FROM crl_series WHERE ca_id = ?1")?
                .execute(params![ca_id])?;
            let mut stmt = t.conn.prepare_cached(
                "INSERT INTO crl_series(ca_id, number, this_update, next_update, entries, der, \
                 signed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for r in rows {
                stmt.execute(params![
                    r.ca_id,
                    r.number as i64,
                    r.this_update,
                    r.next_update,
                    r.entries,
                    r.der,
                    r.signed_at
                ])
                .map_err(|e| {
                    if super::is_unique_violation(&e) {
                        StoreError::Duplicate("a CRL number of the series")
                    } else {
                        e.into()
                    }
                })?;
            }
            Ok(())
        })
    }
}

//! The lost-token queries of the SQLite store: keys by token serial, CAs marked compromised.

use rusqlite::{params, OptionalExtension};

use super::SqliteTxn;
use crate::error::StoreError;
use crate::store::{KeyRecord, Result, TokenLossTransaction};

impl TokenLossTransaction for SqliteTxn<'_> {
    fn token_keys(&self, serial: Option<&str>) -> Result<Vec<KeyRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, uri, algorithm, token_serial, slot, created_at FROM keys \
             WHERE token_serial IS NOT NULL AND (?1 IS NULL OR token_serial = ?1) ORDER BY id",
        )?;
        let rows = stmt.query_map(params![serial], |r| {
            Ok(KeyRecord {
                id: r.get(0)?,
                uri: r.get(1)?,
                algorithm: r.get(2)?,
                sealed: None,
                token_serial: r.get(3)?,
                slot: r.get(4)?,
                created_at: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    fn mark_compromised(&mut self, id: i64, at: i64) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE certificates SET compromised_at = ?2 \
                 WHERE id = ?1 AND compromised_at IS NULL",
            )?
            .execute(params![id, at])?;
        if n == 1 {
            return Ok(true);
        }
        // not updated: marked already, or gone
        match self.compromised_at(id)? {
            Some(_) => Ok(false),
            None => Err(StoreError::Conflict),
        }
    }

    fn compromised_at(&self, id: i64) -> Result<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached("SELECT compromised_at FROM certificates WHERE id = ?1")?
            .query_row(params![id], |r| r.get::<_, Option<i64>>(0))
            .optional()?
            .flatten())
    }

    fn compromised(&self) -> Result<Vec<(i64, i64)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, compromised_at FROM certificates \
             WHERE compromised_at IS NOT NULL ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
}

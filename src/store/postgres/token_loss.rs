//! The lost-token queries of the PostgreSQL store: keys by token serial, CAs marked
//! compromised. The mark is one conditional `UPDATE` (the first mark stays); the manager
//! takes the CA's advisory lock before it, as issuance does before its re-check.

use super::PgTxn;
use crate::error::StoreError;
use crate::store::{KeyRecord, Result, TokenLossTransaction};

impl TokenLossTransaction for PgTxn<'_> {
    fn token_keys(&self, serial: Option<&str>) -> Result<Vec<KeyRecord>> {
        let mut out = Vec::new();
        for r in self.query(
            "SELECT id, uri, algorithm, token_serial, slot, created_at FROM keys \
             WHERE token_serial IS NOT NULL AND ($1::TEXT IS NULL OR token_serial = $1) \
             ORDER BY id",
            &[&serial],
        )? {
            out.push(KeyRecord {
                id: r.try_get(0)?,
                uri: r.try_get(1)?,
                algorithm: r.try_get(2)?,
                sealed: None,
                token_serial: r.try_get(3)?,
                slot: r.try_get(4)?,
                created_at: r.try_get(5)?,
            });
        }
        Ok(out)
    }

    fn mark_compromised(&mut self, id: i64, at: i64) -> Result<bool> {
        let n = self.execute(
            "UPDATE certificates SET compromised_at = $2 \
             WHERE id = $1 AND compromised_at IS NULL",
            &[&id, &at],
        )?;
        if n == 1 {
            return Ok(true);
        }
        match self.query_opt(
            "SELECT compromised_at FROM certificates WHERE id = $1",
            &[&id],
        )? {
            Some(r) if r.try_get::<_, Option<i64>>(0)?.is_some() => Ok(false),
            _ => Err(StoreError::Conflict),
        }
    }

    fn compromised_at(&self, id: i64) -> Result<Option<i64>> {
        match self.query_opt(
            "SELECT compromised_at FROM certificates WHERE id = $1",
            &[&id],
        )? {
            Some(r) => Ok(r.try_get(0)?),
            None => Ok(None),
        }
    }

    fn compromised(&self) -> Result<Vec<(i64, i64)>> {
        let mut out = Vec::new();
        for r in self.query(
            "SELECT id, compromised_at FROM certificates \
             WHERE compromised_at IS NOT NULL ORDER BY id",
            &[],
        )? {
            out.push((r.try_get(0)?, r.try_get(1)?));
        }
        Ok(out)
    }
}

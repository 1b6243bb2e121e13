//! The sealed blobs of the SQLite store (`store reseal`).

use rusqlite::{params, OptionalExtension};

use super::SqliteTxn;
use crate::error::StoreError;
use crate::store::{now_micros, Result, SealedBlob, SealedRow, SealedStore};

impl SealedStore for SqliteTxn<'_> {
    fn sealed_blobs(&self) -> Result<Vec<SealedBlob>> {
        let mut out = Vec::new();
        let mut stmt = self
            .conn
            .prepare("SELECT id, sealed FROM keys WHERE sealed IS NOT NULL ORDER BY id")?;
        for r in stmt.query_map([], |r| {
            Ok(SealedBlob {
                row: SealedRow::SoftKey(r.get(0)?),
                blob: r.get(1)?,
            })
        })? {
            out.push(r?);
        }
        for (sql, row) in [
            (
                "SELECT id, sealed FROM encrypted_keys ORDER BY id",
                SealedRow::EncryptedKey as fn(i64) -> SealedRow,
            ),
            (
                "SELECT certificate_id, sealed FROM ca_passphrases ORDER BY certificate_id",
                SealedRow::CaPassphrase,
            ),
        ] {
            let mut stmt = self.conn.prepare(sql)?;
            for r in stmt.query_map([], |r| {
                Ok(SealedBlob {
                    row: row(r.get(0)?),
                    blob: r.get(1)?,
                })
            })? {
                out.push(r?);
            }
        }
        let mut stmt = self.conn.prepare(
            "SELECT id, name, challenge, tx_csr FROM scep_clients \
             WHERE challenge IS NOT NULL OR tx_csr IS NOT NULL ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<Vec<u8>>>(2)?,
                r.get::<_, Option<Vec<u8>>>(3)?,
            ))
        })?;
        for r in rows {
            let (id, name, challenge, csr) = r?;
            if let Some(blob) = challenge {
                out.push(SealedBlob {
                    row: SealedRow::ScepChallenge {
                        id,
                        name: name.clone(),
                    },
                    blob,
                });
            }
            if let Some(blob) = csr {
                out.push(SealedBlob {
                    row: SealedRow::ScepRequest { id, name },
                    blob,
                });
            }
        }
        Ok(out)
    }

    fn replace_sealed(&mut self, row: &SealedRow, blob: &[u8]) -> Result<()> {
        let n = match row {
            SealedRow::SoftKey(id) => self.conn.execute(
                "UPDATE keys SET sealed = ?2 WHERE id = ?1 AND sealed IS NOT NULL",
                params![id, blob],
            )?,
            SealedRow::EncryptedKey(id) => self.conn.execute(
                "UPDATE encrypted_keys SET sealed = ?2 WHERE id = ?1",
                params![id, blob],
            )?,
            SealedRow::CaPassphrase(id) => self.conn.execute(
                "UPDATE ca_passphrases SET sealed = ?2 WHERE certificate_id = ?1",
                params![id, blob],
            )?,
            SealedRow::ScepChallenge { id, .. } => self.conn.execute(
                "UPDATE scep_clients SET challenge = ?2, updated_at = MAX(?3, updated_at + 1) \
                 WHERE id = ?1 AND challenge IS NOT NULL",
                params![id, blob, now_micros()],
            )?,
            SealedRow::ScepRequest { id, .. } => self.conn.execute(
                "UPDATE scep_clients SET tx_csr = ?2, updated_at = MAX(?3, updated_at + 1) \
                 WHERE id = ?1 AND tx_csr IS NOT NULL",
                params![id, blob, now_micros()],
            )?,
        };
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    fn meta_value(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn insert_meta_if_absent(&mut self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
            params![name, value],
        )?;
        self.meta_value(name)?
            .ok_or_else(|| StoreError::Corrupt(format!("meta \"{name}\" vanished")))
    }
}

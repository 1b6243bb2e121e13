//! The sealed blobs of the PostgreSQL store (`store reseal`).

use super::PgTxn;
use crate::error::StoreError;
use crate::store::{now_micros, Result, SealedBlob, SealedRow, SealedStore};

impl SealedStore for PgTxn<'_> {
    fn sealed_blobs(&self) -> Result<Vec<SealedBlob>> {
        let mut out = Vec::new();
        for r in self.query(
            "SELECT id, sealed FROM keys WHERE sealed IS NOT NULL ORDER BY id",
            &[],
        )? {
            out.push(SealedBlob {
                row: SealedRow::SoftKey(r.try_get(0)?),
                blob: r.try_get(1)?,
            });
        }
        for r in self.query("SELECT id, sealed FROM encrypted_keys ORDER BY id", &[])? {
            out.push(SealedBlob {
                row: SealedRow::EncryptedKey(r.try_get(0)?),
                blob: r.try_get(1)?,
            });
        }
        for r in self.query(
            "SELECT certificate_id, sealed FROM ca_passphrases ORDER BY certificate_id",
            &[],
        )? {
            out.push(SealedBlob {
                row: SealedRow::CaPassphrase(r.try_get(0)?),
                blob: r.try_get(1)?,
            });
        }
        for r in self.query(
            "SELECT id, name, challenge, tx_csr FROM scep_clients \
             WHERE challenge IS NOT NULL OR tx_csr IS NOT NULL ORDER BY id",
            &[],
        )? {
            let (id, name): (i64, String) = (r.try_get(0)?, r.try_get(1)?);
            if let Some(blob) = r.try_get::<_, Option<Vec<u8>>>(2)? {
                out.push(SealedBlob {
                    row: SealedRow::ScepChallenge {
                        id,
                        name: name.clone(),
                    },
                    blob,
                });
            }
            if let Some(blob) = r.try_get::<_, Option<Vec<u8>>>(3)? {
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
            SealedRow::SoftKey(id) => self.execute(
                "UPDATE keys SET sealed = $2 WHERE id = $1 AND sealed IS NOT NULL",
                &[id, &blob],
            )?,
            SealedRow::EncryptedKey(id) => self.execute(
                "UPDATE encrypted_keys SET sealed = $2 WHERE id = $1",
                &[id, &blob],
            )?,
            SealedRow::CaPassphrase(id) => self.execute(
                "UPDATE ca_passphrases SET sealed = $2 WHERE certificate_id = $1",
                &[id, &blob],
            )?,
            SealedRow::ScepChallenge { id, .. } => self.execute(
                "UPDATE scep_clients SET challenge = $2, \
                 updated_at = GREATEST($3, updated_at + 1) \
                 WHERE id = $1 AND challenge IS NOT NULL",
                &[id, &blob, &now_micros()],
            )?,
            SealedRow::ScepRequest { id, .. } => self.execute(
                "UPDATE scep_clients SET tx_csr = $2, \
                 updated_at = GREATEST($3, updated_at + 1) \
                 WHERE id = $1 AND tx_csr IS NOT NULL",
                &[id, &blob, &now_micros()],
            )?,
        };
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    fn meta_value(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.query_opt("SELECT value FROM meta WHERE key = $1", &[&name])?
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(Into::into)
    }

    fn insert_meta_if_absent(&mut self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        // READ COMMITTED: a concurrent insert under the name makes this one wait for it, and
        // the SELECT after sees the value it kept
        self.execute(
            "INSERT INTO meta(key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            &[&name, &value],
        )?;
        self.meta_value(name)?
            .ok_or_else(|| StoreError::Corrupt(format!("meta \"{name}\" vanished")))
    }
}

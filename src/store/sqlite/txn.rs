//! Every [`Transaction`] method of the SQLite store: its SQL and row mapping.

use rusqlite::{params, OptionalExtension, Row};

use super::{is_unique_violation, SqliteTxn};
use crate::error::StoreError;
use crate::store::{
    now_micros, CertificateRecord, CrlRecord, DownloadedCrlRecord, EncryptedKeyRecord, KeyRecord,
    Lock, NewCertificate, NewRequest, RequestRecord, Result, RevocationRecord, TemplateRecord,
    Transaction,
};

const CERT_COLUMNS: &str = "id, name, der, serial, fingerprint, key_id, issuer_id, trusted, \
                            ca_crl_host, properties, not_after, revoked_at, created_at";

fn cert_from_row(r: &Row<'_>) -> rusqlite::Result<CertificateRecord> {
    Ok(CertificateRecord {
        id: r.get(0)?,
        cert: NewCertificate {
            name: r.get(1)?,
            der: r.get(2)?,
            serial: r.get(3)?,
            fingerprint: r.get(4)?,
            key_id: r.get(5)?,
            issuer_id: r.get(6)?,
            trusted: r.get(7)?,
            ca_crl_host: r.get(8)?,
            properties: r.get(9)?,
            not_after: r.get(10)?,
        },
        revoked_at: r.get(11)?,
        created_at: r.get(12)?,
    })
}

fn template_from_row(r: &Row<'_>) -> rusqlite::Result<TemplateRecord> {
    Ok(TemplateRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        properties: r.get(2)?,
        created_at: r.get(3)?,
    })
}

impl Transaction for SqliteTxn<'_> {
    fn commit(mut self: Box<Self>) -> Result<()> {
        self.conn.execute_batch("COMMIT")?;
        self.done = true;
        if self.write {
            self.checkpoint_if_large();
        }
        Ok(())
    }

    fn lock(&mut self, _what: Lock) -> Result<()> {
        // `BEGIN IMMEDIATE` took the database's write lock: every object's lock is held.
        debug_assert!(self.write, "a lock taken in a read transaction");
        Ok(())
    }

    fn name_in_use(&self, name: &str) -> Result<bool> {
        let n: i64 = self
            .conn
            .prepare_cached(
                "SELECT (SELECT COUNT(*) FROM templates WHERE name = ?1) + \
                    (SELECT COUNT(*) FROM certificates WHERE name = ?1)",
            )?
            .query_row(params![name], |r| r.get(0))?;
        Ok(n > 0)
    }

    fn template(&self, name: &str) -> Result<Option<TemplateRecord>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, name, properties, created_at FROM templates WHERE name = ?1",
            )?
            .query_row(params![name], template_from_row)
            .optional()?)
    }

    fn templates(&self) -> Result<Vec<TemplateRecord>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, name, properties, created_at FROM templates ORDER BY created_at, id",
        )?;
        let rows = st.query_map([], template_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn insert_template(&mut self, name: &str, properties: &str) -> Result<i64> {
        self.atomic(|t| {
            t.claim_name(name)?;
            t.conn
                .prepare_cached(
                    "INSERT INTO templates(name, properties, created_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![name, properties, now_micros()])?;
            Ok(t.conn.last_insert_rowid())
        })
    }

    fn update_template(&mut self, id: i64, name: &str, properties: &str) -> Result<()> {
        self.atomic(|t| {
            // gone under this transaction: another writer deleted it
            let old = t.template_name(id)?.ok_or(StoreError::Conflict)?;
            t.rename(&old, name)?;
            t.conn
                .prepare_cached("UPDATE templates SET name = ?2, properties = ?3 WHERE id = ?1")?
                .execute(params![id, name, properties])?;
            Ok(())
        })
    }

    fn delete_template(&mut self, id: i64) -> Result<bool> {
        self.atomic(|t| {
            let Some(name) = t.template_name(id)? else {
                return Ok(false);
            };
            t.release_name(&name)?;
            let n = t
                .conn
                .prepare_cached("DELETE FROM templates WHERE id = ?1")?
                .execute(params![id])?;
            Ok(n == 1)
        })
    }

    fn certificate(&self, name: &str) -> Result<Option<CertificateRecord>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {CERT_COLUMNS} FROM certificates WHERE name = ?1"
            ))?
            .query_row(params![name], cert_from_row)
            .optional()?)
    }

    fn certificate_by_id(&self, id: i64) -> Result<Option<CertificateRecord>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {CERT_COLUMNS} FROM certificates WHERE id = ?1"
            ))?
            .query_row(params![id], cert_from_row)
            .optional()?)
    }

    fn certificates(&self) -> Result<Vec<CertificateRecord>> {
        // Read in row order and sorted here: `ORDER BY created_at, id` has no index, and
        // SQLite sorted the whole rows, certificates and all, through a temporary file.
        let mut st = self
            .conn
            .prepare_cached(&format!("SELECT {CERT_COLUMNS} FROM certificates"))?;
        let rows = st.query_map([], cert_from_row)?;
        let mut certs: Vec<CertificateRecord> = rows.collect::<rusqlite::Result<_>>()?;
        certs.sort_by_key(|c| (c.created_at, c.id));
        Ok(certs)
    }

    fn last_certificate_id(&self) -> Result<i64> {
        Ok(self
            .conn
            .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM certificates")?
            .query_row([], |r| r.get(0))?)
    }

    fn certificate_by_serial(
        &self,
        issuer_id: i64,
        serial: &str,
    ) -> Result<Option<CertificateRecord>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {CERT_COLUMNS} FROM certificates WHERE issuer_id = ?1 AND serial = ?2"
            ))?
            .query_row(params![issuer_id, serial], cert_from_row)
            .optional()?)
    }

    fn issued_by(&self, issuer_id: i64) -> Result<Vec<i64>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id FROM certificates WHERE issuer_id = ?1 AND id != ?1")?;
        let rows = st.query_map(params![issuer_id], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn insert_certificate(&mut self, c: &NewCertificate) -> Result<i64> {
        self.atomic(|t| {
            t.claim_name(&c.name)?;
            let inserted = t
                .conn
                .prepare_cached(
                    "INSERT INTO certificates(name, der, serial, fingerprint, key_id, issuer_id, \
                     trusted, ca_crl_host, properties, not_after, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )?
                .execute(params![
                    c.name,
                    c.der,
                    c.serial,
                    c.fingerprint,
                    c.key_id,
                    c.issuer_id,
                    c.trusted,
                    c.ca_crl_host,
                    c.properties,
                    c.not_after,
                    now_micros()
                ])
                .map_err(|e| {
                    let unique = is_unique_violation(&e);
                    (e, unique)
                });
            match inserted {
                Err((_, true)) => {
                    // which rule: the certificate itself, or its issuer's serial
                    let held = t.certificate_by_fingerprint(&c.fingerprint)?.is_some();
                    return Err(StoreError::Duplicate(if held {
                        "this certificate"
                    } else {
                        "a certificate with this serial from this issuer"
                    }));
                }
                Err((e, false)) => return Err(e.into()),
                Ok(_) => {}
            }
            Ok(t.conn.last_insert_rowid())
        })
    }

    fn certificate_by_fingerprint(&self, fingerprint: &str) -> Result<Option<CertificateRecord>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {CERT_COLUMNS} FROM certificates WHERE fingerprint = ?1"
            ))?
            .query_row(params![fingerprint], cert_from_row)
            .optional()?)
    }

    fn set_certificate_key(&mut self, id: i64, key_id: &str) -> Result<()> {
        let n = self
            .conn
            .prepare_cached("UPDATE certificates SET key_id = ?2 WHERE id = ?1 AND key_id IS NULL")?
            .execute(params![id, key_id])?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    fn update_certificate(&mut self, id: i64, name: &str, trusted: bool) -> Result<()> {
        self.atomic(|t| {
            let old = t.certificate_name(id)?.ok_or(StoreError::Conflict)?;
            t.rename(&old, name)?;
            t.conn
                .prepare_cached("UPDATE certificates SET name = ?2, trusted = ?3 WHERE id = ?1")?
                .execute(params![id, name, trusted])?;
            Ok(())
        })
    }

    fn replace_certificate(&mut self, id: i64, c: &NewCertificate) -> Result<()> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE certificates SET der = ?2, serial = ?3, fingerprint = ?4, key_id = ?5, \
                 issuer_id = ?6, trusted = ?7, properties = ?8, not_after = ?9, \
                 revoked_at = NULL WHERE id = ?1 \
                 AND NOT EXISTS (SELECT 1 FROM revocations WHERE certificate_id = ?1)",
            )?
            .execute(params![
                id,
                c.der,
                c.serial,
                c.fingerprint,
                c.key_id,
                c.issuer_id,
                c.trusted,
                c.properties,
                c.not_after
            ])
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Duplicate("this certificate")
                } else {
                    e.into()
                }
            })?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    fn delete_certificate(&mut self, id: i64) -> Result<()> {
        self.atomic(|t| {
            if let Some(name) = t.certificate_name(id)? {
                t.release_name(&name)?;
            }
            t.conn
                .prepare_cached("DELETE FROM ca_passphrases WHERE certificate_id = ?1")?
                .execute(params![id])?;
            t.conn
                .prepare_cached(
                    "DELETE FROM encrypted_keys WHERE certificate_id = ?1 OR hint_certificate_id = ?1",
                )?
                .execute(params![id])?;
            t.conn
                .prepare_cached("DELETE FROM certificates WHERE id = ?1")?
                .execute(params![id])?;
            Ok(())
        })
    }

    fn insert_encrypted_key(&mut self, sealed: &[u8], hint: Option<i64>) -> Result<i64> {
        self.conn
            .prepare_cached(
                "INSERT INTO encrypted_keys(sealed, hint_certificate_id, created_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![sealed, hint, now_micros()])?;
        Ok(self.conn.last_insert_rowid())
    }

    fn encrypted_keys(&self) -> Result<Vec<EncryptedKeyRecord>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, sealed, hint_certificate_id, key_id, certificate_id FROM encrypted_keys ORDER BY id",
        )?;
        let rows = st.query_map([], |r| {
            Ok(EncryptedKeyRecord {
                id: r.get(0)?,
                sealed: r.get(1)?,
                hint_certificate_id: r.get(2)?,
                key_id: r.get(3)?,
                certificate_id: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn set_encrypted_key_copy(
        &mut self,
        id: i64,
        key_id: Option<&str>,
        certificate_id: Option<i64>,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE encrypted_keys SET key_id = ?2, certificate_id = ?3, \
                 hint_certificate_id = COALESCE(?3, hint_certificate_id) WHERE id = ?1",
            )?
            .execute(params![id, key_id, certificate_id])?;
        Ok(())
    }

    fn clear_certificate_key(&mut self, id: i64) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE certificates SET key_id = NULL WHERE id = ?1")?
            .execute(params![id])?;
        Ok(())
    }

    fn set_ca_passphrase(&mut self, certificate_id: i64, sealed: &[u8]) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO ca_passphrases(certificate_id, sealed) VALUES (?1, ?2) \
                 ON CONFLICT(certificate_id) DO UPDATE SET sealed = excluded.sealed",
            )?
            .execute(params![certificate_id, sealed])?;
        Ok(())
    }

    fn ca_passphrase(&self, certificate_id: i64) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .prepare_cached("SELECT sealed FROM ca_passphrases WHERE certificate_id = ?1")?
            .query_row(params![certificate_id], |r| r.get(0))
            .optional()?)
    }

    fn key(&self, id: &str) -> Result<Option<KeyRecord>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, uri, algorithm, sealed, token_serial, slot, created_at FROM keys WHERE id = ?1",
            )?
            .query_row(params![id], |r| {
                Ok(KeyRecord {
                    id: r.get(0)?,
                    uri: r.get(1)?,
                    algorithm: r.get(2)?,
                    sealed: r.get(3)?,
                    token_serial: r.get(4)?,
                    slot: r.get(5)?,
                    created_at: r.get(6)?,
                })
            })
            .optional()?)
    }

    fn key_uris(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare_cached("SELECT id, uri FROM keys")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    fn insert_key(&mut self, k: &KeyRecord) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO keys(id, uri, algorithm, sealed, token_serial, slot, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                k.id,
                k.uri,
                k.algorithm,
                k.sealed,
                k.token_serial,
                k.slot,
                k.created_at
            ])?;
        Ok(())
    }

    fn set_key_uri(&mut self, id: &str, uri: &str) -> Result<()> {
        let n = self
            .conn
            .prepare_cached("UPDATE keys SET uri = ?2 WHERE id = ?1")?
            .execute(params![id, uri])?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    fn delete_key(&mut self, id: &str) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM keys WHERE id = ?1")?
            .execute(params![id])?;
        Ok(())
    }

    fn key_users(&self, id: &str) -> Result<i64> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT (SELECT COUNT(*) FROM certificates WHERE key_id = ?1) + \
                        (SELECT COUNT(*) FROM requests WHERE key_id = ?1)",
            )?
            .query_row(params![id], |r| r.get(0))?)
    }

    fn insert_request(&mut self, r: &NewRequest) -> Result<i64> {
        self.conn
            .prepare_cached(
                "INSERT INTO requests(name, key_id, subject, public_key, der, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                r.name,
                r.key_id,
                r.subject,
                r.public_key,
                r.der,
                now_micros()
            ])?;
        Ok(self.conn.last_insert_rowid())
    }

    fn requests(&self) -> Result<Vec<RequestRecord>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, name, key_id, subject, public_key, der, created_at FROM requests ORDER BY id",
        )?;
        let rows = st.query_map([], |r| {
            Ok(RequestRecord {
                id: r.get(0)?,
                request: NewRequest {
                    name: r.get(1)?,
                    key_id: r.get(2)?,
                    subject: r.get(3)?,
                    public_key: r.get(4)?,
                    der: r.get(5)?,
                },
                created_at: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn insert_revocation(&mut self, r: &RevocationRecord) -> Result<()> {
        self.atomic(|t| {
            let changed = t
                .conn
                .prepare_cached(
                    "UPDATE certificates SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                )?
                .execute(params![r.certificate_id, r.revoked_at])?;
            if changed != 1 {
                return Err(match t.certificate_name(r.certificate_id)? {
                    Some(_) => StoreError::Duplicate("a revocation of this certificate"),
                    None => StoreError::Corrupt(format!(
                        "certificate {} to revoke is missing",
                        r.certificate_id
                    )),
                });
            }
            t.conn
                .prepare_cached(
                    "INSERT INTO revocations(ca_id, serial, certificate_id, revoked_at, reason, \
                     not_after, entry) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    r.ca_id,
                    r.serial,
                    r.certificate_id,
                    r.revoked_at,
                    r.reason,
                    r.not_after,
                    r.entry
                ])
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        StoreError::Duplicate("a revocation of this serial by this CA")
                    } else {
                        e.into()
                    }
                })?;
            Ok(())
        })
    }

    fn revocation(&self, certificate_id: i64) -> Result<Option<RevocationRecord>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT ca_id, certificate_id, serial, revoked_at, reason, not_after, entry \
                 FROM revocations WHERE certificate_id = ?1",
            )?
            .query_row(params![certificate_id], |r| {
                Ok(RevocationRecord {
                    ca_id: r.get(0)?,
                    certificate_id: r.get(1)?,
                    serial: r.get(2)?,
                    revoked_at: r.get(3)?,
                    reason: r.get(4)?,
                    not_after: r.get(5)?,
                    entry: r.get(6)?,
                })
            })
            .optional()?)
    }

    fn revocation_entries(&self, ca_id: i64, cutoff: i64, out: &mut Vec<u8>) -> Result<i64> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT entry FROM revocations WHERE ca_id = ?1 \
                 AND (not_after >= ?2 OR revoked_at >= ?2)",
        )?;
        let mut rows = stmt.query(params![ca_id, cutoff])?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            out.extend_from_slice(row.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?);
            n += 1;
        }
        Ok(n)
    }

    fn crl(&self, ca_id: i64) -> Result<Option<CrlRecord>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT ca_id, number, this_update, next_update, entries, der FROM crls \
                 WHERE ca_id = ?1",
            )?
            .query_row(params![ca_id], crl_from_row)
            .optional()?)
    }

    fn served_crl(&self, path: &str, name: Option<&str>) -> Result<Option<(String, CrlRecord)>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT r.ca_id, r.number, r.this_update, r.next_update, r.entries, r.der, c.name \
                 FROM crls r JOIN certificates c ON c.id = r.ca_id \
                 WHERE r.ca_id = COALESCE((SELECT ca_id FROM crl_paths WHERE path = ?1), \
                                          (SELECT id FROM certificates WHERE name = ?2))",
            )?
            .query_row(params![path, name], |r| Ok((r.get(6)?, crl_from_row(r)?)))
            .optional()?)
    }

    fn crl_state(&self, ca_id: i64) -> Result<Option<(u64, i64)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT number, this_update FROM crls WHERE ca_id = ?1")?
            .query_row(params![ca_id], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
            })
            .optional()?)
    }

    fn crl_summaries(&self) -> Result<Vec<CrlRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT ca_id, number, this_update, next_update, entries, X'' FROM crls \
             ORDER BY ca_id",
        )?;
        let rows = stmt.query_map([], crl_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn put_crl(&mut self, c: &CrlRecord) -> Result<()> {
        let number = i64::try_from(c.number)
            .map_err(|_| StoreError::Corrupt("CRL number past 2^63".into()))?;
        let changed = self
            .conn
            .prepare_cached(
                "INSERT INTO crls(ca_id, number, this_update, next_update, entries, der) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT(ca_id) DO UPDATE SET number = excluded.number, \
                 this_update = excluded.this_update, next_update = excluded.next_update, \
                 entries = excluded.entries, der = excluded.der \
                 WHERE excluded.number > crls.number",
            )?
            .execute(params![
                c.ca_id,
                number,
                c.this_update,
                c.next_update,
                c.entries,
                c.der
            ])?;
        if changed != 1 {
            return Err(StoreError::Conflict);
        }
        Ok(())
    }

    fn crl_path_owner(&self, path: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached("SELECT ca_id FROM crl_paths WHERE path = ?1")?
            .query_row(params![path], |r| r.get(0))
            .optional()?)
    }

    fn claim_crl_path(&mut self, path: &str, ca_id: i64) -> Result<i64> {
        self.conn
            .prepare_cached(
                "INSERT INTO crl_paths(path, ca_id) VALUES (?1, ?2) ON CONFLICT(path) DO NOTHING",
            )?
            .execute(params![path, ca_id])?;
        self.crl_path_owner(path)?
            .ok_or_else(|| StoreError::Corrupt(format!("CRL path {path} vanished")))
    }

    fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
            .query_row(params![key], |r| r.get(0))
            .optional()?)
    }

    fn set_setting(&mut self, key: &str, value: &str) -> Result<()> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO settings(key, value) VALUES (?1, ?2)")?
            .execute(params![key, value])?;
        Ok(())
    }

    fn downloaded_crl(&self, certificate_id: i64) -> Result<Option<DownloadedCrlRecord>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {DOWNLOADED_COLUMNS} FROM downloaded_crls WHERE certificate_id = ?1"
            ))?
            .query_row(params![certificate_id], downloaded_from_row)
            .optional()?)
    }

    fn downloaded_crls(&self) -> Result<Vec<DownloadedCrlRecord>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {DOWNLOADED_COLUMNS} FROM downloaded_crls ORDER BY certificate_id"
        ))?;
        let rows = stmt.query_map([], downloaded_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn put_downloaded_crl(&mut self, c: &DownloadedCrlRecord) -> Result<()> {
        // A cRLNumber past 2^63 is kept as none: the rollback check then compares thisUpdate.
        let number = c.number.and_then(|n| i64::try_from(n).ok());
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO downloaded_crls(certificate_id, url, number, \
                 this_update, next_update, entries, der, fetched_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                c.certificate_id,
                c.url,
                number,
                c.this_update,
                c.next_update,
                c.entries,
                c.der,
                c.fetched_at
            ])?;
        Ok(())
    }

    fn delete_downloaded_crls(&mut self) -> Result<usize> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM downloaded_crls")?
            .execute([])?)
    }

    fn certificates_with_crl(&self) -> Result<Vec<i64>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT certificate_id FROM downloaded_crls")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

const DOWNLOADED_COLUMNS: &str =
    "certificate_id, url, number, this_update, next_update, entries, der, fetched_at";

fn downloaded_from_row(r: &Row<'_>) -> rusqlite::Result<DownloadedCrlRecord> {
    Ok(DownloadedCrlRecord {
        certificate_id: r.get(0)?,
        url: r.get(1)?,
        number: r.get::<_, Option<i64>>(2)?.map(|n| n as u64),
        this_update: r.get(3)?,
        next_update: r.get(4)?,
        entries: r.get(5)?,
        der: r.get(6)?,
        fetched_at: r.get(7)?,
    })
}

fn crl_from_row(r: &Row<'_>) -> rusqlite::Result<CrlRecord> {
    Ok(CrlRecord {
        ca_id: r.get(0)?,
        number: r.get::<_, i64>(1)? as u64,
        this_update: r.get(2)?,
        next_update: r.get(3)?,
        entries: r.get(4)?,
        der: r.get(5)?,
    })
}

//! Every [`Transaction`] method of the PostgreSQL store: its SQL and row mapping. A translation
//! of the SQLite store's `txn.rs`, the same statements in PostgreSQL's dialect (`$n`
//! parameters, `RETURNING id`, BIGINT columns read as `i64` and checked into `u64`/`u8`).
//!
//! Where it differs, and why: SQLite has one writer at a time, so its read-then-write steps
//! cannot race; here write transactions are READ COMMITTED and several run at once, so every
//! rule is kept by the statement that writes:
//! - a template or certificate changed under its name ([`Transaction::update_template`],
//!   [`Transaction::update_certificate`], [`Transaction::delete_certificate`]) is first read
//!   `FOR UPDATE`: the row stays locked while its name moves, and one gone meanwhile is
//!   [`StoreError::Conflict`]. Row first, then its `names` row, in every method, so two such
//!   writers wait for each other rather than deadlock;
//! - a template is consumed by one `DELETE … RETURNING name` ([`Transaction::delete_template`]):
//!   of two transactions deleting it, the second waits and then deletes nothing;
//! - a duplicate certificate or revocation is an `INSERT … ON CONFLICT DO NOTHING` that
//!   inserted nothing (it waits for a concurrent insert of the same key, then sees it). What
//!   the operation had done before (the name claimed, the certificate marked revoked) it
//!   undoes, as SQLite's savepoint does, so that it changes nothing;
//! - [`Transaction::put_crl`] is one upsert whose `WHERE crls.number < excluded.number` is
//!   re-checked on the newest row: the number only grows, whatever the interleaving;
//! - [`Transaction::replace_certificate`] checks "not revoked" on the row it updates
//!   (`revoked_at IS NULL`, which the revoking transaction sets in its first statement), so a
//!   revocation committed meanwhile is seen; the certificate held under another name is the
//!   unique violation of that `UPDATE` (the transaction is then aborted, as the contract
//!   allows);
//! - [`Transaction::claim_crl_path`] inserts with `ON CONFLICT DO NOTHING` and then reads the
//!   holder in a new statement, which sees the concurrent claim it waited for; a holder deleted
//!   in between is [`StoreError::Conflict`] (the retried transaction claims the path).

use postgres::Row;

use super::{is_unique_violation, PgTxn};
use crate::error::StoreError;
use crate::store::{
    now_micros, CertificateRecord, CrlRecord, DownloadedCrlRecord, EncryptedKeyRecord, KeyRecord,
    Lock, NewCertificate, NewRequest, RequestRecord, Result, RevocationRecord, TemplateRecord,
    Transaction,
};

const CERT_COLUMNS: &str = "id, name, der, serial, fingerprint, key_id, issuer_id, trusted, \
                            ca_crl_host, properties, not_after, revoked_at, created_at";

const TEMPLATE_COLUMNS: &str = "id, name, properties, created_at";

const KEY_COLUMNS: &str = "id, uri, algorithm, sealed, token_serial, slot, created_at";

const REVOCATION_COLUMNS: &str =
    "ca_id, certificate_id, serial, revoked_at, reason, not_after, entry";

const DOWNLOADED_COLUMNS: &str =
    "certificate_id, url, number, this_update, next_update, entries, der, fetched_at";

/// The unique index on (issuer, serial) (`schema.rs`).
const ISSUER_SERIAL_INDEX: &str = "certificates_issuer_serial";

fn cert_from_row(r: &Row) -> Result<CertificateRecord> {
    Ok(CertificateRecord {
        id: r.try_get(0)?,
        cert: NewCertificate {
            name: r.try_get(1)?,
            der: r.try_get(2)?,
            serial: r.try_get(3)?,
            fingerprint: r.try_get(4)?,
            key_id: r.try_get(5)?,
            issuer_id: r.try_get(6)?,
            trusted: r.try_get(7)?,
            ca_crl_host: r.try_get(8)?,
            properties: r.try_get(9)?,
            not_after: r.try_get(10)?,
        },
        revoked_at: r.try_get(11)?,
        created_at: r.try_get(12)?,
    })
}

fn template_from_row(r: &Row) -> Result<TemplateRecord> {
    Ok(TemplateRecord {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        properties: r.try_get(2)?,
        created_at: r.try_get(3)?,
    })
}

fn key_from_row(r: &Row) -> Result<KeyRecord> {
    Ok(KeyRecord {
        id: r.try_get(0)?,
        uri: r.try_get(1)?,
        algorithm: r.try_get(2)?,
        sealed: r.try_get(3)?,
        token_serial: r.try_get(4)?,
        slot: r.try_get(5)?,
        created_at: r.try_get(6)?,
    })
}

fn request_from_row(r: &Row) -> Result<RequestRecord> {
    Ok(RequestRecord {
        id: r.try_get(0)?,
        request: NewRequest {
            name: r.try_get(1)?,
            key_id: r.try_get(2)?,
            subject: r.try_get(3)?,
            public_key: r.try_get(4)?,
            der: r.try_get(5)?,
        },
        created_at: r.try_get(6)?,
    })
}

fn encrypted_key_from_row(r: &Row) -> Result<EncryptedKeyRecord> {
    Ok(EncryptedKeyRecord {
        id: r.try_get(0)?,
        sealed: r.try_get(1)?,
        hint_certificate_id: r.try_get(2)?,
        key_id: r.try_get(3)?,
        certificate_id: r.try_get(4)?,
    })
}

fn revocation_from_row(r: &Row) -> Result<RevocationRecord> {
    let reason = r
        .try_get::<_, Option<i64>>(4)?
        .map(|v| u8::try_from(v).map_err(|_| corrupt("revocations.reason", v)))
        .transpose()?;
    Ok(RevocationRecord {
        ca_id: r.try_get(0)?,
        certificate_id: r.try_get(1)?,
        serial: r.try_get(2)?,
        revoked_at: r.try_get(3)?,
        reason,
        not_after: r.try_get(5)?,
        entry: r.try_get(6)?,
    })
}

fn crl_from_row(r: &Row) -> Result<CrlRecord> {
    Ok(CrlRecord {
        ca_id: r.try_get(0)?,
        number: to_u64(r.try_get(1)?, "crls.number")?,
        this_update: r.try_get(2)?,
        next_update: r.try_get(3)?,
        entries: r.try_get(4)?,
        der: r.try_get(5)?,
    })
}

fn downloaded_from_row(r: &Row) -> Result<DownloadedCrlRecord> {
    Ok(DownloadedCrlRecord {
        certificate_id: r.try_get(0)?,
        url: r.try_get(1)?,
        number: r
            .try_get::<_, Option<i64>>(2)?
            .map(|n| to_u64(n, "downloaded_crls.number"))
            .transpose()?,
        this_update: r.try_get(3)?,
        next_update: r.try_get(4)?,
        entries: r.try_get(5)?,
        der: r.try_get(6)?,
        fetched_at: r.try_get(7)?,
    })
}

/// A BIGINT column that holds an unsigned number.
fn to_u64(v: i64, column: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| corrupt(column, v))
}

fn corrupt(column: &str, v: i64) -> StoreError {
    StoreError::Corrupt(format!("{column} holds {v}, out of range"))
}

/// Maps the rows of a query.
fn rows<T>(rows: Vec<Row>, f: impl Fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(f).collect()
}

impl PgTxn<'_> {
    /// The single value of a query that has exactly one row.
    fn value<T>(&self, sql: &str, params: super::Params<'_>) -> Result<T>
    where
        T: for<'a> postgres::types::FromSql<'a>,
    {
        Ok(self.query_one(sql, params)?.try_get(0)?)
    }

    /// The single value of a query that has at most one row.
    fn value_opt<T>(&self, sql: &str, params: super::Params<'_>) -> Result<Option<T>>
    where
        T: for<'a> postgres::types::FromSql<'a>,
    {
        match self.query_opt(sql, params)? {
            Some(row) => Ok(Some(row.try_get(0)?)),
            None => Ok(None),
        }
    }

    /// The certificate a query finds, if any.
    fn certificate_where(
        &self,
        condition: &str,
        params: super::Params<'_>,
    ) -> Result<Option<CertificateRecord>> {
        self.query_opt(
            &format!("SELECT {CERT_COLUMNS} FROM certificates WHERE {condition}"),
            params,
        )?
        .as_ref()
        .map(cert_from_row)
        .transpose()
    }
}

impl Transaction for PgTxn<'_> {
    fn commit(mut self: Box<Self>) -> Result<()> {
        self.commit_txn()
    }

    fn lock(&mut self, what: Lock) -> Result<()> {
        self.lock_object(what)
    }

    fn name_in_use(&self, name: &str) -> Result<bool> {
        self.value(
            "SELECT EXISTS (SELECT 1 FROM templates WHERE name = $1) \
                 OR EXISTS (SELECT 1 FROM certificates WHERE name = $1)",
            &[&name],
        )
    }

    fn template(&self, name: &str) -> Result<Option<TemplateRecord>> {
        self.query_opt(
            &format!("SELECT {TEMPLATE_COLUMNS} FROM templates WHERE name = $1"),
            &[&name],
        )?
        .as_ref()
        .map(template_from_row)
        .transpose()
    }

    fn templates(&self) -> Result<Vec<TemplateRecord>> {
        rows(
            self.query(
                &format!("SELECT {TEMPLATE_COLUMNS} FROM templates ORDER BY created_at, id"),
                &[],
            )?,
            template_from_row,
        )
    }

    fn insert_template(&mut self, name: &str, properties: &str) -> Result<i64> {
        self.claim_name(name)?;
        self.value(
            "INSERT INTO templates(name, properties, created_at) VALUES ($1, $2, $3) \
             RETURNING id",
            &[&name, &properties, &now_micros()],
        )
    }

    fn update_template(&mut self, id: i64, name: &str, properties: &str) -> Result<()> {
        // locked until the transaction ends; gone meanwhile: another writer deleted it
        let old: String = self
            .value_opt(
                "SELECT name FROM templates WHERE id = $1 FOR UPDATE",
                &[&id],
            )?
            .ok_or(StoreError::Conflict)?;
        self.rename(&old, name)?;
        self.execute(
            "UPDATE templates SET name = $2, properties = $3 WHERE id = $1",
            &[&id, &name, &properties],
        )?;
        Ok(())
    }

    fn delete_template(&mut self, id: i64) -> Result<bool> {
        // one conditional DELETE: of two transactions, the second waits and deletes nothing
        let name: Option<String> =
            self.value_opt("DELETE FROM templates WHERE id = $1 RETURNING name", &[&id])?;
        match name {
            Some(name) => {
                self.release_name(&name)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn certificate(&self, name: &str) -> Result<Option<CertificateRecord>> {
        self.certificate_where("name = $1", &[&name])
    }

    fn certificate_by_id(&self, id: i64) -> Result<Option<CertificateRecord>> {
        self.certificate_where("id = $1", &[&id])
    }

    fn certificates(&self) -> Result<Vec<CertificateRecord>> {
        rows(
            self.query(
                &format!("SELECT {CERT_COLUMNS} FROM certificates ORDER BY created_at, id"),
                &[],
            )?,
            cert_from_row,
        )
    }

    fn last_certificate_id(&self) -> Result<i64> {
        self.value("SELECT COALESCE(MAX(id), 0) FROM certificates", &[])
    }

    fn issued_by(&self, issuer_id: i64) -> Result<Vec<i64>> {
        rows(
            self.query(
                "SELECT id FROM certificates WHERE issuer_id = $1 AND id <> $1",
                &[&issuer_id],
            )?,
            |r| Ok(r.try_get(0)?),
        )
    }

    fn insert_certificate(&mut self, c: &NewCertificate) -> Result<i64> {
        self.claim_name(&c.name)?;
        let id: Option<i64> = self.value_opt(
            "INSERT INTO certificates(name, der, serial, fingerprint, key_id, issuer_id, \
             trusted, ca_crl_host, properties, not_after, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT DO NOTHING RETURNING id",
            &[
                &c.name,
                &c.der,
                &c.serial,
                &c.fingerprint,
                &c.key_id,
                &c.issuer_id,
                &c.trusted,
                &c.ca_crl_host,
                &c.properties,
                &c.not_after,
                &now_micros(),
            ],
        )?;
        if let Some(id) = id {
            return Ok(id);
        }
        // Nothing inserted: a committed certificate holds the fingerprint or the issuer's
        // serial (a concurrent insert of either was waited for). The name claimed above is
        // given back, so that the operation changes nothing.
        self.release_name(&c.name)?;
        let held: bool = self.value(
            "SELECT EXISTS (SELECT 1 FROM certificates WHERE fingerprint = $1)",
            &[&c.fingerprint],
        )?;
        Err(StoreError::Duplicate(if held {
            "this certificate"
        } else {
            "a certificate with this serial from this issuer"
        }))
    }

    fn certificate_by_fingerprint(&self, fingerprint: &str) -> Result<Option<CertificateRecord>> {
        self.certificate_where("fingerprint = $1", &[&fingerprint])
    }

    fn certificate_by_serial(
        &self,
        issuer_id: i64,
        serial: &str,
    ) -> Result<Option<CertificateRecord>> {
        self.certificate_where("issuer_id = $1 AND serial = $2", &[&issuer_id, &serial])
    }

    fn set_certificate_key(&mut self, id: i64, key_id: &str) -> Result<()> {
        // conditional: of two writers that read the certificate keyless, the second waits
        // for the first's row lock, then finds a key and updates nothing
        let n = self.execute(
            "UPDATE certificates SET key_id = $2 WHERE id = $1 AND key_id IS NULL",
            &[&id, &key_id],
        )?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    fn update_certificate(&mut self, id: i64, name: &str, trusted: bool) -> Result<()> {
        // locked until the transaction ends; gone meanwhile: another writer deleted it
        let old: String = self
            .value_opt(
                "SELECT name FROM certificates WHERE id = $1 FOR UPDATE",
                &[&id],
            )?
            .ok_or(StoreError::Conflict)?;
        self.rename(&old, name)?;
        self.execute(
            "UPDATE certificates SET name = $2, trusted = $3 WHERE id = $1",
            &[&id, &name, &trusted],
        )?;
        Ok(())
    }

    fn replace_certificate(&mut self, id: i64, c: &NewCertificate) -> Result<()> {
        // `revoked_at IS NULL` is re-checked on the newest version of the row: a revocation
        // committed while this waited for the row's lock (it sets revoked_at first) is seen.
        let n = self
            .try_execute(
                "UPDATE certificates SET der = $2, serial = $3, fingerprint = $4, key_id = $5, \
                 issuer_id = $6, trusted = $7, properties = $8, not_after = $9 \
                 WHERE id = $1 AND revoked_at IS NULL \
                 AND NOT EXISTS (SELECT 1 FROM revocations WHERE certificate_id = $1)",
                &[
                    &id,
                    &c.der,
                    &c.serial,
                    &c.fingerprint,
                    &c.key_id,
                    &c.issuer_id,
                    &c.trusted,
                    &c.properties,
                    &c.not_after,
                ],
            )
            .map_err(|e| {
                if !is_unique_violation(&e) {
                    return e.into();
                }
                let index = e.as_db_error().and_then(|d| d.constraint());
                StoreError::Duplicate(if index == Some(ISSUER_SERIAL_INDEX) {
                    "a certificate with this serial from this issuer"
                } else {
                    "this certificate"
                })
            })?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    fn delete_certificate(&mut self, id: i64) -> Result<()> {
        // The row is locked first: no other transaction can then make a row refer to it (a
        // foreign key check takes a lock this one excludes) between the deletes below.
        let name: Option<String> = self.value_opt(
            "SELECT name FROM certificates WHERE id = $1 FOR UPDATE",
            &[&id],
        )?;
        let Some(name) = name else {
            return Ok(());
        };
        self.release_name(&name)?;
        self.execute(
            "DELETE FROM ca_passphrases WHERE certificate_id = $1",
            &[&id],
        )?;
        self.execute(
            "DELETE FROM encrypted_keys WHERE certificate_id = $1 OR hint_certificate_id = $1",
            &[&id],
        )?;
        // revocations, CRL, CRL paths, downloaded CRL: ON DELETE CASCADE
        self.execute("DELETE FROM certificates WHERE id = $1", &[&id])?;
        Ok(())
    }

    fn key(&self, id: &str) -> Result<Option<KeyRecord>> {
        self.query_opt(
            &format!("SELECT {KEY_COLUMNS} FROM keys WHERE id = $1"),
            &[&id],
        )?
        .as_ref()
        .map(key_from_row)
        .transpose()
    }

    fn key_uris(&self) -> Result<Vec<(String, String)>> {
        rows(self.query("SELECT id, uri FROM keys", &[])?, |r| {
            Ok((r.try_get(0)?, r.try_get(1)?))
        })
    }

    fn insert_key(&mut self, k: &KeyRecord) -> Result<()> {
        self.execute(
            &format!("INSERT INTO keys({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
            &[
                &k.id,
                &k.uri,
                &k.algorithm,
                &k.sealed,
                &k.token_serial,
                &k.slot,
                &k.created_at,
            ],
        )?;
        Ok(())
    }

    fn delete_key(&mut self, id: &str) -> Result<()> {
        self.execute("DELETE FROM keys WHERE id = $1", &[&id])?;
        Ok(())
    }

    fn set_key_uri(&mut self, id: &str, uri: &str) -> Result<()> {
        let n = self.execute("UPDATE keys SET uri = $2 WHERE id = $1", &[&id, &uri])?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    fn key_users(&self, id: &str) -> Result<i64> {
        self.value(
            "SELECT (SELECT COUNT(*) FROM certificates WHERE key_id = $1) + \
                    (SELECT COUNT(*) FROM requests WHERE key_id = $1)",
            &[&id],
        )
    }

    fn insert_encrypted_key(&mut self, sealed: &[u8], hint: Option<i64>) -> Result<i64> {
        self.value(
            "INSERT INTO encrypted_keys(sealed, hint_certificate_id, created_at) \
             VALUES ($1, $2, $3) RETURNING id",
            &[&sealed, &hint, &now_micros()],
        )
    }

    fn encrypted_keys(&self) -> Result<Vec<EncryptedKeyRecord>> {
        rows(
            self.query(
                "SELECT id, sealed, hint_certificate_id, key_id, certificate_id \
                 FROM encrypted_keys ORDER BY id",
                &[],
            )?,
            encrypted_key_from_row,
        )
    }

    fn set_encrypted_key_copy(
        &mut self,
        id: i64,
        key_id: Option<&str>,
        certificate_id: Option<i64>,
    ) -> Result<()> {
        self.execute(
            "UPDATE encrypted_keys SET key_id = $2, certificate_id = $3, \
             hint_certificate_id = COALESCE($3, hint_certificate_id) WHERE id = $1",
            &[&id, &key_id, &certificate_id],
        )?;
        Ok(())
    }

    fn clear_certificate_key(&mut self, id: i64) -> Result<()> {
        self.execute(
            "UPDATE certificates SET key_id = NULL WHERE id = $1",
            &[&id],
        )?;
        Ok(())
    }

    fn set_ca_passphrase(&mut self, certificate_id: i64, sealed: &[u8]) -> Result<()> {
        self.execute(
            "INSERT INTO ca_passphrases(certificate_id, sealed) VALUES ($1, $2) \
             ON CONFLICT (certificate_id) DO UPDATE SET sealed = excluded.sealed",
            &[&certificate_id, &sealed],
        )?;
        Ok(())
    }

    fn ca_passphrase(&self, certificate_id: i64) -> Result<Option<Vec<u8>>> {
        self.value_opt(
            "SELECT sealed FROM ca_passphrases WHERE certificate_id = $1",
            &[&certificate_id],
        )
    }

    fn insert_request(&mut self, r: &NewRequest) -> Result<i64> {
        self.value(
            "INSERT INTO requests(name, key_id, subject, public_key, der, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[
                &r.name,
                &r.key_id,
                &r.subject,
                &r.public_key,
                &r.der,
                &now_micros(),
            ],
        )
    }

    fn requests(&self) -> Result<Vec<RequestRecord>> {
        rows(
            self.query(
                "SELECT id, name, key_id, subject, public_key, der, created_at \
                 FROM requests ORDER BY id",
                &[],
            )?,
            request_from_row,
        )
    }

    fn insert_revocation(&mut self, r: &RevocationRecord) -> Result<()> {
        // One conditional UPDATE marks it revoked: of two transactions revoking it, the
        // second waits for the first's row lock and then finds it revoked.
        let changed = self.execute(
            "UPDATE certificates SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            &[&r.certificate_id, &r.revoked_at],
        )?;
        if changed != 1 {
            let exists: bool = self.value(
                "SELECT EXISTS (SELECT 1 FROM certificates WHERE id = $1)",
                &[&r.certificate_id],
            )?;
            return Err(if exists {
                StoreError::Duplicate("a revocation of this certificate")
            } else {
                StoreError::Corrupt(format!(
                    "certificate {} to revoke is missing",
                    r.certificate_id
                ))
            });
        }
        let reason = r.reason.map(i64::from);
        let inserted = self.execute(
            &format!(
                "INSERT INTO revocations({REVOCATION_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"
            ),
            &[
                &r.ca_id,
                &r.certificate_id,
                &r.serial,
                &r.revoked_at,
                &reason,
                &r.not_after,
                &r.entry,
            ],
        )?;
        if inserted != 1 {
            // the CA revoked this serial already: the certificate is marked revoked no more
            self.execute(
                "UPDATE certificates SET revoked_at = NULL WHERE id = $1",
                &[&r.certificate_id],
            )?;
            return Err(StoreError::Duplicate(
                "a revocation of this serial by this CA",
            ));
        }
        Ok(())
    }

    fn revocation(&self, certificate_id: i64) -> Result<Option<RevocationRecord>> {
        self.query_opt(
            &format!("SELECT {REVOCATION_COLUMNS} FROM revocations WHERE certificate_id = $1"),
            &[&certificate_id],
        )?
        .as_ref()
        .map(revocation_from_row)
        .transpose()
    }

    fn revocation_entries(&self, ca_id: i64, cutoff: i64, out: &mut Vec<u8>) -> Result<i64> {
        let rows = self.query(
            "SELECT entry FROM revocations WHERE ca_id = $1 \
             AND (not_after >= $2 OR revoked_at >= $2)",
            &[&ca_id, &cutoff],
        )?;
        for row in &rows {
            out.extend_from_slice(row.try_get::<_, &[u8]>(0)?);
        }
        i64::try_from(rows.len()).map_err(|_| StoreError::Corrupt("too many revocations".into()))
    }

    fn crl(&self, ca_id: i64) -> Result<Option<CrlRecord>> {
        self.query_opt(
            "SELECT ca_id, number, this_update, next_update, entries, der FROM crls \
             WHERE ca_id = $1",
            &[&ca_id],
        )?
        .as_ref()
        .map(crl_from_row)
        .transpose()
    }

    fn served_crl(&self, path: &str, name: Option<&str>) -> Result<Option<(String, CrlRecord)>> {
        self.query_opt(
            "SELECT r.ca_id, r.number, r.this_update, r.next_update, r.entries, r.der, c.name \
             FROM crls r JOIN certificates c ON c.id = r.ca_id \
             WHERE r.ca_id = COALESCE((SELECT ca_id FROM crl_paths WHERE path = $1), \
                                      (SELECT id FROM certificates WHERE name = $2::text))",
            &[&path, &name],
        )?
        .map(|r| Ok((r.try_get(6)?, crl_from_row(&r)?)))
        .transpose()
    }

    fn crl_state(&self, ca_id: i64) -> Result<Option<(u64, i64)>> {
        match self.query_opt(
            "SELECT number, this_update FROM crls WHERE ca_id = $1",
            &[&ca_id],
        )? {
            Some(r) => Ok(Some((to_u64(r.try_get(0)?, "crls.number")?, r.try_get(1)?))),
            None => Ok(None),
        }
    }

    fn crl_summaries(&self) -> Result<Vec<CrlRecord>> {
        rows(
            self.query(
                "SELECT ca_id, number, this_update, next_update, entries, ''::bytea FROM crls \
                 ORDER BY ca_id",
                &[],
            )?,
            crl_from_row,
        )
    }

    fn put_crl(&mut self, c: &CrlRecord) -> Result<()> {
        let number = i64::try_from(c.number)
            .map_err(|_| StoreError::Corrupt("CRL number past 2^63".into()))?;
        // One upsert: its WHERE is evaluated on the newest row (after waiting for a concurrent
        // writer of it), so a number never goes down nor is stored twice.
        let changed = self.execute(
            "INSERT INTO crls(ca_id, number, this_update, next_update, entries, der) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (ca_id) DO UPDATE SET number = excluded.number, \
             this_update = excluded.this_update, next_update = excluded.next_update, \
             entries = excluded.entries, der = excluded.der \
             WHERE crls.number < excluded.number",
            &[
                &c.ca_id,
                &number,
                &c.this_update,
                &c.next_update,
                &c.entries,
                &c.der,
            ],
        )?;
        if changed == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    fn crl_path_owner(&self, path: &str) -> Result<Option<i64>> {
        self.value_opt("SELECT ca_id FROM crl_paths WHERE path = $1", &[&path])
    }

    fn claim_crl_path(&mut self, path: &str, ca_id: i64) -> Result<i64> {
        // A concurrent claim is waited for by the INSERT; the SELECT after it, a new statement
        // at READ COMMITTED, sees the claim that won.
        let inserted = self.execute(
            "INSERT INTO crl_paths(path, ca_id) VALUES ($1, $2) ON CONFLICT (path) DO NOTHING",
            &[&path, &ca_id],
        )?;
        if inserted == 1 {
            return Ok(ca_id);
        }
        // none: its holder was deleted in between, and the path is free for a retry
        self.crl_path_owner(path)?.ok_or(StoreError::Conflict)
    }

    fn setting(&self, key: &str) -> Result<Option<String>> {
        self.value_opt("SELECT value FROM settings WHERE key = $1", &[&key])
    }

    fn set_setting(&mut self, key: &str, value: &str) -> Result<()> {
        self.execute(
            "INSERT INTO settings(key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )?;
        Ok(())
    }

    fn downloaded_crl(&self, certificate_id: i64) -> Result<Option<DownloadedCrlRecord>> {
        self.query_opt(
            &format!("SELECT {DOWNLOADED_COLUMNS} FROM downloaded_crls WHERE certificate_id = $1"),
            &[&certificate_id],
        )?
        .as_ref()
        .map(downloaded_from_row)
        .transpose()
    }

    fn downloaded_crls(&self) -> Result<Vec<DownloadedCrlRecord>> {
        rows(
            self.query(
                &format!(
                    "SELECT {DOWNLOADED_COLUMNS} FROM downloaded_crls ORDER BY certificate_id"
                ),
                &[],
            )?,
            downloaded_from_row,
        )
    }

    fn put_downloaded_crl(&mut self, c: &DownloadedCrlRecord) -> Result<()> {
        // A cRLNumber past 2^63 is kept as none: the rollback check then compares thisUpdate.
        let number = c.number.and_then(|n| i64::try_from(n).ok());
        self.execute(
            &format!(
                "INSERT INTO downloaded_crls({DOWNLOADED_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (certificate_id) DO UPDATE SET url = excluded.url, \
                 number = excluded.number, this_update = excluded.this_update, \
                 next_update = excluded.next_update, entries = excluded.entries, \
                 der = excluded.der, fetched_at = excluded.fetched_at"
            ),
            &[
                &c.certificate_id,
                &c.url,
                &number,
                &c.this_update,
                &c.next_update,
                &c.entries,
                &c.der,
                &c.fetched_at,
            ],
        )?;
        Ok(())
    }

    fn delete_downloaded_crls(&mut self) -> Result<usize> {
        let n = self.execute("DELETE FROM downloaded_crls", &[])?;
        usize::try_from(n).map_err(|_| StoreError::Corrupt("too many downloaded CRLs".into()))
    }

    fn certificates_with_crl(&self) -> Result<Vec<i64>> {
        rows(
            self.query("SELECT certificate_id FROM downloaded_crls", &[])?,
            |r| Ok(r.try_get(0)?),
        )
    }
}

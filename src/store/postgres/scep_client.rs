//! The SCEP client table of the PostgreSQL store.
//!
//! Several `serve` nodes step the same clients, each write transaction at READ COMMITTED, so
//! the rules of `store/scep_client.rs` are single statements: a name is held once by its
//! unique constraint (`ON CONFLICT DO NOTHING`: a racing insert waits, then inserts nothing);
//! a state moves by a compare-and-set on `updated_at` in the `UPDATE`'s WHERE. A writer that
//! finds the row locked waits for the other to end and checks `updated_at` again on the row
//! the other left, which carries a new stamp: one of racing writers wins, the others change
//! nothing and learn it from the row count.

use postgres::types::ToSql;
use postgres::Row;

use super::PgTxn;
use crate::error::StoreError;
use crate::store::{
    now_micros, NewScepClient, Result, ScepClientRecord, ScepClientState, ScepClientStore,
    ScepClientTransaction,
};

const COLUMNS: &str = "id, name, kind, url, ca_identity, properties, key_profile, refresh, \
                       status, detail, ca_id, next_ca_id, certificate_id, key_id, challenge, \
                       tx_id, tx_type, tx_csr, tx_signer, tx_recipient, tx_started, \
                       req_fingerprint, ca_fingerprint, capabilities, next_attempt, attempts, \
                       created_at, updated_at";

/// The columns of a client's state, in the order of [`StateParams::params`].
const STATE_COLUMNS: &str = "status, detail, ca_id, next_ca_id, certificate_id, key_id, \
                             challenge, tx_id, tx_type, tx_csr, tx_signer, tx_recipient, \
                             tx_started, req_fingerprint, ca_fingerprint, capabilities, \
                             next_attempt, attempts";

fn transaction_from_row(r: &Row) -> Result<Option<ScepClientTransaction>> {
    let Some(transaction_id) = r.try_get::<_, Option<String>>(15)? else {
        return Ok(None);
    };
    let tx_type: i64 = r.try_get(16)?;
    Ok(Some(ScepClientTransaction {
        transaction_id,
        message_type: u8::try_from(tx_type)
            .map_err(|_| StoreError::Corrupt(format!("scep_clients.tx_type {tx_type}")))?,
        csr: r.try_get(17)?,
        signer: r.try_get(18)?,
        recipient: r.try_get(19)?,
        started_at: r.try_get(20)?,
    }))
}

fn from_row(r: &Row) -> Result<ScepClientRecord> {
    Ok(ScepClientRecord {
        id: r.try_get(0)?,
        client: NewScepClient {
            name: r.try_get(1)?,
            kind: r.try_get(2)?,
            url: r.try_get(3)?,
            ca_identity: r.try_get(4)?,
            properties: r.try_get(5)?,
            key_profile: r.try_get(6)?,
            refresh: r.try_get(7)?,
        },
        state: ScepClientState {
            status: r.try_get(8)?,
            detail: r.try_get(9)?,
            ca_id: r.try_get(10)?,
            next_ca_id: r.try_get(11)?,
            certificate_id: r.try_get(12)?,
            key_id: r.try_get(13)?,
            challenge: r.try_get(14)?,
            transaction: transaction_from_row(r)?,
            req_fingerprint: r.try_get(21)?,
            ca_fingerprint: r.try_get(22)?,
            capabilities: r.try_get(23)?,
            next_attempt: r.try_get(24)?,
            attempts: r.try_get(25)?,
        },
        created_at: r.try_get(26)?,
        updated_at: r.try_get(27)?,
    })
}

/// A client's state as statement parameters (the columns of [`STATE_COLUMNS`]).
struct StateParams<'a> {
    state: &'a ScepClientState,
    tx_id: Option<&'a str>,
    tx_type: Option<i64>,
    tx_csr: Option<&'a [u8]>,
    tx_signer: Option<&'a [u8]>,
    tx_recipient: Option<&'a [u8]>,
    tx_started: Option<i64>,
}

impl<'a> StateParams<'a> {
    fn new(state: &'a ScepClientState) -> Self {
        let tx = state.transaction.as_ref();
        StateParams {
            state,
            tx_id: tx.map(|t| t.transaction_id.as_str()),
            tx_type: tx.map(|t| i64::from(t.message_type)),
            tx_csr: tx.map(|t| t.csr.as_slice()),
            tx_signer: tx.map(|t| t.signer.as_slice()),
            tx_recipient: tx.map(|t| t.recipient.as_slice()),
            tx_started: tx.map(|t| t.started_at),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 18] {
        let s = self.state;
        [
            &s.status,
            &s.detail,
            &s.ca_id,
            &s.next_ca_id,
            &s.certificate_id,
            &s.key_id,
            &s.challenge,
            &self.tx_id,
            &self.tx_type,
            &self.tx_csr,
            &self.tx_signer,
            &self.tx_recipient,
            &self.tx_started,
            &s.req_fingerprint,
            &s.ca_fingerprint,
            &s.capabilities,
            &s.next_attempt,
            &s.attempts,
        ]
    }
}

/// A time after `previous`, so that the compare-and-set token always changes (also when this
/// node's clock is behind the last writer's).
fn next_stamp(previous: i64) -> i64 {
    now_micros().max(previous + 1)
}

impl ScepClientStore for PgTxn<'_> {
    fn scep_clients(&self) -> Result<Vec<ScepClientRecord>> {
        self.query(
            &format!("SELECT {COLUMNS} FROM scep_clients ORDER BY id"),
            &[],
        )?
        .iter()
        .map(from_row)
        .collect()
    }

    fn scep_client(&self, name: &str) -> Result<Option<ScepClientRecord>> {
        self.query_opt(
            &format!("SELECT {COLUMNS} FROM scep_clients WHERE name = $1"),
            &[&name],
        )?
        .as_ref()
        .map(from_row)
        .transpose()
    }

    fn insert_scep_client(&mut self, c: &NewScepClient, s: &ScepClientState) -> Result<i64> {
        let now = now_micros();
        let state = StateParams::new(s);
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &c.name,
            &c.kind,
            &c.url,
            &c.ca_identity,
            &c.properties,
            &c.key_profile,
            &c.refresh,
        ];
        params.extend(state.params());
        params.push(&now);
        let row = self.query_opt(
            &format!(
                "INSERT INTO scep_clients(name, kind, url, ca_identity, properties, \
                 key_profile, refresh, {STATE_COLUMNS}, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                 $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $26) \
                 ON CONFLICT (name) DO NOTHING RETURNING id"
            ),
            &params,
        )?;
        match row {
            Some(row) => Ok(row.try_get(0)?),
            None => Err(StoreError::Duplicate("a SCEP client with this name")),
        }
    }

    fn update_scep_client(
        &mut self,
        id: i64,
        updated_at: i64,
        s: &ScepClientState,
    ) -> Result<Option<i64>> {
        let stamp = next_stamp(updated_at);
        let state = StateParams::new(s);
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&id, &updated_at];
        params.extend(state.params());
        params.push(&stamp);
        let n = self.execute(
            &format!(
                "UPDATE scep_clients SET ({STATE_COLUMNS}) = ($3, $4, $5, $6, $7, $8, $9, \
                 $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20), updated_at = $21 \
                 WHERE id = $1 AND updated_at = $2"
            ),
            &params,
        )?;
        Ok((n == 1).then_some(stamp))
    }

    fn delete_scep_client(&mut self, id: i64) -> Result<bool> {
        let n = self.execute("DELETE FROM scep_clients WHERE id = $1", &[&id])?;
        Ok(n == 1)
    }
}

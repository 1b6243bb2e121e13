//! Lost tokens: `token inventory` (which certificates have their key on which token) and
//! `token lost SERIAL` (revoke every certificate issued here whose key is on it, and mark the
//! CAs whose own key was on it compromised).
//!
//! How `token lost` writes, so that nothing is half-written:
//! 1. one read transaction plans it (no token is touched, no PIN asked);
//! 2. one write transaction marks the CAs whose key is on the token compromised, each under
//!    its [`Lock::Ca`] — the lock issuance re-checks the mark under — so they issue nothing
//!    more from its commit on, before anything else happens;
//! 3. then, per issuing CA (ascending), its key is reached outside any lock and ONE write
//!    transaction under its lock records the revocations (certificates revoked meanwhile are
//!    skipped) and renews its CRL ([`Manager::write_crl`], as `issued-revoke` does).
//!
//! A CA whose own key is on the lost token may be unreachable (the token is gone): its
//! revocations are still recorded, alone in that CA's transaction, and its CRL is left as it
//! was — the report says so. Such a CA is compromised (step 2), and a compromised CA's CRLs are
//! always rebuilt from the rows (never appended to the previous CRL), so its next CRL (`crl
//! renew`, `serve`'s daily renewal, once the token is back) lists them. An issuing CA whose key
//! is elsewhere and unreachable gets nothing written (its revocations would wait on a token
//! that is not lost): the report names it, and running `token lost` again completes it
//! (revoked certificates are skipped). A run stopped between the transactions leaves whole
//! steps behind; running it again finishes the rest.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::crl::{at, unix_now, CrlSigner};
use super::view::{self, Flags};
use super::Manager;
use crate::error::{ManagerError, ObjectKind, Result, X509Error};
use crate::keys::KeyUri;
use crate::store::{KeyRecord, Lock, RevocationRecord, TxnMode};
use crate::x509;
use crate::x509::crl::{self as x509crl, RevocationReason};

/// A certificate whose key is on a token (`token inventory`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryCertificate {
    /// its name
    pub name: String,
    /// its `print` flags
    pub flags: Flags,
    /// the local CA that issued it, else its issuer's name (DN)
    pub issuer: String,
    /// serial number, hex
    pub serial: String,
    /// the key's URI (no secrets)
    pub key_uri: String,
    /// where on the token: the slot (PIV) or the token and key id (PKCS#11)
    pub slot: Option<String>,
    /// the key's object label (PKCS#11 `object=`)
    pub object: Option<String>,
    /// when the CA was marked compromised (Unix seconds)
    pub compromised_at: Option<i64>,
}

/// One token's part of the inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInventory {
    /// the token's serial, as recorded when its keys were made or taken in
    pub serial: String,
    /// the certificates whose key is on it
    pub certificates: Vec<InventoryCertificate>,
    /// keys on it that no certificate uses (a request's key, a key left behind)
    pub unused_keys: Vec<String>,
}

/// What happened to one issuing CA's CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrlOutcome {
    /// renewed, with this cRLNumber, in the transaction of the revocations
    Renewed(u64),
    /// the revocations are recorded but the CA's key could not sign (why): its CRL is as it
    /// was until it is renewed (`crl renew CA` once its token is back)
    NotRenewed(String),
    /// nothing written for this CA: its key, not on the lost token, could not be reached
    /// (why); run `token lost` again when it can
    Failed(String),
    /// nothing new to list (every certificate was revoked already)
    Unchanged,
    /// `dry-run`: would be renewed
    Planned,
}

/// One issuing CA's part of `token lost`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaRevocations {
    /// the CA's name
    pub ca: String,
    /// revoked now (`dry-run`: would be)
    pub revoked: Vec<String>,
    /// revoked already (before, or meanwhile): left as they were
    pub skipped: Vec<String>,
    /// its CRL
    pub crl: CrlOutcome,
}

/// A CA whose own key is on the lost token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompromisedCa {
    /// its name
    pub name: String,
    /// marked by this run (false: marked before; `dry-run`: would be when true)
    pub newly: bool,
}

/// What `token lost` did (or, with `dry-run`, would do).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenLossReport {
    /// the token
    pub serial: String,
    /// the CRLReason given to the revocations
    pub reason: RevocationReason,
    /// nothing was changed
    pub dry_run: bool,
    /// the CAs marked compromised
    pub compromised: Vec<CompromisedCa>,
    /// per issuing CA, in the order done
    pub cas: Vec<CaRevocations>,
    /// certificates with their key on the token that no CA here issued (self-signed or
    /// imported): not revocable here
    pub not_revocable: Vec<String>,
}

impl TokenLossReport {
    /// Whether an issuing CA could not be done (its key unreachable): the run is incomplete.
    pub fn incomplete(&self) -> bool {
        self.cas
            .iter()
            .any(|c| matches!(c.crl, CrlOutcome::Failed(_)))
    }
}

/// The plan read from the store.
struct Plan {
    /// CAs whose key is on the token: (id, name, marked already)
    compromised: Vec<(i64, String, bool)>,
    /// per issuing CA id: the certificates on the token it issued (id, name, revoked already)
    by_ca: BTreeMap<i64, Vec<(i64, String, bool)>>,
    names: HashMap<i64, String>,
    not_revocable: Vec<String>,
}

impl Manager {
    /// `token inventory [SERIAL]`: per token serial, the certificates whose key is on it.
    /// Reads the store only; no token is opened.
    pub fn token_inventory(&self, serial: Option<&str>) -> Result<Vec<TokenInventory>> {
        let txn = self.store.begin(TxnMode::Read)?;
        let keys = txn.token_keys(serial)?;
        if keys.is_empty() {
            return match serial {
                Some(s) => Err(ManagerError::not_found(ObjectKind::Token, s)),
                None => Ok(Vec::new()),
            };
        }
        let entries: HashMap<String, view::Entry> = view::collect(txn.as_ref())?
            .into_iter()
            .filter(|e| !e.template)
            .map(|e| (e.name.clone(), e))
            .collect();
        let compromised: HashMap<i64, i64> = txn.compromised()?.into_iter().collect();
        let certs = txn.certificates()?;
        let mut out: BTreeMap<String, TokenInventory> = BTreeMap::new();
        let mut used: HashSet<&str> = HashSet::new();
        let by_id: HashMap<&str, &KeyRecord> = keys.iter().map(|k| (k.id.as_str(), k)).collect();
        // in the store's order of certificates (as `print` lists them)
        for c in &certs {
            let Some(key) = c.cert.key_id.as_deref().and_then(|k| by_id.get(k)) else {
                continue;
            };
            let Some(e) = entries.get(&c.cert.name) else {
                continue;
            };
            used.insert(key.id.as_str());
            let issuer = match e.text("ca") {
                Some(ca) if !ca.is_empty() => ca,
                _ => e.text("issuer").unwrap_or_default(),
            };
            let (slot, object) = key_place(key);
            token_of(&mut out, key)
                .certificates
                .push(InventoryCertificate {
                    name: c.cert.name.clone(),
                    flags: e.flags,
                    issuer: issuer.to_owned(),
                    serial: e.text("serial-number").unwrap_or_default().to_owned(),
                    key_uri: key.uri.clone(),
                    slot,
                    object,
                    compromised_at: compromised.get(&c.id).copied(),
                });
        }
        for key in keys.iter().filter(|k| !used.contains(k.id.as_str())) {
            token_of(&mut out, key).unused_keys.push(key.uri.clone());
        }
        Ok(out.into_values().collect())
    }

    /// `token lost SERIAL [reason=] [dry-run]`: see the module's documentation for how it
    /// writes.
    pub fn token_lost(
        &self,
        serial: &str,
        reason: RevocationReason,
        dry_run: bool,
    ) -> Result<TokenLossReport> {
        let plan = self.plan_token_loss(serial)?;
        let mut report = TokenLossReport {
            serial: serial.to_owned(),
            reason,
            dry_run,
            compromised: plan
                .compromised
                .iter()
                .map(|(_, name, marked)| CompromisedCa {
                    name: name.clone(),
                    newly: !marked,
                })
                .collect(),
            cas: Vec::new(),
            not_revocable: plan.not_revocable.clone(),
        };
        let name_of = |id: i64| plan.names.get(&id).cloned().unwrap_or_default();
        if dry_run {
            for (ca_id, certs) in &plan.by_ca {
                let (skipped, revoked): (Vec<_>, Vec<_>) = certs.iter().partition(|c| c.2);
                report.cas.push(CaRevocations {
                    ca: name_of(*ca_id),
                    crl: if revoked.is_empty() {
                        CrlOutcome::Unchanged
                    } else {
                        CrlOutcome::Planned
                    },
                    revoked: revoked.into_iter().map(|c| c.1.clone()).collect(),
                    skipped: skipped.into_iter().map(|c| c.1.clone()).collect(),
                });
            }
            return Ok(report);
        }
        // 2. The marks, first and together: issuance stops before anything else is done.
        let mut marked: Vec<i64> = plan.compromised.iter().map(|c| c.0).collect();
        marked.sort_unstable();
        if !marked.is_empty() {
            self.write(|txn| {
                let now = unix_now();
                for id in &marked {
                    txn.lock(Lock::Ca(*id))?;
                    txn.mark_compromised(*id, now)?;
                }
                Ok(())
            })?;
        }
        // 3. One transaction per issuing CA.
        for (ca_id, certs) in &plan.by_ca {
            let pending: Vec<&(i64, String, bool)> = certs.iter().filter(|c| !c.2).collect();
            let mut done = CaRevocations {
                ca: name_of(*ca_id),
                revoked: Vec::new(),
                skipped: certs.iter().filter(|c| c.2).map(|c| c.1.clone()).collect(),
                crl: CrlOutcome::Unchanged,
            };
            if pending.is_empty() {
                report.cas.push(done);
                continue;
            }
            let on_lost_token = marked.contains(ca_id);
            let signer = self.crl_signer_of(*ca_id).map(|(_, s)| s);
            let outcome = match signer {
                Ok(s) => match self.revoke_for_loss(*ca_id, &pending, reason, Some(&s)) {
                    Err(e) if on_lost_token && is_key_error(&e) => {
                        // the token went while signing: the rows alone, in a new transaction
                        self.revoke_for_loss(*ca_id, &pending, reason, None)
                            .map(|(r, s, _)| (r, s, CrlOutcome::NotRenewed(e.to_string())))
                    }
                    other => other,
                },
                Err(e) if on_lost_token => self
                    .revoke_for_loss(*ca_id, &pending, reason, None)
                    .map(|(r, s, _)| (r, s, CrlOutcome::NotRenewed(e.to_string()))),
                Err(e) => Ok((Vec::new(), Vec::new(), CrlOutcome::Failed(e.to_string()))),
            };
            let (revoked, skipped, crl) = outcome?;
            done.revoked = revoked;
            done.skipped.extend(skipped);
            done.crl = crl;
            report.cas.push(done);
        }
        Ok(report)
    }

    /// Reads what `token lost` would do (no token touched).
    fn plan_token_loss(&self, serial: &str) -> Result<Plan> {
        let txn = self.store.begin(TxnMode::Read)?;
        let keys = txn.token_keys(Some(serial))?;
        if keys.is_empty() {
            return Err(ManagerError::not_found(ObjectKind::Token, serial));
        }
        let key_ids: HashSet<&str> = keys.iter().map(|k| k.id.as_str()).collect();
        let certs = txn.certificates()?;
        let names: HashMap<i64, String> =
            certs.iter().map(|c| (c.id, c.cert.name.clone())).collect();
        let mut plan = Plan {
            compromised: Vec::new(),
            by_ca: BTreeMap::new(),
            names,
            not_revocable: Vec::new(),
        };
        for c in &certs {
            if !c
                .cert
                .key_id
                .as_deref()
                .is_some_and(|k| key_ids.contains(k))
            {
                continue;
            }
            if x509::inspect_certificate_cached(&c.cert.der)?.is_ca {
                let marked = txn.compromised_at(c.id)?.is_some();
                plan.compromised.push((c.id, c.cert.name.clone(), marked));
            }
            match c.cert.issuer_id {
                Some(ca) => plan.by_ca.entry(ca).or_default().push((
                    c.id,
                    c.cert.name.clone(),
                    c.revoked_at.is_some(),
                )),
                None => plan.not_revocable.push(c.cert.name.clone()),
            }
        }
        Ok(plan)
    }

    /// One issuing CA's transaction: its lock, the revocations not made meanwhile, and (with
    /// its signer) its next CRL. Returns (revoked, skipped, CRL outcome).
    fn revoke_for_loss(
        &self,
        ca_id: i64,
        certs: &[&(i64, String, bool)],
        reason: RevocationReason,
        signer: Option<&CrlSigner>,
    ) -> Result<(Vec<String>, Vec<String>, CrlOutcome)> {
        self.write(|txn| {
            txn.lock(Lock::Ca(ca_id))?;
            let now = unix_now();
            let (mut revoked, mut skipped, mut entries) = (Vec::new(), Vec::new(), Vec::new());
            for (id, name, _) in certs {
                let Some(c) = txn.certificate_by_id(*id)? else {
                    continue; // removed meanwhile
                };
                if c.revoked_at.is_some() || c.cert.issuer_id != Some(ca_id) {
                    skipped.push(name.clone());
                    continue;
                }
                let serial = hex::decode(&c.cert.serial).map_err(|_| {
                    crate::error::StoreError::Corrupt(format!("serial of \"{name}\" is not hex"))
                })?;
                let serial = x509crl::strip_zeros(&serial).to_vec();
                let entry = x509crl::encode_entry(&serial, at(now), Some(reason))?;
                txn.insert_revocation(&RevocationRecord {
                    ca_id,
                    certificate_id: c.id,
                    serial,
                    revoked_at: now,
                    reason: Some(reason)
                        .filter(|r| *r != RevocationReason::Unspecified)
                        .map(RevocationReason::code),
                    not_after: c.cert.not_after,
                    entry: entry.clone(),
                })?;
                entries.push(entry);
                revoked.push(name.clone());
            }
            let crl = match signer {
                _ if entries.is_empty() => CrlOutcome::Unchanged,
                Some(s) => {
                    let ca = txn.certificate_by_id(ca_id)?.ok_or_else(|| {
                        ManagerError::not_found(ObjectKind::Ca, ca_id.to_string())
                    })?;
                    CrlOutcome::Renewed(self.write_crl(txn, &ca, s, Some(&entries))?)
                }
                // the caller words why
                None => CrlOutcome::NotRenewed(String::new()),
            };
            Ok((revoked, skipped, crl))
        })
    }
}

/// The inventory entry of a key's token, made on first use.
fn token_of<'a>(
    out: &'a mut BTreeMap<String, TokenInventory>,
    key: &KeyRecord,
) -> &'a mut TokenInventory {
    let serial = key.token_serial.clone().unwrap_or_default();
    out.entry(serial.clone()).or_insert_with(|| TokenInventory {
        serial,
        certificates: Vec::new(),
        unused_keys: Vec::new(),
    })
}

/// Where on its token a key is: its slot (or token and id) and its object label.
fn key_place(key: &KeyRecord) -> (Option<String>, Option<String>) {
    let uri = key.uri.parse::<KeyUri>().ok();
    let object = uri
        .as_ref()
        .and_then(|u| u.path_str("object"))
        .map(str::to_owned);
    let slot = key.slot.clone().or_else(|| {
        uri.as_ref()
            .and_then(|u| u.path_str("slot-id"))
            .map(str::to_owned)
    });
    (slot, object)
}

/// A failure of the key or its token (absent, removed, PIN), as opposed to the store's.
fn is_key_error(e: &ManagerError) -> bool {
    matches!(
        e,
        ManagerError::Key(_) | ManagerError::X509(X509Error::Key(_))
    )
}

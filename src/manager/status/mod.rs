//! What the status page (`serve`'s `/` and `/status.json`) shows: the CA tree with each
//! certificate's flags, what expires within 7/30/90 days, the tokens and cards with their
//! presence and PIN state, the CRLs and their freshness, the SCEP servers with their pending
//! requests and the SCEP clients with their status. One read transaction (on `serve`'s read
//! connection), bounded lists ("and N more"), and nothing secret: no PIN, passphrase, OTP,
//! challenge, key material, nor the paths of token profiles. Tokens are looked at without a
//! login, so the page never spends a PIN try; what cannot be known without one is "unknown".

mod tokens;
mod tree;

use std::collections::{HashMap, HashSet};

use serde::{Serialize, Serializer};

use self::tokens::{kind_word, token_rows, TokenKey};
use self::tree::{build_tree, expiry, is_ca, Cert, FlagReader};
use super::crl::unix_now;
use super::scep::ScepRequestStatus;
use super::view::Flags;
use super::{Manager, Result};
use crate::keys::{KeyUri, Scheme};
use crate::store::TxnMode;

const DAY: i64 = 86_400;

/// At most this many CAs in the tree (all levels).
pub const MAX_CAS: usize = 200;
/// At most this many end-entity certificates under one CA, and under "no local issuer".
pub const MAX_LEAVES_PER_CA: usize = 12;
/// At most this many end-entity certificates in the whole tree.
pub const MAX_LEAVES: usize = 600;
/// At most this many marks per expiry band.
pub const MAX_MARKS_PER_BAND: usize = 150;
/// At most this many rows of tokens, CRLs, SCEP servers, SCEP clients.
pub const MAX_ROWS: usize = 100;

/// Unix seconds written as RFC 3339 (UTC).
fn rfc3339<S: Serializer>(secs: &i64, s: S) -> std::result::Result<S::Ok, S::Error> {
    match chrono::DateTime::from_timestamp(*secs, 0) {
        Some(t) => s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        None => s.serialize_none(),
    }
}

fn rfc3339_opt<S: Serializer>(secs: &Option<i64>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match secs {
        Some(v) => rfc3339(v, s),
        None => s.serialize_none(),
    }
}

fn flags_str<S: Serializer>(f: &Flags, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(f)
}

/// Everything the status page shows, as of `generated`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct StatusReport {
    /// when the report was made (the manager's clock)
    #[serde(serialize_with = "rfc3339")]
    pub generated: i64,
    /// how many of each
    pub counts: Counts,
    /// the local CA tree, from its roots
    pub ca_tree: Vec<CaNode>,
    /// CAs left out of the tree for its cap
    pub more_cas: usize,
    /// end-entity certificates whose issuer is not here (imported, self-signed)
    pub unrooted: Vec<CertNode>,
    /// and how many more of those
    pub more_unrooted: usize,
    /// what expires when
    pub expiry: Expiry,
    /// tokens and cards
    pub tokens: Vec<TokenStatus>,
    /// CRLs: the local CAs' own and the downloaded ones
    pub crls: Vec<CrlStatus>,
    /// and how many more
    pub more_crls: usize,
    /// SCEP servers
    pub scep_servers: Vec<ScepServerStatus>,
    /// SCEP clients (and RA certificates kept by enrolment)
    pub scep_clients: Vec<ScepClientRow>,
}

/// How many certificates, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Counts {
    /// every certificate
    pub certificates: usize,
    /// with flag A
    pub authorities: usize,
    /// with flag R
    pub revoked: usize,
    /// with flag E
    pub expired: usize,
    /// templates not yet signed
    pub templates: usize,
}

/// One certificate in the tree or the timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CertNode {
    /// its name
    pub name: String,
    /// RouterOS flags, e.g. `KLAT`
    #[serde(serialize_with = "flags_str")]
    pub flags: Flags,
    /// notAfter
    #[serde(serialize_with = "rfc3339")]
    pub not_after: i64,
    /// seconds until notAfter (negative once expired)
    pub expires_in: i64,
}

/// A CA with what it issued.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CaNode {
    /// the CA itself
    #[serde(flatten)]
    pub ca: CertNode,
    /// the CAs it issued
    pub sub_cas: Vec<CaNode>,
    /// the end-entity certificates it issued: live ones soonest-expiring first, then expired,
    /// then revoked
    pub issued: Vec<CertNode>,
    /// how many more it issued than `issued` shows
    pub more_issued: usize,
}

/// A certificate drawn on the timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Mark {
    /// its name
    pub name: String,
    /// notAfter
    #[serde(serialize_with = "rfc3339")]
    pub not_after: i64,
    /// seconds until notAfter (negative once expired)
    pub expires_in: i64,
    /// a CA
    pub authority: bool,
}

/// One band of the timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Band {
    /// `expired`, `7`, `30`, `90`
    pub id: &'static str,
    /// from this many days left (inclusive; the expired band has none)
    pub from_days: Option<i64>,
    /// to this many days left (exclusive)
    pub to_days: i64,
    /// how many certificates are in it
    pub total: usize,
    /// the certificates drawn (soonest first; the expired band: most recently expired first)
    pub marks: Vec<Mark>,
}

/// What expires when; revoked certificates are left out (they are not renewed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Expiry {
    /// expired, 0–7, 7–30 and 30–90 days
    pub bands: Vec<Band>,
    /// valid for 90 days or more
    pub later: usize,
    /// revoked, not drawn
    pub revoked: usize,
}

/// Whether a token or card is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Presence {
    /// found now
    Present,
    /// its profile finds no such token or card
    Absent,
    /// not known (no profile looks for it, or the module or PC/SC cannot be used)
    Unknown,
}

impl Presence {
    /// The word the page shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Present => "present",
            Presence::Absent => "absent",
            Presence::Unknown => "unknown",
        }
    }
}

/// A token's PIN, as it reports it without a login.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PinWord {
    /// no failed try reported (PKCS#11), or at least two tries left / verified (PIV)
    Ok,
    /// failed tries reported (PKCS#11 count-low or final-try), or one try left (PIV)
    Low,
    /// blocked
    Locked,
    /// not known without a login, or the token is not there
    Unknown,
}

impl PinWord {
    /// The word the page shows.
    pub fn as_str(self) -> &'static str {
        match self {
            PinWord::Ok => "ok",
            PinWord::Low => "low",
            PinWord::Locked => "locked",
            PinWord::Unknown => "unknown",
        }
    }
}

/// A token or card.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct TokenStatus {
    /// the profiles that find it (empty: only a key's URI names it)
    pub profiles: Vec<String>,
    /// `pkcs11` or `piv`
    pub kind: &'static str,
    /// the token label (PKCS#11) or reader name (PIV), if known
    pub label: String,
    /// its serial, if known
    pub serial: String,
    /// there or not
    pub presence: Presence,
    /// its PIN
    pub pin: PinWord,
    /// a short note (model, tries left, why unknown); no paths
    pub detail: String,
    /// the CAs whose keys are on it
    pub cas: Vec<String>,
}

/// Where a CRL stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Freshness {
    /// more than a quarter of its lifetime left
    Fresh,
    /// less than a quarter of its lifetime left
    Due,
    /// past its nextUpdate
    Expired,
    /// it has no nextUpdate
    Open,
}

impl Freshness {
    /// The word the page shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Freshness::Fresh => "fresh",
            Freshness::Due => "due",
            Freshness::Expired => "expired",
            Freshness::Open => "no-next-update",
        }
    }

    fn of(this_update: i64, next_update: Option<i64>, now: i64) -> Self {
        match next_update {
            None => Freshness::Open,
            Some(n) if n < now => Freshness::Expired,
            Some(n) if (n - now).saturating_mul(4) < (n - this_update) => Freshness::Due,
            Some(_) => Freshness::Fresh,
        }
    }
}

/// A CRL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CrlStatus {
    /// the CA (own CRL) or the certificate whose key signed it (downloaded)
    pub ca: String,
    /// `local`, or the URL it was downloaded from
    pub source: String,
    /// cRLNumber
    pub number: Option<u64>,
    /// thisUpdate
    #[serde(serialize_with = "rfc3339")]
    pub this_update: i64,
    /// nextUpdate
    #[serde(serialize_with = "rfc3339_opt")]
    pub next_update: Option<i64>,
    /// how many certificates it lists
    pub entries: i64,
    /// fresh, due, expired
    pub freshness: Freshness,
}

/// A SCEP server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ScepServerStatus {
    /// its path
    pub path: String,
    /// `ca-cert`
    pub ca: String,
    /// `ra-cert`
    pub ra: Option<String>,
    /// forwards to an upstream server (RA mode)
    pub forwarding: bool,
    /// flag X
    pub disabled: bool,
    /// requests waiting for the operator (within the request lifetime)
    pub pending: i64,
}

/// A SCEP client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ScepClientRow {
    /// its name
    pub name: String,
    /// `client` or `ra`
    pub kind: &'static str,
    /// the server, without user info or query
    pub server: String,
    /// `status`
    pub status: &'static str,
    /// why (the client's own words, never a secret)
    pub detail: String,
    /// notAfter of the certificate held, once issued
    #[serde(serialize_with = "rfc3339_opt")]
    pub expires: Option<i64>,
    /// when the timers look at it next
    #[serde(serialize_with = "rfc3339")]
    pub next_attempt: i64,
}

/// A URL for display: scheme, host and path; user info and query dropped.
fn display_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if scheme.is_empty() {
        format!("{host}{path}")
    } else {
        format!("{scheme}://{host}{path}")
    }
}

impl Manager {
    /// The status page's report (see the module comment). Reads through `serve`'s read
    /// connection when there is one; looks at tokens without logging in.
    pub fn status(&self) -> Result<StatusReport> {
        let store = self.reads.as_deref().unwrap_or(&*self.store);
        let now = unix_now() + self.clock_offset;
        let txn = store.begin(TxnMode::Read)?;
        let records = txn.certificates()?;
        let certs: Vec<Cert<'_>> = records
            .iter()
            .map(|rec| Cert {
                rec,
                authority: is_ca(&rec.cert.der),
            })
            .collect();
        let with_crl: HashSet<i64> = txn.certificates_with_crl()?.into_iter().collect();
        let pending_keys: HashSet<i64> = txn
            .encrypted_keys()?
            .into_iter()
            .filter(|k| k.key_id.is_none())
            .filter_map(|k| k.certificate_id.or(k.hint_certificate_id))
            .collect();
        let flags = FlagReader {
            txn: txn.as_ref(),
            now,
            with_crl: &with_crl,
            pending_keys: &pending_keys,
        };
        let counts = Counts {
            certificates: certs.len(),
            authorities: certs.iter().filter(|c| c.authority).count(),
            revoked: certs.iter().filter(|c| c.rec.revoked_at.is_some()).count(),
            expired: certs.iter().filter(|c| c.rec.cert.not_after < now).count(),
            templates: txn.templates()?.len(),
        };
        let tree = build_tree(&certs, &flags)?;
        let names: HashMap<i64, &str> = records
            .iter()
            .map(|r| (r.id, r.cert.name.as_str()))
            .collect();
        let name_of = |id: i64| names.get(&id).map_or(String::new(), |n| (*n).to_owned());
        let mut report = StatusReport {
            generated: now,
            counts,
            ca_tree: tree.roots,
            more_cas: tree.more_cas,
            unrooted: tree.unrooted,
            more_unrooted: tree.more_unrooted,
            expiry: expiry(&certs, now),
            tokens: Vec::new(),
            crls: Vec::new(),
            more_crls: 0,
            scep_servers: Vec::new(),
            scep_clients: Vec::new(),
        };
        let mut crls = Vec::new();
        for c in txn.crl_summaries()? {
            crls.push(CrlStatus {
                ca: name_of(c.ca_id),
                source: "local".into(),
                number: Some(c.number),
                this_update: c.this_update,
                next_update: Some(c.next_update),
                entries: c.entries,
                freshness: Freshness::of(c.this_update, Some(c.next_update), now),
            });
        }
        for d in txn.downloaded_crls()? {
            crls.push(CrlStatus {
                ca: name_of(d.certificate_id),
                source: display_url(&d.url),
                number: d.number,
                this_update: d.this_update,
                next_update: d.next_update,
                entries: d.entries,
                freshness: Freshness::of(d.this_update, d.next_update, now),
            });
        }
        report.more_crls = crls.len().saturating_sub(MAX_ROWS);
        crls.truncate(MAX_ROWS);
        report.crls = crls;

        let now_us = now.saturating_mul(1_000_000);
        for s in txn.scep_servers()?.iter().take(MAX_ROWS) {
            let since = now_us.saturating_sub(s.server.request_lifetime.saturating_mul(1_000_000));
            report.scep_servers.push(ScepServerStatus {
                path: s.server.path.clone(),
                ca: name_of(s.server.ca_id),
                ra: s.server.ra_id.map(name_of),
                forwarding: s.server.upstream_id.is_some(),
                disabled: s.server.disabled,
                pending: txn.count_scep_requests(s.id, ScepRequestStatus::Pending.word(), since)?,
            });
        }
        for c in txn.scep_clients()?.iter().take(MAX_ROWS) {
            let v = super::scep_client::client_view(txn.as_ref(), c)?;
            report.scep_clients.push(ScepClientRow {
                name: v.name,
                kind: v.kind.as_str(),
                server: display_url(&v.url),
                status: v.status.as_str(),
                detail: v.detail,
                expires: v.expires,
                next_attempt: v.next_attempt,
            });
        }

        // The CAs' keys on tokens, to place them on the token rows.
        let mut token_keys = Vec::new();
        for c in certs.iter().filter(|c| c.authority).take(MAX_CAS) {
            let Some(id) = &c.rec.cert.key_id else {
                continue;
            };
            let Some(key) = txn.key(id)? else { continue };
            let Ok(uri) = key.uri.parse::<KeyUri>() else {
                continue;
            };
            if uri.scheme() == Scheme::Soft {
                continue;
            }
            token_keys.push(TokenKey {
                ca: c.rec.cert.name.clone(),
                kind: kind_word(uri.scheme()),
                label: uri.path_str("token").unwrap_or_default().to_owned(),
                serial: key.token_serial.clone().unwrap_or_default(),
                profile: uri.query_str("profile").map(str::to_owned),
            });
        }
        drop(txn);
        report.tokens = match self.keys.token_listing(None, false) {
            Ok(listing) => token_rows(&listing, token_keys),
            Err(e) => {
                tracing::debug!("status: the token profiles cannot be listed: {e}");
                let mut rows = token_rows(&[], token_keys);
                rows.insert(
                    0,
                    TokenStatus {
                        profiles: Vec::new(),
                        kind: "pkcs11",
                        label: String::new(),
                        serial: String::new(),
                        presence: Presence::Unknown,
                        pin: PinWord::Unknown,
                        detail: "the token profiles cannot be read (see token print)".into(),
                        cas: Vec::new(),
                    },
                );
                rows
            }
        };
        Ok(report)
    }
}

#[cfg(test)]
mod tests;

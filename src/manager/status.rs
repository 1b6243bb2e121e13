//! What the status page (`serve`'s `/` and `/status.json`) shows: the CA tree with each
//! certificate's flags, what expires within 7/30/90 days, the tokens and cards with their
//! presence and PIN state, the CRLs and their freshness, the SCEP servers with their pending
//! requests and the SCEP clients with their status. One read transaction (on `serve`'s read
//! connection), bounded lists ("and N more"), and nothing secret: no PIN, passphrase, OTP,
//! challenge, key material, nor the paths of token profiles. Tokens are looked at without a
//! login, so the page never spends a PIN try; what cannot be known without one is "unknown".

use std::collections::{HashMap, HashSet};

use serde::{Serialize, Serializer};

use super::crl::unix_now;
use super::scep::ScepRequestStatus;
use super::view::Flags;
use super::{Manager, Result};
use crate::keys::{KeyUri, ProfileListing, Scheme};
use crate::store::{CertificateRecord, Transaction, TxnMode};

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

/// One certificate as the report needs it.
struct Cert<'a> {
    rec: &'a CertificateRecord,
    authority: bool,
}

/// Whether a certificate is a CA (basicConstraints cA), read without the rest of
/// `inspect_certificate`: the report reads every certificate of the store.
fn is_ca(der: &[u8]) -> bool {
    use const_oid::AssociatedOid;
    use der::Decode;
    use x509_cert::ext::pkix::BasicConstraints;
    use x509_cert::Certificate;
    let Ok(cert) = Certificate::from_der(der) else {
        return false;
    };
    cert.tbs_certificate()
        .extensions()
        .into_iter()
        .flatten()
        .find(|e| e.extn_id == BasicConstraints::OID)
        .and_then(|e| BasicConstraints::from_der(e.extn_value.as_bytes()).ok())
        .is_some_and(|b| b.ca)
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

/// Flags as `print` shows them; keys are read only for the certificates the page lists.
struct FlagReader<'a> {
    txn: &'a dyn Transaction,
    now: i64,
    with_crl: &'a HashSet<i64>,
    pending_keys: &'a HashSet<i64>,
}

impl FlagReader<'_> {
    fn node(&self, c: &Cert<'_>) -> Result<CertNode> {
        let rec = c.rec;
        let key = match &rec.cert.key_id {
            Some(id) => self.txn.key(id)?,
            None => None,
        };
        let flags = Flags {
            private_key: key.is_some(),
            dsa: false,
            crl: self.with_crl.contains(&rec.id),
            smart_card_key: key.as_ref().is_some_and(|k| !k.uri.starts_with("soft:")),
            authority: c.authority,
            issued: rec.cert.issuer_id.is_some(),
            revoked: rec.revoked_at.is_some(),
            expired: rec.cert.not_after < self.now,
            trusted: rec.cert.trusted,
            encrypted_private_key: key.is_none() && self.pending_keys.contains(&rec.id),
        };
        Ok(CertNode {
            name: rec.cert.name.clone(),
            flags,
            not_after: rec.cert.not_after,
            expires_in: rec.cert.not_after - self.now,
        })
    }
}

struct Tree {
    roots: Vec<CaNode>,
    more_cas: usize,
    unrooted: Vec<CertNode>,
    more_unrooted: usize,
}

/// Live certificates soonest-expiring first, then expired (most recent first), then revoked.
fn leaf_order(c: &Cert<'_>, now: i64) -> (u8, i64) {
    let r = &c.rec;
    if r.revoked_at.is_some() {
        (2, -r.cert.not_after)
    } else if r.cert.not_after < now {
        (1, -r.cert.not_after)
    } else {
        (0, r.cert.not_after)
    }
}

fn build_tree(certs: &[Cert<'_>], flags: &FlagReader<'_>) -> Result<Tree> {
    let index: HashMap<i64, usize> = certs
        .iter()
        .enumerate()
        .map(|(i, c)| (c.rec.id, i))
        .collect();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    let mut unrooted = Vec::new();
    for (i, c) in certs.iter().enumerate() {
        match c.rec.cert.issuer_id.and_then(|id| index.get(&id)) {
            Some(&p) if p != i => children.entry(p).or_default().push(i),
            _ if c.authority => roots.push(i),
            _ => unrooted.push(i),
        }
    }
    let mut budget = Budget {
        cas: MAX_CAS,
        leaves: MAX_LEAVES,
        more_cas: 0,
    };
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for r in roots {
        if let Some(node) = ca_node(certs, &children, r, flags, &mut budget, &mut seen, 0)? {
            out.push(node);
        }
    }
    unrooted.sort_by_key(|&i| leaf_order(&certs[i], flags.now));
    let more_unrooted = unrooted.len().saturating_sub(MAX_LEAVES_PER_CA);
    let unrooted = unrooted
        .iter()
        .take(MAX_LEAVES_PER_CA)
        .map(|&i| flags.node(&certs[i]))
        .collect::<Result<_>>()?;
    Ok(Tree {
        roots: out,
        more_cas: budget.more_cas,
        unrooted,
        more_unrooted,
    })
}

struct Budget {
    cas: usize,
    leaves: usize,
    more_cas: usize,
}

/// How deep the tree is drawn: deeper CAs are counted, not shown.
const MAX_DEPTH: usize = 8;

fn ca_node(
    certs: &[Cert<'_>],
    children: &HashMap<usize, Vec<usize>>,
    i: usize,
    flags: &FlagReader<'_>,
    budget: &mut Budget,
    seen: &mut HashSet<usize>,
    depth: usize,
) -> Result<Option<CaNode>> {
    // A CA shown once, even if the store's issuer links loop.
    if !seen.insert(i) {
        return Ok(None);
    }
    if budget.cas == 0 || depth > MAX_DEPTH {
        budget.more_cas += 1;
        return Ok(None);
    }
    budget.cas -= 1;
    let kids = children.get(&i).map(Vec::as_slice).unwrap_or(&[]);
    let mut sub_cas = Vec::new();
    let mut leaves: Vec<usize> = Vec::new();
    for &k in kids {
        if certs[k].authority {
            if let Some(n) = ca_node(certs, children, k, flags, budget, seen, depth + 1)? {
                sub_cas.push(n);
            }
        } else {
            leaves.push(k);
        }
    }
    leaves.sort_by_key(|&k| leaf_order(&certs[k], flags.now));
    let shown = leaves.len().min(MAX_LEAVES_PER_CA).min(budget.leaves);
    budget.leaves -= shown;
    let issued = leaves[..shown]
        .iter()
        .map(|&k| flags.node(&certs[k]))
        .collect::<Result<_>>()?;
    Ok(Some(CaNode {
        ca: flags.node(&certs[i])?,
        sub_cas,
        issued,
        more_issued: leaves.len() - shown,
    }))
}

fn expiry(certs: &[Cert<'_>], now: i64) -> Expiry {
    let spec: [(&'static str, Option<i64>, i64); 4] = [
        ("expired", None, 0),
        ("7", Some(0), 7),
        ("30", Some(7), 30),
        ("90", Some(30), 90),
    ];
    let mut all: Vec<Vec<Mark>> = vec![Vec::new(); spec.len()];
    let mut later = 0;
    let mut revoked = 0;
    for c in certs {
        let r = &c.rec;
        if r.revoked_at.is_some() {
            revoked += 1;
            continue;
        }
        let left = r.cert.not_after - now;
        let band = if left < 0 {
            0
        } else if left < 7 * DAY {
            1
        } else if left < 30 * DAY {
            2
        } else if left < 90 * DAY {
            3
        } else {
            later += 1;
            continue;
        };
        all[band].push(Mark {
            name: r.cert.name.clone(),
            not_after: r.cert.not_after,
            expires_in: left,
            authority: c.authority,
        });
    }
    let bands = spec
        .iter()
        .zip(all)
        .map(|(&(id, from_days, to_days), mut marks)| {
            if from_days.is_none() {
                marks.sort_by_key(|m| std::cmp::Reverse(m.not_after));
            } else {
                marks.sort_by_key(|m| m.not_after);
            }
            let total = marks.len();
            marks.truncate(MAX_MARKS_PER_BAND);
            Band {
                id,
                from_days,
                to_days,
                total,
                marks,
            }
        })
        .collect();
    Expiry {
        bands,
        later,
        revoked,
    }
}

fn kind_word(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::Piv => "piv",
        _ => "pkcs11",
    }
}

/// A CA's key on a token, as the store records it.
struct TokenKey {
    ca: String,
    kind: &'static str,
    label: String,
    serial: String,
    profile: Option<String>,
}

/// The token rows: what the profiles find (present, or absent where a profile finds
/// nothing), then the tokens only a CA's key names; the CAs placed on their token.
fn token_rows(listing: &[ProfileListing], keys: Vec<TokenKey>) -> Vec<TokenStatus> {
    let mut rows: Vec<TokenStatus> = Vec::new();
    let add = |rows: &mut Vec<TokenStatus>, row: TokenStatus| {
        let same = rows.iter_mut().find(|r| {
            r.kind == row.kind
                && r.presence == Presence::Present
                && row.presence == Presence::Present
                && !r.serial.is_empty()
                && r.serial == row.serial
        });
        match same {
            Some(r) => r.profiles.extend(row.profiles),
            None => rows.push(row),
        }
    };
    for p in listing {
        let wanted: Option<KeyUri> = p.location.parse().ok();
        let want = |key: &str| {
            wanted
                .as_ref()
                .and_then(|u| u.path_str(key))
                .unwrap_or_default()
                .to_owned()
        };
        let row = |label: String, serial: String, presence, pin, detail: String| TokenStatus {
            profiles: vec![p.name.clone()],
            kind: p.kind,
            label,
            serial,
            presence,
            pin,
            detail,
            cas: Vec::new(),
        };
        if p.kind == "piv" {
            for r in piv_rows(p, &want("serial")) {
                add(&mut rows, r);
            }
            continue;
        }
        match &p.tokens {
            Ok(ts) if ts.is_empty() => add(
                &mut rows,
                row(
                    want("token"),
                    want("serial"),
                    Presence::Absent,
                    PinWord::Unknown,
                    "no matching token present".into(),
                ),
            ),
            Ok(ts) => {
                for t in ts {
                    let s = t.pin_state;
                    let pin = if s.locked {
                        PinWord::Locked
                    } else if s.final_try || s.count_low {
                        PinWord::Low
                    } else {
                        PinWord::Ok
                    };
                    add(
                        &mut rows,
                        row(
                            t.label.clone(),
                            t.serial.clone(),
                            Presence::Present,
                            pin,
                            format!("{} ({}): {}", t.model, t.manufacturer, s),
                        ),
                    );
                }
            }
            Err(e) => {
                tracing::debug!("status: profile {}: {e}", p.name);
                add(
                    &mut rows,
                    row(
                        want("token"),
                        want("serial"),
                        Presence::Unknown,
                        PinWord::Unknown,
                        "the PKCS#11 module cannot be used (see token print)".into(),
                    ),
                );
            }
        }
    }
    for k in keys {
        let found = rows.iter().position(|r| {
            r.kind == k.kind
                && ((!k.serial.is_empty() && r.serial == k.serial)
                    || (!k.label.is_empty() && r.label == k.label)
                    || k.profile.as_ref().is_some_and(|p| r.profiles.contains(p)))
        });
        match found {
            Some(i) => rows[i].cas.push(k.ca),
            None if rows.len() < MAX_ROWS => rows.push(TokenStatus {
                profiles: k.profile.into_iter().collect(),
                kind: k.kind,
                label: k.label,
                serial: k.serial,
                presence: Presence::Unknown,
                pin: PinWord::Unknown,
                detail: "no token profile looks for it".into(),
                cas: vec![k.ca],
            }),
            None => {}
        }
    }
    rows.truncate(MAX_ROWS);
    rows
}

#[cfg(feature = "pcsc")]
fn piv_rows(p: &ProfileListing, serial: &str) -> Vec<TokenStatus> {
    use crate::keys::piv::CardPin;
    let base = |label: String, serial: String, presence, pin, detail: String| TokenStatus {
        profiles: vec![p.name.clone()],
        kind: "piv",
        label,
        serial,
        presence,
        pin,
        detail,
        cas: Vec::new(),
    };
    let readers = match &p.readers {
        Some(Ok(rs)) => rs,
        Some(Err(e)) => {
            tracing::debug!("status: profile {}: {e}", p.name);
            return vec![base(
                String::new(),
                serial.to_owned(),
                Presence::Unknown,
                PinWord::Unknown,
                "PC/SC cannot be used (is pcscd running?)".into(),
            )];
        }
        None => return Vec::new(),
    };
    let mut out = Vec::new();
    for r in readers {
        match &r.card {
            Ok(c) if serial.is_empty() || c.serial.to_string() == serial => {
                let pin = match c.pin_tries {
                    CardPin::Verified => PinWord::Ok,
                    CardPin::TriesLeft(0) => PinWord::Locked,
                    CardPin::TriesLeft(1) => PinWord::Low,
                    CardPin::TriesLeft(_) => PinWord::Ok,
                    CardPin::Unknown => PinWord::Unknown,
                };
                out.push(base(
                    r.name.clone(),
                    c.serial.to_string(),
                    Presence::Present,
                    pin,
                    format!("PIV firmware {}: {}", c.version, c.pin),
                ));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!("status: reader {:?}: {e}", r.name);
            }
        }
    }
    if out.is_empty() {
        out.push(base(
            String::new(),
            serial.to_owned(),
            Presence::Absent,
            PinWord::Unknown,
            "no matching card in any reader".into(),
        ));
    }
    out
}

#[cfg(not(feature = "pcsc"))]
fn piv_rows(p: &ProfileListing, serial: &str) -> Vec<TokenStatus> {
    vec![TokenStatus {
        profiles: vec![p.name.clone()],
        kind: "piv",
        label: String::new(),
        serial: serial.to_owned(),
        presence: Presence::Unknown,
        pin: PinWord::Unknown,
        detail: "this certman was built without PC/SC support".into(),
        cas: Vec::new(),
    }]
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::tests::{make_ca, manager_with_token, token_location};
    use super::*;
    use crate::manager::{KeyLocation, SignRequest};
    use crate::store::NewCertificate;

    fn leaf(m: &Manager, name: &str, days: u32) {
        m.add_template(
            name,
            None,
            &[
                ("common-name".to_owned(), name.to_owned()),
                ("key-type".to_owned(), "ed25519".to_owned()),
                ("days-valid".to_owned(), days.to_string()),
            ],
        )
        .unwrap();
        m.sign(&SignRequest {
            template: name.into(),
            ca: Some("ca".into()),
            ..Default::default()
        })
        .unwrap();
    }

    fn band<'a>(r: &'a StatusReport, id: &str) -> &'a Band {
        r.expiry.bands.iter().find(|b| b.id == id).unwrap()
    }

    fn names(b: &Band) -> Vec<&str> {
        b.marks.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn certificates_land_in_their_band_and_under_their_ca_with_print_s_flags() {
        let (_dir, m, _token) = manager_with_token();
        make_ca(&m, token_location());
        leaf(&m, "five", 5);
        leaf(&m, "twenty", 20);
        leaf(&m, "sixty", 60);
        leaf(&m, "gone", 20);
        m.revoke(&["gone".to_owned()], None).unwrap();
        let r = m.status().unwrap();

        assert_eq!(names(band(&r, "7")), ["five"]);
        assert_eq!(names(band(&r, "30")), ["twenty"]);
        assert_eq!(names(band(&r, "90")), ["sixty"]);
        assert!(band(&r, "expired").marks.is_empty());
        let five = &band(&r, "7").marks[0];
        assert!(
            five.expires_in > 4 * DAY && five.expires_in <= 5 * DAY,
            "{five:?}"
        );
        // the CA (a year) is later; the revoked one is not drawn
        assert_eq!((r.expiry.later, r.expiry.revoked), (1, 1));
        assert_eq!(
            (
                r.counts.certificates,
                r.counts.authorities,
                r.counts.revoked
            ),
            (5, 1, 1)
        );

        assert_eq!(r.ca_tree.len(), 1);
        let ca = &r.ca_tree[0];
        assert_eq!(ca.ca.name, "ca");
        let issued: Vec<&str> = ca.issued.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            issued,
            ["five", "twenty", "sixty", "gone"],
            "live soonest first"
        );
        assert_eq!(ca.more_issued, 0);
        // the flags are print's
        let txn = m.store.begin(TxnMode::Read).unwrap();
        let printed: HashMap<String, Flags> = crate::manager::view::collect(txn.as_ref())
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.flags))
            .collect();
        for n in std::iter::once(&ca.ca).chain(&ca.issued) {
            assert_eq!(n.flags, printed[&n.name], "{}", n.name);
        }
        assert_eq!(ca.ca.flags.to_string(), "KCAT");
        assert_eq!(ca.issued[3].flags.to_string(), "KIR");
        drop(txn);

        // The CA's key is on a token no profile looks for: its presence is not known.
        assert_eq!(r.tokens.len(), 1, "{:?}", r.tokens);
        let t = &r.tokens[0];
        assert_eq!((t.kind, t.label.as_str()), ("pkcs11", "fake"));
        assert_eq!(t.serial, "FAKE0001");
        assert_eq!((t.presence, t.pin), (Presence::Unknown, PinWord::Unknown));
        assert_eq!(t.cas, ["ca"]);

        assert_eq!(r.crls.len(), 1);
        assert_eq!((r.crls[0].ca.as_str(), r.crls[0].number), ("ca", Some(2)));
        assert_eq!(r.crls[0].freshness, Freshness::Fresh);
        // 1.6 days on, the two-day CRL is due; six days on, it and "five" have expired
        let later = m.with_clock_offset(DAY * 8 / 5);
        assert_eq!(later.status().unwrap().crls[0].freshness, Freshness::Due);
        let later = later.with_clock_offset(6 * DAY);
        let r6 = later.status().unwrap();
        assert_eq!(r6.crls[0].freshness, Freshness::Expired);
        assert!(band(&r6, "7").marks.is_empty());
        assert_eq!(names(band(&r6, "30")), ["twenty"]);
        assert_eq!(names(band(&r6, "expired")), ["five"]);
    }

    #[test]
    fn the_json_has_rfc3339_times_and_numbers_as_numbers() {
        let (_dir, m, _token) = manager_with_token();
        make_ca(&m, KeyLocation::Software);
        leaf(&m, "five", 5);
        m.renew_crl("ca").unwrap();
        let v = serde_json::to_value(m.status().unwrap()).unwrap();
        let generated = v["generated"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(generated).is_ok(),
            "{generated}"
        );
        let b7 = &v["expiry"]["bands"][1];
        assert_eq!(b7["id"], "7");
        assert_eq!(b7["total"], 1);
        assert!(b7["marks"][0]["expires-in"].is_i64());
        assert!(chrono::DateTime::parse_from_rfc3339(
            b7["marks"][0]["not-after"].as_str().unwrap()
        )
        .is_ok());
        assert_eq!(v["ca-tree"][0]["name"], "ca");
        assert_eq!(v["ca-tree"][0]["flags"], "KAT");
        assert_eq!(v["ca-tree"][0]["issued"][0]["name"], "five");
        assert_eq!(v["crls"][0]["freshness"], "fresh");
        assert!(v["crls"][0]["number"].is_u64());
    }

    #[test]
    fn urls_are_shown_without_user_info_or_query() {
        assert_eq!(
            display_url("http://user:secret@ca.example:8080/scep/x?challenge=1#f"),
            "http://ca.example:8080/scep/x"
        );
        assert_eq!(display_url("http://ca.example"), "http://ca.example");
        assert_eq!(display_url("ca.example/crl"), "ca.example/crl");
    }

    /// 10,000 certificates under one CA (stored directly: only the records matter here).
    #[test]
    fn ten_thousand_certificates_are_capped_and_quick() {
        let (_dir, m, _token) = manager_with_token();
        make_ca(&m, KeyLocation::Software);
        leaf(&m, "model", 5);
        let model = m.certificate_record("model").unwrap();
        let ca = m.certificate_record("ca").unwrap();
        let now = unix_now();
        m.write(|txn| {
            for i in 0..10_000i64 {
                txn.insert_certificate(&NewCertificate {
                    name: format!("bulk-{i}"),
                    serial: format!("{i:040x}"),
                    fingerprint: format!("{i:064x}"),
                    issuer_id: Some(ca.id),
                    key_id: None,
                    not_after: now + (i % 120 - 10) * DAY + 3600,
                    ..model.cert.clone()
                })?;
            }
            Ok(())
        })
        .unwrap();
        let started = Instant::now();
        let r = m.status().unwrap();
        let took = started.elapsed();
        eprintln!("status report of 10,002 certificates: {took:?}");
        assert_eq!(r.counts.certificates, 10_002);
        let tree = &r.ca_tree[0];
        assert_eq!(tree.issued.len(), MAX_LEAVES_PER_CA);
        assert_eq!(tree.issued.len() + tree.more_issued, 10_001);
        // 10 in each day from 0 to 6 (plus the model), capped at the band's limit
        let b7 = band(&r, "7");
        assert_eq!(b7.total, 7 * 84 + 1);
        assert_eq!(b7.marks.len(), MAX_MARKS_PER_BAND);
        assert!(b7
            .marks
            .windows(2)
            .all(|w| w[0].not_after <= w[1].not_after));
        assert_eq!(band(&r, "expired").total, 10 * 84);
        assert!(took < std::time::Duration::from_secs(1), "{took:?}");
    }
}

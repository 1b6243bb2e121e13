//! The status report's CA tree and expiry bands, from the store's certificate records.

use std::collections::{HashMap, HashSet};

use super::{
    Band, CaNode, CertNode, Expiry, Mark, DAY, MAX_CAS, MAX_LEAVES, MAX_LEAVES_PER_CA,
    MAX_MARKS_PER_BAND,
};
use crate::manager::view::Flags;
use crate::manager::Result;
use crate::store::{CertificateRecord, Transaction};

/// One certificate as the report needs it.
pub(super) struct Cert<'a> {
    pub(super) rec: &'a CertificateRecord,
    pub(super) authority: bool,
}

/// Whether a certificate is a CA (basicConstraints cA), read without the rest of
/// `inspect_certificate`: the report reads every certificate of the store.
pub(super) fn is_ca(der: &[u8]) -> bool {
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

/// Flags as `print` shows them; keys are read only for the certificates the page lists.
pub(super) struct FlagReader<'a> {
    pub(super) txn: &'a dyn Transaction,
    pub(super) now: i64,
    pub(super) with_crl: &'a HashSet<i64>,
    pub(super) pending_keys: &'a HashSet<i64>,
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

pub(super) struct Tree {
    pub(super) roots: Vec<CaNode>,
    pub(super) more_cas: usize,
    pub(super) unrooted: Vec<CertNode>,
    pub(super) more_unrooted: usize,
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

pub(super) fn build_tree(certs: &[Cert<'_>], flags: &FlagReader<'_>) -> Result<Tree> {
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

pub(super) fn expiry(certs: &[Cert<'_>], now: i64) -> Expiry {
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

//! What `print` shows: one [`Entry`] per template or certificate, with RouterOS flags and
//! properties. Formatting (tables, local time, JSON) is the CLI's business.

use std::collections::HashMap;
use std::time::SystemTime;

use super::template::TemplateProperties;
use crate::error::Result;
use crate::store::{
    CertificateRecord, RevocationRecord, ScepClientRecord, TemplateRecord, Transaction,
};
use crate::x509;

/// RouterOS certificate flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// K — private key present
    pub private_key: bool,
    /// D — DSA key (never made here)
    pub dsa: bool,
    /// L — a CRL is held for this CA
    pub crl: bool,
    /// C — the key is on a smart card / token
    pub smart_card_key: bool,
    /// A — certificate authority
    pub authority: bool,
    /// I — issued by a local CA
    pub issued: bool,
    /// R — revoked
    pub revoked: bool,
    /// E — expired
    pub expired: bool,
    /// T — trusted
    pub trusted: bool,
    /// Q (RouterOS v2.8) — a private key imported still encrypted, waiting for `decrypt`
    pub encrypted_private_key: bool,
}

impl Flags {
    /// The flag letters in RouterOS order, one column each (`' '` where unset).
    pub fn columns(&self) -> [char; 9] {
        let f = |b: bool, c: char| if b { c } else { ' ' };
        [
            if self.private_key {
                'K'
            } else {
                f(self.encrypted_private_key, 'Q')
            },
            f(self.dsa, 'D'),
            f(self.crl, 'L'),
            f(self.smart_card_key, 'C'),
            f(self.authority, 'A'),
            f(self.issued, 'I'),
            f(self.revoked, 'R'),
            f(self.expired, 'E'),
            f(self.trusted, 'T'),
        ]
    }
}

impl std::fmt::Display for Flags {
    /// The set flags, e.g. `KAT`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.columns().into_iter().filter(|c| *c != ' ') {
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// The legend printed above tables.
pub const FLAGS_LEGEND: &str = "Flags: K - private-key, D - dsa, L - crl, C - smart-card-key, A - authority, I - issued, R - revoked, E - expired, T - trusted, Q - encrypted-private-key";

/// A property value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// text
    Text(String),
    /// yes/no
    Bool(bool),
    /// a number
    Int(i64),
    /// a point in time (printed in the local time zone)
    Time(SystemTime),
}

/// One line of `print`.
#[derive(Clone, Debug)]
pub struct Entry {
    /// `name`
    pub name: String,
    /// a template (not yet signed)
    pub template: bool,
    /// flags (all unset for templates)
    pub flags: Flags,
    /// RouterOS properties in print order
    pub properties: Vec<(&'static str, Value)>,
}

impl Entry {
    /// A property by name.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.properties
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// A text property.
    pub fn text(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Value::Text(s)) => Some(s),
            _ => None,
        }
    }
}

/// RouterOS duration text, e.g. `51w6d23h59m12s`.
pub fn routeros_duration(mut secs: u64) -> String {
    let mut out = String::new();
    for (unit, len) in [('w', 604_800), ('d', 86_400), ('h', 3_600), ('m', 60)] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    if secs > 0 || out.is_empty() {
        out.push_str(&format!("{secs}s"));
    }
    out
}

/// Builds every entry: certificates and templates in creation order.
pub fn collect(txn: &dyn Transaction) -> Result<Vec<Entry>> {
    let certs = txn.certificates()?;
    let names: HashMap<i64, String> = certs.iter().map(|c| (c.id, c.cert.name.clone())).collect();
    let now = SystemTime::now();
    let mut rows: Vec<(i64, Entry)> = Vec::with_capacity(certs.len());
    let pending = pending_encrypted(txn)?;
    let with_crl: std::collections::HashSet<i64> =
        txn.certificates_with_crl()?.into_iter().collect();
    let clients = scep_clients(txn)?;
    // one query for every key's URI, rather than one per certificate (with its sealed blob)
    let key_uris: HashMap<String, String> = txn.key_uris()?.into_iter().collect();
    let mut revocations: HashMap<i64, RevocationRecord> = HashMap::new();
    for c in certs.iter().filter(|c| c.revoked_at.is_some()) {
        if let Some(r) = txn.revocation(c.id)? {
            revocations.insert(c.id, r);
        }
    }
    let compromised: HashMap<i64, i64> = txn.compromised()?.into_iter().collect();
    // what is left needs nothing from the store: parsed and built on every core
    let entries = build_all(&certs, &|c: &CertificateRecord| {
        let info = x509::inspect_stored_certificate(&c.cert.der)?;
        let key_uri = c.cert.key_id.as_ref().and_then(|id| key_uris.get(id));
        certificate_entry(
            (c, info),
            c.cert.issuer_id.and_then(|i| names.get(&i).cloned()),
            now,
            (pending.contains(&c.id), with_crl.contains(&c.id)),
            clients.get(&c.id),
            key_uri.map(String::as_str),
            (
                revocations.get(&c.id).cloned(),
                compromised.get(&c.id).copied(),
            ),
        )
    });
    for (c, e) in certs.iter().zip(entries) {
        rows.push((c.created_at, e?));
    }
    for t in txn.templates()? {
        rows.push((t.created_at, template_entry(&t)?));
    }
    rows.sort_by_key(|(created, _)| *created);
    Ok(rows.into_iter().map(|(_, e)| e).collect())
}

/// The entry of one name, without reading the rest of the store.
pub fn lookup(txn: &dyn Transaction, name: &str) -> Result<Option<Entry>> {
    if let Some(c) = txn.certificate(name)? {
        let issuer = match c.cert.issuer_id {
            Some(id) => txn.certificate_by_id(id)?.map(|r| r.cert.name),
            None => None,
        };
        let pending = pending_encrypted(txn)?.contains(&c.id);
        let has_crl = txn.certificates_with_crl()?.contains(&c.id);
        let clients = scep_clients(txn)?;
        let key_uri = match &c.cert.key_id {
            Some(id) => txn.key(id)?.map(|k| k.uri),
            None => None,
        };
        let revocation = match c.revoked_at {
            Some(_) => txn.revocation(c.id)?,
            None => None,
        };
        let compromised = txn.compromised_at(c.id)?;
        return certificate_entry(
            (&c, x509::inspect_stored_certificate(&c.cert.der)?),
            issuer,
            SystemTime::now(),
            (pending, has_crl),
            clients.get(&c.id),
            key_uri.as_deref(),
            (revocation, compromised),
        )
        .map(Some);
    }
    match txn.template(name)? {
        Some(t) => template_entry(&t).map(Some),
        None => Ok(None),
    }
}

/// The SCEP clients, by the certificate entry each keeps.
fn scep_clients(txn: &dyn Transaction) -> Result<HashMap<i64, ScepClientRecord>> {
    Ok(txn
        .scep_clients()?
        .into_iter()
        .filter_map(|c| c.state.certificate_id.map(|id| (id, c)))
        .collect())
}

/// Certificates with a key imported still encrypted and not decrypted (flag Q).
fn pending_encrypted(txn: &dyn Transaction) -> Result<std::collections::HashSet<i64>> {
    Ok(txn
        .encrypted_keys()?
        .into_iter()
        .filter(|k| k.key_id.is_none())
        .filter_map(|k| k.certificate_id.or(k.hint_certificate_id))
        .collect())
}

fn template_entry(t: &TemplateRecord) -> Result<Entry> {
    let props = TemplateProperties::from_json(&t.properties)?;
    let properties = props
        .pairs()
        .into_iter()
        .map(|(k, v)| {
            let v = match k {
                "trusted" => Value::Bool(v == "yes"),
                "days-valid" => Value::Int(v.parse().unwrap_or(0)),
                _ => Value::Text(v),
            };
            (k, v)
        })
        .collect();
    Ok(Entry {
        name: t.name.clone(),
        template: true,
        flags: Flags::default(),
        properties,
    })
}

/// Parsing the certificates and building their entries is most of listing a large store
/// (10,000: ~60 ms of one core), and needs nothing but what was read: it is shared out over
/// the cores when there are many.
fn build_all<T: Send>(
    certs: &[CertificateRecord],
    build: &(dyn Fn(&CertificateRecord) -> Result<T> + Sync),
) -> Vec<Result<T>> {
    const PER_THREAD_MIN: usize = 512;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(certs.len() / PER_THREAD_MIN)
        .max(1);
    if threads == 1 {
        return certs.iter().map(build).collect();
    }
    let chunk = certs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = certs
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(build).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

fn certificate_entry(
    (c, info): (&CertificateRecord, x509::CertificateInfo),
    issuer_name: Option<String>,
    now: SystemTime,
    (encrypted_key_pending, has_crl): (bool, bool),
    scep: Option<&ScepClientRecord>,
    key_uri: Option<&str>,
    (revocation, compromised_at): (Option<RevocationRecord>, Option<i64>),
) -> Result<Entry> {
    let key = key_uri;
    let smart_card_uri = key
        .filter(|uri| !uri.starts_with("soft:"))
        .map(str::to_owned);
    let expired = info.not_after < now;
    let flags = Flags {
        private_key: key.is_some(),
        dsa: false,
        crl: has_crl,
        smart_card_key: smart_card_uri.is_some(),
        authority: info.is_ca,
        issued: c.cert.issuer_id.is_some(),
        revoked: c.revoked_at.is_some(),
        expired,
        trusted: c.cert.trusted,
        encrypted_private_key: encrypted_key_pending && key.is_none(),
    };
    let props = TemplateProperties::from_json(&c.cert.properties).unwrap_or_default();
    let mut p: Vec<(&'static str, Value)> = Vec::new();
    let text = |s: &str| Value::Text(s.to_owned());
    let opt = |s: &Option<String>| Value::Text(s.clone().unwrap_or_default());
    p.push(("common-name", opt(&info.common_name)));
    p.push(("country", opt(&info.subject_fields.country)));
    p.push(("state", opt(&info.subject_fields.state)));
    p.push(("locality", opt(&info.subject_fields.locality)));
    p.push(("organization", opt(&info.subject_fields.organization)));
    p.push(("unit", opt(&info.subject_fields.unit)));
    p.push(("subject-alt-name", text(&info.subject_alt_name)));
    p.push(("subject", text(&info.subject)));
    p.push(("issuer", text(&info.issuer)));
    p.push(("serial-number", text(&info.serial_hex)));
    p.push(("fingerprint", text(&info.fingerprint)));
    if let Some(client) = scep {
        // RouterOS shows the SCEP client's state on the certificate it keeps
        p.push(("scep-url", text(&client.client.url)));
        p.push(("status", text(&client.state.status)));
        p.push(("req-fingerprint", text(&client.state.req_fingerprint)));
        p.push(("ca-fingerprint", text(&client.state.ca_fingerprint)));
    }
    p.push(("invalid-before", Value::Time(info.not_before)));
    p.push(("invalid-after", Value::Time(info.not_after)));
    let left = info
        .not_after
        .duration_since(now)
        .map(|d| routeros_duration(d.as_secs()))
        .unwrap_or_else(|_| "expired".into());
    p.push(("expires-after", Value::Text(left)));
    p.push((
        "key-type",
        text(info.key_algorithm.map_or("unknown", |a| a.key_type())),
    ));
    p.push((
        "key-size",
        Value::Text(info.key_algorithm.map(|a| a.key_size()).unwrap_or_default()),
    ));
    p.push((
        "days-valid",
        Value::Int(
            info.not_after
                .duration_since(info.not_before)
                .map(|d| (d.as_secs() / 86_400) as i64)
                .unwrap_or(0),
        ),
    ));
    p.push(("key-usage", text(&info.key_usage.to_string())));
    p.push((
        "digest-algorithm",
        Value::Text(props.digest_algorithm.clone().unwrap_or_default()),
    ));
    p.push(("ca", Value::Text(issuer_name.unwrap_or_default())));
    p.push((
        "ca-crl-host",
        Value::Text(c.cert.ca_crl_host.clone().unwrap_or_default()),
    ));
    p.push((
        "crl-distribution-point",
        Value::Text(info.crl_distribution_points.join(",")),
    ));
    p.push(("trusted", Value::Bool(flags.trusted)));
    p.push(("private-key", Value::Bool(flags.private_key)));
    p.push((
        "smart-card-key",
        Value::Text(smart_card_uri.unwrap_or_default()),
    ));
    p.push(("authority", Value::Bool(flags.authority)));
    p.push(("issued", Value::Bool(flags.issued)));
    p.push(("revoked", Value::Bool(flags.revoked)));
    if let Some(r) = revocation {
        p.push((
            "revoked-at",
            Value::Time(
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(r.revoked_at.max(0) as u64),
            ),
        ));
        p.push((
            "revocation-reason",
            Value::Text(
                r.reason
                    .and_then(crate::x509::crl::RevocationReason::from_code)
                    .map_or("unspecified".into(), |x| x.name().to_owned()),
            ),
        ));
    }
    // a CA whose key was on a token reported lost (`token lost`): it issues nothing more
    p.push(("compromised", Value::Bool(compromised_at.is_some())));
    if let Some(at) = compromised_at {
        p.push((
            "compromised-at",
            Value::Time(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(at.max(0) as u64)),
        ));
    }
    p.push(("expired", Value::Bool(flags.expired)));
    p.push(("crl", Value::Bool(flags.crl)));
    p.push(("dsa", Value::Bool(flags.dsa)));
    Ok(Entry {
        name: c.cert.name.clone(),
        template: false,
        flags,
        properties: p,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_render_in_routeros_order() {
        let f = Flags {
            private_key: true,
            authority: true,
            trusted: true,
            ..Default::default()
        };
        assert_eq!(f.to_string(), "KAT");
        assert_eq!(f.columns().iter().collect::<String>(), "K   A   T");
        let all = Flags {
            private_key: true,
            dsa: true,
            crl: true,
            smart_card_key: true,
            authority: true,
            issued: true,
            revoked: true,
            expired: true,
            trusted: true,
            encrypted_private_key: false,
        };
        assert_eq!(all.to_string(), "KDLCAIRET");
        let q = Flags {
            encrypted_private_key: true,
            ..Default::default()
        };
        assert_eq!(q.to_string(), "Q");
        assert_eq!(Flags::default().to_string(), "");
    }

    #[test]
    fn durations() {
        assert_eq!(routeros_duration(0), "0s");
        assert_eq!(routeros_duration(59), "59s");
        assert_eq!(routeros_duration(3600), "1h");
        assert_eq!(routeros_duration(365 * 86_400), "52w1d");
        assert_eq!(routeros_duration(604_800 + 86_400 + 3_661), "1w1d1h1m1s");
    }
}

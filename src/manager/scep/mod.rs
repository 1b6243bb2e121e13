//! RouterOS `/certificate scep-server`: server instances (this file), one-time passwords
//! (`otp`), the request queue (`queue`) and what a SCEP server asks of the CA when a client
//! enrols (`enrol`). The wire protocol is `protocols::scep`; this room holds the rules.

mod enrol;
mod forward;
mod otp;
mod queue;
#[cfg(test)]
mod tests;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use self::enrol::{EnrolOutcome, ScepEndpoint, ScepEnrolment, ScepResponder, ScepUpstream};
pub use self::otp::{GeneratedOtp, OtpView};
pub use self::queue::{ScepRequestStatus, ScepRequestView};

use super::Manager;
use crate::error::{ManagerError, ObjectKind, Refusal, Result, StoreError};
use crate::keys::KeyAlgorithm;
use crate::store::{
    CertificateRecord, Lock, NewScepServer, ScepServerRecord, Transaction, TxnMode,
};
use crate::x509::{self, KeyUsageName};

/// Validity of issued certificates when `days-valid` is not given: RouterOS's server issued
/// 1-day certificates (the seed's `issued_2`), which its clients renew; `days-valid=` sets more.
pub const DEFAULT_SCEP_DAYS_VALID: u32 = 1;
/// `request-lifetime` when not given, and its least value (RouterOS: `5m..`).
pub const MIN_REQUEST_LIFETIME: Duration = Duration::from_secs(300);
/// The longest `request-lifetime`.
const MAX_REQUEST_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// The least RSA key size that decrypts SCEP requests (AWS-LC's decryption refuses smaller
/// keys, and RFC 8894 clients encrypt their content key to it).
const MIN_DECRYPT_BITS: u32 = 2048;
/// `days-valid` bounds.
const MAX_DAYS_VALID: u32 = 36_500;

/// `scep-server add` / `set`: what is given (`None` = not given; for `set`, unchanged).
#[derive(Clone, Debug, Default)]
pub struct ScepServerChanges {
    /// `ca-cert=NAME`
    pub ca_cert: Option<String>,
    /// `path=/scep/…`
    pub path: Option<String>,
    /// `days-valid=N`
    pub days_valid: Option<u32>,
    /// `next-ca-cert=NAME|none`
    pub next_ca_cert: Option<Option<String>>,
    /// `ra-cert=NAME|none`
    pub ra_cert: Option<Option<String>>,
    /// `request-lifetime=5m..`
    pub request_lifetime: Option<Duration>,
    /// `disabled=yes|no`
    pub disabled: Option<bool>,
}

/// A SCEP server as `scep-server print` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScepServerView {
    /// the `#` of print
    pub number: usize,
    /// `path`
    pub path: String,
    /// `ca-cert`
    pub ca_cert: String,
    /// `ra-cert`
    pub ra_cert: Option<String>,
    /// `next-ca-cert`
    pub next_ca_cert: Option<String>,
    /// `days-valid`
    pub days_valid: u32,
    /// `request-lifetime`
    pub request_lifetime: Duration,
    /// flag X
    pub disabled: bool,
    /// a note for the operator (e.g. a CA certificate whose usages some clients refuse)
    pub warnings: Vec<String>,
}

/// `request-lifetime` and other RouterOS durations: `90s`, `5m`, `1h30m`, `2d`, `00:05:00`, or
/// plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || {
        ManagerError::InvalidValue(format!(
            "'{s}' is not a duration (e.g. 5m, 1h30m, 2d, 00:05:00)"
        ))
    };
    if s.contains(':') {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 3 {
            return Err(bad());
        }
        let mut secs = 0u64;
        for p in parts {
            let n: u64 = p.parse().map_err(|_| bad())?;
            secs = secs
                .checked_mul(60)
                .and_then(|v| v.checked_add(n))
                .ok_or_else(bad)?;
        }
        return Ok(Duration::from_secs(secs));
    }
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    let (mut secs, mut digits) = (0u64, String::new());
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'w' => 7 * 86_400,
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        secs = n
            .checked_mul(unit)
            .and_then(|v| secs.checked_add(v))
            .ok_or_else(bad)?;
    }
    if !digits.is_empty() || s.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(secs))
}

/// A duration as RouterOS prints it: `5m`, `1h30m`, `2d`.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, len) in [
        ("w", 7 * 86_400),
        ("d", 86_400),
        ("h", 3_600),
        ("m", 60),
        ("s", 1),
    ] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    out
}

/// A path a server may answer at: `/scep/` and at least one more safe segment.
fn validate_path(path: &str) -> Result<()> {
    let bad = |why: &str| ManagerError::InvalidValue(format!("path={path}: {why}"));
    let rest = path
        .strip_prefix("/scep/")
        .ok_or_else(|| bad("must start with /scep/"))?;
    if rest.is_empty() || path.len() > 128 {
        return Err(bad(
            "give a name after /scep/ (at most 128 characters in all)",
        ));
    }
    if rest
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(bad("empty, '.' or '..' segments are not allowed"));
    }
    if !rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b))
    {
        return Err(bad("use letters, digits and - . _ ~ /"));
    }
    Ok(())
}

/// Whether one path is the other or a segment-wise prefix of it (a request under the longer
/// one would be ambiguous).
fn paths_overlap(a: &str, b: &str) -> bool {
    let under = |long: &str, short: &str| {
        long == short || long.strip_prefix(short).is_some_and(|r| r.starts_with('/'))
    };
    under(a, b) || under(b, a)
}

pub(crate) fn micros_to_time(us: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(us.max(0) as u64)
}

impl Manager {
    /// `scep-server print`.
    pub fn scep_servers(&self) -> Result<Vec<ScepServerView>> {
        let txn = self.store.begin(TxnMode::Read)?;
        let servers = txn.scep_servers()?;
        servers
            .iter()
            .enumerate()
            .map(|(i, s)| server_view(txn.as_ref(), i, s))
            .collect()
    }

    /// `scep-server add ca-cert=NAME path=/scep/NAME …`.
    pub fn scep_server_add(&self, changes: &ScepServerChanges) -> Result<ScepServerView> {
        let ca = changes
            .ca_cert
            .clone()
            .ok_or_else(|| ManagerError::InvalidValue("ca-cert= is required".into()))?;
        let path = changes
            .path
            .clone()
            .ok_or_else(|| ManagerError::InvalidValue("path= is required (/scep/NAME)".into()))?;
        let id = self.write(|txn| {
            let server = resolve_server(
                txn,
                None,
                &ScepServerChanges {
                    ca_cert: Some(ca.clone()),
                    path: Some(path.clone()),
                    ..changes.clone()
                },
            )?;
            txn.insert_scep_server(&server).map_err(path_taken)
        })?;
        self.scep_server_view(id)
    }

    /// `scep-server set REF …`: the server as changed.
    pub fn scep_server_set(
        &self,
        reference: &str,
        changes: &ScepServerChanges,
    ) -> Result<ScepServerView> {
        let id = self.write(|txn| {
            let current = lock_server(txn, reference)?;
            let server = resolve_server(txn, Some(&current), changes)?;
            txn.update_scep_server(current.id, &server)
                .map_err(path_taken)?;
            Ok(current.id)
        })?;
        self.scep_server_view(id)
    }

    /// `scep-server enable|disable REF…`: the servers as changed, in the order named.
    pub fn scep_server_enable(
        &self,
        references: &[String],
        enable: bool,
    ) -> Result<Vec<ScepServerView>> {
        let ids = self.write(|txn| {
            let mut ids = Vec::new();
            for r in references {
                let current = lock_server(txn, r)?;
                let mut server = current.server.clone();
                server.disabled = !enable;
                txn.update_scep_server(current.id, &server)?;
                ids.push(current.id);
            }
            Ok(ids)
        })?;
        ids.into_iter()
            .map(|id| self.scep_server_view(id))
            .collect()
    }

    /// `scep-server remove REF…`: the server goes with its OTPs and requests; certificates it
    /// issued stay (they are the CA's).
    pub fn scep_server_remove(&self, references: &[String]) -> Result<Vec<String>> {
        self.write(|txn| {
            let mut removed = Vec::new();
            let found: Vec<ScepServerRecord> = references
                .iter()
                .map(|r| find_server(txn, r))
                .collect::<Result<_>>()?;
            for s in found {
                if txn.delete_scep_server(s.id)? {
                    removed.push(s.server.path);
                }
            }
            Ok(removed)
        })
    }

    fn scep_server_view(&self, id: i64) -> Result<ScepServerView> {
        let txn = self.store.begin(TxnMode::Read)?;
        let servers = txn.scep_servers()?;
        let (i, s) = servers
            .iter()
            .enumerate()
            .find(|(_, s)| s.id == id)
            .ok_or_else(|| ManagerError::not_found(ObjectKind::ScepServer, id.to_string()))?;
        server_view(txn.as_ref(), i, s)
    }
}

pub(crate) fn path_taken(e: StoreError) -> ManagerError {
    match e {
        StoreError::Duplicate(_) => ManagerError::refused(
            Refusal::NameInUse,
            "another SCEP server has this path",
            Some("give another path=/scep/NAME"),
        ),
        e => e.into(),
    }
}

/// A server by the `#` of `scep-server print`, its path, or its path without `/scep/`.
pub(super) fn find_server(txn: &dyn Transaction, reference: &str) -> Result<ScepServerRecord> {
    let servers = txn.scep_servers()?;
    if let Ok(n) = reference.parse::<usize>() {
        if let Some(s) = servers.get(n) {
            return Ok(s.clone());
        }
    }
    servers
        .into_iter()
        .find(|s| s.server.path == reference || s.server.path == format!("/scep/{reference}"))
        .ok_or_else(|| ManagerError::not_found(ObjectKind::ScepServer, reference))
}

/// [`find_server`], read again under the server's lock: the settings an edit writes back
/// whole are the newest, and two edits on two nodes at once do not lose one. (Servers
/// locked in the order named; two edits naming them in other orders may deadlock, which
/// the store reports as a conflict and the write retries.)
fn lock_server(txn: &mut dyn Transaction, reference: &str) -> Result<ScepServerRecord> {
    let id = find_server(txn, reference)?.id;
    txn.lock(Lock::ScepServer(id))?;
    txn.scep_servers()?
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| StoreError::Conflict.into()) // removed meanwhile: the retry says so
}

fn certificate_named(
    txn: &dyn Transaction,
    name: &str,
    kind: ObjectKind,
) -> Result<CertificateRecord> {
    txn.certificate(name)?
        .ok_or_else(|| ManagerError::not_found(kind, name))
}

/// The settings a server gets from `changes` over `current`, checked against the store.
/// A path a server may take: valid, and not overlapping another server's (`except`: the
/// server being changed). The same path as another's is refused by the store.
pub(crate) fn check_path(txn: &dyn Transaction, path: &str, except: Option<i64>) -> Result<()> {
    validate_path(path)?;
    for other in txn.scep_servers()? {
        if Some(other.id) != except
            && other.server.path != path
            && paths_overlap(&other.server.path, path)
        {
            return Err(ManagerError::refused(
                Refusal::NameInUse,
                format!(
                    "path {path} overlaps the SCEP server at {}: requests under it would be ambiguous",
                    other.server.path
                ),
                None,
            ));
        }
    }
    Ok(())
}

fn resolve_server(
    txn: &dyn Transaction,
    current: Option<&ScepServerRecord>,
    changes: &ScepServerChanges,
) -> Result<NewScepServer> {
    let cur = current.map(|c| &c.server);
    let path = match &changes.path {
        Some(p) => p.clone(),
        None => cur.map(|c| c.path.clone()).unwrap_or_default(),
    };
    check_path(txn, &path, current.map(|c| c.id))?;
    let ca = match &changes.ca_cert {
        Some(n) => certificate_named(txn, n, ObjectKind::CaCertificate)?,
        None => by_id(txn, cur.map(|c| c.ca_id))?,
    };
    let ra = match &changes.ra_cert {
        Some(Some(n)) => Some(certificate_named(txn, n, ObjectKind::Certificate)?),
        Some(None) => None,
        None => match cur.and_then(|c| c.ra_id) {
            Some(id) => Some(by_id(txn, Some(id))?),
            None => None,
        },
    };
    let next = match &changes.next_ca_cert {
        Some(Some(n)) => Some(certificate_named(txn, n, ObjectKind::CaCertificate)?),
        Some(None) => None,
        None => match cur.and_then(|c| c.next_ca_id) {
            Some(id) => Some(by_id(txn, Some(id))?),
            None => None,
        },
    };
    check_ca(txn, &ca, ra.is_some())?;
    if let Some(ra) = &ra {
        check_ra(txn, ra, &ca)?;
    }
    if let Some(next) = &next {
        let info = x509::inspect_certificate(&next.cert.der)?;
        if !info.is_ca || next.id == ca.id {
            return Err(ManagerError::InvalidValue(format!(
                "next-ca-cert={}: must be another CA certificate",
                next.cert.name
            )));
        }
    }
    let days_valid = changes
        .days_valid
        .or(cur.map(|c| c.days_valid))
        .unwrap_or(DEFAULT_SCEP_DAYS_VALID);
    if days_valid == 0 || days_valid > MAX_DAYS_VALID {
        return Err(ManagerError::InvalidValue(format!(
            "days-valid={days_valid}: must be 1-{MAX_DAYS_VALID}"
        )));
    }
    let lifetime = changes
        .request_lifetime
        .or(cur.map(|c| Duration::from_secs(c.request_lifetime as u64)))
        .unwrap_or(MIN_REQUEST_LIFETIME);
    if lifetime < MIN_REQUEST_LIFETIME || lifetime > MAX_REQUEST_LIFETIME {
        return Err(ManagerError::InvalidValue(format!(
            "request-lifetime={}: must be 5m-30d",
            format_duration(lifetime)
        )));
    }
    Ok(NewScepServer {
        path,
        ca_id: ca.id,
        ra_id: ra.map(|r| r.id),
        next_ca_id: next.map(|n| n.id),
        days_valid,
        request_lifetime: lifetime.as_secs() as i64,
        disabled: changes
            .disabled
            .or(cur.map(|c| c.disabled))
            .unwrap_or(false),
        upstream_id: cur.and_then(|c| c.upstream_id),
    })
}

fn by_id(txn: &dyn Transaction, id: Option<i64>) -> Result<CertificateRecord> {
    let id = id.ok_or_else(|| ManagerError::InvalidValue("ca-cert= is required".into()))?;
    txn.certificate_by_id(id)?
        .ok_or_else(|| ManagerError::not_found(ObjectKind::Certificate, id.to_string()))
}

/// `ca-cert`: a local CA (its key here), valid and unrevoked; without an RA its key must be
/// RSA, as SCEP clients encrypt their requests to it.
fn check_ca(txn: &dyn Transaction, ca: &CertificateRecord, has_ra: bool) -> Result<()> {
    let name = &ca.cert.name;
    let info = x509::inspect_certificate(&ca.cert.der)?;
    if !info.is_ca {
        return Err(ManagerError::refused(
            Refusal::NotACa,
            format!("\"{name}\" is not a certificate authority"),
            None,
        ));
    }
    if ca.revoked_at.is_some() {
        return Err(ManagerError::refused(
            Refusal::CaRevoked,
            format!("CA \"{name}\" is revoked"),
            None,
        ));
    }
    if info.not_after < SystemTime::now() {
        return Err(ManagerError::refused(
            Refusal::CaExpired,
            format!("CA \"{name}\" has expired"),
            None,
        ));
    }
    super::ca_key_handle(txn, ca)?;
    if !has_ra {
        let why = match info.key_algorithm {
            Some(KeyAlgorithm::Rsa { bits }) if bits >= MIN_DECRYPT_BITS => None,
            Some(KeyAlgorithm::Rsa { bits }) => Some(format!(
                "CA \"{name}\" has a {bits}-bit RSA key: SCEP clients encrypt to the CA, and \
                 certman decrypts with RSA keys of {MIN_DECRYPT_BITS} bits or more"
            )),
            _ => Some(format!(
                "CA \"{name}\" has no RSA key: SCEP clients encrypt to the CA, and only RSA decrypts"
            )),
        };
        if let Some(why) = why {
            return Err(ManagerError::refused(
                Refusal::CannotDecrypt,
                why,
                Some("give ra-cert=NAME: an RSA certificate issued by this CA decrypts and signs for it"),
            ));
        }
    }
    Ok(())
}

/// `ra-cert`: not a CA (the seed's warning), an RSA key here, issued by the server's CA, and
/// usable to sign and to decrypt.
fn check_ra(txn: &dyn Transaction, ra: &CertificateRecord, ca: &CertificateRecord) -> Result<()> {
    let name = &ra.cert.name;
    let info = x509::inspect_certificate(&ra.cert.der)?;
    let refuse = |why: String| {
        ManagerError::refused(
            Refusal::UnsuitableRa,
            format!("ra-cert={name}: {why}"),
            None,
        )
    };
    if info.is_ca {
        return Err(refuse("an RA certificate must not be a CA".into()));
    }
    if !matches!(info.key_algorithm, Some(KeyAlgorithm::Rsa { bits }) if bits >= MIN_DECRYPT_BITS) {
        return Err(refuse(format!(
            "an RA needs an RSA key of {MIN_DECRYPT_BITS} bits or more (it decrypts the clients' requests)"
        )));
    }
    if ra.cert.issuer_id != Some(ca.id) {
        return Err(refuse(format!(
            "it must be issued by the server's CA \"{}\"",
            ca.cert.name
        )));
    }
    if ra.revoked_at.is_some() || info.not_after < SystemTime::now() {
        return Err(refuse("it is revoked or expired".into()));
    }
    let ku = &info.key_usage;
    let signs_and_decrypts =
        ku.contains(KeyUsageName::DigitalSignature) && ku.contains(KeyUsageName::KeyEncipherment);
    if !ku.is_empty() && !signs_and_decrypts {
        return Err(refuse(
            "its key-usage must include digital-signature and key-encipherment".into(),
        ));
    }
    super::ca_key_handle(txn, ra).map_err(|_| refuse("its private key is not here".into()))?;
    Ok(())
}

fn server_view(
    txn: &dyn Transaction,
    number: usize,
    s: &ScepServerRecord,
) -> Result<ScepServerView> {
    let name_of = |id: Option<i64>| -> Result<Option<String>> {
        Ok(match id {
            Some(id) => txn.certificate_by_id(id)?.map(|c| c.cert.name),
            None => None,
        })
    };
    let ca = txn.certificate_by_id(s.server.ca_id)?;
    let mut warnings = Vec::new();
    for (role, id) in [("CA", Some(s.server.ca_id)), ("RA", s.server.ra_id)] {
        if let Some(rec) = match id {
            Some(id) => txn.certificate_by_id(id)?,
            None => None,
        } {
            if let Some(why) = enrol::unusable(&rec)? {
                warnings.push(format!(
                    "its {role} \"{}\" {why}: the server answers 503 until it is changed",
                    rec.cert.name
                ));
            }
        }
    }
    if let (Some(ca), None) = (&ca, s.server.ra_id) {
        let info = x509::inspect_certificate(&ca.cert.der)?;
        if !info.key_usage.is_empty() && !info.key_usage.contains(KeyUsageName::DigitalSignature) {
            warnings.push(format!(
                "CA \"{}\" signs the SCEP replies but its key-usage lacks digital-signature: \
                 OpenSSL-based clients (certmonger) refuse such replies; give ra-cert=",
                ca.cert.name
            ));
        }
    }
    Ok(ScepServerView {
        number,
        path: s.server.path.clone(),
        ca_cert: ca.map(|c| c.cert.name).unwrap_or_default(),
        ra_cert: name_of(s.server.ra_id)?,
        next_ca_cert: name_of(s.server.next_ca_id)?,
        days_valid: s.server.days_valid,
        request_lifetime: Duration::from_secs(s.server.request_lifetime.max(0) as u64),
        disabled: s.server.disabled,
        warnings,
    })
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m").unwrap().as_secs(), 300);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("2d").unwrap().as_secs(), 172_800);
        assert_eq!(parse_duration("00:05:00").unwrap().as_secs(), 300);
        assert_eq!(parse_duration("600").unwrap().as_secs(), 600);
        for bad in ["", "5x", "m", "1:2", "5m3", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
    }

    #[test]
    fn paths() {
        for ok in ["/scep/test", "/scep/a/b", "/scep/x-1.y_z~"] {
            validate_path(ok).unwrap();
        }
        for bad in [
            "/scep/",
            "/scep",
            "/other/x",
            "/scep/a//b",
            "/scep/../x",
            "/scep/a b",
            "/scep/a/",
        ] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
        assert!(paths_overlap("/scep/a", "/scep/a/b"));
        assert!(paths_overlap("/scep/a", "/scep/a"));
        assert!(!paths_overlap("/scep/a", "/scep/ab"));
    }
}

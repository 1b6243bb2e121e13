//! The CRLs of local CAs: built from the revocation rows, signed through the key provider,
//! stored, renewed (`crl renew`, the daemon's daily job) and served at their CDP paths; `crl
//! print`/`export`; RouterOS `/certificate settings`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use der::Encode;
use spki::DynSignatureAlgorithmIdentifier;

use super::{signature_scheme_for, Manager, Result, TemplateProperties};
use crate::error::{ManagerError, ObjectKind, Refusal};
use crate::keys::{KeyHandle, X509Signer};
use crate::store::{CertificateRecord, CrlRecord, Job, Lock, Transaction, TxnMode};
use crate::x509;
use crate::x509::crl::{self as x509crl, CrlSpec};

/// A local CA's current CRL, as `serve` answers it at the CA's CDP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedCrl {
    /// the CA's name
    pub ca: String,
    /// the CRL, DER
    pub der: Vec<u8>,
    /// its cRLNumber
    pub number: u64,
    /// thisUpdate, Unix seconds
    pub this_update: i64,
    /// nextUpdate, Unix seconds
    pub next_update: i64,
}

/// The outcome of renewing one CA's CRL.
#[derive(Debug)]
pub struct CrlRenewal {
    /// the CA's name
    pub ca: String,
    /// the new CRL's number, or why there is none
    pub result: Result<u64, ManagerError>,
}

/// RouterOS `/certificate settings`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// `crl-download`: fetch the CRLs of trusted certificates (hourly, over http)
    pub crl_download: bool,
    /// `crl-use`: check certificates against the stored CRLs
    pub crl_use: bool,
}

/// How long a CRL is valid: renewal runs every 24 hours (RouterOS), so a CRL stays valid for
/// a day past its planned renewal, leaving relying parties a day's slack if `serve` was down.
pub const CRL_VALIDITY: Duration = Duration::from_secs(2 * 86_400);
/// How old a CRL may get before `serve` renews it (RouterOS: every 24 hours).
pub const CRL_RENEWAL: Duration = Duration::from_secs(86_400);

/// `settings` keys.
pub const SETTING_NAMES: &[&str] = &["crl-download", "crl-use"];

/// One line of `crl print`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlListing {
    /// the CA (own CRL) or the certificate whose key signed it (downloaded)
    pub ca: String,
    /// `local`, or the URL it was downloaded from
    pub source: String,
    /// cRLNumber
    pub number: Option<u64>,
    /// thisUpdate, Unix seconds
    pub this_update: i64,
    /// nextUpdate, Unix seconds
    pub next_update: Option<i64>,
    /// how many certificates it lists
    pub entries: i64,
    /// when it was downloaded (downloaded CRLs)
    pub fetched_at: Option<i64>,
}

pub(super) fn unix_now() -> i64 {
    super::unix_secs(SystemTime::now())
}

pub(super) fn fmt_unix(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| secs.to_string())
}

pub(super) fn at(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
}

/// A CA's key as the store knows it.
pub(super) struct CrlKey {
    pub(super) ca_id: i64,
    key_id: String,
    name: String,
    handle: KeyHandle,
    digest: Option<crate::keys::HashAlgorithm>,
    info: x509::CertificateInfo,
}

/// A CA's key ready to sign CRLs.
pub(crate) struct CrlSigner {
    pub(super) ca_id: i64,
    key_id: String,
    signer: X509Signer,
    issuer: x509_cert::name::Name,
    key_identifier: Vec<u8>,
}

impl CrlSigner {
    /// Refuses when the CA or its key changed since this signer was made (another process).
    pub(super) fn check_still(&self, ca: &CertificateRecord) -> Result<()> {
        if self.ca_id != ca.id || ca.cert.key_id.as_deref() != Some(self.key_id.as_str()) {
            return Err(ManagerError::refused(
                Refusal::ChangedMeanwhile,
                format!("CA \"{}\" changed meanwhile; try again", ca.cert.name),
                None,
            ));
        }
        Ok(())
    }

    /// Signs a CRL listing `entries` (encoded revokedCertificates entries, concatenated).
    pub(super) fn sign(
        &self,
        number: u64,
        this_update: i64,
        next_update: i64,
        entries: &[&[u8]],
    ) -> Result<Vec<u8>> {
        let spec = CrlSpec {
            issuer: &self.issuer,
            key_identifier: &self.key_identifier,
            number,
            this_update: at(this_update),
            next_update: at(next_update),
        };
        Ok(x509crl::build_crl(&spec, entries, &self.signer)?)
    }
}

/// The file name under `/crl/` that a CDP URL made by [`super::crl_url`] names, decoded.
pub fn crl_file_from_url(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?;
    let path = &rest[rest.find('/')?..];
    let file = path.strip_prefix("/crl/")?;
    if file.contains('/') || !file.ends_with(".crl") {
        return None;
    }
    percent_encoding::percent_decode_str(file)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

impl Manager {
    /// What signing `ca`'s CRLs needs from the store: its key's handle (read in `txn`).
    pub(super) fn crl_key(&self, txn: &dyn Transaction, ca: &CertificateRecord) -> Result<CrlKey> {
        let name = &ca.cert.name;
        let info = x509::inspect_certificate(&ca.cert.der)?;
        if !info.is_ca {
            return Err(ManagerError::refused(
                Refusal::NotACa,
                format!("\"{name}\" is not a certificate authority, so it has no CRL"),
                None,
            ));
        }
        let (key_id, handle) = super::ca_key_handle(txn, ca)?;
        Ok(CrlKey {
            ca_id: ca.id,
            key_id,
            name: name.clone(),
            handle,
            digest: TemplateProperties::from_json(&ca.cert.properties)
                .ok()
                .and_then(|p| p.digest_algorithm)
                .and_then(|d| d.parse().ok()),
            info,
        })
    }

    /// The CA's key ready to sign CRLs. Reaching the key (token login, PIN) happens here, so
    /// callers do it before they take the store's write lock.
    pub(super) fn crl_signer(&self, key: CrlKey) -> Result<CrlSigner> {
        let CrlKey {
            name, handle, info, ..
        } = key;
        let signer = self.ca_signer(&name, &handle, &info)?;
        let scheme = signature_scheme_for(signer.as_ref(), key.digest, &name)?;
        Ok(CrlSigner {
            ca_id: key.ca_id,
            key_id: key.key_id,
            signer: X509Signer::new(signer, scheme)?,
            key_identifier: super::signing_key_identifier(&info),
            issuer: info.subject_name,
        })
    }

    /// Reads a CA and its key in a read transaction and reaches the key, outside any lock.
    pub(super) fn crl_signer_of(&self, ca_id: i64) -> Result<(CertificateRecord, CrlSigner)> {
        let (ca, key) = {
            let txn = self.store.begin(TxnMode::Read)?;
            let ca = txn
                .certificate_by_id(ca_id)?
                .ok_or_else(|| ManagerError::not_found(ObjectKind::Ca, ca_id.to_string()))?;
            let key = self.crl_key(txn.as_ref(), &ca)?;
            (ca, key)
        };
        Ok((ca, self.crl_signer(key)?))
    }

    /// Makes and stores the next CRL of `ca`, inside `txn`, which holds `Lock::Ca` of `ca` (the
    /// number read here is incremented). With `appended` (the entries just
    /// revoked, already stored as rows) and a previous CRL by the same key and name, the new
    /// CRL is the previous one's entries plus these — one more revocation does not re-read
    /// every row. Otherwise (`appended` = None) the list is rebuilt from the rows, leaving out
    /// certificates that have expired.
    pub(crate) fn write_crl(
        &self,
        txn: &mut dyn Transaction,
        ca: &CertificateRecord,
        s: &CrlSigner,
        appended: Option<&[Vec<u8>]>,
    ) -> Result<u64> {
        s.check_still(ca)?;
        let now = unix_now();
        let prev = txn.crl(ca.id)?;
        // Numbers a presigned series holds are taken: the next CRL goes past them (which
        // leaves the rest of the series stale, see `crl_series.rs`).
        let reserved = txn.crl_series_last_number(ca.id)?.unwrap_or(0);
        let number = prev.as_ref().map_or(0, |p| p.number).max(reserved) + 1;
        let spec = CrlSpec {
            issuer: &s.issuer,
            key_identifier: &s.key_identifier,
            number,
            this_update: at(now),
            next_update: at(now) + CRL_VALIDITY,
        };
        let alg = s
            .signer
            .signature_algorithm_identifier()
            .map_err(|e| crate::error::X509Error::Builder(e.to_string()))?
            .to_der()
            .map_err(crate::error::X509Error::from)?;
        let issuer_der = s.issuer.to_der().map_err(crate::error::X509Error::from)?;
        // A compromised CA may hold revocations its CRL does not list yet (`token lost`
        // records them when its key is unreachable): its CRLs are rebuilt from the rows.
        let appendable = appended.is_some() && txn.compromised_at(ca.id)?.is_none();
        let reusable = match (&prev, appended) {
            (Some(p), Some(_)) if appendable => x509crl::revoked_entries(&p.der)
                .ok()
                .filter(|parts| parts.algorithm == alg && parts.issuer == issuer_der),
            _ => None,
        };
        let rebuilt;
        let (der, entries) = match (reusable, appended) {
            (Some(parts), Some(new)) => {
                let mut list: Vec<&[u8]> = Vec::with_capacity(new.len() + 1);
                list.push(parts.entries);
                list.extend(new.iter().map(Vec::as_slice));
                let count = prev.as_ref().map_or(0, |p| p.entries) + new.len() as i64;
                (x509crl::build_crl(&spec, &list, &s.signer)?, count)
            }
            _ => {
                // RFC 5280 §3.3: an entry may leave once a regularly scheduled CRL issued
                // after the certificate expired has listed it — the previous CRL did, for a
                // certificate that had expired (and was revoked) before it was made.
                let cutoff = prev.as_ref().map_or(0, |p| p.this_update);
                let mut buf = Vec::new();
                let count = txn.revocation_entries(ca.id, cutoff, &mut buf)?;
                rebuilt = buf;
                (
                    x509crl::build_crl(&spec, &[rebuilt.as_slice()], &s.signer)?,
                    count,
                )
            }
        };
        drop(prev);
        txn.put_crl(&CrlRecord {
            ca_id: ca.id,
            number,
            this_update: now,
            next_update: super::unix_secs(spec.next_update),
            entries,
            der,
        })?;
        Ok(number)
    }

    /// After a certificate is stored: records the CDP paths it names (so that `serve` keeps
    /// answering them if the CA is renamed) and gives a new CA with a key its first CRL.
    pub(crate) fn after_insert(&self, txn: &mut dyn Transaction, id: i64) -> Result<()> {
        let rec = txn
            .certificate_by_id(id)?
            .ok_or_else(|| ManagerError::not_found(ObjectKind::Certificate, id.to_string()))?;
        let info = x509::inspect_certificate(&rec.cert.der)?;
        // certman's CDPs name the issuer's CRL, or (a CA made with ca-crl-host) its own.
        let owner = rec.cert.issuer_id.unwrap_or(rec.id);
        for url in &info.crl_distribution_points {
            if let Some(file) = crl_file_from_url(url) {
                self.claim_crl_path(txn, &file, owner)?;
            }
        }
        if info.is_ca && rec.cert.key_id.is_some() {
            txn.lock(Lock::Ca(rec.id))?;
        }
        if info.is_ca && rec.cert.key_id.is_some() && txn.crl(rec.id)?.is_none() {
            // The key was reached a moment ago to sign the certificate.
            let signer = self.crl_signer(self.crl_key(txn, &rec)?)?;
            self.write_crl(txn, &rec, &signer, None)?;
        }
        Ok(())
    }

    pub(super) fn claim_crl_path(
        &self,
        txn: &mut dyn Transaction,
        file: &str,
        ca_id: i64,
    ) -> Result<()> {
        let owner = txn.claim_crl_path(file, ca_id)?;
        if owner == ca_id {
            return Ok(());
        }
        let other = txn
            .certificate_by_id(owner)?
            .map(|c| c.cert.name)
            .unwrap_or_default();
        Err(ManagerError::refused(
            Refusal::CrlPathTaken,
            format!(
                "the CRL path /crl/{file} already serves the CRL of CA \"{other}\" (which was renamed)"
            ),
            Some("give this CA another name, so that its CRL gets a path of its own"),
        ))
    }

    /// Refuses renaming a CA to a name whose CRL path belongs to another CA.
    pub(crate) fn check_crl_rename(
        &self,
        txn: &dyn Transaction,
        cert: &CertificateRecord,
        new_name: &str,
    ) -> Result<()> {
        if cert.cert.ca_crl_host.is_none() {
            return Ok(());
        }
        let file = format!("{new_name}.crl");
        match txn.crl_path_owner(&file)? {
            Some(other) if other != cert.id => Err(ManagerError::refused(
                Refusal::CrlPathTaken,
                format!("the CRL path /crl/{file} already serves the CRL of another CA"),
                Some("choose another name"),
            )),
            _ => Ok(()),
        }
    }

    // ------------------------------------------------------------- CRL renewal

    /// `crl renew CA`: a new CRL now, rebuilt from the rows (entries of certificates that
    /// expired before the previous CRL left out).
    pub fn renew_crl(&self, name: &str) -> Result<u64> {
        let id = {
            let txn = self.store.begin(TxnMode::Read)?;
            txn.certificate(name)?
                .ok_or_else(|| ManagerError::not_found(ObjectKind::Certificate, name))?
                .id
        };
        self.renew_crl_of(id, None)
    }

    /// `crl renew`: every CA whose CRL is made here, each in its own transaction.
    pub fn renew_all_crls(&self) -> Vec<CrlRenewal> {
        self.renew_where(|_| true, None)
            .into_iter()
            .map(|(_, r)| r)
            .collect()
    }

    /// Renews one CA's CRL: the key reached first, then one write transaction. With
    /// `only_if_older_than`, a CRL renewed meanwhile by another process is left as it is.
    fn renew_crl_of(&self, ca_id: i64, only_if_older_than: Option<Duration>) -> Result<u64> {
        let (_, signer) = self.crl_signer_of(ca_id)?;
        self.write(|txn| {
            txn.lock(Lock::Ca(ca_id))?;
            let ca = txn
                .certificate_by_id(ca_id)?
                .ok_or_else(|| ManagerError::not_found(ObjectKind::Ca, ca_id.to_string()))?;
            if let Some(max_age) = only_if_older_than {
                if !crl_due(txn, ca_id, max_age, self.judged_now())? {
                    return Ok(txn.crl_state(ca_id)?.map_or(0, |(n, _)| n));
                }
            }
            self.write_crl(txn, &ca, &signer, None)
        })
    }

    fn renew_where(
        &self,
        due: impl Fn(&CertificateRecord) -> bool,
        max_age: Option<Duration>,
    ) -> Vec<(i64, CrlRenewal)> {
        let cas = match self
            .store
            .begin(TxnMode::Read)
            .map_err(ManagerError::from)
            .and_then(|txn| {
                let cas = local_cas(txn.as_ref(), max_age.is_some())?;
                let mut out = Vec::new();
                for ca in cas {
                    let is_due = match max_age {
                        Some(m) => crl_due(txn.as_ref(), ca.id, m, self.judged_now())?,
                        None => true,
                    };
                    if is_due && due(&ca) {
                        out.push(ca);
                    }
                }
                Ok(out)
            }) {
            Ok(c) => c,
            Err(e) => {
                return vec![(
                    0,
                    CrlRenewal {
                        ca: String::new(),
                        result: Err(e),
                    },
                )]
            }
        };
        cas.into_iter()
            .map(|ca| {
                let renewal = CrlRenewal {
                    result: self.renew_crl_of(ca.id, max_age),
                    ca: ca.cert.name,
                };
                (ca.id, renewal)
            })
            .collect()
    }

    /// Renews the CRL of every CA whose CRL is made here (not expired) once it is older than
    /// `max_age`; each CA in its own transaction, so that one CA whose token is absent does
    /// not hold up the others. After a PIN failure a CA is left alone by this process.
    pub fn renew_due_crls(&self, max_age: Duration) -> Vec<CrlRenewal> {
        let failed_on_pin = |id: i64| {
            self.crl_pin_failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&id)
        };
        let mut out = self.renew_where(|ca| !failed_on_pin(ca.id), Some(max_age));
        for (id, r) in &mut out {
            if let Err(e) = &r.result {
                if is_pin_error(e) {
                    self.crl_pin_failures
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(*id);
                    r.result = Err(ManagerError::refused(
                        Refusal::PinFailedBefore,
                        format!("{e}; not tried again until restart (a PIN try is precious)"),
                        None,
                    ));
                }
            }
        }
        out.into_iter().map(|(_, r)| r).collect()
    }

    // ------------------------------------------------------------- serving

    /// The CRL `serve` answers for `/crl/<file>` (`file` decoded): the CA whose issued
    /// certificates carry that CDP (kept across renames), else the CA named so now.
    pub fn served_crl(&self, file: &str) -> Result<Option<ServedCrl>> {
        let txn = self
            .reads
            .as_deref()
            .unwrap_or(&*self.store)
            .begin(TxnMode::Read)?;
        let Some((ca, mut crl)) = txn.served_crl(file, file.strip_suffix(".crl"))? else {
            return Ok(None);
        };
        // A presigned CRL whose thisUpdate has come, when it is newer than the stored one.
        if let Some(p) = txn.due_crl_series(crl.ca_id, self.judged_now())? {
            if p.number > crl.number {
                crl.number = p.number;
                crl.this_update = p.this_update;
                crl.next_update = p.next_update;
                crl.entries = p.entries;
                crl.der = p.der;
            }
        }
        Ok(Some(ServedCrl {
            ca,
            der: crl.der,
            number: crl.number,
            this_update: crl.this_update,
            next_update: crl.next_update,
        }))
    }

    /// A local CA's current CRL (DER), for `crl export`.
    pub fn crl_of(&self, ca: &str) -> Result<(u64, Vec<u8>)> {
        let txn = self.store.begin(TxnMode::Read)?;
        let c = txn
            .certificate(ca)?
            .ok_or_else(|| ManagerError::not_found(ObjectKind::Certificate, ca))?;
        if let Some(crl) = txn.crl(c.id)? {
            return Ok((crl.number, crl.der));
        }
        if let Some(d) = txn.downloaded_crl(c.id)? {
            return Ok((d.number.unwrap_or(0), d.der));
        }
        Err(ManagerError::NotFound {
            kind: ObjectKind::Crl,
            name: ca.to_owned(),
        })
    }

    /// A cheap read of the store (`/health`).
    pub fn check_store(&self) -> Result<()> {
        let txn = self
            .reads
            .as_deref()
            .unwrap_or(&*self.store)
            .begin(TxnMode::Read)?;
        txn.setting("crl-use")?;
        Ok(())
    }

    /// Now, as CRLs are judged due (tests may move it: `with_clock_offset`).
    pub(super) fn judged_now(&self) -> i64 {
        unix_now() + self.clock_offset
    }

    /// Whether this manager's store handle leads `job` among the nodes of the store
    /// ([`crate::store::Store::lead`]): `serve`'s timers run a job's round only when it does.
    pub fn lead(&self, job: Job) -> Result<bool> {
        Ok(self.store.lead(job)?)
    }

    // ------------------------------------------------------------- settings

    /// `settings print`.
    pub fn settings(&self) -> Result<Settings> {
        let txn = self.store.begin(TxnMode::Read)?;
        Ok(read_settings(txn.as_ref())?)
    }

    /// `settings set crl-download=yes crl-use=yes`.
    pub fn set_settings(&self, changes: &[(String, String)]) -> Result<Settings> {
        self.write(|txn| {
            for (k, v) in changes {
                if !SETTING_NAMES.contains(&k.as_str()) {
                    return Err(ManagerError::InvalidValue(format!(
                        "unknown setting '{k}' (settings are {})",
                        SETTING_NAMES.join(", ")
                    )));
                }
                let b = super::template::parse_yes_no(k, v)?;
                txn.set_setting(k, if b { "yes" } else { "no" })?;
            }
            Ok(read_settings(txn)?)
        })
    }

    /// `crl print`: the CRLs of local CAs and the downloaded ones.
    pub fn crl_listing(&self) -> Result<Vec<CrlListing>> {
        let txn = self.store.begin(TxnMode::Read)?;
        let name = |id: i64| -> Result<String> {
            Ok(txn
                .certificate_by_id(id)?
                .map(|c| c.cert.name)
                .unwrap_or_default())
        };
        let mut out = Vec::new();
        for c in txn.crl_summaries()? {
            out.push(CrlListing {
                ca: name(c.ca_id)?,
                source: "local".into(),
                number: Some(c.number),
                this_update: c.this_update,
                next_update: Some(c.next_update),
                entries: c.entries,
                fetched_at: None,
            });
        }
        for d in txn.downloaded_crls()? {
            out.push(CrlListing {
                ca: name(d.certificate_id)?,
                source: d.url,
                number: d.number,
                this_update: d.this_update,
                next_update: d.next_update,
                entries: d.entries,
                fetched_at: Some(d.fetched_at),
            });
        }
        Ok(out)
    }

    /// Every CRL `verify` may use with crl-use=yes: own and downloaded, DER.
    pub(crate) fn all_crls(&self, txn: &dyn Transaction) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for s in txn.crl_summaries()? {
            if let Some(c) = txn.crl(s.ca_id)? {
                out.push(c.der);
            }
        }
        out.extend(txn.downloaded_crls()?.into_iter().map(|d| d.der));
        Ok(out)
    }
}

/// Whether a CA's CRL is older than `max_age` at `now` (Unix seconds).
fn crl_due(txn: &dyn Transaction, ca_id: i64, max_age: Duration, now: i64) -> Result<bool> {
    let cutoff = now - max_age.as_secs() as i64;
    Ok(match txn.crl_state(ca_id)? {
        Some((_, this_update)) if this_update > cutoff => false,
        // A presigned series that still covers now is what is served: renewing would need
        // the key of a root whose token is in the safe, and would make the series stale.
        Some((number, _)) => !super::crl_series::covers(txn, ca_id, number, now, cutoff)?,
        None => true,
    })
}

/// A wrong, missing or guarded PIN (not a missing token, which may come back).
fn is_pin_error(e: &ManagerError) -> bool {
    use crate::error::{KeyError, X509Error};
    matches!(
        e,
        ManagerError::Key(KeyError::Pin(_) | KeyError::Secret(_))
            | ManagerError::X509(X509Error::Key(KeyError::Pin(_) | KeyError::Secret(_)))
    )
}

fn read_settings(txn: &dyn Transaction) -> crate::store::Result<Settings> {
    let flag =
        |k: &str| -> crate::store::Result<bool> { Ok(txn.setting(k)?.as_deref() == Some("yes")) };
    Ok(Settings {
        crl_download: flag("crl-download")?,
        crl_use: flag("crl-use")?,
    })
}

/// CAs whose CRLs are made here: those signed here (they got CRL 1 then) or given one by
/// `crl renew CA`/`issued-revoke` — not every imported CA that came with its key, whose CRLs
/// its real issuer publishes (with `valid_only`, not expired).
fn local_cas(txn: &dyn Transaction, valid_only: bool) -> Result<Vec<CertificateRecord>> {
    let now = SystemTime::now();
    let mut out = Vec::new();
    // From the CRL rows, not from every certificate: the timer runs this every minute.
    for crl in txn.crl_summaries()? {
        let Some(c) = txn.certificate_by_id(crl.ca_id)? else {
            continue;
        };
        if c.cert.key_id.is_none() {
            continue;
        }
        let Ok(info) = x509::inspect_certificate(&c.cert.der) else {
            continue;
        };
        if info.is_ca && (!valid_only || info.not_after >= now) {
            out.push(c);
        }
    }
    Ok(out)
}

//! What keeps `serve` from doing its job, for `/health`: a served CRL past its nextUpdate, a CA
//! whose scheduled CRL renewal failed on the PIN (this process leaves it alone until restart)
//! or found its token absent, a CA whose token is absent or whose PIN is locked now, a store
//! that cannot be written. Read-only: a token is only looked at (present? PIN locked?),
//! never logged into, so `/health` spends no PIN try.

use super::crl::{fmt_unix, unix_now, CrlRenewal};
use super::{Manager, Result};
use crate::error::{KeyError, ManagerError, Refusal, X509Error};
use crate::keys::{KeyHandle, KeyState, Scheme};
use crate::store::TxnMode;

/// Why `/health` says `degraded`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HealthReason {
    /// a local CA's current CRL is past its nextUpdate
    CrlExpired,
    /// the last scheduled renewal of a CA's CRL found its token absent
    TokenAbsent,
    /// a scheduled renewal of a CA's CRL failed on the PIN: not tried again until restart
    PinFailed,
    /// a CA's token reports its user PIN locked
    PinLocked,
    /// the last scheduled renewal of a CA's CRL failed otherwise (a device error, …)
    CrlRenewalFailed,
    /// fewer presigned CRLs of a CA are left to publish than `crl-series-low` (its offline
    /// root must come out of the safe soon to presign more)
    CrlSeriesLow,
    /// a revocation (or a renewal) made a CA's presigned series stale while some of it was
    /// still to be published: the operator presigns again
    CrlSeriesStale,
    /// the store cannot be written (read-only, no space, its directory gone)
    StoreUnwritable,
}

impl HealthReason {
    /// The word `/health` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthReason::CrlExpired => "crl-expired",
            HealthReason::TokenAbsent => "token-absent",
            HealthReason::PinFailed => "pin-failed",
            HealthReason::PinLocked => "pin-locked",
            HealthReason::CrlRenewalFailed => "crl-renewal-failed",
            HealthReason::CrlSeriesLow => "crl-series-low",
            HealthReason::CrlSeriesStale => "crl-series-stale",
            HealthReason::StoreUnwritable => "store-unwritable",
        }
    }
}

/// One reason for `degraded`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthProblem {
    /// what is wrong
    pub reason: HealthReason,
    /// the CA it concerns (its name now), if any
    pub ca: Option<String>,
    /// one line for the operator, without paths or token details (those go to the log)
    pub message: String,
    /// the underlying error, for the log only
    pub detail: Option<String>,
}

impl HealthProblem {
    fn of_ca(reason: HealthReason, ca: &str, message: String, detail: Option<String>) -> Self {
        HealthProblem {
            reason,
            ca: Some(ca.to_owned()),
            message,
            detail,
        }
    }
}

fn is_token_absent(e: &ManagerError) -> bool {
    matches!(
        e,
        ManagerError::Key(KeyError::TokenAbsent(_))
            | ManagerError::X509(X509Error::Key(KeyError::TokenAbsent(_)))
    )
}

fn is_pin_failure(e: &ManagerError) -> bool {
    e.refusal() == Some(Refusal::PinFailedBefore)
        || matches!(
            e,
            ManagerError::Key(KeyError::Pin(_) | KeyError::Secret(_))
                | ManagerError::X509(X509Error::Key(KeyError::Pin(_) | KeyError::Secret(_)))
        )
}

/// The problem a scheduled CRL renewal's outcome shows, if any: the token absent, the PIN
/// failed, or another failure. `None` for a renewal that worked (and for a store that could
/// not be read, which `/health` sees by itself).
pub fn renewal_problem(r: &CrlRenewal) -> Option<HealthProblem> {
    let e = r.result.as_ref().err()?;
    if r.ca.is_empty() {
        return None;
    }
    let ca = &r.ca;
    let (reason, message) = if is_token_absent(e) {
        (
            HealthReason::TokenAbsent,
            format!("the token of CA \"{ca}\" is absent: its CRL is not renewed"),
        )
    } else if is_pin_failure(e) {
        (
            HealthReason::PinFailed,
            format!("the PIN of CA \"{ca}\"'s token failed: its CRL is not renewed until restart"),
        )
    } else {
        (
            HealthReason::CrlRenewalFailed,
            format!("the CRL of CA \"{ca}\" could not be renewed (see the log)"),
        )
    };
    Some(HealthProblem::of_ca(
        reason,
        ca,
        message,
        Some(e.to_string()),
    ))
}

impl Manager {
    /// The local CAs whose keys are on tokens or cards, by their names now, with the state of
    /// that token now (looked at without a login: no PIN try, see
    /// [`crate::keys::KeyProvider::key_state`]).
    pub fn ca_key_states(&self) -> Result<Vec<(String, KeyState)>> {
        let store = self.reads.as_deref().unwrap_or(&*self.store);
        let mut keys: Vec<(String, KeyHandle)> = Vec::new();
        {
            let txn = store.begin(TxnMode::Read)?;
            for crl in txn.crl_summaries()? {
                let Some(ca) = txn.certificate_by_id(crl.ca_id)? else {
                    continue;
                };
                if keys.iter().any(|(n, _)| *n == ca.cert.name) {
                    continue;
                }
                let Ok((_, handle)) = super::ca_key_handle(txn.as_ref(), &ca) else {
                    continue;
                };
                if handle.uri.scheme() != Scheme::Soft {
                    keys.push((ca.cert.name.clone(), handle));
                }
            }
        }
        Ok(keys
            .into_iter()
            .map(|(name, handle)| {
                let state = self.keys.key_state(&handle);
                (name, state)
            })
            .collect())
    }

    /// Adds `key-state` (online, token-absent, pin-failed, pin-locked) after `smart-card-key`
    /// to the entries whose key is on a token or card (`print detail`, `--json`): looked at
    /// without a login, as [`Manager::ca_key_states`]; a key its token's provider cannot name
    /// shows nothing.
    pub fn add_key_states(&self, entries: &mut [super::Entry]) {
        let mut seen: std::collections::HashMap<String, KeyState> = Default::default();
        for entry in entries {
            let Some(uri) = entry.text("smart-card-key").filter(|u| !u.is_empty()) else {
                continue;
            };
            let state = match seen.get(uri) {
                Some(state) => *state,
                None => {
                    let Ok(parsed) = uri.parse::<crate::keys::KeyUri>() else {
                        continue;
                    };
                    let state = self.keys.key_state(&KeyHandle {
                        uri: parsed,
                        sealed: None,
                    });
                    seen.insert(uri.to_owned(), state);
                    state
                }
            };
            let at = entry
                .properties
                .iter()
                .position(|(k, _)| *k == "smart-card-key")
                .map_or(entry.properties.len(), |i| i + 1);
            entry.properties.insert(
                at,
                ("key-state", super::Value::Text(state.as_str().to_owned())),
            );
        }
    }

    /// What the store and this process know is wrong now (see the module comment): the local
    /// CAs whose current CRL is past its nextUpdate (by the manager's clock, which the test
    /// offset shifts; a CA that has itself expired is left out, its CRL is no longer renewed),
    /// the CAs whose scheduled renewal failed on the PIN, and whether the store can be written.
    /// Reads through `serve`'s read connection when there is one, so that it never waits
    /// behind a transaction signing on a token.
    pub fn health(&self) -> Result<Vec<HealthProblem>> {
        let store = self.reads.as_deref().unwrap_or(&*self.store);
        let now = unix_now() + self.clock_offset;
        let pin_failed: Vec<i64> = {
            let failed = self
                .crl_pin_failures
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let mut ids: Vec<i64> = failed.iter().copied().collect();
            ids.sort_unstable();
            ids
        };
        let mut out = Vec::new();
        {
            let txn = store.begin(TxnMode::Read)?;
            for crl in txn.crl_summaries()? {
                if crl.next_update >= now {
                    continue;
                }
                // What is served may be a presigned CRL, newer than the stored one.
                let served = txn
                    .due_crl_series(crl.ca_id, now)?
                    .filter(|p| p.number > crl.number);
                if served.is_some_and(|p| p.next_update >= now) {
                    continue;
                }
                let Some(ca) = txn.certificate_by_id(crl.ca_id)? else {
                    continue;
                };
                if ca.cert.not_after < now {
                    continue;
                }
                let name = &ca.cert.name;
                out.push(HealthProblem::of_ca(
                    HealthReason::CrlExpired,
                    name,
                    format!(
                        "the CRL of CA \"{name}\" is past its nextUpdate ({})",
                        fmt_unix(crl.next_update)
                    ),
                    None,
                ));
            }
            for series in self.series_in(txn.as_ref())? {
                let name = &series.ca;
                if series.stale && series.left > 0 {
                    out.push(HealthProblem::of_ca(
                        HealthReason::CrlSeriesStale,
                        name,
                        format!(
                            "the presigned CRLs of CA \"{name}\" are stale (a newer CRL was made): \
                             {} of them will not be published; presign again",
                            series.left
                        ),
                        None,
                    ));
                } else if !series.stale && series.left < self.crl_series_low {
                    out.push(HealthProblem::of_ca(
                        HealthReason::CrlSeriesLow,
                        name,
                        format!(
                            "{} presigned CRL(s) of CA \"{name}\" left to publish; the served \
                             one is valid until {}: presign more",
                            series.left,
                            fmt_unix(series.until)
                        ),
                        None,
                    ));
                }
            }
            for id in pin_failed {
                if let Some(ca) = txn.certificate_by_id(id)? {
                    let name = &ca.cert.name;
                    out.push(HealthProblem::of_ca(
                        HealthReason::PinFailed,
                        name,
                        format!(
                            "the PIN of CA \"{name}\"'s token failed: its CRL is not renewed until restart"
                        ),
                        None,
                    ));
                }
            }
        }
        // an offline root whose presigned CRLs (not stale) still cover now has its token in
        // the safe: that absence is the plan, not a problem (`crl-series-low` warns in time)
        let offline: Vec<String> = self
            .crl_series_status()?
            .into_iter()
            .filter(|s| !s.stale && s.until > now)
            .map(|s| s.ca)
            .collect();
        for (name, state) in self.ca_key_states()? {
            let (reason, message) = match state {
                KeyState::Online => continue,
                KeyState::TokenAbsent if offline.contains(&name) => continue,
                KeyState::TokenAbsent => (
                    HealthReason::TokenAbsent,
                    format!("the token of CA \"{name}\" is absent: it cannot sign"),
                ),
                KeyState::PinFailed => (
                    HealthReason::PinFailed,
                    format!(
                        "the PIN of CA \"{name}\"'s token failed: not tried again until restart"
                    ),
                ),
                KeyState::PinLocked => (
                    HealthReason::PinLocked,
                    format!("the PIN of CA \"{name}\"'s token is locked: unblock it"),
                ),
            };
            if !out
                .iter()
                .any(|p| p.reason == reason && p.ca.as_deref() == Some(&name))
            {
                out.push(HealthProblem::of_ca(reason, &name, message, None));
            }
        }
        if let Err(e) = store.check_writable() {
            out.push(HealthProblem {
                reason: HealthReason::StoreUnwritable,
                ca: None,
                message: "the store cannot be written".into(),
                detail: Some(e.to_string()),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::super::tests::{make_ca, manager_with_token, token_location};
    use super::*;
    use crate::manager::{KeyLocation, SetRequest};

    const DAY: i64 = 86_400;

    fn reasons(m: &Manager) -> Vec<(HealthReason, Option<String>)> {
        m.health()
            .unwrap()
            .into_iter()
            .map(|p| (p.reason, p.ca))
            .collect()
    }

    #[test]
    fn a_crl_past_its_next_update_is_reported_unless_its_ca_expired() {
        let (_dir, m, _token) = manager_with_token();
        make_ca(&m, KeyLocation::Software);
        assert!(reasons(&m).is_empty());
        // CRLs are valid for two days: three days on, the CA's is past its nextUpdate.
        let m = m.with_clock_offset(3 * DAY);
        assert_eq!(
            reasons(&m),
            [(HealthReason::CrlExpired, Some("ca".to_owned()))]
        );
        let p = &m.health().unwrap()[0];
        assert!(p.message.contains("past its nextUpdate ("), "{}", p.message);
        // Renewed: fine again (the renewal signs with the real clock, so look a day on).
        m.renew_crl("ca").unwrap();
        let m = m.with_clock_offset(DAY);
        assert!(reasons(&m).is_empty());
        // Once the CA itself has expired its CRL is no longer renewed, nor reported.
        let m = m.with_clock_offset(100 * 365 * DAY);
        assert!(reasons(&m).is_empty());
    }

    #[test]
    fn a_ca_given_up_on_after_a_pin_failure_is_reported_by_its_name_now() {
        let (_dir, m, token) = manager_with_token();
        make_ca(&m, token_location());
        token.fail_pin.store(true, Ordering::SeqCst);
        let r = m.renew_due_crls(Duration::ZERO);
        let p = renewal_problem(&r[0]).unwrap();
        assert_eq!(p.reason, HealthReason::PinFailed);
        assert!(p.detail.unwrap().contains("wrong PIN"));
        assert_eq!(
            reasons(&m),
            [(HealthReason::PinFailed, Some("ca".to_owned()))]
        );
        m.set(&SetRequest {
            name: "ca".into(),
            changes: vec![("name".into(), "root".into())],
        })
        .unwrap();
        assert_eq!(
            reasons(&m),
            [(HealthReason::PinFailed, Some("root".to_owned()))]
        );
    }

    #[test]
    fn renewal_outcomes_are_sorted_into_reasons() {
        let (_dir, m, token) = manager_with_token();
        make_ca(&m, token_location());
        let r = m.renew_due_crls(Duration::ZERO);
        assert!(renewal_problem(&r[0]).is_none(), "renewed: no problem");
        token.fail_signing.store(true, Ordering::SeqCst);
        let r = m.renew_due_crls(Duration::ZERO);
        let p = renewal_problem(&r[0]).unwrap();
        assert_eq!(p.reason, HealthReason::CrlRenewalFailed);
        assert_eq!(p.ca.as_deref(), Some("ca"));
        assert!(!p.message.contains("device removed"), "{}", p.message);
        assert!(p.detail.unwrap().contains("device removed"));
        let absent = |e: ManagerError| CrlRenewal {
            ca: "card".into(),
            result: Err(e),
        };
        let p = renewal_problem(&absent(ManagerError::Key(KeyError::TokenAbsent(
            "no token labelled card".into(),
        ))))
        .unwrap();
        assert_eq!(p.reason, HealthReason::TokenAbsent);
        let p = renewal_problem(&absent(ManagerError::X509(X509Error::Key(
            KeyError::TokenAbsent("gone".into()),
        ))))
        .unwrap();
        assert_eq!(p.reason, HealthReason::TokenAbsent);
        // A look that could not read the store names no CA: not a CA's problem.
        let store = CrlRenewal {
            ca: String::new(),
            result: Err(ManagerError::InvalidValue("locked".into())),
        };
        assert!(renewal_problem(&store).is_none());
    }

    #[test]
    fn a_store_that_cannot_be_written_is_reported() {
        let (dir, m, _token) = manager_with_token();
        make_ca(&m, KeyLocation::Software);
        let moved = dir.path().with_extension("moved");
        std::fs::rename(dir.path(), &moved).unwrap();
        let problems = m.health().unwrap();
        std::fs::rename(&moved, dir.path()).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].reason, HealthReason::StoreUnwritable);
        assert_eq!(problems[0].message, "the store cannot be written");
        assert!(problems[0].detail.as_ref().unwrap().contains("write-probe"));
        assert!(m.health().unwrap().is_empty());
    }
}

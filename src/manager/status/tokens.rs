//! The status report's tokens and cards: what the token profiles find without a login, and
//! the tokens the CAs' keys name.

use super::{PinWord, Presence, TokenStatus, MAX_ROWS};
use crate::keys::{KeyUri, ProfileListing, Scheme};

pub(super) fn kind_word(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::Piv => "piv",
        _ => "pkcs11",
    }
}

/// A CA's key on a token, as the store records it.
pub(super) struct TokenKey {
    pub(super) ca: String,
    pub(super) kind: &'static str,
    pub(super) label: String,
    pub(super) serial: String,
    pub(super) profile: Option<String>,
}

/// The token rows: what the profiles find (present, or absent where a profile finds
/// nothing), then the tokens only a CA's key names; the CAs placed on their token.
pub(super) fn token_rows(listing: &[ProfileListing], keys: Vec<TokenKey>) -> Vec<TokenStatus> {
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

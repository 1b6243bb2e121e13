//! Key URIs: where a key lives.
//!
//! - PKCS#11, RFC 7512: `pkcs11:token=CA;object=root;id=%01%a0?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/ca.pin`
//! - PIV: `piv:slot-id=9c;serial=12345678?pin-source=env:PIN&management-key-source=file:/etc/mgm`
//!   (`reader=` instead of `serial=`; `yubikey:` is accepted as an alias, as step-ca writes it)
//! - software: `soft:id=<hex>`, a sealed key row in the store
//!
//! All three share RFC 7512's shape: `scheme:` path attributes joined by `;`, then `?` and
//! query attributes joined by `&`, values percent-encoded. `Display` redacts `pin-value`.

use std::fmt;
use std::str::FromStr;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::error::KeyError;

/// The URI scheme, which chooses the key provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `pkcs11:` — a PKCS#11 token.
    Pkcs11,
    /// `piv:` (or `yubikey:`) — a PIV smart card over PC/SC.
    Piv,
    /// `soft:` — a software key sealed in the store.
    Soft,
}

impl Scheme {
    /// The scheme as written in URIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Pkcs11 => "pkcs11",
            Scheme::Piv => "piv",
            Scheme::Soft => "soft",
        }
    }

    fn path_attributes(self) -> &'static [&'static str] {
        match self {
            // RFC 7512 §2.3 pk11-path-attr
            Scheme::Pkcs11 => &[
                "token",
                "manufacturer",
                "serial",
                "model",
                "library-manufacturer",
                "library-description",
                "library-version",
                "object",
                "type",
                "id",
                "slot-description",
                "slot-manufacturer",
                "slot-id",
            ],
            Scheme::Piv => &["slot-id", "serial", "reader"],
            Scheme::Soft => &["id"],
        }
    }

    fn query_attributes(self) -> &'static [&'static str] {
        match self {
            // RFC 7512 §2.3 pk11-query-attr; `profile`: the token profile the key was made
            // from (its PIN comes from the profile at use time)
            Scheme::Pkcs11 => &[
                "pin-source",
                "pin-value",
                "module-name",
                "module-path",
                "profile",
            ],
            Scheme::Piv => &[
                "pin-source",
                "pin-value",
                "management-key-source",
                "profile",
            ],
            Scheme::Soft => &[],
        }
    }
}

/// Characters percent-encoded in attribute values: everything but RFC 3986 unreserved
/// characters and the few RFC 7512 allows unescaped that cannot be confused with separators.
const VALUE_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':')
    .remove(b'/')
    .remove(b'@')
    .remove(b'!')
    .remove(b'$')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',');

/// A parsed key URI. Values are kept decoded (bytes: PKCS#11 `id` is binary).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyUri {
    scheme: Scheme,
    path: Vec<(String, Vec<u8>)>,
    query: Vec<(String, Vec<u8>)>,
}

impl KeyUri {
    /// A URI with no attributes yet.
    pub fn new(scheme: Scheme) -> Self {
        KeyUri {
            scheme,
            path: Vec::new(),
            query: Vec::new(),
        }
    }

    /// `soft:id=<hex>`.
    pub fn soft(id: &str) -> Self {
        KeyUri::new(Scheme::Soft).with_path("id", id.as_bytes())
    }

    /// Adds or replaces a path attribute.
    pub fn with_path(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        set(&mut self.path, name, value.as_ref());
        self
    }

    /// Adds or replaces a query attribute.
    pub fn with_query(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        set(&mut self.query, name, value.as_ref());
        self
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// A path attribute's raw value.
    pub fn path_bytes(&self, name: &str) -> Option<&[u8]> {
        get(&self.path, name)
    }

    /// A path attribute as text (None if absent or not UTF-8).
    pub fn path_str(&self, name: &str) -> Option<&str> {
        self.path_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// A query attribute as text.
    pub fn query_str(&self, name: &str) -> Option<&str> {
        get(&self.query, name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The same URI without secrets (`pin-value`), as it may be stored and printed.
    pub fn without_secrets(&self) -> Self {
        let mut u = self.clone();
        u.query.retain(|(k, _)| k != "pin-value");
        u
    }

    /// The id of the key's row in the store: the soft key id, or for a token key a digest of
    /// its URI (without secrets), so that the same token key is one row.
    pub fn store_id(&self) -> String {
        match self.soft_id() {
            Some(id) => id.to_owned(),
            None => hex::encode(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                self.without_secrets().to_string().as_bytes(),
            )),
        }
    }

    /// The soft key id of a `soft:` URI.
    pub fn soft_id(&self) -> Option<&str> {
        (self.scheme == Scheme::Soft)
            .then(|| self.path_str("id"))
            .flatten()
    }

    fn write(&self, f: &mut impl fmt::Write, redact: bool) -> fmt::Result {
        f.write_str(self.scheme.as_str())?;
        f.write_char(':')?;
        for (i, (k, v)) in self.path.iter().enumerate() {
            if i > 0 {
                f.write_char(';')?;
            }
            write!(f, "{k}=")?;
            write_value(f, k, v, self.scheme)?;
        }
        for (i, (k, v)) in self.query.iter().enumerate() {
            f.write_char(if i == 0 { '?' } else { '&' })?;
            write!(f, "{k}=")?;
            if redact && k == "pin-value" {
                f.write_str("[redacted]")?;
            } else {
                write_value(f, k, v, self.scheme)?;
            }
        }
        Ok(())
    }

    /// The full URI including any `pin-value`. Only for handing to a backend, never to a log.
    pub fn secret_uri_string(&self) -> String {
        let mut s = String::new();
        let _ = self.write(&mut s, false);
        s
    }
}

fn write_value(f: &mut impl fmt::Write, key: &str, v: &[u8], scheme: Scheme) -> fmt::Result {
    // A PKCS#11 id is binary: always percent-encode every byte (RFC 7512 §2.3 example).
    if scheme == Scheme::Pkcs11 && key == "id" {
        for b in v {
            write!(f, "%{b:02x}")?;
        }
        return Ok(());
    }
    match std::str::from_utf8(v) {
        Ok(s) => write!(f, "{}", utf8_percent_encode(s, VALUE_ESCAPE)),
        Err(_) => {
            for b in v {
                write!(f, "%{b:02x}")?;
            }
            Ok(())
        }
    }
}

fn set(list: &mut Vec<(String, Vec<u8>)>, name: &str, value: &[u8]) {
    match list.iter_mut().find(|(k, _)| k == name) {
        Some((_, v)) => *v = value.to_vec(),
        None => list.push((name.to_owned(), value.to_vec())),
    }
}

fn get<'a>(list: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    list.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

impl fmt::Display for KeyUri {
    /// Prints the URI with `pin-value` redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, true)
    }
}

impl fmt::Debug for KeyUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyUri({self})")
    }
}

impl FromStr for KeyUri {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        let bad = |why: &str| KeyError::InvalidUri(format!("{why} in '{}'", redact_raw(s)));
        let (scheme, rest) = s.split_once(':').ok_or_else(|| bad("no scheme"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "pkcs11" => Scheme::Pkcs11,
            "piv" | "yubikey" => Scheme::Piv,
            "soft" => Scheme::Soft,
            other => {
                return Err(KeyError::InvalidUri(format!(
                    "unknown key URI scheme '{other}' (use pkcs11:, piv: or soft:)"
                )))
            }
        };
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut uri = KeyUri::new(scheme);
        for (part, sep, allowed, target) in [
            (Some(path), ';', scheme.path_attributes(), 0),
            (query, '&', scheme.query_attributes(), 1),
        ] {
            let Some(part) = part else { continue };
            if part.is_empty() {
                continue;
            }
            for attr in part.split(sep) {
                let (k, v) = attr.split_once('=').ok_or_else(|| {
                    bad(&format!("attribute '{}' has no value", redact_raw(attr)))
                })?;
                let k = k.to_ascii_lowercase();
                if !allowed.contains(&k.as_str()) && !k.starts_with("x-") {
                    return Err(bad(&format!("unknown attribute '{k}'")));
                }
                let list = if target == 0 {
                    &mut uri.path
                } else {
                    &mut uri.query
                };
                if get(list, &k).is_some() {
                    return Err(bad(&format!("attribute '{k}' given twice")));
                }
                let value: Vec<u8> = percent_decode_str(v).collect();
                list.push((k, value));
            }
        }
        uri.validate().map_err(|why| bad(&why))?;
        Ok(uri)
    }
}

impl KeyUri {
    fn validate(&self) -> Result<(), String> {
        match self.scheme {
            Scheme::Soft => {
                let id = self.path_str("id").ok_or("soft: needs id=")?;
                if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err("soft key id must be hex".into());
                }
            }
            Scheme::Piv => {
                self.path_str("slot-id").ok_or("piv: needs slot-id=")?;
                if self.path_bytes("serial").is_some() && self.path_bytes("reader").is_some() {
                    return Err("give serial= or reader=, not both".into());
                }
            }
            Scheme::Pkcs11 => {}
        }
        Ok(())
    }
}

/// Hides every `pin-value=` (in any case) in raw text that failed to parse, so errors never
/// echo a PIN.
fn redact_raw(s: &str) -> String {
    const KEY: &str = "pin-value=";
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut pos = 0;
    while let Some(i) = lower[pos..].find(KEY) {
        let start = pos + i + KEY.len();
        let end = lower[start..]
            .find(['&', ';', '?'])
            .map_or(s.len(), |e| start + e);
        out.push_str(&s[pos..start]);
        out.push_str("[redacted]");
        pos = end;
    }
    out.push_str(&s[pos..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7512_example_round_trips() {
        let s = "pkcs11:token=CA;object=root-2026;id=%01%a0?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/certman/ca.pin";
        let u: KeyUri = s.parse().unwrap();
        assert_eq!(u.scheme(), Scheme::Pkcs11);
        assert_eq!(u.path_str("token"), Some("CA"));
        assert_eq!(u.path_bytes("id"), Some(&[0x01, 0xa0][..]));
        assert_eq!(
            u.query_str("module-path"),
            Some("/usr/lib/softhsm/libsofthsm2.so")
        );
        assert_eq!(u.to_string(), s);
        assert_eq!(u.to_string().parse::<KeyUri>().unwrap(), u);
    }

    #[test]
    fn values_with_separators_are_percent_encoded() {
        let u = KeyUri::new(Scheme::Pkcs11)
            .with_path("token", "My Token;1=2")
            .with_path("object", "a/b&c?d%")
            .with_query("module-path", "/opt/x y/lib.so");
        let printed = u.to_string();
        assert!(
            printed.contains("token=My%20Token%3b1%3d2")
                || printed.contains("token=My%20Token%3B1%3D2")
        );
        assert_eq!(printed.parse::<KeyUri>().unwrap(), u);
    }

    #[test]
    fn pin_value_is_redacted_in_display_and_errors() {
        let u: KeyUri = "pkcs11:token=t?pin-value=1234".parse().unwrap();
        assert!(!u.to_string().contains("1234"));
        assert!(u.to_string().contains("pin-value=[redacted]"));
        assert!(!format!("{u:?}").contains("1234"));
        assert!(u.secret_uri_string().contains("pin-value=1234"));
        assert!(!u
            .without_secrets()
            .secret_uri_string()
            .contains("pin-value"));
        for raw in [
            "pkcs11:bogus=1?pin-value=9876",
            "pkcs11:bogus=1?PIN-VALUE=9876",
            "pkcs11:token=a?pin-value=1111&pin-value=9876",
        ] {
            let err = raw.parse::<KeyUri>().unwrap_err();
            assert!(!err.to_string().contains("9876"), "{err}");
        }
    }

    #[test]
    fn piv_and_yubikey_alias() {
        let u: KeyUri = "yubikey:slot-id=9c;serial=12345678?pin-source=env:PIN"
            .parse()
            .unwrap();
        assert_eq!(u.scheme(), Scheme::Piv);
        assert_eq!(
            u.to_string(),
            "piv:slot-id=9c;serial=12345678?pin-source=env:PIN"
        );
        let r: KeyUri = "piv:slot-id=9a;reader=Yubico%20YubiKey%20OTP%2BFIDO%2BCCID%2000%2000"
            .parse()
            .unwrap();
        assert_eq!(
            r.path_str("reader"),
            Some("Yubico YubiKey OTP+FIDO+CCID 00 00")
        );
        assert_eq!(r.to_string().parse::<KeyUri>().unwrap(), r);
        assert!("piv:serial=1".parse::<KeyUri>().is_err());
        assert!("piv:slot-id=9c;serial=1;reader=x"
            .parse::<KeyUri>()
            .is_err());
    }

    #[test]
    fn soft_uri() {
        let u = KeyUri::soft("00ff");
        assert_eq!(u.to_string(), "soft:id=00ff");
        assert_eq!(
            "soft:id=00ff".parse::<KeyUri>().unwrap().soft_id(),
            Some("00ff")
        );
        assert!("soft:id=xyz".parse::<KeyUri>().is_err());
        assert!("soft:".parse::<KeyUri>().is_err());
    }

    #[test]
    fn rejects_unknown_schemes_and_attributes() {
        assert!("file:/tmp/key".parse::<KeyUri>().is_err());
        assert!("pkcs11:tokn=x".parse::<KeyUri>().is_err());
        assert!("pkcs11:token=a;token=b".parse::<KeyUri>().is_err());
        assert!("pkcs11:token".parse::<KeyUri>().is_err());
        assert!("pkcs11:x-vendor=1".parse::<KeyUri>().is_ok());
    }
}

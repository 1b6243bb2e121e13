//! Token profiles: operators name their tokens once, in `tokens/*.toml`; `on-smart-card=NAME`
//! takes a profile's file name (without `.toml`) and `yes` means the profile marked
//! `default = true`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{KeyUri, Scheme};
use crate::error::KeyError;

/// The kind of token a profile names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileKind {
    /// a PKCS#11 module and token
    Pkcs11,
    /// a PIV card over PC/SC
    Piv,
}

/// One `tokens/NAME.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TokenProfile {
    /// pkcs11 | piv
    pub kind: ProfileKind,
    /// pkcs11: the module (.so)
    pub module_path: Option<PathBuf>,
    /// pkcs11: token label
    pub token_label: Option<String>,
    /// pkcs11: token serial
    pub token_serial: Option<String>,
    /// piv: card serial
    pub serial: Option<String>,
    /// piv: reader name
    pub reader: Option<String>,
    /// piv: slot
    pub slot: Option<String>,
    /// where the PIN comes from (`file:`, `env:`, `fd:`, `prompt`)
    pub pin_source: Option<String>,
    /// piv: where the management key comes from
    pub management_key_source: Option<String>,
    /// pkcs11: session-pool size
    pub max_sessions: Option<usize>,
    /// the profile `on-smart-card=yes` means
    #[serde(default)]
    pub default: bool,
}

/// The profiles of a directory.
#[derive(Clone, Debug, Default)]
pub struct Profiles {
    dir: Option<PathBuf>,
    map: BTreeMap<String, TokenProfile>,
}

impl Profiles {
    /// Reads every `*.toml` in `dir`; a missing directory has no profiles, a bad file is an error.
    pub fn load(dir: &Path) -> Result<Self, KeyError> {
        let mut map = BTreeMap::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Profiles {
                    dir: Some(dir.to_owned()),
                    map,
                })
            }
            Err(e) => {
                return Err(KeyError::device(
                    format!("token profiles {}", dir.display()),
                    e,
                ))
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let text = std::fs::read_to_string(&path)
                .map_err(|e| KeyError::device(format!("token profile {}", path.display()), e))?;
            let profile: TokenProfile = toml::from_str(&text).map_err(|e| {
                KeyError::InvalidUri(format!("token profile {}: {}", path.display(), e.message()))
            })?;
            profile.check().map_err(|why| {
                KeyError::InvalidUri(format!("token profile {}: {why}", path.display()))
            })?;
            map.insert(name.to_owned(), profile);
        }
        if map.values().filter(|p| p.default).count() > 1 {
            return Err(KeyError::InvalidUri(format!(
                "token profiles in {}: more than one has default = true",
                dir.display()
            )));
        }
        Ok(Profiles {
            dir: Some(dir.to_owned()),
            map,
        })
    }

    /// All profiles by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &TokenProfile)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// A profile by name; `yes` is the default profile.
    pub fn get(&self, name: &str) -> Result<(&str, &TokenProfile), KeyError> {
        let found = if name == "yes" {
            self.map.iter().find(|(_, p)| p.default)
        } else {
            self.map.get_key_value(name)
        };
        found.map(|(k, v)| (k.as_str(), v)).ok_or_else(|| {
            let where_ = self
                .dir
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|| "(no --tokens directory)".into());
            KeyError::NoProvider(if name == "yes" {
                format!("on-smart-card=yes: no token profile in {where_} has default = true")
            } else {
                format!(
                    "no token profile \"{name}\" in {where_} (profiles: {})",
                    if self.map.is_empty() {
                        "none".into()
                    } else {
                        self.map.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                )
            })
        })
    }

    /// The URI where a key for `profile` is generated.
    pub fn location(&self, profile: &str) -> Result<KeyUri, KeyError> {
        let (name, p) = self.get(profile)?;
        // the key remembers its profile: its PIN comes from the profile as it is at use time
        Ok(p.location()?.with_query("profile", name))
    }
}

impl TokenProfile {
    /// What `Profiles::load` checks of each file. Public only for the fuzz targets (`fuzz/`).
    #[doc(hidden)]
    pub fn check(&self) -> Result<(), String> {
        match self.kind {
            ProfileKind::Pkcs11 => {
                if self.module_path.is_none() {
                    return Err("kind = \"pkcs11\" needs module-path".into());
                }
                if self.token_label.is_none() && self.token_serial.is_none() {
                    return Err("name the token with token-label or token-serial".into());
                }
            }
            ProfileKind::Piv => {
                if self.serial.is_some() && self.reader.is_some() {
                    return Err("give serial or reader, not both".into());
                }
            }
        }
        if let Some(s) = &self.pin_source {
            s.parse::<crate::secret::SecretSource>()
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The key URI a profile stands for (without an object id).
    pub fn location(&self) -> Result<KeyUri, KeyError> {
        let mut uri = match self.kind {
            ProfileKind::Pkcs11 => {
                let mut u = KeyUri::new(Scheme::Pkcs11);
                if let Some(l) = &self.token_label {
                    u = u.with_path("token", l);
                }
                if let Some(s) = &self.token_serial {
                    u = u.with_path("serial", s);
                }
                if let Some(m) = &self.module_path {
                    u = u.with_query("module-path", m.to_string_lossy().as_bytes());
                }
                u
            }
            ProfileKind::Piv => {
                let mut u = KeyUri::new(Scheme::Piv)
                    .with_path("slot-id", self.slot.as_deref().unwrap_or("9c"));
                if let Some(s) = &self.serial {
                    u = u.with_path("serial", s);
                }
                if let Some(r) = &self.reader {
                    u = u.with_path("reader", r);
                }
                if let Some(m) = &self.management_key_source {
                    u = u.with_query("management-key-source", m);
                }
                u
            }
        };
        if let Some(p) = &self.pin_source {
            uri = uri.with_query("pin-source", p);
        }
        Ok(uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_example_profiles_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tokens");
        let p = Profiles::load(&dir).unwrap();
        let (name, soft) = p.get("yes").unwrap();
        assert_eq!(name, "softhsm");
        assert_eq!(soft.kind, ProfileKind::Pkcs11);
        let uri = p.location("softhsm").unwrap();
        assert_eq!(uri.path_str("token"), Some("certman"));
        assert_eq!(
            uri.query_str("module-path"),
            Some("/usr/lib/softhsm/libsofthsm2.so")
        );
        assert!(p.get("yubikey").is_ok() && p.get("opensc").is_ok());
        assert_eq!(p.location("piv-yubikey").unwrap().scheme(), Scheme::Piv);
        assert!(p.get("nosuch").is_err());
    }

    #[test]
    fn bad_profiles_are_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("x.toml"), "kind = \"pkcs11\"\n").unwrap();
        assert!(Profiles::load(d.path()).is_err());
        std::fs::write(
            d.path().join("x.toml"),
            "kind = \"pkcs11\"\nmodule-path = \"/m.so\"\ntoken-label = \"t\"\ncolour = 1\n",
        )
        .unwrap();
        assert!(Profiles::load(d.path()).is_err());
        std::fs::write(
            d.path().join("x.toml"),
            "kind = \"pkcs11\"\nmodule-path = \"/m.so\"\ntoken-label = \"t\"\npin-source = \"1234\"\n",
        )
        .unwrap();
        assert!(
            Profiles::load(d.path()).is_err(),
            "a PIN is not a pin-source"
        );
        assert!(Profiles::load(&d.path().join("missing"))
            .unwrap()
            .iter()
            .next()
            .is_none());
    }
}

//! Where the sealing key comes from: the machine id, a key file, or a key on a token
//! ([`SealingKeySource`]), and what a source's text may say.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::{KeyError, SealError};
use crate::secret::SecretBytes;

use super::{KeyTransport, Sealer, WRAP_META_PREFIX};

/// Environment variable naming a file to read instead of `/etc/machine-id` (tests, containers).
pub const MACHINE_ID_FILE_ENV: &str = "CERTMAN_MACHINE_ID_FILE";
const DEFAULT_MACHINE_ID: &str = "/etc/machine-id";
/// What a token's secret key MACs, before the store's salt: the key material of a `pkcs11:`
/// source is HMAC-SHA256(token key, this ‖ salt).
const TOKEN_INFO: &[u8] = b"certman seal-key-source pkcs11 v1\0";

/// Where the sealing key comes from: `--seal-key-source` / `$CERTMAN_SEAL_KEY_SOURCE`
/// ([`SealingKeySource::parse`]), the machine id by default.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealingKeySource {
    /// The machine's hardware id (`/etc/machine-id`), with the store's salt: one machine.
    MachineId {
        /// the file holding it
        path: PathBuf,
    },
    /// A key file (`file:PATH`): at least 32 bytes, a regular file of this user that no one
    /// else may read (0600 or 0400). The same file on every node makes a store's secrets
    /// open on all of them (several `serve` nodes on one PostgreSQL store).
    KeyFile {
        /// the file
        path: PathBuf,
    },
    /// A secret key (CKK_GENERIC_SECRET, sensitive, not extractable) on a PKCS#11 token,
    /// named as certman's key URIs are: `pkcs11:token=L;object=L?module-path=…&pin-source=…`
    /// (or `pkcs11:object=L?profile=NAME`, the token, module and PIN from a token profile).
    /// The key material is an HMAC-SHA256 the token computes over the store's salt; the key
    /// never leaves the token, and every node that reaches the token (an HSM) opens the
    /// store's secrets.
    Pkcs11 {
        /// the URI as given (a `pin-value` is refused by [`SealingKeySource::parse`])
        uri: String,
    },
    /// An RSA key on a PIV card (no secret keys there: key transport), named as certman's
    /// key URIs are: `piv:slot-id=9d;reader=R?pin-source=file:…` (or `serial=N`, or
    /// `?profile=NAME` for the card and PIN of a token profile). The key material is a random
    /// 32-byte data key that the store keeps only wrapped to the card key's public key (read
    /// from the certificate in the slot), under [`KeyTransport::meta_name`]; the card unwraps
    /// it, and every node that has the card (or a card holding the same key) opens the
    /// store's secrets.
    Piv {
        /// the URI as given (a `pin-value` is refused by [`SealingKeySource::parse`])
        uri: String,
    },
}

/// A device holding the secret key of a [`SealingKeySource::Pkcs11`] source: it computes
/// HMAC-SHA256 with the key, which never leaves it. The key router implements it.
pub trait SealingKeyDevice {
    /// HMAC-SHA256 of `data` under the secret key `uri` names, computed on the device.
    fn seal_key_hmac(&self, uri: &str, data: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError>;
    /// The public key (SubjectPublicKeyInfo, DER) of the key pair `uri` names (a
    /// [`SealingKeySource::Piv`] source).
    fn seal_key_public_key(&self, uri: &str) -> Result<Vec<u8>, KeyError> {
        Err(KeyError::NoProvider(format!(
            "{uri}: no provider here reaches this sealing key"
        )))
    }
    /// RSAES-PKCS1-v1_5 decryption of `ciphertext` with the private key `uri` names, on the
    /// device (it unwraps a [`SealingKeySource::Piv`] source's data key).
    fn seal_key_decrypt(&self, uri: &str, ciphertext: &[u8]) -> Result<SecretBytes, KeyError> {
        let _ = ciphertext;
        Err(KeyError::NoProvider(format!(
            "{uri}: no provider here reaches this sealing key"
        )))
    }
}

/// Environment variable choosing the sealing key's source (`--seal-key-source`).
pub const SEAL_KEY_SOURCE_ENV: &str = "CERTMAN_SEAL_KEY_SOURCE";
/// The least key material a key file holds.
const KEY_FILE_MIN_BYTES: usize = 32;

impl SealingKeySource {
    /// The default: the machine id from `$CERTMAN_MACHINE_ID_FILE`, else `/etc/machine-id`.
    pub fn from_env() -> Self {
        SealingKeySource::MachineId {
            path: std::env::var_os(MACHINE_ID_FILE_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_MACHINE_ID)),
        }
    }

    /// A source as the operator names it: `machine-id` (the default, see
    /// [`SealingKeySource::from_env`]), `file:PATH`, `pkcs11:…` or `piv:…`.
    pub fn parse(text: &str) -> Result<Self, SealError> {
        // a PIN given in it is not repeated in the error
        let shown = match text.split_once('?') {
            Some((before, query)) if query.to_ascii_lowercase().contains("pin-value") => {
                format!("{before}?…")
            }
            _ => text.to_owned(),
        };
        let bad = |reason: &str| SealError::Source {
            what: format!("seal-key-source '{shown}'"),
            reason: reason.to_owned(),
        };
        match text.split_once(':') {
            _ if text == "machine-id" => Ok(SealingKeySource::from_env()),
            Some(("file", path)) if !path.is_empty() => {
                Ok(SealingKeySource::KeyFile { path: path.into() })
            }
            Some(("file", _)) => Err(bad("file: needs a path (file:PATH)")),
            Some(("pkcs11", rest)) => {
                check_pkcs11(rest).map_err(|why| bad(&why))?;
                Ok(SealingKeySource::Pkcs11 {
                    uri: text.to_owned(),
                })
            }
            Some(("piv", rest)) => {
                check_piv(rest).map_err(|why| bad(&why))?;
                Ok(SealingKeySource::Piv {
                    uri: text.to_owned(),
                })
            }
            _ => Err(bad(
                "use machine-id, file:PATH, pkcs11:token=LABEL;object=LABEL?module-path=… \
                 or piv:slot-id=9d;reader=NAME?pin-source=file:PATH",
            )),
        }
    }

    /// The sealer of a store whose random salt is `store_salt`, for the sources that need no
    /// device (a `pkcs11:` source needs [`SealingKeySource::sealer_with`]).
    pub fn sealer(&self, store_salt: &[u8]) -> Result<Sealer, SealError> {
        self.sealer_with(store_salt, None)
    }

    /// The sealer of a store whose random salt is `store_salt`; `device` computes the HMAC
    /// of a `pkcs11:` source. A `piv:` source needs its wrapped key from the store: see
    /// [`SealingKeySource::key_transport`].
    pub fn sealer_with(
        &self,
        store_salt: &[u8],
        device: Option<&dyn SealingKeyDevice>,
    ) -> Result<Sealer, SealError> {
        match self {
            SealingKeySource::MachineId { path } => {
                Sealer::new(&read_machine_id(path)?, store_salt)
            }
            SealingKeySource::KeyFile { path } => Sealer::new(&read_key_file(path)?, store_salt),
            SealingKeySource::Pkcs11 { uri } => {
                let device = device.ok_or_else(|| SealError::Source {
                    what: format!("the sealing key {uri}"),
                    reason: "no PKCS#11 provider here to reach it".into(),
                })?;
                let mut data =
                    Zeroizing::new(Vec::with_capacity(TOKEN_INFO.len() + store_salt.len()));
                data.extend_from_slice(TOKEN_INFO);
                data.extend_from_slice(store_salt);
                let material =
                    device
                        .seal_key_hmac(uri, &data)
                        .map_err(|source| SealError::Token {
                            uri: uri.clone(),
                            source: Box::new(source),
                        })?;
                Sealer::new(&material, store_salt)
            }
            SealingKeySource::Piv { uri } => Err(SealError::Source {
                what: format!("the sealing key {uri}"),
                reason: "a piv: source's data key is kept in the store: open it through the store"
                    .into(),
            }),
        }
    }

    /// A key-transport source (`piv:`) as its device shows it: the card key's public key and
    /// the name the store keeps the wrapped data key under. `None` for the other sources
    /// (their sealer is [`SealingKeySource::sealer_with`]'s). Reads the public key from the
    /// device; spends no PIN.
    pub fn key_transport<'a>(
        &'a self,
        device: Option<&'a dyn SealingKeyDevice>,
    ) -> Result<Option<KeyTransport<'a>>, SealError> {
        let SealingKeySource::Piv { uri } = self else {
            return Ok(None);
        };
        let token = |source: KeyError| SealError::Token {
            uri: uri.clone(),
            source: Box::new(source),
        };
        let device = device.ok_or_else(|| SealError::Source {
            what: format!("the sealing key {uri}"),
            reason: "no PIV provider here to reach it".into(),
        })?;
        let spki = device.seal_key_public_key(uri).map_err(token)?;
        let not_rsa = |why: &str| {
            token(KeyError::Unsupported(format!(
                "{why}: a piv: sealing key is an RSA key of 2048 bits or more (the data key is \
                 RSA-encrypted to it)"
            )))
        };
        let public = aws_lc_rs::rsa::PublicEncryptingKey::from_der(&spki)
            .map_err(|_| not_rsa("the key in the slot is not an RSA key aws-lc accepts"))?;
        if public.key_size_bits() < 2048 {
            return Err(not_rsa(&format!(
                "the key in the slot is RSA-{}",
                public.key_size_bits()
            )));
        }
        let public = aws_lc_rs::rsa::Pkcs1PublicEncryptingKey::new(public)
            .map_err(|_| not_rsa("the key in the slot cannot encrypt"))?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &spki);
        Ok(Some(KeyTransport {
            uri,
            device,
            public,
            meta_name: format!("{WRAP_META_PREFIX}{}", hex::encode(digest.as_ref())),
        }))
    }
}

/// The attributes of a token URI's path (`;`-separated) and query (`&`-separated): each
/// name (without case) and whether it has a value; refused when it carries a PIN.
struct UriAttributes {
    path: Vec<(String, bool)>,
    query: Vec<(String, bool)>,
}

impl UriAttributes {
    fn of(rest: &str) -> Result<Self, String> {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let attrs = |part: &str, sep: char| -> Vec<(String, bool)> {
            part.split(sep)
                .filter(|a| !a.is_empty())
                .map(|a| {
                    let (k, v) = a.split_once('=').unwrap_or((a, ""));
                    (k.to_ascii_lowercase(), !v.is_empty())
                })
                .collect()
        };
        let attrs = UriAttributes {
            path: attrs(path, ';'),
            query: attrs(query, '&'),
        };
        if attrs.query.iter().any(|(n, _)| n == "pin-value") {
            return Err(
                "a PIN in it (pin-value=) would sit in the environment or a config file: \
                 use pin-source=file:PATH"
                    .into(),
            );
        }
        Ok(attrs)
    }

    /// Whether the path has `name=` with a value.
    fn in_path(&self, name: &str) -> bool {
        self.path.iter().any(|(n, full)| n == name && *full)
    }

    /// Whether the query has `name=` with a value.
    fn in_query(&self, name: &str) -> bool {
        self.query.iter().any(|(n, full)| n == name && *full)
    }
}

/// What `parse` checks of a `pkcs11:` source (the rest is the key router's): an object
/// label, a token (or a profile naming one), a module (or a profile), and no PIN in it.
fn check_pkcs11(rest: &str) -> Result<(), String> {
    let a = UriAttributes::of(rest)?;
    if !a.in_path("object") {
        return Err("name the secret key with object=LABEL".into());
    }
    let profile = a.in_query("profile");
    if !profile && !a.in_path("token") && !a.in_path("serial") {
        return Err("name the token with token=LABEL (or serial=, or ?profile=NAME)".into());
    }
    if !profile && !a.in_query("module-path") {
        return Err("name the PKCS#11 module with ?module-path=… (or ?profile=NAME)".into());
    }
    Ok(())
}

/// What `parse` checks of a `piv:` source (the rest is the key router's): a slot, a card
/// (reader, serial, or a profile naming one), and no PIN in it.
fn check_piv(rest: &str) -> Result<(), String> {
    let a = UriAttributes::of(rest)?;
    if !a.in_path("slot-id") {
        return Err("name the card's RSA key with slot-id= (9d: key management)".into());
    }
    if !a.in_path("reader") && !a.in_path("serial") && !a.in_query("profile") {
        return Err("name the card with reader=NAME or serial=N (or ?profile=NAME)".into());
    }
    Ok(())
}

/// Reads a sealing key file, refusing one that others may read, that is not this user's, or
/// that holds less than [`KEY_FILE_MIN_BYTES`].
pub fn read_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, SealError> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let source = |reason: String| SealError::Source {
        what: format!("the sealing key file {}", path.display()),
        reason,
    };
    let mut f = std::fs::File::open(path).map_err(|e| source(e.to_string()))?;
    let meta = f.metadata().map_err(|e| source(e.to_string()))?;
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    if !meta.is_file() {
        return Err(source("not a regular file".into()));
    }
    if meta.uid() != uid {
        return Err(source(format!(
            "owned by uid {}, not this user (uid {uid})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(source(format!(
            "mode {:04o}: others may read it (chmod 600 it)",
            meta.mode() & 0o7777
        )));
    }
    let mut raw = Zeroizing::new(Vec::new());
    f.by_ref()
        .take(64 * 1024)
        .read_to_end(&mut raw)
        .map_err(|e| source(e.to_string()))?;
    let key = Zeroizing::new(raw.trim_ascii().to_vec());
    if key.len() < KEY_FILE_MIN_BYTES {
        return Err(source(format!(
            "{} bytes: a key file holds at least {KEY_FILE_MIN_BYTES} (e.g. `head -c 32 /dev/urandom | base64 > FILE`)",
            key.len()
        )));
    }
    Ok(key)
}

/// Reads the machine's hardware id.
pub fn read_machine_id(path: &Path) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let source = |reason: String| SealError::Source {
        what: format!(
            "the machine id from {} (set {MACHINE_ID_FILE_ENV} to another file)",
            path.display()
        ),
        reason,
    };
    let raw = Zeroizing::new(std::fs::read(path).map_err(|e| source(e.to_string()))?);
    let trimmed: Vec<u8> = raw.trim_ascii().to_vec();
    if trimmed.len() < 16 {
        return Err(source("missing or shorter than 16 characters".into()));
    }
    Ok(Zeroizing::new(trimmed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::SealLabel;

    #[test]
    fn sources_parse() {
        assert!(matches!(
            SealingKeySource::parse("machine-id").unwrap(),
            SealingKeySource::MachineId { .. }
        ));
        assert_eq!(
            SealingKeySource::parse("file:/etc/certman/seal.key").unwrap(),
            SealingKeySource::KeyFile {
                path: "/etc/certman/seal.key".into()
            }
        );
        for bad in ["file:", "pkcs12:x", "", "machine-id:x"] {
            assert!(SealingKeySource::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pkcs11_sources_parse() {
        for good in [
            "pkcs11:token=CA;object=seal?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/certman/ca.pin",
            "pkcs11:serial=0123abcd;object=seal%20key?module-path=/m.so",
            "pkcs11:object=seal?profile=hsm",
            "pkcs11:token=CA;object=seal?module-path=/m.so",
        ] {
            assert_eq!(
                SealingKeySource::parse(good).unwrap(),
                SealingKeySource::Pkcs11 { uri: good.into() },
                "{good}"
            );
        }
        for (bad, why) in [
            ("pkcs11:", "object="),
            ("pkcs11:token=CA?module-path=/m.so", "object="),
            ("pkcs11:token=CA;object=?module-path=/m.so", "object="),
            ("pkcs11:object=seal?module-path=/m.so", "token="),
            ("pkcs11:token=CA;object=seal", "module-path"),
            (
                "pkcs11:token=CA;object=seal?module-path=/m.so&pin-value=123456",
                "pin-source",
            ),
        ] {
            let e = SealingKeySource::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
            assert!(!e.contains("123456"), "no PIN in it: {e}");
        }
        // without a device to reach the token, no sealer, and a clear line
        let source = SealingKeySource::parse("pkcs11:object=seal?profile=hsm").unwrap();
        let e = source.sealer(b"salt").unwrap_err().to_string();
        assert!(e.contains("PKCS#11"), "{e}");
    }

    /// A device that MACs with a key in memory (the token's part, for the derivation).
    struct FakeToken(Vec<u8>);
    impl SealingKeyDevice for FakeToken {
        fn seal_key_hmac(&self, uri: &str, data: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
            if uri.contains("object=missing") {
                return Err(KeyError::NotFound("no secret key \"missing\"".into()));
            }
            let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.0);
            Ok(Zeroizing::new(
                aws_lc_rs::hmac::sign(&k, data).as_ref().to_vec(),
            ))
        }
    }

    #[test]
    fn a_token_key_seals_through_its_device() {
        let uri = "pkcs11:object=seal?profile=hsm";
        let source = SealingKeySource::parse(uri).unwrap();
        let a = source
            .sealer_with(b"salt", Some(&FakeToken(vec![7; 32])))
            .unwrap();
        let b = source
            .sealer_with(b"salt", Some(&FakeToken(vec![7; 32])))
            .unwrap();
        let blob = a.seal(SealLabel::SoftKey("k"), b"secret").unwrap();
        assert_eq!(
            b.open(SealLabel::SoftKey("k"), &blob)
                .unwrap()
                .secret_bytes(),
            b"secret"
        );
        // another token key, or another store's salt, opens nothing
        let other = source
            .sealer_with(b"salt", Some(&FakeToken(vec![8; 32])))
            .unwrap();
        assert!(other.open(SealLabel::SoftKey("k"), &blob).is_err());
        let salt2 = source
            .sealer_with(b"salt2", Some(&FakeToken(vec![7; 32])))
            .unwrap();
        assert!(salt2.open(SealLabel::SoftKey("k"), &blob).is_err());
        // the device's error names the source, on one line
        let missing = SealingKeySource::parse("pkcs11:object=missing?profile=hsm").unwrap();
        let e = missing
            .sealer_with(b"salt", Some(&FakeToken(vec![7; 32])))
            .unwrap_err();
        assert!(matches!(e, SealError::Token { .. }), "{e:?}");
        let line = e.to_string();
        assert!(
            line.contains("object=missing") && line.contains("no secret key"),
            "{line}"
        );
    }

    #[test]
    fn piv_sources_parse() {
        for good in [
            "piv:slot-id=9d;reader=Yubico%20YubiKey%2000%2000?pin-source=file:/etc/certman/piv.pin",
            "piv:slot-id=9d;serial=12345678",
            "piv:slot-id=82?profile=card",
            "piv:SLOT-ID=9d;Reader=r",
        ] {
            assert_eq!(
                SealingKeySource::parse(good).unwrap(),
                SealingKeySource::Piv { uri: good.into() },
                "{good}"
            );
        }
        for (bad, why) in [
            ("piv:", "slot-id="),
            ("piv:reader=r", "slot-id="),
            ("piv:slot-id=;reader=r", "slot-id="),
            ("piv:slot-id=9d", "reader="),
            ("piv:slot-id=9d;reader=", "reader="),
            ("piv:slot-id=9d;reader=r?pin-value=123456", "pin-source"),
            ("yubikey:slot-id=9d;reader=r", "piv:slot-id"),
        ] {
            let e = SealingKeySource::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
            assert!(!e.contains("123456"), "no PIN in it: {e}");
        }
        // its data key is in the store: no sealer without it, and none without a device
        let source = SealingKeySource::parse("piv:slot-id=9d;serial=1").unwrap();
        assert!(source.sealer(b"salt").is_err());
        let e = source.key_transport(None).unwrap_err().to_string();
        assert!(e.contains("PIV"), "{e}");
        assert!(SealingKeySource::parse("machine-id")
            .unwrap()
            .key_transport(None)
            .unwrap()
            .is_none());
    }

    #[test]
    fn key_files_are_private_and_long_enough() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("seal.key");
        let write = |text: &str, mode: u32| {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        let key = "k".repeat(32);
        write(&format!("{key}\n"), 0o600);
        assert_eq!(read_key_file(&path).unwrap().as_slice(), key.as_bytes());
        write(&key, 0o400);
        assert!(read_key_file(&path).is_ok());
        write(&key, 0o640);
        let e = read_key_file(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        write(&"k".repeat(31), 0o600);
        let e = read_key_file(&path).unwrap_err().to_string();
        assert!(e.contains("at least 32"), "{e}");
        assert!(read_key_file(d.path()).is_err(), "a directory");
        assert!(read_key_file(&d.path().join("missing")).is_err());
        // the same file seals the same on every node: one store's salt, one key
        write(&key, 0o600);
        let a = SealingKeySource::KeyFile { path: path.clone() }
            .sealer(b"salt")
            .unwrap();
        let b = SealingKeySource::KeyFile { path: path.clone() }
            .sealer(b"salt")
            .unwrap();
        let blob = a.seal(SealLabel::SoftKey("k"), b"secret").unwrap();
        assert_eq!(
            b.open(SealLabel::SoftKey("k"), &blob)
                .unwrap()
                .secret_bytes(),
            b"secret"
        );
    }

    #[test]
    fn machine_id_must_be_present_and_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mid");
        std::fs::write(&p, "short\n").unwrap();
        assert!(read_machine_id(&p).is_err());
        std::fs::write(&p, "3d1219c7c4c5404aaa1f6d2a48adfda4\n").unwrap();
        assert_eq!(read_machine_id(&p).unwrap().len(), 32);
        let e = read_machine_id(&dir.path().join("missing")).unwrap_err();
        let line = e.to_string();
        assert!(
            line.contains("machine id") && line.contains(MACHINE_ID_FILE_ENV),
            "{line}"
        );
        let source = SealingKeySource::MachineId { path: p };
        assert!(source.sealer(b"salt").is_ok());
    }
}

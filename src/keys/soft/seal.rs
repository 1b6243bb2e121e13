//! Sealing of software private keys at rest: AES-256-GCM under a key derived with HKDF-SHA256
//! from the machine's hardware id and the store's random salt — as RouterOS seals keys with its
//! hardware id. A store copied to another machine cannot be opened there.

use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
use zeroize::Zeroizing;

use crate::error::KeyError;

/// Environment variable naming a file to read instead of `/etc/machine-id` (tests, containers).
pub const MACHINE_ID_FILE_ENV: &str = "CERTMAN_MACHINE_ID_FILE";
const DEFAULT_MACHINE_ID: &str = "/etc/machine-id";
const FORMAT_V1: u8 = 1;
const INFO: &[u8] = b"certman soft-key seal v1";

/// Where the machine id is read from: `$CERTMAN_MACHINE_ID_FILE`, else `/etc/machine-id`.
pub fn machine_id_path() -> PathBuf {
    std::env::var_os(MACHINE_ID_FILE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MACHINE_ID))
}

/// Reads the machine's hardware id.
pub fn read_machine_id(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let raw = std::fs::read(path).map_err(|e| {
        KeyError::device(
            format!(
                "cannot read the machine id from {} (set {MACHINE_ID_FILE_ENV} to another file)",
                path.display()
            ),
            e,
        )
    })?;
    let raw = Zeroizing::new(raw);
    let trimmed: Vec<u8> = raw.trim_ascii().to_vec();
    if trimmed.len() < 16 {
        return Err(KeyError::device(
            format!("machine id in {}", path.display()),
            "missing or shorter than 16 characters",
        ));
    }
    Ok(Zeroizing::new(trimmed))
}

/// Seals and opens key blobs. `Debug` shows nothing of the key.
pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

struct Aes256Len;
impl aws_lc_rs::hkdf::KeyType for Aes256Len {
    fn len(&self) -> usize {
        AES_256_GCM.key_len()
    }
}

impl Sealer {
    /// Derives the sealing key from the machine id and the store's salt.
    pub fn new(machine_id: &[u8], store_salt: &[u8]) -> Result<Self, KeyError> {
        let prk = Salt::new(HKDF_SHA256, store_salt).extract(machine_id);
        let okm = prk
            .expand(&[INFO], Aes256Len)
            .map_err(|_| KeyError::device("seal key derivation", "HKDF expand failed"))?;
        let mut bytes = Zeroizing::new([0u8; 32]);
        okm.fill(bytes.as_mut())
            .map_err(|_| KeyError::device("seal key derivation", "HKDF fill failed"))?;
        let unbound = UnboundKey::new(&AES_256_GCM, bytes.as_ref())
            .map_err(|_| KeyError::device("seal key", "AES-256-GCM key rejected"))?;
        Ok(Sealer {
            key: LessSafeKey::new(unbound),
        })
    }

    /// Encrypts `plaintext`, bound to `key_id` (the AAD) so sealed blobs cannot be swapped
    /// between rows. Output: version ‖ nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, key_id: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce)
            .map_err(|_| KeyError::device("seal", "random generator failed"))?;
        let mut buf = Zeroizing::new(plaintext.to_vec());
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key_id.as_bytes()),
                &mut *buf,
            )
            .map_err(|_| KeyError::device("seal", "AES-256-GCM failed"))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Decrypts a blob made by [`Sealer::seal`] for the same `key_id`.
    pub fn open(&self, key_id: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let fail = || KeyError::Unseal {
            id: key_id.to_owned(),
        };
        if sealed.len() < 1 + NONCE_LEN + AES_256_GCM.tag_len() || sealed[0] != FORMAT_V1 {
            return Err(fail());
        }
        let nonce =
            Nonce::try_assume_unique_for_key(&sealed[1..1 + NONCE_LEN]).map_err(|_| fail())?;
        let mut buf = Zeroizing::new(sealed[1 + NONCE_LEN..].to_vec());
        let len = self
            .key
            .open_in_place(nonce, Aad::from(key_id.as_bytes()), &mut buf)
            .map_err(|_| fail())?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let s = Sealer::new(b"0123456789abcdef0123456789abcdef", b"salt-1").unwrap();
        let blob = s.seal("k1", b"secret key bytes").unwrap();
        assert!(!blob.windows(6).any(|w| w == b"secret"));
        assert_eq!(&*s.open("k1", &blob).unwrap(), b"secret key bytes");
        // bound to the key id
        assert!(s.open("k2", &blob).is_err());
        // another machine or another store's salt cannot open it
        let other_machine = Sealer::new(b"fedcba9876543210fedcba9876543210", b"salt-1").unwrap();
        assert!(other_machine.open("k1", &blob).is_err());
        let other_salt = Sealer::new(b"0123456789abcdef0123456789abcdef", b"salt-2").unwrap();
        assert!(other_salt.open("k1", &blob).is_err());
        // tampering is detected
        let mut bad = blob.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(s.open("k1", &bad).is_err());
        assert!(s.open("k1", &blob[..10]).is_err());
    }

    #[test]
    fn machine_id_must_be_present_and_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mid");
        std::fs::write(&p, "short\n").unwrap();
        assert!(read_machine_id(&p).is_err());
        std::fs::write(&p, "3d1219c7c4c5404aaa1f6d2a48adfda4\n").unwrap();
        assert_eq!(read_machine_id(&p).unwrap().len(), 32);
        assert!(read_machine_id(&dir.path().join("missing")).is_err());
    }
}

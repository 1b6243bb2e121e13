//! Secrets at rest: software private keys, CA export passphrases and keys kept encrypted are
//! stored only sealed — AES-256-GCM under a key derived with HKDF-SHA256 from a
//! [`SealingKeySource`] and the store's random salt, each blob bound to what it is
//! ([`SealLabel`]). With the machine-id source (the default) a store copied to another machine
//! cannot be opened there, as RouterOS seals keys with its hardware id.
//!
//! This room sits beside `secret.rs`, below `keys` and `manager`: the software key backend
//! asks it to seal keys, the manager asks it to seal the other secrets; neither owns it. A
//! source whose root lives on a token (`pkcs11:`, `piv:`) reaches it through a
//! [`SealingKeyDevice`] that the composition root hands in (the key router's token providers),
//! so this room names no key backend. A `piv:` source is key transport ([`KeyTransport`]): a
//! random data key, kept in the store only wrapped (RSA-encrypted) to the card key's public
//! key and unwrapped on the card; the store side (finding and keeping the wrapped key) is the
//! caller's.

mod source;
mod transport;

pub use self::source::{
    read_key_file, read_machine_id, SealingKeyDevice, SealingKeySource, MACHINE_ID_FILE_ENV,
    SEAL_KEY_SOURCE_ENV,
};
pub use self::transport::{KeyTransport, WRAP_META_PREFIX};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
use zeroize::Zeroizing;

use crate::error::SealError;
use crate::secret::SecretBytes;

const FORMAT_V1: u8 = 1;
const INFO: &[u8] = b"certman soft-key seal v1";

/// What a sealed blob is: the label is its AAD, so a blob cannot be moved to another row or
/// another use. The byte strings are those of store schema 1–3 and must not change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealLabel<'a> {
    /// a software private key (PKCS#8), by its store id
    SoftKey(&'a str),
    /// a key imported still encrypted (v2.8 flag Q)
    EncryptedKey,
    /// the export passphrase of a CA, by its certificate's row id
    CaPassphrase(i64),
    /// the challenge password of a SCEP client, by the client's name
    ScepChallenge(&'a str),
    /// a SCEP client's request in flight (it may hold the challenge password), by the
    /// client's name
    ScepRequest(&'a str),
}

impl SealLabel<'_> {
    fn aad(&self) -> String {
        match self {
            SealLabel::SoftKey(id) => (*id).to_owned(),
            SealLabel::EncryptedKey => "encrypted-key".to_owned(),
            SealLabel::CaPassphrase(id) => format!("ca-passphrase:{id}"),
            SealLabel::ScepChallenge(name) => format!("scep-challenge:{name}"),
            SealLabel::ScepRequest(name) => format!("scep-request:{name}"),
        }
    }
}

impl std::fmt::Display for SealLabel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealLabel::SoftKey(id) => write!(f, "key {id}"),
            SealLabel::EncryptedKey => f.write_str("a key kept encrypted"),
            SealLabel::CaPassphrase(_) => f.write_str("a CA's export passphrase"),
            SealLabel::ScepChallenge(_) => f.write_str("a SCEP challenge password"),
            SealLabel::ScepRequest(_) => f.write_str("a SCEP client's request"),
        }
    }
}

/// Seals and opens secrets. `Debug` shows nothing of the key.
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
    /// Derives the sealing key from key material (the machine id) and the store's salt.
    pub fn new(secret: &[u8], store_salt: &[u8]) -> Result<Self, SealError> {
        let prk = Salt::new(HKDF_SHA256, store_salt).extract(secret);
        let okm = prk
            .expand(&[INFO], Aes256Len)
            .map_err(|_| SealError::Crypto("HKDF expand failed"))?;
        let mut bytes = Zeroizing::new([0u8; 32]);
        okm.fill(bytes.as_mut())
            .map_err(|_| SealError::Crypto("HKDF fill failed"))?;
        let unbound = UnboundKey::new(&AES_256_GCM, bytes.as_ref())
            .map_err(|_| SealError::Crypto("AES-256-GCM key rejected"))?;
        Ok(Sealer {
            key: LessSafeKey::new(unbound),
        })
    }

    /// Encrypts `plaintext`, bound to `label`. Output: version ‖ nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, label: SealLabel<'_>, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce)
            .map_err(|_| SealError::Crypto("random generator failed"))?;
        let mut buf = Zeroizing::new(plaintext.to_vec());
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(label.aad().as_bytes()),
                &mut *buf,
            )
            .map_err(|_| SealError::Crypto("AES-256-GCM failed"))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Decrypts a blob made by [`Sealer::seal`] for the same `label`.
    pub fn open(&self, label: SealLabel<'_>, sealed: &[u8]) -> Result<SecretBytes, SealError> {
        let fail = || SealError::Unseal {
            what: label.to_string(),
        };
        if sealed.len() < 1 + NONCE_LEN + AES_256_GCM.tag_len() || sealed[0] != FORMAT_V1 {
            return Err(fail());
        }
        let nonce =
            Nonce::try_assume_unique_for_key(&sealed[1..1 + NONCE_LEN]).map_err(|_| fail())?;
        let mut buf = Zeroizing::new(sealed[1 + NONCE_LEN..].to_vec());
        let len = self
            .key
            .open_in_place(nonce, Aad::from(label.aad().as_bytes()), &mut buf)
            .map_err(|_| fail())?
            .len();
        buf.truncate(len);
        Ok(SecretBytes::from(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let s = Sealer::new(b"0123456789abcdef0123456789abcdef", b"salt-1").unwrap();
        let k1 = SealLabel::SoftKey("k1");
        let blob = s.seal(k1, b"secret key bytes").unwrap();
        assert!(!blob.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            s.open(k1, &blob).unwrap().secret_bytes(),
            b"secret key bytes"
        );
        // bound to the label
        assert!(s.open(SealLabel::SoftKey("k2"), &blob).is_err());
        assert!(s.open(SealLabel::EncryptedKey, &blob).is_err());
        // another machine or another store's salt cannot open it
        let other_machine = Sealer::new(b"fedcba9876543210fedcba9876543210", b"salt-1").unwrap();
        assert!(other_machine.open(k1, &blob).is_err());
        let other_salt = Sealer::new(b"0123456789abcdef0123456789abcdef", b"salt-2").unwrap();
        assert!(other_salt.open(k1, &blob).is_err());
        // tampering is detected
        let mut bad = blob.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(s.open(k1, &bad).is_err());
        assert!(s.open(k1, &blob[..10]).is_err());
    }

    #[test]
    fn labels_keep_the_byte_strings_existing_stores_were_sealed_with() {
        assert_eq!(SealLabel::SoftKey("00ff").aad(), "00ff");
        assert_eq!(SealLabel::EncryptedKey.aad(), "encrypted-key");
        assert_eq!(SealLabel::CaPassphrase(7).aad(), "ca-passphrase:7");
        // a CA passphrase sealed for one CA does not open as another's
        let s = Sealer::new(b"0123456789abcdef0123456789abcdef", b"salt").unwrap();
        let blob = s.seal(SealLabel::CaPassphrase(1), b"pass").unwrap();
        assert!(s.open(SealLabel::CaPassphrase(2), &blob).is_err());
    }
}

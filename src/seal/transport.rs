//! Key transport for a `piv:` source: a random data key, kept in the store only wrapped
//! (RSA-encrypted) to the card key's public key, unwrapped on the card.

use zeroize::Zeroizing;

use crate::error::{KeyError, SealError};
use crate::secret::SecretBytes;

use super::{Sealer, SealingKeyDevice};

/// The store's meta names of wrapped data keys begin so; the SHA-256 of the card key's
/// SubjectPublicKeyInfo (hex) follows, so a key is only ever unwrapped by the key it was
/// wrapped to.
pub const WRAP_META_PREFIX: &str = "seal-wrap:";
/// The first byte of a wrapped data key as stored: RSAES-PKCS1-v1_5 ciphertext follows.
const WRAP_FORMAT_V1: u8 = 1;
/// The length of a data key.
const DATA_KEY_BYTES: usize = 32;

/// A `piv:` source met on its device (see [`SealingKeySource::key_transport`]): the store
/// keeps its data key under [`KeyTransport::meta_name`], wrapped to [`KeyTransport`]'s public
/// key; [`KeyTransport::open`] unwraps it on the card, [`KeyTransport::make`] makes one for a
/// store that has none. Keeping it (insert-if-absent, in a write transaction) is the caller's.
pub struct KeyTransport<'a> {
    pub(super) uri: &'a str,
    pub(super) device: &'a dyn SealingKeyDevice,
    pub(super) public: aws_lc_rs::rsa::Pkcs1PublicEncryptingKey,
    /// where the store keeps the wrapped data key: `seal-wrap:<SHA-256 of the SPKI, hex>`
    pub meta_name: String,
}

impl std::fmt::Debug for KeyTransport<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyTransport")
            .field("uri", &self.uri)
            .field("meta_name", &self.meta_name)
            .finish_non_exhaustive()
    }
}

impl KeyTransport<'_> {
    /// The source's URI, as given.
    pub fn uri(&self) -> &str {
        self.uri
    }

    fn token(&self, source: KeyError) -> SealError {
        SealError::Token {
            uri: self.uri.to_owned(),
            source: Box::new(source),
        }
    }

    /// The data key in `wrapped` (as the store keeps it), unwrapped on the card.
    fn unwrap(&self, wrapped: &[u8]) -> Result<SecretBytes, SealError> {
        let ciphertext = match wrapped.split_first() {
            Some((&WRAP_FORMAT_V1, c)) => c,
            _ => {
                return Err(SealError::Source {
                    what: format!("the wrapped data key {} in the store", self.meta_name),
                    reason: "not a format this certman knows".into(),
                })
            }
        };
        let key = self
            .device
            .seal_key_decrypt(self.uri, ciphertext)
            .map_err(|e| self.token(e))?;
        if key.secret_bytes().len() != DATA_KEY_BYTES {
            return Err(SealError::Unseal {
                what: format!("the data key {}", self.meta_name),
            });
        }
        Ok(key)
    }

    /// The sealer of a store (salt `store_salt`) whose wrapped data key is `wrapped`.
    pub fn open(&self, store_salt: &[u8], wrapped: &[u8]) -> Result<Sealer, SealError> {
        Sealer::new(self.unwrap(wrapped)?.secret_bytes(), store_salt)
    }

    /// A new random data key: its sealer, and the key wrapped to the card's public key, as
    /// the store is to keep it. The card unwraps it once before it is handed out, so a slot
    /// whose certificate is not its key's never seals anything.
    pub fn make(&self, store_salt: &[u8]) -> Result<(Sealer, Vec<u8>), SealError> {
        let mut key = Zeroizing::new([0u8; DATA_KEY_BYTES]);
        aws_lc_rs::rand::fill(key.as_mut())
            .map_err(|_| SealError::Crypto("random generator failed"))?;
        let mut wrapped = vec![0u8; 1 + self.public.ciphertext_size()];
        wrapped[0] = WRAP_FORMAT_V1;
        let n = self
            .public
            .encrypt(key.as_ref(), &mut wrapped[1..])
            .map_err(|_| SealError::Crypto("RSA encryption of the data key failed"))?
            .len();
        wrapped.truncate(1 + n);
        let back = self.unwrap(&wrapped)?;
        if back.secret_bytes() != key.as_ref() {
            return Err(self.token(KeyError::Verification(
                "the card's key did not decrypt what was encrypted to the certificate in its \
                 slot: the certificate is not this key's"
                    .into(),
            )));
        }
        Ok((Sealer::new(key.as_ref(), store_salt)?, wrapped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::{SealLabel, SealingKeySource};

    /// A PIV card in memory: an RSA key pair, and the certificate's public key (another key's,
    /// when `cert_of_another`).
    struct FakeCard {
        key: aws_lc_rs::rsa::PrivateDecryptingKey,
        spki: Vec<u8>,
        decrypts: std::cell::Cell<usize>,
    }
    impl FakeCard {
        fn new(size: aws_lc_rs::rsa::KeySize) -> Self {
            let key = aws_lc_rs::rsa::PrivateDecryptingKey::generate(size).unwrap();
            let spki = Self::spki_of(&key);
            FakeCard {
                key,
                spki,
                decrypts: Default::default(),
            }
        }
        fn spki_of(key: &aws_lc_rs::rsa::PrivateDecryptingKey) -> Vec<u8> {
            use aws_lc_rs::encoding::AsDer;
            key.public_key().as_der().unwrap().as_ref().to_vec()
        }
    }
    impl SealingKeyDevice for FakeCard {
        fn seal_key_hmac(&self, _: &str, _: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
            Err(KeyError::Unsupported("no HMAC on a PIV card".into()))
        }
        fn seal_key_public_key(&self, uri: &str) -> Result<Vec<u8>, KeyError> {
            if uri.contains("reader=absent") {
                return Err(KeyError::TokenAbsent(
                    "PIV card reader:absent is not present".into(),
                ));
            }
            Ok(self.spki.clone())
        }
        fn seal_key_decrypt(&self, _: &str, ciphertext: &[u8]) -> Result<SecretBytes, KeyError> {
            self.decrypts.set(self.decrypts.get() + 1);
            let k = aws_lc_rs::rsa::Pkcs1PrivateDecryptingKey::new(self.key.clone()).unwrap();
            let mut out = vec![0u8; k.min_output_size()];
            let n = k
                .decrypt(ciphertext, &mut out)
                .map_err(|_| KeyError::Verification("RSA decryption failed".into()))?
                .len();
            out.truncate(n);
            Ok(SecretBytes::new(out))
        }
    }

    #[test]
    fn a_piv_card_key_transports_the_data_key() {
        let card = FakeCard::new(aws_lc_rs::rsa::KeySize::Rsa2048);
        let source = SealingKeySource::parse("piv:slot-id=9d;reader=r").unwrap();
        let t = source.key_transport(Some(&card)).unwrap().unwrap();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &card.spki);
        assert_eq!(
            t.meta_name,
            format!("seal-wrap:{}", hex::encode(digest.as_ref()))
        );
        // made: wrapped to the card (checked on it once), 1 + 256 bytes, no data key in clear
        let (sealer, wrapped) = t.make(b"salt").unwrap();
        assert_eq!(card.decrypts.get(), 1);
        assert_eq!((wrapped.len(), wrapped[0]), (257, 1));
        let blob = sealer.seal(SealLabel::SoftKey("k"), b"secret").unwrap();
        // opened: the card unwraps it, the same sealer comes out (bound to the store's salt)
        let again = t.open(b"salt", &wrapped).unwrap();
        assert_eq!(
            again
                .open(SealLabel::SoftKey("k"), &blob)
                .unwrap()
                .secret_bytes(),
            b"secret"
        );
        assert!(t
            .open(b"salt2", &wrapped)
            .unwrap()
            .open(SealLabel::SoftKey("k"), &blob)
            .is_err());
        // each make is a new data key
        let (_, other) = t.make(b"salt").unwrap();
        assert_ne!(other, wrapped);
        // another card does not open it (nor is it asked: its key has another meta name)
        let card2 = FakeCard::new(aws_lc_rs::rsa::KeySize::Rsa2048);
        let t2 = source.key_transport(Some(&card2)).unwrap().unwrap();
        assert_ne!(t2.meta_name, t.meta_name);
        assert!(t2.open(b"salt", &wrapped).is_err());
        // a stored value in no known format, or cut short, opens nothing
        let mut bad = wrapped.clone();
        bad[0] = 2;
        assert!(t.open(b"salt", &bad).is_err());
        assert!(t.open(b"salt", &wrapped[..100]).is_err());
        assert!(t.open(b"salt", &[]).is_err());
    }

    #[test]
    fn a_piv_slot_whose_certificate_is_another_keys_seals_nothing() {
        let mut card = FakeCard::new(aws_lc_rs::rsa::KeySize::Rsa2048);
        let other =
            aws_lc_rs::rsa::PrivateDecryptingKey::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .unwrap();
        card.spki = FakeCard::spki_of(&other);
        let source = SealingKeySource::parse("piv:slot-id=9d;reader=r").unwrap();
        let t = source.key_transport(Some(&card)).unwrap().unwrap();
        let e = t.make(b"salt").unwrap_err().to_string();
        assert!(e.contains("piv:slot-id=9d;reader=r"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        // a card that is not there, an EC key in the slot: one line naming the source
        let absent = SealingKeySource::parse("piv:slot-id=9d;reader=absent").unwrap();
        let e = absent.key_transport(Some(&card)).unwrap_err();
        assert!(matches!(e, SealError::Token { .. }), "{e:?}");
        assert!(e.to_string().contains("not present"), "{e}");
        let ec = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        )
        .unwrap();
        card.spki = {
            use aws_lc_rs::encoding::AsDer;
            use aws_lc_rs::signature::KeyPair;
            ec.public_key().as_der().unwrap().as_ref().to_vec()
        };
        let e = source.key_transport(Some(&card)).unwrap_err().to_string();
        assert!(e.contains("RSA"), "{e}");
    }
}

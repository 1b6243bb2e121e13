//! EnvelopedData (RFC 5652 §6) with key transport (RSAES-PKCS1-v1_5, RFC 3370 §4.2.1) and
//! CBC content encryption (DES, DES-EDE3 — RFC 3370 §5.1 — and AES, RFC 3565): opening what
//! SCEP peers send and sealing replies to them.
//!
//! Opening has no padding oracle: when the key transport fails or yields a key of the wrong
//! length, a random key of the right length stands in (implicit rejection), so an RSA padding
//! failure, a CBC padding failure and a plaintext that turns out to be garbage all end as the
//! one [`CmsError::Undecryptable`], after the same steps.

use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef};
use der::{Decode, Encode, Tag, TagNumber, Tagged};
use spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoOwned};
use zeroize::Zeroizing;

use super::signed::SignerIdentifier;
use super::types::{self, elements, RawInteger, RawSet, RawTlv};
use super::RSA_ENCRYPTION;
use super::{ber, crypto, random_bytes, CmsError, Limits, ID_DATA, ID_ENVELOPED_DATA};
use crate::error::KeyError;
use crate::secret::SecretBytes;

/// The content-encryption algorithms SCEP peers use (RFC 8894 §3.5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContentCipher {
    /// DES-CBC (legacy; micromdm's scepclient still sends it)
    DesCbc,
    /// DES-EDE3-CBC ("DES3")
    DesEde3Cbc,
    /// AES-128-CBC ("AES")
    Aes128Cbc,
    /// AES-192-CBC
    Aes192Cbc,
    /// AES-256-CBC (certmonger)
    Aes256Cbc,
}

impl ContentCipher {
    /// Every cipher, weakest first.
    pub const ALL: [ContentCipher; 5] = [
        ContentCipher::DesCbc,
        ContentCipher::DesEde3Cbc,
        ContentCipher::Aes128Cbc,
        ContentCipher::Aes192Cbc,
        ContentCipher::Aes256Cbc,
    ];

    /// The algorithm's OID.
    pub fn oid(self) -> ObjectIdentifier {
        ObjectIdentifier::new_unwrap(match self {
            ContentCipher::DesCbc => "1.3.14.3.2.7",
            ContentCipher::DesEde3Cbc => "1.2.840.113549.3.7",
            ContentCipher::Aes128Cbc => "2.16.840.1.101.3.4.1.2",
            ContentCipher::Aes192Cbc => "2.16.840.1.101.3.4.1.22",
            ContentCipher::Aes256Cbc => "2.16.840.1.101.3.4.1.42",
        })
    }

    /// The cipher an OID names.
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.oid() == *oid)
    }

    /// Key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            ContentCipher::DesCbc => 8,
            ContentCipher::DesEde3Cbc | ContentCipher::Aes192Cbc => 24,
            ContentCipher::Aes128Cbc => 16,
            ContentCipher::Aes256Cbc => 32,
        }
    }

    /// Block (and IV) length in bytes.
    pub fn block_len(self) -> usize {
        match self {
            ContentCipher::DesCbc | ContentCipher::DesEde3Cbc => 8,
            _ => 16,
        }
    }

    /// A fresh random key; DES keys get odd parity, as DES key generators make them.
    fn random_key(self) -> Result<Zeroizing<Vec<u8>>, CmsError> {
        let mut key = Zeroizing::new(random_bytes(self.key_len())?);
        if matches!(self, ContentCipher::DesCbc | ContentCipher::DesEde3Cbc) {
            for b in key.iter_mut() {
                *b = (*b & 0xfe) | u8::from((*b >> 1).count_ones() % 2 == 0);
            }
        }
        Ok(key)
    }

    /// CBC with PKCS#7 padding.
    fn encrypt(self, key: &[u8], iv: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CmsError> {
        fn run<C: KeyIvInit + BlockModeEncrypt>(
            key: &[u8],
            iv: &[u8],
            buf: &mut [u8],
            len: usize,
        ) -> Result<usize, CmsError> {
            C::new_from_slices(key, iv)
                .map_err(|_| CmsError::Crypto("content cipher setup"))?
                .encrypt_padded::<Pkcs7>(buf, len)
                .map(|c| c.len())
                .map_err(|_| CmsError::Crypto("content encryption"))
        }
        let mut buf = vec![0u8; plaintext.len() + self.block_len()];
        buf[..plaintext.len()].copy_from_slice(plaintext);
        let n = match self {
            ContentCipher::DesCbc => {
                run::<cbc::Encryptor<des::Des>>(key, iv, &mut buf, plaintext.len())
            }
            ContentCipher::DesEde3Cbc => {
                run::<cbc::Encryptor<des::TdesEde3>>(key, iv, &mut buf, plaintext.len())
            }
            ContentCipher::Aes128Cbc => {
                run::<cbc::Encryptor<aes::Aes128>>(key, iv, &mut buf, plaintext.len())
            }
            ContentCipher::Aes192Cbc => {
                run::<cbc::Encryptor<aes::Aes192>>(key, iv, &mut buf, plaintext.len())
            }
            ContentCipher::Aes256Cbc => {
                run::<cbc::Encryptor<aes::Aes256>>(key, iv, &mut buf, plaintext.len())
            }
        }?;
        buf.truncate(n);
        Ok(buf)
    }

    /// CBC decryption in place; the plaintext's length, or `Undecryptable` for a bad length
    /// or bad padding.
    fn decrypt(self, key: &[u8], iv: &[u8], buf: &mut [u8]) -> Result<usize, CmsError> {
        fn run<C: KeyIvInit + BlockModeDecrypt>(
            key: &[u8],
            iv: &[u8],
            buf: &mut [u8],
        ) -> Result<usize, CmsError> {
            C::new_from_slices(key, iv)
                .map_err(|_| CmsError::Undecryptable)?
                .decrypt_padded::<Pkcs7>(buf)
                .map(|p| p.len())
                .map_err(|_| CmsError::Undecryptable)
        }
        if buf.is_empty() || buf.len() % self.block_len() != 0 {
            return Err(CmsError::Undecryptable);
        }
        match self {
            ContentCipher::DesCbc => run::<cbc::Decryptor<des::Des>>(key, iv, buf),
            ContentCipher::DesEde3Cbc => run::<cbc::Decryptor<des::TdesEde3>>(key, iv, buf),
            ContentCipher::Aes128Cbc => run::<cbc::Decryptor<aes::Aes128>>(key, iv, buf),
            ContentCipher::Aes192Cbc => run::<cbc::Decryptor<aes::Aes192>>(key, iv, buf),
            ContentCipher::Aes256Cbc => run::<cbc::Decryptor<aes::Aes256>>(key, iv, buf),
        }
    }
}

/// Whom [`seal`] encrypts to: a certificate's issuer and serial number (the recipient
/// identifier) and its RSA public key.
#[derive(Clone, Copy, Debug)]
pub struct Recipient<'a> {
    /// the certificate's issuer Name DER
    pub issuer: &'a [u8],
    /// the certificate's serial number INTEGER contents
    pub serial: &'a [u8],
    /// the certificate's public key
    pub public_key: &'a SubjectPublicKeyInfoOwned,
}

/// A KeyTransRecipientInfo (RFC 5652 §6.2.1), read.
#[derive(Clone, Debug)]
pub struct KeyTransRecipient {
    /// which certificate's key the content key is encrypted to
    pub rid: SignerIdentifier,
    /// keyEncryptionAlgorithm's OID
    pub key_encryption_algorithm: ObjectIdentifier,
    /// the encrypted content key
    pub encrypted_key: Vec<u8>,
}

/// An EnvelopedData, read (not yet decrypted).
#[derive(Clone, Debug)]
pub struct Envelope {
    /// the key-transport recipients (other RecipientInfo kinds are skipped)
    pub recipients: Vec<KeyTransRecipient>,
    /// the encrypted content's type
    pub content_type: ObjectIdentifier,
    /// contentEncryptionAlgorithm's OID
    pub content_algorithm: ObjectIdentifier,
    /// its parameters' DER, if any
    content_parameters: Option<Vec<u8>>,
    /// the ciphertext
    encrypted_content: Vec<u8>,
}

impl Envelope {
    /// Reads a ContentInfo holding an EnvelopedData, BER or DER, within `limits`.
    pub fn parse(input: &[u8], limits: &Limits) -> Result<Self, CmsError> {
        let der = ber::normalize(input, &limits.ber)?;
        let content = super::content_info(&der, ID_ENVELOPED_DATA)?;
        let ed = types::EnvelopedData::from_der(&content)?;
        let mut recipients = Vec::new();
        for ri in elements(ed.recipient_infos.0, limits.max_recipients, "recipients")? {
            // Only KeyTransRecipientInfo is a bare SEQUENCE; kari/kekri/pwri/ori are tagged.
            if ri.first() != Some(&0x30) {
                continue;
            }
            let k = types::KeyTransRecipientInfo::from_der(ri)?;
            recipients.push(KeyTransRecipient {
                rid: SignerIdentifier::from_raw(&k.rid),
                key_encryption_algorithm: k.key_encryption_algorithm.oid,
                encrypted_key: k.encrypted_key.as_bytes().to_vec(),
            });
        }
        let eci = ed.encrypted_content_info;
        let encrypted_content = match eci.encrypted_content {
            None => Vec::new(),
            Some(any) => match any.tag() {
                Tag::ContextSpecific {
                    constructed: false,
                    number: TagNumber(0),
                } => any.value().to_vec(),
                // Sent in chunks (BER): the normaliser left the OCTET STRING segments.
                Tag::ContextSpecific {
                    constructed: true,
                    number: TagNumber(0),
                } => {
                    let mut all = Vec::new();
                    for seg in elements(any.value(), limits.ber.max_elements, "segments")? {
                        all.extend_from_slice(<&OctetStringRef>::from_der(seg)?.as_bytes());
                    }
                    all
                }
                other => {
                    return Err(CmsError::Malformed(format!(
                        "encryptedContent tagged {other}"
                    )))
                }
            },
        };
        Ok(Envelope {
            recipients,
            content_type: eci.content_type,
            content_algorithm: eci.content_encryption_algorithm.oid,
            content_parameters: eci
                .content_encryption_algorithm
                .parameters
                .map(|p| p.to_der())
                .transpose()?,
            encrypted_content,
        })
    }

    /// The content cipher, if this layer has it.
    pub fn cipher(&self) -> Result<ContentCipher, CmsError> {
        ContentCipher::from_oid(&self.content_algorithm).ok_or_else(|| {
            CmsError::UnsupportedAlgorithm(format!("content cipher {}", self.content_algorithm))
        })
    }

    /// Decrypts the content for `recipient` (an index into [`Envelope::recipients`]);
    /// `decrypt` does the RSA PKCS#1 v1.5 key transport with that recipient's private key.
    ///
    /// Errors before `decrypt` is called are about the structure or the algorithms; every
    /// failure from then on is [`CmsError::Undecryptable`]. A caller that goes on to parse
    /// the plaintext must report a parse failure as `Undecryptable` too.
    pub fn open(
        &self,
        recipient: usize,
        decrypt: &mut dyn FnMut(&[u8]) -> Result<SecretBytes, KeyError>,
    ) -> Result<Zeroizing<Vec<u8>>, CmsError> {
        let cipher = self.cipher()?;
        let iv = self
            .content_parameters
            .as_deref()
            .map(<&OctetStringRef>::from_der)
            .transpose()
            .ok()
            .flatten()
            .map(|iv| iv.as_bytes())
            .filter(|iv| iv.len() == cipher.block_len())
            .ok_or_else(|| CmsError::Malformed("the content cipher's IV".into()))?;
        let r = self
            .recipients
            .get(recipient)
            .ok_or_else(|| CmsError::Malformed("no such recipient".into()))?;
        if r.key_encryption_algorithm != RSA_ENCRYPTION {
            return Err(CmsError::UnsupportedAlgorithm(format!(
                "key transport {}",
                r.key_encryption_algorithm
            )));
        }
        // Implicit rejection: the stand-in key is made before the key transport, and used
        // whenever it fails or gives a key of the wrong length.
        let stand_in = cipher.random_key()?;
        let recovered = decrypt(&r.encrypted_key).ok();
        let key = match &recovered {
            Some(k) if k.secret_bytes().len() == cipher.key_len() => k.secret_bytes(),
            _ => stand_in.as_slice(),
        };
        let mut buf = Zeroizing::new(self.encrypted_content.clone());
        let n = cipher.decrypt(key, iv, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }
}

/// Encrypts `content` (id-data) to `recipient` with a fresh key and IV; DER ContentInfo out.
pub fn seal(
    content: &[u8],
    recipient: &Recipient<'_>,
    cipher: ContentCipher,
) -> Result<Vec<u8>, CmsError> {
    let key = cipher.random_key()?;
    let iv = random_bytes(cipher.block_len())?;
    let ciphertext = cipher.encrypt(&key, &iv, content)?;
    let encrypted_key = crypto::encrypt_rsa_pkcs1(recipient.public_key, &key)?;
    let ktri = types::KeyTransRecipientInfo {
        version: 0,
        rid: types::Identifier::IssuerAndSerialNumber(types::IssuerAndSerialNumber {
            issuer: RawTlv(recipient.issuer),
            serial_number: RawInteger(recipient.serial),
        }),
        key_encryption_algorithm: AlgorithmIdentifierRef {
            oid: RSA_ENCRYPTION,
            parameters: Some(AnyRef::from(der::asn1::Null)),
        },
        encrypted_key: OctetStringRef::new(&encrypted_key)?,
    }
    .to_der()?;
    let ed = types::EnvelopedData {
        version: 0,
        originator_info: None,
        recipient_infos: RawSet(&ktri),
        encrypted_content_info: types::EncryptedContentInfo {
            content_type: ID_DATA,
            content_encryption_algorithm: AlgorithmIdentifierRef {
                oid: cipher.oid(),
                parameters: Some(AnyRef::new(Tag::OctetString, &iv)?),
            },
            encrypted_content: Some(AnyRef::new(
                Tag::ContextSpecific {
                    constructed: false,
                    number: TagNumber(0),
                },
                &ciphertext,
            )?),
        },
        unprotected_attrs: None,
    };
    super::encode_content_info(ID_ENVELOPED_DATA, &ed.to_der()?)
}

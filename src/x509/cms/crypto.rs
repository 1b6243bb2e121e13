//! The cryptography CMS needs, on AWS-LC: message digests (MD5 from RustCrypto), RSA PKCS#1
//! v1.5 signature verification and encryption for keys of 1024–8192 bits.
//!
//! aws-lc-rs covers what it can (SHA-1/SHA-2 signatures, encryption to keys of 2048 bits or
//! more); the rest — MD5 signatures, SHA-384 with keys under 2048 bits, encryption to 1024/1536
//! bit keys that RouterOS still makes — goes through the same AWS-LC by FFI (`RSA_verify`,
//! `RSA_public_encrypt`), as `keys/soft/legacy_rsa.rs` does.

use std::ffi::c_int;

use aws_lc_rs::signature::{self as sig, UnparsedPublicKey};
use aws_lc_sys as ffi;
use der::asn1::ObjectIdentifier;
use der::referenced::OwnedToRef;
use der::Encode;
use spki::SubjectPublicKeyInfoOwned;

use super::{CmsError, RSA_ENCRYPTION};
use crate::keys::{HashAlgorithm, KeyAlgorithm};

/// Smallest and largest RSA moduli this layer verifies with or encrypts to.
const RSA_BITS: std::ops::RangeInclusive<u32> = 1024..=8192;

/// The message digests SCEP peers use (RFC 8894 §3.5.2: MD5 and SHA-1 are legacy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// MD5 (legacy, verification only)
    Md5,
    /// SHA-1 (legacy, verification only)
    Sha1,
    /// SHA-256
    Sha256,
    /// SHA-384
    Sha384,
    /// SHA-512
    Sha512,
}

impl DigestAlgorithm {
    /// The digest's OID (RFC 1321, RFC 3279, RFC 5754).
    pub fn oid(self) -> ObjectIdentifier {
        ObjectIdentifier::new_unwrap(match self {
            DigestAlgorithm::Md5 => "1.2.840.113549.2.5",
            DigestAlgorithm::Sha1 => "1.3.14.3.2.26",
            DigestAlgorithm::Sha256 => "2.16.840.1.101.3.4.2.1",
            DigestAlgorithm::Sha384 => "2.16.840.1.101.3.4.2.2",
            DigestAlgorithm::Sha512 => "2.16.840.1.101.3.4.2.3",
        })
    }

    /// The digest an OID names.
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        use DigestAlgorithm::*;
        [Md5, Sha1, Sha256, Sha384, Sha512]
            .into_iter()
            .find(|d| d.oid() == *oid)
    }

    /// The `*WithRSAEncryption` signature OID with this digest (RFC 8017 Appendix C).
    pub(crate) fn rsa_signature_oid(self) -> ObjectIdentifier {
        ObjectIdentifier::new_unwrap(match self {
            DigestAlgorithm::Md5 => "1.2.840.113549.1.1.4",
            DigestAlgorithm::Sha1 => "1.2.840.113549.1.1.5",
            DigestAlgorithm::Sha256 => "1.2.840.113549.1.1.11",
            DigestAlgorithm::Sha384 => "1.2.840.113549.1.1.12",
            DigestAlgorithm::Sha512 => "1.2.840.113549.1.1.13",
        })
    }

    /// The SHA-2 digest [`crate::keys::KeySigner`] signs with; `None` for MD5 and SHA-1,
    /// which certman verifies but never signs with.
    pub fn signing_hash(self) -> Option<HashAlgorithm> {
        match self {
            DigestAlgorithm::Sha256 => Some(HashAlgorithm::Sha256),
            DigestAlgorithm::Sha384 => Some(HashAlgorithm::Sha384),
            DigestAlgorithm::Sha512 => Some(HashAlgorithm::Sha512),
            DigestAlgorithm::Md5 | DigestAlgorithm::Sha1 => None,
        }
    }

    /// The digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        use aws_lc_rs::digest;
        let alg = match self {
            DigestAlgorithm::Md5 => {
                use md5::Digest;
                return md5::Md5::digest(data).to_vec();
            }
            DigestAlgorithm::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            DigestAlgorithm::Sha256 => &digest::SHA256,
            DigestAlgorithm::Sha384 => &digest::SHA384,
            DigestAlgorithm::Sha512 => &digest::SHA512,
        };
        digest::digest(alg, data).as_ref().to_vec()
    }

    fn nid(self) -> c_int {
        match self {
            DigestAlgorithm::Md5 => ffi::NID_md5,
            DigestAlgorithm::Sha1 => ffi::NID_sha1,
            DigestAlgorithm::Sha256 => ffi::NID_sha256,
            DigestAlgorithm::Sha384 => ffi::NID_sha384,
            DigestAlgorithm::Sha512 => ffi::NID_sha512,
        }
    }
}

/// The size of an RSA public key, refusing other key types and sizes outside 1024–8192.
pub(crate) fn rsa_bits(public_key: &SubjectPublicKeyInfoOwned) -> Result<u32, CmsError> {
    if public_key.algorithm.oid != RSA_ENCRYPTION {
        return Err(CmsError::UnsupportedAlgorithm(format!(
            "a {} key (SCEP needs RSA)",
            public_key.algorithm.oid
        )));
    }
    match KeyAlgorithm::from_spki(public_key.owned_to_ref()) {
        Ok(KeyAlgorithm::Rsa { bits }) if RSA_BITS.contains(&bits) => Ok(bits),
        Ok(KeyAlgorithm::Rsa { bits }) => Err(CmsError::UnsupportedAlgorithm(format!(
            "RSA-{bits} (1024 to 8192 bits are accepted)"
        ))),
        _ => Err(CmsError::UnsupportedAlgorithm(
            "an unreadable RSA key".into(),
        )),
    }
}

/// Verifies an RSASSA-PKCS1-v1_5 `signature` over `message` with `digest`.
pub(crate) fn verify_rsa_pkcs1(
    public_key: &SubjectPublicKeyInfoOwned,
    digest: DigestAlgorithm,
    message: &[u8],
    signature: &[u8],
) -> Result<(), CmsError> {
    let bits = rsa_bits(public_key)?;
    let params: Option<&'static sig::RsaParameters> = match digest {
        DigestAlgorithm::Sha1 => Some(&sig::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY),
        DigestAlgorithm::Sha256 => Some(&sig::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY),
        DigestAlgorithm::Sha512 => Some(&sig::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY),
        DigestAlgorithm::Sha384 if bits >= 2048 => Some(&sig::RSA_PKCS1_2048_8192_SHA384),
        DigestAlgorithm::Sha384 | DigestAlgorithm::Md5 => None,
    };
    let ok = match params {
        Some(p) => UnparsedPublicKey::new(p, public_key.subject_public_key.raw_bytes())
            .verify(message, signature)
            .is_ok(),
        None => {
            let key = LegacyPublicKey::parse(public_key)?;
            key.verify(digest, &digest.digest(message), signature)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(CmsError::BadSignature(format!(
            "RSA-{bits} PKCS#1 v1.5 signature with {digest:?}"
        )))
    }
}

/// RSAES-PKCS1-v1_5 encryption (RFC 8017 §7.2.1) of `plaintext` to `public_key`.
pub(crate) fn encrypt_rsa_pkcs1(
    public_key: &SubjectPublicKeyInfoOwned,
    plaintext: &[u8],
) -> Result<Vec<u8>, CmsError> {
    use aws_lc_rs::rsa::{Pkcs1PublicEncryptingKey, PublicEncryptingKey};
    let bits = rsa_bits(public_key)?;
    if bits < 2048 {
        return LegacyPublicKey::parse(public_key)?.encrypt(plaintext);
    }
    let spki = public_key.to_der()?;
    let unsupported = || CmsError::UnsupportedAlgorithm(format!("RSA-{bits} key for encryption"));
    let key = PublicEncryptingKey::from_der(&spki).map_err(|_| unsupported())?;
    let key = Pkcs1PublicEncryptingKey::new(key).map_err(|_| unsupported())?;
    let mut out = vec![0u8; key.ciphertext_size()];
    let n = key
        .encrypt(plaintext, &mut out)
        .map_err(|_| CmsError::Crypto("RSA encryption"))?
        .len();
    out.truncate(n);
    Ok(out)
}

/// An RSA public key held by AWS-LC directly, for what aws-lc-rs does not offer.
struct LegacyPublicKey {
    /// owned, never null; freed in `Drop`
    pkey: *mut ffi::EVP_PKEY,
}

impl Drop for LegacyPublicKey {
    fn drop(&mut self) {
        // SAFETY: `pkey` is a valid EVP_PKEY we own (checked non-null in `parse`), freed once.
        unsafe { ffi::EVP_PKEY_free(self.pkey) };
    }
}

impl LegacyPublicKey {
    fn parse(public_key: &SubjectPublicKeyInfoOwned) -> Result<Self, CmsError> {
        let der = public_key.to_der()?;
        let bad = || {
            // SAFETY: only touches this thread's error queue.
            unsafe { ffi::ERR_clear_error() };
            CmsError::UnsupportedAlgorithm("an RSA public key AWS-LC refuses".into())
        };
        // SAFETY: an all-zero CBS is a valid (empty) value that CBS_init then fills in.
        let mut cbs: ffi::CBS = unsafe { std::mem::zeroed() };
        // SAFETY: `der` outlives `cbs`, which only borrows it for the parse below.
        unsafe { ffi::CBS_init(&raw mut cbs, der.as_ptr(), der.len()) };
        // SAFETY: `cbs` is initialised; the result is null or an EVP_PKEY we now own.
        let pkey = unsafe { ffi::EVP_parse_public_key(&raw mut cbs) };
        if pkey.is_null() {
            return Err(bad());
        }
        let key = LegacyPublicKey { pkey };
        // SAFETY: `cbs` is still valid; `key.pkey` is a valid EVP_PKEY.
        if unsafe { ffi::CBS_len(&raw const cbs) } != 0
            || unsafe { ffi::EVP_PKEY_id(key.pkey) } != ffi::EVP_PKEY_RSA
        {
            return Err(bad());
        }
        Ok(key)
    }

    /// The RSA inside; borrowed from `self.pkey`, valid while `self` is.
    fn rsa(&self) -> *mut ffi::RSA {
        // SAFETY: `pkey` is a valid RSA EVP_PKEY (checked in `parse`); get0 does not transfer
        // ownership.
        unsafe { ffi::EVP_PKEY_get0_RSA(self.pkey) }
    }

    fn verify(&self, digest: DigestAlgorithm, hash: &[u8], signature: &[u8]) -> bool {
        // SAFETY: `hash` and `signature` are valid slices for the lengths passed; the RSA is
        // valid while `self` is; RSA_verify only reads them.
        let ok = unsafe {
            ffi::RSA_verify(
                digest.nid(),
                hash.as_ptr(),
                hash.len(),
                signature.as_ptr(),
                signature.len(),
                self.rsa(),
            )
        } == 1;
        if !ok {
            // SAFETY: only touches this thread's error queue.
            unsafe { ffi::ERR_clear_error() };
        }
        ok
    }

    fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, CmsError> {
        // SAFETY: the RSA is valid while `self` is.
        let size = unsafe { ffi::RSA_size(self.rsa()) } as usize;
        if plaintext.len() + 11 > size {
            return Err(CmsError::UnsupportedAlgorithm(
                "a content key too long for the RSA key".into(),
            ));
        }
        let mut out = vec![0u8; size];
        // SAFETY: `out` has RSA_size bytes as RSA_public_encrypt requires; `plaintext` is a
        // valid slice of the length passed.
        let n = unsafe {
            ffi::RSA_public_encrypt(
                plaintext.len(),
                plaintext.as_ptr(),
                out.as_mut_ptr(),
                self.rsa(),
                ffi::RSA_PKCS1_PADDING,
            )
        };
        if n <= 0 {
            // SAFETY: only touches this thread's error queue.
            unsafe { ffi::ERR_clear_error() };
            return Err(CmsError::Crypto("RSA encryption"));
        }
        out.truncate(n as usize);
        Ok(out)
    }
}

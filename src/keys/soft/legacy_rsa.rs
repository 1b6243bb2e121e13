//! Software RSA keys of the legacy `RouterOS` sizes (1024 and 1536 bits).
//!
//! `aws-lc-rs` only accepts RSA key pairs of 2048..=8192 bits, but `RouterOS` still offers 1024-
//! and 1536-bit keys. These are handled here by calling AWS-LC directly through `aws-lc-sys`, the
//! very same C library (and the very same build of it) that `aws-lc-rs` wraps; the `aws-lc-sys`
//! version must therefore stay pinned to the one `aws-lc-rs` depends on.
//!
//! Only key generation, PKCS#8 import/export, `SubjectPublicKeyInfo` export and
//! RSASSA-PKCS1-v1_5 signing are provided; verification is left to `aws-lc-rs`
//! (`RSA_PKCS1_1024_8192_*_FOR_LEGACY_USE_ONLY`).

use std::ffi::c_int;
use std::fmt;
use std::ptr;

use aws_lc_sys as ffi;
use zeroize::Zeroizing;

/// Key sizes accepted by [`LegacyRsaKey`] (for generation and import alike).
const LEGACY_BITS: [u32; 2] = [1024, 1536];

/// Public exponent of generated keys (F4).
const PUBLIC_EXPONENT: u32 = 65_537;

/// Digest for PKCS#1 v1.5 signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegacyRsaDigest {
    Sha256,
    Sha384,
    Sha512,
}

/// An error from a legacy RSA operation. The message never contains key material.
#[derive(Debug)]
pub struct LegacyRsaError(pub &'static str);

impl fmt::Display for LegacyRsaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "legacy RSA: {}", self.0)
    }
}

impl std::error::Error for LegacyRsaError {}

/// Builds an error and drops whatever AWS-LC left on this thread's error queue, so that a stale
/// entry can never be mistaken for the cause of a later, unrelated failure.
fn fail(msg: &'static str) -> LegacyRsaError {
    // SAFETY: ERR_clear_error only touches the calling thread's error queue.
    unsafe { ffi::ERR_clear_error() };
    LegacyRsaError(msg)
}

/// A 1024- or 1536-bit RSA private key held by AWS-LC.
pub struct LegacyRsaKey {
    /// Owned `EVP_PKEY` of type `EVP_PKEY_RSA`, never null; freed in `Drop`.
    pkey: *mut ffi::EVP_PKEY,
    bits: u32,
}

// SAFETY: the EVP_PKEY (and its RSA) is exclusively owned by this value and never mutated through
// `&self` except by RSA_sign, which AWS-LC makes safe to call concurrently: its lazily computed
// Montgomery contexts and blinding state are guarded by the RSA object's internal lock (this is
// also what aws-lc-rs relies on for its own `Sync` `rsa::KeyPair`). Freeing happens only in `Drop`.
unsafe impl Send for LegacyRsaKey {}
// SAFETY: see above.
unsafe impl Sync for LegacyRsaKey {}

impl Drop for LegacyRsaKey {
    fn drop(&mut self) {
        // SAFETY: `pkey` is a valid EVP_PKEY owned by us (checked non-null at construction) and is
        // freed exactly once here. AWS-LC zeroizes the private BIGNUMs when freeing them.
        unsafe { ffi::EVP_PKEY_free(self.pkey) };
    }
}

// Deliberately omits `pkey`: Debug output must never expose key material.
#[allow(clippy::missing_fields_in_debug)]
impl fmt::Debug for LegacyRsaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LegacyRsaKey")
            .field("bits", &self.bits)
            .finish()
    }
}

/// Owning guard for an `RSA*`.
struct RsaGuard(*mut ffi::RSA);

impl Drop for RsaGuard {
    fn drop(&mut self) {
        // SAFETY: the pointer is null or an RSA we own one reference to; RSA_free accepts null.
        unsafe { ffi::RSA_free(self.0) };
    }
}

/// Owning guard for a `BIGNUM*`.
struct BnGuard(*mut ffi::BIGNUM);

impl Drop for BnGuard {
    fn drop(&mut self) {
        // SAFETY: the pointer is null or a BIGNUM we own; BN_free accepts null.
        unsafe { ffi::BN_free(self.0) };
    }
}

/// Owning guard for a buffer allocated by AWS-LC (e.g. returned by `CBB_finish`).
struct OpensslBuf {
    ptr: *mut u8,
    len: usize,
}

impl OpensslBuf {
    fn as_slice(&self) -> &[u8] {
        if self.ptr.is_null() || self.len == 0 {
            return &[];
        }
        // SAFETY: CBB_finish returned `ptr` pointing to `len` initialised bytes that we own until
        // `Drop`; the returned slice borrows `self`, so it cannot outlive the allocation.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for OpensslBuf {
    fn drop(&mut self) {
        // SAFETY: `ptr` is null or was allocated by AWS-LC and is owned by us. OPENSSL_free
        // cleanses the whole allocation before releasing it, so serialised private keys do not
        // linger in freed memory.
        unsafe { ffi::OPENSSL_free(self.ptr.cast()) };
    }
}

/// Runs `write` against a fresh growable CBB and returns the finished buffer.
///
/// `write` must only append to the CBB it is given and return 1 on success.
fn marshal(
    initial_capacity: usize,
    write: impl FnOnce(*mut ffi::CBB) -> c_int,
) -> Result<OpensslBuf, LegacyRsaError> {
    /// Calls `CBB_cleanup` on every path. After a successful `CBB_finish` the CBB no longer owns
    /// its buffer, so the cleanup is then a no-op.
    struct CbbGuard(ffi::CBB);
    impl Drop for CbbGuard {
        fn drop(&mut self) {
            // SAFETY: the CBB was zeroed (CBB_zero) before any other use, so it is always in a
            // state CBB_cleanup accepts; it frees (and cleanses) the buffer only if still owned.
            unsafe { ffi::CBB_cleanup(&raw mut self.0) };
        }
    }

    // SAFETY: CBB is a plain C struct (pointers, integers, a union of such) for which all-zero
    // bytes are a valid value; CBB_zero below then puts it in its documented initial state.
    let mut guard = CbbGuard(unsafe { std::mem::zeroed() });
    let cbb: *mut ffi::CBB = &raw mut guard.0;
    // SAFETY: `cbb` points to a live CBB that is not moved until the guard drops at the end of
    // this function (after all uses of `cbb`).
    unsafe { ffi::CBB_zero(cbb) };
    // SAFETY: as above; CBB_init allocates the initial buffer.
    if unsafe { ffi::CBB_init(cbb, initial_capacity) } != 1 {
        return Err(fail("out of memory"));
    }
    if write(cbb) != 1 {
        return Err(fail("serialising the key failed"));
    }
    let mut out = OpensslBuf {
        ptr: ptr::null_mut(),
        len: 0,
    };
    // SAFETY: `cbb` is an initialised top-level CBB; on success ownership of the buffer moves to
    // `out` (freed by its Drop), on failure it stays with the CBB (freed by the guard).
    if unsafe { ffi::CBB_finish(cbb, &raw mut out.ptr, &raw mut out.len) } != 1 {
        return Err(fail("serialising the key failed"));
    }
    Ok(out)
}

impl LegacyRsaKey {
    /// Generates a new key of `bits` bits (1024 or 1536 only) with public exponent 65537.
    ///
    /// # Errors
    ///
    /// Any other `bits`, or a failure inside AWS-LC.
    pub fn generate(bits: u32) -> Result<Self, LegacyRsaError> {
        if !LEGACY_BITS.contains(&bits) {
            return Err(LegacyRsaError(
                "only 1024- and 1536-bit keys are handled here (use aws-lc-rs for 2048 and above)",
            ));
        }
        let bits_c = c_int::try_from(bits).map_err(|_| LegacyRsaError("key size out of range"))?;

        // SAFETY: BN_new has no preconditions; the result (possibly null) is owned by the guard.
        let e = BnGuard(unsafe { ffi::BN_new() });
        if e.0.is_null() {
            return Err(fail("out of memory"));
        }
        // SAFETY: `e.0` is a valid BIGNUM we own.
        if unsafe { ffi::BN_set_word(e.0, ffi::BN_ULONG::from(PUBLIC_EXPONENT)) } != 1 {
            return Err(fail("setting the public exponent failed"));
        }

        // SAFETY: RSA_new has no preconditions; the result (possibly null) is owned by the guard.
        let rsa = RsaGuard(unsafe { ffi::RSA_new() });
        if rsa.0.is_null() {
            return Err(fail("out of memory"));
        }
        // SAFETY: `rsa.0` is a fresh RSA we own, `e.0` a valid BIGNUM that outlives the call, and
        // a null BN_GENCB means "no progress callback".
        if unsafe { ffi::RSA_generate_key_ex(rsa.0, bits_c, e.0, ptr::null_mut()) } != 1 {
            return Err(fail("RSA key generation failed"));
        }

        let key = Self::wrap_rsa(&rsa)?;
        if key.bits != bits {
            return Err(LegacyRsaError("generated key has an unexpected size"));
        }
        Ok(key)
    }

    /// Puts (a new reference to) `rsa` into a fresh `EVP_PKEY` owned by the returned key.
    fn wrap_rsa(rsa: &RsaGuard) -> Result<Self, LegacyRsaError> {
        // SAFETY: EVP_PKEY_new has no preconditions.
        let pkey = unsafe { ffi::EVP_PKEY_new() };
        if pkey.is_null() {
            return Err(fail("out of memory"));
        }
        // From here on `key`'s Drop frees `pkey` on every path.
        let mut key = LegacyRsaKey { pkey, bits: 0 };
        // SAFETY: `pkey` is a valid, empty EVP_PKEY and `rsa.0` a valid RSA; set1 takes its own
        // reference, so the caller's guard still frees exactly the reference it owns.
        if unsafe { ffi::EVP_PKEY_set1_RSA(key.pkey, rsa.0) } != 1 {
            return Err(fail("out of memory"));
        }
        key.bits = key.rsa_bits()?;
        Ok(key)
    }

    /// Reads the RSA object's modulus size.
    fn rsa_bits(&self) -> Result<u32, LegacyRsaError> {
        let rsa = self.rsa()?;
        // SAFETY: `rsa` is a valid RSA kept alive by `self.pkey`.
        Ok(unsafe { ffi::RSA_bits(rsa) })
    }

    /// The RSA object inside the `EVP_PKEY` (borrowed; lives as long as `self`).
    fn rsa(&self) -> Result<*mut ffi::RSA, LegacyRsaError> {
        // SAFETY: `self.pkey` is a valid EVP_PKEY; get0 returns a borrowed pointer (or null if the
        // key is not RSA), which we never free.
        let rsa = unsafe { ffi::EVP_PKEY_get0_RSA(self.pkey) };
        if rsa.is_null() {
            return Err(fail("key is not an RSA key"));
        }
        Ok(rsa)
    }

    /// Parses a DER PKCS#8 `PrivateKeyInfo` (or v2 `OneAsymmetricKey`) holding an
    /// `rsaEncryption` key of 1024 or 1536 bits. AWS-LC checks the key's consistency
    /// (`RSA_check_key`).
    ///
    /// # Errors
    ///
    /// Malformed DER, trailing data, non-RSA keys (including RSA-PSS keys), inconsistent or
    /// incomplete RSA keys, and RSA keys of any other size.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, LegacyRsaError> {
        let mut cbs = ffi::CBS {
            data: ptr::null(),
            len: 0,
        };
        // SAFETY: `der` is a valid slice that outlives every use of `cbs` in this function.
        unsafe { ffi::CBS_init(&raw mut cbs, der.as_ptr(), der.len()) };
        // SAFETY: `cbs` is initialised; the returned EVP_PKEY (if any) is owned by us.
        let pkey = unsafe { ffi::EVP_parse_private_key(&raw mut cbs) };
        if pkey.is_null() {
            return Err(fail("not a valid PKCS#8 private key"));
        }
        // From here on `key`'s Drop frees `pkey` on every path.
        let mut key = LegacyRsaKey { pkey, bits: 0 };
        // SAFETY: `cbs` is still a valid view into `der`.
        if unsafe { ffi::CBS_len(&raw const cbs) } != 0 {
            return Err(fail("trailing data after the PKCS#8 private key"));
        }
        // SAFETY: `key.pkey` is a valid EVP_PKEY.
        if unsafe { ffi::EVP_PKEY_id(key.pkey) } != ffi::EVP_PKEY_RSA {
            return Err(fail("PKCS#8 key is not an rsaEncryption key"));
        }
        let rsa = key.rsa()?;
        // AWS-LC accepts "stripped" Java private keys without e, p, q; such a key can neither
        // produce a SubjectPublicKeyInfo nor be signed with safely (no blinding without e).
        // SAFETY: `rsa` is a valid RSA kept alive by `key`; this getter and the two below only
        // return borrowed pointers, which are merely compared with null.
        let e = unsafe { ffi::RSA_get0_e(rsa) };
        // SAFETY: see above.
        let p = unsafe { ffi::RSA_get0_p(rsa) };
        // SAFETY: see above.
        let q = unsafe { ffi::RSA_get0_q(rsa) };
        if e.is_null() || p.is_null() || q.is_null() {
            return Err(fail("RSA private key lacks its public exponent or primes"));
        }
        key.bits = key.rsa_bits()?;
        if !LEGACY_BITS.contains(&key.bits) {
            return Err(LegacyRsaError(
                "only 1024- and 1536-bit RSA keys are handled here",
            ));
        }
        Ok(key)
    }

    /// Serialises the key as DER PKCS#8 `PrivateKeyInfo` (version 0, `rsaEncryption`, NULL
    /// parameters). The returned buffer is zeroized on drop.
    ///
    /// # Errors
    ///
    /// Only on allocation failure inside AWS-LC.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, LegacyRsaError> {
        // 2048 bytes comfortably holds a 1536-bit key (~1.2 KB), so the buffer never has to be
        // reallocated (and thus copied) while it holds private key bytes.
        let buf = marshal(2048, |cbb| {
            // SAFETY: `cbb` is a live, initialised CBB and `self.pkey` a valid private key.
            unsafe { ffi::EVP_marshal_private_key(cbb, self.pkey) }
        })?;
        // `buf` is cleansed and freed by its Drop right after this copy.
        Ok(Zeroizing::new(buf.as_slice().to_vec()))
    }

    /// Serialises the public key as DER `SubjectPublicKeyInfo` (`rsaEncryption`, NULL
    /// parameters, PKCS#1 `RSAPublicKey`).
    ///
    /// # Errors
    ///
    /// Only on allocation failure inside AWS-LC.
    pub fn public_key_spki_der(&self) -> Result<Vec<u8>, LegacyRsaError> {
        let buf = marshal(512, |cbb| {
            // SAFETY: `cbb` is a live, initialised CBB and `self.pkey` a valid key.
            unsafe { ffi::EVP_marshal_public_key(cbb, self.pkey) }
        })?;
        Ok(buf.as_slice().to_vec())
    }

    /// Modulus size in bits (1024 or 1536).
    #[must_use]
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Hashes all of `message` with `digest` and signs the hash with RSASSA-PKCS1-v1_5. The
    /// signature is exactly `bits() / 8` bytes long.
    ///
    /// # Errors
    ///
    /// Only on a failure inside AWS-LC.
    pub fn sign_pkcs1v15(
        &self,
        digest: LegacyRsaDigest,
        message: &[u8],
    ) -> Result<Vec<u8>, LegacyRsaError> {
        /// One-shot digest: `(data, len, out) -> out`, as `SHA256()` and friends.
        type OneShot = unsafe extern "C" fn(*const u8, usize, *mut u8) -> *mut u8;
        let (nid, hash_len, hash_fn): (c_int, usize, OneShot) = match digest {
            LegacyRsaDigest::Sha256 => (ffi::NID_sha256, 32, ffi::SHA256),
            LegacyRsaDigest::Sha384 => (ffi::NID_sha384, 48, ffi::SHA384),
            LegacyRsaDigest::Sha512 => (ffi::NID_sha512, 64, ffi::SHA512),
        };
        let mut hash = [0u8; 64];
        // SAFETY: `message` provides `message.len()` readable bytes and `hash` 64 writable bytes,
        // at least the output length of each of these functions, which cannot fail.
        unsafe { hash_fn(message.as_ptr(), message.len(), hash.as_mut_ptr()) };

        let rsa = self.rsa()?;
        // SAFETY: `rsa` is a valid RSA kept alive by `self`.
        let sig_size = unsafe { ffi::RSA_size(rsa) } as usize;
        let mut sig = vec![0u8; sig_size];
        let mut sig_len: std::ffi::c_uint = 0;
        // SAFETY: the digest pointer/length describe `hash[..hash_len]`; `sig` has RSA_size bytes,
        // the most RSA_sign writes; `rsa` is a valid private key. RSA_sign takes `RSA *` but only
        // updates lock-protected caches, so concurrent calls through `&self` are sound.
        let ok = unsafe {
            ffi::RSA_sign(
                nid,
                hash.as_ptr(),
                hash_len,
                sig.as_mut_ptr(),
                &raw mut sig_len,
                rsa,
            )
        };
        if ok != 1 {
            return Err(fail("RSA signing failed"));
        }
        if sig_len as usize != sig_size {
            return Err(LegacyRsaError("RSA signature has an unexpected length"));
        }
        Ok(sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
    use std::sync::OnceLock;

    const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";

    /// Key generation is slow in debug builds; share one key of each size across tests.
    fn key(bits: u32) -> &'static LegacyRsaKey {
        static K1024: OnceLock<LegacyRsaKey> = OnceLock::new();
        static K1536: OnceLock<LegacyRsaKey> = OnceLock::new();
        let cell = match bits {
            1024 => &K1024,
            1536 => &K1536,
            _ => panic!("no test key of {bits} bits"),
        };
        cell.get_or_init(|| LegacyRsaKey::generate(bits).expect("generate"))
    }

    /// The PKCS#1 `RSAPublicKey` inside the SPKI, which is what aws-lc-rs verifies against.
    fn rsa_public_key(spki_der: &[u8]) -> Vec<u8> {
        let spki = spki::SubjectPublicKeyInfoRef::try_from(spki_der).expect("parse SPKI");
        assert_eq!(
            spki.algorithm.oid,
            spki::ObjectIdentifier::new_unwrap(RSA_ENCRYPTION)
        );
        spki.subject_public_key.raw_bytes().to_vec()
    }

    fn verify(
        key: &LegacyRsaKey,
        alg: &'static dyn VerificationAlgorithm,
        msg: &[u8],
        sig: &[u8],
    ) -> bool {
        let spki = key.public_key_spki_der().expect("spki");
        UnparsedPublicKey::new(alg, rsa_public_key(&spki))
            .verify(msg, sig)
            .is_ok()
    }

    /// aws-lc-rs has no SHA-384 verifier for keys below 2048 bits, so SHA-384 signatures are
    /// checked with AWS-LC's `RSA_verify` against a public key re-parsed from the SPKI, over a
    /// digest computed by aws-lc-rs.
    fn verify_sha384_ffi(key: &LegacyRsaKey, msg: &[u8], sig: &[u8]) -> bool {
        let spki = key.public_key_spki_der().expect("spki");
        let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, msg);
        let mut cbs = ffi::CBS {
            data: ptr::null(),
            len: 0,
        };
        // SAFETY: test-only FFI on valid buffers; the parsed EVP_PKEY is freed below.
        unsafe {
            ffi::CBS_init(&raw mut cbs, spki.as_ptr(), spki.len());
            let pkey = ffi::EVP_parse_public_key(&raw mut cbs);
            assert!(!pkey.is_null());
            let rsa = ffi::EVP_PKEY_get0_RSA(pkey);
            assert!(!rsa.is_null());
            let ok = ffi::RSA_verify(
                ffi::NID_sha384,
                hash.as_ref().as_ptr(),
                hash.as_ref().len(),
                sig.as_ptr(),
                sig.len(),
                rsa,
            );
            ffi::EVP_PKEY_free(pkey);
            ffi::ERR_clear_error();
            ok == 1
        }
    }

    #[test]
    fn generate_has_requested_sizes() {
        for bits in LEGACY_BITS {
            let k = key(bits);
            assert_eq!(k.bits(), bits);
            let sig = k
                .sign_pkcs1v15(LegacyRsaDigest::Sha256, b"x")
                .expect("sign");
            assert_eq!(sig.len() * 8, bits as usize);
        }
    }

    #[test]
    fn spki_is_rsa_encryption_with_null_params() {
        let spki_der = key(1024).public_key_spki_der().expect("spki");
        let spki = spki::SubjectPublicKeyInfoRef::try_from(spki_der.as_slice()).expect("parse");
        assert_eq!(
            spki.algorithm.oid,
            spki::ObjectIdentifier::new_unwrap(RSA_ENCRYPTION)
        );
        let params = spki.algorithm.parameters.expect("parameters present");
        assert_eq!(spki::der::Tagged::tag(&params), spki::der::Tag::Null);
        assert!(params.value().is_empty());
    }

    #[test]
    fn pkcs8_round_trip_keeps_public_key() {
        for bits in LEGACY_BITS {
            let k = key(bits);
            let der = k.to_pkcs8_der().expect("to pkcs8");
            let back = LegacyRsaKey::from_pkcs8_der(&der).expect("from pkcs8");
            assert_eq!(back.bits(), bits);
            assert_eq!(
                back.public_key_spki_der().expect("spki"),
                k.public_key_spki_der().expect("spki")
            );
            // The re-imported key serialises to the same bytes.
            assert_eq!(*back.to_pkcs8_der().expect("to pkcs8"), *der);
            // And signs so that the original public key verifies it.
            let sig = back
                .sign_pkcs1v15(LegacyRsaDigest::Sha256, b"hello")
                .expect("sign");
            assert!(verify(
                k,
                &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
                b"hello",
                &sig
            ));
        }
    }

    #[test]
    fn signatures_verify_with_aws_lc_rs() {
        let msg = b"RouterOS legacy certificate TBS bytes";
        let sha256 = &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY;
        let sha512 = &signature::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY;
        for bits in LEGACY_BITS {
            let k = key(bits);

            let sig256 = k.sign_pkcs1v15(LegacyRsaDigest::Sha256, msg).expect("sign");
            assert!(verify(k, sha256, msg, &sig256), "{bits}-bit SHA-256");
            assert!(!verify(k, sha256, b"other message", &sig256));
            assert!(!verify(k, sha512, msg, &sig256));

            let sig512 = k.sign_pkcs1v15(LegacyRsaDigest::Sha512, msg).expect("sign");
            assert!(verify(k, sha512, msg, &sig512), "{bits}-bit SHA-512");
            assert!(!verify(k, sha512, b"other message", &sig512));
            assert!(!verify(k, sha256, msg, &sig512));

            let sig384 = k.sign_pkcs1v15(LegacyRsaDigest::Sha384, msg).expect("sign");
            assert_eq!(sig384.len() * 8, bits as usize);
            assert!(verify_sha384_ffi(k, msg, &sig384), "{bits}-bit SHA-384");
            assert!(!verify_sha384_ffi(k, b"other message", &sig384));
            assert!(!verify(k, sha256, msg, &sig384));
            assert!(!verify(k, sha512, msg, &sig384));

            // PKCS#1 v1.5 is deterministic.
            let again = k.sign_pkcs1v15(LegacyRsaDigest::Sha256, msg).expect("sign");
            assert_eq!(again, sig256);
        }
    }

    #[test]
    fn rejects_other_sizes() {
        for bits in [0, 512, 1023, 1025, 1280, 2048, 3072, 4096] {
            assert!(LegacyRsaKey::generate(bits).is_err(), "{bits}");
        }
    }

    #[test]
    fn rejects_garbage_pkcs8() {
        assert!(LegacyRsaKey::from_pkcs8_der(&[]).is_err());
        assert!(LegacyRsaKey::from_pkcs8_der(b"definitely not DER").is_err());
        assert!(LegacyRsaKey::from_pkcs8_der(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_err());

        let der = key(1024).to_pkcs8_der().expect("to pkcs8");
        // Truncated.
        assert!(LegacyRsaKey::from_pkcs8_der(&der[..der.len() - 1]).is_err());
        // Trailing data.
        let mut trailing = Zeroizing::new(der.to_vec());
        trailing.push(0);
        assert!(LegacyRsaKey::from_pkcs8_der(&trailing).is_err());
        // A flipped bit in the last CRT coefficient fails AWS-LC's consistency check.
        let mut flipped = Zeroizing::new(der.to_vec());
        let last = flipped.len() - 1;
        flipped[last] ^= 0x01;
        assert!(LegacyRsaKey::from_pkcs8_der(&flipped).is_err());
    }

    #[test]
    fn rejects_non_rsa_and_2048_bit_pkcs8() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let ec = signature::EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &rng,
        )
        .expect("ec key");
        let err = LegacyRsaKey::from_pkcs8_der(ec.as_ref()).expect_err("EC must be rejected");
        assert!(err.to_string().contains("rsaEncryption"), "{err}");

        let ed = signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("ed25519 key");
        assert!(LegacyRsaKey::from_pkcs8_der(ed.as_ref()).is_err());

        let big =
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa 2048");
        let big_der = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&big)
            .expect("pkcs8");
        assert!(LegacyRsaKey::from_pkcs8_der(big_der.as_ref()).is_err());
    }

    #[test]
    fn debug_shows_no_key_material() {
        let k = key(1024);
        assert_eq!(format!("{k:?}"), "LegacyRsaKey { bits: 1024 }");
        assert_eq!(format!("{k:#?}"), "LegacyRsaKey {\n    bits: 1024,\n}");
        let e = LegacyRsaKey::from_pkcs8_der(b"junk").expect_err("junk");
        assert!(e.to_string().starts_with("legacy RSA: "));
    }

    #[test]
    fn key_is_send_and_sync_and_signs_concurrently() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<LegacyRsaKey>();

        let k = key(1024);
        std::thread::scope(|s| {
            for i in 0..4u8 {
                s.spawn(move || {
                    for _ in 0..8 {
                        let msg = [i; 32];
                        let sig = k
                            .sign_pkcs1v15(LegacyRsaDigest::Sha512, &msg)
                            .expect("sign");
                        assert!(verify(
                            k,
                            &signature::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY,
                            &msg,
                            &sig
                        ));
                    }
                });
            }
        });
    }
}

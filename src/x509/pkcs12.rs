//! PKCS#12 (RFC 7292) files: reading what OpenSSL, Windows, macOS and Java write, and writing
//! files that OpenSSL 3 (and, with [`Pkcs12Encryption::Legacy3Des`], old Windows and Java) open.
//!
//! Reads: password integrity (HMAC-SHA1/SHA-256/384/512 with the PKCS#12 KDF), `data` and
//! `encryptedData` SafeContents, `certBag` (x509Certificate), `keyBag`, `pkcs8ShroudedKeyBag`,
//! nested `safeContentsBag`; encryptions PBES2 (PBKDF2-HMAC-SHA-2 + AES-CBC) and the legacy
//! `pbeWithSHAAnd3-KeyTripleDES-CBC`, `…2-KeyTripleDES-CBC`, `…128BitRC2-CBC`, `…40BitRC2-CBC`.
//! Pure functions: no I/O.

use std::fmt;

use der::asn1::{Any, BmpString, ObjectIdentifier, OctetString, SetOfVec};
use der::{Decode, Encode, Sequence, Tag, Tagged};
use pkcs12::cms::content_info::{CmsVersion, ContentInfo};
use pkcs12::cms::encrypted_data::EncryptedData;
use pkcs12::cms::enveloped_data::EncryptedContentInfo;
use pkcs12::kdf::{derive_key, Pkcs12KeyType};
use pkcs12::pbe_params::{EncryptedPrivateKeyInfo, Pkcs12PbeParams};
use pkcs12::pfx::{Pfx, Version};
use pkcs12::{CertBag, DigestInfo, MacData};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;
use zeroize::Zeroizing;

use crate::error::X509Error;
use crate::secret::SecretBytes;

/// Largest PKCS#12 file [`decode`] accepts (1 MiB).
pub const MAX_INPUT_LEN: usize = 1 << 20;
/// Largest iteration count (MAC, PKCS#12 PBE or PBKDF2) [`decode`] accepts.
pub const MAX_ITERATIONS: u64 = 10_000_000;
/// Iterations [`encode`] uses for the bag encryption and for the MAC (OpenSSL 3's default).
pub const ENCODE_ITERATIONS: u32 = 2048;

const MAX_NESTING: usize = 4;

const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_ENCRYPTED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.6");
const ID_PBES2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.5.13");
const ID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const ID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const FRIENDLY_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.20");
const LOCAL_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.21");

/// What a PKCS#12 file holds.
#[derive(Debug, Default)]
pub struct Pkcs12Contents {
    /// Certificates (DER), in file order.
    pub certificates: Vec<Vec<u8>>,
    /// Private keys: unencrypted PKCS#8 `PrivateKeyInfo` DER, in file order.
    pub keys: Vec<SecretBytes>,
    /// The `friendlyName` of each certificate (same index as `certificates`), if present.
    pub friendly_names: Vec<Option<String>>,
}

/// Why [`decode`] failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pkcs12Error {
    /// The password does not open the file (MAC mismatch, or decryption failed).
    WrongPassword,
    /// The input is not a PKCS#12 file this module reads (malformed, too large, unsupported).
    Invalid(String),
}

impl fmt::Display for Pkcs12Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pkcs12Error::WrongPassword => f.write_str("PKCS#12: wrong password"),
            Pkcs12Error::Invalid(m) => write!(f, "PKCS#12: {m}"),
        }
    }
}

impl std::error::Error for Pkcs12Error {}

impl From<Pkcs12Error> for X509Error {
    fn from(e: Pkcs12Error) -> Self {
        X509Error::Malformed(e.to_string())
    }
}

fn invalid(m: impl Into<String>) -> Pkcs12Error {
    Pkcs12Error::Invalid(m.into())
}

/// How [`encode`] protects the key and the certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pkcs12Encryption {
    /// OpenSSL 3's default: PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) for the key and the
    /// certificates, MAC HMAC-SHA256.
    Aes256Pbkdf2,
    /// For old Windows, macOS and Java: pbeWithSHAAnd3-KeyTripleDES-CBC for the key and the
    /// certificates, MAC HMAC-SHA1.
    Legacy3Des,
}

/// `SafeBag` (RFC 7292 §4.2). Defined here because the pkcs12 crate's own type does not
/// round-trip its `bagValue`.
#[derive(Clone, Debug, Sequence)]
struct Bag {
    bag_id: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    bag_value: Any,
    bag_attributes: Option<SetOfVec<Attribute>>,
}

/// The MAC / KDF digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn from_oid(oid: ObjectIdentifier) -> Option<Self> {
        match oid {
            o if o == ID_SHA1 => Some(Hash::Sha1),
            o if o == ID_SHA256 => Some(Hash::Sha256),
            o if o == ID_SHA384 => Some(Hash::Sha384),
            o if o == ID_SHA512 => Some(Hash::Sha512),
            _ => None,
        }
    }

    fn oid(self) -> ObjectIdentifier {
        match self {
            Hash::Sha1 => ID_SHA1,
            Hash::Sha256 => ID_SHA256,
            Hash::Sha384 => ID_SHA384,
            Hash::Sha512 => ID_SHA512,
        }
    }

    fn len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    fn hmac(self) -> aws_lc_rs::hmac::Algorithm {
        match self {
            Hash::Sha1 => aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Hash::Sha256 => aws_lc_rs::hmac::HMAC_SHA256,
            Hash::Sha384 => aws_lc_rs::hmac::HMAC_SHA384,
            Hash::Sha512 => aws_lc_rs::hmac::HMAC_SHA512,
        }
    }

    /// The PKCS#12 KDF (RFC 7292 Appendix B) with this digest.
    fn kdf(
        self,
        pass: &[u8],
        salt: &[u8],
        id: Pkcs12KeyType,
        rounds: i32,
        len: usize,
    ) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(match self {
            Hash::Sha1 => derive_key::<sha1::Sha1>(pass, salt, id, rounds, len),
            Hash::Sha256 => derive_key::<sha2::Sha256>(pass, salt, id, rounds, len),
            Hash::Sha384 => derive_key::<sha2::Sha384>(pass, salt, id, rounds, len),
            Hash::Sha512 => derive_key::<sha2::Sha512>(pass, salt, id, rounds, len),
        })
    }
}

/// The password as the PKCS#12 KDF takes it: UTF-16BE (surrogate pairs outside the BMP, as
/// OpenSSL does) with a terminating NUL.
fn bmp_password(password: &str) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(password.len() * 2 + 2));
    for unit in password.encode_utf16() {
        out.extend_from_slice(&unit.to_be_bytes());
    }
    out.extend_from_slice(&[0, 0]);
    out
}

fn check_iterations(n: i64, what: &str) -> Result<i32, Pkcs12Error> {
    if n < 1 || n as u64 > MAX_ITERATIONS {
        return Err(invalid(format!(
            "{what} iteration count {n} is outside 1..={MAX_ITERATIONS}"
        )));
    }
    i32::try_from(n).map_err(|_| invalid(format!("{what} iteration count {n} is too large")))
}

/// Passwords to try: the password's two forms (UTF-16 for the PKCS#12 KDF, UTF-8 for PBES2).
struct Password<'a> {
    bmp: Zeroizing<Vec<u8>>,
    utf8: &'a [u8],
}

/// Reads a PKCS#12 file: verifies its MAC (if it has one) and returns its certificates and
/// unencrypted private keys. Its key derivations (MAC, every encrypted bag) are bounded in all
/// by [`super::budget::MAX_FILE_WORK`].
pub fn decode(der: &[u8], password: &str) -> Result<Pkcs12Contents, Pkcs12Error> {
    decode_within(der, password, &mut super::budget::Budget::file())
}

/// [`decode`], charging its key derivations to `budget`.
pub fn decode_within(
    der: &[u8],
    password: &str,
    budget: &mut super::budget::Budget,
) -> Result<Pkcs12Contents, Pkcs12Error> {
    if der.len() > MAX_INPUT_LEN {
        return Err(invalid(format!(
            "file is {} bytes; at most {MAX_INPUT_LEN} are accepted",
            der.len()
        )));
    }
    if der.first() != Some(&0x30) {
        return Err(invalid("not a PKCS#12 file (no ASN.1 SEQUENCE)"));
    }
    let pfx = Pfx::from_der(der).map_err(|e| {
        invalid(format!(
            "not a PKCS#12 file, or not DER (BER is not read): {e}"
        ))
    })?;
    if pfx.version != Version::V3 {
        return Err(invalid("unsupported PFX version"));
    }
    if pfx.auth_safe.content_type != ID_DATA {
        return Err(invalid(format!(
            "authSafe content type {} is not supported (only password integrity, id-data)",
            pfx.auth_safe.content_type
        )));
    }
    let auth_safe = octets(&pfx.auth_safe.content, "authSafe")?;

    let safes = Vec::<ContentInfo>::from_der(auth_safe.as_bytes())
        .map_err(|e| invalid(format!("AuthenticatedSafe: {e}")))?;
    // What the file asks for that can be seen before any derivation (the MAC, every
    // encrypted SafeContents, every shrouded key in a plain one) is priced at once: a file
    // over the budget costs nothing. What nested encryption hides is charged as it opens.
    let visible = visible_cost(pfx.mac_data.as_ref(), &safes, password.is_empty())?;
    budget
        .afford(visible, "the PKCS#12 file")
        .map_err(invalid)?;

    let mut pw = Password {
        bmp: bmp_password(password),
        utf8: password.as_bytes(),
    };
    let mac_verified = match &pfx.mac_data {
        Some(mac) => {
            if verify_mac(mac, &pw.bmp, auth_safe.as_bytes(), budget)? {
                true
            } else if password.is_empty() && verify_mac(mac, &[], auth_safe.as_bytes(), budget)? {
                // OpenSSL also writes files with a NULL (rather than empty) password.
                pw.bmp = Zeroizing::new(Vec::new());
                true
            } else {
                return Err(Pkcs12Error::WrongPassword);
            }
        }
        None => false,
    };

    let mut out = Pkcs12Contents::default();
    for ci in &safes {
        if ci.content_type == ID_DATA {
            let contents = octets(&ci.content, "SafeContents")?;
            read_safe_contents(contents.as_bytes(), &pw, mac_verified, &mut out, 0, budget)?;
        } else if ci.content_type == ID_ENCRYPTED_DATA {
            let ed: EncryptedData = ci
                .content
                .decode_as()
                .map_err(|e| invalid(format!("EncryptedData: {e}")))?;
            let eci = &ed.enc_content_info;
            let Some(ct) = &eci.encrypted_content else {
                continue;
            };
            let plain = decrypt(&eci.content_enc_alg, ct.as_bytes(), &pw, budget)?;
            read_safe_contents(&plain, &pw, mac_verified, &mut out, 0, budget)
                .map_err(|e| wrong_if_unverified(e, mac_verified))?;
        } else {
            return Err(invalid(format!(
                "AuthenticatedSafe content type {} is not supported (public-key privacy)",
                ci.content_type
            )));
        }
    }
    Ok(out)
}

/// The key-derivation work of what can be seen without deriving anything: the MAC (twice
/// when an empty password is also tried as none), each encrypted SafeContents, each shrouded
/// key in a plain SafeContents.
fn visible_cost(
    mac: Option<&MacData>,
    safes: &[ContentInfo],
    empty_password: bool,
) -> Result<u64, Pkcs12Error> {
    let mut total: u64 = 0;
    if let Some(mac) = mac {
        let rounds = check_iterations(i64::from(mac.iterations), "MAC")? as u64;
        total = total.saturating_add(if empty_password { 2 * rounds } else { rounds });
    }
    for ci in safes {
        if ci.content_type == ID_ENCRYPTED_DATA {
            let ed: EncryptedData = ci
                .content
                .decode_as()
                .map_err(|e| invalid(format!("EncryptedData: {e}")))?;
            total = total.saturating_add(algorithm_cost(&ed.enc_content_info.content_enc_alg)?);
        } else if ci.content_type == ID_DATA {
            let contents = octets(&ci.content, "SafeContents")?;
            let bags = Vec::<Bag>::from_der(contents.as_bytes())
                .map_err(|e| invalid(format!("SafeContents: {e}")))?;
            for bag in bags
                .iter()
                .filter(|b| b.bag_id == pkcs12::PKCS_12_PKCS8_KEY_BAG_OID)
            {
                let epki: EncryptedPrivateKeyInfo = bag
                    .bag_value
                    .decode_as()
                    .map_err(|e| invalid(format!("pkcs8ShroudedKeyBag: {e}")))?;
                total = total.saturating_add(algorithm_cost(&epki.encryption_algorithm)?);
            }
        }
    }
    Ok(total)
}

/// The key-derivation work of a PKCS#12 PBE or PBES2 algorithm.
fn algorithm_cost(alg: &AlgorithmIdentifierOwned) -> Result<u64, Pkcs12Error> {
    if alg.oid == ID_PBES2 {
        let der = alg
            .to_der()
            .map_err(|e| invalid(format!("PBES2 parameters: {e}")))?;
        let scheme = pkcs5::EncryptionScheme::from_der(&der)
            .map_err(|e| invalid(format!("PBES2 parameters: {e}")))?;
        return super::budget::scheme_cost(&scheme).map_err(invalid);
    }
    let params: Pkcs12PbeParams = match &alg.parameters {
        Some(p) => p
            .decode_as()
            .map_err(|e| invalid(format!("PKCS#12 PBE parameters: {e}")))?,
        None => return Ok(0), // refused when it is read
    };
    let rounds = check_iterations(i64::from(params.iterations), "PBE")? as u64;
    // at most a 24-byte key (two 20-byte blocks) and the IV's block
    Ok(rounds.saturating_mul(3))
}

/// Without a MAC, garbage out of a decryption most likely means a wrong password.
fn wrong_if_unverified(e: Pkcs12Error, mac_verified: bool) -> Pkcs12Error {
    match e {
        Pkcs12Error::Invalid(_) if !mac_verified => Pkcs12Error::WrongPassword,
        e => e,
    }
}

fn octets(any: &Any, what: &str) -> Result<OctetString, Pkcs12Error> {
    if any.tag() != Tag::OctetString {
        return Err(invalid(format!(
            "{what}: expected a primitive OCTET STRING, found {} (BER constructed strings are not read)",
            any.tag()
        )));
    }
    any.decode_as().map_err(|e| invalid(format!("{what}: {e}")))
}

/// Verifies the MAC; `Ok(false)` when it does not match.
fn verify_mac(
    mac: &MacData,
    bmp: &[u8],
    data: &[u8],
    budget: &mut super::budget::Budget,
) -> Result<bool, Pkcs12Error> {
    let alg = &mac.mac.algorithm;
    let hash = Hash::from_oid(alg.oid)
        .ok_or_else(|| invalid(format!("MAC digest {} is not supported", alg.oid)))?;
    let rounds = check_iterations(i64::from(mac.iterations), "MAC")?;
    budget.charge(rounds as u64, "the MAC").map_err(invalid)?;
    let key = hash.kdf(
        bmp,
        mac.mac_salt.as_bytes(),
        Pkcs12KeyType::Mac,
        rounds,
        hash.len(),
    );
    let key = aws_lc_rs::hmac::Key::new(hash.hmac(), &key);
    Ok(aws_lc_rs::hmac::verify(&key, data, mac.mac.digest.as_bytes()).is_ok())
}

fn read_safe_contents(
    der: &[u8],
    pw: &Password<'_>,
    mac_verified: bool,
    out: &mut Pkcs12Contents,
    depth: usize,
    budget: &mut super::budget::Budget,
) -> Result<(), Pkcs12Error> {
    if depth > MAX_NESTING {
        return Err(invalid("SafeContents nested too deeply"));
    }
    let bags = Vec::<Bag>::from_der(der).map_err(|e| invalid(format!("SafeContents: {e}")))?;
    for bag in &bags {
        match bag.bag_id {
            id if id == pkcs12::PKCS_12_CERT_BAG_OID => {
                let cb: CertBag = bag
                    .bag_value
                    .decode_as()
                    .map_err(|e| invalid(format!("certBag: {e}")))?;
                if cb.cert_id != pkcs12::PKCS_12_X509_CERT_OID {
                    continue; // SDSI certificates: not ours to read
                }
                let cert = cb.cert_value.as_bytes();
                match der::AnyRef::from_der(cert) {
                    Ok(a) if a.tag() == Tag::Sequence => {}
                    _ => return Err(invalid("certBag does not hold a DER certificate")),
                }
                out.certificates.push(cert.to_vec());
                out.friendly_names.push(friendly_name(bag));
            }
            id if id == pkcs12::PKCS_12_KEY_BAG_OID => {
                let der = bag
                    .bag_value
                    .to_der()
                    .map_err(|e| invalid(format!("keyBag: {e}")))?;
                out.keys.push(checked_pkcs8(Zeroizing::new(der), true)?);
            }
            id if id == pkcs12::PKCS_12_PKCS8_KEY_BAG_OID => {
                let epki: EncryptedPrivateKeyInfo = bag
                    .bag_value
                    .decode_as()
                    .map_err(|e| invalid(format!("pkcs8ShroudedKeyBag: {e}")))?;
                let plain = decrypt(
                    &epki.encryption_algorithm,
                    epki.encrypted_data.as_bytes(),
                    pw,
                    budget,
                )?;
                out.keys.push(checked_pkcs8(plain, mac_verified)?);
            }
            id if id == pkcs12::PKCS_12_SAFE_CONTENTS_BAG_OID => {
                let inner = bag
                    .bag_value
                    .to_der()
                    .map_err(|e| invalid(format!("safeContentsBag: {e}")))?;
                read_safe_contents(&inner, pw, mac_verified, out, depth + 1, budget)?;
            }
            _ => {} // crlBag, secretBag, unknown: skipped
        }
    }
    Ok(())
}

fn checked_pkcs8(der: Zeroizing<Vec<u8>>, trusted: bool) -> Result<SecretBytes, Pkcs12Error> {
    match pkcs8::PrivateKeyInfoRef::from_der(&der) {
        Ok(_) => Ok(SecretBytes::from(der)),
        Err(_) if !trusted => Err(Pkcs12Error::WrongPassword),
        Err(e) => Err(invalid(format!("private key is not PKCS#8: {e}"))),
    }
}

fn friendly_name(bag: &Bag) -> Option<String> {
    let attrs = bag.bag_attributes.as_ref()?;
    let attr = attrs.iter().find(|a| a.oid == FRIENDLY_NAME)?;
    let v = attr.values.iter().next()?;
    match v.tag() {
        Tag::BmpString => v.decode_as::<BmpString>().ok().map(|s| s.to_string()),
        Tag::Utf8String => std::str::from_utf8(v.value()).ok().map(str::to_owned),
        _ => None,
    }
}

/// Decrypts with a PKCS#12 PBE or a PBES2 algorithm, its key derivation charged to
/// `budget` first.
fn decrypt(
    alg: &AlgorithmIdentifierOwned,
    ciphertext: &[u8],
    pw: &Password<'_>,
    budget: &mut super::budget::Budget,
) -> Result<Zeroizing<Vec<u8>>, Pkcs12Error> {
    if alg.oid == ID_PBES2 {
        return decrypt_pbes2(alg, ciphertext, pw.utf8, budget);
    }
    // (key length, IV length, cipher)
    let (key_len, cipher) = match alg.oid {
        o if o == pkcs12::PKCS_12_PBE_WITH_SHAAND3_KEY_TRIPLE_DES_CBC => (24, Legacy::Tdes3),
        o if o == pkcs12::PKCS_12_PBE_WITH_SHAAND2_KEY_TRIPLE_DES_CBC => (16, Legacy::Tdes2),
        o if o == pkcs12::PKCS_12_PBE_WITH_SHAAND128_BIT_RC2_CBC => (16, Legacy::Rc2(128)),
        o if o == pkcs12::PKCS_12_PBEWITH_SHAAND40_BIT_RC2_CBC => (5, Legacy::Rc2(40)),
        o => {
            return Err(invalid(format!(
                "encryption algorithm {o} is not supported"
            )))
        }
    };
    let params: Pkcs12PbeParams = alg
        .parameters
        .as_ref()
        .ok_or_else(|| invalid("PKCS#12 PBE without parameters"))?
        .decode_as()
        .map_err(|e| invalid(format!("PKCS#12 PBE parameters: {e}")))?;
    let rounds = check_iterations(i64::from(params.iterations), "PBE")?;
    // the KDF runs `rounds` hashes per 20-byte block: the key's blocks and the IV's
    let blocks = (key_len as u64).div_ceil(20) + 1;
    budget
        .charge((rounds as u64).saturating_mul(blocks), "a bag's PBE")
        .map_err(invalid)?;
    let salt = params.salt.as_bytes();
    let key = Hash::Sha1.kdf(&pw.bmp, salt, Pkcs12KeyType::EncryptionKey, rounds, key_len);
    let iv = Hash::Sha1.kdf(&pw.bmp, salt, Pkcs12KeyType::Iv, rounds, 8);
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    let n = cipher.decrypt(&key, &iv, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn decrypt_pbes2(
    alg: &AlgorithmIdentifierOwned,
    ciphertext: &[u8],
    password: &[u8],
    budget: &mut super::budget::Budget,
) -> Result<Zeroizing<Vec<u8>>, Pkcs12Error> {
    let alg_der = alg
        .to_der()
        .map_err(|e| invalid(format!("PBES2 parameters: {e}")))?;
    let scheme = pkcs5::EncryptionScheme::from_der(&alg_der)
        .map_err(|e| invalid(format!("PBES2 parameters: {e}")))?;
    let params = scheme
        .pbes2()
        .ok_or_else(|| invalid("PBES2 without parameters"))?;
    match &params.kdf {
        pkcs5::pbes2::Kdf::Pbkdf2(p) => {
            check_iterations(i64::from(p.iteration_count), "PBKDF2")?;
            let cost = super::budget::scheme_cost(&scheme).map_err(invalid)?;
            budget.charge(cost, "a bag's PBKDF2").map_err(invalid)?;
        }
        _ => {
            return Err(invalid(
                "PBES2 key derivation other than PBKDF2 is not supported",
            ))
        }
    }
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    let n = match params.decrypt_in_place(password, &mut buf) {
        Ok(pt) => pt.len(),
        Err(pkcs5::Error::DecryptFailed) => return Err(Pkcs12Error::WrongPassword),
        Err(e) => return Err(invalid(format!("PBES2: {e}"))),
    };
    buf.truncate(n);
    Ok(buf)
}

/// The legacy PKCS#12 PBE ciphers (all CBC with PKCS#7 padding, 8-byte blocks).
#[derive(Clone, Copy)]
enum Legacy {
    Tdes3,
    Tdes2,
    /// RC2 with this effective key length in bits
    Rc2(usize),
}

impl Legacy {
    /// Decrypts in place; the plaintext's length. A padding failure is a wrong password.
    fn decrypt(self, key: &[u8], iv: &[u8], buf: &mut [u8]) -> Result<usize, Pkcs12Error> {
        use cbc::cipher::block_padding::Pkcs7;
        use cbc::cipher::{BlockModeDecrypt, InnerIvInit, KeyInit, KeyIvInit};
        let bad_len = |_| invalid("PKCS#12 PBE: bad key or IV length");
        let res = match self {
            Legacy::Tdes3 => cbc::Decryptor::<des::TdesEde3>::new_from_slices(key, iv)
                .map_err(bad_len)?
                .decrypt_padded::<Pkcs7>(buf)
                .map(|p| p.len()),
            Legacy::Tdes2 => cbc::Decryptor::<des::TdesEde2>::new_from_slices(key, iv)
                .map_err(bad_len)?
                .decrypt_padded::<Pkcs7>(buf)
                .map(|p| p.len()),
            Legacy::Rc2(bits) => {
                let rc2 = if bits == 128 {
                    rc2::Rc2::new_from_slice(key).map_err(bad_len)?
                } else {
                    rc2::Rc2::new_with_eff_key_len(key, bits)
                };
                cbc::Decryptor::<rc2::Rc2>::inner_iv_slice_init(rc2, iv)
                    .map_err(bad_len)?
                    .decrypt_padded::<Pkcs7>(buf)
                    .map(|p| p.len())
            }
        };
        res.map_err(|_| Pkcs12Error::WrongPassword)
    }
}

fn random<const N: usize>() -> Result<[u8; N], X509Error> {
    let mut b = [0u8; N];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| X509Error::Crypto("random generator"))?;
    Ok(b)
}

/// Encrypts `plain` for `enc`; the algorithm identifier and the ciphertext.
fn encrypt(
    plain: &[u8],
    password: &str,
    enc: Pkcs12Encryption,
) -> Result<(AlgorithmIdentifierOwned, Vec<u8>), X509Error> {
    match enc {
        Pkcs12Encryption::Aes256Pbkdf2 => {
            let salt = random::<16>()?;
            let iv = random::<16>()?;
            let params = pkcs5::pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(
                ENCODE_ITERATIONS,
                &salt,
                iv,
            )
            .map_err(|e| X509Error::Pkcs8(e.to_string()))?;
            let ct = params
                .encrypt(password.as_bytes(), plain)
                .map_err(|e| X509Error::Pkcs8(e.to_string()))?;
            let scheme = pkcs5::EncryptionScheme::from(params);
            let alg = AlgorithmIdentifierOwned::from_der(&scheme.to_der()?)?;
            Ok((alg, ct))
        }
        Pkcs12Encryption::Legacy3Des => {
            use cbc::cipher::block_padding::Pkcs7;
            use cbc::cipher::{BlockModeEncrypt, KeyIvInit};
            let salt = random::<8>()?;
            let rounds = i32::try_from(ENCODE_ITERATIONS)
                .map_err(|_| X509Error::Malformed("iteration count".into()))?;
            let bmp = bmp_password(password);
            let key = Hash::Sha1.kdf(&bmp, &salt, Pkcs12KeyType::EncryptionKey, rounds, 24);
            let iv = Hash::Sha1.kdf(&bmp, &salt, Pkcs12KeyType::Iv, rounds, 8);
            let mut buf = Zeroizing::new(vec![0u8; plain.len() + 8]);
            buf[..plain.len()].copy_from_slice(plain);
            let ct = cbc::Encryptor::<des::TdesEde3>::new_from_slices(&key, &iv)
                .map_err(|_| X509Error::Malformed("3DES key length".into()))?
                .encrypt_padded::<Pkcs7>(&mut buf, plain.len())
                .map_err(|_| X509Error::Malformed("3DES padding".into()))?
                .to_vec();
            let params = Pkcs12PbeParams {
                salt: OctetString::new(salt.to_vec())?,
                iterations: rounds,
            };
            let alg = AlgorithmIdentifierOwned {
                oid: pkcs12::PKCS_12_PBE_WITH_SHAAND3_KEY_TRIPLE_DES_CBC,
                parameters: Some(Any::encode_from(&params)?),
            };
            Ok((alg, ct))
        }
    }
}

fn bag_attributes(
    friendly_name: Option<&str>,
    local_key_id: Option<&[u8]>,
) -> Result<Option<SetOfVec<Attribute>>, X509Error> {
    let mut attrs = SetOfVec::new();
    if let Some(name) = friendly_name {
        let bmp = BmpString::from_utf8(name).map_err(|_| {
            X509Error::Value(format!(
                "friendly name '{name}' has characters outside the Basic Multilingual Plane"
            ))
        })?;
        let mut values = SetOfVec::new();
        values.insert(Any::encode_from(&bmp)?)?;
        attrs.insert(Attribute {
            oid: FRIENDLY_NAME,
            values,
        })?;
    }
    if let Some(id) = local_key_id {
        let mut values = SetOfVec::new();
        values.insert(Any::encode_from(&OctetString::new(id.to_vec())?)?)?;
        attrs.insert(Attribute {
            oid: LOCAL_KEY_ID,
            values,
        })?;
    }
    Ok(if attrs.is_empty() { None } else { Some(attrs) })
}

/// Writes a PKCS#12 file holding `cert` (the leaf), the `chain` certificates after it, and,
/// when given, the private key (PKCS#8 DER) with a `localKeyID` pairing it with the leaf.
/// `friendly_name` goes on the key and the leaf. Iterations: [`ENCODE_ITERATIONS`].
pub fn encode(
    key_pkcs8: Option<&[u8]>,
    cert: &[u8],
    chain: &[Vec<u8>],
    password: &str,
    friendly_name: Option<&str>,
    enc: Pkcs12Encryption,
) -> Result<Vec<u8>, X509Error> {
    for c in std::iter::once(cert).chain(chain.iter().map(Vec::as_slice)) {
        match der::AnyRef::from_der(c) {
            Ok(a) if a.tag() == Tag::Sequence => {}
            _ => return Err(X509Error::Malformed("certificate is not DER".into())),
        }
    }
    if let Some(k) = key_pkcs8 {
        pkcs8::PrivateKeyInfoRef::from_der(k).map_err(|e| X509Error::Pkcs8(e.to_string()))?;
    }
    // OpenSSL's localKeyID: SHA-1 of the certificate.
    let local_key_id = key_pkcs8.map(|_| {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, cert)
            .as_ref()
            .to_vec()
    });

    // Certificates: one SafeContents, encrypted.
    let mut cert_bags = Vec::with_capacity(1 + chain.len());
    for (i, c) in std::iter::once(cert)
        .chain(chain.iter().map(Vec::as_slice))
        .enumerate()
    {
        let cb = CertBag {
            cert_id: pkcs12::PKCS_12_X509_CERT_OID,
            cert_value: OctetString::new(c.to_vec())?,
        };
        let attrs = if i == 0 {
            bag_attributes(friendly_name, local_key_id.as_deref())?
        } else {
            None
        };
        cert_bags.push(Bag {
            bag_id: pkcs12::PKCS_12_CERT_BAG_OID,
            bag_value: Any::encode_from(&cb)?,
            bag_attributes: attrs,
        });
    }
    let (alg, ct) = encrypt(&cert_bags.to_der()?, password, enc)?;
    let ed = EncryptedData {
        version: CmsVersion::V0,
        enc_content_info: EncryptedContentInfo {
            content_type: ID_DATA,
            content_enc_alg: alg,
            encrypted_content: Some(OctetString::new(ct)?),
        },
        unprotected_attrs: None,
    };
    let mut safes = vec![ContentInfo {
        content_type: ID_ENCRYPTED_DATA,
        content: Any::encode_from(&ed)?,
    }];

    // Key: a pkcs8ShroudedKeyBag in a plain SafeContents.
    if let Some(k) = key_pkcs8 {
        let (alg, ct) = encrypt(k, password, enc)?;
        let epki = EncryptedPrivateKeyInfo {
            encryption_algorithm: alg,
            encrypted_data: OctetString::new(ct)?,
        };
        let bag = Bag {
            bag_id: pkcs12::PKCS_12_PKCS8_KEY_BAG_OID,
            bag_value: Any::encode_from(&epki)?,
            bag_attributes: bag_attributes(friendly_name, local_key_id.as_deref())?,
        };
        safes.push(ContentInfo {
            content_type: ID_DATA,
            content: Any::encode_from(&OctetString::new(vec![bag].to_der()?)?)?,
        });
    }

    let auth_safe = safes.to_der()?;
    let hash = match enc {
        Pkcs12Encryption::Aes256Pbkdf2 => Hash::Sha256,
        Pkcs12Encryption::Legacy3Des => Hash::Sha1,
    };
    let salt = random::<8>()?;
    let rounds = i32::try_from(ENCODE_ITERATIONS)
        .map_err(|_| X509Error::Malformed("iteration count".into()))?;
    let mac_key = hash.kdf(
        &bmp_password(password),
        &salt,
        Pkcs12KeyType::Mac,
        rounds,
        hash.len(),
    );
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(hash.hmac(), &mac_key),
        &auth_safe,
    );
    let pfx = Pfx {
        version: Version::V3,
        auth_safe: ContentInfo {
            content_type: ID_DATA,
            content: Any::encode_from(&OctetString::new(auth_safe)?)?,
        },
        mac_data: Some(MacData {
            mac: DigestInfo {
                algorithm: AlgorithmIdentifierOwned {
                    oid: hash.oid(),
                    parameters: Some(Any::null()),
                },
                digest: OctetString::new(tag.as_ref().to_vec())?,
            },
            mac_salt: OctetString::new(salt.to_vec())?,
            iterations: rounds,
        }),
    };
    Ok(pfx.to_der()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    fn openssl(dir: &Path, args: &[&str]) -> std::process::Output {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// A key (k.pem) and self-signed certificate (c.pem) made by OpenSSL; `newkey` is
    /// `ec` or `rsa:2048`.
    fn fixture(newkey: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["req", "-x509", "-newkey", newkey];
        if newkey == "ec" {
            args.extend(["-pkeyopt", "ec_paramgen_curve:P-256"]);
        }
        args.extend([
            "-nodes", "-keyout", "k.pem", "-out", "c.pem", "-subj", "/CN=t", "-days", "1",
        ]);
        openssl(dir.path(), &args);
        openssl(
            dir.path(),
            &["x509", "-in", "c.pem", "-outform", "DER", "-out", "c.der"],
        );
        openssl(
            dir.path(),
            &[
                "pkey", "-in", "k.pem", "-pubout", "-outform", "DER", "-out", "pub.der",
            ],
        );
        dir
    }

    fn export(dir: &Path, extra: &[&str], out: &str) -> Vec<u8> {
        let mut args = vec![
            "pkcs12", "-export", "-inkey", "k.pem", "-in", "c.pem", "-passout", "pass:pw", "-out",
            out,
        ];
        args.extend_from_slice(extra);
        openssl(dir, &args);
        std::fs::read(dir.join(out)).unwrap()
    }

    /// The public key (SPKI DER) of a PKCS#8 key, by OpenSSL.
    fn public_of(dir: &Path, pkcs8: &[u8]) -> Vec<u8> {
        std::fs::write(dir.join("x.der"), pkcs8).unwrap();
        openssl(
            dir,
            &[
                "pkey", "-inform", "DER", "-in", "x.der", "-pubout", "-outform", "DER", "-out",
                "xpub.der",
            ],
        );
        std::fs::read(dir.join("xpub.der")).unwrap()
    }

    fn check_decodes(dir: &Path, p12: &[u8], password: &str) -> Pkcs12Contents {
        let c = decode(p12, password).unwrap();
        assert_eq!(
            c.certificates,
            vec![std::fs::read(dir.join("c.der")).unwrap()]
        );
        assert_eq!(c.friendly_names.len(), 1);
        assert_eq!(c.keys.len(), 1);
        assert_eq!(
            public_of(dir, c.keys[0].secret_bytes()),
            std::fs::read(dir.join("pub.der")).unwrap()
        );
        c
    }

    #[test]
    fn decodes_openssl_files_ec_and_rsa() {
        for newkey in ["ec", "rsa:2048"] {
            let dir = fixture(newkey);
            let d = dir.path();
            let modern = export(d, &[], "modern.p12");
            check_decodes(d, &modern, "pw");
            let legacy = export(d, &["-legacy"], "legacy.p12");
            check_decodes(d, &legacy, "pw");
            // 3DES for both (what -legacy does to keys), SHA-1 MAC.
            let tdes = export(
                d,
                &[
                    "-certpbe",
                    "PBE-SHA1-3DES",
                    "-keypbe",
                    "PBE-SHA1-3DES",
                    "-macalg",
                    "sha1",
                ],
                "tdes.p12",
            );
            check_decodes(d, &tdes, "pw");
            // Unencrypted certificates and a friendly name.
            let named = export(d, &["-certpbe", "NONE", "-name", "my cert"], "named.p12");
            let c = check_decodes(d, &named, "pw");
            assert_eq!(c.friendly_names[0].as_deref(), Some("my cert"));
        }
    }

    #[test]
    fn wrong_password_is_wrong_password() {
        let dir = fixture("ec");
        let d = dir.path();
        for (extra, name) in [
            (&[][..], "m.p12"),
            (&["-legacy"][..], "l.p12"),
            (&["-nomac"][..], "n.p12"),
            (&["-nomac", "-legacy"][..], "nl.p12"),
        ] {
            let p12 = export(d, extra, name);
            assert_eq!(
                decode(&p12, "not-pw").unwrap_err(),
                Pkcs12Error::WrongPassword,
                "{name}"
            );
            assert_eq!(decode(&p12, "").unwrap_err(), Pkcs12Error::WrongPassword);
        }
    }

    #[test]
    fn bad_input_is_invalid() {
        let dir = fixture("ec");
        let p12 = export(dir.path(), &[], "m.p12");
        let is_invalid =
            |r: Result<Pkcs12Contents, Pkcs12Error>| matches!(r, Err(Pkcs12Error::Invalid(_)));
        assert!(is_invalid(decode(b"", "pw")));
        assert!(is_invalid(decode(b"garbage, not ASN.1 at all", "pw")));
        assert!(is_invalid(decode(&[0x30, 0x03, 0x02, 0x01, 0x03], "pw")));
        for cut in [1, 2, 10, p12.len() / 2, p12.len() - 1] {
            assert!(is_invalid(decode(&p12[..cut], "pw")), "truncated at {cut}");
        }
        let mut big = p12.clone();
        big.resize(2 << 20, 0);
        assert!(is_invalid(decode(&big, "pw")));
        // Random corruption anywhere must not panic (MAC mismatch or Invalid).
        for i in (0..p12.len()).step_by(7) {
            let mut bad = p12.clone();
            bad[i] ^= 0x5a;
            let _ = decode(&bad, "pw");
        }
    }

    #[test]
    fn huge_iteration_counts_are_refused() {
        let dir = fixture("ec");
        let mut pfx = Pfx::from_der(&export(dir.path(), &[], "m.p12")).unwrap();
        if let Some(m) = pfx.mac_data.as_mut() {
            m.iterations = 20_000_000;
        }
        assert!(matches!(
            decode(&pfx.to_der().unwrap(), "pw"),
            Err(Pkcs12Error::Invalid(_))
        ));
    }

    #[test]
    fn encode_is_read_by_openssl_and_round_trips() {
        let dir = fixture("ec");
        let d = dir.path();
        let rsa = fixture("rsa:2048");
        let chain = vec![std::fs::read(rsa.path().join("c.der")).unwrap()];
        openssl(
            d,
            &[
                "pkcs8", "-topk8", "-nocrypt", "-in", "k.pem", "-outform", "DER", "-out", "k8.der",
            ],
        );
        let key = std::fs::read(d.join("k8.der")).unwrap();
        let cert = std::fs::read(d.join("c.der")).unwrap();
        for enc in [Pkcs12Encryption::Aes256Pbkdf2, Pkcs12Encryption::Legacy3Des] {
            let p12 = encode(Some(&key), &cert, &chain, "pw", Some("my key"), enc).unwrap();
            std::fs::write(d.join("out.p12"), &p12).unwrap();
            openssl(
                d,
                &[
                    "pkcs12", "-info", "-noout", "-passin", "pass:pw", "-in", "out.p12",
                ],
            );
            let shown = openssl(
                d,
                &["pkcs12", "-in", "out.p12", "-passin", "pass:pw", "-nodes"],
            );
            let text = String::from_utf8_lossy(&shown.stdout);
            assert!(text.contains("BEGIN PRIVATE KEY"), "{enc:?}: {text}");
            assert_eq!(text.matches("BEGIN CERTIFICATE").count(), 2, "{text}");
            assert!(text.contains("friendlyName: my key"), "{text}");
            assert!(text.contains("localKeyID"), "{text}");
            // Only the leaf and the key carry a friendlyName.
            assert_eq!(text.matches("friendlyName").count(), 2, "{text}");
            // OpenSSL pairs the key with the leaf.
            openssl(
                d,
                &[
                    "pkcs12", "-in", "out.p12", "-passin", "pass:pw", "-nodes", "-clcerts", "-out",
                    "pair.pem",
                ],
            );
            let pem = std::fs::read_to_string(d.join("pair.pem")).unwrap();
            assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 1);

            let c = decode(&p12, "pw").unwrap();
            assert_eq!(c.certificates, vec![cert.clone(), chain[0].clone()]);
            assert_eq!(c.friendly_names, vec![Some("my key".into()), None]);
            assert_eq!(c.keys.len(), 1);
            assert_eq!(c.keys[0].secret_bytes(), &key[..]);
            assert_eq!(
                decode(&p12, "nope").unwrap_err(),
                Pkcs12Error::WrongPassword
            );

            // Certificates only, no name.
            let p12 = encode(None, &cert, &[], "pw", None, enc).unwrap();
            let c = decode(&p12, "pw").unwrap();
            assert_eq!(c.certificates, vec![cert.clone()]);
            assert!(c.keys.is_empty());
            assert_eq!(c.friendly_names, vec![None]);
        }
    }

    #[test]
    fn encode_rejects_bad_input() {
        assert!(encode(
            None,
            b"nope",
            &[],
            "pw",
            None,
            Pkcs12Encryption::Aes256Pbkdf2
        )
        .is_err());
        let cert = [0x30, 0x00];
        assert!(encode(
            Some(b"not a key"),
            &cert,
            &[],
            "pw",
            None,
            Pkcs12Encryption::Legacy3Des
        )
        .is_err());
    }

    #[test]
    fn empty_password_round_trips_with_openssl() {
        let dir = fixture("ec");
        let d = dir.path();
        let mut args = vec![
            "pkcs12", "-export", "-inkey", "k.pem", "-in", "c.pem", "-passout", "pass:", "-out",
            "e.p12",
        ];
        openssl(d, &args);
        let c = decode(&std::fs::read(d.join("e.p12")).unwrap(), "").unwrap();
        assert_eq!(c.keys.len(), 1);
        args[9] = "e2.p12";
        args.push("-legacy");
        openssl(d, &args);
        let c = decode(&std::fs::read(d.join("e2.p12")).unwrap(), "").unwrap();
        assert_eq!(c.keys.len(), 1);
    }
}

//! Reading certificates and private keys from files whose format is found by content, not by
//! name: PEM (any number of blocks), DER certificates, PKCS#8 (encrypted or not), PKCS#1 RSA
//! and SEC1 EC keys. Input is bounded; nothing here touches the store.

use der::asn1::Null;
use der::{Any, Decode, Encode};
use pkcs8::{EncryptedPrivateKeyInfoRef, PrivateKeyInfoRef};
use spki::{AlgorithmIdentifierRef, ObjectIdentifier};

use crate::error::X509Error;
use crate::secret::SecretBytes;

/// The largest file `import` reads.
pub const MAX_IMPORT_BYTES: usize = 1024 * 1024;

/// What one file held.
#[derive(Debug, Default)]
pub struct FileContents {
    /// certificates, DER
    pub certificates: Vec<Vec<u8>>,
    /// private keys, unencrypted PKCS#8 DER
    pub keys: Vec<SecretBytes>,
    /// encrypted keys (EncryptedPrivateKeyInfo DER) left encrypted: no passphrase was given
    pub encrypted_keys: Vec<Vec<u8>>,
}

/// Why a file could not be read.
#[derive(Debug)]
pub enum ImportError {
    /// an encrypted part did not open with the passphrase
    Decryption(String),
    /// the content is not a format certman reads
    Invalid(String),
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportError::Decryption(m) | ImportError::Invalid(m) => f.write_str(m),
        }
    }
}

impl From<X509Error> for ImportError {
    fn from(e: X509Error) -> Self {
        ImportError::Invalid(e.to_string())
    }
}

const RSA_ENCRYPTION: ObjectIdentifier = const_oid::db::rfc5912::RSA_ENCRYPTION;
const ID_EC_PUBLIC_KEY: ObjectIdentifier = const_oid::db::rfc5912::ID_EC_PUBLIC_KEY;

/// RFC 5915 ECPrivateKey.
#[derive(der::Sequence)]
struct EcPrivateKey<'a> {
    version: u8,
    private_key: &'a der::asn1::OctetStringRef,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    parameters: Option<ObjectIdentifier>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    public_key: Option<der::asn1::BitStringRef<'a>>,
}

fn pkcs8_from(
    alg_oid: ObjectIdentifier,
    params: Option<Any>,
    key: &[u8],
) -> Result<SecretBytes, ImportError> {
    let info = PrivateKeyInfoRef {
        algorithm: AlgorithmIdentifierRef {
            oid: alg_oid,
            parameters: params.as_ref().map(Into::into),
        },
        private_key: der::asn1::OctetStringRef::new(key)
            .map_err(|e| ImportError::Invalid(format!("private key: {e}")))?,
        public_key: None,
    };
    let der = info
        .to_der()
        .map_err(|e| ImportError::Invalid(format!("private key: {e}")))?;
    Ok(SecretBytes::new(der))
}

/// PKCS#1 RSAPrivateKey → PKCS#8.
fn from_pkcs1(der: &[u8]) -> Result<SecretBytes, ImportError> {
    // Checked to be a SEQUENCE of INTEGERs by the key loader later; here only wrapped.
    pkcs8_from(RSA_ENCRYPTION, Some(Any::from(Null)), der)
}

/// SEC1 ECPrivateKey → PKCS#8 (the curve moves into the AlgorithmIdentifier).
fn from_sec1(der: &[u8]) -> Result<SecretBytes, ImportError> {
    let k = EcPrivateKey::from_der(der)
        .map_err(|e| ImportError::Invalid(format!("EC private key: {e}")))?;
    let curve = k
        .parameters
        .ok_or_else(|| ImportError::Invalid("EC private key without its curve".into()))?;
    let params = Any::encode_from(&curve).map_err(|e| ImportError::Invalid(e.to_string()))?;
    pkcs8_from(ID_EC_PUBLIC_KEY, Some(params), der)
}

/// The work an EncryptedPrivateKeyInfo's key derivation asks for (see [`super::budget`]);
/// refused when one derivation could not be done.
fn encrypted_key_cost(enc: &EncryptedPrivateKeyInfoRef<'_>) -> Result<u64, ImportError> {
    let cost = super::budget::scheme_cost(&enc.encryption_algorithm)
        .map_err(|why| ImportError::Invalid(format!("encrypted private key: {why}")))?;
    if cost > super::budget::MAX_KDF_WORK {
        return Err(ImportError::Invalid(format!(
            "encrypted private key: its key derivation asks for {cost} iterations; certman does at \
             most {} for one key",
            super::budget::MAX_KDF_WORK
        )));
    }
    Ok(cost)
}

/// Opens an EncryptedPrivateKeyInfo with `passphrase` (checked: the result must parse), its
/// key derivation charged to `budget`.
pub fn open_encrypted_key(
    der: &[u8],
    passphrase: &str,
    budget: &mut super::budget::Budget,
) -> Result<SecretBytes, ImportError> {
    let enc = EncryptedPrivateKeyInfoRef::from_der(der)
        .map_err(|e| ImportError::Invalid(format!("encrypted private key: {e}")))?;
    let cost = encrypted_key_cost(&enc)?;
    budget
        .charge(cost, "the encrypted private key")
        .map_err(ImportError::Invalid)?;
    let doc = enc.decrypt(passphrase.as_bytes()).map_err(|_| {
        ImportError::Decryption("the passphrase does not open the encrypted private key".into())
    })?;
    PrivateKeyInfoRef::from_der(doc.as_bytes()).map_err(|_| {
        ImportError::Decryption("the passphrase does not open the encrypted private key".into())
    })?;
    Ok(SecretBytes::new(doc.as_bytes().to_vec()))
}

fn decrypt_pkcs8(
    der: &[u8],
    passphrase: Option<&str>,
    out: &mut FileContents,
    budget: &mut super::budget::Budget,
) -> Result<(), ImportError> {
    let enc = EncryptedPrivateKeyInfoRef::from_der(der)
        .map_err(|e| ImportError::Invalid(format!("encrypted private key: {e}")))?;
    // Priced before anything is done, also when it is only kept (flag Q): a key no `decrypt`
    // could open is refused now rather than kept.
    let cost = encrypted_key_cost(&enc)?;
    let Some(pass) = passphrase else {
        out.encrypted_keys.push(der.to_vec());
        return Ok(());
    };
    budget
        .charge(cost, "the encrypted private key")
        .map_err(ImportError::Invalid)?;
    let doc = enc.decrypt(pass.as_bytes()).map_err(|_| {
        ImportError::Decryption("the passphrase does not open the encrypted private key".into())
    })?;
    // A wrong password can decrypt to garbage with valid padding: check it parses.
    PrivateKeyInfoRef::from_der(doc.as_bytes()).map_err(|_| {
        ImportError::Decryption("the passphrase does not open the encrypted private key".into())
    })?;
    out.keys.push(SecretBytes::new(doc.as_bytes().to_vec()));
    Ok(())
}

/// Reads one file's content.
pub fn read_file(bytes: &[u8], passphrase: Option<&str>) -> Result<FileContents, ImportError> {
    if bytes.len() > MAX_IMPORT_BYTES {
        return Err(ImportError::Invalid(format!(
            "{} bytes is larger than the {MAX_IMPORT_BYTES} an import reads",
            bytes.len()
        )));
    }
    let mut out = FileContents::default();
    let mut budget = super::budget::Budget::file();
    match pem_or_der(bytes) {
        Encoding::Pem => read_pem(bytes, passphrase, &mut out, &mut budget)?,
        Encoding::Der => read_der(bytes, passphrase, &mut out, &mut budget)?,
    }
    // Everything certman later reads of a certificate must read now: a bad one is this
    // file's error, not the whole import's.
    for c in &out.certificates {
        super::inspect_certificate(c)
            .map_err(|e| ImportError::Invalid(format!("certificate: {e}")))?;
    }
    if out.certificates.is_empty() && out.keys.is_empty() && out.encrypted_keys.is_empty() {
        return Err(ImportError::Invalid(
            "no certificate or private key in it".into(),
        ));
    }
    Ok(out)
}

enum Encoding {
    Pem,
    Der,
}

/// PEM or DER, by content. PEM may have text before, between and after its blocks (`openssl
/// x509 -text` and `openssl ca` write a dump of the certificate before it); DER is one ASN.1
/// SEQUENCE from the first byte. One pass over the input at most (the search for the
/// `-----BEGIN ` marker), so that hostile input costs linear time.
fn pem_or_der(bytes: &[u8]) -> Encoding {
    const BEGIN: &[u8] = b"-----BEGIN ";
    if bytes.trim_ascii_start().starts_with(BEGIN) {
        return Encoding::Pem;
    }
    // a DER SEQUENCE (certificate, key, PKCS#12) starts 0x30; text does not ('0' is 0x30
    // too, but text starting with a digit then holds a BEGIN marker: checked below)
    if bytes.first() == Some(&0x30) && der::AnyRef::from_der(bytes).is_ok() {
        return Encoding::Der;
    }
    if contains(bytes, BEGIN) {
        Encoding::Pem
    } else {
        Encoding::Der
    }
}

/// Whether `needle` occurs in `haystack`: at most `needle.len()` comparisons per byte, so
/// linear for the short markers it is given.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn read_pem(
    bytes: &[u8],
    passphrase: Option<&str>,
    out: &mut FileContents,
    budget: &mut super::budget::Budget,
) -> Result<(), ImportError> {
    // Only the blocks need be text: the dump before them may be in any encoding (a subject
    // printed in Latin-1); bytes that are not UTF-8 outside the blocks are replaced.
    let text = String::from_utf8_lossy(bytes);
    let mut rest: &str = &text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block = &rest[start..];
        let label_end = block[11..]
            .find("-----")
            .ok_or_else(|| ImportError::Invalid("a PEM header is cut off".into()))?;
        let label = &block[11..11 + label_end];
        let end_marker = format!("-----END {label}-----");
        let end = block.find(&end_marker).ok_or_else(|| {
            ImportError::Invalid(format!("PEM block \"{label}\" has no end (truncated?)"))
        })?;
        let whole = &block[..end + end_marker.len()];
        if whole.contains("Proc-Type: 4,ENCRYPTED") {
            return Err(ImportError::Invalid(format!(
                "\"{label}\" uses OpenSSL's legacy PEM encryption: convert it with `openssl pkcs8 -topk8`"
            )));
        }
        let (decoded_label, der) = der::pem::decode_vec(whole.as_bytes())
            .map_err(|e| ImportError::Invalid(format!("PEM block \"{label}\": {e}")))?;
        match decoded_label {
            "CERTIFICATE" | "X509 CERTIFICATE" | "TRUSTED CERTIFICATE" => {
                x509_cert::Certificate::from_der(&der)
                    .map_err(|e| ImportError::Invalid(format!("certificate: {e}")))?;
                out.certificates.push(der);
            }
            "PRIVATE KEY" => {
                PrivateKeyInfoRef::from_der(&der)
                    .map_err(|e| ImportError::Invalid(format!("private key: {e}")))?;
                out.keys.push(SecretBytes::new(der));
            }
            "ENCRYPTED PRIVATE KEY" => decrypt_pkcs8(&der, passphrase, out, budget)?,
            "RSA PRIVATE KEY" => out.keys.push(from_pkcs1(&der)?),
            "EC PRIVATE KEY" => out.keys.push(from_sec1(&der)?),
            // EC PARAMETERS and the like carry nothing to import
            "EC PARAMETERS" | "DH PARAMETERS" => {}
            other => {
                return Err(ImportError::Invalid(format!(
                    "PEM block \"{other}\" is not a certificate or private key"
                )))
            }
        }
        rest = &block[end + end_marker.len()..];
    }
    Ok(())
}

fn read_der(
    bytes: &[u8],
    passphrase: Option<&str>,
    out: &mut FileContents,
    budget: &mut super::budget::Budget,
) -> Result<(), ImportError> {
    if x509_cert::Certificate::from_der(bytes).is_ok() {
        out.certificates.push(bytes.to_vec());
        return Ok(());
    }
    if PrivateKeyInfoRef::from_der(bytes).is_ok() {
        out.keys.push(SecretBytes::new(bytes.to_vec()));
        return Ok(());
    }
    if EncryptedPrivateKeyInfoRef::from_der(bytes).is_ok() {
        return decrypt_pkcs8(bytes, passphrase, out, budget);
    }
    if looks_like_pfx(bytes) {
        let contents = super::pkcs12::decode_within(bytes, passphrase.unwrap_or(""), budget)
            .map_err(|e| match e {
                super::pkcs12::Pkcs12Error::WrongPassword if passphrase.is_none() => {
                    ImportError::Decryption("a PKCS#12 file: give passphrase=".into())
                }
                super::pkcs12::Pkcs12Error::WrongPassword => {
                    ImportError::Decryption("the passphrase does not open the PKCS#12 file".into())
                }
                super::pkcs12::Pkcs12Error::Invalid(m) => {
                    ImportError::Invalid(format!("PKCS#12: {m}"))
                }
            })?;
        out.certificates.extend(contents.certificates);
        out.keys.extend(contents.keys);
        return Ok(());
    }
    if EcPrivateKey::from_der(bytes).is_ok() {
        out.keys.push(from_sec1(bytes)?);
        return Ok(());
    }
    if is_pkcs1_rsa(bytes) {
        out.keys.push(from_pkcs1(bytes)?);
        return Ok(());
    }
    Err(ImportError::Invalid(
        "not PEM, nor a DER certificate or private key".into(),
    ))
}

/// A PKCS#12 PFX: SEQUENCE { version INTEGER (3), authSafe ContentInfo, macData OPTIONAL }.
fn looks_like_pfx(bytes: &[u8]) -> bool {
    #[derive(der::Sequence)]
    struct Head<'a> {
        version: u8,
        auth_safe: der::AnyRef<'a>,
        mac: Option<der::AnyRef<'a>>,
    }
    matches!(Head::from_der(bytes), Ok(h) if h.version == 3)
}

/// A PKCS#1 RSAPrivateKey: SEQUENCE { version 0, n, e, d, p, q, dp, dq, qinv }.
fn is_pkcs1_rsa(bytes: &[u8]) -> bool {
    #[derive(der::Sequence)]
    struct RsaPrivateKey<'a> {
        version: u8,
        n: der::asn1::UintRef<'a>,
        e: der::asn1::UintRef<'a>,
        d: der::asn1::UintRef<'a>,
        p: der::asn1::UintRef<'a>,
        q: der::asn1::UintRef<'a>,
        dp: der::asn1::UintRef<'a>,
        dq: der::asn1::UintRef<'a>,
        qinv: der::asn1::UintRef<'a>,
    }
    matches!(RsaPrivateKey::from_der(bytes), Ok(k) if k.version == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_pem(bytes: &[u8]) -> bool {
        matches!(pem_or_der(bytes), Encoding::Pem)
    }

    #[test]
    fn pem_is_found_after_leading_text_der_by_its_first_byte() {
        assert!(is_pem(b"\n  -----BEGIN CERTIFICATE-----\n"));
        // `openssl x509 -text` / `openssl ca`: a dump, then the block
        assert!(is_pem(
            b"Certificate:\n    Data:\n        Version: 3 (0x2)\n-----BEGIN CERTIFICATE-----\n"
        ));
        // text starting with '0' (0x30, a SEQUENCE tag) that is no DER
        assert!(is_pem(
            b"0 certificates follow\n-----BEGIN CERTIFICATE-----\n"
        ));
        // a DER SEQUENCE stays DER, also when its content happens to hold the marker
        let content = b"x-----BEGIN CERTIFICATE";
        let mut der = vec![0x30, content.len() as u8];
        der.extend_from_slice(content);
        assert!(!is_pem(&der));
        assert!(!is_pem(b"no marker anywhere"));
    }

    #[test]
    fn text_around_a_block_is_skipped_and_the_block_still_checked() {
        // the block's content is read as before: a bad certificate is this file's error
        let bad = b"Certificate:\n  dump\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\ntrailing text\n";
        let e = read_file(bad, None).unwrap_err().to_string();
        assert!(e.starts_with("certificate:"), "{e}");
        // leading text that is not UTF-8 (a Latin-1 dump) does not stop the block
        let mut latin1 = b"Subject: O=M\xfcller\n".to_vec();
        let block = bad.windows(5).position(|w| w == b"-----").unwrap();
        latin1.extend_from_slice(&bad[block..]);
        let e = read_file(&latin1, None).unwrap_err().to_string();
        assert!(e.starts_with("certificate:"), "{e}");
        // an unterminated block after text is refused, not searched for again and again
        let mut cut = b"text\n".repeat(1000);
        cut.extend_from_slice(b"-----BEGIN CERTIFICATE-----\nAAAA\n");
        let e = read_file(&cut, None).unwrap_err().to_string();
        assert!(e.contains("has no end"), "{e}");
    }

    #[test]
    fn scanning_a_large_text_is_linear() {
        // the largest file an import reads, made of near-markers: found out in one pass
        let mut big = b"-----BEGIN X".repeat(MAX_IMPORT_BYTES / 12);
        big.truncate(MAX_IMPORT_BYTES);
        let t = std::time::Instant::now();
        assert!(read_file(&big, None).is_err());
        // quadratic scanning of 1 MiB would take minutes; linear takes milliseconds
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            t.elapsed()
        );
    }
}

//! Shared by the fuzz targets: the fixed identities and the stand-ins for private-key
//! operations.

use certman::error::KeyError;
use certman::protocols::scep::message::MessageLimits;
use certman::secret::SecretBytes;
use certman::x509::cms::{BerLimits, Limits};

/// The CA (and RA) the client-side SCEP targets trust, DER; its key signs the seed CRLs and
/// CertReps.
pub const CA_CERT: &[u8] = include_bytes!("../fixtures/ca.crt.der");
/// The CA's key, PKCS#8 DER (seeds only).
pub const CA_KEY: &[u8] = include_bytes!("../fixtures/ca.key.der");
/// The requester's self-signed certificate, DER.
pub const REQUESTER_CERT: &[u8] = include_bytes!("../fixtures/requester.crt.der");
/// The requester's key, PKCS#8 DER (seeds only).
pub const REQUESTER_KEY: &[u8] = include_bytes!("../fixtures/requester.key.der");

/// The passphrase the decrypting targets try.
pub const PASSPHRASE: &str = "fuzz";

/// A key transport that never does RSA, standing in for the CA/RA or requester key so that
/// what follows it (the content decryption and the parse of the plaintext) is fuzzed: the
/// "encrypted key" is read as one length octet (8, 16, 24 or 32) and that many key bytes;
/// anything else fails as a wrong key would. The seeds carry their real content key so.
pub fn dummy_decrypt(ciphertext: &[u8]) -> Result<SecretBytes, KeyError> {
    match ciphertext.split_first() {
        Some((&n, rest)) if matches!(n, 8 | 16 | 24 | 32) && rest.len() >= usize::from(n) => {
            Ok(SecretBytes::new(rest[..usize::from(n)].to_vec()))
        }
        _ => Err(KeyError::Unsupported("dummy key transport".into())),
    }
}

/// The CMS limits a SCEP message is read with (as `MessageLimits::cms`, which is crate-private).
pub fn cms_limits(limits: &MessageLimits) -> Limits {
    Limits {
        ber: BerLimits {
            max_input: limits.max_input,
            max_depth: limits.max_depth,
            max_elements: limits.max_elements,
            max_output: limits.max_input.saturating_mul(2),
        },
        max_certificates: limits.max_certificates,
        max_signers: 1,
        max_attributes: limits.max_attributes,
        max_recipients: limits.max_certificates,
    }
}

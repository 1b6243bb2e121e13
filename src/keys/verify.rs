//! Signature verification against a SubjectPublicKeyInfo (aws-lc-rs).

use aws_lc_rs::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};
use spki::SubjectPublicKeyInfoOwned;

use super::algorithm::{EcCurve, HashAlgorithm, KeyAlgorithm, SignatureScheme};
use crate::error::KeyError;
use der::referenced::OwnedToRef;

/// Verifies `signature` over `message` with the public key `spki` under `scheme`.
pub fn verify_signature(
    spki: &SubjectPublicKeyInfoOwned,
    scheme: SignatureScheme,
    message: &[u8],
    signature: &[u8],
) -> Result<(), KeyError> {
    let alg = KeyAlgorithm::from_spki(spki.owned_to_ref())?;
    let verifier = verification_algorithm(alg, scheme)?;
    let key = spki.subject_public_key.raw_bytes();
    UnparsedPublicKey::new(verifier, key)
        .verify(message, signature)
        .map_err(|_| KeyError::Verification("signature does not verify".into()))
}

/// Checks that a public key is one a signature could be verified with: an EC key's point on
/// its curve (a point off the curve, or the point at infinity, is refused).
pub fn check_public_key(spki: &SubjectPublicKeyInfoOwned) -> Result<(), KeyError> {
    let alg = KeyAlgorithm::from_spki(spki.owned_to_ref())?;
    let KeyAlgorithm::Ec(curve) = alg else {
        return Ok(());
    };
    let verifier: &'static dyn VerificationAlgorithm = match curve {
        EcCurve::P256 => &sig::ECDSA_P256_SHA256_ASN1,
        EcCurve::P384 => &sig::ECDSA_P384_SHA384_ASN1,
        EcCurve::P521 => &sig::ECDSA_P521_SHA512_ASN1,
    };
    sig::ParsedPublicKey::new(verifier, spki.subject_public_key.raw_bytes())
        .map(|_| ())
        .map_err(|_| {
            KeyError::Verification(format!(
                "the {} public key is not a point on its curve",
                curve.routeros_name()
            ))
        })
}

fn verification_algorithm(
    alg: KeyAlgorithm,
    scheme: SignatureScheme,
) -> Result<&'static dyn VerificationAlgorithm, KeyError> {
    use HashAlgorithm::*;
    let unsupported = || KeyError::Unsupported(format!("verifying {scheme} with a {alg} key"));
    Ok(match (alg, scheme) {
        (KeyAlgorithm::Rsa { bits }, SignatureScheme::RsaPkcs1(h)) if bits < 2048 => match h {
            Sha256 => &sig::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
            Sha512 => &sig::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY,
            Sha384 => return Err(unsupported()),
        },
        (KeyAlgorithm::Rsa { .. }, SignatureScheme::RsaPkcs1(h)) => match h {
            Sha256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            Sha384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            Sha512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        },
        (KeyAlgorithm::Rsa { bits }, SignatureScheme::RsaPss(h)) if bits >= 2048 => match h {
            Sha256 => &sig::RSA_PSS_2048_8192_SHA256,
            Sha384 => &sig::RSA_PSS_2048_8192_SHA384,
            Sha512 => &sig::RSA_PSS_2048_8192_SHA512,
        },
        (KeyAlgorithm::Ec(c), SignatureScheme::Ecdsa(h)) => match (c, h) {
            (EcCurve::P256, Sha256) => &sig::ECDSA_P256_SHA256_ASN1,
            (EcCurve::P256, Sha384) => &sig::ECDSA_P256_SHA384_ASN1,
            (EcCurve::P256, Sha512) => &sig::ECDSA_P256_SHA512_ASN1,
            (EcCurve::P384, Sha256) => &sig::ECDSA_P384_SHA256_ASN1,
            (EcCurve::P384, Sha384) => &sig::ECDSA_P384_SHA384_ASN1,
            (EcCurve::P384, Sha512) => &sig::ECDSA_P384_SHA512_ASN1,
            (EcCurve::P521, Sha256) => &sig::ECDSA_P521_SHA256_ASN1,
            (EcCurve::P521, Sha384) => &sig::ECDSA_P521_SHA384_ASN1,
            (EcCurve::P521, Sha512) => &sig::ECDSA_P521_SHA512_ASN1,
        },
        (KeyAlgorithm::Ed25519, SignatureScheme::Ed25519) => &sig::ED25519,
        _ => return Err(unsupported()),
    })
}

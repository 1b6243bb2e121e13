//! Key and signature algorithms, with their RouterOS names and X.509 identifiers.

use std::fmt;
use std::str::FromStr;

use const_oid::db::{rfc5912, rfc8410};
use der::asn1::Null;
use der::{Any, Decode, Encode};
use spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SubjectPublicKeyInfoRef};

use crate::error::KeyError;

/// NIST prime curves, named as RouterOS and OpenSSL name them (`key-size=prime256v1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EcCurve {
    /// P-256 (prime256v1, secp256r1)
    P256,
    /// P-384 (secp384r1)
    P384,
    /// P-521 (secp521r1)
    P521,
}

impl EcCurve {
    /// The RouterOS/OpenSSL name.
    pub fn routeros_name(self) -> &'static str {
        match self {
            EcCurve::P256 => "prime256v1",
            EcCurve::P384 => "secp384r1",
            EcCurve::P521 => "secp521r1",
        }
    }

    /// The named-curve OID (RFC 5480).
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            EcCurve::P256 => rfc5912::SECP_256_R_1,
            EcCurve::P384 => rfc5912::SECP_384_R_1,
            EcCurve::P521 => rfc5912::SECP_521_R_1,
        }
    }

    /// The curve for a named-curve OID.
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        [EcCurve::P256, EcCurve::P384, EcCurve::P521]
            .into_iter()
            .find(|c| c.oid() == *oid)
    }

    /// The digest that pairs with the curve's strength (RFC 5480 §4).
    pub fn default_hash(self) -> HashAlgorithm {
        match self {
            EcCurve::P256 => HashAlgorithm::Sha256,
            EcCurve::P384 => HashAlgorithm::Sha384,
            EcCurve::P521 => HashAlgorithm::Sha512,
        }
    }

    /// Field size in bits.
    pub fn bits(self) -> u32 {
        match self {
            EcCurve::P256 => 256,
            EcCurve::P384 => 384,
            EcCurve::P521 => 521,
        }
    }
}

impl FromStr for EcCurve {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s.to_ascii_lowercase().as_str() {
            "prime256v1" | "secp256r1" | "p-256" | "p256" => Ok(EcCurve::P256),
            "secp384r1" | "p-384" | "p384" => Ok(EcCurve::P384),
            "secp521r1" | "p-521" | "p521" => Ok(EcCurve::P521),
            _ => Err(KeyError::Unsupported(format!(
                "curve '{s}' (use prime256v1, secp384r1 or secp521r1)"
            ))),
        }
    }
}

/// RSA sizes a software key may have: RouterOS's list plus 3072.
pub const RSA_SIZES: [u32; 6] = [1024, 1536, 2048, 3072, 4096, 8192];

/// A key's algorithm and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// RSA with a modulus of `bits`.
    Rsa {
        /// modulus size
        bits: u32,
    },
    /// ECDSA on a prime curve.
    Ec(EcCurve),
    /// Ed25519 (RFC 8410).
    Ed25519,
}

impl KeyAlgorithm {
    /// `key-type` as RouterOS prints it.
    pub fn key_type(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa { .. } => "rsa",
            KeyAlgorithm::Ec(_) => "ec",
            KeyAlgorithm::Ed25519 => "ed25519",
        }
    }

    /// `key-size` as RouterOS prints it (`2048`, `prime256v1`, `ed25519`).
    pub fn key_size(self) -> String {
        match self {
            KeyAlgorithm::Rsa { bits } => bits.to_string(),
            KeyAlgorithm::Ec(c) => c.routeros_name().to_owned(),
            KeyAlgorithm::Ed25519 => "ed25519".to_owned(),
        }
    }

    /// The algorithm of a SubjectPublicKeyInfo.
    pub fn from_spki(spki: SubjectPublicKeyInfoRef<'_>) -> Result<Self, KeyError> {
        let oid = spki.algorithm.oid;
        if oid == rfc5912::RSA_ENCRYPTION {
            let bits = rsa_modulus_bits(spki.subject_public_key.raw_bytes())?;
            Ok(KeyAlgorithm::Rsa { bits })
        } else if oid == rfc5912::ID_EC_PUBLIC_KEY {
            let curve_oid: ObjectIdentifier = spki
                .algorithm
                .parameters
                .as_ref()
                .ok_or_else(|| KeyError::Unsupported("EC key without named curve".into()))?
                .decode_as()
                .map_err(|e| KeyError::Unsupported(format!("EC curve parameters: {e}")))?;
            EcCurve::from_oid(&curve_oid)
                .map(KeyAlgorithm::Ec)
                .ok_or_else(|| KeyError::Unsupported(format!("EC curve {curve_oid}")))
        } else if oid == rfc8410::ID_ED_25519 {
            Ok(KeyAlgorithm::Ed25519)
        } else {
            Err(KeyError::Unsupported(format!("public key algorithm {oid}")))
        }
    }

    /// The signature scheme used when nothing else is asked: RSA PKCS#1 v1.5 with `hash`
    /// (default SHA-256), ECDSA with the curve's digest, or Ed25519.
    pub fn signature_scheme(
        self,
        hash: Option<HashAlgorithm>,
    ) -> Result<SignatureScheme, KeyError> {
        match self {
            KeyAlgorithm::Rsa { .. } => Ok(SignatureScheme::RsaPkcs1(
                hash.unwrap_or(HashAlgorithm::Sha256),
            )),
            KeyAlgorithm::Ec(c) => Ok(SignatureScheme::Ecdsa(hash.unwrap_or(c.default_hash()))),
            KeyAlgorithm::Ed25519 => match hash {
                None => Ok(SignatureScheme::Ed25519),
                Some(h) => Err(KeyError::Unsupported(format!(
                    "Ed25519 signs without a separate digest; digest-algorithm={h} does not apply"
                ))),
            },
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyAlgorithm::Rsa { bits } => write!(f, "RSA-{bits}"),
            KeyAlgorithm::Ec(c) => write!(f, "EC {}", c.routeros_name()),
            KeyAlgorithm::Ed25519 => f.write_str("Ed25519"),
        }
    }
}

/// Size in bits of the modulus in a PKCS#1 RSAPublicKey.
fn rsa_modulus_bits(rsa_public_key: &[u8]) -> Result<u32, KeyError> {
    #[derive(der::Sequence)]
    struct RsaPublicKey<'a> {
        modulus: der::asn1::UintRef<'a>,
        #[allow(dead_code)]
        public_exponent: der::asn1::UintRef<'a>,
    }
    use der::Decode;
    let k = RsaPublicKey::from_der(rsa_public_key)
        .map_err(|e| KeyError::Unsupported(format!("RSA public key: {e}")))?;
    let m = k.modulus.as_bytes();
    let lead = m.first().copied().unwrap_or(0);
    Ok((m.len() as u32) * 8 - lead.leading_zeros())
}

/// Message digests for signatures. SHA-1 and MD5 are not offered for new signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SHA-256
    Sha256,
    /// SHA-384
    Sha384,
    /// SHA-512
    Sha512,
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HashAlgorithm::Sha256 => "sha256",
            HashAlgorithm::Sha384 => "sha384",
            HashAlgorithm::Sha512 => "sha512",
        })
    }
}

impl FromStr for HashAlgorithm {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s.to_ascii_lowercase().as_str() {
            "sha256" => Ok(HashAlgorithm::Sha256),
            "sha384" => Ok(HashAlgorithm::Sha384),
            "sha512" => Ok(HashAlgorithm::Sha512),
            "md5" | "sha1" => Err(KeyError::Unsupported(format!(
                "digest-algorithm={s} is too weak for new signatures (use sha256, sha384 or sha512)"
            ))),
            _ => Err(KeyError::Unsupported(format!(
                "digest-algorithm '{s}' (use sha256, sha384 or sha512)"
            ))),
        }
    }
}

/// How a signature is made: what X.509 names in `signatureAlgorithm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignatureScheme {
    /// RSASSA-PKCS1-v1_5 (RFC 8017) with the digest.
    RsaPkcs1(HashAlgorithm),
    /// RSASSA-PSS (RFC 8017 §8.1) with the digest, MGF1 with the same digest, and a salt as
    /// long as the digest (the RFC 4055 §3.1 parameters X.509 carries).
    RsaPss(HashAlgorithm),
    /// ECDSA with the digest; the signature is DER `SEQUENCE { r, s }`.
    Ecdsa(HashAlgorithm),
    /// Ed25519 (RFC 8410), over the whole message.
    Ed25519,
}

impl SignatureScheme {
    /// The X.509 AlgorithmIdentifier (RFC 4055 / RFC 5758 / RFC 8410).
    pub fn algorithm_identifier(self) -> AlgorithmIdentifierOwned {
        use HashAlgorithm::*;
        if let SignatureScheme::RsaPss(h) = self {
            return AlgorithmIdentifierOwned {
                oid: rfc5912::ID_RSASSA_PSS,
                parameters: pss_params(h)
                    .to_der()
                    .ok()
                    .and_then(|d| Any::from_der(&d).ok()),
            };
        }
        let (oid, null_params) = match self {
            SignatureScheme::RsaPss(_) => unreachable!("handled above"),
            SignatureScheme::RsaPkcs1(Sha256) => (rfc5912::SHA_256_WITH_RSA_ENCRYPTION, true),
            SignatureScheme::RsaPkcs1(Sha384) => (rfc5912::SHA_384_WITH_RSA_ENCRYPTION, true),
            SignatureScheme::RsaPkcs1(Sha512) => (rfc5912::SHA_512_WITH_RSA_ENCRYPTION, true),
            SignatureScheme::Ecdsa(Sha256) => (rfc5912::ECDSA_WITH_SHA_256, false),
            SignatureScheme::Ecdsa(Sha384) => (rfc5912::ECDSA_WITH_SHA_384, false),
            SignatureScheme::Ecdsa(Sha512) => (rfc5912::ECDSA_WITH_SHA_512, false),
            SignatureScheme::Ed25519 => (rfc8410::ID_ED_25519, false),
        };
        AlgorithmIdentifierOwned {
            oid,
            // RFC 4055 §5: the RSA PKCS#1 identifiers carry an explicit NULL.
            parameters: null_params.then(|| Any::from(Null)),
        }
    }

    /// The scheme an X.509 AlgorithmIdentifier names (PSS only with the parameters certman
    /// writes: MGF1 with the same digest, salt as long as the digest).
    pub fn from_algorithm_identifier(alg: &AlgorithmIdentifierOwned) -> Option<Self> {
        use HashAlgorithm::*;
        if alg.oid == rfc5912::ID_RSASSA_PSS {
            let params = alg.parameters.as_ref()?;
            return [Sha256, Sha384, Sha512].into_iter().find_map(|h| {
                let want = pss_params(h).to_der().ok()?;
                (params.to_der().ok()? == want).then_some(SignatureScheme::RsaPss(h))
            });
        }
        let oid = &alg.oid;
        let all = [
            SignatureScheme::RsaPkcs1(Sha256),
            SignatureScheme::RsaPkcs1(Sha384),
            SignatureScheme::RsaPkcs1(Sha512),
            SignatureScheme::Ecdsa(Sha256),
            SignatureScheme::Ecdsa(Sha384),
            SignatureScheme::Ecdsa(Sha512),
            SignatureScheme::Ed25519,
        ];
        all.into_iter()
            .find(|s| s.algorithm_identifier().oid == *oid)
    }

    /// The digest, where the scheme has a separate one.
    pub fn hash(self) -> Option<HashAlgorithm> {
        match self {
            SignatureScheme::RsaPkcs1(h)
            | SignatureScheme::RsaPss(h)
            | SignatureScheme::Ecdsa(h) => Some(h),
            SignatureScheme::Ed25519 => None,
        }
    }

    /// Whether a key of `alg` can make this signature.
    pub fn fits(self, alg: KeyAlgorithm) -> bool {
        matches!(
            (self, alg),
            (
                SignatureScheme::RsaPkcs1(_) | SignatureScheme::RsaPss(_),
                KeyAlgorithm::Rsa { .. }
            ) | (SignatureScheme::Ecdsa(_), KeyAlgorithm::Ec(_))
                | (SignatureScheme::Ed25519, KeyAlgorithm::Ed25519)
        )
    }
}

impl fmt::Display for SignatureScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureScheme::RsaPkcs1(h) => write!(f, "RSA PKCS#1 v1.5 with {h}"),
            SignatureScheme::RsaPss(h) => write!(f, "RSA-PSS with {h}"),
            SignatureScheme::Ecdsa(h) => write!(f, "ECDSA with {h}"),
            SignatureScheme::Ed25519 => f.write_str("Ed25519"),
        }
    }
}

impl HashAlgorithm {
    /// The digest's OID (RFC 5754).
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            HashAlgorithm::Sha256 => rfc5912::ID_SHA_256,
            HashAlgorithm::Sha384 => rfc5912::ID_SHA_384,
            HashAlgorithm::Sha512 => rfc5912::ID_SHA_512,
        }
    }

    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            HashAlgorithm::Sha256 => 32,
            HashAlgorithm::Sha384 => 48,
            HashAlgorithm::Sha512 => 64,
        }
    }
}

/// RSASSA-PSS-params, RFC 4055 §3.1 (`trailerField` left at its default 1).
#[derive(Clone, Debug, PartialEq, Eq, der::Sequence)]
struct RsaPssParams {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    hash_algorithm: AlgorithmIdentifierOwned,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT")]
    mask_gen_algorithm: AlgorithmIdentifierOwned,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT")]
    salt_length: u32,
}

fn pss_params(h: HashAlgorithm) -> RsaPssParams {
    let hash = AlgorithmIdentifierOwned {
        oid: h.oid(),
        parameters: Some(Any::from(Null)),
    };
    RsaPssParams {
        hash_algorithm: hash.clone(),
        mask_gen_algorithm: AlgorithmIdentifierOwned {
            oid: rfc5912::ID_MGF_1,
            parameters: hash.to_der().ok().and_then(|d| Any::from_der(&d).ok()),
        },
        salt_length: h.output_len() as u32,
    }
}

/// DER of an AlgorithmIdentifier, for comparisons.
pub fn algorithm_identifier_der(alg: &AlgorithmIdentifierOwned) -> Vec<u8> {
    alg.to_der().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_parse_by_routeros_and_nist_names() {
        assert_eq!("prime256v1".parse::<EcCurve>().unwrap(), EcCurve::P256);
        assert_eq!("secp384r1".parse::<EcCurve>().unwrap(), EcCurve::P384);
        assert_eq!("P-521".parse::<EcCurve>().unwrap(), EcCurve::P521);
        assert!("secp256k1".parse::<EcCurve>().is_err());
        for c in [EcCurve::P256, EcCurve::P384, EcCurve::P521] {
            assert_eq!(c.routeros_name().parse::<EcCurve>().unwrap(), c);
            assert_eq!(EcCurve::from_oid(&c.oid()), Some(c));
        }
    }

    #[test]
    fn weak_digests_are_refused() {
        assert!("sha1".parse::<HashAlgorithm>().is_err());
        assert!("md5".parse::<HashAlgorithm>().is_err());
        assert_eq!(
            "SHA384".parse::<HashAlgorithm>().unwrap(),
            HashAlgorithm::Sha384
        );
    }

    #[test]
    fn scheme_identifiers_round_trip() {
        for alg in [
            KeyAlgorithm::Rsa { bits: 2048 },
            KeyAlgorithm::Ec(EcCurve::P384),
            KeyAlgorithm::Ed25519,
        ] {
            let s = alg.signature_scheme(None).unwrap();
            assert!(s.fits(alg));
            let id = s.algorithm_identifier();
            assert_eq!(SignatureScheme::from_algorithm_identifier(&id), Some(s));
        }
        assert_eq!(
            KeyAlgorithm::Ec(EcCurve::P521)
                .signature_scheme(None)
                .unwrap(),
            SignatureScheme::Ecdsa(HashAlgorithm::Sha512)
        );
        assert!(KeyAlgorithm::Ed25519
            .signature_scheme(Some(HashAlgorithm::Sha256))
            .is_err());
        for h in [
            HashAlgorithm::Sha256,
            HashAlgorithm::Sha384,
            HashAlgorithm::Sha512,
        ] {
            let pss = SignatureScheme::RsaPss(h);
            let id = pss.algorithm_identifier();
            assert!(id.parameters.is_some());
            assert_eq!(SignatureScheme::from_algorithm_identifier(&id), Some(pss));
        }
    }
}

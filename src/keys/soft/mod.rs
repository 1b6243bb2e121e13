//! The software key provider: keys generated and used in memory with aws-lc-rs (AWS-LC), kept
//! at rest only as sealed PKCS#8 in the store (`soft:id=<hex>`). RSA 1024/1536 — sizes RouterOS
//! still offers but aws-lc-rs refuses — go through [`legacy_rsa`] on the same AWS-LC library.

mod cache;
mod legacy_rsa;

use std::sync::Arc;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self as sig, EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair,
};
use const_oid::db::{rfc5912, rfc8410};
use der::Decode;
use spki::{ObjectIdentifier, SubjectPublicKeyInfoOwned};
use zeroize::Zeroizing;

use self::legacy_rsa::{LegacyRsaDigest, LegacyRsaKey};
use super::{
    EcCurve, GenerateRequest, GeneratedKey, HashAlgorithm, KeyAlgorithm, KeyDecrypt, KeyExport,
    KeyHandle, KeyImport, KeyProvider, KeySigner, KeyUri, SignatureScheme,
};
use crate::error::KeyError;
use crate::seal::{SealLabel, Sealer};
use crate::secret::SecretBytes;

/// Keys in software, sealed at rest.
pub struct SoftProvider {
    sealer: Arc<Sealer>,
    /// keys parsed before in this process (see `cache.rs`)
    parsed: cache::ParsedKeys,
}

impl SoftProvider {
    /// A provider whose keys are sealed at rest by `sealer` (the `seal` room's, shared with
    /// the manager's other secrets).
    pub fn new(sealer: Arc<Sealer>) -> Self {
        SoftProvider {
            sealer,
            parsed: cache::ParsedKeys::default(),
        }
    }

    /// The digest a key is cached by (its id and sealed material).
    fn cache_digest(key: &KeyHandle) -> Result<[u8; 32], KeyError> {
        let (id, sealed) = Self::parts(key)?;
        Ok(cache::key_digest(id, sealed))
    }

    /// A soft key's id and sealed material.
    fn parts(key: &KeyHandle) -> Result<(&str, &[u8]), KeyError> {
        let id = key
            .uri
            .soft_id()
            .ok_or_else(|| KeyError::InvalidUri(format!("not a soft key: {}", key.uri)))?;
        let sealed = key.sealed.as_deref().ok_or_else(|| {
            KeyError::NotFound(format!("{}: no key material in the store", key.uri))
        })?;
        Ok((id, sealed))
    }

    fn unseal(&self, key: &KeyHandle) -> Result<SecretBytes, KeyError> {
        let (id, sealed) = Self::parts(key)?;
        Ok(self.sealer.open(SealLabel::SoftKey(id), sealed)?)
    }

    /// Generates a key: its unsealed PKCS#8 and its public key (taken from the key pair just
    /// made, not by parsing the PKCS#8 again).
    pub fn generate_key(
        algorithm: KeyAlgorithm,
    ) -> Result<(Zeroizing<Vec<u8>>, SubjectPublicKeyInfoOwned), KeyError> {
        let failed =
            |what: &str| KeyError::device(format!("generating {algorithm}"), what.to_owned());
        let pk = |der: Result<aws_lc_rs::encoding::PublicKeyX509Der<'static>, _>| {
            der.map_err(|_: aws_lc_rs::error::Unspecified| failed("public key encoding"))
                .and_then(|d| spki_from_der(d.as_ref()))
        };
        match algorithm {
            KeyAlgorithm::Rsa { bits } => match bits {
                1024 | 1536 => {
                    let k = LegacyRsaKey::generate(bits)
                        .map_err(|e| KeyError::device(format!("generating {algorithm}"), e))?;
                    let der = k
                        .to_pkcs8_der()
                        .map_err(|e| KeyError::device(format!("encoding {algorithm}"), e))?;
                    let spki = spki_from_der(
                        &k.public_key_spki_der()
                            .map_err(|e| KeyError::device("RSA public key", e))?,
                    )?;
                    Ok((der, spki))
                }
                2048 | 3072 | 4096 | 8192 => {
                    let size = match bits {
                        2048 => KeySize::Rsa2048,
                        3072 => KeySize::Rsa3072,
                        4096 => KeySize::Rsa4096,
                        _ => KeySize::Rsa8192,
                    };
                    let kp =
                        aws_lc_rs::rsa::KeyPair::generate(size).map_err(|_| failed("AWS-LC"))?;
                    let der: Pkcs8V1Der<'static> = kp.as_der().map_err(|_| failed("PKCS#8"))?;
                    let spki = pk(kp.public_key().as_der())?;
                    Ok((Zeroizing::new(der.as_ref().to_vec()), spki))
                }
                _ => Err(KeyError::Unsupported(format!(
                    "RSA key size {bits} (use 1024, 1536, 2048, 3072, 4096 or 8192)"
                ))),
            },
            KeyAlgorithm::Ec(curve) => {
                let kp = EcdsaKeyPair::generate(ecdsa_alg(curve, curve.default_hash())?)
                    .map_err(|_| failed("AWS-LC"))?;
                let doc = kp.to_pkcs8v1().map_err(|_| failed("PKCS#8"))?;
                let spki = pk(kp.public_key().as_der())?;
                Ok((Zeroizing::new(doc.as_ref().to_vec()), spki))
            }
            KeyAlgorithm::Ed25519 => {
                let kp = Ed25519KeyPair::generate().map_err(|_| failed("AWS-LC"))?;
                let doc = kp.to_pkcs8v1().map_err(|_| failed("PKCS#8"))?;
                let spki = pk(kp.public_key().as_der())?;
                Ok((Zeroizing::new(doc.as_ref().to_vec()), spki))
            }
        }
    }
}

impl KeyProvider for SoftProvider {
    fn name(&self) -> &'static str {
        "software"
    }

    fn generate(&self, request: &GenerateRequest) -> Result<GeneratedKey, KeyError> {
        let (pkcs8, public_key) = Self::generate_key(request.algorithm)?;
        let mut id_bytes = [0u8; 16];
        aws_lc_rs::rand::fill(&mut id_bytes)
            .map_err(|_| KeyError::device("key id", "random generator failed"))?;
        let id = hex::encode(id_bytes);
        let sealed = self.sealer.seal(SealLabel::SoftKey(&id), &pkcs8)?;
        Ok(GeneratedKey {
            uri: KeyUri::soft(&id),
            public_key,
            algorithm: request.algorithm,
            sealed: Some(sealed),
            token_serial: None,
            slot: None,
        })
    }

    fn public_key(&self, key: &KeyHandle) -> Result<SubjectPublicKeyInfoOwned, KeyError> {
        Ok(SoftSigner::from_pkcs8(self.unseal(key)?.secret_bytes())?.spki)
    }

    fn signer(&self, key: &KeyHandle) -> Result<Arc<dyn KeySigner>, KeyError> {
        let signer = self.parsed.signer(Self::cache_digest(key)?, || {
            SoftSigner::from_pkcs8(self.unseal(key)?.secret_bytes())
        })?;
        Ok(signer)
    }

    fn delete(&self, _key: &KeyHandle) -> Result<(), KeyError> {
        // The key's only home is its store row, which the caller deletes in its transaction.
        Ok(())
    }

    fn exporter(&self) -> Option<&dyn KeyExport> {
        Some(self)
    }

    fn decrypter(&self) -> Option<&dyn KeyDecrypt> {
        Some(self)
    }

    fn importer(&self) -> Option<&dyn KeyImport> {
        Some(self)
    }
}

impl KeyImport for SoftProvider {
    fn import_pkcs8(&self, pkcs8: &[u8]) -> Result<GeneratedKey, KeyError> {
        // Loading it proves it is a key certman can use (and a consistent one).
        let signer = SoftSigner::from_pkcs8(pkcs8)?;
        let mut id_bytes = [0u8; 16];
        aws_lc_rs::rand::fill(&mut id_bytes)
            .map_err(|_| KeyError::device("key id", "random generator failed"))?;
        let id = hex::encode(id_bytes);
        let sealed = self.sealer.seal(SealLabel::SoftKey(&id), pkcs8)?;
        Ok(GeneratedKey {
            uri: KeyUri::soft(&id),
            public_key: signer.spki.clone(),
            algorithm: signer.alg,
            sealed: Some(sealed),
            token_serial: None,
            slot: None,
        })
    }
}

impl KeyDecrypt for SoftProvider {
    fn decrypt_pkcs1v15(
        &self,
        key: &KeyHandle,
        ciphertext: &[u8],
    ) -> Result<SecretBytes, KeyError> {
        let k = self.parsed.decrypter(Self::cache_digest(key)?, || {
            let pkcs8 = self.unseal(key)?;
            let private = aws_lc_rs::rsa::PrivateDecryptingKey::from_pkcs8(pkcs8.secret_bytes())
                .map_err(|_| {
                    KeyError::Unsupported("decryption needs an RSA key of 2048 bits or more".into())
                })?;
            aws_lc_rs::rsa::Pkcs1PrivateDecryptingKey::new(private)
                .map_err(|_| KeyError::device("RSA decryption", "key rejected"))
        })?;
        let mut out = Zeroizing::new(vec![0u8; k.min_output_size()]);
        let n = k
            .decrypt(ciphertext, &mut out)
            .map_err(|_| KeyError::Verification("RSA decryption failed".into()))?
            .len();
        out.truncate(n);
        Ok(SecretBytes::from(out))
    }
}

impl KeyExport for SoftProvider {
    fn export_pkcs8(&self, key: &KeyHandle) -> Result<SecretBytes, KeyError> {
        self.unseal(key)
    }
}

fn ecdsa_alg(
    curve: EcCurve,
    hash: HashAlgorithm,
) -> Result<&'static EcdsaSigningAlgorithm, KeyError> {
    use HashAlgorithm::*;
    Ok(match (curve, hash) {
        (EcCurve::P256, Sha256) => &sig::ECDSA_P256_SHA256_ASN1_SIGNING,
        (EcCurve::P384, Sha384) => &sig::ECDSA_P384_SHA384_ASN1_SIGNING,
        (EcCurve::P521, Sha256) => &sig::ECDSA_P521_SHA256_ASN1_SIGNING,
        (EcCurve::P521, Sha384) => &sig::ECDSA_P521_SHA384_ASN1_SIGNING,
        (EcCurve::P521, Sha512) => &sig::ECDSA_P521_SHA512_ASN1_SIGNING,
        _ => {
            return Err(KeyError::Unsupported(format!(
                "software ECDSA on {} signs with {} (digest {hash} is not offered)",
                curve.routeros_name(),
                curve.default_hash()
            )))
        }
    })
}

enum SoftKey {
    Rsa(aws_lc_rs::rsa::KeyPair),
    LegacyRsa(LegacyRsaKey),
    Ec {
        curve: EcCurve,
        default: EcdsaKeyPair,
        pkcs8: Zeroizing<Vec<u8>>,
    },
    Ed25519(Ed25519KeyPair),
}

/// A software key loaded for signing. `Debug` shows only the algorithm.
pub struct SoftSigner {
    key: SoftKey,
    spki: SubjectPublicKeyInfoOwned,
    alg: KeyAlgorithm,
    rng: SystemRandom,
}

impl std::fmt::Debug for SoftSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SoftSigner({})", self.alg)
    }
}

fn spki_from_der(der: &[u8]) -> Result<SubjectPublicKeyInfoOwned, KeyError> {
    SubjectPublicKeyInfoOwned::from_der(der).map_err(|e| KeyError::device("public key encoding", e))
}

impl SoftSigner {
    /// Loads a PKCS#8 PrivateKeyInfo (RSA, EC P-256/384/521, Ed25519).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, KeyError> {
        let info = pkcs8::PrivateKeyInfoRef::from_der(pkcs8)
            .map_err(|e| KeyError::Unsupported(format!("PKCS#8 private key: {e}")))?;
        let oid = info.algorithm.oid;
        let rejected = |e: aws_lc_rs::error::KeyRejected| {
            KeyError::Unsupported(format!("private key rejected: {e}"))
        };
        let (key, spki) = if oid == rfc5912::RSA_ENCRYPTION {
            match aws_lc_rs::rsa::KeyPair::from_pkcs8(pkcs8) {
                Ok(kp) => {
                    let spki_der = kp
                        .public_key()
                        .as_der()
                        .map_err(|_| KeyError::device("RSA public key", "encoding failed"))?;
                    let spki = spki_from_der(spki_der.as_ref())?;
                    (SoftKey::Rsa(kp), spki)
                }
                // aws-lc-rs refuses RSA below 2048 bits; RouterOS's 1024/1536 go the legacy path.
                Err(e) => match LegacyRsaKey::from_pkcs8_der(pkcs8) {
                    Ok(k) if k.bits() < 2048 => {
                        let spki = spki_from_der(
                            &k.public_key_spki_der()
                                .map_err(|e| KeyError::device("RSA public key", e))?,
                        )?;
                        (SoftKey::LegacyRsa(k), spki)
                    }
                    _ => return Err(rejected(e)),
                },
            }
        } else if oid == rfc5912::ID_EC_PUBLIC_KEY {
            let curve_oid: ObjectIdentifier = info
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as().ok())
                .ok_or_else(|| {
                    KeyError::Unsupported("EC private key without named curve".into())
                })?;
            let curve = EcCurve::from_oid(&curve_oid)
                .ok_or_else(|| KeyError::Unsupported(format!("EC curve {curve_oid}")))?;
            let kp = EcdsaKeyPair::from_pkcs8(ecdsa_alg(curve, curve.default_hash())?, pkcs8)
                .map_err(rejected)?;
            let spki_der = kp
                .public_key()
                .as_der()
                .map_err(|_| KeyError::device("EC public key", "encoding failed"))?;
            let spki = spki_from_der(spki_der.as_ref())?;
            (
                SoftKey::Ec {
                    curve,
                    default: kp,
                    pkcs8: Zeroizing::new(pkcs8.to_vec()),
                },
                spki,
            )
        } else if oid == rfc8410::ID_ED_25519 {
            let kp = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(rejected)?;
            let spki_der = kp
                .public_key()
                .as_der()
                .map_err(|_| KeyError::device("Ed25519 public key", "encoding failed"))?;
            (SoftKey::Ed25519(kp), spki_from_der(spki_der.as_ref())?)
        } else {
            return Err(KeyError::Unsupported(format!(
                "private key algorithm {oid}"
            )));
        };
        let alg = KeyAlgorithm::from_spki(der::referenced::OwnedToRef::owned_to_ref(&spki))?;
        Ok(SoftSigner {
            key,
            spki,
            alg,
            rng: SystemRandom::new(),
        })
    }
}

impl KeySigner for SoftSigner {
    fn supports(&self, scheme: SignatureScheme) -> bool {
        match (&self.key, scheme) {
            (SoftKey::Ec { curve, .. }, SignatureScheme::Ecdsa(h)) => ecdsa_alg(*curve, h).is_ok(),
            (SoftKey::LegacyRsa(_), SignatureScheme::RsaPss(_)) => false,
            _ => scheme.fits(self.alg),
        }
    }

    fn public_key(&self) -> &SubjectPublicKeyInfoOwned {
        &self.spki
    }

    fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }

    fn sign(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let failed = |_| KeyError::device(format!("signing with {}", self.alg), "AWS-LC refused");
        match (&self.key, scheme) {
            (SoftKey::Rsa(kp), SignatureScheme::RsaPkcs1(h) | SignatureScheme::RsaPss(h)) => {
                let pss = matches!(scheme, SignatureScheme::RsaPss(_));
                let padding: &'static dyn sig::RsaEncoding = match (pss, h) {
                    (false, HashAlgorithm::Sha256) => &sig::RSA_PKCS1_SHA256,
                    (false, HashAlgorithm::Sha384) => &sig::RSA_PKCS1_SHA384,
                    (false, HashAlgorithm::Sha512) => &sig::RSA_PKCS1_SHA512,
                    (true, HashAlgorithm::Sha256) => &sig::RSA_PSS_SHA256,
                    (true, HashAlgorithm::Sha384) => &sig::RSA_PSS_SHA384,
                    (true, HashAlgorithm::Sha512) => &sig::RSA_PSS_SHA512,
                };
                let mut out = vec![0u8; kp.public_modulus_len()];
                kp.sign(padding, &self.rng, message, &mut out)
                    .map_err(failed)?;
                Ok(out)
            }
            (SoftKey::LegacyRsa(k), SignatureScheme::RsaPkcs1(h)) => {
                let d = match h {
                    HashAlgorithm::Sha256 => LegacyRsaDigest::Sha256,
                    HashAlgorithm::Sha384 => LegacyRsaDigest::Sha384,
                    HashAlgorithm::Sha512 => LegacyRsaDigest::Sha512,
                };
                k.sign_pkcs1v15(d, message)
                    .map_err(|e| KeyError::device(format!("signing with {}", self.alg), e))
            }
            (
                SoftKey::Ec {
                    curve,
                    default,
                    pkcs8,
                },
                SignatureScheme::Ecdsa(h),
            ) => {
                let sig = if h == curve.default_hash() {
                    default.sign(&self.rng, message).map_err(failed)?
                } else {
                    EcdsaKeyPair::from_pkcs8(ecdsa_alg(*curve, h)?, pkcs8)
                        .map_err(|e| KeyError::Unsupported(e.to_string()))?
                        .sign(&self.rng, message)
                        .map_err(failed)?
                };
                Ok(sig.as_ref().to_vec())
            }
            (SoftKey::Ed25519(kp), SignatureScheme::Ed25519) => {
                Ok(kp.try_sign(message).map_err(failed)?.as_ref().to_vec())
            }
            _ => Err(KeyError::Unsupported(format!(
                "a {} key cannot sign with {scheme}",
                self.alg
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::verify::verify_signature;

    #[test]
    fn a_key_is_parsed_once_and_a_changed_key_never_served_from_the_cache() {
        let p = provider();
        let g = p
            .generate(&GenerateRequest {
                algorithm: KeyAlgorithm::Rsa { bits: 2048 },
                label: "k".into(),
                location: None,
            })
            .unwrap();
        let handle = KeyHandle {
            uri: g.uri.clone(),
            sealed: g.sealed.clone(),
        };
        let (a, b) = (p.signer(&handle).unwrap(), p.signer(&handle).unwrap());
        assert!(Arc::ptr_eq(&a, &b), "parsed once");
        // Other sealed bytes under the same id are not the cached key: they are unsealed
        // (and here refused, being no sealed key at all).
        let forged = KeyHandle {
            uri: g.uri.clone(),
            sealed: Some(vec![0u8; 64]),
        };
        assert!(p.signer(&forged).is_err());
        // Decrypting keys are cached beside the signer; RSA round trip through them.
        let spki = a.public_key().clone();
        let n = aws_lc_rs::rsa::PublicEncryptingKey::from_der(&der::Encode::to_der(&spki).unwrap())
            .unwrap();
        let enc = aws_lc_rs::rsa::Pkcs1PublicEncryptingKey::new(n).unwrap();
        let mut ct = vec![0u8; enc.ciphertext_size()];
        let ct = enc.encrypt(b"content key", &mut ct).unwrap().to_vec();
        for _ in 0..2 {
            let pt = p.decrypt_pkcs1v15(&handle, &ct).unwrap();
            assert_eq!(pt.secret_bytes(), b"content key");
        }
        // Bounded.
        for i in 0..(cache::CAPACITY + 4) {
            let g = p
                .generate(&GenerateRequest {
                    algorithm: KeyAlgorithm::Ec(EcCurve::P256),
                    label: format!("e{i}"),
                    location: None,
                })
                .unwrap();
            p.signer(&KeyHandle {
                uri: g.uri,
                sealed: g.sealed,
            })
            .unwrap();
        }
        assert_eq!(p.parsed.len(), cache::CAPACITY);
    }

    fn provider() -> SoftProvider {
        SoftProvider::new(Arc::new(
            Sealer::new(b"0123456789abcdef0123456789abcdef", b"salt").unwrap(),
        ))
    }

    #[test]
    fn every_software_algorithm_generates_signs_and_verifies() {
        let p = provider();
        let algs = [
            KeyAlgorithm::Rsa { bits: 1024 },
            KeyAlgorithm::Rsa { bits: 1536 },
            KeyAlgorithm::Rsa { bits: 2048 },
            KeyAlgorithm::Rsa { bits: 3072 },
            KeyAlgorithm::Ec(EcCurve::P256),
            KeyAlgorithm::Ec(EcCurve::P384),
            KeyAlgorithm::Ec(EcCurve::P521),
            KeyAlgorithm::Ed25519,
        ];
        for alg in algs {
            let g = p
                .generate(&GenerateRequest {
                    algorithm: alg,
                    label: "t".into(),
                    location: None,
                })
                .unwrap();
            assert_eq!(g.algorithm, alg);
            let handle = KeyHandle {
                uri: g.uri.clone(),
                sealed: g.sealed.clone(),
            };
            assert_eq!(p.public_key(&handle).unwrap(), g.public_key);
            let signer = p.signer(&handle).unwrap();
            let scheme = alg.signature_scheme(None).unwrap();
            let s = signer.sign(scheme, b"to be signed").unwrap();
            verify_signature(&g.public_key, scheme, b"to be signed", &s).unwrap();
            assert!(verify_signature(&g.public_key, scheme, b"something else", &s).is_err());
            let report = crate::keys::card_verify(&p, &handle, &g.public_key).unwrap();
            assert_eq!(report.public_key_matches, Some(true));
            assert!(!format!("{:?}", signer.algorithm()).is_empty());
        }
    }

    #[test]
    fn rsa_digests_and_unsupported_combinations() {
        let p = provider();
        let g = p
            .generate(&GenerateRequest {
                algorithm: KeyAlgorithm::Rsa { bits: 2048 },
                label: String::new(),
                location: None,
            })
            .unwrap();
        let h = KeyHandle {
            uri: g.uri,
            sealed: g.sealed,
        };
        let s = p.signer(&h).unwrap();
        for d in [
            HashAlgorithm::Sha256,
            HashAlgorithm::Sha384,
            HashAlgorithm::Sha512,
        ] {
            let sig = s.sign(SignatureScheme::RsaPkcs1(d), b"m").unwrap();
            verify_signature(&g.public_key, SignatureScheme::RsaPkcs1(d), b"m", &sig).unwrap();
        }
        assert!(s.sign(SignatureScheme::Ed25519, b"m").is_err());
        assert!(SoftProvider::generate_key(KeyAlgorithm::Rsa { bits: 1000 }).is_err());
    }

    #[test]
    fn card_verify_detects_a_foreign_key() {
        let p = provider();
        let gen = |a| {
            p.generate(&GenerateRequest {
                algorithm: a,
                label: String::new(),
                location: None,
            })
            .unwrap()
        };
        let a = gen(KeyAlgorithm::Ec(EcCurve::P256));
        let b = gen(KeyAlgorithm::Ec(EcCurve::P256));
        let ha = KeyHandle {
            uri: a.uri,
            sealed: a.sealed,
        };
        assert!(crate::keys::card_verify(&p, &ha, &b.public_key).is_err());
    }
}

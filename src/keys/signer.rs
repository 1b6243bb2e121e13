//! [`X509Signer`]: the one adapter that lets the RustCrypto builders (certificates, CSRs,
//! CRLs, CMS) sign through any [`KeySigner`], whatever backend holds the key.

use std::sync::Arc;

use der::asn1::BitString;
use spki::{
    AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, EncodePublicKey,
    SignatureBitStringEncoding, SubjectPublicKeyInfoOwned,
};

use super::{KeySigner, SignatureScheme};
use crate::error::KeyError;

/// A signature as X.509 carries it in its BIT STRING.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct X509Signature(pub Vec<u8>);

impl SignatureBitStringEncoding for X509Signature {
    fn to_bitstring(&self) -> der::Result<BitString> {
        BitString::from_bytes(&self.0)
    }
}

/// The signer's public key, as the builders ask for it.
#[derive(Clone, Debug)]
pub struct SignerPublicKey(pub SubjectPublicKeyInfoOwned);

impl EncodePublicKey for SignerPublicKey {
    fn to_public_key_der(&self) -> spki::Result<der::Document> {
        Ok(der::Document::encode_msg(&self.0)?)
    }
}

/// `signature::Signer + Keypair + DynSignatureAlgorithmIdentifier` over a [`KeySigner`] with a
/// fixed [`SignatureScheme`].
#[derive(Clone)]
pub struct X509Signer {
    inner: Arc<dyn KeySigner>,
    scheme: SignatureScheme,
    /// the key error behind the last failed signature: the builders only pass on an opaque
    /// `signature::Error`, and exit codes are chosen by error variant (a wrong PIN is 5)
    last_error: Arc<std::sync::Mutex<Option<KeyError>>>,
}

impl X509Signer {
    /// Wraps `inner`; refuses a scheme the key cannot make.
    pub fn new(inner: Arc<dyn KeySigner>, scheme: SignatureScheme) -> Result<Self, KeyError> {
        if !scheme.fits(inner.algorithm()) {
            return Err(KeyError::Unsupported(format!(
                "a {} key cannot sign with {scheme}",
                inner.algorithm()
            )));
        }
        Ok(X509Signer {
            inner,
            scheme,
            last_error: Arc::default(),
        })
    }

    /// The key error behind the last failed signature, if any.
    pub fn take_error(&self) -> Option<KeyError> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// The scheme signatures are made with.
    pub fn scheme(&self) -> SignatureScheme {
        self.scheme
    }

    /// The signer's public key.
    pub fn public_key(&self) -> &SubjectPublicKeyInfoOwned {
        self.inner.public_key()
    }

    /// Whether signatures should be checked against the public key after signing (the key's
    /// public half was given, not read from the device).
    pub fn needs_verification(&self) -> bool {
        !self.inner.public_key_from_device()
    }
}

impl signature::Keypair for X509Signer {
    type VerifyingKey = SignerPublicKey;
    fn verifying_key(&self) -> SignerPublicKey {
        SignerPublicKey(self.inner.public_key().clone())
    }
}

impl DynSignatureAlgorithmIdentifier for X509Signer {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        Ok(self.scheme.algorithm_identifier())
    }
}

impl signature::Signer<X509Signature> for X509Signer {
    fn try_sign(&self, msg: &[u8]) -> Result<X509Signature, signature::Error> {
        match self.inner.sign(self.scheme, msg) {
            Ok(sig) => Ok(X509Signature(sig)),
            Err(e) => {
                let described = signature::Error::from_source(e.to_string());
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                Err(described)
            }
        }
    }
}

//! Secret keys on a token for the `pkcs11:` sealing-key source: a CKK_GENERIC_SECRET key
//! (sensitive, not extractable, CKA_SIGN) that computes HMAC-SHA256 (CKM_SHA256_HMAC) on the
//! token, and its generation (CKM_GENERIC_SECRET_KEY_GEN). Through the provider's tokens: the
//! same sessions, one login per token per process, the same PIN guard.

use cryptoki::error::Error as CkError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use zeroize::Zeroizing;

use super::Pkcs11Provider;
use crate::error::KeyError;
use crate::keys::KeyUri;

/// The length of a secret key made by [`Pkcs11Provider::generate_secret_key`] (the HMAC-SHA256
/// block size would allow 64; 32 is what `pkcs11-tool --key-type GENERIC:32` makes).
pub const SECRET_KEY_BYTES: u64 = 32;

/// What a label names on a token: a usable secret key, or why not.
enum Found {
    Key(ObjectHandle),
    None,
    /// an object of another class or key type holds the label
    Other(String),
}

fn label_of(uri: &KeyUri) -> Result<Vec<u8>, KeyError> {
    uri.path_str("object")
        .filter(|l| !l.is_empty())
        .map(|l| l.as_bytes().to_vec())
        .ok_or_else(|| KeyError::InvalidUri(format!("{uri}: name the secret key with object=")))
}

/// The secret key labelled `label`, or what else holds the label.
fn find(s: &Session, label: &[u8]) -> Result<Found, CkError> {
    let all = s.find_objects(&[Attribute::Label(label.to_vec())])?;
    let mut other = None;
    for h in all {
        let attrs = s.get_attributes(h, &[AttributeType::Class, AttributeType::KeyType])?;
        let (mut class, mut kt) = (None, None);
        for a in attrs {
            match a {
                Attribute::Class(c) => class = Some(c),
                Attribute::KeyType(k) => kt = Some(k),
                _ => {}
            }
        }
        match (class, kt) {
            (Some(ObjectClass::SECRET_KEY), Some(KeyType::GENERIC_SECRET)) => {
                return Ok(Found::Key(h))
            }
            (Some(ObjectClass::SECRET_KEY), Some(k)) => {
                other = Some(format!(
                    "a {k} secret key (HMAC-SHA256 needs CKK_GENERIC_SECRET)"
                ))
            }
            (Some(c), _) => other = Some(format!("a {c} object, not a secret key")),
            _ => other = Some("an object of unknown class".into()),
        }
    }
    Ok(other.map_or(Found::None, Found::Other))
}

impl Pkcs11Provider {
    /// HMAC-SHA256 of `data` under the generic secret key `uri` names (`object=` its label),
    /// computed on the token (CKM_SHA256_HMAC, C_Sign): the key never leaves it.
    pub fn hmac_sha256(&self, uri: &KeyUri, data: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let token = self.token(uri)?;
        let label = label_of(uri)?;
        let shown = String::from_utf8_lossy(&label).into_owned();
        // the op runs again after a recovery: what it found is reported once, outside
        let wrong = std::sync::Mutex::new(None::<String>);
        let mac = token.run(
            "computing HMAC-SHA256 with the sealing key",
            |s| match find(s.session(), &label)? {
                Found::Key(h) => s
                    .session()
                    .sign(&Mechanism::Sha256Hmac, h, data)
                    .map(|m| Some(Zeroizing::new(m))),
                Found::None => Ok(None),
                Found::Other(what) => {
                    *wrong.lock().unwrap_or_else(|p| p.into_inner()) = Some(what);
                    Ok(None)
                }
            },
        )?;
        match (mac, wrong.into_inner().unwrap_or(None)) {
            (Some(m), _) if m.len() == 32 => Ok(m),
            (Some(m), _) => Err(KeyError::device(
                "HMAC-SHA256 with the sealing key",
                format!("the token returned {} bytes, not 32", m.len()),
            )),
            (None, Some(what)) => Err(KeyError::Unsupported(format!(
                "\"{shown}\" on token {} is {what}",
                token.label
            ))),
            (None, None) => Err(KeyError::NotFound(format!(
                "no secret key \"{shown}\" on token {} (make one with `certman store \
                 seal-key-generate` or `pkcs11-tool --keygen --key-type GENERIC:32 --sensitive`)",
                token.label
            ))),
        }
    }

    /// Makes the generic secret key `uri` names on its token (32 bytes, CKA_TOKEN, private,
    /// sensitive, not extractable, CKA_SIGN/CKA_VERIFY only), refusing when an object with its
    /// label is there already. Returns the token's label and serial.
    pub fn generate_secret_key(&self, uri: &KeyUri) -> Result<(String, String), KeyError> {
        let token = self.token(uri)?;
        let label = label_of(uri)?;
        let shown = String::from_utf8_lossy(&label).into_owned();
        let taken = std::sync::Mutex::new(false);
        token.run("generating a secret key", |s| {
            if !s
                .session()
                .find_objects(&[Attribute::Label(label.clone())])?
                .is_empty()
            {
                *taken.lock().unwrap_or_else(|p| p.into_inner()) = true;
                return Ok(());
            }
            s.session().generate_key(
                &Mechanism::GenericSecretKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::GENERIC_SECRET),
                    Attribute::ValueLen(SECRET_KEY_BYTES.into()),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Sign(true),
                    Attribute::Verify(true),
                    Attribute::Encrypt(false),
                    Attribute::Decrypt(false),
                    Attribute::Wrap(false),
                    Attribute::Unwrap(false),
                    Attribute::Derive(false),
                    Attribute::Label(label.clone()),
                ],
            )?;
            Ok(())
        })?;
        if taken.into_inner().unwrap_or(false) {
            return Err(KeyError::NotCapable(format!(
                "token {} already holds an object labelled \"{shown}\": not made again \
                 (a sealing key is never replaced: `store reseal` moves a store to a new one)",
                token.label
            )));
        }
        // a key the token cannot MAC with is no sealing key: check before saying it is made
        self.hmac_sha256(uri, b"certman seal-key-generate check")?;
        Ok((token.label.clone(), token.serial.clone()))
    }
}

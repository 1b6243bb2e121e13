//! The PKCS#11 key provider (cryptoki): keys generated on tokens — SoftHSM2 in CI, YubiKeys via
//! ykcs11, OpenSC cards — found by token label/serial and CKA_ID, never by slot number.
//! Signing hashes in software and sends the token only the digest (RSA: DigestInfo under
//! CKM_RSA_PKCS; ECDSA: CKM_ECDSA, r‖s re-encoded as DER). Certificates are stored beside
//! their keys as CKO_CERTIFICATE objects with the same CKA_ID and CKA_LABEL.

pub mod secret_key;
pub mod token;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{
    Attribute, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::Session;
use der::asn1::{Null, ObjectIdentifier, OctetString, UintRef};
use der::{Decode, Encode};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

use self::token::{ck_err, PinState, Token, TokenSelector};
use super::{digest, digest_info_prefix, PinSpec};
use super::{
    CertificateObjects, EcCurve, GenerateRequest, GeneratedKey, HashAlgorithm, KeyAlgorithm,
    KeyDecrypt, KeyHandle, KeyProvider, KeySigner, KeyUri, Scheme, SignatureScheme,
};
use crate::error::KeyError;
use crate::secret::SecretBytes;

/// Default number of sessions per token when no profile says otherwise.
pub const DEFAULT_MAX_SESSIONS: usize = 4;

/// Options of the PKCS#11 provider.
#[derive(Clone, Debug, Default)]
pub struct Pkcs11Options {
    /// spend a PIN try the token reports as the last one
    pub force_last_pin_try: bool,
    /// session-pool size per (module, token label/serial), from the token profiles
    pub max_sessions: HashMap<(PathBuf, TokenSelector), usize>,
    /// the profiles' pin-sources, for keys made from a profile
    pub profile_pins: crate::keys::ProfilePins,
}

struct Module {
    ctx: Pkcs11,
    tokens: Mutex<HashMap<TokenSelector, Arc<Token>>>,
}

/// Keys on PKCS#11 tokens.
pub struct Pkcs11Provider {
    options: Pkcs11Options,
}

/// One context per module per process. A module is initialised once and never finalised
/// while the process runs: cryptoki finalises on drop, and C_Finalize is global to the
/// module, so a second context dropped would pull the tokens from under the first.
fn modules() -> &'static Mutex<HashMap<PathBuf, Arc<Module>>> {
    static MODULES: std::sync::OnceLock<Mutex<HashMap<PathBuf, Arc<Module>>>> =
        std::sync::OnceLock::new();
    MODULES.get_or_init(|| Mutex::new(HashMap::new()))
}

impl Pkcs11Provider {
    /// A provider; modules are loaded when a key first needs them.
    pub fn new(options: Pkcs11Options) -> Self {
        Pkcs11Provider { options }
    }

    fn module(&self, path: &Path) -> Result<Arc<Module>, KeyError> {
        let mut modules = modules().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = modules.get(path) {
            return Ok(m.clone());
        }
        let ctx = Pkcs11::new(path)
            .map_err(|e| ck_err(format!("loading PKCS#11 module {}", path.display()), e))?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => {
                return Err(ck_err(
                    format!("initialising PKCS#11 module {}", path.display()),
                    e,
                ))
            }
        }
        let m = Arc::new(Module {
            ctx,
            tokens: Mutex::new(HashMap::new()),
        });
        modules.insert(path.to_owned(), m.clone());
        Ok(m)
    }

    /// The token a URI names, opened once per process and shared.
    fn token(&self, uri: &KeyUri) -> Result<Arc<Token>, KeyError> {
        let module_path = uri.query_str("module-path").ok_or_else(|| {
            KeyError::InvalidUri(format!("{uri}: needs module-path= (the PKCS#11 module)"))
        })?;
        let sel = TokenSelector {
            label: uri.path_str("token").map(str::to_owned),
            serial: uri.path_str("serial").map(str::to_owned),
        };
        if sel.label.is_none() && sel.serial.is_none() {
            return Err(KeyError::InvalidUri(format!(
                "{uri}: name the token with token= (label) or serial="
            )));
        }
        let pin = crate::keys::pin_spec(uri, &self.options.profile_pins)?;
        let module = self.module(Path::new(module_path))?;
        let mut tokens = module.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = tokens.get(&sel) {
            t.offer_pin(&pin);
            return Ok(t.clone());
        }
        // The same token asked for another way (label alone vs label + serial) is the same
        // token: one pool, one login.
        let (_, info) = token::find_slot(&module.ctx, &sel)?;
        let serial = info.serial_number().trim().to_owned();
        if let Some(t) = tokens.values().find(|t| t.serial == serial).cloned() {
            t.offer_pin(&pin);
            tokens.insert(sel, t.clone());
            return Ok(t);
        }
        let max = self
            .options
            .max_sessions
            .get(&(PathBuf::from(module_path), sel.clone()))
            .copied()
            .unwrap_or(DEFAULT_MAX_SESSIONS);
        let t = Arc::new(Token::open(
            module.ctx.clone(),
            sel.clone(),
            pin,
            max,
            self.options.force_last_pin_try,
        )?);
        tokens.insert(sel, t.clone());
        Ok(t)
    }

    /// What is on the tokens of a module: labels, serials, PIN flags, certificate objects;
    /// with `login`, private keys too, after a login with the PIN from `pin` (without it,
    /// nothing here spends a PIN try).
    pub fn inventory(
        &self,
        module_path: &Path,
        pin: &PinSpec,
        login: bool,
    ) -> Result<Vec<TokenInventory>, KeyError> {
        let module = self.module(module_path)?;
        let slots = module
            .ctx
            .get_slots_with_token()
            .map_err(|e| ck_err("listing slots", e))?;
        let mut out = Vec::new();
        for slot in slots {
            let Ok(info) = module.ctx.get_token_info(slot) else {
                continue;
            };
            let label = info.label().trim().to_owned();
            let mut inv = TokenInventory {
                label: label.clone(),
                serial: info.serial_number().trim().to_owned(),
                model: info.model().trim().to_owned(),
                manufacturer: info.manufacturer_id().trim().to_owned(),
                pin_state: PinState {
                    count_low: info.user_pin_count_low(),
                    final_try: info.user_pin_final_try(),
                    locked: info.user_pin_locked(),
                },
                objects: Vec::new(),
                note: None,
            };
            if !login {
                // token state from its flags; objects a session shows without a login
                let uri = KeyUri::new(Scheme::Pkcs11)
                    .with_path("token", &label)
                    .with_path("serial", &inv.serial)
                    .with_query("module-path", module_path.to_string_lossy().as_bytes());
                match self.token(&uri).and_then(|t| list_objects(&t, false)) {
                    Ok(objs) => inv.objects = objs,
                    Err(e) => inv.note = Some(e.to_string()),
                }
                if inv.note.is_none() {
                    inv.note =
                        Some("not logged in: private keys not listed (--login lists them)".into());
                }
            } else if pin.value.is_some() || pin.source.is_some() {
                let mut uri = KeyUri::new(Scheme::Pkcs11)
                    .with_path("token", &label)
                    .with_path("serial", &inv.serial)
                    .with_query("module-path", module_path.to_string_lossy().as_bytes());
                if let Some(s) = &pin.source {
                    uri = uri.with_query("pin-source", s.to_string());
                }
                if let Some(v) = &pin.value {
                    uri = uri.with_query("pin-value", v.secret_str());
                }
                match self.token(&uri).and_then(|t| list_objects(&t, true)) {
                    Ok(objs) => inv.objects = objs,
                    Err(e) => inv.note = Some(e.to_string()),
                }
            } else {
                inv.note = Some("no PIN source: private objects not listed".into());
            }
            out.push(inv);
        }
        Ok(out)
    }
}

/// What `token print` shows of one token.
#[derive(Clone, Debug)]
pub struct TokenInventory {
    /// token label
    pub label: String,
    /// token serial
    pub serial: String,
    /// model
    pub model: String,
    /// manufacturer
    pub manufacturer: String,
    /// the PIN flags the token reports
    pub pin_state: PinState,
    /// keys and certificates
    pub objects: Vec<TokenObject>,
    /// why objects are missing, if they are
    pub note: Option<String>,
}

/// One object on a token.
#[derive(Clone, Debug)]
pub struct TokenObject {
    /// `private-key`, `public-key` or `certificate`
    pub class: &'static str,
    /// CKA_LABEL
    pub label: String,
    /// CKA_ID, hex
    pub id: String,
    /// key type or certificate subject
    pub detail: String,
}

fn list_objects(token: &Token, login: bool) -> Result<Vec<TokenObject>, KeyError> {
    let list = |s: &token::PooledSession<'_>| {
        let mut out = Vec::new();
        for (class, name) in [
            (ObjectClass::PRIVATE_KEY, "private-key"),
            (ObjectClass::CERTIFICATE, "certificate"),
        ] {
            for h in s.session().find_objects(&[Attribute::Class(class)])? {
                // An object deleted meanwhile (another session, another process) is skipped.
                let Ok(attrs) = s.session().get_attributes(
                    h,
                    &[
                        AttributeType::Label,
                        AttributeType::Id,
                        AttributeType::KeyType,
                        AttributeType::Value,
                    ],
                ) else {
                    continue;
                };
                let mut o = TokenObject {
                    class: name,
                    label: String::new(),
                    id: String::new(),
                    detail: String::new(),
                };
                for a in attrs {
                    match a {
                        Attribute::Label(l) => o.label = String::from_utf8_lossy(&l).into(),
                        Attribute::Id(i) => o.id = hex::encode(i),
                        Attribute::KeyType(k) => {
                            o.detail = match k {
                                KeyType::RSA => "rsa".into(),
                                KeyType::EC => "ec".into(),
                                other => format!("{other}"),
                            }
                        }
                        Attribute::Value(v) if class == ObjectClass::CERTIFICATE => {
                            if let Ok(info) = crate::keys::cert_subject(&v) {
                                o.detail = info;
                            }
                        }
                        _ => {}
                    }
                }
                out.push(o);
            }
        }
        Ok(out)
    };
    if login {
        token.run("listing objects", list)
    } else {
        // without a login the token shows its public objects (certificates) only
        token.run_public("listing objects", list)
    }
}

fn key_id(key: &KeyHandle) -> Result<Vec<u8>, KeyError> {
    key.uri
        .path_bytes("id")
        .map(<[u8]>::to_vec)
        .ok_or_else(|| KeyError::InvalidUri(format!("{}: a key needs id=", key.uri)))
}

fn find_one(s: &Session, class: ObjectClass, id: &[u8]) -> Result<Option<ObjectHandle>, CkError> {
    Ok(
        s.find_objects(&[Attribute::Class(class), Attribute::Id(id.to_vec())])?
            .into_iter()
            .next(),
    )
}

/// DER of a named-curve OID, as CKA_EC_PARAMS holds it.
fn ec_params(curve: EcCurve) -> Result<Vec<u8>, KeyError> {
    curve
        .oid()
        .to_der()
        .map_err(|e| KeyError::device("encoding EC parameters", e))
}

/// The public key of a key pair on the token, as SubjectPublicKeyInfo.
fn read_public_key(s: &Session, id: &[u8]) -> Result<Option<SubjectPublicKeyInfoOwned>, CkError> {
    let handle = match find_one(s, ObjectClass::PUBLIC_KEY, id)? {
        Some(h) => h,
        // Without a public-key object, an RSA private key still shows modulus and exponent.
        None => match find_one(s, ObjectClass::PRIVATE_KEY, id)? {
            Some(h) => h,
            None => return Ok(None),
        },
    };
    let attrs = s.get_attributes(
        handle,
        &[
            AttributeType::KeyType,
            AttributeType::Modulus,
            AttributeType::PublicExponent,
            AttributeType::EcParams,
            AttributeType::EcPoint,
        ],
    )?;
    let (mut kt, mut n, mut e, mut params, mut point) = (None, None, None, None, None);
    for a in attrs {
        match a {
            Attribute::KeyType(k) => kt = Some(k),
            Attribute::Modulus(v) => n = Some(v),
            Attribute::PublicExponent(v) => e = Some(v),
            Attribute::EcParams(v) => params = Some(v),
            Attribute::EcPoint(v) => point = Some(v),
            _ => {}
        }
    }
    Ok(match kt {
        Some(KeyType::RSA) => match (n, e) {
            (Some(n), Some(e)) => rsa_spki(&n, &e).ok(),
            _ => None,
        },
        Some(KeyType::EC) => match (params, point) {
            (Some(p), Some(pt)) => ec_spki(&p, &pt).ok(),
            _ => None,
        },
        _ => None,
    })
}

fn rsa_spki(n: &[u8], e: &[u8]) -> Result<SubjectPublicKeyInfoOwned, der::Error> {
    #[derive(der::Sequence)]
    struct RsaPublicKey<'a> {
        modulus: UintRef<'a>,
        public_exponent: UintRef<'a>,
    }
    let key = RsaPublicKey {
        modulus: UintRef::new(n)?,
        public_exponent: UintRef::new(e)?,
    }
    .to_der()?;
    Ok(SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::RSA_ENCRYPTION,
            parameters: Some(Null.into()),
        },
        subject_public_key: der::asn1::BitString::from_bytes(&key)?,
    })
}

fn ec_spki(params: &[u8], point: &[u8]) -> Result<SubjectPublicKeyInfoOwned, der::Error> {
    let curve: spki::ObjectIdentifier = ObjectIdentifier::from_der(params)?;
    // CKA_EC_POINT is a DER OCTET STRING around the point on most tokens (SoftHSM); a few
    // return the bare point.
    let raw = match OctetString::from_der(point) {
        Ok(os) if os.as_bytes().first() == Some(&0x04) => os.as_bytes().to_vec(),
        _ => point.to_vec(),
    };
    Ok(SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::ID_EC_PUBLIC_KEY,
            parameters: Some(der::Any::encode_from(&curve)?),
        },
        subject_public_key: der::asn1::BitString::from_bytes(&raw)?,
    })
}

/// The URI of a key generated at `location` on `token`.
fn key_uri(location: &KeyUri, token: &Token, label: &str, id: &[u8]) -> KeyUri {
    let mut uri = KeyUri::new(Scheme::Pkcs11)
        .with_path("token", &token.label)
        .with_path("serial", &token.serial)
        .with_path("object", label)
        .with_path("id", id);
    for q in ["module-path", "pin-source", "profile"] {
        if let Some(v) = location.query_str(q) {
            uri = uri.with_query(q, v);
        }
    }
    uri
}

impl KeyProvider for Pkcs11Provider {
    fn name(&self) -> &'static str {
        "PKCS#11"
    }

    fn generate(&self, req: &GenerateRequest) -> Result<GeneratedKey, KeyError> {
        let location = req.location.as_ref().ok_or_else(|| {
            KeyError::InvalidUri(
                "a PKCS#11 key needs a token: on-smart-card=PROFILE or key=pkcs11:…".into(),
            )
        })?;
        let token = self.token(location)?;
        let label = location
            .path_str("object")
            .map(str::to_owned)
            .unwrap_or_else(|| req.label.clone());
        let id = match location.path_bytes("id") {
            Some(id) => id.to_vec(),
            None => {
                let mut id = vec![0u8; 16];
                aws_lc_rs::rand::fill(&mut id)
                    .map_err(|_| KeyError::device("key id", "random generator failed"))?;
                id
            }
        };
        let (mechanism, mut public, mut private) = match req.algorithm {
            KeyAlgorithm::Rsa { bits } if bits >= 2048 => (
                Mechanism::RsaPkcsKeyPairGen,
                vec![
                    Attribute::ModulusBits(u64::from(bits).into()),
                    Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
                    Attribute::Encrypt(true),
                ],
                // SCEP decrypts with the CA's RSA key; nothing else is allowed.
                vec![Attribute::Decrypt(true)],
            ),
            KeyAlgorithm::Ec(curve) => (
                Mechanism::EccKeyPairGen,
                vec![
                    Attribute::EcParams(ec_params(curve)?),
                    Attribute::Encrypt(false),
                ],
                vec![Attribute::Decrypt(false), Attribute::Derive(false)],
            ),
            other => {
                return Err(KeyError::Unsupported(format!(
                    "{other} keys on PKCS#11 tokens (use RSA 2048/3072/4096 or EC P-256/384/521)"
                )))
            }
        };
        public.extend([
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Wrap(false),
            Attribute::Id(id.clone()),
            Attribute::Label(label.as_bytes().to_vec()),
        ]);
        private.extend([
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Unwrap(false),
            Attribute::Id(id.clone()),
            Attribute::Label(label.as_bytes().to_vec()),
        ]);
        let public_key = token.run("generating a key pair", |s| {
            if find_one(s.session(), ObjectClass::PRIVATE_KEY, &id)?.is_some() {
                return Err(CkError::Pkcs11(
                    RvError::AttributeValueInvalid,
                    cryptoki::context::Function::GenerateKeyPair,
                ));
            }
            let (pubh, privh) = s
                .session()
                .generate_key_pair(&mechanism, &public, &private)?;
            match read_public_key(s.session(), &id) {
                Ok(Some(pk)) => Ok(pk),
                // Half-made keys do not stay behind.
                other => {
                    let _ = s.session().destroy_object(privh);
                    let _ = s.session().destroy_object(pubh);
                    Err(match other {
                        Err(e) => e,
                        _ => CkError::InvalidValue,
                    })
                }
            }
        })?;
        Ok(GeneratedKey {
            uri: key_uri(location, &token, &label, &id),
            public_key,
            algorithm: req.algorithm,
            sealed: None,
            token_serial: Some(token.serial.clone()),
            slot: Some(format!("token {} id {}", token.label, hex::encode(&id))),
        })
    }

    fn public_key(&self, key: &KeyHandle) -> Result<SubjectPublicKeyInfoOwned, KeyError> {
        let token = self.token(&key.uri)?;
        let id = key_id(key)?;
        token
            .run("reading a public key", |s| {
                read_public_key(s.session(), &id)
            })?
            .ok_or_else(|| {
                KeyError::NotFound(format!(
                    "no key with id {} on token {}",
                    hex::encode(&id),
                    token.label
                ))
            })
    }

    fn signer(&self, key: &KeyHandle) -> Result<Arc<dyn KeySigner>, KeyError> {
        let token = self.token(&key.uri)?;
        let id = key_id(key)?;
        let (spki, always_auth) = token
            .run("opening a key", |s| {
                let Some(h) = find_one(s.session(), ObjectClass::PRIVATE_KEY, &id)? else {
                    return Ok(None);
                };
                let always = s
                    .session()
                    .get_attributes(h, &[AttributeType::AlwaysAuthenticate])?
                    .into_iter()
                    .any(|a| matches!(a, Attribute::AlwaysAuthenticate(true)));
                Ok(read_public_key(s.session(), &id)?.map(|pk| (pk, always)))
            })?
            .ok_or_else(|| {
                KeyError::NotFound(format!(
                    "the private key (id {}) is not on token {}",
                    hex::encode(&id),
                    token.label
                ))
            })?;
        let alg = KeyAlgorithm::from_spki(der::referenced::OwnedToRef::owned_to_ref(&spki))?;
        Ok(Arc::new(Pkcs11Signer {
            token,
            id,
            spki,
            alg,
            always_auth,
            handle: Mutex::new(None),
        }))
    }

    fn delete(&self, key: &KeyHandle) -> Result<(), KeyError> {
        let token = self.token(&key.uri)?;
        let id = key_id(key)?;
        token.run("deleting a key", |s| {
            for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
                for h in s
                    .session()
                    .find_objects(&[Attribute::Class(class), Attribute::Id(id.clone())])?
                {
                    s.session().destroy_object(h)?;
                }
            }
            Ok(())
        })
    }

    fn certificate_objects(&self) -> Option<&dyn CertificateObjects> {
        Some(self)
    }

    fn decrypter(&self) -> Option<&dyn KeyDecrypt> {
        Some(self)
    }

    fn key_state(&self, key: &KeyHandle) -> super::KeyState {
        match self.token(&key.uri) {
            Ok(token) => token.state(),
            Err(KeyError::TokenAbsent(_)) => super::KeyState::TokenAbsent,
            // a URI or module problem: using the key says what it is
            Err(_) => super::KeyState::Online,
        }
    }

    fn token_status(&self, key: &KeyHandle) -> Option<String> {
        let token = self.token(&key.uri).ok()?;
        Some(match token.pin_state() {
            Ok(state) => format!(
                "token \"{}\" serial {} ({}): {state}",
                token.label, token.serial, token.model
            ),
            Err(e) => e.to_string(),
        })
    }
}

impl KeyDecrypt for Pkcs11Provider {
    fn decrypt_pkcs1v15(
        &self,
        key: &KeyHandle,
        ciphertext: &[u8],
    ) -> Result<SecretBytes, KeyError> {
        let token = self.token(&key.uri)?;
        let id = key_id(key)?;
        let plain = token.run("decrypting", |s| {
            let h =
                find_one(s.session(), ObjectClass::PRIVATE_KEY, &id)?.ok_or(CkError::Pkcs11(
                    RvError::KeyHandleInvalid,
                    cryptoki::context::Function::FindObjects,
                ))?;
            s.session().decrypt(&Mechanism::RsaPkcs, h, ciphertext)
        })?;
        Ok(SecretBytes::new(plain))
    }
}

impl CertificateObjects for Pkcs11Provider {
    fn load_certificate(&self, key: &KeyHandle) -> Result<Option<Vec<u8>>, KeyError> {
        let token = self.token(&key.uri)?;
        let id = key_id(key)?;
        token.run("reading a certificate", |s| {
            let Some(h) = find_one(s.session(), ObjectClass::CERTIFICATE, &id)? else {
                return Ok(None);
            };
            Ok(s.session()
                .get_attributes(h, &[AttributeType::Value])?
                .into_iter()
                .find_map(|a| match a {
                    Attribute::Value(v) => Some(v),
                    _ => None,
                }))
        })
    }

    fn store_certificate(&self, key: &KeyHandle, der: &[u8]) -> Result<(), KeyError> {
        let token = self.token(&key.uri)?;
        let id = key_id(key)?;
        let cert = x509_cert::Certificate::from_der(der)
            .map_err(|e| KeyError::device("certificate to store", e))?;
        let tbs = cert.tbs_certificate();
        let enc = |r: der::Result<Vec<u8>>| r.map_err(|e| KeyError::device("encoding", e));
        let subject = enc(tbs.subject().to_der())?;
        let issuer = enc(tbs.issuer().to_der())?;
        let serial = enc(tbs.serial_number().to_der())?;
        let label = key
            .uri
            .path_str("object")
            .unwrap_or_default()
            .as_bytes()
            .to_vec();
        token.run("writing a certificate", |s| {
            let session = s.session();
            let template = [
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::CertificateType(CertificateType::X_509),
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Id(id.clone()),
                Attribute::Label(label.clone()),
                Attribute::Subject(subject.clone()),
                Attribute::Issuer(issuer.clone()),
                Attribute::SerialNumber(serial.clone()),
                Attribute::Value(der.to_vec()),
            ];
            let old = session.find_objects(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::Id(id.clone()),
            ])?;
            match session.create_object(&template) {
                Ok(_) => {
                    for h in old {
                        session.destroy_object(h)?;
                    }
                    Ok(())
                }
                Err(e) => {
                    // A failed create can leave a half object behind on some tokens.
                    if let Ok(now) = session.find_objects(&[
                        Attribute::Class(ObjectClass::CERTIFICATE),
                        Attribute::Id(id.clone()),
                    ]) {
                        for h in now.into_iter().filter(|h| !old.contains(h)) {
                            let _ = session.destroy_object(h);
                        }
                    }
                    Err(e)
                }
            }
        })
    }

    fn delete_certificate(&self, key: &KeyHandle) -> Result<(), KeyError> {
        let token = self.token(&key.uri)?;
        let id = key_id(key)?;
        token.run("deleting a certificate", |s| {
            for h in s.session().find_objects(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::Id(id.clone()),
            ])? {
                s.session().destroy_object(h)?;
            }
            Ok(())
        })
    }
}

/// A key on a token, ready to sign.
struct Pkcs11Signer {
    token: Arc<Token>,
    id: Vec<u8>,
    spki: SubjectPublicKeyInfoOwned,
    alg: KeyAlgorithm,
    always_auth: bool,
    /// the private key's handle, valid for one pool generation
    handle: Mutex<Option<(u64, ObjectHandle)>>,
}

/// ECDSA r‖s (PKCS#11) → DER `SEQUENCE { r INTEGER, s INTEGER }` (X.509).
fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>, KeyError> {
    if raw.is_empty() || raw.len() % 2 != 0 {
        return Err(KeyError::device(
            "ECDSA signature",
            format!("odd length {}", raw.len()),
        ));
    }
    #[derive(der::Sequence)]
    struct Sig<'a> {
        r: UintRef<'a>,
        s: UintRef<'a>,
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    Sig {
        r: UintRef::new(r).map_err(|e| KeyError::device("ECDSA r", e))?,
        s: UintRef::new(s).map_err(|e| KeyError::device("ECDSA s", e))?,
    }
    .to_der()
    .map_err(|e| KeyError::device("ECDSA signature", e))
}

impl Pkcs11Signer {
    fn key_handle(&self, s: &token::PooledSession<'_>) -> Result<ObjectHandle, CkError> {
        let mut cached = self.handle.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((generation, h)) = *cached {
            if generation == s.generation() {
                return Ok(h);
            }
        }
        let h =
            find_one(s.session(), ObjectClass::PRIVATE_KEY, &self.id)?.ok_or(CkError::Pkcs11(
                RvError::KeyHandleInvalid,
                cryptoki::context::Function::FindObjects,
            ))?;
        *cached = Some((s.generation(), h));
        Ok(h)
    }
}

impl KeySigner for Pkcs11Signer {
    fn public_key(&self) -> &SubjectPublicKeyInfoOwned {
        &self.spki
    }

    fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }

    fn sign(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        if !scheme.fits(self.alg) {
            return Err(KeyError::Unsupported(format!(
                "a {} key cannot sign with {scheme}",
                self.alg
            )));
        }
        let (mechanism, data, hashing_mechanism) = match scheme {
            SignatureScheme::RsaPkcs1(h) => {
                let mut di = digest_info_prefix(h).to_vec();
                di.extend(digest(h, message));
                let hm = match h {
                    HashAlgorithm::Sha256 => Mechanism::Sha256RsaPkcs,
                    HashAlgorithm::Sha384 => Mechanism::Sha384RsaPkcs,
                    HashAlgorithm::Sha512 => Mechanism::Sha512RsaPkcs,
                };
                (Mechanism::RsaPkcs, di, hm)
            }
            SignatureScheme::RsaPss(h) => {
                let (mt, mgf) = match h {
                    HashAlgorithm::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
                    HashAlgorithm::Sha384 => (MechanismType::SHA384, PkcsMgfType::MGF1_SHA384),
                    HashAlgorithm::Sha512 => (MechanismType::SHA512, PkcsMgfType::MGF1_SHA512),
                };
                let params = PkcsPssParams {
                    hash_alg: mt,
                    mgf,
                    s_len: (h.output_len() as u64).into(),
                };
                let hm = match h {
                    HashAlgorithm::Sha256 => Mechanism::Sha256RsaPkcsPss(params),
                    HashAlgorithm::Sha384 => Mechanism::Sha384RsaPkcsPss(params),
                    HashAlgorithm::Sha512 => Mechanism::Sha512RsaPkcsPss(params),
                };
                (Mechanism::RsaPkcsPss(params), digest(h, message), hm)
            }
            SignatureScheme::Ecdsa(h) => {
                let hm = match h {
                    HashAlgorithm::Sha256 => Mechanism::EcdsaSha256,
                    HashAlgorithm::Sha384 => Mechanism::EcdsaSha384,
                    HashAlgorithm::Sha512 => Mechanism::EcdsaSha512,
                };
                (Mechanism::Ecdsa, digest(h, message), hm)
            }
            SignatureScheme::Ed25519 => {
                return Err(KeyError::Unsupported("Ed25519 on PKCS#11 tokens".into()))
            }
        };
        let raw = if self.always_auth {
            // CKA_ALWAYS_AUTHENTICATE: C_SignInit, then a context-specific login, then the
            // data — multi-part, so with the token hashing.
            let ctx_err: Mutex<Option<KeyError>> = Mutex::new(None);
            let r = self.token.run("signing", |s| {
                let h = self.key_handle(s)?;
                s.session().sign_init(&hashing_mechanism, h)?;
                if let Err(e) = self.token.context_login(s.session()) {
                    *ctx_err.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    return Err(CkError::Pkcs11(
                        RvError::PinIncorrect,
                        cryptoki::context::Function::Login,
                    ));
                }
                s.session().sign_update(message)?;
                s.session().sign_final()
            });
            if let Some(e) = ctx_err.into_inner().unwrap_or(None) {
                return Err(e);
            }
            r?
        } else {
            self.token.run("signing", |s| {
                let h = self.key_handle(s)?;
                s.session().sign(&mechanism, h, &data)
            })?
        };
        match scheme {
            SignatureScheme::Ecdsa(_) => ecdsa_raw_to_der(&raw),
            _ => Ok(raw),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_raw_signatures_become_der() {
        let mut raw = vec![0u8; 64];
        raw[31] = 1; // r = 1
        raw[32] = 0x80; // s has the top bit set: needs a leading zero in DER
        let der = ecdsa_raw_to_der(&raw).unwrap();
        assert_eq!(&der[..5], &[0x30, der[1], 0x02, 0x01, 0x01]);
        assert_eq!(der[5..8], [0x02, 0x21, 0x00]);
        assert!(ecdsa_raw_to_der(&[1, 2, 3]).is_err());
    }

    #[test]
    fn digest_info_prefixes_announce_their_lengths() {
        for (h, n) in [
            (HashAlgorithm::Sha256, 32),
            (HashAlgorithm::Sha384, 48),
            (HashAlgorithm::Sha512, 64),
        ] {
            let p = digest_info_prefix(h);
            assert_eq!(p[1] as usize, p.len() - 2 + n);
            assert_eq!(*p.last().unwrap() as usize, n);
        }
    }
}

//! The key-provider seam: every private key certman uses is reached through a [`KeyProvider`]
//! chosen by the scheme of its [`KeyUri`]. Backends live in `keys/soft` (and, as they land,
//! `keys/pkcs11`, `keys/piv`) and never import anything above `keys`.

pub mod algorithm;
#[cfg(feature = "pcsc")]
pub mod piv;
pub mod pkcs11;
pub mod profile;
pub mod signer;
pub mod soft;
pub mod uri;
pub mod verify;

use std::sync::Arc;

use spki::SubjectPublicKeyInfoOwned;

pub use algorithm::{EcCurve, HashAlgorithm, KeyAlgorithm, SignatureScheme, RSA_SIZES};
pub use signer::X509Signer;
pub use uri::{KeyUri, Scheme};

use crate::error::KeyError;
use crate::secret::SecretBytes;

/// A key as the manager hands it to a provider: its URI plus, for software keys, the sealed
/// material read from the store (a software key has no other home).
#[derive(Clone, Debug)]
pub struct KeyHandle {
    /// where the key lives
    pub uri: KeyUri,
    /// soft only: the sealed PKCS#8 blob from the store row
    pub sealed: Option<Vec<u8>>,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateRequest {
    /// algorithm and size
    pub algorithm: KeyAlgorithm,
    /// a human label (pkcs11: CKA_LABEL; soft: unused)
    pub label: String,
    /// pkcs11/piv only: the token/slot to generate on, as a URI
    pub location: Option<KeyUri>,
}

/// A freshly generated key.
#[derive(Clone, Debug)]
pub struct GeneratedKey {
    /// the key's URI (without secrets)
    pub uri: KeyUri,
    /// its public key
    pub public_key: SubjectPublicKeyInfoOwned,
    /// algorithm and size
    pub algorithm: KeyAlgorithm,
    /// soft only: the sealed material the caller stores, in the same transaction as the
    /// certificate that uses it
    pub sealed: Option<Vec<u8>>,
    /// token only: the token's serial number, for the inventory
    pub token_serial: Option<String>,
    /// token only: the slot or object the key occupies
    pub slot: Option<String>,
}

/// The pin-source of every token profile, by name: a key made with `on-smart-card=PROFILE`
/// (its URI says `profile=NAME`) takes its PIN from the profile as it is now, so changing the
/// profile (or moving its PIN file) takes effect for the keys already made.
pub type ProfilePins = Arc<std::collections::HashMap<String, Option<String>>>;

/// The PIN of a key on a token: the profile's pin-source when the URI names a profile that
/// exists, else the URI's own `pin-source` / `pin-value`.
pub(crate) fn pin_spec(uri: &KeyUri, pins: &ProfilePins) -> Result<PinSpec, KeyError> {
    if let Some(source) = uri.query_str("profile").and_then(|p| pins.get(p)) {
        return Ok(PinSpec {
            value: None,
            source: source.as_deref().map(str::parse).transpose()?,
        });
    }
    Ok(PinSpec {
        value: uri
            .query_str("pin-value")
            .map(|v| crate::secret::SecretString::new(v.to_owned())),
        source: uri.query_str("pin-source").map(str::parse).transpose()?,
    })
}

/// One PIN try per token (or card) per process: once a login failed on its PIN, every later
/// attempt of the process is refused without reaching the device.
#[derive(Debug, Default)]
pub(crate) struct PinLatch(std::sync::Mutex<Option<String>>);

impl PinLatch {
    /// Refused when a login of this process failed already (`what`: "token", "card").
    pub(crate) fn check(&self, what: &str) -> Result<(), KeyError> {
        match self.0.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(why) => Err(KeyError::Pin(format!(
                "{why}; not tried again by this process (one PIN try per {what})"
            ))),
            None => Ok(()),
        }
    }

    /// Whether a login of this process failed already.
    pub(crate) fn is_set(&self) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Records a failed login; the error to return.
    pub(crate) fn fail(&self, why: String) -> KeyError {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
        KeyError::Pin(why)
    }
}

/// The state of a key's token (or card) as certman sees it without spending a PIN try:
/// what `/health`, `print detail` and `token print` show of a CA on a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyState {
    /// present and usable as far as can be seen without a PIN (software keys always are)
    Online,
    /// the token or card is not there (pulled, reader gone)
    TokenAbsent,
    /// a login of this process failed on the PIN: not tried again by it
    PinFailed,
    /// the token reports its user PIN locked (or the card 0 tries left)
    PinLocked,
}

impl KeyState {
    /// The word shown for it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Online => "online",
            KeyState::TokenAbsent => "token-absent",
            KeyState::PinFailed => "pin-failed",
            KeyState::PinLocked => "pin-locked",
        }
    }
}

impl std::fmt::Display for KeyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A private key ready to sign. Blocking by contract: async code calls it via `spawn_blocking`.
pub trait KeySigner: Send + Sync {
    /// The key's public half.
    fn public_key(&self) -> &SubjectPublicKeyInfoOwned;
    /// The key's algorithm.
    fn algorithm(&self) -> KeyAlgorithm;
    /// Signs the whole unhashed `message`; the backend hashes/pads as its device needs and
    /// returns the signature exactly as X.509 carries it (ECDSA: DER `SEQUENCE { r, s }`).
    fn sign(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, KeyError>;
    /// Whether [`KeySigner::public_key`] was read from the key itself. When it was only
    /// given (a PIV slot without its certificate), signatures are verified after signing.
    fn public_key_from_device(&self) -> bool {
        true
    }
    /// Whether [`KeySigner::sign`] can make `scheme` (a backend may offer fewer digests than
    /// the key type allows).
    fn supports(&self, scheme: SignatureScheme) -> bool {
        scheme.fits(self.algorithm())
    }
}

/// Optional capability: certificate objects stored beside keys (PKCS#11 CKO_CERTIFICATE, PIV
/// slot certificates). `store_certificate` is card-reinstall.
pub trait CertificateObjects: Send + Sync {
    /// The certificate stored beside the key, if any (DER).
    fn load_certificate(&self, key: &KeyHandle) -> Result<Option<Vec<u8>>, KeyError>;
    /// Writes (or replaces) the certificate object beside the key.
    fn store_certificate(&self, key: &KeyHandle, der: &[u8]) -> Result<(), KeyError>;
    /// Deletes the certificate object beside the key.
    fn delete_certificate(&self, key: &KeyHandle) -> Result<(), KeyError>;
}

/// Optional capability: the private key can leave the provider (software keys only).
pub trait KeyExport: Send + Sync {
    /// The private key as unencrypted PKCS#8 DER, in a zeroizing buffer.
    fn export_pkcs8(&self, key: &KeyHandle) -> Result<SecretBytes, KeyError>;
}

/// Optional capability: RSA decryption with the private key (SCEP's CA/RA decrypts the
/// request's content-encryption key).
pub trait KeyDecrypt: Send + Sync {
    /// RSAES-PKCS1-v1_5 decryption (RFC 8017 §7.2) of `ciphertext`.
    fn decrypt_pkcs1v15(&self, key: &KeyHandle, ciphertext: &[u8])
        -> Result<SecretBytes, KeyError>;
}

/// Optional capability: a private key from outside (an import) is taken into the provider.
pub trait KeyImport: Send + Sync {
    /// Takes an unencrypted PKCS#8 key; returns it as a generated key would be (software:
    /// sealed material for the caller's transaction).
    fn import_pkcs8(&self, pkcs8: &[u8]) -> Result<GeneratedKey, KeyError>;
}

/// Which optional capabilities a provider has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// certificate objects beside keys
    pub certificate_objects: bool,
    /// private keys can be exported
    pub export: bool,
    /// RSA keys can decrypt
    pub decrypt: bool,
}

/// A place keys live: software, a PKCS#11 token, a PIV card.
pub trait KeyProvider: Send + Sync {
    /// A short name for messages ("software", "PKCS#11", "PIV").
    fn name(&self) -> &'static str;
    /// Generates a key.
    fn generate(&self, request: &GenerateRequest) -> Result<GeneratedKey, KeyError>;
    /// The key's public key as the provider reads it.
    fn public_key(&self, key: &KeyHandle) -> Result<SubjectPublicKeyInfoOwned, KeyError>;
    /// A signer for the key.
    fn signer(&self, key: &KeyHandle) -> Result<Arc<dyn KeySigner>, KeyError>;
    /// A signer for a key whose public key the caller already knows (from its certificate, or
    /// from generation) — for devices that cannot read a public key back (PIV without the
    /// slot's certificate). Signatures are still checked against it by card-verify.
    fn signer_with_public_key(
        &self,
        key: &KeyHandle,
        _public_key: &SubjectPublicKeyInfoOwned,
    ) -> Result<Arc<dyn KeySigner>, KeyError> {
        self.signer(key)
    }
    /// Destroys the key.
    fn delete(&self, key: &KeyHandle) -> Result<(), KeyError>;
    /// Certificate objects beside keys, if the provider has them.
    fn certificate_objects(&self) -> Option<&dyn CertificateObjects> {
        None
    }
    /// Private-key export, if the provider allows it.
    fn exporter(&self) -> Option<&dyn KeyExport> {
        None
    }
    /// RSA decryption, if the provider offers it.
    fn decrypter(&self) -> Option<&dyn KeyDecrypt> {
        None
    }
    /// Taking keys from outside, if the provider can.
    fn importer(&self) -> Option<&dyn KeyImport> {
        None
    }
    /// The state of the token holding `key` (PIN tries, presence), for card-verify's report.
    fn token_status(&self, _key: &KeyHandle) -> Option<String> {
        None
    }
    /// The state of the token holding `key`, found without a login or PIN try and without
    /// waiting on an operation in progress (a busy token is present). Cheap enough for every
    /// `/health` request.
    fn key_state(&self, _key: &KeyHandle) -> KeyState {
        KeyState::Online
    }
    /// The optional capabilities, for `token print` and error messages.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            certificate_objects: self.certificate_objects().is_some(),
            export: self.exporter().is_some(),
            decrypt: self.decrypter().is_some(),
        }
    }
}

/// Routes a key URI to the provider for its scheme.
pub struct KeyRouter {
    soft: Arc<dyn KeyProvider>,
    providers: Vec<(Scheme, Arc<dyn KeyProvider>)>,
    profiles: profile::Profiles,
    pkcs11: Option<Arc<pkcs11::Pkcs11Provider>>,
    #[cfg(feature = "pcsc")]
    piv: Option<Arc<piv::PivProvider>>,
}

/// What the key layer is built from.
#[derive(Debug)]
pub struct KeysConfig {
    /// seals software keys at rest (the `seal` room's sealer, shared with the manager)
    pub sealer: Arc<crate::seal::Sealer>,
    /// token profiles directory
    pub tokens_dir: Option<std::path::PathBuf>,
    /// spend a PIN try a token reports as the last one
    pub force_last_pin_try: bool,
}

/// What the token providers are built from (a [`KeysConfig`] without the sealer).
#[derive(Clone, Debug, Default)]
pub struct TokensConfig {
    /// token profiles directory
    pub tokens_dir: Option<std::path::PathBuf>,
    /// spend a PIN try a token reports as the last one
    pub force_last_pin_try: bool,
}

/// The token providers and profiles of a [`KeyRouter`], made before it: the sealer the
/// router's software provider needs may come from a secret key on one of these tokens (a
/// `pkcs11:` seal-key-source), reached through the same provider and so through the same
/// token sessions and the same one login per token.
pub struct TokenProviders {
    profiles: profile::Profiles,
    pkcs11: Arc<pkcs11::Pkcs11Provider>,
    #[cfg(feature = "pcsc")]
    piv: Arc<piv::PivProvider>,
}

impl TokenProviders {
    /// Every token provider this build has, configured from the token profiles.
    pub fn from_config(config: &TokensConfig) -> Result<Self, KeyError> {
        let profiles = match &config.tokens_dir {
            Some(d) => profile::Profiles::load(d)?,
            None => profile::Profiles::default(),
        };
        let profile_pins: ProfilePins = Arc::new(
            profiles
                .iter()
                .map(|(n, p)| (n.to_owned(), p.pin_source.clone()))
                .collect(),
        );
        let mut options = pkcs11::Pkcs11Options {
            force_last_pin_try: config.force_last_pin_try,
            profile_pins: profile_pins.clone(),
            ..Default::default()
        };
        for (_, p) in profiles.iter() {
            if let (profile::ProfileKind::Pkcs11, Some(m), Some(n)) =
                (p.kind, &p.module_path, p.max_sessions)
            {
                let sel = pkcs11::token::TokenSelector {
                    label: p.token_label.clone(),
                    serial: p.token_serial.clone(),
                };
                options.max_sessions.insert((m.clone(), sel), n);
            }
        }
        Ok(TokenProviders {
            pkcs11: Arc::new(pkcs11::Pkcs11Provider::new(options)),
            #[cfg(feature = "pcsc")]
            piv: Arc::new(piv::PivProvider::new(piv::PivOptions {
                force_last_pin_try: config.force_last_pin_try,
                profile_pins,
            })),
            profiles,
        })
    }

    /// `store seal-key-generate`: makes the secret key of a `pkcs11:` seal-key-source on its
    /// token; returns the token's label and serial.
    pub fn generate_seal_key(&self, uri: &str) -> Result<(String, String), KeyError> {
        let uri = seal_key_uri(&self.profiles, uri)?;
        self.pkcs11.generate_secret_key(&uri)
    }
}

/// The URI of a `pkcs11:` sealing key, with what `?profile=NAME` supplies (module, token,
/// PIN from the profile at use time) when the URI does not say it itself.
fn seal_key_uri(profiles: &profile::Profiles, text: &str) -> Result<KeyUri, KeyError> {
    let uri: KeyUri = text.parse()?;
    if uri.scheme() != Scheme::Pkcs11 {
        return Err(KeyError::InvalidUri(format!(
            "{uri}: a sealing key on a token is a pkcs11: URI"
        )));
    }
    let Some(name) = uri.query_str("profile") else {
        return Ok(uri);
    };
    if uri.query_str("module-path").is_some() {
        return Ok(uri);
    }
    let location = profiles.location(name)?;
    if location.scheme() != Scheme::Pkcs11 {
        return Err(KeyError::InvalidUri(format!(
            "token profile \"{name}\" is not a PKCS#11 profile: a sealing key needs one"
        )));
    }
    let object = uri.path_str("object").unwrap_or_default();
    Ok(location.with_path("object", object))
}

fn seal_key_hmac(
    profiles: &profile::Profiles,
    pkcs11: Option<&pkcs11::Pkcs11Provider>,
    uri: &str,
    data: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyError> {
    let uri = seal_key_uri(profiles, uri)?;
    let pkcs11 = pkcs11.ok_or_else(|| {
        KeyError::NoProvider("this certman has no PKCS#11 provider configured".into())
    })?;
    pkcs11.hmac_sha256(&uri, data)
}

/// The PIV provider of this build, or why there is none.
#[cfg(feature = "pcsc")]
type PivRef<'a> = Option<&'a piv::PivProvider>;
#[cfg(not(feature = "pcsc"))]
type PivRef<'a> = Option<&'a std::convert::Infallible>;

/// The RSA key of a `piv:` sealing key, on the PIV provider the key router uses (the same
/// card handle, the same one PIN verify per card), with the card of `?profile=NAME` when the
/// URI names none.
#[cfg(feature = "pcsc")]
fn piv_seal_key<'a>(
    profiles: &profile::Profiles,
    piv: PivRef<'a>,
    text: &str,
) -> Result<(&'a piv::PivProvider, KeyHandle), KeyError> {
    let mut uri: KeyUri = text.parse()?;
    if uri.scheme() != Scheme::Piv {
        return Err(KeyError::InvalidUri(format!(
            "{uri}: a sealing key on a PIV card is a piv: URI"
        )));
    }
    if let Some(name) = uri.query_str("profile") {
        if uri.path_str("reader").is_none() && uri.path_str("serial").is_none() {
            let location = profiles.location(name)?;
            if location.scheme() != Scheme::Piv {
                return Err(KeyError::InvalidUri(format!(
                    "token profile \"{name}\" is not a PIV profile: a piv: sealing key needs one"
                )));
            }
            for attr in ["reader", "serial"] {
                if let Some(v) = location.path_str(attr) {
                    uri = uri.with_path(attr, v);
                }
            }
        }
    }
    let piv = piv.ok_or_else(|| KeyError::NoProvider("this certman has no PIV provider".into()))?;
    Ok((piv, KeyHandle { uri, sealed: None }))
}

#[cfg(feature = "pcsc")]
fn seal_key_public_key(
    profiles: &profile::Profiles,
    piv: PivRef<'_>,
    uri: &str,
) -> Result<Vec<u8>, KeyError> {
    let (piv, key) = piv_seal_key(profiles, piv, uri)?;
    let spki = piv.public_key(&key).map_err(|e| match e {
        // PIV cannot read a public key back: the slot's certificate is where it is
        KeyError::NotCapable(why) => KeyError::NotCapable(format!(
            "{why}: put the key's certificate in the slot (`certman sign … on-smart-card=PROFILE` \
             does, or yubico-piv-tool -a import-certificate)"
        )),
        e => e,
    })?;
    der::Encode::to_der(&spki).map_err(|e| KeyError::device("the slot's public key", e))
}

#[cfg(not(feature = "pcsc"))]
fn seal_key_public_key(_: &profile::Profiles, _: PivRef<'_>, _: &str) -> Result<Vec<u8>, KeyError> {
    Err(no_pcsc())
}

#[cfg(feature = "pcsc")]
fn seal_key_decrypt(
    profiles: &profile::Profiles,
    piv: PivRef<'_>,
    uri: &str,
    ciphertext: &[u8],
) -> Result<SecretBytes, KeyError> {
    let (piv, key) = piv_seal_key(profiles, piv, uri)?;
    piv.decrypt_pkcs1v15(&key, ciphertext)
}

#[cfg(not(feature = "pcsc"))]
fn seal_key_decrypt(
    _: &profile::Profiles,
    _: PivRef<'_>,
    _: &str,
    _: &[u8],
) -> Result<SecretBytes, KeyError> {
    Err(no_pcsc())
}

#[cfg(not(feature = "pcsc"))]
fn no_pcsc() -> KeyError {
    KeyError::NoProvider(
        "this certman was built without PC/SC support: piv: sealing keys are not available".into(),
    )
}

impl crate::seal::SealingKeyDevice for TokenProviders {
    fn seal_key_hmac(
        &self,
        uri: &str,
        data: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyError> {
        seal_key_hmac(&self.profiles, Some(&self.pkcs11), uri, data)
    }

    fn seal_key_public_key(&self, uri: &str) -> Result<Vec<u8>, KeyError> {
        seal_key_public_key(&self.profiles, self.piv_ref(), uri)
    }

    fn seal_key_decrypt(&self, uri: &str, ciphertext: &[u8]) -> Result<SecretBytes, KeyError> {
        seal_key_decrypt(&self.profiles, self.piv_ref(), uri, ciphertext)
    }
}

/// The router reaches a sealing key through its own token providers: `store reseal` derives
/// the new sealer over the tokens (and the login) the manager already uses.
impl crate::seal::SealingKeyDevice for KeyRouter {
    fn seal_key_hmac(
        &self,
        uri: &str,
        data: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyError> {
        seal_key_hmac(&self.profiles, self.pkcs11.as_deref(), uri, data)
    }

    fn seal_key_public_key(&self, uri: &str) -> Result<Vec<u8>, KeyError> {
        seal_key_public_key(&self.profiles, self.piv_ref(), uri)
    }

    fn seal_key_decrypt(&self, uri: &str, ciphertext: &[u8]) -> Result<SecretBytes, KeyError> {
        seal_key_decrypt(&self.profiles, self.piv_ref(), uri, ciphertext)
    }
}

impl TokenProviders {
    #[cfg(feature = "pcsc")]
    fn piv_ref(&self) -> PivRef<'_> {
        Some(&self.piv)
    }
    #[cfg(not(feature = "pcsc"))]
    fn piv_ref(&self) -> PivRef<'_> {
        None
    }
}

impl KeyRouter {
    #[cfg(feature = "pcsc")]
    fn piv_ref(&self) -> PivRef<'_> {
        self.piv.as_deref()
    }
    #[cfg(not(feature = "pcsc"))]
    fn piv_ref(&self) -> PivRef<'_> {
        None
    }
}

/// One profile in `token print`.
#[derive(Debug)]
pub struct ProfileListing {
    /// profile name
    pub name: String,
    /// `pkcs11` or `piv`
    pub kind: &'static str,
    /// the profile's location URI
    pub location: String,
    /// whether `on-smart-card=yes` means it
    pub default: bool,
    /// the tokens found through it, or why none could be listed
    pub tokens: Result<Vec<pkcs11::TokenInventory>, String>,
    /// piv: the PC/SC readers and the cards in them
    #[cfg(feature = "pcsc")]
    pub readers: Option<Result<Vec<piv::ReaderListing>, String>>,
}

impl KeyRouter {
    /// A router with the software provider; token providers are registered as they are configured.
    pub fn new(soft: Arc<dyn KeyProvider>) -> Self {
        KeyRouter {
            soft,
            providers: Vec::new(),
            profiles: profile::Profiles::default(),
            pkcs11: None,
            #[cfg(feature = "pcsc")]
            piv: None,
        }
    }

    /// The router with every provider this build has, configured from the token profiles.
    pub fn from_config(config: KeysConfig) -> Result<Self, KeyError> {
        let tokens = TokenProviders::from_config(&TokensConfig {
            tokens_dir: config.tokens_dir,
            force_last_pin_try: config.force_last_pin_try,
        })?;
        Ok(KeyRouter::with_tokens(tokens, config.sealer))
    }

    /// The router over token providers made first (see [`TokenProviders`]) and the sealer of
    /// software keys.
    pub fn with_tokens(tokens: TokenProviders, sealer: Arc<crate::seal::Sealer>) -> Self {
        let mut router = KeyRouter::new(Arc::new(soft::SoftProvider::new(sealer)));
        router.register(Scheme::Pkcs11, tokens.pkcs11.clone());
        router.pkcs11 = Some(tokens.pkcs11);
        #[cfg(feature = "pcsc")]
        {
            router.register(Scheme::Piv, tokens.piv.clone());
            router.piv = Some(tokens.piv);
        }
        router.profiles = tokens.profiles;
        router
    }

    /// Where `on-smart-card=PROFILE` puts a key.
    pub fn profile_location(&self, profile: &str) -> Result<KeyUri, KeyError> {
        self.profiles.location(profile)
    }

    /// `token print`: the profiles (all, or one) and what their tokens hold.
    pub fn token_listing(
        &self,
        only: Option<&str>,
        login: bool,
    ) -> Result<Vec<ProfileListing>, KeyError> {
        let names: Vec<String> = match only {
            Some(n) => vec![self.profiles.get(n)?.0.to_owned()],
            None => self.profiles.iter().map(|(n, _)| n.to_owned()).collect(),
        };
        let mut out = Vec::new();
        for name in names {
            let (_, p) = self.profiles.get(&name)?;
            let location = p.location()?;
            let tokens = match (p.kind, &self.pkcs11, &p.module_path) {
                (profile::ProfileKind::Pkcs11, Some(provider), Some(module)) => {
                    let pin = pkcs11::token::PinSpec {
                        value: None,
                        source: p.pin_source.as_deref().map(str::parse).transpose()?,
                    };
                    provider
                        .inventory(module, &pin, login)
                        .map(|all| {
                            all.into_iter()
                                .filter(|t| {
                                    p.token_label.as_deref().is_none_or(|l| t.label == l)
                                        && p.token_serial.as_deref().is_none_or(|s| t.serial == s)
                                })
                                .collect()
                        })
                        .map_err(|e| e.to_string())
                }
                (profile::ProfileKind::Piv, _, _) => Ok(Vec::new()),
                _ => Err("no PKCS#11 provider".to_owned()),
            };
            #[cfg(feature = "pcsc")]
            let readers = match (p.kind, &self.piv) {
                (profile::ProfileKind::Piv, Some(piv)) => {
                    Some(piv.readers().map_err(|e| e.to_string()))
                }
                (profile::ProfileKind::Piv, None) => Some(Err("no PIV provider".into())),
                _ => None,
            };
            out.push(ProfileListing {
                #[cfg(feature = "pcsc")]
                readers,
                name,
                kind: match p.kind {
                    profile::ProfileKind::Pkcs11 => "pkcs11",
                    profile::ProfileKind::Piv => "piv",
                },
                location: location.to_string(),
                default: p.default,
                tokens,
            });
        }
        Ok(out)
    }

    /// Registers the provider for a token scheme.
    pub fn register(&mut self, scheme: Scheme, provider: Arc<dyn KeyProvider>) {
        self.providers.retain(|(s, _)| *s != scheme);
        self.providers.push((scheme, provider));
    }

    /// The software provider.
    pub fn soft(&self) -> &dyn KeyProvider {
        self.soft.as_ref()
    }

    /// The state of a key's token (see [`KeyProvider::key_state`]); a key whose provider this
    /// build lacks is reported online (using it says why it cannot be used).
    pub fn key_state(&self, key: &KeyHandle) -> KeyState {
        self.provider(&key.uri)
            .map(|p| p.key_state(key))
            .unwrap_or(KeyState::Online)
    }

    /// The provider for a URI's scheme.
    pub fn provider(&self, uri: &KeyUri) -> Result<&dyn KeyProvider, KeyError> {
        match uri.scheme() {
            Scheme::Soft => Ok(self.soft.as_ref()),
            scheme => self
                .providers
                .iter()
                .find(|(s, _)| *s == scheme)
                .map(|(_, p)| p.as_ref())
                .ok_or_else(|| {
                    KeyError::NoProvider(match scheme {
                        Scheme::Pkcs11 => "this certman has no PKCS#11 provider configured: \
                                           pkcs11: keys are not available"
                            .into(),
                        Scheme::Piv => {
                            "this certman was built without PC/SC support: piv: keys are not available"
                                .into()
                        }
                        Scheme::Soft => unreachable!("soft is always present"),
                    })
                }),
        }
    }
}

/// What `card_verify` checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardVerifyReport {
    /// The provider's name.
    pub provider: &'static str,
    /// `Some(true)` when the provider's public key was read and equals the certificate's;
    /// `None` when the provider cannot read public keys back.
    pub public_key_matches: Option<bool>,
    /// The scheme used to sign a fresh random challenge that verified under the certificate's key.
    pub challenge_scheme: SignatureScheme,
}

/// Proves that `key` is present and belongs to the certificate whose SubjectPublicKeyInfo is
/// `cert_spki`: compares public keys where the provider can read them, **and** signs a fresh
/// random challenge and verifies it with the certificate's key.
pub fn card_verify(
    provider: &dyn KeyProvider,
    key: &KeyHandle,
    cert_spki: &SubjectPublicKeyInfoOwned,
) -> Result<CardVerifyReport, KeyError> {
    let cert_alg = KeyAlgorithm::from_spki(cert_spki.owned_to_ref())?;
    let public_key_matches = match provider.public_key(key) {
        Ok(pk) => {
            if pk != *cert_spki {
                return Err(KeyError::Verification(
                    "the key's public key differs from the certificate's".into(),
                ));
            }
            Some(true)
        }
        Err(KeyError::NotCapable(_)) => None,
        Err(e) => return Err(e),
    };
    let signer = provider.signer_with_public_key(key, cert_spki)?;
    let scheme = cert_alg.signature_scheme(None)?;
    let mut challenge = [0u8; 32];
    aws_lc_rs::rand::fill(&mut challenge)
        .map_err(|_| KeyError::device("challenge", "random generator failed"))?;
    let sig = signer.sign(scheme, &challenge)?;
    verify::verify_signature(cert_spki, scheme, &challenge, &sig).map_err(|_| {
        KeyError::Verification(
            "a challenge signed by the key does not verify with the certificate's public key"
                .into(),
        )
    })?;
    Ok(CardVerifyReport {
        provider: provider.name(),
        public_key_matches,
        challenge_scheme: scheme,
    })
}

use der::referenced::OwnedToRef;

/// DER DigestInfo prefixes (RFC 8017 §9.2 note 1).
pub(crate) fn digest_info_prefix(h: HashAlgorithm) -> &'static [u8] {
    match h {
        HashAlgorithm::Sha256 => &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ],
        HashAlgorithm::Sha384 => &[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x02, 0x05, 0x00, 0x04, 0x30,
        ],
        HashAlgorithm::Sha512 => &[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x03, 0x05, 0x00, 0x04, 0x40,
        ],
    }
}

pub(crate) fn digest(h: HashAlgorithm, msg: &[u8]) -> Vec<u8> {
    let alg = match h {
        HashAlgorithm::Sha256 => &aws_lc_rs::digest::SHA256,
        HashAlgorithm::Sha384 => &aws_lc_rs::digest::SHA384,
        HashAlgorithm::Sha512 => &aws_lc_rs::digest::SHA512,
    };
    aws_lc_rs::digest::digest(alg, msg).as_ref().to_vec()
}

/// Where a PIN comes from: a `pin-value` (a secret, never stored) or a `pin-source`.
#[derive(Clone, Debug, Default)]
pub struct PinSpec {
    /// `pin-value=` from the URI
    pub value: Option<crate::secret::SecretString>,
    /// `pin-source=`
    pub source: Option<crate::secret::SecretSource>,
}

/// The subject of a DER certificate as text (for listings of token objects).
pub(crate) fn cert_subject(der: &[u8]) -> Result<String, der::Error> {
    use der::Decode;
    let c = x509_cert::Certificate::from_der(der)?;
    Ok(c.tbs_certificate().subject().to_string())
}

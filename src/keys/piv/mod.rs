//! The PIV key provider over PC/SC (the `pcsc` and `yubikey` crates): keys generated in a
//! card's slots (9a/9c/9d/9e and retired 82–95), cards chosen by serial or reader name, one
//! card handle per card behind a mutex (cards fail concurrent operations), the PIN guard, and
//! certificates written into the key's slot.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use spki::SubjectPublicKeyInfoOwned;
use yubikey::certificate::{CertInfo, Certificate};
use yubikey::piv::{self, AlgorithmId, SlotId};
use yubikey::{MgmKey, PinPolicy, Serial, TouchPolicy, YubiKey};

use super::{
    CertificateObjects, EcCurve, GenerateRequest, GeneratedKey, HashAlgorithm, KeyAlgorithm,
    KeyDecrypt, KeyHandle, KeyProvider, KeySigner, KeyUri, PinSpec, Scheme, SignatureScheme,
};
use crate::error::KeyError;
use crate::secret::{resolve_secret, SecretBytes, SecretSource};

/// A PIV slot, typed: the four standard key slots and the twenty retired ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PivSlot(SlotId);

impl FromStr for PivSlot {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let slot = SlotId::from_str(&s.to_ascii_lowercase()).map_err(|_| {
            KeyError::InvalidUri(format!("PIV slot '{s}' (use 9a, 9c, 9d, 9e or 82…95)"))
        })?;
        match slot {
            SlotId::Authentication
            | SlotId::Signature
            | SlotId::KeyManagement
            | SlotId::CardAuthentication
            | SlotId::Retired(_) => Ok(PivSlot(slot)),
            _ => Err(KeyError::InvalidUri(format!(
                "PIV slot '{s}' holds no user key (use 9a, 9c, 9d, 9e or 82…95)"
            ))),
        }
    }
}

impl std::fmt::Display for PivSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b: u8 = self.0.into();
        write!(f, "{b:02x}")
    }
}

/// Options of the PIV provider.
#[derive(Clone, Debug, Default)]
pub struct PivOptions {
    /// spend the last PIN try
    pub force_last_pin_try: bool,
    /// the profiles' pin-sources, for keys made from a profile
    pub profile_pins: crate::keys::ProfilePins,
}

struct Card {
    yk: Mutex<YubiKey>,
    serial: u32,
    reader: String,
    version: String,
    pin: Mutex<PinSpec>,
    force_last_pin_try: bool,
    /// the factory-default management key warning was printed
    warned_default_mgm: std::sync::atomic::AtomicBool,
    /// why a VERIFY of this process failed: the card's PIN is not tried again by it
    pin_failed: crate::keys::PinLatch,
    /// the card left its reader and came back (this handle was opened again): a PIN from a
    /// source is re-used, one typed at a prompt is not asked again
    reopened: std::sync::atomic::AtomicBool,
}

/// Keys on PIV cards.
pub struct PivProvider {
    cards: Mutex<HashMap<String, Arc<Card>>>,
    options: PivOptions,
}

fn piv_err(context: impl Into<String>, e: yubikey::Error) -> KeyError {
    KeyError::device(context, e)
}

fn slot_of(uri: &KeyUri) -> Result<PivSlot, KeyError> {
    uri.path_str("slot-id")
        .ok_or_else(|| KeyError::InvalidUri(format!("{uri}: needs slot-id=")))?
        .parse()
}

impl PivProvider {
    /// A provider; cards are opened when a key first needs them.
    pub fn new(options: PivOptions) -> Self {
        PivProvider {
            cards: Mutex::new(HashMap::new()),
            options,
        }
    }

    fn card(&self, uri: &KeyUri) -> Result<Arc<Card>, KeyError> {
        let reader = uri.path_str("reader").map(str::to_owned);
        let serial = uri.path_str("serial").map(str::to_owned);
        let key = match (&serial, &reader) {
            (Some(s), _) => format!("serial:{s}"),
            (None, Some(r)) => format!("reader:{r}"),
            (None, None) => "any".to_owned(),
        };
        let pin = crate::keys::pin_spec(uri, &self.options.profile_pins)?;
        let mut cards = self.cards.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cards.get(&key) {
            c.offer_pin(&pin);
            return Ok(c.clone());
        }
        // A card already open under another name is the same card: opening it twice would
        // reset it (pcsc disconnects with a reset) under the other handle.
        let known = cards
            .values()
            .find(|c| match (&serial, &reader) {
                (Some(s), _) => c.serial.to_string() == *s,
                (None, Some(r)) => c.reader == *r,
                (None, None) => true,
            })
            .cloned();
        if let Some(c) = known {
            c.offer_pin(&pin);
            cards.insert(key, c.clone());
            return Ok(c);
        }
        let yk = match (&serial, &reader) {
            (Some(s), _) => {
                let n: u32 = s.parse().map_err(|_| {
                    KeyError::InvalidUri(format!("PIV serial '{s}' is not a number"))
                })?;
                YubiKey::open_by_serial(Serial(n)).map_err(|e| absent(&key, e))?
            }
            (None, Some(r)) => open_by_reader(r)?,
            (None, None) => YubiKey::open().map_err(|e| absent("(any card)", e))?,
        };
        let serial_n = yk.serial().0;
        if let Some(c) = cards.values().find(|c| c.serial == serial_n).cloned() {
            let _ = yk.disconnect(pcsc::Disposition::LeaveCard);
            c.offer_pin(&pin);
            cards.insert(key, c.clone());
            return Ok(c);
        }
        let card = Arc::new(Card {
            serial: serial_n,
            reader: yk.name().to_owned(),
            version: yk.version().to_string(),
            yk: Mutex::new(yk),
            pin: Mutex::new(pin),
            force_last_pin_try: self.options.force_last_pin_try,
            warned_default_mgm: Default::default(),
            pin_failed: crate::keys::PinLatch::default(),
            reopened: Default::default(),
        });
        cards.insert(key, card.clone());
        Ok(card)
    }

    /// The PC/SC readers present and what card (serial, version, PIN tries) each holds.
    pub fn readers(&self) -> Result<Vec<ReaderListing>, KeyError> {
        let ctx = pcsc::Context::establish(pcsc::Scope::User)
            .map_err(|e| KeyError::TokenAbsent(format!("PC/SC (is pcscd running?): {e}")))?;
        let names = ctx
            .list_readers_owned()
            .map_err(|e| KeyError::TokenAbsent(format!("listing PC/SC readers: {e}")))?;
        let mut out = Vec::new();
        for name in names {
            let name = name.to_string_lossy().into_owned();
            let uri = KeyUri::new(Scheme::Piv)
                .with_path("slot-id", "9c")
                .with_path("reader", &name);
            let card = match self.card(&uri) {
                Ok(card) => (|| -> Result<CardListing, KeyError> {
                    let mut yk = card.lock()?;
                    // An empty VERIFY spends no try: it answers the tries left, or
                    // 90 00 while the PIN is verified (SP 800-73-4 §3.2.1).
                    let (pin, pin_tries) = match yk.verify_pin(&[]) {
                        Ok(()) => ("PIN verified".to_owned(), CardPin::Verified),
                        Err(yubikey::Error::WrongPin { tries }) => {
                            (format!("{tries} PIN tries left"), CardPin::TriesLeft(tries))
                        }
                        Err(e) => (format!("PIN state unknown ({e})"), CardPin::Unknown),
                    };
                    let mut slots = Vec::new();
                    for s in ["9a", "9c", "9d", "9e"] {
                        let slot = PivSlot::from_str(s).unwrap_or(PivSlot(SlotId::Signature));
                        if let Ok(Some(der)) = read_slot_certificate(&mut yk, slot) {
                            if let Ok(subject) = super::cert_subject(&der) {
                                slots.push((s.to_owned(), subject));
                            }
                        }
                    }
                    Ok(CardListing {
                        serial: card.serial,
                        version: card.version.clone(),
                        pin,
                        pin_tries,
                        slots,
                    })
                })()
                .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            out.push(ReaderListing { name, card });
        }
        Ok(out)
    }
}

/// One reader in `token print`.
#[derive(Clone, Debug)]
pub struct ReaderListing {
    /// reader name
    pub name: String,
    /// the card in it
    pub card: Result<CardListing, String>,
}

/// A card's PIN as an empty VERIFY reports it, without spending a try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CardPin {
    /// verified in this card session (a later sign needs no VERIFY)
    Verified,
    /// this many tries left (0: blocked)
    TriesLeft(u8),
    /// the card did not say
    Unknown,
}

/// A card in `token print`.
#[derive(Clone, Debug)]
pub struct CardListing {
    /// serial number
    pub serial: u32,
    /// firmware version
    pub version: String,
    /// PIN state
    pub pin: String,
    /// the PIN state as read, for the status page
    pub pin_tries: CardPin,
    /// (slot, certificate subject) of the slots holding certificates
    pub slots: Vec<(String, String)>,
}

/// The PIV data object holding a slot's certificate (SP 800-73-4 Part 1, Table 3).
fn certificate_object_id(slot: PivSlot) -> u32 {
    let b: u8 = slot.0.into();
    match b {
        0x9a => 0x005f_c105,
        0x9c => 0x005f_c10a,
        0x9d => 0x005f_c10b,
        0x9e => 0x005f_c101,
        // retired key management 82..95 → 5FC10D..5FC120
        r => 0x005f_c10d + u32::from(r - 0x82),
    }
}

/// The certificate in a slot, read from its data object. (The `yubikey` crate's
/// `Certificate::read` indexes into an empty object and panics on a slot whose certificate
/// was deleted; an empty or absent object is "no certificate" here.)
fn read_slot_certificate(yk: &mut YubiKey, slot: PivSlot) -> Result<Option<Vec<u8>>, KeyError> {
    let Ok(buf) = yk.fetch_object(certificate_object_id(slot)) else {
        return Ok(None);
    };
    // 70 L <certificate> 71 01 <certinfo> FE 00
    let bytes: &[u8] = &buf;
    if bytes.first() != Some(&0x70) {
        return Ok(None);
    }
    let (len, header) = match bytes.get(1) {
        Some(&l) if l < 0x80 => (usize::from(l), 2),
        Some(0x81) => (usize::from(*bytes.get(2).unwrap_or(&0)), 3),
        Some(0x82) => (
            usize::from(*bytes.get(2).unwrap_or(&0)) << 8
                | usize::from(*bytes.get(3).unwrap_or(&0)),
            4,
        ),
        _ => return Ok(None),
    };
    match bytes.get(header..header + len) {
        Some(cert) if !cert.is_empty() => {
            if bytes.get(header + len..header + len + 3) == Some(&[0x71, 0x01, 0x01]) {
                return Err(KeyError::Unsupported(format!(
                    "the certificate in slot {slot} is gzip-compressed"
                )));
            }
            Ok(Some(cert.to_vec()))
        }
        _ => Ok(None),
    }
}

fn absent(what: &str, e: yubikey::Error) -> KeyError {
    KeyError::TokenAbsent(format!("PIV card {what} is not present ({e})"))
}

fn open_by_reader(name: &str) -> Result<YubiKey, KeyError> {
    let mut ctx = yubikey::reader::Context::open().map_err(|e| absent(name, e))?;
    let mut seen = Vec::new();
    for reader in ctx.iter().map_err(|e| absent(name, e))? {
        let n = reader.name().into_owned();
        if n == name {
            return reader.open().map_err(|e| absent(name, e));
        }
        seen.push(n);
    }
    Err(KeyError::TokenAbsent(format!(
        "no PC/SC reader \"{name}\" (readers: {})",
        if seen.is_empty() {
            "none".into()
        } else {
            seen.join(", ")
        }
    )))
}

/// Whether a card error means the card (or its reader) went away, or came back and this
/// handle is from before (PC/SC: removed, reset, no card, reader gone).
fn card_gone(e: &yubikey::Error) -> bool {
    matches!(
        e,
        yubikey::Error::PcscError {
            inner: Some(
                pcsc::Error::RemovedCard
                    | pcsc::Error::ResetCard
                    | pcsc::Error::NoSmartcard
                    | pcsc::Error::ReaderUnavailable
                    | pcsc::Error::UnknownReader
                    | pcsc::Error::UnpoweredCard
                    | pcsc::Error::UnresponsiveCard
                    | pcsc::Error::CardUnsupported
                    | pcsc::Error::NoService
                    | pcsc::Error::NotTransacted
            ) | None
        }
    )
}

impl Card {
    /// The card, present: an empty VERIFY (no try spent) shows whether this handle still
    /// reaches it; a card that left and came back is opened again (by its reader, the same
    /// serial checked), one that is gone is `TokenAbsent` at once. PC/SC answers these from
    /// pcscd's reader state: no wait on a card that is not there.
    fn lock(&self) -> Result<MutexGuard<'_, YubiKey>, KeyError> {
        let mut yk = self.yk.lock().unwrap_or_else(|p| p.into_inner());
        match yk.verify_pin(&[]) {
            Err(e) if card_gone(&e) => self.reopen(&mut yk)?,
            _ => {}
        }
        Ok(yk)
    }

    /// Opens the card again in its reader after it left (the old handle is stale).
    fn reopen(&self, yk: &mut YubiKey) -> Result<(), KeyError> {
        let gone = |why: String| {
            KeyError::TokenAbsent(format!(
                "PIV card {} is not in reader \"{}\" ({why})",
                self.serial, self.reader
            ))
        };
        // PC/SC's own way back to a card that was reset or removed and put back: reconnect
        // the handle this process holds (a second connection opened beside the stale one
        // was answered "no smart card" by pcscd in the tests). The yubikey crate verifies the
        // PIN this handle verified before again, if any: a PIN the operator gave.
        if yk.reconnect().is_ok() {
            self.reopened
                .store(true, std::sync::atomic::Ordering::SeqCst);
            return Ok(());
        }
        let fresh = open_by_reader(&self.reader).map_err(|e| gone(e.to_string()))?;
        if fresh.serial().0 != self.serial {
            return Err(gone(format!("card {} is there instead", fresh.serial())));
        }
        *yk = fresh;
        self.reopened
            .store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// The card's state without a PIN try and without waiting on an operation in progress
    /// (a card in use is present).
    fn state(&self) -> crate::keys::KeyState {
        use crate::keys::KeyState;
        if self.pin_failed.is_set() {
            return KeyState::PinFailed;
        }
        let Ok(mut yk) = self.yk.try_lock() else {
            return KeyState::Online;
        };
        let mut probe = yk.verify_pin(&[]);
        if matches!(&probe, Err(e) if card_gone(e)) {
            if let Err(e) = self.reopen(&mut yk) {
                tracing::debug!("{e}");
                return KeyState::TokenAbsent;
            }
            probe = yk.verify_pin(&[]);
        }
        match probe {
            Err(yubikey::Error::WrongPin { tries: 0 }) | Err(yubikey::Error::PinLocked) => {
                KeyState::PinLocked
            }
            Err(e) if card_gone(&e) => KeyState::TokenAbsent,
            _ => KeyState::Online,
        }
    }

    fn offer_pin(&self, spec: &PinSpec) {
        let mut pin = self.pin.lock().unwrap_or_else(|p| p.into_inner());
        if pin.value.is_none() && pin.source.is_none() {
            *pin = spec.clone();
        }
    }

    /// The PIN guard: asks the card how many tries are left (an empty VERIFY, which costs no
    /// try), refuses at one try left unless forced, and only then verifies the operator's PIN.
    /// `every_time`: the slot's policy wants a VERIFY right before each use (9c).
    fn verify_pin(&self, yk: &mut YubiKey, every_time: bool) -> Result<(), KeyError> {
        self.pin_failed.check("card")?;
        match yk.verify_pin(&[]) {
            // 90 00: already verified (SP 800-73-4); the counter is full. Nothing to spend
            // unless the slot wants a fresh VERIFY.
            Ok(()) if !every_time => return Ok(()),
            Ok(()) => {}
            Err(yubikey::Error::WrongPin { tries: 0 }) | Err(yubikey::Error::PinLocked) => {
                return Err(KeyError::Pin(format!(
                    "the PIN of PIV card {} is blocked; unblock it with the PUK",
                    self.serial
                )))
            }
            Err(yubikey::Error::WrongPin { tries }) if tries <= 1 && !self.force_last_pin_try => {
                return Err(KeyError::Pin(format!(
                    "PIV card {} has {tries} PIN try left: not trying; check the PIN and pass \
                     --force-last-pin-try to use it",
                    self.serial
                )))
            }
            Err(yubikey::Error::WrongPin { .. }) => {}
            Err(e) => {
                return Err(piv_err(
                    format!("reading the PIN state of card {}", self.serial),
                    e,
                ))
            }
        }
        let spec = self.pin.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if self.reopened.load(std::sync::atomic::Ordering::SeqCst)
            && spec.value.is_none()
            && matches!(spec.source, Some(SecretSource::Prompt))
        {
            return Err(KeyError::Pin(format!(
                "PIV card {} left its reader and came back; its PIN was typed at a prompt and \
                 this process does not ask again (give a pin-source, or restart to type it)",
                self.serial
            )));
        }
        let pin = resolve_secret(
            spec.value,
            spec.source.as_ref(),
            &format!("PIN for PIV card {}", self.serial),
            "pin",
            true,
        )?
        .ok_or_else(|| KeyError::Pin(format!("no PIN for PIV card {}", self.serial)))?;
        // PIV PINs are 6 to 8 characters (SP 800-73-4 §2.4.3): another is not tried.
        let len = pin.secret_str().len();
        if !(6..=8).contains(&len) {
            return Err(KeyError::Pin(format!(
                "the PIN for PIV card {} has {len} characters; PIV takes 6 to 8: not tried",
                self.serial
            )));
        }
        let failed = |why: String| self.pin_failed.fail(why);
        match yk.verify_pin(pin.secret_str().as_bytes()) {
            Ok(()) => Ok(()),
            Err(yubikey::Error::WrongPin { tries }) => Err(failed(format!(
                "wrong PIN for PIV card {}: {tries} {} left",
                self.serial,
                if tries == 1 { "try" } else { "tries" }
            ))),
            Err(yubikey::Error::PinLocked) => Err(failed(format!(
                "the PIN of PIV card {} is blocked",
                self.serial
            ))),
            Err(e) => Err(piv_err("PIN verification", e)),
        }
    }

    /// Authenticates with the management key from `source`, or the factory default — with a
    /// loud warning, since a card still on its default key is open to anyone holding it.
    fn authenticate(&self, yk: &mut YubiKey, source: Option<&str>) -> Result<(), KeyError> {
        let key = match source {
            Some(src) => {
                let src: SecretSource = src.parse()?;
                let text = src.read("PIV management key")?;
                let bytes = hex::decode(text.secret_str().trim()).map_err(|_| {
                    KeyError::InvalidUri(
                        "the PIV management key must be hex (3DES: 48, AES: 32/48/64 digits)"
                            .into(),
                    )
                })?;
                MgmKey::from_bytes(&bytes, None).map_err(|e| piv_err("management key", e))?
            }
            None => {
                if !self
                    .warned_default_mgm
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    eprintln!(
                    "certman: WARNING: PIV card {} is being managed with the FACTORY DEFAULT management key; \
                     anyone can replace its keys. Set a new one (yubico-piv-tool -a set-mgm-key) and give \
                     management-key-source= in the key URI or token profile.",
                    self.serial
                );
                }
                MgmKey::get_default(yk).map_err(|e| piv_err("default management key", e))?
            }
        };
        yk.authenticate(&key).map_err(|e| match e {
            yubikey::Error::AuthenticationError => KeyError::Pin(format!(
                "the management key was refused by PIV card {} (no PIN try was spent)",
                self.serial
            )),
            e => piv_err("management-key authentication", e),
        })
    }
}

fn algorithm_id(alg: KeyAlgorithm) -> Result<AlgorithmId, KeyError> {
    Ok(match alg {
        KeyAlgorithm::Rsa { bits: 1024 } => AlgorithmId::Rsa1024,
        KeyAlgorithm::Rsa { bits: 2048 } => AlgorithmId::Rsa2048,
        KeyAlgorithm::Rsa { bits: 3072 } => AlgorithmId::Rsa3072,
        KeyAlgorithm::Rsa { bits: 4096 } => AlgorithmId::Rsa4096,
        KeyAlgorithm::Ec(EcCurve::P256) => AlgorithmId::EccP256,
        KeyAlgorithm::Ec(EcCurve::P384) => AlgorithmId::EccP384,
        KeyAlgorithm::Ed25519 => AlgorithmId::Ed25519,
        other => return Err(KeyError::Unsupported(format!("{other} keys on PIV cards"))),
    })
}

fn key_uri(location: &KeyUri, card: &Card, slot: PivSlot) -> KeyUri {
    let mut uri = KeyUri::new(Scheme::Piv)
        .with_path("slot-id", slot.to_string())
        .with_path("serial", card.serial.to_string());
    for q in ["pin-source", "management-key-source", "profile"] {
        if let Some(v) = location.query_str(q) {
            uri = uri.with_query(q, v);
        }
    }
    uri
}

impl KeyProvider for PivProvider {
    fn name(&self) -> &'static str {
        "PIV"
    }

    fn generate(&self, req: &GenerateRequest) -> Result<GeneratedKey, KeyError> {
        let location = req.location.as_ref().ok_or_else(|| {
            KeyError::InvalidUri(
                "a PIV key needs a card: on-smart-card=PROFILE or key=piv:…".into(),
            )
        })?;
        let slot = slot_of(location)?;
        let card = self.card(location)?;
        let alg = algorithm_id(req.algorithm)?;
        let mut yk = card.lock()?;
        // A slot with a certificate holds a key in use (perhaps a CA's): generating would
        // destroy it for good. The operator frees the slot first.
        if let Some(der) = read_slot_certificate(&mut yk, slot)? {
            let subject = super::cert_subject(&der).unwrap_or_else(|_| "?".into());
            return Err(KeyError::NotCapable(format!(
                "slot {slot} of PIV card {} holds the key of \"{subject}\": certman does not overwrite a key in use \
                 (free the slot: `certman remove … --delete-key`, or yubico-piv-tool -a delete-certificate -s {slot})",
                card.serial
            )));
        }
        card.authenticate(&mut yk, location.query_str("management-key-source"))?;
        let spki = piv::generate(
            &mut yk,
            slot.0,
            alg,
            PinPolicy::Default,
            TouchPolicy::Default,
        )
        .map_err(|e| match e {
            yubikey::Error::NotSupported | yubikey::Error::AlgorithmError => {
                KeyError::Unsupported(format!(
                    "{} on PIV card {} (firmware {})",
                    req.algorithm, card.serial, card.version
                ))
            }
            e => piv_err(format!("generating {} in slot {slot}", req.algorithm), e),
        })?;
        Ok(GeneratedKey {
            uri: key_uri(location, &card, slot),
            public_key: spki,
            algorithm: req.algorithm,
            sealed: None,
            token_serial: Some(card.serial.to_string()),
            slot: Some(slot.to_string()),
        })
    }

    fn public_key(&self, key: &KeyHandle) -> Result<SubjectPublicKeyInfoOwned, KeyError> {
        // PIV has no "read public key" (GET METADATA is YubiKey 5.3+ only): the slot's
        // certificate is where the public key is.
        let slot = slot_of(&key.uri)?;
        let card = self.card(&key.uri)?;
        let mut yk = card.lock()?;
        let der = read_slot_certificate(&mut yk, slot)?.ok_or_else(|| {
            KeyError::NotCapable(format!(
                "slot {slot} of PIV card {} holds no certificate to read the public key from",
                card.serial
            ))
        })?;
        use der::Decode;
        let cert = x509_cert::Certificate::from_der(&der)
            .map_err(|e| KeyError::device(format!("the certificate in slot {slot}"), e))?;
        Ok(cert.tbs_certificate().subject_public_key_info().clone())
    }

    fn signer(&self, key: &KeyHandle) -> Result<Arc<dyn KeySigner>, KeyError> {
        let slot = slot_of(&key.uri)?;
        let card = self.card(&key.uri)?;
        let spki = self.public_key(key)?;
        let alg = KeyAlgorithm::from_spki(der::referenced::OwnedToRef::owned_to_ref(&spki))?;
        Ok(Arc::new(PivSigner {
            card,
            slot,
            spki,
            alg,
        }))
    }

    fn signer_with_public_key(
        &self,
        key: &KeyHandle,
        public_key: &SubjectPublicKeyInfoOwned,
    ) -> Result<Arc<dyn KeySigner>, KeyError> {
        let slot = slot_of(&key.uri)?;
        let card = self.card(&key.uri)?;
        let alg = KeyAlgorithm::from_spki(der::referenced::OwnedToRef::owned_to_ref(public_key))?;
        Ok(Arc::new(PivSigner {
            card,
            slot,
            spki: public_key.clone(),
            alg,
        }))
    }

    fn delete(&self, key: &KeyHandle) -> Result<(), KeyError> {
        // PIV cards cannot delete a key. The certificate goes, so the slot no longer claims
        // an identity and may be generated into again; the key itself stays until then.
        self.delete_certificate(key)?;
        Err(KeyError::NotCapable(format!(
            "a PIV card cannot delete a key: the certificate in slot {} was deleted and the slot \
             can be generated into again, but the private key stays on the card until then",
            slot_of(&key.uri)?
        )))
    }

    fn certificate_objects(&self) -> Option<&dyn CertificateObjects> {
        Some(self)
    }

    fn decrypter(&self) -> Option<&dyn KeyDecrypt> {
        Some(self)
    }

    fn key_state(&self, key: &KeyHandle) -> crate::keys::KeyState {
        match self.card(&key.uri) {
            Ok(card) => card.state(),
            Err(KeyError::TokenAbsent(_)) => crate::keys::KeyState::TokenAbsent,
            Err(_) => crate::keys::KeyState::Online,
        }
    }

    fn token_status(&self, key: &KeyHandle) -> Option<String> {
        let card = self.card(&key.uri).ok()?;
        let mut yk = card.lock().ok()?;
        let pin = match yk.verify_pin(&[]) {
            Ok(()) => "PIN verified".to_owned(),
            Err(yubikey::Error::WrongPin { tries }) => format!("{tries} PIN tries left"),
            Err(e) => format!("PIN state unknown ({e})"),
        };
        Some(format!(
            "PIV card {} (firmware {}) in \"{}\": {pin}",
            card.serial, card.version, card.reader
        ))
    }
}

impl CertificateObjects for PivProvider {
    fn load_certificate(&self, key: &KeyHandle) -> Result<Option<Vec<u8>>, KeyError> {
        let slot = slot_of(&key.uri)?;
        let card = self.card(&key.uri)?;
        let mut yk = card.lock()?;
        read_slot_certificate(&mut yk, slot)
    }

    fn store_certificate(&self, key: &KeyHandle, der: &[u8]) -> Result<(), KeyError> {
        let slot = slot_of(&key.uri)?;
        let card = self.card(&key.uri)?;
        let cert = Certificate::from_bytes(der.to_vec()).map_err(|e| piv_err("certificate", e))?;
        let mut yk = card.lock()?;
        card.authenticate(&mut yk, key.uri.query_str("management-key-source"))?;
        cert.write(&mut yk, slot.0, CertInfo::Uncompressed)
            .map_err(|e| piv_err(format!("writing the certificate into slot {slot}"), e))
    }

    fn delete_certificate(&self, key: &KeyHandle) -> Result<(), KeyError> {
        let slot = slot_of(&key.uri)?;
        let card = self.card(&key.uri)?;
        let mut yk = card.lock()?;
        card.authenticate(&mut yk, key.uri.query_str("management-key-source"))?;
        Certificate::delete(&mut yk, slot.0)
            .map_err(|e| piv_err(format!("deleting the certificate of slot {slot}"), e))
    }
}

impl KeyDecrypt for PivProvider {
    fn decrypt_pkcs1v15(
        &self,
        key: &KeyHandle,
        ciphertext: &[u8],
    ) -> Result<SecretBytes, KeyError> {
        let slot = slot_of(&key.uri)?;
        let card = self.card(&key.uri)?;
        // The ciphertext is as long as the modulus; that names the key size (the card cannot
        // be asked, and the slot may hold no certificate).
        let alg = match ciphertext.len() {
            128 => AlgorithmId::Rsa1024,
            256 => AlgorithmId::Rsa2048,
            384 => AlgorithmId::Rsa3072,
            512 => AlgorithmId::Rsa4096,
            n => {
                return Err(KeyError::Verification(format!(
                    "RSA decryption failed: a {n}-byte ciphertext fits no RSA key size"
                )))
            }
        };
        let mut yk = card.lock()?;
        card.verify_pin(&mut yk, slot.0 == SlotId::Signature)?;
        let em = piv::decrypt_data(&mut yk, ciphertext, alg, slot.0)
            .map_err(|e| piv_err("decrypting on the card", e))?;
        // Remove the PKCS#1 v1.5 type-2 padding: 00 02 PS(≥8 non-zero) 00 M.
        let bad = || KeyError::Verification("RSA decryption failed".into());
        if em.len() < 11 || em[0] != 0 || em[1] != 2 {
            return Err(bad());
        }
        let sep = em[2..].iter().position(|b| *b == 0).ok_or_else(bad)? + 2;
        if sep < 10 {
            return Err(bad());
        }
        Ok(SecretBytes::new(em[sep + 1..].to_vec()))
    }
}

struct PivSigner {
    card: Arc<Card>,
    slot: PivSlot,
    spki: SubjectPublicKeyInfoOwned,
    alg: KeyAlgorithm,
}

/// EMSA-PKCS1-v1_5 encoding (RFC 8017 §9.2) of `digest` for a `k`-byte modulus.
fn pkcs1v15_pad(h: HashAlgorithm, digest: &[u8], k: usize) -> Result<Vec<u8>, KeyError> {
    let prefix = super::digest_info_prefix(h);
    let t_len = prefix.len() + digest.len();
    if k < t_len + 11 {
        return Err(KeyError::Unsupported(
            "RSA key too small for this digest".into(),
        ));
    }
    let mut em = Vec::with_capacity(k);
    em.extend([0x00, 0x01]);
    em.extend(std::iter::repeat_n(0xff, k - t_len - 3));
    em.push(0x00);
    em.extend_from_slice(prefix);
    em.extend_from_slice(digest);
    Ok(em)
}

impl KeySigner for PivSigner {
    fn public_key(&self) -> &SubjectPublicKeyInfoOwned {
        &self.spki
    }

    fn public_key_from_device(&self) -> bool {
        false
    }

    fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }

    fn supports(&self, scheme: SignatureScheme) -> bool {
        matches!(
            (scheme, self.alg),
            (SignatureScheme::RsaPkcs1(_), KeyAlgorithm::Rsa { .. })
                | (SignatureScheme::Ecdsa(_), KeyAlgorithm::Ec(_))
                | (SignatureScheme::Ed25519, KeyAlgorithm::Ed25519)
        )
    }

    fn sign(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        if !self.supports(scheme) {
            return Err(KeyError::Unsupported(format!(
                "a {} key on a PIV card cannot sign with {scheme}",
                self.alg
            )));
        }
        let alg = algorithm_id(self.alg)?;
        let input = match (scheme, self.alg) {
            (SignatureScheme::RsaPkcs1(h), KeyAlgorithm::Rsa { bits }) => {
                pkcs1v15_pad(h, &super::digest(h, message), bits as usize / 8)?
            }
            (SignatureScheme::Ecdsa(h), KeyAlgorithm::Ec(c)) => {
                // The card signs what it is given, at most the field size (FIPS 186-4 §6.4).
                let mut d = super::digest(h, message);
                d.truncate(c.bits().div_ceil(8) as usize);
                d
            }
            _ => message.to_vec(),
        };
        let mut yk = self.card.lock()?;
        // Slot 9c's default policy is "PIN always": a VERIFY right before each signature.
        self.card
            .verify_pin(&mut yk, self.slot.0 == SlotId::Signature)?;
        let sig = piv::sign_data(&mut yk, &input, alg, self.slot.0)
            .map_err(|e| piv_err(format!("signing with slot {}", self.slot), e))?;
        Ok(sig.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_parse_typed() {
        for s in ["9a", "9c", "9d", "9e", "82", "95", "9C"] {
            let slot: PivSlot = s.parse().unwrap();
            assert_eq!(slot.to_string(), s.to_ascii_lowercase());
        }
        for bad in ["f9", "9b", "81", "96", "x"] {
            assert!(bad.parse::<PivSlot>().is_err(), "{bad}");
        }
    }

    #[test]
    fn pkcs1_padding_layout() {
        let d = [7u8; 32];
        let em = pkcs1v15_pad(HashAlgorithm::Sha256, &d, 256).unwrap();
        assert_eq!(em.len(), 256);
        assert_eq!(&em[..2], &[0, 1]);
        assert_eq!(&em[256 - 32..], &d);
        assert!(pkcs1v15_pad(HashAlgorithm::Sha512, &[0; 64], 64).is_err());
    }
}

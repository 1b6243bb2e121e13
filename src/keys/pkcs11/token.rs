//! One PKCS#11 token: its slot, a pool of sessions, login once, the PIN guard, and recovery
//! after the token was pulled or the sessions died.

use std::sync::{Condvar, Mutex, MutexGuard};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::{Slot, TokenInfo};
use cryptoki::types::AuthPin;

use crate::error::KeyError;
use crate::secret::{resolve_secret, SecretString};

/// How a token is found: by label and/or serial, never by slot number.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenSelector {
    /// CKA token label (`token=`)
    pub label: Option<String>,
    /// token serial number (`serial=`)
    pub serial: Option<String>,
}

impl std::fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.label, &self.serial) {
            (Some(l), Some(s)) => write!(f, "\"{l}\" (serial {s})"),
            (Some(l), None) => write!(f, "\"{l}\""),
            (None, Some(s)) => write!(f, "serial {s}"),
            (None, None) => f.write_str("(any)"),
        }
    }
}

pub use crate::keys::PinSpec;

/// The PIN state a token reports (CK_TOKEN_INFO flags).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinState {
    /// CKF_USER_PIN_COUNT_LOW
    pub count_low: bool,
    /// CKF_USER_PIN_FINAL_TRY
    pub final_try: bool,
    /// CKF_USER_PIN_LOCKED
    pub locked: bool,
}

impl PinState {
    fn of(info: &TokenInfo) -> Self {
        PinState {
            count_low: info.user_pin_count_low(),
            final_try: info.user_pin_final_try(),
            locked: info.user_pin_locked(),
        }
    }
}

impl std::fmt::Display for PinState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.locked {
            f.write_str("PIN locked")
        } else if self.final_try {
            f.write_str("one PIN try left")
        } else if self.count_low {
            f.write_str("PIN tries running low")
        } else {
            f.write_str("PIN ok (no failed tries reported)")
        }
    }
}

struct Pool {
    idle: Vec<Session>,
    open: usize,
    /// bumped on every recovery; sessions and handles of older generations are stale
    generation: u64,
    slot: Slot,
    logged_in: Option<u64>,
    /// threads waiting for a session (no wake-up system call when nobody waits)
    waiters: usize,
}

/// A token in use.
pub struct Token {
    ctx: Pkcs11,
    /// how it was asked for
    pub selector: TokenSelector,
    /// its label
    pub label: String,
    /// its serial number
    pub serial: String,
    /// its model
    pub model: String,
    max_sessions: usize,
    pool: Mutex<Pool>,
    available: Condvar,
    pin: Mutex<PinSpec>,
    force_last_try: bool,
    /// why a login of this process failed on its PIN: no other operation of the process
    /// tries this token's PIN again (one try per token per process)
    pin_failed: crate::keys::PinLatch,
    /// a login of this process worked: a later one (after the token was re-plugged) may re-use
    /// a PIN from a source, but does not ask again at a prompt
    logged_in_before: std::sync::atomic::AtomicBool,
}

/// A session borrowed from the pool; goes back on drop unless marked broken.
pub struct PooledSession<'a> {
    token: &'a Token,
    session: Option<Session>,
    generation: u64,
}

impl PooledSession<'_> {
    /// The session.
    pub fn session(&self) -> &Session {
        // Invariant: `session` is Some until drop.
        self.session.as_ref().unwrap_or_else(|| unreachable!())
    }

    /// The pool generation this session belongs to (object handles are cached per generation).
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl Drop for PooledSession<'_> {
    fn drop(&mut self) {
        let mut pool = self.token.lock_pool();
        match self.session.take() {
            Some(s) if pool.generation == self.generation => pool.idle.push(s),
            _ => pool.open = pool.open.saturating_sub(1),
        }
        let wake = pool.waiters > 0;
        drop(pool);
        if wake {
            self.token.available.notify_one();
        }
    }
}

/// Whether an error means the token or its sessions went away.
pub fn is_absent(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::SlotIdInvalid,
            _
        )
    )
}

/// A PKCS#11 failure as a key error.
pub fn ck_err(context: impl Into<String>, e: CkError) -> KeyError {
    KeyError::device(context, e)
}

/// Finds the slot holding the token `sel`.
pub fn find_slot(ctx: &Pkcs11, sel: &TokenSelector) -> Result<(Slot, TokenInfo), KeyError> {
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| ck_err("listing PKCS#11 slots", e))?;
    let mut seen = Vec::new();
    for slot in slots {
        let Ok(info) = ctx.get_token_info(slot) else {
            continue;
        };
        if !info.token_initialized() {
            continue;
        }
        let label_ok = sel
            .label
            .as_deref()
            .is_none_or(|l| info.label().trim() == l);
        let serial_ok = sel
            .serial
            .as_deref()
            .is_none_or(|s| info.serial_number().trim() == s);
        if label_ok && serial_ok {
            return Ok((slot, info));
        }
        seen.push(format!("\"{}\"", info.label().trim()));
    }
    Err(KeyError::TokenAbsent(format!(
        "token {sel} is not present (tokens present: {})",
        if seen.is_empty() {
            "none".to_owned()
        } else {
            seen.join(", ")
        }
    )))
}

impl Token {
    /// Opens the token `sel` on `ctx`.
    pub fn open(
        ctx: Pkcs11,
        sel: TokenSelector,
        pin: PinSpec,
        max_sessions: usize,
        force_last_try: bool,
    ) -> Result<Self, KeyError> {
        let (slot, info) = find_slot(&ctx, &sel)?;
        Ok(Token {
            label: info.label().trim().to_owned(),
            serial: info.serial_number().trim().to_owned(),
            model: info.model().trim().to_owned(),
            ctx,
            selector: sel,
            max_sessions: max_sessions.max(1),
            pool: Mutex::new(Pool {
                idle: Vec::new(),
                open: 0,
                generation: 0,
                slot,
                logged_in: None,
                waiters: 0,
            }),
            available: Condvar::new(),
            pin: Mutex::new(pin),
            force_last_try,
            pin_failed: crate::keys::PinLatch::default(),
            logged_in_before: Default::default(),
        })
    }

    fn lock_pool(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Supplies a PIN source if the token has none yet (a later URI may carry one).
    pub fn offer_pin(&self, spec: &PinSpec) {
        let mut pin = self.pin.lock().unwrap_or_else(|p| p.into_inner());
        if pin.value.is_none() && pin.source.is_none() {
            *pin = spec.clone();
        }
    }

    /// The token's state without a login or a PIN try: the PIN latch of this process, then
    /// whether a slot holds the token (found by serial: re-plugged, it may sit in another
    /// slot) and its CKF_USER_PIN_LOCKED flag. Two cheap calls (C_GetSlotList,
    /// C_GetTokenInfo); takes no session, so it never waits on an operation.
    pub fn state(&self) -> crate::keys::KeyState {
        use crate::keys::KeyState;
        if self.pin_failed.is_set() {
            return KeyState::PinFailed;
        }
        let by_serial = TokenSelector {
            label: None,
            serial: Some(self.serial.clone()),
        };
        match find_slot(&self.ctx, &by_serial) {
            Err(_) => KeyState::TokenAbsent,
            Ok((_, info)) if info.user_pin_locked() => KeyState::PinLocked,
            Ok(_) => KeyState::Online,
        }
    }

    /// The token's current PIN state.
    pub fn pin_state(&self) -> Result<PinState, KeyError> {
        let slot = self.lock_pool().slot;
        let info = self
            .ctx
            .get_token_info(slot)
            .map_err(|e| ck_err(format!("reading token {}", self.label), e))?;
        Ok(PinState::of(&info))
    }

    fn checkout(&self) -> Result<PooledSession<'_>, KeyError> {
        let mut pool = self.lock_pool();
        loop {
            if let Some(s) = pool.idle.pop() {
                return Ok(PooledSession {
                    token: self,
                    session: Some(s),
                    generation: pool.generation,
                });
            }
            if pool.open < self.max_sessions {
                pool.open += 1;
                let (slot, generation) = (pool.slot, pool.generation);
                drop(pool);
                return match self.ctx.open_rw_session(slot) {
                    Ok(s) => Ok(PooledSession {
                        token: self,
                        session: Some(s),
                        generation,
                    }),
                    Err(e) => {
                        let mut pool = self.lock_pool();
                        pool.open -= 1;
                        let wake = pool.waiters > 0;
                        drop(pool);
                        if wake {
                            self.available.notify_one();
                        }
                        Err(self.absent_or(e, "opening a session"))
                    }
                };
            }
            pool.waiters += 1;
            pool = self.available.wait(pool).unwrap_or_else(|p| p.into_inner());
            pool.waiters -= 1;
        }
    }

    fn absent_or(&self, e: CkError, what: &str) -> KeyError {
        if is_absent(&e) {
            KeyError::TokenAbsent(format!("token {} is absent ({e})", self.selector))
        } else {
            ck_err(format!("{what} on token {}", self.label), e)
        }
    }

    /// Forgets every session and finds the token's slot again (it may have been re-plugged).
    fn recover(&self) -> Result<(), KeyError> {
        let (slot, _) = find_slot(
            &self.ctx,
            &TokenSelector {
                label: None,
                serial: Some(self.serial.clone()),
            },
        )
        .map_err(|_| {
            KeyError::TokenAbsent(format!(
                "token {} (serial {}) is absent",
                self.selector, self.serial
            ))
        })?;
        let mut pool = self.lock_pool();
        pool.generation += 1;
        pool.open = pool.open.saturating_sub(pool.idle.len());
        pool.idle.clear();
        pool.slot = slot;
        pool.logged_in = None;
        Ok(())
    }

    fn read_pin(&self) -> Result<SecretString, KeyError> {
        let spec = self.pin.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if self
            .logged_in_before
            .load(std::sync::atomic::Ordering::SeqCst)
            && spec.value.is_none()
            && matches!(spec.source, Some(crate::secret::SecretSource::Prompt))
        {
            return Err(KeyError::Pin(format!(
                "token {} was re-plugged; its PIN was typed at a prompt and this process does \
                 not ask again (give a pin-source, or restart to type it)",
                self.label
            )));
        }
        let pin = resolve_secret(
            spec.value,
            spec.source.as_ref(),
            &format!("PIN for token {}", self.label),
            "pin",
            true,
        )?;
        pin.ok_or_else(|| KeyError::Pin(format!("no PIN for token {}", self.label)))
    }

    fn login(&self, s: &PooledSession<'_>) -> Result<(), KeyError> {
        {
            let pool = self.lock_pool();
            if pool.logged_in == Some(s.generation) {
                return Ok(());
            }
        }
        let slot = self.lock_pool().slot;
        let info = self
            .ctx
            .get_token_info(slot)
            .map_err(|e| self.absent_or(e, "reading token info"))?;
        if info.login_required() {
            self.pin_failed.check("token")?;
            // The PIN guard: look before trying, never spend the last try unasked.
            let state = PinState::of(&info);
            if state.locked {
                return Err(KeyError::Pin(format!(
                    "the user PIN of token {} is locked (CKF_USER_PIN_LOCKED); unblock it with the SO PIN",
                    self.label
                )));
            }
            if state.final_try && !self.force_last_try {
                return Err(KeyError::Pin(format!(
                    "token {} reports one PIN try left (CKF_USER_PIN_FINAL_TRY): not trying; \
                     check the PIN and pass --force-last-pin-try to use the last try",
                    self.label
                )));
            }
            let pin = self.read_pin()?;
            // A PIN the token cannot take is not tried (a try would be spent on it).
            let len = pin.secret_str().len() as u64;
            let (min, max) = (info.min_pin_length() as u64, info.max_pin_length() as u64);
            if (min > 0 && len < min) || (max > 0 && len > max) {
                return Err(KeyError::Pin(format!(
                    "the PIN for token {} has {len} characters; the token takes {min} to {max}: \
                     not tried",
                    self.label
                )));
            }
            let auth = AuthPin::new(pin.secret_str().to_owned().into_boxed_str());
            let failed = |why: String| self.pin_failed.fail(why);
            match s.session().login(UserType::User, Some(&auth)) {
                Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                    let after = self
                        .ctx
                        .get_token_info(slot)
                        .map(|i| PinState::of(&i).to_string())
                        .unwrap_or_else(|_| "PIN state unknown".into());
                    return Err(failed(format!(
                        "wrong PIN for token {} (token now reports: {after})",
                        self.label
                    )));
                }
                Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                    return Err(failed(format!(
                        "the user PIN of token {} is locked",
                        self.label
                    )))
                }
                Err(CkError::Pkcs11(RvError::PinLenRange | RvError::PinInvalid, _)) => {
                    return Err(failed(format!(
                        "token {} refused the PIN's form (length or characters)",
                        self.label
                    )))
                }
                Err(e) => return Err(self.absent_or(e, "login")),
            }
        }
        self.lock_pool().logged_in = Some(s.generation);
        self.logged_in_before
            .store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Runs `op` on a logged-in session. After the token went away or its sessions died,
    /// recovers (new sessions, slot found again by serial, login again) and tries once more.
    pub fn run<R>(
        &self,
        what: &str,
        op: impl Fn(&PooledSession<'_>) -> Result<R, CkError>,
    ) -> Result<R, KeyError> {
        let mut last = None;
        for attempt in 0..2 {
            let s = self.checkout()?;
            self.login(&s)?;
            match op(&s) {
                Ok(r) => return Ok(r),
                Err(e) if attempt == 0 && is_absent(&e) => {
                    drop(s);
                    self.recover()?;
                    last = Some(e);
                }
                Err(CkError::Pkcs11(RvError::UserNotLoggedIn, _)) if attempt == 0 => {
                    self.lock_pool().logged_in = None;
                }
                Err(e) => return Err(self.absent_or(e, what)),
            }
        }
        Err(KeyError::TokenAbsent(format!(
            "token {} is absent{}",
            self.selector,
            last.map(|e| format!(" ({e})")).unwrap_or_default()
        )))
    }

    /// Runs `op` on a session that is not logged in (public objects only): looking costs no
    /// PIN try.
    pub fn run_public<R>(
        &self,
        what: &str,
        op: impl Fn(&PooledSession<'_>) -> Result<R, CkError>,
    ) -> Result<R, KeyError> {
        let s = self.checkout()?;
        op(&s).map_err(|e| self.absent_or(e, what))
    }

    /// A context-specific login (CKA_ALWAYS_AUTHENTICATE keys), on the session of a sign
    /// operation already initialised.
    pub fn context_login(&self, session: &Session) -> Result<(), KeyError> {
        self.pin_failed.check("token")?;
        let pin = self.read_pin()?;
        let auth = AuthPin::new(pin.secret_str().to_owned().into_boxed_str());
        session
            .login(UserType::ContextSpecific, Some(&auth))
            .map_err(|e| match e {
                CkError::Pkcs11(RvError::PinIncorrect, _) => self
                    .pin_failed
                    .fail(format!("wrong PIN for token {}", self.label)),
                e => ck_err("context-specific login", e),
            })
    }
}

//! Dev-only: a virtual PIV card for certman's card tests.
//!
//! Runs the `piv-authenticator` app on trussed's virtual platform (RAM store, fixed RNG seed: a
//! restart is a factory reset) and plugs it into vpcd (pcscd's virtual reader driver) over TCP with
//! the `vpicc` crate, like upstream's unpublished `vpicc` example. On top of that example it adapts
//! what real PIV clients (libykpiv / yubico-piv-tool / ykcs11, OpenSC, the `yubikey` crate) need:
//!
//! 1. the 5-byte PIV SELECT (`A0 00 00 03 08`) is expanded into the full PIV AID;
//! 2. a response is sent with its data (up to 256 bytes, the rest through `61xx` / GET RESPONSE)
//!    when Le is absent, instead of a bare `61xx`;
//! 3. GET VERSION (INS `FD`) reports 5.2.7 (the card says 6.6.6, which the `yubikey` crate
//!    refuses); GET METADATA (INS `F7`), which the card does not implement (it answers `90 00`
//!    with no data), answers `6D 00` as a pre-5.3 YubiKey does;
//! 4. TCP_QUICKACK is set on the vpcd socket before every read (else ~44 ms per APDU, from delayed
//!    ACKs against vpcd's two-part writes).
//!
//! It reconnects when vpcd goes away. Hot-plug for tests: SIGUSR1 pulls the card (its vpcd
//! connection is closed, so pcscd sees the reader empty) and SIGUSR2 puts it back (it connects
//! again); the card's RAM state (keys, certificates, PIN and its retry counter) is kept, as a
//! real card keeps its flash. Environment: `VIRTUAL_PIV_DEBUG=1` logs every APDU to
//! stderr; `VIRTUAL_PIV_VPCD=host:port` overrides vpcd's address (default 127.0.0.1:35963).

use std::io::{self, ErrorKind};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use iso7816::command::{CommandView, FromSliceError};
use iso7816::Command;
use piv_authenticator::{Authenticator, Options};
use trussed::backend::{Backend as _, BackendId};
use trussed::pipe::{ServiceEndpoint, TrussedChannel};
use trussed::serde_extensions::{ExtensionDispatch, ExtensionId, ExtensionImpl};
use trussed::service::{Service, ServiceResources};
use trussed::types::{Context, CoreContext};
use trussed::virt::{self, StoreConfig};
use trussed::{ClientImplementation, Platform};
use trussed_auth::AuthExtension;
use trussed_auth_backend::{AuthBackend, AuthContext, FilesystemLayout};
use trussed_chunked::ChunkedExtension;
use trussed_core::api::{reply, request, Reply, Request};
use trussed_core::types::Location;
use trussed_core::Error;
use trussed_hpke::HpkeExtension;
use trussed_rsa_alloc::SoftwareRsa;
use trussed_staging::{StagingBackend, StagingContext};
use trussed_wrap_key_to_file::WrapKeyToFileExtension;

/// Largest command (after chaining) and response: PIV objects (certificates) stay well below.
const BUF_SIZE: usize = 8192;

/// The truncated PIV AID that libykpiv and the `yubikey` crate select.
const PIV_AID_SHORT: [u8; 5] = [0xA0, 0x00, 0x00, 0x03, 0x08];
/// The full PIV AID (SP 800-73-4): the card accepts it truncated to 9 bytes at the shortest.
const PIV_AID_FULL: [u8; 11] = [
    0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00,
];
/// Reported to YubiKey GET VERSION: 5.x opens with the `yubikey` crate; below 5.3 (GET METADATA)
/// and 5.7 (AES-192 default management key) so clients take the paths this card implements.
const YUBIKEY_VERSION: [u8; 3] = [5, 2, 7];

const INS_GET_RESPONSE: u8 = 0xC0;
const INS_SELECT: u8 = 0xA4;
const INS_YK_GET_VERSION: u8 = 0xFD;
const INS_YK_GET_METADATA: u8 = 0xF7;

const SW_OK: u16 = 0x9000;
const SW_WRONG_LENGTH: u16 = 0x6700;
const SW_CONDITIONS_NOT_SATISFIED: u16 = 0x6985;
const SW_INS_NOT_SUPPORTED: u16 = 0x6D00;
const SW_CLA_NOT_SUPPORTED: u16 = 0x6E00;

// ---------------------------------------------------------------------------------------------
// Trussed dispatch: core + RSA (trussed-rsa-alloc) + PIN auth (trussed-auth-backend) + the staging
// extensions the PIV app uses (chunked, wrap-key-to-file, hpke).

#[derive(Debug)]
enum BackendIds {
    Rsa,
    Auth,
    Staging,
}

#[derive(Debug, Clone, Copy)]
enum ExtensionIds {
    Auth,
    Chunked,
    WrapKeyToFile,
    Hpke,
}

impl From<ExtensionIds> for u8 {
    fn from(id: ExtensionIds) -> u8 {
        match id {
            ExtensionIds::Auth => 0,
            ExtensionIds::Chunked => 1,
            ExtensionIds::WrapKeyToFile => 2,
            ExtensionIds::Hpke => 3,
        }
    }
}

impl TryFrom<u8> for ExtensionIds {
    type Error = Error;
    fn try_from(id: u8) -> Result<Self, Error> {
        match id {
            0 => Ok(Self::Auth),
            1 => Ok(Self::Chunked),
            2 => Ok(Self::WrapKeyToFile),
            3 => Ok(Self::Hpke),
            _ => Err(Error::FunctionNotSupported),
        }
    }
}

struct Dispatcher {
    auth: AuthBackend,
    staging: StagingBackend,
}

#[derive(Default)]
struct DispatchContext {
    auth: AuthContext,
    staging: StagingContext,
}

impl ExtensionId<AuthExtension> for Dispatcher {
    type Id = ExtensionIds;
    const ID: ExtensionIds = ExtensionIds::Auth;
}
impl ExtensionId<ChunkedExtension> for Dispatcher {
    type Id = ExtensionIds;
    const ID: ExtensionIds = ExtensionIds::Chunked;
}
impl ExtensionId<WrapKeyToFileExtension> for Dispatcher {
    type Id = ExtensionIds;
    const ID: ExtensionIds = ExtensionIds::WrapKeyToFile;
}
impl ExtensionId<HpkeExtension> for Dispatcher {
    type Id = ExtensionIds;
    const ID: ExtensionIds = ExtensionIds::Hpke;
}

impl ExtensionDispatch for Dispatcher {
    type BackendId = BackendIds;
    type Context = DispatchContext;
    type ExtensionId = ExtensionIds;

    fn core_request<P: Platform>(
        &mut self,
        backend: &BackendIds,
        ctx: &mut Context<DispatchContext>,
        request: &Request,
        resources: &mut ServiceResources<P>,
    ) -> Result<Reply, Error> {
        match backend {
            BackendIds::Rsa => SoftwareRsa.request(&mut ctx.core, &mut (), request, resources),
            BackendIds::Auth | BackendIds::Staging => Err(Error::RequestNotAvailable),
        }
    }

    fn extension_request<P: Platform>(
        &mut self,
        backend: &BackendIds,
        extension: &ExtensionIds,
        ctx: &mut Context<DispatchContext>,
        request: &request::SerdeExtension,
        resources: &mut ServiceResources<P>,
    ) -> Result<reply::SerdeExtension, Error> {
        let core: &mut CoreContext = &mut ctx.core;
        let staging = &mut ctx.backends.staging;
        match (backend, extension) {
            (BackendIds::Auth, ExtensionIds::Auth) => {
                ExtensionImpl::<AuthExtension>::extension_request_serialized(
                    &mut self.auth,
                    core,
                    &mut ctx.backends.auth,
                    request,
                    resources,
                )
            }
            (BackendIds::Staging, ExtensionIds::Chunked) => {
                ExtensionImpl::<ChunkedExtension>::extension_request_serialized(
                    &mut self.staging,
                    core,
                    staging,
                    request,
                    resources,
                )
            }
            (BackendIds::Staging, ExtensionIds::WrapKeyToFile) => {
                ExtensionImpl::<WrapKeyToFileExtension>::extension_request_serialized(
                    &mut self.staging,
                    core,
                    staging,
                    request,
                    resources,
                )
            }
            (BackendIds::Staging, ExtensionIds::Hpke) => {
                ExtensionImpl::<HpkeExtension>::extension_request_serialized(
                    &mut self.staging,
                    core,
                    staging,
                    request,
                    resources,
                )
            }
            _ => Err(Error::RequestNotAvailable),
        }
    }
}

const BACKENDS: &[BackendId<BackendIds>] = &[
    BackendId::Custom(BackendIds::Rsa),
    BackendId::Custom(BackendIds::Auth),
    BackendId::Custom(BackendIds::Staging),
    BackendId::Core,
];

/// Runs trussed's service inline, in the caller's thread, on each syscall. (`trussed::virt`'s
/// runner instead polls from a thread every 1 ms: ~1 ms per syscall, several per APDU, and CPU
/// use while idle.)
struct InlineSyscall<'a> {
    service: Service<virt::Platform<'a>, Dispatcher>,
    endpoints: Vec<ServiceEndpoint<'a, BackendIds, DispatchContext>>,
}

impl trussed::platform::Syscall for InlineSyscall<'_> {
    fn syscall(&mut self) {
        self.service.process(&mut self.endpoints);
    }
}

type Piv<'a> = Authenticator<ClientImplementation<'a, InlineSyscall<'a>, Dispatcher>>;

// ---------------------------------------------------------------------------------------------
// APDU layer: command chaining, response chaining (61xx / GET RESPONSE) and the adaptations.

struct Card<'a> {
    piv: Piv<'a>,
    /// A chained command being collected (CLA bit 0x10 set on all but the last part).
    chain: Option<Box<Command<BUF_SIZE>>>,
    /// Response data not yet fetched with GET RESPONSE.
    pending: Vec<u8>,
    debug: bool,
}

fn with_sw(mut data: Vec<u8>, sw: u16) -> Vec<u8> {
    data.extend_from_slice(&sw.to_be_bytes());
    data
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// `00 A4 04 00 05 A0 00 00 03 08 [Le]` → the same SELECT with the full PIV AID.
fn expand_piv_select(apdu: &[u8]) -> Option<Vec<u8>> {
    let short_select = apdu.len() <= 11
        && apdu.len() >= 10
        && apdu[..5] == [0x00, INS_SELECT, 0x04, 0x00, 0x05]
        && apdu[5..10] == PIV_AID_SHORT;
    short_select.then(|| {
        let mut full = vec![0x00, INS_SELECT, 0x04, 0x00, PIV_AID_FULL.len() as u8];
        full.extend_from_slice(&PIV_AID_FULL);
        full.extend_from_slice(&apdu[10..]);
        full
    })
}

impl<'a> Card<'a> {
    fn new(piv: Piv<'a>, debug: bool) -> Self {
        Self {
            piv,
            chain: None,
            pending: Vec::new(),
            debug,
        }
    }

    fn handle(&mut self, apdu: &[u8]) -> Vec<u8> {
        let expanded = expand_piv_select(apdu);
        let apdu = expanded.as_deref().unwrap_or(apdu);
        let view = match CommandView::try_from(apdu) {
            Ok(view) => view,
            Err(err) => {
                self.chain = None;
                self.pending.clear();
                let sw = match err {
                    FromSliceError::InvalidClass => SW_CLA_NOT_SUPPORTED,
                    _ => SW_WRONG_LENGTH,
                };
                return with_sw(Vec::new(), sw);
            }
        };
        let cla = view.class().into_inner();
        let ins: u8 = view.instruction().into();
        // How much data this APDU lets us return at once: Le if given (short Le 00 = 256,
        // extended 0000 = 65536), else a short APDU's 256 (adaptation 2).
        let max = match (view.expected(), view.extended) {
            (0, false) => 256,
            (0, true) => 65536,
            (le, _) => le,
        };

        if ins == INS_GET_RESPONSE && cla & 0x80 == 0 {
            if self.pending.is_empty() {
                return with_sw(Vec::new(), SW_CONDITIONS_NOT_SATISFIED);
            }
            let data = std::mem::take(&mut self.pending);
            return self.respond_chunked(data, max);
        }
        self.pending.clear();

        if view.class().chain().not_the_last() {
            let appended = match self.chain.as_mut() {
                Some(chain) if u8::from(chain.instruction()) == ins => {
                    chain.extend_from_command_view(view).is_ok()
                }
                _ => match view.to_owned::<BUF_SIZE>() {
                    Ok(first) => {
                        self.chain = Some(Box::new(first));
                        true
                    }
                    Err(_) => false,
                },
            };
            if !appended {
                self.chain = None;
                return with_sw(Vec::new(), SW_WRONG_LENGTH);
            }
            return with_sw(Vec::new(), SW_OK);
        }

        let (data, sw) = match self.chain.take() {
            Some(mut chain) if u8::from(chain.instruction()) == ins => {
                if chain.extend_from_command_view(view).is_err() {
                    return with_sw(Vec::new(), SW_WRONG_LENGTH);
                }
                self.execute_one(cla, ins, chain.as_view())
            }
            _ => self.execute_one(cla, ins, view),
        };
        if sw != SW_OK {
            return with_sw(Vec::new(), sw);
        }
        self.respond_chunked(data, max)
    }

    fn execute_one(&mut self, cla: u8, ins: u8, command: CommandView<'_>) -> (Vec<u8>, u16) {
        if cla == 0x00 && command.p1 == 0 && command.p2 == 0 && ins == INS_YK_GET_VERSION {
            return (YUBIKEY_VERSION.to_vec(), SW_OK);
        }
        if cla == 0x00 && ins == INS_YK_GET_METADATA {
            return (Vec::new(), SW_INS_NOT_SUPPORTED);
        }
        let mut reply = Box::new(heapless::Vec::<u8, BUF_SIZE>::new());
        match self.piv.respond(command, reply.as_mut_view()) {
            Ok(()) => (reply.to_vec(), SW_OK),
            Err(status) => (Vec::new(), status.into()),
        }
    }

    /// Sends up to `max` bytes now; the rest waits for GET RESPONSE, announced with `61xx`.
    fn respond_chunked(&mut self, mut data: Vec<u8>, max: usize) -> Vec<u8> {
        if data.len() <= max {
            return with_sw(data, SW_OK);
        }
        self.pending = data.split_off(max);
        let left = u8::try_from(self.pending.len()).unwrap_or(0); // 00: 256 or more
        with_sw(data, 0x6100 | u16::from(left))
    }
}

impl vpicc::VSmartCard for Card<'_> {
    fn power_on(&mut self) {
        self.chain = None;
        self.pending.clear();
    }

    fn power_off(&mut self) {
        self.power_on();
        self.piv.deselect();
    }

    fn reset(&mut self) {
        self.power_off();
    }

    fn execute(&mut self, apdu: &[u8]) -> Vec<u8> {
        let started = Instant::now();
        let response = self.handle(apdu);
        if self.debug {
            eprintln!(
                "virtual-piv: > {}\nvirtual-piv: < {} ({} ms)",
                hex(apdu),
                hex(&response),
                started.elapsed().as_millis()
            );
        }
        response
    }
}

// ---------------------------------------------------------------------------------------------
// vpcd connection.

/// Makes the kernel ACK vpcd's segments at once. Linux clears quick-ack mode by itself, so this
/// is set again before every read.
fn set_quickack(stream: &TcpStream) {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket fd and a pointer/length pair to a live c_int.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    debug_assert_eq!(rc, 0, "setsockopt(TCP_QUICKACK)");
}

/// Whether the card is in the reader (SIGUSR1 pulls it, SIGUSR2 puts it back).
static INSERTED: AtomicBool = AtomicBool::new(true);

extern "C" fn on_signal(sig: libc::c_int) {
    // async-signal-safe: one atomic store
    INSERTED.store(sig == libc::SIGUSR2, Ordering::SeqCst);
}

/// Installs the hot-plug signals and a watcher that closes the current vpcd connection once the
/// card is pulled (the card's loop blocks in a read; closing the socket ends it).
fn hot_plug(current: Arc<Mutex<Option<TcpStream>>>) {
    for sig in [libc::SIGUSR1, libc::SIGUSR2] {
        // SAFETY: `on_signal` only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, on_signal as *const () as usize as libc::sighandler_t);
        }
    }
    std::thread::spawn(move || loop {
        if !INSERTED.load(Ordering::SeqCst) {
            if let Some(s) = current.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = s.shutdown(Shutdown::Both);
                eprintln!("virtual-piv: card pulled (SIGUSR1)");
            }
        }
        sleep(Duration::from_millis(20));
    });
}

/// Serves one vpcd connection until it ends. Errors only when it could not connect.
fn serve(addr: &str, card: &mut Card<'_>, current: &Mutex<Option<TcpStream>>) -> io::Result<()> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let control = stream.try_clone()?;
    *current.lock().unwrap_or_else(|p| p.into_inner()) = Some(stream.try_clone()?);
    let mut connection = vpicc::Connection::from(stream);
    eprintln!("virtual-piv: connected to vpcd at {addr}");
    loop {
        set_quickack(&control);
        if let Err(err) = connection.poll(card) {
            if err.kind() != ErrorKind::UnexpectedEof {
                eprintln!("virtual-piv: vpcd connection: {err}");
            }
            eprintln!("virtual-piv: vpcd closed the connection; reconnecting");
            return Ok(());
        }
    }
}

fn main() {
    let debug = std::env::var_os("VIRTUAL_PIV_DEBUG").is_some_and(|v| !v.is_empty() && v != "0");
    let addr = std::env::var("VIRTUAL_PIV_VPCD").unwrap_or_else(|_| "127.0.0.1:35963".into());

    let dispatcher = Dispatcher {
        auth: AuthBackend::new(Location::Internal, FilesystemLayout::V0),
        staging: StagingBackend::new(),
    };
    let channel = TrussedChannel::new();
    let (requester, responder) = channel.split().expect("a new trussed channel splits");
    virt::with_platform(StoreConfig::ram(), |platform| {
        let context = CoreContext::new("piv".try_into().expect("a valid client id"));
        let syscall = InlineSyscall {
            service: Service::with_dispatch(platform, dispatcher),
            endpoints: vec![ServiceEndpoint::new(responder, context, BACKENDS)],
        };
        let client = ClientImplementation::new(requester, syscall, None);
        let mut card = Card::new(Authenticator::new(client, Options::default()), debug);
        let mut waiting = false;
        let current = Arc::new(Mutex::new(None));
        hot_plug(current.clone());
        loop {
            if !INSERTED.load(Ordering::SeqCst) {
                sleep(Duration::from_millis(20));
                continue;
            }
            match serve(&addr, &mut card, &current) {
                Ok(()) => waiting = false,
                Err(err) if !waiting => {
                    eprintln!("virtual-piv: cannot reach vpcd at {addr} ({err}); retrying");
                    waiting = true;
                }
                Err(_) => {}
            }
            sleep(Duration::from_millis(100));
        }
    })
}

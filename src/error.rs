//! Error types, one `#[non_exhaustive]` enum per layer, and the mapping from errors to the
//! exit codes of the command-line contract (design/CLI.md).
//!
//! Exit codes are chosen by variant, never by matching message text.

use std::path::PathBuf;

/// Process exit codes of the CLI contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// 1: the operation failed.
    Failed = 1,
    /// 2: usage error (unknown property, bad value).
    Usage = 2,
    /// 3: a named object does not exist.
    NotFound = 3,
    /// 4: refused by a rule (e.g. removing an issued certificate).
    Refused = 4,
    /// 5: token or PIN problem.
    Token = 5,
}

/// Errors of the key-provider layer (`keys/`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A key URI that does not parse.
    #[error("invalid key URI: {0}")]
    InvalidUri(String),
    /// No provider is compiled in or configured for a URI scheme.
    #[error("{0}")]
    NoProvider(String),
    /// The key does not exist where the URI points.
    #[error("key not found: {0}")]
    NotFound(String),
    /// The token (or card) is not there.
    #[error("token absent: {0}")]
    TokenAbsent(String),
    /// The key type or size is not supported by this backend.
    #[error("unsupported key: {0}")]
    Unsupported(String),
    /// The backend cannot do what was asked (e.g. export a key that lives on a token).
    #[error("{0}")]
    NotCapable(String),
    /// A sealed software key could not be opened, or a key could not be sealed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// A PIN or token-state problem (wrong PIN, locked, final try).
    #[error("{0}")]
    Pin(String),
    /// A signature did not verify, or a public key did not match.
    #[error("verification failed: {0}")]
    Verification(String),
    /// A failure inside a backend or device.
    #[error("{context}: {source}")]
    Device {
        /// what was being done
        context: String,
        /// the backend's own error
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Reading a secret (`*-source`) failed.
    #[error(transparent)]
    Secret(#[from] SecretError),
}

impl KeyError {
    /// A backend failure with context.
    pub fn device(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        KeyError::Device {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// Errors reading secrets from `X=` / `X-source=` options.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The `*-source` value is not `file:`, `env:`, `fd:` or `prompt`.
    #[error("invalid secret source '{0}': use file:PATH, env:VAR, fd:N or prompt")]
    InvalidSource(String),
    /// The source could not be read.
    #[error("cannot read secret from {source_desc}: {reason}")]
    Unreadable {
        /// where it was read from (never the secret itself)
        source_desc: String,
        /// why
        reason: String,
    },
    /// The source was read but held nothing.
    #[error("secret from {0} is empty")]
    Empty(String),
    /// A prompt was needed but stdin is not a terminal.
    #[error("{0} is needed but no source was given and stdin is not a terminal (use {1}-source=file:PATH|env:VAR|fd:N)")]
    NoTerminal(String, String),
    /// A new secret typed twice at a prompt was not the same both times.
    #[error("the two {0}s typed differ; nothing was done")]
    Mismatch(String),
    /// `certman agent` runs a command whose secret the client must read itself.
    #[error("a secret is read by the command's own process, not by the agent")]
    LeftToClient,
}

/// Errors of sealing secrets at rest (`seal`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The sealing key's source could not be read (the machine id, …).
    #[error("cannot read {what}: {reason}")]
    Source {
        /// the source, and how to name another
        what: String,
        /// why
        reason: String,
    },
    /// A sealed secret did not open: another machine's (or store's) sealing key, or altered.
    #[error(
        "cannot unseal {what}: the store's secrets were sealed on another machine (or with another seal-key-source) or were altered"
    )]
    Unseal {
        /// what it is (never the secret)
        what: String,
    },
    /// The cipher or the random generator failed.
    #[error("sealing: {0}")]
    Crypto(&'static str),
    /// The sealing key on a token could not be used (the token absent, no such secret key,
    /// another kind of key, a PIN problem).
    #[error("the sealing key {uri}: {source}")]
    Token {
        /// the source's URI (it holds no PIN)
        uri: String,
        /// what the key provider said
        #[source]
        source: Box<KeyError>,
    },
}

/// Errors of the certificate-format layer (`x509/`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum X509Error {
    /// ASN.1 encoding or decoding failed.
    #[error("ASN.1: {0}")]
    Asn1(#[from] der::Error),
    /// Input is not the structure expected (not PEM, another PEM label, not a v2 CRL, too
    /// large, an unknown critical extension, …).
    #[error("{0}")]
    Malformed(String),
    /// A signature over input does not verify (a request's self-signature, a CRL's).
    #[error("{0}")]
    BadSignature(String),
    /// A key or signature algorithm certman does not support.
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// A value to encode (name, SAN, reason, validity) is not valid.
    #[error("{0}")]
    Value(String),
    /// The builder refused the certificate.
    #[error("certificate builder: {0}")]
    Builder(String),
    /// Signing through the key provider failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Encrypting a private key for export failed.
    #[error("private key encryption: {0}")]
    Pkcs8(String),
    /// The random generator or a cipher failed.
    #[error("{0} failed")]
    Crypto(&'static str),
}

impl X509Error {
    /// What this says about a request from outside that could not be read.
    pub fn request_fault(&self) -> RequestFault {
        match self {
            X509Error::BadSignature(_) => RequestFault::BadSignature,
            X509Error::UnsupportedAlgorithm(_) => RequestFault::BadAlgorithm,
            _ => RequestFault::BadRequest,
        }
    }
}

/// Errors of the persistence layer (`store/`). Backend errors are carried as their message
/// and source; the kinds the store contract names (a taken name, a duplicate, a conflict with
/// another writer, a busy store) are variants.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database reported an error.
    #[error("store database: {source}")]
    Database {
        /// the backend's error
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A template or certificate already has this name (one namespace for both).
    #[error("name \"{0}\" is already in use")]
    NameTaken(String),
    /// A uniqueness rule other than names was broken (a serial twice by one CA, a certificate
    /// revoked twice, …).
    #[error("{0} already exists")]
    Duplicate(&'static str),
    /// Another writer changed what this transaction read or meant to change: the operation
    /// may be retried (a bounded number of times).
    #[error("the store changed under this transaction (another writer)")]
    Conflict,
    /// The store directory or file could not be created or opened.
    #[error("store {path}: {source}")]
    Io {
        /// the path involved
        path: PathBuf,
        /// the I/O error
        #[source]
        source: std::io::Error,
    },
    /// The store was written by a newer certman.
    #[error("store schema version {found} is newer than this certman understands ({supported})")]
    SchemaTooNew {
        /// version in the file
        found: i64,
        /// newest known
        supported: i64,
    },
    /// A row holds something that does not decode.
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    /// The store location is not one this build can open.
    #[error("store location: {0}")]
    Location(String),
    /// There is no store where one was named, and the command does not make one (`--create`,
    /// `add`, `import`, `add-scep` do).
    #[error("no store at {}", location.display())]
    NoStore {
        /// the store directory named
        location: PathBuf,
    },
    /// Another process holds the store for too long.
    #[error("store is busy (locked by another certman process)")]
    Busy,
}

/// What kind of object a name was looked up as (the words of "no such …").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObjectKind {
    /// a template
    Template,
    /// a certificate
    Certificate,
    /// a certificate or a template (`print`, `set`, `remove`)
    Entry,
    /// a template, or a certificate to copy from (`add copy-from=`)
    CopySource,
    /// the issuing CA's certificate
    CaCertificate,
    /// a CA by row (changed meanwhile)
    Ca,
    /// the CRL of a CA
    Crl,
    /// a SCEP server (`scep-server`)
    ScepServer,
    /// a request in a SCEP server's queue
    ScepRequest,
    /// a SCEP client (`add-scep`, `scep-server ra`)
    ScepClient,
    /// a token the store holds keys of, by serial (`token lost`)
    Token,
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ObjectKind::Template => "template",
            ObjectKind::Certificate => "certificate",
            ObjectKind::Entry => "certificate or template",
            ObjectKind::CopySource => "template or certificate",
            ObjectKind::CaCertificate => "CA certificate",
            ObjectKind::Ca => "CA",
            ObjectKind::Crl => "CRL of",
            ObjectKind::ScepServer => "SCEP server",
            ObjectKind::ScepRequest => "SCEP request",
            ObjectKind::ScepClient => "SCEP client",
            ObjectKind::Token => "token with keys in the store, serial",
        })
    }
}

/// Why a rule of the certificate manager refuses an operation (exit 4). Callers branch on
/// these, never on the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// a template or certificate already has the name
    NameInUse,
    /// no free name could be made (import)
    NoFreeName,
    /// a certificate's property other than name/trusted cannot change
    ReadOnlyProperty,
    /// an issued certificate goes only with its CA (revoke it instead)
    IssuedCertificate,
    /// the certificate is not a CA
    NotACa,
    /// the CA is revoked
    CaRevoked,
    /// the CA has expired
    CaExpired,
    /// the CA is marked compromised (its key was on a token reported lost: `token lost`)
    CaCompromised,
    /// the certificate (or CA) has no private key here
    NoPrivateKey,
    /// the key is on a token and cannot leave it
    KeyNotExportable,
    /// the key is not on a token (card-reinstall)
    NotOnToken,
    /// a request asks for a CA certificate and allow-ca was not given
    CaRequestNotAllowed,
    /// the certificate was not issued by a CA here
    NotRevocable,
    /// the certificate is revoked already
    AlreadyRevoked,
    /// a CRL path belongs to another CA
    CrlPathTaken,
    /// a downloaded CRL was not accepted (signature, issuer, age)
    CrlNotAccepted,
    /// the CA's key failed on its PIN earlier in this process and is not tried again
    PinFailedBefore,
    /// what the operation read changed meanwhile (another process); it may be tried again
    ChangedMeanwhile,
    /// a SCEP server's CA cannot decrypt (not RSA) and the server has no RA
    CannotDecrypt,
    /// a certificate cannot be a SCEP server's RA (a CA, not RSA, not issued by its CA…)
    UnsuitableRa,
    /// the certificate is used by a SCEP server (remove or change the server first)
    UsedByScepServer,
    /// the SCEP request is not pending (granted, rejected or expired already)
    NotPending,
    /// the CA a SCEP server sent is not the one the operator named (`ca-fingerprint`), or
    /// not the one recorded
    CaFingerprintMismatch,
    /// what a SCEP server sent cannot be used (a CA that is not a CA, an RA that is one,
    /// a certificate not for the request's key…)
    UnusableScepAnswer,
    /// SCEP needs an RSA key (the server encrypts its answer to it)
    NotRsa,
}

/// What is wrong with a request from outside (a PKCS#10 file now; SCEP messages next): the
/// kinds SCEP's failInfo names (RFC 8894 §3.2.1.4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestFault {
    /// unreadable or not permitted (failInfo badRequest)
    BadRequest,
    /// an algorithm certman does not support (badAlg)
    BadAlgorithm,
    /// a signature that does not verify (badMessageCheck)
    BadSignature,
    /// a time too far from now (badTime)
    BadTime,
    /// a certificate that cannot be identified (badCertId)
    UnknownCertificate,
}

/// Errors of the certificate manager (`manager/`): the RouterOS rules.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// A property value is not valid.
    #[error("{0}")]
    InvalidValue(String),
    /// No template or certificate with that name.
    #[error("no such {kind} \"{name}\"")]
    NotFound {
        /// what was looked for
        kind: ObjectKind,
        /// the name asked for
        name: String,
    },
    /// A rule of the certificate manager refuses the operation.
    #[error("{message}")]
    Refused {
        /// which rule
        reason: Refusal,
        /// what was refused and why
        message: String,
        /// what to do instead
        hint: Option<String>,
    },
    /// A request from outside cannot be honoured as it is.
    #[error("{message}")]
    BadRequest {
        /// what is wrong with it
        fault: RequestFault,
        /// one line naming the request and why
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// the file
        path: PathBuf,
        /// the I/O error
        #[source]
        source: std::io::Error,
    },
    /// The operation's transaction committed, but a file it writes afterwards could not be put
    /// in place (the store has what the operation made).
    #[error("{stored}, but {path} could not be written: {source}")]
    NotWritten {
        /// what the store holds now
        stored: String,
        /// the file
        path: PathBuf,
        /// why
        #[source]
        source: std::io::Error,
        /// how to get the file
        hint: String,
    },
    /// `remove` took the certificate out of the store, but its key could not be destroyed on
    /// its token (`--delete-key`).
    #[error(
        "removed \"{certificate}\" from the store, but its token key could not be deleted: {uri}: {source}{}",
        if *more > 0 { format!(" (nor {more} more token key(s))") } else { String::new() }
    )]
    TokenKeyNotDeleted {
        /// the certificate removed
        certificate: String,
        /// the key's URI (no secrets)
        uri: String,
        /// why (a PIN, an absent token, …)
        #[source]
        source: KeyError,
        /// how many other token keys of the same `remove` could not be deleted either
        more: usize,
    },
    /// Key-provider failure.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Format failure.
    #[error(transparent)]
    X509(#[from] X509Error),
    /// Store failure.
    #[error(transparent)]
    Store(StoreError),
    /// Secret could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// A secret at rest could not be sealed or opened.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The operation ran and its outcome is a failure (a certificate that does not verify,
    /// CRL downloads that failed); the details were printed.
    #[error("{0}")]
    Failed(String),
}

/// A store error as the manager reports it: a name the store found taken is the manager's
/// "name in use" refusal, whichever check saw it first.
impl From<StoreError> for ManagerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NameTaken(name) => ManagerError::refused(
                Refusal::NameInUse,
                format!("name \"{name}\" is already in use"),
                Some("pick another name, or `remove` the existing item first"),
            ),
            e => ManagerError::Store(e),
        }
    }
}

impl ManagerError {
    /// A refusal by rule `reason`, with a hint.
    pub fn refused(reason: Refusal, message: impl Into<String>, hint: Option<&str>) -> Self {
        ManagerError::Refused {
            reason,
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }

    /// No `kind` named `name`.
    pub fn not_found(kind: ObjectKind, name: impl Into<String>) -> Self {
        ManagerError::NotFound {
            kind,
            name: name.into(),
        }
    }

    /// The refusal reason, if this is a refusal.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            ManagerError::Refused { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    /// The hint line to print under the error, if any.
    pub fn hint(&self) -> Option<&str> {
        match self {
            ManagerError::Refused { hint, .. } => hint.as_deref(),
            ManagerError::NotWritten { hint, .. } => Some(hint),
            ManagerError::Store(StoreError::NoStore { .. }) => Some(
                "`certman add …` or `import` makes a new store; any command does with --create; check --store / $CERTMAN_STORE",
            ),
            ManagerError::TokenKeyNotDeleted { .. } => Some(
                "the key stays on its token (`certman token print` lists it); delete it with the token's own tools",
            ),
            _ => None,
        }
    }

    /// The key-provider error underneath, if the failure is a key's.
    pub fn key_error(&self) -> Option<&KeyError> {
        match self {
            ManagerError::Key(k)
            | ManagerError::X509(X509Error::Key(k))
            | ManagerError::TokenKeyNotDeleted { source: k, .. } => Some(k),
            ManagerError::Seal(SealError::Token { source, .. }) => Some(source),
            _ => None,
        }
    }

    /// The CLI exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        if let Some(k) = self.key_error() {
            return key_exit_code(k);
        }
        match self {
            ManagerError::InvalidValue(_)
            | ManagerError::BadRequest { .. }
            | ManagerError::Store(StoreError::Location(_)) => ExitCode::Usage,
            ManagerError::NotFound { .. } | ManagerError::Store(StoreError::NoStore { .. }) => {
                ExitCode::NotFound
            }
            ManagerError::Refused { .. } => ExitCode::Refused,
            ManagerError::Secret(_) => ExitCode::Usage,
            _ => ExitCode::Failed,
        }
    }
}

fn key_exit_code(err: &KeyError) -> ExitCode {
    match err {
        KeyError::Pin(_) | KeyError::NoProvider(_) | KeyError::TokenAbsent(_) => ExitCode::Token,
        KeyError::NotFound(_) => ExitCode::Token,
        KeyError::InvalidUri(_) | KeyError::Unsupported(_) => ExitCode::Usage,
        // A PIN or management key that cannot be had is a token problem.
        KeyError::Secret(_) => ExitCode::Token,
        KeyError::NotCapable(_) => ExitCode::Refused,
        _ => ExitCode::Failed,
    }
}

/// The message of a key error without its category prefix, for errors about a property value.
pub fn key_detail(err: &KeyError) -> String {
    match err {
        KeyError::Unsupported(m) | KeyError::NotCapable(m) => m.clone(),
        other => other.to_string(),
    }
}

/// Result alias of the manager layer.
pub type Result<T, E = ManagerError> = std::result::Result<T, E>;

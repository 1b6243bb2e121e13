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
    #[error("{0}")]
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
        "cannot unseal {what}: the store's secrets were sealed on another machine or were altered"
    )]
    Unseal {
        /// what it is (never the secret)
        what: String,
    },
    /// The cipher or the random generator failed.
    #[error("sealing: {0}")]
    Crypto(&'static str),
}

/// Errors of the certificate-format layer (`x509/`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum X509Error {
    /// ASN.1 encoding or decoding failed.
    #[error("ASN.1: {0}")]
    Asn1(#[from] der::Error),
    /// The builder refused the certificate.
    #[error("certificate builder: {0}")]
    Builder(String),
    /// A value (name, SAN, usage) is invalid.
    #[error("{0}")]
    Invalid(String),
    /// A public key in an unsupported algorithm.
    #[error("unsupported public key: {0}")]
    UnsupportedKey(String),
    /// Signing through the key provider failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Encrypting a private key for export failed.
    #[error("private key encryption: {0}")]
    Pkcs8(String),
}

/// Errors of the persistence layer (`store/`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("store database: {0}")]
    Sqlite(#[from] rusqlite::Error),
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
    /// Another process holds the store for too long.
    #[error("store is busy (locked by another certman process)")]
    Busy,
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
        /// what was looked for ("certificate", "template", "item")
        kind: &'static str,
        /// the name asked for
        name: String,
    },
    /// A rule of the certificate manager refuses the operation.
    #[error("{message}")]
    Refused {
        /// what was refused and why
        message: String,
        /// what to do instead
        hint: Option<String>,
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
    /// Key-provider failure.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Format failure.
    #[error(transparent)]
    X509(#[from] X509Error),
    /// Store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
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

impl ManagerError {
    /// A refusal with a hint.
    pub fn refused(message: impl Into<String>, hint: Option<&str>) -> Self {
        ManagerError::Refused {
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }

    /// The hint line to print under the error, if any.
    pub fn hint(&self) -> Option<&str> {
        match self {
            ManagerError::Refused { hint, .. } => hint.as_deref(),
            _ => None,
        }
    }

    /// The CLI exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            ManagerError::InvalidValue(_) => ExitCode::Usage,
            ManagerError::NotFound { .. } => ExitCode::NotFound,
            ManagerError::Refused { .. } => ExitCode::Refused,
            ManagerError::File { .. }
            | ManagerError::Store(_)
            | ManagerError::Seal(_)
            | ManagerError::Failed(_) => ExitCode::Failed,
            ManagerError::Secret(_) => ExitCode::Usage,
            ManagerError::Key(k) | ManagerError::X509(X509Error::Key(k)) => key_exit_code(k),
            ManagerError::X509(_) => ExitCode::Failed,
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

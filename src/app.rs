//! The composition root: the one place that turns a store location into a [`Store`], a
//! sealing-key source into a [`Sealer`], token profiles into a [`KeyRouter`], and hands them to
//! [`Manager::with_parts`]. Nothing below this file names a store or key backend it does not
//! own; a new store backend is one arm of [`open_store`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{ManagerError, SealError, StoreError};
use crate::keys::{KeyRouter, TokenProviders, TokensConfig};
use crate::manager::Manager;
use crate::seal::{KeyTransport, Sealer, SealingKeySource};
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, TxnMode};

/// Where the store lives: `--store`, `$CERTMAN_STORE`, or a config file's `store`.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreLocation {
    /// The embedded default: one SQLite file in a private directory (`DIR` or `sqlite:DIR`).
    Sqlite {
        /// the store directory
        dir: PathBuf,
    },
    /// The store of several nodes: a PostgreSQL database (`postgres://…`, `postgresql://…`,
    /// libpq's URL form, e.g. `postgresql:///certman?host=/run/postgresql`).
    Postgres {
        /// the URL, as given (it may hold a password: shown only through `Display`, which
        /// leaves it out)
        url: String,
    },
}

impl StoreLocation {
    /// Reads a location as the operator writes it: `sqlite:DIR`, or a directory. URLs of
    /// store backends this build lacks are refused rather than taken for directory names.
    pub fn parse(text: &Path) -> Result<Self, StoreError> {
        let Some(s) = text.to_str() else {
            return Ok(StoreLocation::Sqlite {
                dir: text.to_owned(),
            });
        };
        if let Some(dir) = s.strip_prefix("sqlite:") {
            let dir = dir.strip_prefix("//").unwrap_or(dir);
            if dir.is_empty() {
                return Err(StoreError::Location(
                    "sqlite: needs a directory (sqlite:DIR)".into(),
                ));
            }
            return Ok(StoreLocation::Sqlite { dir: dir.into() });
        }
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return Ok(StoreLocation::Postgres { url: s.to_owned() });
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(StoreError::Location(format!(
                "unknown store kind '{scheme}://': give a directory, sqlite:DIR or postgresql://…"
            )));
        }
        Ok(StoreLocation::Sqlite { dir: text.into() })
    }
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Sqlite { dir } => write!(f, "sqlite:{}", dir.display()),
            StoreLocation::Postgres { url } => f.write_str(&without_password(url)),
        }
    }
}

/// As `Display`: a PostgreSQL URL's password is never printed, not even by `{:?}`.
impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreLocation({self})")
    }
}

/// A PostgreSQL URL with its password (`user:password@`, `password=`) left out, for errors
/// and logs.
fn without_password(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:***@{host}"),
            None => format!("{user}@{host}"),
        },
        None => authority.to_owned(),
    };
    let query: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => p.to_owned(),
        })
        .collect();
    let mut shown = format!("{scheme}://{authority}{path}");
    if !query.is_empty() {
        shown.push('?');
        shown.push_str(&query.join("&"));
    }
    shown
}

/// Everything a manager is built from.
#[derive(Clone, Debug)]
pub struct AppOptions {
    /// the store
    pub store: StoreLocation,
    /// where the key sealing secrets at rest comes from
    pub sealing_key: SealingKeySource,
    /// token profiles (`--tokens DIR`)
    pub tokens_dir: Option<PathBuf>,
    /// spend a PIN try that a token reports as its last (`--force-last-pin-try`)
    pub force_last_pin_try: bool,
    /// a second store connection for what `serve` answers (CRLs, health), so that requests
    /// never wait behind a transaction that is signing on a token
    pub read_connection: bool,
    /// make the store if there is none (else [`StoreError::NoStore`])
    pub create_store: bool,
    /// the process keeps the store open for long (`serve`, `certman agent`): see
    /// [`SqliteStore::resident`]
    pub resident: bool,
}

impl AppOptions {
    /// Options for a store, with the sealing key from the environment's default (the
    /// machine id).
    pub fn new(store: StoreLocation) -> Self {
        AppOptions {
            store,
            sealing_key: SealingKeySource::from_env(),
            tokens_dir: None,
            force_last_pin_try: false,
            read_connection: false,
            create_store: true,
            resident: false,
        }
    }
}

/// Opens (creating if needed) the store at `location`.
pub fn open_store(location: &StoreLocation) -> Result<Box<dyn Store>, StoreError> {
    open_store_with(location, true)
}

/// Opens the store at `location`, making it first if there is none and `create` says so.
pub fn open_store_with(
    location: &StoreLocation,
    create: bool,
) -> Result<Box<dyn Store>, StoreError> {
    open_store_as(location, create, false)
}

/// [`open_store_with`], for a process that keeps it open for long when `resident`.
fn open_store_as(
    location: &StoreLocation,
    create: bool,
    resident: bool,
) -> Result<Box<dyn Store>, StoreError> {
    match location {
        StoreLocation::Sqlite { dir } => {
            let store = SqliteStore::open_with(dir, create)?;
            Ok(Box::new(if resident { store.resident() } else { store }))
        }
        #[cfg(feature = "postgres")]
        StoreLocation::Postgres { url } => Ok(Box::new(
            crate::store::postgres::PgStore::open(url, &location.to_string(), create)?,
        )),
        #[cfg(not(feature = "postgres"))]
        StoreLocation::Postgres { .. } => Err(StoreError::Location(format!(
            "{location}: this certman was built without PostgreSQL support (cargo feature \"postgres\")"
        ))),
    }
}

/// Opens the store, derives the sealing key, configures the key providers and builds the
/// manager over them.
pub fn open(options: &AppOptions) -> Result<Manager, ManagerError> {
    let store = open_store_as(&options.store, options.create_store, options.resident)?;
    // the token providers first: a `pkcs11:` sealing key is reached through the same provider
    // the router then signs with (its sessions, its one login per token)
    let tokens = token_providers(options)?;
    let sealer = Arc::new(match options.sealing_key.key_transport(Some(&tokens))? {
        Some(transport) => transport_sealer(store.as_ref(), &transport)?,
        None => options
            .sealing_key
            .sealer_with(store.salt(), Some(&tokens))?,
    });
    let keys = KeyRouter::with_tokens(tokens, sealer.clone());
    let mut manager = Manager::with_parts(store, keys, sealer);
    // SQLite's connection takes one transaction at a time; PostgreSQL's pool already answers
    // a reader beside a writer
    if options.read_connection && matches!(options.store, StoreLocation::Sqlite { .. }) {
        manager = manager.with_read_store(open_store(&options.store)?);
    }
    if let Some(offset) = test_clock_offset()? {
        manager = manager.with_clock_offset(offset);
    }
    Ok(manager)
}

/// The sealer of a key-transport source (`piv:`): the store's wrapped data key unwrapped on
/// the card; on a store that has none yet and holds no sealed secret, a new one, kept
/// insert-if-absent so that of several nodes starting at once all use the one that was kept.
/// A store whose secrets are sealed already under another source gets no data key here (that
/// is `store reseal`'s): nothing is written.
fn transport_sealer(
    store: &dyn Store,
    transport: &KeyTransport<'_>,
) -> Result<Sealer, ManagerError> {
    let (found, sealed_secrets) = {
        let txn = store.begin(TxnMode::Read)?;
        let found = txn.meta_value(&transport.meta_name)?;
        let secrets = found.is_none() && !txn.sealed_blobs()?.is_empty();
        (found, secrets)
    };
    if let Some(wrapped) = found {
        return Ok(transport.open(store.salt(), &wrapped)?);
    }
    if sealed_secrets {
        return Err(ManagerError::Seal(SealError::Source {
            what: format!("the sealing key {}", transport.uri()),
            reason: "the store has no data key for it, and its secrets are sealed under another \
                     seal-key-source: move them with `certman store reseal seal-key-source=piv:…`"
                .into(),
        }));
    }
    let (sealer, wrapped) = transport.make(store.salt())?;
    let mut txn = store.begin(TxnMode::Write)?;
    let kept = txn.insert_meta_if_absent(&transport.meta_name, &wrapped)?;
    txn.commit()?;
    if kept == wrapped {
        Ok(sealer)
    } else {
        // another node made the store's data key first: it is the one
        Ok(transport.open(store.salt(), &kept)?)
    }
}

/// `$CERTMAN_TEST_CLOCK_OFFSET`: seconds added to the SCEP client's clock (and to the one
/// `/health` and CRL renewal judge CRLs by), so that tests can bring a renewal, a CA roll-over or a CRL's
/// nextUpdate near without waiting for it. Not for production.
fn test_clock_offset() -> Result<Option<i64>, ManagerError> {
    match std::env::var("CERTMAN_TEST_CLOCK_OFFSET") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse::<i64>().map(Some).map_err(|_| {
            ManagerError::InvalidValue(format!(
                "CERTMAN_TEST_CLOCK_OFFSET={v}: a number of seconds is expected"
            ))
        }),
        _ => Ok(None),
    }
}

/// The key router with every provider this build has, configured from the token profiles.
pub fn key_router(options: &AppOptions, sealer: Arc<Sealer>) -> Result<KeyRouter, ManagerError> {
    Ok(KeyRouter::with_tokens(token_providers(options)?, sealer))
}

/// The token providers, configured from the token profiles.
fn token_providers(options: &AppOptions) -> Result<TokenProviders, ManagerError> {
    Ok(TokenProviders::from_config(&TokensConfig {
        tokens_dir: options.tokens_dir.clone(),
        force_last_pin_try: options.force_last_pin_try,
    })?)
}

/// `store seal-key-generate`: makes the secret key of a `pkcs11:` seal-key-source on its
/// token (no store is opened); returns the token's label and serial.
pub fn generate_seal_key(
    options: &AppOptions,
    source: &SealingKeySource,
) -> Result<(String, String), ManagerError> {
    let SealingKeySource::Pkcs11 { uri } = source else {
        return Err(ManagerError::InvalidValue(
            "seal-key-generate makes a key on a token: give a pkcs11: source".into(),
        ));
    };
    Ok(token_providers(options)?.generate_seal_key(uri)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_locations() {
        let dir = |s: &str| StoreLocation::Sqlite { dir: s.into() };
        assert_eq!(
            StoreLocation::parse(Path::new("/var/lib/certman")).unwrap(),
            dir("/var/lib/certman")
        );
        assert_eq!(
            StoreLocation::parse(Path::new("rel/dir")).unwrap(),
            dir("rel/dir")
        );
        assert_eq!(
            StoreLocation::parse(Path::new("sqlite:/srv/x")).unwrap(),
            dir("/srv/x")
        );
        assert_eq!(
            StoreLocation::parse(Path::new("sqlite:///srv/x")).unwrap(),
            dir("/srv/x")
        );
        assert_eq!(dir("/srv/x").to_string(), "sqlite:/srv/x");
        for url in ["postgres://db/certman", "postgresql:///certman?host=/run"] {
            assert_eq!(
                StoreLocation::parse(Path::new(url)).unwrap(),
                StoreLocation::Postgres { url: url.into() }
            );
        }
        let pg = |url: &str| StoreLocation::Postgres { url: url.into() }.to_string();
        assert_eq!(
            pg("postgresql://ca:s3cret@db.example:5433/certman?sslmode=disable"),
            "postgresql://ca:***@db.example:5433/certman?sslmode=disable"
        );
        assert_eq!(
            pg("postgres:///certman?host=/run/pg&user=ca&password=s3cret"),
            "postgres:///certman?host=/run/pg&user=ca&password=***"
        );
        assert_eq!(pg("postgres://db"), "postgres://db");
        let debug = format!(
            "{:?}",
            StoreLocation::Postgres {
                url: "postgresql://ca:s3cret@db/certman".into()
            }
        );
        assert!(!debug.contains("s3cret"), "{debug}");
        for bad in ["http://x", "sqlite:"] {
            let e = StoreLocation::parse(Path::new(bad)).unwrap_err();
            assert!(matches!(e, StoreError::Location(_)), "{bad}: {e:?}");
        }
    }

    #[test]
    fn a_piv_source_needs_its_card_or_says_this_build_has_no_pc_sc() {
        let d = tempfile::tempdir().unwrap();
        let mut o = AppOptions::new(StoreLocation::Sqlite {
            dir: d.path().join("store"),
        });
        o.sealing_key =
            SealingKeySource::parse("piv:slot-id=9d;reader=certman%20unit%20test%20no%20reader")
                .unwrap();
        let e = open(&o).unwrap_err();
        let line = e.to_string();
        assert!(line.contains("piv:slot-id=9d"), "{line}");
        assert!(!line.contains('\n'), "{line}");
        if !cfg!(feature = "pcsc") {
            assert!(line.contains("built without PC/SC support"), "{line}");
        }
    }

    #[test]
    fn open_builds_a_manager_over_the_store_and_sealer() {
        let d = tempfile::tempdir().unwrap();
        let mid = d.path().join("machine-id");
        std::fs::write(&mid, "3d1219c7c4c5404aaa1f6d2a48adfda4\n").unwrap();
        let mut o = AppOptions::new(StoreLocation::Sqlite {
            dir: d.path().join("store"),
        });
        o.sealing_key = SealingKeySource::MachineId { path: mid };
        o.read_connection = true;
        let m = open(&o).unwrap();
        m.add_template("t", None, &[("common-name".into(), "t".into())])
            .unwrap();
        assert_eq!(m.entries(&[]).unwrap().len(), 1);
        // without the machine id nothing opens, and the error names it
        o.sealing_key = SealingKeySource::MachineId {
            path: d.path().join("missing"),
        };
        let e = open(&o).unwrap_err();
        assert!(matches!(e, ManagerError::Seal(_)), "{e:?}");
    }
}

//! What every command gets: [`Ctx`] (the global options, the manager opened once, the
//! session's item numbers, progress), the secret options' resolution, and the default
//! store and token directories.

use std::path::PathBuf;
use std::sync::Arc;

use super::{numbers, progress};
use crate::app::{AppOptions, StoreLocation};
use crate::error::ManagerError;
use crate::manager::Manager;

/// What every command gets.
pub struct Ctx {
    /// global options
    pub json: bool,
    /// -q
    pub quiet: bool,
    store_dir: PathBuf,
    tokens_dir: PathBuf,
    /// whether --store/$CERTMAN_STORE (and --tokens/$CERTMAN_TOKENS) were given, or defaulted
    store_given: bool,
    tokens_given: bool,
    force_last_pin_try: bool,
    /// --seal-key-source / $CERTMAN_SEAL_KEY_SOURCE
    seal_key_source: Option<String>,
    /// the `#` numbers of the last print (this terminal session's, or a script run's)
    pub numbers: numbers::Numbers,
    /// the manager, opened on first use and kept for the process (a script's lines share it)
    manager: std::cell::OnceCell<Arc<Manager>>,
    /// --create: make the store if there is none
    create: bool,
    /// the width tables fit, when the command line came from elsewhere (an agent's client)
    width: Option<Option<usize>>,
}

/// Where a command line was typed: to this process, or to a client of this agent (which
/// lends the command its manager and tells its terminal).
pub enum Host<'a> {
    /// this process's own command line
    Process,
    /// a `certman agent` client's
    Agent {
        /// the agent's manager, open on the store
        manager: &'a Arc<Manager>,
        /// the client's terminal session
        sid: i32,
        /// the width the client's tables fit
        width: Option<usize>,
    },
}

impl Ctx {
    /// The context of a command line's global options.
    pub fn from_cli(cli: &super::Cli, host: &Host<'_>) -> Ctx {
        let store_dir = cli
            .store
            .clone()
            .unwrap_or_else(super::agent::wire::default_store_dir);
        let (sid, width, manager) = match host {
            // SAFETY: getsid(0) only reads the calling process's session id.
            Host::Process => (unsafe { libc::getsid(0) }, None, None),
            Host::Agent {
                manager,
                sid,
                width,
            } => (*sid, Some(*width), Some(Arc::clone(manager))),
        };
        let numbers = numbers::Numbers::session(store_dir.clone(), sid);
        let kept = std::cell::OnceCell::new();
        if let Some(m) = manager {
            let _ = kept.set(m);
        }
        Ctx {
            json: cli.json,
            quiet: cli.quiet,
            store_dir,
            tokens_dir: cli.tokens.clone().unwrap_or_else(default_tokens_dir),
            store_given: cli.store.is_some(),
            tokens_given: cli.tokens.is_some(),
            force_last_pin_try: cli.force_last_pin_try,
            seal_key_source: cli.seal_key_source.clone(),
            numbers,
            manager: kept,
            create: cli.create,
            width,
        }
    }

    /// The manager on the existing store (or, with --create, a new one), opened on first use
    /// and kept (its long work drawn as progress on a terminal).
    pub fn manager(&self) -> Result<&Manager, ManagerError> {
        self.kept_manager(false).map(|m| m.as_ref())
    }

    /// [`Ctx::manager`], making the store if there is none: for the commands that put the
    /// first things in a store (`add`, `import`, `create-certificate-request`).
    pub fn manager_creating(&self) -> Result<&Manager, ManagerError> {
        self.kept_manager(true).map(|m| m.as_ref())
    }

    fn kept_manager(&self, create: bool) -> Result<&Arc<Manager>, ManagerError> {
        if let Some(m) = self.manager.get() {
            return Ok(m);
        }
        let m = self
            .open(Sources::default(), false, create)?
            .with_progress(self.progress().sink());
        Ok(self.manager.get_or_init(|| Arc::new(m)))
    }

    /// A context for a script run: the same store, tokens and options, the manager opened
    /// afresh for the run, and the script's own numbers.
    pub fn for_script(&self, numbers: numbers::Numbers) -> Ctx {
        Ctx {
            json: self.json,
            quiet: self.quiet,
            store_dir: self.store_dir.clone(),
            tokens_dir: self.tokens_dir.clone(),
            store_given: self.store_given,
            tokens_given: self.tokens_given,
            force_last_pin_try: self.force_last_pin_try,
            seal_key_source: self.seal_key_source.clone(),
            numbers,
            manager: std::cell::OnceCell::new(),
            create: self.create,
            width: self.width,
        }
    }

    /// `words` with the `#` numbers of the last print (see [`numbers`]) turned into names.
    pub fn names(&self, words: &[String]) -> Result<Vec<String>, ManagerError> {
        self.numbers
            .resolve(numbers::Menu::Certificates, words, || self.all_names())
    }

    /// One NAME or `#`.
    pub fn name(&self, word: &str) -> Result<String, ManagerError> {
        self.numbers
            .resolve_one(numbers::Menu::Certificates, word, || self.all_names())
    }

    fn all_names(&self) -> Result<Vec<String>, ManagerError> {
        Ok(self
            .manager()?
            .entries(&[])?
            .into_iter()
            .map(|e| e.name)
            .collect())
    }

    /// SCEP servers by path or `#` of the last `scep-server print`.
    pub fn scep_servers(&self, words: &[String]) -> Result<Vec<String>, ManagerError> {
        self.numbers.resolve(numbers::Menu::ScepServers, words, || {
            Ok(self
                .manager()?
                .scep_servers()?
                .into_iter()
                .map(|s| s.path)
                .collect())
        })
    }

    /// The same manager as [`Ctx::manager`], shared, for a port that outlives the command's
    /// borrow (the SCEP client's enroller, CRL downloads). One manager for the process (or
    /// the script run) means one set of providers: one PIN try per token, whatever runs.
    pub fn shared_manager(&self) -> Result<Arc<Manager>, ManagerError> {
        self.kept_manager(false).cloned()
    }

    /// [`Ctx::shared_manager`], making the store if there is none (`add-scep`).
    pub fn shared_manager_creating(&self) -> Result<Arc<Manager>, ManagerError> {
        self.kept_manager(true).cloned()
    }

    /// The width tables fit: the terminal's (see [`super::agent::wire::output_width`]), or
    /// the agent's client's.
    pub fn output_width(&self) -> Option<usize> {
        self.width.unwrap_or_else(super::agent::wire::output_width)
    }

    /// The store directory the command line names (or the default).
    pub fn store_dir(&self) -> &std::path::Path {
        &self.store_dir
    }

    /// The token profiles directory the command line names (or the default), and whether it
    /// was named.
    pub fn tokens_dir(&self) -> (&std::path::Path, bool) {
        (&self.tokens_dir, self.tokens_given)
    }

    /// `--seal-key-source` (or `$CERTMAN_SEAL_KEY_SOURCE`), if given.
    pub fn seal_key_source(&self) -> Option<&str> {
        self.seal_key_source.as_deref()
    }

    /// `store seal-key-generate`: makes the secret key of a `pkcs11:` source on its token,
    /// through the token profiles of this command line (no store is opened).
    pub fn generate_seal_key(
        &self,
        source: &crate::seal::SealingKeySource,
    ) -> Result<(String, String), ManagerError> {
        let mut options = AppOptions::new(StoreLocation::parse(&self.store_dir)?);
        options.tokens_dir = Some(self.tokens_dir.clone());
        options.force_last_pin_try = self.force_last_pin_try;
        crate::app::generate_seal_key(&options, source)
    }

    /// Whether `--force-last-pin-try` was given.
    pub fn forces_last_pin_try(&self) -> bool {
        self.force_last_pin_try
    }

    /// Progress bars and spinners for this command (see [`progress`]): on stderr when it is
    /// a terminal, never with `--quiet` or `--json`.
    pub fn progress(&self) -> progress::Progress {
        progress::Progress::new(self.quiet, self.json)
    }

    /// Opens the manager; `store`/`tokens` (a config file's) are used where the command line
    /// and environment name none; `read_connection`: see [`AppOptions::read_connection`].
    pub fn manager_with(
        &self,
        store: Option<&std::path::Path>,
        tokens: Option<&std::path::Path>,
        seal_key_source: Option<&str>,
        read_connection: bool,
    ) -> Result<Manager, ManagerError> {
        self.open(
            Sources {
                store,
                tokens,
                seal_key_source,
            },
            read_connection,
            false,
        )
    }

    /// [`Ctx::shared_manager`] for a process that keeps it open for long (`certman agent`):
    /// its store is resident (see [`crate::app::AppOptions::resident`]).
    pub fn resident_manager(&self) -> Result<Arc<Manager>, ManagerError> {
        if let Some(m) = self.manager.get() {
            return Ok(Arc::clone(m));
        }
        let mut m = self.open(Sources::default(), true, false)?;
        m = m.with_progress(self.progress().sink());
        Ok(Arc::clone(self.manager.get_or_init(|| Arc::new(m))))
    }

    fn open(
        &self,
        from_config: Sources<'_>,
        read_connection: bool,
        create: bool,
    ) -> Result<Manager, ManagerError> {
        let store_dir = match from_config.store {
            Some(s) if !self.store_given => s.to_owned(),
            _ => self.store_dir.clone(),
        };
        let tokens_dir = match from_config.tokens {
            Some(t) if !self.tokens_given => t.to_owned(),
            _ => self.tokens_dir.clone(),
        };
        let mut options = AppOptions::new(StoreLocation::parse(&store_dir)?);
        if let Some(source) = self
            .seal_key_source
            .as_deref()
            .or(from_config.seal_key_source)
        {
            options.sealing_key = crate::seal::SealingKeySource::parse(source)?;
        }
        options.tokens_dir = Some(tokens_dir);
        options.force_last_pin_try = self.force_last_pin_try;
        options.read_connection = read_connection;
        // the read connection is for long-running processes (`serve`, the agent)
        options.resident = read_connection;
        options.create_store = create || self.create;
        crate::app::open(&options)
    }
}

/// What a config file (`serve`'s) names, used where the command line and environment name
/// nothing.
#[derive(Default, Clone, Copy)]
pub struct Sources<'a> {
    /// the store
    pub store: Option<&'a std::path::Path>,
    /// the token profiles directory
    pub tokens: Option<&'a std::path::Path>,
    /// the sealing key's source
    pub seal_key_source: Option<&'a str>,
}

/// A secret option given as `X=value` or `X-source=…` (prompting on a terminal when
/// `required` and neither is given).
pub(crate) fn secret(
    value: &Option<String>,
    source: &Option<String>,
    what: &str,
    option: &str,
    required: bool,
) -> Result<Option<crate::secret::SecretString>, ManagerError> {
    secret_option(value, source, what, option, required, false)
}

/// A secret being made (a passphrase that will encrypt a file or an export): as [`secret`],
/// but typed twice at a prompt (a mismatch is refused); read once from `X=` or `X-source=`.
pub(crate) fn new_secret(
    value: &Option<String>,
    source: &Option<String>,
    what: &str,
    option: &str,
    required: bool,
) -> Result<Option<crate::secret::SecretString>, ManagerError> {
    secret_option(value, source, what, option, required, true)
}

fn secret_option(
    value: &Option<String>,
    source: &Option<String>,
    what: &str,
    option: &str,
    required: bool,
    new: bool,
) -> Result<Option<crate::secret::SecretString>, ManagerError> {
    use crate::secret::{resolve_new_secret, resolve_secret, SecretSource, SecretString};
    let source: Option<SecretSource> = source.as_deref().map(str::parse).transpose()?;
    let value = value.clone().map(SecretString::new);
    let resolve = if new {
        resolve_new_secret
    } else {
        resolve_secret
    };
    Ok(resolve(value, source.as_ref(), what, option, required)?)
}

fn default_tokens_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("certman/tokens");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".config/certman/tokens"),
        None => PathBuf::from("tokens"),
    }
}

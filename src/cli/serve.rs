//! `certman serve`: the daemon's arguments and config file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use super::{CliError, Ctx};
use crate::service::{Config, ServiceError};

impl ServeArgs {
    /// Runs the service until SIGTERM/SIGINT. The store and token directories of the command
    /// line (`--store`, `$CERTMAN_STORE`, …) win over the config file's `store`/`tokens`.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let config = load_config(self)?;
        let manager = ctx
            .manager_with(
                config.store.as_deref(),
                config.tokens.as_deref(),
                config.seal_key_source.as_deref(),
                true,
            )?
            .with_crl_series_low(usize::try_from(config.crl_series_low).unwrap_or(usize::MAX));
        crate::service::run(config, std::sync::Arc::new(manager))?;
        Ok(())
    }
}

/// `serve [listen=ADDR] [config=FILE]`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: listen= of the config file, else 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// The service's config file (TOML; see contrib/serve.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The service's configuration: the config file (if given; defaults otherwise), then the
/// command line over it.
pub(crate) fn load_config(args: &ServeArgs) -> Result<Config, ServiceError> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::normalize_args;
    use crate::error::ExitCode;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn parse(words: &[&str]) -> ServeArgs {
        let argv = std::iter::once("certman")
            .chain(words.iter().copied())
            .map(std::ffi::OsString::from);
        Cmd::try_parse_from(normalize_args(argv)).unwrap().args
    }

    #[test]
    fn without_a_file_the_defaults_and_the_command_line() {
        let c = load_config(&parse(&[])).unwrap();
        assert_eq!(c, Config::default());
        let c = load_config(&parse(&["listen=127.0.0.1:0"])).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:0");
        let c = load_config(&parse(&["--listen", "[::1]:9090"])).unwrap();
        assert_eq!(c.listen.to_string(), "[::1]:9090");
    }

    #[test]
    fn the_command_line_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\ncrl-max-age = 12\n").unwrap();
        let file = path.to_str().unwrap();
        let c = load_config(&parse(&[&format!("config={file}")])).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:1");
        assert_eq!(c.crl_max_age, 12);
        let c = load_config(&parse(&[&format!("config={file}"), "listen=0.0.0.0:8443"])).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:8443");
        assert_eq!(c.crl_max_age, 12);
    }

    #[test]
    fn a_bad_file_is_one_usage_error_line_and_a_missing_one_a_file_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:1\"\n").unwrap();
        let e = load_config(&parse(&[&format!("config={}", path.display())])).unwrap_err();
        assert_eq!(e.exit_code(), ExitCode::Usage);
        let line = e.to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.contains("line 1") && line.contains("`lisen`"),
            "{line}"
        );

        let missing = dir.path().join("nope.toml");
        let e = load_config(&parse(&[&format!("config={}", missing.display())])).unwrap_err();
        assert!(matches!(e, ServiceError::ConfigFile { .. }), "{e:?}");
        assert_eq!(e.exit_code(), ExitCode::Failed);
    }
}

//! The service's config file (TOML, see `contrib/serve.toml`): every key optional, unknown keys
//! refused.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ServiceError;

/// `certman serve` settings, as read from the config file (then overridden by the command line).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// the address to listen on (default `127.0.0.1:8080`; port 0 picks a free port)
    pub listen: SocketAddr,
    /// the store directory (default: the CLI's `--store` / `$CERTMAN_STORE` / XDG default)
    pub store: Option<PathBuf>,
    /// token profiles directory (default: the CLI's `--tokens` / `$CERTMAN_TOKENS` / XDG default)
    pub tokens: Option<PathBuf>,
    /// where the key sealing secrets at rest comes from: `machine-id` or `file:PATH` (default:
    /// the CLI's `--seal-key-source` / `$CERTMAN_SEAL_KEY_SOURCE` / the machine id)
    pub seal_key_source: Option<String>,
    /// a tracing `EnvFilter` (default `info`); `$CERTMAN_LOG` overrides it
    pub log: String,
    /// seconds between looks for local CAs whose CRL is due (default 60)
    pub crl_renew_check: u64,
    /// hours after which a local CA's CRL is renewed (default 24, as RouterOS)
    pub crl_max_age: u64,
    /// `/health` warns (`crl-series-low`) when fewer presigned CRLs of a CA (`crl presign`)
    /// are left to publish (default 2; 0: never)
    pub crl_series_low: u64,
    /// seconds between downloads of trusted certificates' CRLs (default 3600)
    pub crl_download_interval: u64,
    /// the largest CRL downloaded, bytes (default 16 MiB)
    pub crl_download_max_bytes: u64,
    /// seconds a whole CRL download may take (default 30; connecting: at most 10)
    pub crl_download_timeout: u64,
    /// seconds between looks for SCEP clients that have something to do (default 30)
    pub scep_client_interval: u64,
    /// seconds before a SCEP client polls or retries the first time, doubled per attempt up
    /// to an hour (default 30)
    pub scep_client_retry: u64,
    /// seconds between looks at an issued SCEP client's server, for a next CA (default 3600)
    pub scep_client_check: u64,
    /// seconds a client has to send a request's head (request line and headers), counted from
    /// the connection's opening or the end of the previous response; a request body then has
    /// as long again (default 10)
    pub header_timeout: u64,
    /// seconds without a byte moving either way after which a connection is closed (default 60)
    pub idle_timeout: u64,
    /// connections served at once; one more is answered 503 and closed (default 512)
    pub max_connections: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            store: None,
            tokens: None,
            seal_key_source: None,
            log: "info".into(),
            crl_renew_check: 60,
            crl_max_age: 24,
            crl_series_low: crate::manager::DEFAULT_CRL_SERIES_LOW as u64,
            crl_download_interval: 3600,
            crl_download_max_bytes: 16 * 1024 * 1024,
            crl_download_timeout: 30,
            scep_client_interval: 30,
            scep_client_retry: 30,
            scep_client_check: 3600,
            header_timeout: 10,
            idle_timeout: 60,
            max_connections: 512,
        }
    }
}

/// The longest a CRL may go unrenewed: a day. A CRL is valid for two
/// (`manager::crl::CRL_VALIDITY`), so relying parties never hold an expired one while `serve` runs.
const MAX_CRL_AGE_HOURS: u64 = 24;
/// Intervals and timeouts stay below a year, so that adding them to an instant cannot overflow.
const MAX_SECONDS: u64 = 366 * 24 * 3600;
/// The longest `header-timeout` and `idle-timeout`: an hour.
const MAX_HTTP_SECONDS: u64 = 3600;
/// The most connections `max-connections` allows (each takes a file descriptor).
const MAX_CONNECTIONS: u64 = 65_536;

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ServiceError> {
        let text = std::fs::read_to_string(path).map_err(|source| ServiceError::ConfigFile {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and checks a config file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ServiceError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| format!(", line {}", line_of(text, s.start)))
                .unwrap_or_default();
            // toml's message may run over several lines; the contract is one error line.
            let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
            ServiceError::Config(format!("config file {}{line}: {message}", origin.display()))
        })?;
        config.validate().map_err(|e| match e {
            ServiceError::Config(m) => {
                ServiceError::Config(format!("config file {}: {m}", origin.display()))
            }
            other => other,
        })?;
        Ok(config)
    }

    /// The bounds of CRL downloads (`crl-download-max-bytes`, `crl-download-timeout`).
    pub fn fetch_limits(&self) -> crate::protocols::fetch::FetchLimits {
        crate::protocols::fetch::FetchLimits::new(
            usize::try_from(self.crl_download_max_bytes).unwrap_or(usize::MAX),
            std::time::Duration::from_secs(self.crl_download_timeout),
        )
    }

    /// The HTTP server's bounds (`header-timeout`, `idle-timeout`, `max-connections`).
    pub fn http_limits(&self) -> super::HttpLimits {
        super::HttpLimits {
            header_timeout: std::time::Duration::from_secs(self.header_timeout),
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
        }
    }

    /// Checks the values (after command-line overrides).
    pub fn validate(&self) -> Result<(), ServiceError> {
        let bad = |m: String| Err(ServiceError::Config(m));
        for (key, value) in [
            ("crl-renew-check", self.crl_renew_check),
            ("crl-download-interval", self.crl_download_interval),
            ("crl-download-timeout", self.crl_download_timeout),
            ("scep-client-interval", self.scep_client_interval),
            ("scep-client-retry", self.scep_client_retry),
            ("scep-client-check", self.scep_client_check),
        ] {
            if value == 0 || value > MAX_SECONDS {
                return bad(format!("{key}={value}: must be 1 to {MAX_SECONDS} seconds"));
            }
        }
        if self.crl_max_age == 0 || self.crl_max_age > MAX_CRL_AGE_HOURS {
            return bad(format!(
                "crl-max-age={}: must be 1 to {MAX_CRL_AGE_HOURS} hours (CRLs are valid for 48 hours)",
                self.crl_max_age
            ));
        }
        if self.crl_download_max_bytes < 64 || usize::try_from(self.crl_download_max_bytes).is_err()
        {
            return bad(format!(
                "crl-download-max-bytes={}: must be at least 64",
                self.crl_download_max_bytes
            ));
        }
        for (key, value) in [
            ("header-timeout", self.header_timeout),
            ("idle-timeout", self.idle_timeout),
        ] {
            if value == 0 || value > MAX_HTTP_SECONDS {
                return bad(format!(
                    "{key}={value}: must be 1 to {MAX_HTTP_SECONDS} seconds"
                ));
            }
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS {
            return bad(format!(
                "max-connections={}: must be 1 to {MAX_CONNECTIONS}",
                self.max_connections
            ));
        }
        if self.log.trim().is_empty() {
            return bad("log: must not be empty (e.g. \"info\")".into());
        }
        Ok(())
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("serve.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.log, "info");
        assert_eq!(
            (c.crl_renew_check, c.crl_max_age, c.crl_download_interval),
            (60, 24, 3600)
        );
        assert_eq!(c.crl_download_max_bytes, 16 * 1024 * 1024);
        assert_eq!(c.crl_download_timeout, 30);
        assert_eq!(
            (c.header_timeout, c.idle_timeout, c.max_connections),
            (10, 60, 512)
        );
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            r#"
listen = "[::1]:0"
store = "/var/lib/certman"
tokens = "/etc/certman/tokens"
log = "certman=debug"
crl-renew-check = 5
crl-max-age = 12
crl-download-interval = 600
crl-download-max-bytes = 1048576
crl-download-timeout = 7
header-timeout = 3
idle-timeout = 4
max-connections = 5
"#,
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "[::1]:0");
        assert_eq!(c.store.as_deref(), Some(Path::new("/var/lib/certman")));
        assert_eq!(c.tokens.as_deref(), Some(Path::new("/etc/certman/tokens")));
        assert_eq!(c.log, "certman=debug");
        assert_eq!(c.crl_renew_check, 5);
        assert_eq!(c.crl_max_age, 12);
        assert_eq!(c.crl_download_interval, 600);
        assert_eq!(c.crl_download_max_bytes, 1048576);
        assert_eq!(c.crl_download_timeout, 7);
        assert_eq!(
            (c.header_timeout, c.idle_timeout, c.max_connections),
            (3, 4, 5)
        );
        let l = c.http_limits();
        assert_eq!(l.header_timeout, std::time::Duration::from_secs(3));
        assert_eq!(l.idle_timeout, std::time::Duration::from_secs(4));
        assert_eq!(l.max_connections, 5);
    }

    #[test]
    fn an_unknown_key_is_one_line_naming_it() {
        let e = parse("listen = \"127.0.0.1:1\"\nlisten-port = 8080\n").unwrap_err();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.starts_with("config file serve.toml, line 2: "), "{e}");
        assert!(e.contains("unknown field `listen-port`"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_with_where() {
        let e = parse("listen = \"localhost\"").unwrap_err();
        assert!(e.starts_with("config file serve.toml, line 1: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = parse("crl-max-age = \"24h\"").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        let e = parse("crl-renew-check = 0").unwrap_err();
        assert_eq!(
            e,
            "config file serve.toml: crl-renew-check=0: must be 1 to 31622400 seconds"
        );
        let e = parse("crl-max-age = 0").unwrap_err();
        assert!(e.contains("crl-max-age=0"), "{e}");
        // Renewed at least daily: CRLs are valid for 48 hours.
        let e = parse("crl-max-age = 25").unwrap_err();
        assert!(
            e.contains("crl-max-age=25") && e.contains("48 hours"),
            "{e}"
        );
        assert!(parse("crl-max-age = 24").is_ok());
        let e = parse("crl-download-max-bytes = 10").unwrap_err();
        assert!(e.contains("crl-download-max-bytes=10"), "{e}");
        for (text, line) in [
            (
                "header-timeout = 0",
                "header-timeout=0: must be 1 to 3600 seconds",
            ),
            (
                "idle-timeout = 3601",
                "idle-timeout=3601: must be 1 to 3600 seconds",
            ),
            (
                "max-connections = 0",
                "max-connections=0: must be 1 to 65536",
            ),
            (
                "max-connections = 65537",
                "max-connections=65537: must be 1 to 65536",
            ),
        ] {
            assert_eq!(
                parse(text).unwrap_err(),
                format!("config file serve.toml: {line}")
            );
        }
        let e = parse("header-timeout = -1").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        let e = parse("not toml at all").unwrap_err();
        assert!(e.starts_with("config file serve.toml, line 1: "), "{e}");
    }

    #[test]
    fn the_scale_out_example_names_a_postgresql_store_and_a_shared_key() {
        let c = parse(include_str!("../../contrib/scale-out.toml")).unwrap();
        let store = c.store.as_deref().unwrap();
        assert!(matches!(
            crate::app::StoreLocation::parse(store).unwrap(),
            crate::app::StoreLocation::Postgres { .. }
        ));
        assert_eq!(
            c.seal_key_source.as_deref(),
            Some("file:/etc/certman/seal.key")
        );
    }

    #[test]
    fn the_example_file_parses_and_shows_the_defaults() {
        let example = include_str!("../../contrib/serve.toml");
        assert_eq!(parse(example).unwrap(), Config::default());
        // every key shown commented out, uncommented: the values shown are the defaults
        let uncommented: String = example
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => rest,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let c = parse(&uncommented).unwrap();
        assert_eq!(c.store.as_deref(), Some(Path::new("/var/lib/certman")));
        assert_eq!(c.tokens.as_deref(), Some(Path::new("/etc/certman/tokens")));
        assert_eq!(
            c.seal_key_source.as_deref(),
            Some("file:/etc/certman/seal.key")
        );
        assert_eq!(
            Config {
                store: None,
                tokens: None,
                seal_key_source: None,
                ..c
            },
            Config::default()
        );
    }

    #[test]
    fn a_missing_file_is_a_file_error() {
        let e = Config::load(Path::new("/nonexistent/serve.toml")).unwrap_err();
        assert!(matches!(e, ServiceError::ConfigFile { .. }), "{e:?}");
        assert!(e.to_string().contains("/nonexistent/serve.toml"));
    }
}

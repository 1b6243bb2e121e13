//! `certman add`: a certificate template.

use clap::Args;

use super::{CliError, Ctx};

/// Template properties shared by `add` and `set`.
#[derive(Debug, Args, Default)]
pub struct TemplateArgs {
    /// Subject CN.
    #[arg(long)]
    pub common_name: Option<String>,
    /// Subject C (two letters).
    #[arg(long)]
    pub country: Option<String>,
    /// Subject ST.
    #[arg(long)]
    pub state: Option<String>,
    /// Subject L.
    #[arg(long)]
    pub locality: Option<String>,
    /// Subject O.
    #[arg(long)]
    pub organization: Option<String>,
    /// Subject OU.
    #[arg(long)]
    pub unit: Option<String>,
    /// DNS:a,IP:1.2.3.4,email:x@y,URI:…
    #[arg(long)]
    pub subject_alt_name: Option<String>,
    /// rsa | ec | ed25519
    #[arg(long)]
    pub key_type: Option<String>,
    /// 1024 1536 2048 3072 4096 8192 | prime256v1 secp384r1 secp521r1
    #[arg(long)]
    pub key_size: Option<String>,
    /// Validity in days (default 365).
    #[arg(long)]
    pub days_valid: Option<String>,
    /// RFC 5280 names and tls-server,tls-client,code-sign,email-protect,timestamp,ocsp-sign
    #[arg(long)]
    pub key_usage: Option<String>,
    /// yes | no
    #[arg(long)]
    pub trusted: Option<String>,
    /// sha256 | sha384 | sha512
    #[arg(long)]
    pub digest_algorithm: Option<String>,
}

impl TemplateArgs {
    /// The properties given, as (RouterOS name, value).
    pub fn changes(&self) -> Vec<(String, String)> {
        let fields = [
            ("common-name", &self.common_name),
            ("country", &self.country),
            ("state", &self.state),
            ("locality", &self.locality),
            ("organization", &self.organization),
            ("unit", &self.unit),
            ("subject-alt-name", &self.subject_alt_name),
            ("key-type", &self.key_type),
            ("key-size", &self.key_size),
            ("days-valid", &self.days_valid),
            ("key-usage", &self.key_usage),
            ("trusted", &self.trusted),
            ("digest-algorithm", &self.digest_algorithm),
        ];
        fields
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_owned(), v.clone())))
            .collect()
    }
}

/// `add name=… [copy-from=…] [properties…]`
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The template's name.
    #[arg(long)]
    pub name: String,
    /// Start from this template's (or certificate's) properties.
    #[arg(long)]
    pub copy_from: Option<String>,
    #[command(flatten)]
    pub props: TemplateArgs,
}

impl AddArgs {
    /// Runs the command.
    /// Quiet as RouterOS is; `--json` prints the template as `print --json` shows it.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let m = ctx.manager_creating()?;
        m.add_template(&self.name, self.copy_from.as_deref(), &self.props.changes())?;
        if ctx.json {
            super::json::print(&super::output::entry_json(0, &m.entry(&self.name)?));
        }
        Ok(())
    }
}

//! `certman ca-set-passphrase`.

use clap::Args;

use super::{CliError, Ctx};
use crate::error::ManagerError;

/// `ca-set-passphrase NAME passphrase=…|passphrase-source=…`
#[derive(Debug, Args)]
pub struct CaSetPassphraseArgs {
    /// The CA.
    pub name: String,
    /// The passphrase its key exports use.
    #[arg(long)]
    pub passphrase: Option<String>,
    /// Where to read it: file:PATH, env:VAR, fd:N or prompt.
    #[arg(long, conflicts_with = "passphrase")]
    pub passphrase_source: Option<String>,
}

impl CaSetPassphraseArgs {
    /// Runs the command: quiet as RouterOS is; `--json` prints `{"ca-passphrase-set": NAME}`.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let pass = super::new_secret(
            &self.passphrase,
            &self.passphrase_source,
            "CA export passphrase",
            "passphrase",
            true,
        )?
        .ok_or_else(|| ManagerError::InvalidValue("passphrase= is needed".into()))?;
        let name = ctx.name(&self.name)?;
        ctx.manager()?.ca_set_passphrase(&name, &pass)?;
        if ctx.json {
            super::json::print(&serde_json::json!({ "ca-passphrase-set": name }));
        }
        Ok(())
    }
}

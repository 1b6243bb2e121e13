//! `certman set`: change a template, or a certificate's name/trusted.

use clap::Args;

use super::add::TemplateArgs;
use super::{CliError, Ctx};
use crate::error::ManagerError;
use crate::manager::SetRequest;

/// `set NAME [name=NEW] [trusted=yes|no] [template properties…]`
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The template or certificate to change.
    pub target: String,
    /// A new name.
    #[arg(long)]
    pub name: Option<String>,
    /// Where the PIN of the certificate's token key is read (file:PATH, env:VAR, fd:N,
    /// prompt); for keys made from a URI (a profile's keys follow the profile).
    #[arg(long)]
    pub pin_source: Option<String>,
    #[command(flatten)]
    pub props: TemplateArgs,
}

impl SetArgs {
    /// Runs the command: quiet as RouterOS is; `--json` prints the entry as changed.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let mut changes = self.props.changes();
        if let Some(n) = &self.name {
            changes.push(("name".into(), n.clone()));
        }
        if let Some(p) = &self.pin_source {
            changes.push(("pin-source".into(), p.clone()));
        }
        if changes.is_empty() {
            return Err(ManagerError::InvalidValue(
                "nothing to set: give name=, trusted= or template properties".into(),
            )
            .into());
        }
        let m = ctx.manager()?;
        let target = ctx.name(&self.target)?;
        m.set(&SetRequest {
            name: target.clone(),
            changes,
        })?;
        if ctx.json {
            let name = self.name.as_ref().unwrap_or(&target);
            super::json::print(&super::output::entry_json(0, &m.entry(name)?));
        }
        Ok(())
    }
}

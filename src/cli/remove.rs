//! `certman remove`: templates and certificates (a CA takes its issued chain along).

use clap::Args;

use super::out::outln;
use super::{CliError, Ctx};

/// `remove NAME…`
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Templates or certificates to remove.
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    /// Also destroy keys on tokens (by default they stay on the token).
    #[arg(long, num_args = 0..=1, default_missing_value = "yes", value_parser = super::yes_no)]
    pub delete_key: Option<bool>,
}

impl RemoveArgs {
    /// Runs the command.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let names = ctx.names(&self.names)?;
        let mut report = ctx
            .manager()?
            .remove(&names, self.delete_key.unwrap_or(false))?;
        // A token key that could not be destroyed fails the command (exit code by its kind: a
        // PIN failure exits 5), with the one error line saying what went from the store.
        if let Some(e) = report.token_key_error.take() {
            return Err(e.into());
        }
        if ctx.json {
            outln!(
                "{}",
                serde_json::json!({
                    "templates-removed": report.templates,
                    "certificates-removed": report.certificates,
                    "token-keys-kept": report.token_keys_kept.iter().map(|(_, u)| u).collect::<Vec<_>>(),
                    "token-keys-deleted": report.token_keys_deleted.iter().map(|(_, u)| u).collect::<Vec<_>>(),
                })
            );
        } else if !ctx.quiet {
            for t in &report.templates {
                outln!("removed template {t}");
            }
            for c in &report.certificates {
                outln!("removed certificate {c}");
            }
            for (c, uri) in &report.token_keys_kept {
                outln!("kept the token key of {c}: {uri} (remove --delete-key destroys it)");
            }
            for (c, uri) in &report.token_keys_deleted {
                outln!("deleted the token key of {c}: {uri}");
            }
        }
        Ok(())
    }
}

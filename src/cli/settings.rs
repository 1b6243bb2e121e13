//! `certman settings print|set` (RouterOS `/certificate settings`).

use clap::{Args, Subcommand};

use super::out::outln;
use super::{CliError, Ctx};
use crate::error::ManagerError;
use crate::manager::Settings;

/// `settings …`
#[derive(Debug, Args)]
pub struct SettingsArgs {
    #[command(subcommand)]
    pub command: SettingsCommand,
}

/// Settings commands.
#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Show the settings.
    Print,
    /// Change settings: crl-download=yes|no crl-use=yes|no.
    Set {
        /// Download the CRLs of trusted certificates hourly over http (done by `serve`).
        #[arg(long)]
        crl_download: Option<String>,
        /// Check certificates against the stored CRLs (`verify`).
        #[arg(long)]
        crl_use: Option<String>,
    },
}

fn print(ctx: &Ctx, s: &Settings) {
    let yn = |b: bool| if b { "yes" } else { "no" };
    if ctx.json {
        outln!(
            "{}",
            serde_json::json!({"crl-download": s.crl_download, "crl-use": s.crl_use})
        );
    } else if !ctx.quiet {
        outln!("  crl-download: {}", yn(s.crl_download));
        outln!("       crl-use: {}", yn(s.crl_use));
    }
}

impl SettingsArgs {
    /// Runs the command.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        match &self.command {
            SettingsCommand::Print => print(ctx, &ctx.manager()?.settings()?),
            SettingsCommand::Set {
                crl_download,
                crl_use,
            } => {
                let mut changes = Vec::new();
                if let Some(v) = crl_download {
                    changes.push(("crl-download".to_owned(), v.clone()));
                }
                if let Some(v) = crl_use {
                    changes.push(("crl-use".to_owned(), v.clone()));
                }
                if changes.is_empty() {
                    return Err(ManagerError::InvalidValue(
                        "nothing to set: give crl-download=yes|no and/or crl-use=yes|no".into(),
                    )
                    .into());
                }
                print(ctx, &ctx.manager()?.set_settings(&changes)?);
            }
        }
        Ok(())
    }
}

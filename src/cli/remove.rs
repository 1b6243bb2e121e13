//! `certman remove`: templates and certificates (a CA takes its issued chain along).

use clap::Args;

use super::Ctx;
use crate::error::ManagerError;

/// `remove NAME…`
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Templates or certificates to remove.
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
}

impl RemoveArgs {
    /// Runs the command.
    pub fn run(&self, ctx: &Ctx) -> Result<(), ManagerError> {
        let report = ctx.manager()?.remove(&self.names)?;
        if ctx.json {
            println!(
                "{}",
                serde_json::json!({
                    "templates-removed": report.templates,
                    "certificates-removed": report.certificates,
                })
            );
        } else if !ctx.quiet {
            for t in &report.templates {
                println!("removed template {t}");
            }
            for c in &report.certificates {
                println!("removed certificate {c}");
            }
        }
        Ok(())
    }
}

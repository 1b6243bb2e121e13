//! `certman print [detail] [NAME…]`.

use clap::Args;

use super::{output, CliError, Ctx};

/// `print [detail] [NAME…]`
#[derive(Debug, Args)]
pub struct PrintArgs {
    /// `detail` for every property, then names to show (default: all).
    #[arg(value_name = "detail|NAME")]
    pub items: Vec<String>,
    /// Every property of each entry.
    #[arg(long)]
    pub detail: bool,
}

impl PrintArgs {
    /// Runs the command.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let (detail, names) = match self.items.split_first() {
            Some((first, rest)) if first == "detail" => (true, rest.to_vec()),
            _ => (self.detail, self.items.clone()),
        };
        let entries = ctx.manager()?.entries(&names)?;
        let text = if ctx.json {
            output::json(&entries)
        } else if detail {
            output::detail(&entries)
        } else {
            output::table(&entries)
        };
        super::out::text(&text);
        Ok(())
    }
}

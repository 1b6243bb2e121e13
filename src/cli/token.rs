//! `certman token print [PROFILE]`.

use clap::{Args, Subcommand};

use super::out::outln;
use super::{CliError, Ctx};

/// `token …`
#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// Token commands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Token profiles, the tokens present, their PIN state, keys and certificate objects.
    Print {
        /// Only this profile.
        profile: Option<String>,
        /// Log in (with the profile's pin-source) to list private keys too; without it, the
        /// token's state comes from its flags and no PIN try is spent.
        #[arg(long)]
        login: bool,
    },
}

impl TokenArgs {
    /// Runs the command.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let TokenCommand::Print { profile, login } = &self.command;
        let listing = ctx.manager()?.token_listing(profile.as_deref(), *login)?;
        if ctx.json {
            let v: Vec<_> = listing
                .iter()
                .map(|p| {
                    #[cfg(feature = "pcsc")]
                    let readers = p.readers.as_ref().map(|r| match r {
                        Ok(rs) => serde_json::json!(rs
                            .iter()
                            .map(|r| match &r.card {
                                Ok(c) => serde_json::json!({
                                    "reader": r.name,
                                    "serial": c.serial,
                                    "version": c.version,
                                    "pin": c.pin,
                                    "slots": c.slots.iter().map(|(s, subj)| serde_json::json!({"slot": s, "certificate": subj})).collect::<Vec<_>>(),
                                }),
                                Err(e) => serde_json::json!({"reader": r.name, "error": e}),
                            })
                            .collect::<Vec<_>>()),
                        Err(e) => serde_json::json!({ "error": e }),
                    });
                    #[cfg(not(feature = "pcsc"))]
                    let readers: Option<serde_json::Value> = None;
                    serde_json::json!({
                        "readers": readers,
                        "profile": p.name,
                        "kind": p.kind,
                        "default": p.default,
                        "location": p.location,
                        "error": p.tokens.as_ref().err(),
                        "tokens": p.tokens.as_ref().map(|ts| ts.iter().map(|t| serde_json::json!({
                            "label": t.label,
                            "serial": t.serial,
                            "model": t.model,
                            "manufacturer": t.manufacturer,
                            "pin": t.pin_state.to_string(),
                            "note": t.note,
                            "objects": t.objects.iter().map(|o| serde_json::json!({
                                "class": o.class, "label": o.label, "id": o.id, "detail": o.detail,
                            })).collect::<Vec<_>>(),
                        })).collect::<Vec<_>>()).unwrap_or_default(),
                    })
                })
                .collect();
            outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            return Ok(());
        }
        if listing.is_empty() {
            outln!("no token profiles (give --tokens DIR, or put *.toml profiles in the default directory)");
        }
        for p in &listing {
            outln!(
                "profile {}{} ({}) {}",
                p.name,
                if p.default { " [default]" } else { "" },
                p.kind,
                p.location
            );
            #[cfg(feature = "pcsc")]
            if let Some(readers) = &p.readers {
                match readers {
                    Err(e) => outln!("  unavailable: {e}"),
                    Ok(rs) if rs.is_empty() => outln!("  no PC/SC reader"),
                    Ok(rs) => {
                        for r in rs {
                            match &r.card {
                                Ok(c) => {
                                    outln!(
                                        "  reader \"{}\": PIV card serial {} firmware {} — {}",
                                        r.name,
                                        c.serial,
                                        c.version,
                                        c.pin
                                    );
                                    for (slot, subject) in &c.slots {
                                        outln!("    slot {slot}: certificate {subject}");
                                    }
                                }
                                Err(e) => outln!("  reader \"{}\": {e}", r.name),
                            }
                        }
                    }
                }
                continue;
            }
            #[cfg(not(feature = "pcsc"))]
            if p.kind == "piv" {
                outln!("  unavailable: this certman was built without PC/SC support");
                continue;
            }
            match &p.tokens {
                Err(e) => outln!("  unavailable: {e}"),
                Ok(ts) if ts.is_empty() => outln!("  no matching token present"),
                Ok(ts) => {
                    for t in ts {
                        outln!(
                            "  token \"{}\" serial {} model {} ({}) — {}",
                            t.label,
                            t.serial,
                            t.model,
                            t.manufacturer,
                            t.pin_state
                        );
                        if let Some(n) = &t.note {
                            outln!("    {n}");
                        }
                        for o in &t.objects {
                            outln!(
                                "    {:<12} label={:<20} id={} {}",
                                o.class,
                                o.label,
                                o.id,
                                o.detail
                            );
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

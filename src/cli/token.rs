//! `certman token print [PROFILE]`, `token inventory [SERIAL]`, `token lost SERIAL`.

use clap::{Args, Subcommand};

use super::out::outln;
use super::{output, CliError, Ctx};
use crate::error::ManagerError;
use crate::manager::{CrlOutcome, TokenLossReport};
use crate::x509::crl::RevocationReason;

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
    /// Per token serial, every certificate whose key is on it (reads the store only; no
    /// token is opened).
    Inventory {
        /// Only this token.
        serial: Option<String>,
    },
    /// A token is lost: revoke every certificate issued here whose key is on it (one
    /// transaction per issuing CA, its CRL renewed) and mark CAs whose key is on it
    /// compromised (they issue nothing more).
    Lost(LostArgs),
}

/// `token lost SERIAL [reason=key-compromise] [dry-run]`
#[derive(Debug, Args)]
pub struct LostArgs {
    /// The token's serial (`token inventory` lists them).
    pub serial: String,
    /// `dry-run`: print what would be done, change nothing.
    #[arg(value_name = "dry-run", value_parser = ["dry-run"])]
    pub mode: Option<String>,
    /// The CRLReason: key-compromise (default), ca-compromise, affiliation-changed,
    /// superseded, cessation-of-operation, privilege-withdrawn, aa-compromise, unspecified.
    #[arg(long, default_value = "key-compromise")]
    pub reason: String,
    /// Print what would be done, change nothing.
    #[arg(long = "dry-run", num_args = 0..=1, default_missing_value = "yes", value_parser = super::yes_no)]
    pub dry_run: Option<bool>,
}

impl TokenArgs {
    /// Runs the command.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let (profile, login) = match &self.command {
            TokenCommand::Print { profile, login } => (profile, login),
            TokenCommand::Inventory { serial } => return inventory(ctx, serial.as_deref()),
            TokenCommand::Lost(a) => return a.run(ctx),
        };
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
        // the local CAs whose keys are on tokens or cards, and the state of each key now (no
        // login: as `print detail` shows it as key-state)
        let states = ctx.manager()?.ca_key_states()?;
        if !states.is_empty() {
            outln!("CAs with keys on tokens:");
            for (ca, state) in states {
                outln!("  {ca}: {state}");
            }
        }
        Ok(())
    }
}

/// `token inventory [SERIAL]`.
fn inventory(ctx: &Ctx, serial: Option<&str>) -> Result<(), CliError> {
    let tokens = ctx.manager()?.token_inventory(serial)?;
    if ctx.json {
        let v: Vec<_> = tokens
            .iter()
            .map(|t| {
                serde_json::json!({
                    "serial": t.serial,
                    "certificates": t.certificates.iter().map(|c| serde_json::json!({
                        "name": c.name,
                        "flags": c.flags.to_string(),
                        "issuer": c.issuer,
                        "serial-number": c.serial,
                        "slot": c.slot,
                        "object": c.object,
                        "key": c.key_uri,
                        "compromised": c.compromised_at.is_some(),
                        "compromised-at": c.compromised_at.map(super::json::time_secs),
                    })).collect::<Vec<_>>(),
                    "unused-keys": t.unused_keys,
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    if tokens.is_empty() {
        outln!("no keys on tokens in the store");
    }
    for t in &tokens {
        outln!(
            "token serial {}: {} certificate(s)",
            output::esc(&t.serial),
            t.certificates.len()
        );
        for c in &t.certificates {
            outln!(
                "  {:<20} {:<9} issuer={} serial-number={} slot={} object={}{}",
                output::esc(&c.name),
                c.flags.to_string(),
                output::esc(&c.issuer),
                c.serial,
                output::esc(c.slot.as_deref().unwrap_or("-")),
                output::esc(c.object.as_deref().unwrap_or("-")),
                if c.compromised_at.is_some() {
                    " COMPROMISED"
                } else {
                    ""
                }
            );
        }
        for k in &t.unused_keys {
            outln!("  (no certificate) {}", output::esc(k));
        }
    }
    Ok(())
}

impl LostArgs {
    /// Runs the command.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let reason: RevocationReason = self
            .reason
            .parse()
            .map_err(|e: crate::error::X509Error| ManagerError::InvalidValue(e.to_string()))?;
        let dry_run = self.mode.is_some() || self.dry_run == Some(true);
        let report = ctx.manager()?.token_lost(&self.serial, reason, dry_run)?;
        if ctx.json {
            outln!("{}", lost_json(&report));
        } else if !ctx.quiet || report.incomplete() {
            print_lost(&report);
        }
        if report.incomplete() {
            return Err(ManagerError::Failed(format!(
                "token {}: some CAs could not revoke (their key is unreachable); run `token lost` again when it is",
                report.serial
            ))
            .into());
        }
        Ok(())
    }
}

fn crl_json(c: &CrlOutcome) -> serde_json::Value {
    match c {
        CrlOutcome::Renewed(n) => serde_json::json!({"renewed": true, "number": n}),
        CrlOutcome::NotRenewed(why) => serde_json::json!({"renewed": false, "error": why}),
        CrlOutcome::Failed(why) => {
            serde_json::json!({"renewed": false, "error": why, "nothing-written": true})
        }
        CrlOutcome::Unchanged => serde_json::json!({"renewed": false}),
        CrlOutcome::Planned => serde_json::json!({"renewed": false, "would-renew": true}),
    }
}

fn lost_json(r: &TokenLossReport) -> serde_json::Value {
    serde_json::json!({
        "serial": r.serial,
        "reason": r.reason.name(),
        "dry-run": r.dry_run,
        "compromised": r.compromised.iter().map(|c| serde_json::json!({"ca": c.name, "newly": c.newly})).collect::<Vec<_>>(),
        "cas": r.cas.iter().map(|c| serde_json::json!({
            "ca": c.ca,
            "revoked": c.revoked,
            "skipped": c.skipped,
            "crl": crl_json(&c.crl),
        })).collect::<Vec<_>>(),
        "not-revocable": r.not_revocable,
        "revoked": r.cas.iter().map(|c| c.revoked.len()).sum::<usize>(),
        "skipped": r.cas.iter().map(|c| c.skipped.len()).sum::<usize>(),
    })
}

fn print_lost(r: &TokenLossReport) {
    let verb = if r.dry_run { "would revoke" } else { "revoked" };
    if r.dry_run {
        outln!("dry-run: nothing is changed");
    }
    for c in &r.compromised {
        let name = output::esc(&c.name);
        match (r.dry_run, c.newly) {
            (_, false) => {
                outln!("CA {name} is marked compromised (since before): it issues nothing more")
            }
            (true, true) => outln!(
                "CA {name}: would be marked compromised (its key is on token {})",
                output::esc(&r.serial)
            ),
            (false, true) => outln!(
                "CA {name} marked compromised (its key is on token {}): it issues nothing more",
                output::esc(&r.serial)
            ),
        }
    }
    for c in &r.cas {
        let ca = output::esc(&c.ca);
        for n in &c.revoked {
            outln!("{verb} {} (CA {ca}, reason {})", output::esc(n), r.reason);
        }
        if !c.skipped.is_empty() {
            outln!("CA {ca}: {} already revoked, skipped", c.skipped.len());
        }
        match &c.crl {
            CrlOutcome::Renewed(n) => outln!("crl of {ca}: number {n}"),
            CrlOutcome::NotRenewed(why) => outln!(
                "crl of {ca}: NOT renewed ({}); the revocations are recorded: run `crl renew {ca}` when its token is back",
                output::esc(why)
            ),
            CrlOutcome::Failed(why) => outln!(
                "CA {ca}: nothing revoked: its key is unreachable ({}); run `token lost` again when it is",
                output::esc(why)
            ),
            CrlOutcome::Unchanged => {}
            CrlOutcome::Planned => outln!("crl of {ca}: would be renewed"),
        }
    }
    for n in &r.not_revocable {
        outln!(
            "{}: not issued by a CA here, not revocable here",
            output::esc(n)
        );
    }
    let revoked: usize = r.cas.iter().map(|c| c.revoked.len()).sum();
    let skipped: usize = r.cas.iter().map(|c| c.skipped.len()).sum();
    outln!("{verb} {revoked}, skipped {skipped} (already revoked)");
}

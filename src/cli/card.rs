//! `certman card-verify` and `certman card-reinstall`.

use clap::Args;

use super::out::outln;
use super::{CliError, Ctx};
use crate::manager::CardVerifyResult;

/// `card-verify NAME`
#[derive(Debug, Args)]
pub struct CardVerifyArgs {
    /// The certificate whose key to check.
    pub name: String,
}

/// `card-reinstall NAME [--force]`
#[derive(Debug, Args)]
pub struct CardReinstallArgs {
    /// The certificate to write back beside its key.
    pub name: String,
    /// Write it without card-verify first.
    #[arg(long, num_args = 0..=1, default_missing_value = "yes", value_parser = super::yes_no)]
    pub force: Option<bool>,
}

fn print_result(r: &CardVerifyResult, json: bool) {
    let object = match r.certificate_object {
        Some(Some(true)) => "present, equal to the stored certificate",
        Some(Some(false)) => "present, DIFFERENT from the stored certificate",
        Some(None) => "missing (card-reinstall writes it back)",
        None => "not kept by this provider",
    };
    let public = match r.report.public_key_matches {
        Some(true) => format!(
            "read back from {}, equal to the certificate's",
            r.report.provider
        ),
        Some(false) => "differs".to_owned(),
        None => format!("not readable from {}", r.report.provider),
    };
    if json {
        outln!(
            "{}",
            serde_json::json!({
                "key": r.key_uri,
                "provider": r.report.provider,
                "public-key": public,
                "challenge-signature": format!("verified ({})", r.report.challenge_scheme),
                "certificate-object": object,
                "token": r.token_status,
            })
        );
        return;
    }
    outln!("key: {}", r.key_uri);
    outln!("provider: {}", r.report.provider);
    outln!("public key: {public}");
    outln!(
        "challenge: signed by the key, verified with the certificate ({})",
        r.report.challenge_scheme
    );
    outln!("certificate object: {object}");
    if let Some(t) = &r.token_status {
        outln!("token: {t}");
    }
}

impl CardVerifyArgs {
    /// Runs the command.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let r = ctx.manager()?.card_verify(&ctx.name(&self.name)?)?;
        if !ctx.quiet || ctx.json {
            print_result(&r, ctx.json);
        }
        Ok(())
    }
}

impl CardReinstallArgs {
    /// Runs the command.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let force = self.force.unwrap_or(false);
        let verified = ctx
            .manager()?
            .card_reinstall(&ctx.name(&self.name)?, force)?;
        if ctx.json {
            outln!(
                "{}",
                serde_json::json!({ "reinstalled": self.name, "verified": verified.is_some() })
            );
        } else if !ctx.quiet {
            match &verified {
                Some(r) => print_result(r, false),
                None => outln!("card-verify skipped (--force)"),
            }
            outln!("certificate \"{}\" written to the token", self.name);
        }
        Ok(())
    }
}

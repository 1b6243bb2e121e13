//! `certman issued-revoke NAME… [reason=…]`.

use clap::Args;

use super::out::outln;
use super::{CliError, Ctx};
use crate::error::ManagerError;
use crate::x509::crl::RevocationReason;

/// `issued-revoke NAME… [reason=key-compromise|…]`
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The certificates to revoke (issued by a local CA); all or none are revoked.
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    /// Why: unspecified, key-compromise, ca-compromise, affiliation-changed, superseded,
    /// cessation-of-operation, privilege-withdrawn, aa-compromise.
    #[arg(long)]
    pub reason: Option<String>,
}

impl RevokeArgs {
    /// Runs the command.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let reason = self
            .reason
            .as_deref()
            .map(str::parse::<RevocationReason>)
            .transpose()
            .map_err(|e| ManagerError::InvalidValue(e.to_string()))?;
        let report = ctx.manager()?.revoke(&ctx.names(&self.names)?, reason)?;
        if ctx.json {
            outln!(
                "{}",
                serde_json::json!({
                    "revoked": report.revoked,
                    "reason": reason.map(|r| r.name()),
                    "crls": report.crls.iter().map(|(ca, n)| serde_json::json!({"ca": ca, "number": n})).collect::<Vec<_>>(),
                    "stale-series": report.stale_series.iter().map(|(ca, left)| serde_json::json!({"ca": ca, "left": left})).collect::<Vec<_>>(),
                })
            );
        } else if !ctx.quiet {
            for n in &report.revoked {
                outln!("revoked {n}");
            }
            for (ca, number) in &report.crls {
                outln!("crl of {ca}: number {number}");
            }
        }
        // Said even with --quiet and --json: the operator planned on the series.
        for (ca, left) in &report.stale_series {
            eprintln!(
                "certman issued-revoke: warning: the presigned CRLs of {ca} are stale now: {left} \
                 still to be published will not be (they lack this revocation); presign again \
                 with `certman crl presign {ca} count=N` while its token is present"
            );
        }
        Ok(())
    }
}

//! `certman add-scep` and `certman scep-renew` (RouterOS `/certificate add-scep`,
//! `scep-renew`): a SCEP client enrolled now, then kept up to date by `certman serve`.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::out::outln;
use super::output::routeros_time;
use super::{secret, yes_no, CliError, Ctx};
use crate::error::ManagerError;
use crate::manager::{
    AddScep, ClientTiming, KeyLocation, RaServer, ScepClientKind, ScepClientStatus, ScepClientView,
};
use crate::protocols::fetch::{FetchLimits, Fetcher};
use crate::protocols::scep::enrolment::{Enroller, ScepClients};
use crate::protocols::scep::message::MessageLimits;

/// The largest SCEP reply a client reads.
const MAX_REPLY_BYTES: usize = 256 * 1024;
/// How long one exchange with a SCEP server may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// `add-scep template=… scep-url=… [name=] [challenge-password=] [ca-identity=]
/// [on-smart-card=] [refresh=] [ca-fingerprint=]`
#[derive(Debug, Args)]
pub struct AddScepArgs {
    /// The template (consumed): the certificate keeps its name.
    #[arg(long)]
    pub template: String,
    /// The server's URL with its CGI path and program (http://ca/scep/test/pkiclient.exe).
    #[arg(long)]
    pub scep_url: String,
    /// The client's name [default: the template's]; the CA is recorded as NAME_CA.
    #[arg(long)]
    pub name: Option<String>,
    /// The challenge password (a one-time password of the server).
    #[arg(long)]
    pub challenge_password: Option<String>,
    /// Where to read the challenge password: file:PATH, env:VAR, fd:N or prompt.
    #[arg(long, conflicts_with = "challenge_password")]
    pub challenge_password_source: Option<String>,
    /// The CA identity some servers want (GetCACert's message=).
    #[arg(long)]
    pub ca_identity: Option<String>,
    /// Generate the key on this token profile (`yes` = the default token).
    #[arg(long)]
    pub on_smart_card: Option<String>,
    /// yes: enrol again once the certificate has expired.
    #[arg(long, value_parser = yes_no)]
    pub refresh: Option<bool>,
    /// The SHA-256 fingerprint the CA must have (else it is printed to compare).
    #[arg(long)]
    pub ca_fingerprint: Option<String>,
}

/// `scep-renew NAME`: the client's next step now (renew an issued certificate, poll or
/// resend a pending request).
#[derive(Debug, Args)]
pub struct ScepRenewArgs {
    /// The client (or its certificate's name).
    pub name: String,
}

/// `scep-server ra …`
#[derive(Debug, Args)]
pub struct RaArgs {
    #[command(subcommand)]
    pub command: RaCommand,
}

/// RA-mode commands.
#[derive(Debug, clap::Subcommand)]
pub enum RaCommand {
    /// Enrol an RA certificate at server-url and serve clients at ra-path, forwarding upstream.
    Add(Box<RaAddArgs>),
    /// List the RAs and their status (print [detail]).
    Print {
        /// `detail`
        #[arg(value_name = "detail")]
        mode: Option<String>,
    },
    /// Renew an RA's certificate now (or poll its pending request).
    Renew {
        /// The RA.
        name: String,
    },
}

/// `scep-server ra add name= server-url= template= [challenge-password=] [ca-identity=]
/// [ra-path=/scep/NAME] [on-smart-card=] [ra-transaction-lifetime=] [ca-fingerprint=]`
#[derive(Debug, Args)]
pub struct RaAddArgs {
    /// The RA's name (its CA is recorded as NAME_CA).
    #[arg(long)]
    pub name: String,
    /// The upstream SCEP server, with its CGI path and program.
    #[arg(long)]
    pub server_url: String,
    /// The template of the RA certificate (consumed; RSA, not a CA).
    #[arg(long)]
    pub template: String,
    /// The upstream server's challenge password.
    #[arg(long)]
    pub challenge_password: Option<String>,
    /// Where to read the challenge password: file:PATH, env:VAR, fd:N or prompt.
    #[arg(long, conflicts_with = "challenge_password")]
    pub challenge_password_source: Option<String>,
    /// The CA identity the upstream server wants.
    #[arg(long)]
    pub ca_identity: Option<String>,
    /// The path clients enrol at [default: /scep/NAME].
    #[arg(long)]
    pub ra_path: Option<String>,
    /// Generate the RA key on this token profile.
    #[arg(long)]
    pub on_smart_card: Option<String>,
    /// How long a forwarded request may wait upstream [default: 5m].
    #[arg(long)]
    pub ra_transaction_lifetime: Option<String>,
    /// The SHA-256 fingerprint the upstream CA must have.
    #[arg(long)]
    pub ca_fingerprint: Option<String>,
}

impl RaArgs {
    /// Runs the command.
    pub fn run(&self, ctx: &Ctx, manager: Arc<crate::manager::Manager>) -> Result<(), CliError> {
        let port: Arc<dyn ScepClients> = manager.clone();
        match &self.command {
            RaCommand::Add(a) => {
                let lifetime = match &a.ra_transaction_lifetime {
                    Some(v) => crate::manager::scep::parse_duration(v)?,
                    None => crate::manager::scep::MIN_REQUEST_LIFETIME,
                };
                let add = AddScep {
                    template: a.template.clone(),
                    name: Some(a.name.clone()),
                    url: a.server_url.clone(),
                    challenge_password: secret(
                        &a.challenge_password,
                        &a.challenge_password_source,
                        "challenge password",
                        "challenge-password",
                        false,
                    )?,
                    ca_identity: a.ca_identity.clone(),
                    key_location: match &a.on_smart_card {
                        Some(p) => KeyLocation::Profile(p.clone()),
                        None => KeyLocation::Software,
                    },
                    refresh: true,
                    ca_fingerprint: a.ca_fingerprint.clone(),
                    kind: Some(ScepClientKind::Ra),
                    ra: Some(RaServer {
                        path: a
                            .ra_path
                            .clone()
                            .unwrap_or_else(|| format!("/scep/{}", a.name)),
                        transaction_lifetime: lifetime,
                    }),
                };
                let view = block_on(enroller(port)?.add(add))??;
                report(ctx, &view)
            }
            RaCommand::Print { mode } => {
                let detail = match mode.as_deref() {
                    None => false,
                    Some("detail") => true,
                    Some(other) => {
                        return Err(ManagerError::InvalidValue(format!(
                            "print takes `detail`, not '{other}'"
                        ))
                        .into())
                    }
                };
                let ras: Vec<ScepClientView> = manager
                    .scep_clients()?
                    .into_iter()
                    .filter(|c| c.kind == ScepClientKind::Ra)
                    .collect();
                print_clients(ctx, &ras, detail);
                Ok(())
            }
            RaCommand::Renew { name } => {
                let view = match block_on(enroller(port)?.step(name, true))?? {
                    Some(v) => v,
                    None => manager.scep_client(name)?,
                };
                report(ctx, &view)
            }
        }
    }
}

/// Prints SCEP clients as a table or in detail (JSON with `--json`).
pub(crate) fn print_clients(ctx: &Ctx, clients: &[ScepClientView], detail: bool) {
    if ctx.json {
        let all: Vec<serde_json::Value> = clients.iter().map(client_json).collect();
        outln!("{}", serde_json::Value::Array(all));
        return;
    }
    if detail {
        for (i, c) in clients.iter().enumerate() {
            outln!(
                "{i:>2} name=\"{}\" url=\"{}\" status={} certificate={} ca={} next-ca={}\n   \
                 ca-fingerprint={} req-fingerprint={} transaction-id={} capabilities=\"{}\"\n   \
                 detail=\"{}\"",
                c.name,
                c.url,
                c.status.as_str(),
                c.certificate.as_deref().unwrap_or(""),
                c.ca.as_deref().unwrap_or(""),
                c.next_ca.as_deref().unwrap_or(""),
                c.ca_fingerprint,
                c.req_fingerprint,
                c.transaction_id.as_deref().unwrap_or(""),
                c.capabilities,
                c.detail
            );
        }
        return;
    }
    outln!(
        " # {:<16} {:<32} {:<16} URL",
        "NAME",
        "STATUS",
        "CERTIFICATE"
    );
    for (i, c) in clients.iter().enumerate() {
        outln!(
            "{i:>2} {:<16} {:<32} {:<16} {}",
            c.name,
            c.status.as_str(),
            c.certificate.as_deref().unwrap_or(""),
            c.url
        );
    }
}

/// The enroller the CLI uses: its own HTTP client, the default pacing.
pub(crate) fn enroller(port: Arc<dyn ScepClients>) -> Result<Enroller, CliError> {
    let fetcher = Fetcher::new(FetchLimits::new(MAX_REPLY_BYTES, EXCHANGE_TIMEOUT))
        .map_err(|e| ManagerError::Failed(e.to_string()))?;
    Ok(Enroller {
        port,
        fetcher,
        limits: MessageLimits::default(),
        timing: ClientTiming::default(),
    })
}

/// Runs `f` on a small runtime of its own (the CLI is synchronous).
pub(crate) fn block_on<T>(f: impl std::future::Future<Output = T>) -> Result<T, CliError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ManagerError::Failed(format!("cannot start the async runtime: {e}")))?;
    Ok(rt.block_on(f))
}

/// The client as JSON.
pub(crate) fn client_json(v: &ScepClientView) -> serde_json::Value {
    json!({
        "name": v.name,
        "kind": v.kind.as_str(),
        "certificate": v.certificate,
        "scep-url": v.url,
        "ca-identity": v.ca_identity,
        "status": v.status.as_str(),
        "detail": v.detail,
        "ca": v.ca,
        "next-ca": v.next_ca,
        "ca-fingerprint": v.ca_fingerprint,
        "req-fingerprint": v.req_fingerprint,
        "transaction-id": v.transaction_id,
        "capabilities": v.capabilities,
        // as `print` has it: time left (a RouterOS duration); the point in time is invalid-after
        "expires-after": v.expires.map(|e| {
            let left = e - crate::manager::unix_secs(std::time::SystemTime::now());
            if left > 0 {
                crate::manager::view::routeros_duration(left as u64)
            } else {
                "expired".to_owned()
            }
        }),
        "invalid-after": v.expires.map(super::json::time_secs),
        "on-smart-card": v.key_profile,
        "refresh": v.refresh,
    })
}

/// Prints a client after a step; a status that needs the operator is an error instead (one
/// line on stderr, nothing on stdout, as for every failed command).
pub(crate) fn report(ctx: &Ctx, v: &ScepClientView) -> Result<(), CliError> {
    match v.status {
        ScepClientStatus::Issued
        | ScepClientStatus::RequestingPendingCertificate
        | ScepClientStatus::RequestingCertificate => {}
        status => {
            return Err(ManagerError::Failed(format!(
                "SCEP client {}: {}: {} (ca-fingerprint {})",
                v.name,
                status.as_str(),
                v.detail,
                v.ca_fingerprint
            ))
            .into())
        }
    }
    if ctx.json {
        outln!("{}", client_json(v));
    } else if !ctx.quiet {
        outln!(
            "SCEP client {}: status={} ca-fingerprint={}{}",
            v.name,
            v.status.as_str(),
            v.ca_fingerprint,
            v.expires
                .map(|e| format!(
                    " invalid-after={}",
                    routeros_time(std::time::UNIX_EPOCH + Duration::from_secs(e.max(0) as u64))
                ))
                .unwrap_or_default()
        );
        if !v.detail.is_empty() {
            outln!("  {}", v.detail);
        }
    }
    Ok(())
}

impl AddScepArgs {
    /// Runs the command.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let add = AddScep {
            template: self.template.clone(),
            name: self.name.clone(),
            url: self.scep_url.clone(),
            challenge_password: secret(
                &self.challenge_password,
                &self.challenge_password_source,
                "challenge password",
                "challenge-password",
                false,
            )?,
            ca_identity: self.ca_identity.clone(),
            key_location: match &self.on_smart_card {
                Some(p) => KeyLocation::Profile(p.clone()),
                None => KeyLocation::Software,
            },
            refresh: self.refresh.unwrap_or(false),
            ca_fingerprint: self.ca_fingerprint.clone(),
            kind: Some(ScepClientKind::Client),
            ra: None,
        };
        let port: Arc<dyn ScepClients> = ctx.shared_manager_creating()?;
        let enroller = enroller(port)?;
        let view = block_on(enroller.add(add))??;
        report(ctx, &view)
    }
}

impl ScepRenewArgs {
    /// Runs the command.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let name = ctx.name(&self.name)?;
        let manager = ctx.shared_manager()?;
        let port: Arc<dyn ScepClients> = manager.clone();
        let enroller = enroller(port)?;
        let view = match block_on(enroller.step(&name, true))?? {
            Some(v) => v,
            None => manager.scep_client(&name)?,
        };
        report(ctx, &view)
    }
}

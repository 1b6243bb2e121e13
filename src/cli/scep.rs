//! `certman scep-server add|print|set|remove|enable|disable`, `scep-server otp generate|print`
//! and `scep-server requests print|grant|reject` (RouterOS `/certificate scep-server`).

use clap::{Args, Subcommand};
use serde_json::json;

use super::json;
use super::out::outln;
use super::output::routeros_time;
use super::{yes_no, CliError, Ctx};
use crate::error::ManagerError;
use crate::manager::scep::{format_duration, parse_duration, OtpView};
use crate::manager::{ScepRequestView, ScepServerChanges, ScepServerView};

/// `scep-server …`
#[derive(Debug, Args)]
pub struct ScepServerArgs {
    #[command(subcommand)]
    pub command: ScepServerCommand,
}

/// The settings `add` and `set` take.
#[derive(Debug, Args)]
pub struct ServerProperties {
    /// The CA that issues (a local CA with its key here).
    #[arg(long)]
    pub ca_cert: Option<String>,
    /// The HTTP path, starting with /scep/ (any suffix is answered too: /scep/NAME/pkiclient.exe).
    #[arg(long)]
    pub path: Option<String>,
    /// Validity of issued certificates in days [default: 1, as RouterOS].
    #[arg(long)]
    pub days_valid: Option<u32>,
    /// The next CA certificate (GetNextCACert), or `none`.
    #[arg(long)]
    pub next_ca_cert: Option<String>,
    /// How long a request may wait for a grant (5m or more) [default: 5m].
    #[arg(long)]
    pub request_lifetime: Option<String>,
    /// An RSA certificate (not a CA) issued by the CA that decrypts and signs for it, or `none`.
    #[arg(long)]
    pub ra_cert: Option<String>,
    /// yes: not served (flag X).
    #[arg(long)]
    pub disabled: Option<String>,
}

/// SCEP server commands.
#[derive(Debug, Subcommand)]
pub enum ScepServerCommand {
    /// Add a SCEP server: ca-cert=NAME path=/scep/NAME.
    Add(ServerProperties),
    /// List the SCEP servers (print [detail]).
    Print {
        /// `detail`
        #[arg(value_name = "detail")]
        mode: Option<String>,
    },
    /// Change a SCEP server (by #, path, or the name after /scep/).
    Set {
        /// The server.
        server: String,
        #[command(flatten)]
        properties: ServerProperties,
    },
    /// Remove SCEP servers with their OTPs and requests (issued certificates stay).
    Remove {
        /// Servers.
        #[arg(required = true)]
        servers: Vec<String>,
    },
    /// Serve these SCEP servers again.
    Enable {
        /// Servers.
        #[arg(required = true)]
        servers: Vec<String>,
    },
    /// Stop serving these SCEP servers (flag X).
    Disable {
        /// Servers.
        #[arg(required = true)]
        servers: Vec<String>,
    },
    /// One-time challenge passwords: generate, print.
    Otp(OtpArgs),
    /// The request queue: print, grant, reject.
    Requests(RequestsArgs),
    /// RouterOS RA mode: enrol an RA certificate upstream and forward clients' requests.
    Ra(super::scep_client::RaArgs),
}

/// `scep-server otp …`
#[derive(Debug, Args)]
pub struct OtpArgs {
    #[command(subcommand)]
    pub command: OtpCommand,
}

/// OTP commands.
#[derive(Debug, Subcommand)]
pub enum OtpCommand {
    /// Make a one-time password; it is printed once and stored only hashed.
    Generate {
        /// The server it is good for [default: any].
        #[arg(long)]
        scep_server: Option<String>,
        /// How long it is good for, in minutes.
        #[arg(long)]
        minutes_valid: u32,
    },
    /// List the one-time passwords (never the passwords themselves).
    Print,
}

/// `scep-server requests …`
#[derive(Debug, Args)]
pub struct RequestsArgs {
    #[command(subcommand)]
    pub command: RequestsCommand,
}

/// Request queue commands.
#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// List the requests (print [detail]).
    Print {
        /// `detail`
        #[arg(value_name = "detail")]
        mode: Option<String>,
    },
    /// Issue the certificate of a pending request (by # or transaction id).
    Grant {
        /// The request.
        request: String,
    },
    /// Refuse a pending request (by # or transaction id).
    Reject {
        /// The request.
        request: String,
    },
}

fn detail_mode(mode: &Option<String>) -> Result<bool, CliError> {
    match mode.as_deref() {
        None => Ok(false),
        Some("detail") => Ok(true),
        Some(other) => {
            Err(ManagerError::InvalidValue(format!("print takes `detail`, not '{other}'")).into())
        }
    }
}

fn none_or(value: &Option<String>) -> Option<Option<String>> {
    value
        .as_ref()
        .map(|v| (v != "none" && !v.is_empty()).then(|| v.clone()))
}

impl ServerProperties {
    fn changes(&self) -> Result<ScepServerChanges, CliError> {
        let disabled = self
            .disabled
            .as_deref()
            .map(yes_no)
            .transpose()
            .map_err(|e| ManagerError::InvalidValue(format!("disabled: {e}")))?;
        Ok(ScepServerChanges {
            ca_cert: self.ca_cert.clone(),
            path: self.path.clone(),
            days_valid: self.days_valid,
            next_ca_cert: none_or(&self.next_ca_cert),
            ra_cert: none_or(&self.ra_cert),
            request_lifetime: self
                .request_lifetime
                .as_deref()
                .map(parse_duration)
                .transpose()?,
            disabled,
        })
    }
}

fn server_json(s: &ScepServerView) -> serde_json::Value {
    json!({
        "#": s.number,
        "flags": if s.disabled { "X" } else { "" },
        "path": s.path,
        "ca-cert": s.ca_cert,
        "ra-cert": s.ra_cert,
        "next-ca-cert": s.next_ca_cert,
        "days-valid": s.days_valid,
        "request-lifetime": format_duration(s.request_lifetime),
        "disabled": s.disabled,
        "warnings": s.warnings,
    })
}

fn print_servers(ctx: &Ctx, servers: &[ScepServerView], detail: bool) {
    if ctx.json {
        let v: Vec<_> = servers.iter().map(server_json).collect();
        outln!("{}", serde_json::Value::Array(v));
        return;
    }
    outln!("Flags: X - disabled");
    if detail {
        for s in servers {
            outln!(
                "{:>2} {} path=\"{}\" ca-cert=\"{}\" ra-cert={} next-ca-cert={} days-valid={} request-lifetime={}",
                s.number,
                if s.disabled { "X" } else { " " },
                s.path,
                s.ca_cert,
                s.ra_cert.as_deref().unwrap_or("none"),
                s.next_ca_cert.as_deref().unwrap_or("none"),
                s.days_valid,
                format_duration(s.request_lifetime)
            );
        }
    } else {
        outln!(
            " #   {:<24} {:<20} {:<20} {:>10}",
            "PATH",
            "CA-CERT",
            "RA-CERT",
            "DAYS-VALID"
        );
        for s in servers {
            outln!(
                "{:>2} {} {:<24} {:<20} {:<20} {:>10}",
                s.number,
                if s.disabled { "X" } else { " " },
                s.path,
                s.ca_cert,
                s.ra_cert.as_deref().unwrap_or(""),
                s.days_valid
            );
        }
    }
    for s in servers {
        for w in &s.warnings {
            eprintln!("certman scep-server: warning: {}: {w}", s.path);
        }
    }
}

fn print_otps(ctx: &Ctx, otps: &[OtpView]) {
    if ctx.json {
        let v: Vec<_> = otps
            .iter()
            .map(|o| {
                json!({
                    "#": o.number,
                    "flags": if o.expired { "E" } else { "" },
                    "scep-server": o.server,
                    "created": json::time(o.created),
                    "expires": json::time(o.expires),
                    "used": o.used.map(json::time),
                    "expired": o.expired,
                })
            })
            .collect();
        outln!("{}", serde_json::Value::Array(v));
        return;
    }
    outln!("Flags: E - expired");
    outln!(
        " #   {:<20} {:<20} {:<20} SCEP-SERVER",
        "EXPIRES",
        "USED",
        "CREATED"
    );
    for o in otps {
        outln!(
            "{:>2} {} {:<20} {:<20} {:<20} {}",
            o.number,
            if o.expired { "E" } else { " " },
            routeros_time(o.expires),
            o.used.map(routeros_time).unwrap_or_default(),
            routeros_time(o.created),
            o.server.as_deref().unwrap_or("any")
        );
    }
}

fn request_json(r: &ScepRequestView) -> serde_json::Value {
    json!({
        "#": r.number,
        "authority": r.authority,
        "scep-server": r.server,
        "status": r.status.word(),
        "common-name": r.common_name,
        "subject": r.subject,
        "subject-alt-name": r.subject_alt_name,
        "transaction-id": r.transaction_id,
        "req-fingerprint": r.req_fingerprint,
        "created": json::time(r.created),
        "certificate": r.certificate,
    })
}

fn print_requests(ctx: &Ctx, requests: &[ScepRequestView], detail: bool) {
    if ctx.json {
        let v: Vec<_> = requests.iter().map(request_json).collect();
        outln!("{}", serde_json::Value::Array(v));
        return;
    }
    if detail {
        for r in requests {
            outln!(
                "{:>2} authority={} status={} common-name=\"{}\" subject=\"{}\" subject-alt-name=\"{}\"\n   \
                 transaction-id=\"{}\" req-fingerprint={} created={} scep-server={}{}",
                r.number,
                r.authority,
                r.status,
                super::output::esc(&r.common_name),
                super::output::esc(&r.subject),
                super::output::esc(&r.subject_alt_name),
                r.transaction_id,
                r.req_fingerprint,
                routeros_time(r.created),
                r.server,
                r.certificate
                    .as_deref()
                    .map(|c| format!(" certificate={c}"))
                    .unwrap_or_default()
            );
        }
        return;
    }
    outln!(
        " # {:<15} {:<10} {:<30} CREATED",
        "AUTHORITY",
        "STATUS",
        "COMMON-NAME"
    );
    for r in requests {
        outln!(
            "{:>2} {:<15} {:<10} {:<30} {}",
            r.number,
            r.authority,
            r.status.word(),
            super::output::esc(&r.common_name),
            routeros_time(r.created)
        );
    }
}

impl ScepServerArgs {
    /// Runs the command.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        if let ScepServerCommand::Ra(r) = &self.command {
            return r.run(ctx, ctx.shared_manager()?);
        }
        let m = ctx.manager()?;
        match &self.command {
            ScepServerCommand::Add(p) => {
                let view = m.scep_server_add(&p.changes()?)?;
                if ctx.json {
                    outln!("{}", server_json(&view));
                } else {
                    if !ctx.quiet {
                        outln!("added SCEP server {} (CA \"{}\")", view.path, view.ca_cert);
                    }
                    for w in &view.warnings {
                        eprintln!("certman scep-server add: warning: {w}");
                    }
                }
            }
            ScepServerCommand::Print { mode } => {
                let servers = m.scep_servers()?;
                let paths: Vec<String> = servers.iter().map(|s| s.path.clone()).collect();
                ctx.numbers
                    .record(super::numbers::Menu::ScepServers, &paths);
                print_servers(ctx, &servers, detail_mode(mode)?)
            }
            ScepServerCommand::Set { server, properties } => {
                let server = ctx.scep_servers(std::slice::from_ref(server))?;
                if server.len() != 1 {
                    return Err(
                        ManagerError::InvalidValue("set takes one SCEP server".into()).into(),
                    );
                }
                let view = m.scep_server_set(&server[0], &properties.changes()?)?;
                if ctx.json {
                    json::print(&server_json(&view));
                }
            }
            ScepServerCommand::Remove { servers } => {
                let removed = m.scep_server_remove(&ctx.scep_servers(servers)?)?;
                if ctx.json {
                    outln!("{}", json!({ "removed": removed }));
                } else if !ctx.quiet {
                    for p in removed {
                        outln!("removed SCEP server {p}");
                    }
                }
            }
            ScepServerCommand::Enable { servers } | ScepServerCommand::Disable { servers } => {
                let enable = matches!(self.command, ScepServerCommand::Enable { .. });
                let views = m.scep_server_enable(&ctx.scep_servers(servers)?, enable)?;
                if ctx.json {
                    json::print(&serde_json::Value::Array(
                        views.iter().map(server_json).collect(),
                    ));
                }
            }
            ScepServerCommand::Otp(o) => match &o.command {
                OtpCommand::Generate {
                    scep_server,
                    minutes_valid,
                } => {
                    let otp = m.scep_otp_generate(scep_server.as_deref(), *minutes_valid)?;
                    if ctx.json {
                        outln!(
                            "{}",
                            json!({
                                "password": otp.password.secret_str(),
                                "expires": json::time(otp.expires),
                                "scep-server": otp.server,
                            })
                        );
                    } else {
                        // The one time the password is shown; print it even with -q.
                        outln!("  password: {}", otp.password.secret_str());
                        if !ctx.quiet {
                            outln!("   expires: {}", routeros_time(otp.expires));
                        }
                    }
                }
                OtpCommand::Print => print_otps(ctx, &m.scep_otps()?),
            },
            ScepServerCommand::Requests(r) => match &r.command {
                RequestsCommand::Print { mode } => {
                    print_requests(ctx, &m.scep_requests()?, detail_mode(mode)?)
                }
                RequestsCommand::Grant { request } => {
                    let name = m.scep_grant(request)?;
                    if ctx.json {
                        outln!("{}", json!({ "granted": request, "certificate": name }));
                    } else if !ctx.quiet {
                        outln!("granted {request}: issued {name}");
                    }
                }
                RequestsCommand::Reject { request } => {
                    m.scep_reject(request)?;
                    if ctx.json {
                        outln!("{}", json!({ "rejected": request }));
                    } else if !ctx.quiet {
                        outln!("rejected {request}");
                    }
                }
            },
            ScepServerCommand::Ra(_) => unreachable!("run above"),
        }
        Ok(())
    }
}

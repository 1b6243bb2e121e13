//! `certman crl print|download|flush|renew|presign|export`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::json;
use super::out::{self, outln};
use super::output::routeros_time;
use super::{CliError, Ctx};
use crate::error::ManagerError;

/// `crl …`
#[derive(Debug, Args)]
pub struct CrlArgs {
    #[command(subcommand)]
    pub command: CrlCommand,
}

/// CRL commands.
#[derive(Debug, Subcommand)]
pub enum CrlCommand {
    /// List the CRLs: the local CAs' own and those downloaded for trusted certificates.
    Print,
    /// Download now the CRLs of trusted certificates (their http CRL distribution points).
    Download,
    /// Drop the downloaded CRLs (the local CAs' own stay).
    Flush,
    /// Make a new CRL now for the CAs named (default: every local CA with a key).
    Renew {
        /// CAs.
        #[arg(value_name = "CA")]
        names: Vec<String>,
    },
    /// Sign, while the CA's token is present, a series of future CRLs (the next CRL numbers,
    /// listing the current revocations) that `serve` publishes one by one at their
    /// thisUpdate, so that an offline root's token can go back to the safe for count
    /// intervals. A revocation by the CA makes the rest of the series stale; presigning again
    /// replaces the series.
    Presign {
        /// The CA.
        #[arg(value_name = "CA")]
        name: String,
        /// How many CRLs to sign ahead.
        #[arg(long)]
        count: u32,
        /// Time between two of them (`1d`, `12h`, `1w`; 1h to 366d).
        #[arg(long, default_value = "1d")]
        interval: String,
    },
    /// Write a CA's current CRL (DER) to a file.
    Export {
        /// The CA.
        name: String,
        /// The file [default: NAME.crl]; `-` writes to stdout.
        #[arg(long)]
        file_name: Option<PathBuf>,
    },
}

fn when(secs: Option<i64>) -> String {
    secs.map(|s| {
        routeros_time(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s.max(0) as u64))
    })
    .unwrap_or_default()
}

/// The presigned series under `crl print`'s table.
fn print_series(series: &[crate::manager::CrlSeriesStatus]) {
    if series.is_empty() {
        return;
    }
    outln!();
    outln!(
        " {:<16} {:<11} {:>5} {:>5} {:<20} {:<20} STATE",
        "PRESIGNED",
        "NUMBERS",
        "COUNT",
        "LEFT",
        "NEXT-PUBLICATION",
        "UNTIL"
    );
    for s in series {
        outln!(
            " {:<16} {:<11} {:>5} {:>5} {:<20} {:<20} {}",
            s.ca,
            format!("{}-{}", s.first, s.last),
            s.count,
            s.left,
            when(s.next_publication),
            when(Some(s.until)),
            if s.stale {
                "stale (a newer CRL was made: presign again)"
            } else {
                "current"
            }
        );
    }
}

/// `crl presign CA count=N interval=1d`.
fn presign(ctx: &Ctx, name: &str, count: u32, interval: &str) -> Result<(), CliError> {
    let step = super::filter::parse_duration(interval).ok_or_else(|| {
        ManagerError::InvalidValue(format!(
            "interval={interval}: a duration is expected (e.g. 1d, 12h, 1w)"
        ))
    })?;
    let r = ctx.manager()?.presign_crls(name, count, step)?;
    if ctx.json {
        let crls: Vec<_> = r
            .crls
            .iter()
            .map(|c| {
                serde_json::json!({
                    "number": c.number,
                    "this-update": json::time_secs(c.this_update),
                    "next-update": json::time_secs(c.next_update),
                    "entries": c.entries,
                })
            })
            .collect();
        outln!(
            "{}",
            serde_json::json!({
                "ca": r.ca,
                "count": r.crls.len(),
                "interval": step.as_secs(),
                "replaced": r.replaced,
                "crls": crls,
            })
        );
    } else if !ctx.quiet {
        if r.replaced > 0 {
            outln!(
                "the previous series of {} ({} CRLs) is replaced",
                r.ca,
                r.replaced
            );
        }
        if let (Some(first), Some(last)) = (r.crls.first(), r.crls.last()) {
            outln!(
                    "presigned {} CRLs of {}: numbers {}-{}, listing {} revoked, published from {} every {interval}; the last is valid until {}",
                    r.crls.len(),
                    r.ca,
                    first.number,
                    last.number,
                    first.entries,
                    when(Some(first.this_update)),
                    when(Some(last.next_update))
                );
        }
    }
    Ok(())
}

/// `crl download`: every trusted certificate's http CDP, now (whatever crl-download says).
fn download(ctx: &Ctx) -> Result<(), CliError> {
    use crate::protocols::crl_download::download_crls;
    use crate::protocols::fetch::FetchLimits;
    let manager = ctx.shared_manager()?;
    let outcomes = download_crls(&manager, &FetchLimits::default())?;
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    if ctx.json {
        let v: Vec<_> = outcomes
            .iter()
            .map(|o| {
                serde_json::json!({
                    "certificate": o.target.certificate,
                    "url": o.target.url,
                    "stored": o.result.is_ok(),
                    "issuer": o.result.as_ref().ok().map(|c| c.issuer.clone()),
                    "number": o.result.as_ref().ok().and_then(|c| c.number),
                    "entries": o.result.as_ref().ok().map(|c| c.entries),
                    "error": o.result.as_ref().err().map(|e| e.to_string()),
                })
            })
            .collect();
        outln!("{}", serde_json::Value::Array(v));
    } else {
        for o in &outcomes {
            match &o.result {
                Ok(_) if !ctx.quiet => outln!("{o}"),
                Ok(_) => {}
                Err(_) => eprintln!("certman crl download: {o}"),
            }
        }
        if outcomes.is_empty() && !ctx.quiet {
            outln!("no trusted certificate has an http CRL distribution point");
        }
    }
    if failed > 0 {
        return Err(ManagerError::Failed(format!(
            "{failed} of {} CRL downloads failed",
            outcomes.len()
        ))
        .into());
    }
    Ok(())
}

impl CrlArgs {
    /// Runs the command.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        match &self.command {
            CrlCommand::Print => {
                let manager = ctx.manager()?;
                let list = manager.crl_listing()?;
                let series = manager.crl_series_status()?;
                if ctx.json {
                    let v: Vec<_> = list
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            serde_json::json!({
                                "#": i,
                                "ca": c.ca,
                                "source": c.source,
                                "number": c.number,
                                "this-update": json::time_secs(c.this_update),
                                "next-update": c.next_update.map(json::time_secs),
                                "entries": c.entries,
                                "fetched-at": c.fetched_at.map(json::time_secs),
                            })
                        })
                        .collect();
                    let mut v = v;
                    v.extend(series.iter().map(|s| {
                        serde_json::json!({
                            "ca": s.ca,
                            "source": "presigned",
                            "first": s.first,
                            "last": s.last,
                            "count": s.count,
                            "left": s.left,
                            "next-publication": s.next_publication.map(json::time_secs),
                            "until": json::time_secs(s.until),
                            "stale": s.stale,
                        })
                    }));
                    outln!("{}", serde_json::Value::Array(v));
                } else if !ctx.quiet {
                    outln!(
                        " {:<2} {:<16} {:>7} {:>8} {:<20} {:<20} SOURCE",
                        "#",
                        "CA",
                        "NUMBER",
                        "ENTRIES",
                        "THIS-UPDATE",
                        "NEXT-UPDATE"
                    );
                    for (i, c) in list.iter().enumerate() {
                        outln!(
                            " {:<2} {:<16} {:>7} {:>8} {:<20} {:<20} {}",
                            i,
                            c.ca,
                            c.number.map(|n| n.to_string()).unwrap_or_default(),
                            c.entries,
                            when(Some(c.this_update)),
                            when(c.next_update),
                            c.source
                        );
                    }
                    print_series(&series);
                }
            }
            CrlCommand::Presign {
                name,
                count,
                interval,
            } => return presign(ctx, name, *count, interval),
            CrlCommand::Download => return download(ctx),
            CrlCommand::Flush => {
                let n = ctx.manager()?.crl_flush()?;
                if ctx.json {
                    outln!("{}", serde_json::json!({ "crls-flushed": n }));
                } else if !ctx.quiet {
                    outln!("crls-flushed: {n}");
                }
            }
            CrlCommand::Renew { names } => {
                let m = ctx.manager()?;
                let made: Vec<(String, Result<u64, ManagerError>)> = if names.is_empty() {
                    m.renew_all_crls()
                        .into_iter()
                        .map(|r| (r.ca, r.result))
                        .collect()
                } else {
                    // Named CAs: the first failure is the command's error (its exit code).
                    let mut v = Vec::new();
                    for n in names {
                        let number = m.renew_crl(n)?;
                        v.push((n.clone(), Ok(number)));
                    }
                    v
                };
                let failed = made.iter().filter(|(_, r)| r.is_err()).count();
                if ctx.json {
                    let v: Vec<_> = made
                        .iter()
                        .map(|(ca, r)| match r {
                            Ok(n) => serde_json::json!({"ca": ca, "number": n}),
                            Err(e) => serde_json::json!({"ca": ca, "error": e.to_string()}),
                        })
                        .collect();
                    outln!("{}", serde_json::Value::Array(v));
                } else {
                    for (ca, r) in &made {
                        match r {
                            Ok(n) if !ctx.quiet => outln!("crl of {ca}: number {n}"),
                            Ok(_) => {}
                            Err(e) => eprintln!("certman crl renew: crl of {ca} not renewed: {e}"),
                        }
                    }
                }
                if failed > 0 {
                    return Err(ManagerError::Failed(format!(
                        "{failed} of {} CRLs not renewed",
                        made.len()
                    ))
                    .into());
                }
            }
            CrlCommand::Export { name, file_name } => {
                let (number, der) = ctx.manager()?.crl_of(name)?;
                let path = file_name
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(format!("{name}.crl")));
                if path.as_os_str() == "-" && ctx.json {
                    // JSON cannot hold DER: the CRL as PEM, a string
                    let pem = der::pem::encode_string("X509 CRL", der::pem::LineEnding::LF, &der)
                        .map_err(|e| ManagerError::Failed(format!("CRL as PEM: {e}")))?;
                    json::print(&serde_json::json!({"ca": name, "number": number, "pem": pem}));
                    return Ok(());
                }
                if path.as_os_str() == "-" {
                    out::bytes(&der);
                    return Ok(());
                }
                let path = super::cwd()?.join(path);
                crate::fsutil::write_atomic(&path, &der, 0o644).map_err(|source| {
                    ManagerError::File {
                        path: path.clone(),
                        source,
                    }
                })?;
                super::print_files(ctx, &[path]);
            }
        }
        Ok(())
    }
}

//! `certman verify FILE [purpose=tls-server|tls-client|any]`: prints the chain that path
//! validation built and its verdict.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Local, SecondsFormat};
use clap::Args;
use serde_json::{json, Value as Json};

use super::output::routeros_time;
use super::{CliError, Ctx};
use crate::x509::path::{ChainCert, CrlRef, PathReport, Purpose, Revocation, Verdict};

/// `verify FILE [purpose=…]` (`file-name=FILE` as RouterOS spells it)
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The certificate file (PEM or DER); further certificates in it may serve as intermediates.
    #[arg(
        value_name = "FILE",
        required_unless_present = "file_name",
        conflicts_with = "file_name"
    )]
    pub file: Option<PathBuf>,
    /// The certificate file, RouterOS spelling (`file-name=FILE`).
    #[arg(long = "file-name", value_name = "FILE")]
    pub file_name: Option<PathBuf>,
    /// What the certificate must be valid for: tls-server, tls-client or any.
    #[arg(long, default_value = "any", value_name = "tls-server|tls-client|any")]
    pub purpose: Purpose,
}

impl VerifyArgs {
    /// The file to verify, however it was given (clap requires one of the two spellings).
    pub fn file(&self) -> &Path {
        self.file
            .as_deref()
            .or(self.file_name.as_deref())
            .unwrap_or(Path::new(""))
    }

    /// Runs the command: exit 0 when the certificate is valid, 1 when not (the report is
    /// printed either way).
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let file = super::cwd()?.join(self.file());
        let report = ctx.manager()?.verify_file(&file, self.purpose)?;
        print_report(ctx, &report);
        match &report.verdict {
            Verdict::Valid => Ok(()),
            Verdict::Invalid { reason, .. } => Err(crate::error::ManagerError::Failed(format!(
                "{} is not valid: {reason}",
                self.file().display()
            ))
            .into()),
        }
    }
}

/// Prints the report: one line per chain certificate and the verdict; `--json`: one object
/// `{"chain": […], "valid": bool, "reason": …}`; `-q`: the verdict line only.
pub(crate) fn print_report(ctx: &Ctx, report: &PathReport) {
    if ctx.json {
        println!("{}", report_json(report));
        return;
    }
    if !ctx.quiet {
        for (i, c) in report.chain.iter().enumerate() {
            println!("{}", cert_line(i, c));
        }
    }
    println!("{}", verdict_line(&report.verdict));
}

/// `verdict: valid` or `verdict: INVALID: <reason>`.
pub(crate) fn verdict_line(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Valid => "verdict: valid".to_owned(),
        Verdict::Invalid { reason, .. } => format!("verdict: INVALID: {reason}"),
    }
}

/// `0 subject=… issuer=… serial=… valid=…..… [name] status=…`
fn cert_line(position: usize, c: &ChainCert) -> String {
    let mut line = format!(
        "{position} subject={} issuer={} serial={} valid={}",
        quoted(&c.subject),
        quoted(&c.issuer),
        c.serial_hex,
        quoted(&format!(
            "{}..{}",
            routeros_time(c.not_before),
            routeros_time(c.not_after)
        )),
    );
    if let Some(name) = &c.store_name {
        line.push_str(&format!(" [{name}]"));
    }
    line.push_str(&format!(" status={}", quoted(&status_text(c))));
    line
}

/// A value as RouterOS prints it: in double quotes when it holds blanks or quotes.
fn quoted(v: &str) -> String {
    if v.is_empty() || v.contains([' ', '"', '\t']) {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        v.to_owned()
    }
}

fn crl_text(crl: &CrlRef) -> String {
    match &crl.number {
        Some(n) => format!("CRL #{n} of {}", routeros_time(crl.this_update)),
        None => format!("CRL of {}", routeros_time(crl.this_update)),
    }
}

/// The revocation status as one phrase, with the CRLs that were left out.
pub(crate) fn status_text(c: &ChainCert) -> String {
    let mut s = match &c.revocation {
        Revocation::NotChecked => "not checked (crl-use=no)".to_owned(),
        Revocation::TrustAnchor => "trust anchor".to_owned(),
        Revocation::IssuerUnknown => "not checked (issuer unknown)".to_owned(),
        Revocation::NoCrl => "unknown: no CRL of its issuer is held".to_owned(),
        Revocation::Good { crl } => format!("good per {}", crl_text(crl)),
        Revocation::Revoked { crl, at, reason } => {
            let why = reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            format!(
                "REVOKED at {}{why} per {}",
                routeros_time(*at),
                crl_text(crl)
            )
        }
        Revocation::CrlExpired { crl } => {
            let next = crl
                .next_update
                .map(|t| format!(", next update was due {}", routeros_time(t)))
                .unwrap_or_default();
            format!("unknown: {} has expired{next}", crl_text(crl))
        }
    };
    for ignored in &c.ignored_crls {
        s.push_str(&format!(
            "; ignored {}: {}",
            crl_text(&ignored.crl),
            ignored.why
        ));
    }
    s
}

fn json_time(t: std::time::SystemTime) -> Json {
    Json::String(DateTime::<Local>::from(t).to_rfc3339_opts(SecondsFormat::Secs, false))
}

fn crl_json(crl: &CrlRef) -> Json {
    json!({
        "crl-number": crl.number,
        "this-update": json_time(crl.this_update),
        "next-update": crl.next_update.map(json_time),
    })
}

fn revocation_json(r: &Revocation) -> Json {
    match r {
        Revocation::NotChecked => json!({ "status": "not-checked" }),
        Revocation::TrustAnchor => json!({ "status": "trust-anchor" }),
        Revocation::IssuerUnknown => json!({ "status": "issuer-unknown" }),
        Revocation::NoCrl => json!({ "status": "no-crl" }),
        Revocation::Good { crl } => json!({ "status": "good", "crl": crl_json(crl) }),
        Revocation::Revoked { crl, at, reason } => json!({
            "status": "revoked",
            "revoked-at": json_time(*at),
            "reason": reason,
            "crl": crl_json(crl),
        }),
        Revocation::CrlExpired { crl } => json!({ "status": "crl-expired", "crl": crl_json(crl) }),
    }
}

/// The report as one JSON object, keys in RouterOS property style.
pub(crate) fn report_json(report: &PathReport) -> Json {
    let chain: Vec<Json> = report
        .chain
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "#": i,
                "name": c.store_name,
                "subject": c.subject,
                "issuer": c.issuer,
                "serial-number": c.serial_hex,
                "fingerprint": c.fingerprint,
                "invalid-before": json_time(c.not_before),
                "invalid-after": json_time(c.not_after),
                "trust-anchor": c.trust_anchor,
                "revocation": revocation_json(&c.revocation),
                "ignored-crls": c.ignored_crls.iter().map(|x| {
                    let mut o = crl_json(&x.crl);
                    o["why"] = Json::String(x.why.clone());
                    o
                }).collect::<Vec<_>>(),
                "status": status_text(c),
            })
        })
        .collect();
    let reason = match &report.verdict {
        Verdict::Valid => Json::Null,
        Verdict::Invalid { reason, .. } => Json::String(reason.clone()),
    };
    json!({
        "chain": chain,
        "valid": report.verdict == Verdict::Valid,
        "reason": reason,
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use clap::Parser;

    use super::*;
    use crate::x509::path::{Failure, IgnoredCrl};

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: VerifyArgs,
    }

    fn parse(args: &[&str]) -> Result<VerifyArgs, clap::Error> {
        let argv = super::super::normalize_args(
            std::iter::once("verify")
                .chain(args.iter().copied())
                .map(std::ffi::OsString::from),
        );
        Cmd::try_parse_from(argv).map(|c| c.args)
    }

    #[test]
    fn file_and_purpose_in_both_spellings() {
        let a = parse(&["srv.crt", "purpose=tls-server"]).unwrap();
        assert_eq!(a.file(), Path::new("srv.crt"));
        assert_eq!(a.purpose, Purpose::TlsServer);
        let a = parse(&["file-name=srv.crt"]).unwrap();
        assert_eq!(a.file(), Path::new("srv.crt"));
        assert_eq!(a.purpose, Purpose::Any);
        let a = parse(&["--purpose", "tls-client", "srv.crt"]).unwrap();
        assert_eq!(a.purpose, Purpose::TlsClient);
        assert!(parse(&[]).is_err());
        assert!(parse(&["a.crt", "file-name=b.crt"]).is_err());
        assert!(parse(&["a.crt", "purpose=server"]).is_err());
    }

    fn report() -> PathReport {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let crl = CrlRef {
            number: Some("7".into()),
            this_update: t,
            next_update: Some(t + Duration::from_secs(86_400)),
        };
        let cert = |subject: &str, issuer: &str, revocation| ChainCert {
            store_name: None,
            subject: subject.into(),
            issuer: issuer.into(),
            serial_hex: "01AB".into(),
            fingerprint: "00".into(),
            not_before: t,
            not_after: t,
            trust_anchor: false,
            revocation,
            ignored_crls: Vec::new(),
        };
        let mut leaf = cert(
            "CN=srv.example",
            "CN=My CA",
            Revocation::Revoked {
                crl: crl.clone(),
                at: t,
                reason: Some("key-compromise".into()),
            },
        );
        leaf.ignored_crls.push(IgnoredCrl {
            crl: crl.clone(),
            why: "signature does not verify with the issuer's key".into(),
        });
        let mut ca = cert("CN=My CA", "CN=My CA", Revocation::TrustAnchor);
        ca.trust_anchor = true;
        ca.store_name = Some("ca".into());
        PathReport {
            chain: vec![leaf, ca],
            verdict: Verdict::Invalid {
                kind: Failure::Revoked,
                reason: "certificate revoked".into(),
            },
        }
    }

    #[test]
    fn lines_show_each_certificate_and_its_status() {
        let r = report();
        let line = cert_line(0, &r.chain[0]);
        assert!(
            line.starts_with("0 subject=CN=srv.example issuer=\"CN=My CA\" serial=01AB valid=\""),
            "{line}"
        );
        assert!(line.contains(" status=\"REVOKED at "), "{line}");
        assert!(line.contains("(key-compromise) per CRL #7 of "), "{line}");
        assert!(line.contains("; ignored CRL #7 of "), "{line}");
        let line = cert_line(1, &r.chain[1]);
        assert!(line.ends_with(" [ca] status=\"trust anchor\""), "{line}");
        assert_eq!(
            verdict_line(&r.verdict),
            "verdict: INVALID: certificate revoked"
        );
        assert_eq!(verdict_line(&Verdict::Valid), "verdict: valid");
    }

    #[test]
    fn json_has_the_chain_and_the_verdict() {
        let j = report_json(&report());
        assert_eq!(j["valid"], false);
        assert_eq!(j["reason"], "certificate revoked");
        assert_eq!(j["chain"][0]["revocation"]["status"], "revoked");
        assert_eq!(j["chain"][0]["revocation"]["reason"], "key-compromise");
        assert_eq!(j["chain"][0]["revocation"]["crl"]["crl-number"], "7");
        assert_eq!(j["chain"][0]["name"], Json::Null);
        assert_eq!(j["chain"][1]["name"], "ca");
        assert_eq!(j["chain"][1]["trust-anchor"], true);
        assert!(j["chain"][0]["ignored-crls"][0]["why"]
            .as_str()
            .unwrap()
            .contains("signature"));
    }
}

//! `certman verify FILE [purpose=tls-server|tls-client|any] [dns-name=NAME] [ip=ADDR]
//! [at=TIME] [crl=FILE]… [max-depth=N]`: prints the chain that path validation built and its
//! verdict.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone};
use clap::Args;
use serde_json::{json, Value as Json};

use super::out::outln;
use super::output::{esc, routeros_time};
use super::{CliError, Ctx};
use crate::manager::VerifyOptions;
use crate::x509::path::{
    ChainCert, CrlRef, PathReport, Purpose, ReferenceName, Revocation, Verdict,
};

/// `verify FILE [purpose=…] [dns-name=…] [ip=…] [at=…] [crl=…]… [max-depth=…]`
/// (`file-name=FILE` as RouterOS spells it)
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
    /// A DNS name the certificate must be valid for (its subjectAltName; a `*.` wildcard there
    /// matches one label; the CN is not used).
    #[arg(long = "dns-name", value_name = "NAME", value_parser = parse_dns_name)]
    pub dns_name: Option<ReferenceName>,
    /// An IP address (v4 or v6) the certificate's subjectAltName must hold.
    #[arg(long, value_name = "ADDR")]
    pub ip: Option<IpAddr>,
    /// Validate at TIME instead of now (certificates and CRLs): RFC 3339
    /// (`2026-11-25T02:16:20Z`) or RouterOS's `nov/25/2026 02:16:20` (local time).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub at: Option<SystemTime>,
    /// A CRL file (PEM or DER), repeatable: revocation is checked with these CRLs and the
    /// store's, even with crl-use=no.
    #[arg(long = "crl", value_name = "FILE")]
    pub crl: Vec<PathBuf>,
    /// The most intermediate CA certificates between the certificate and the trusted one
    /// (0: issued by the trusted certificate itself; at most 6 are ever followed).
    #[arg(long = "max-depth", value_name = "N")]
    pub max_depth: Option<usize>,
}

fn parse_dns_name(s: &str) -> Result<ReferenceName, String> {
    ReferenceName::dns(s)
}

/// `--at`: RFC 3339, RouterOS's `nov/25/2026 02:16:20` or `2026-11-25 02:16:20` (local
/// time, as certman prints times), or a date alone (midnight, local time).
fn parse_time(s: &str) -> Result<SystemTime, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.into());
    }
    let lower = s.to_ascii_lowercase();
    let naive = ["%b/%d/%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(&lower, f).ok())
        .or_else(|| {
            ["%b/%d/%Y", "%Y-%m-%d"]
                .iter()
                .find_map(|f| NaiveDate::parse_from_str(&lower, f).ok())
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
        .ok_or_else(|| {
            format!(
                "'{}' is not a time: use RFC 3339 (2026-11-25T02:16:20Z) or RouterOS's \
                 nov/25/2026 02:16:20 (local time)",
                s.escape_debug()
            )
        })?;
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(SystemTime::from)
        .ok_or_else(|| format!("{s} does not exist in the local time zone"))
}

impl VerifyArgs {
    /// The file to verify, however it was given (clap requires one of the two spellings).
    pub fn file(&self) -> &Path {
        self.file
            .as_deref()
            .or(self.file_name.as_deref())
            .unwrap_or(Path::new(""))
    }

    /// The validated options for the manager (relative CRL paths from `cwd`).
    fn options(&self, cwd: &Path) -> VerifyOptions {
        let names = self
            .dns_name
            .iter()
            .cloned()
            .chain(self.ip.map(ReferenceName::Ip))
            .collect();
        VerifyOptions {
            purpose: self.purpose,
            names,
            at: self.at,
            crl_files: self.crl.iter().map(|f| cwd.join(f)).collect(),
            max_depth: self.max_depth,
        }
    }

    /// Runs the command: exit 0 when the certificate is valid, 1 when not (the report is
    /// printed either way).
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let cwd = super::cwd()?;
        let file = cwd.join(self.file());
        let report = ctx.manager()?.verify_file(&file, &self.options(&cwd))?;
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
        outln!("{}", report_json(report));
        return;
    }
    if !ctx.quiet {
        for (i, c) in report.chain.iter().enumerate() {
            outln!("{}", cert_line(i, c));
        }
    }
    outln!("{}", verdict_line(&report.verdict));
}

/// `verdict: valid` or `verdict: INVALID: <reason>`.
pub(crate) fn verdict_line(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Valid => "verdict: valid".to_owned(),
        // The reason quotes names from the certificates: control characters as \xNN.
        Verdict::Invalid { reason, .. } => format!("verdict: INVALID: {}", esc(reason)),
    }
}

/// `0 subject=… issuer=… serial=… valid=…..… [name] status=…`
fn cert_line(position: usize, c: &ChainCert) -> String {
    let mut line = format!(
        "{position} subject={} issuer={} serial={} valid={}",
        esc(&quoted(&c.subject)),
        esc(&quoted(&c.issuer)),
        c.serial_hex,
        quoted(&format!(
            "{}..{}",
            routeros_time(c.not_before),
            routeros_time(c.not_after)
        )),
    );
    if let Some(name) = &c.store_name {
        line.push_str(&format!(" [{}]", esc(name)));
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
    super::json::time(t)
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

    #[test]
    fn strict_options_in_both_spellings() {
        let a = parse(&[
            "srv.crt",
            "dns-name=srv.example",
            "ip=192.0.2.7",
            "at=nov/25/2026 02:16:20",
            "crl=a.crl",
            "crl=b.crl",
            "max-depth=2",
        ])
        .unwrap();
        let o = a.options(Path::new("/w"));
        assert_eq!(
            o.names,
            [
                ReferenceName::Dns("srv.example".into()),
                ReferenceName::Ip("192.0.2.7".parse().unwrap())
            ]
        );
        assert_eq!(
            o.at.map(routeros_time).as_deref(),
            Some("nov/25/2026 02:16:20")
        );
        assert_eq!(o.crl_files, [Path::new("/w/a.crl"), Path::new("/w/b.crl")]);
        assert_eq!(o.max_depth, Some(2));
        let a = parse(&[
            "--ip",
            "::1",
            "--at",
            "2026-11-25T02:16:20Z",
            "--crl",
            "/c.crl",
            "srv.crt",
        ])
        .unwrap();
        let o = a.options(Path::new("/w"));
        assert_eq!(o.names, [ReferenceName::Ip("::1".parse().unwrap())]);
        assert_eq!(o.crl_files, [Path::new("/c.crl")]);
        assert_eq!(o.max_depth, None);
        let defaults = parse(&["srv.crt"]).unwrap().options(Path::new("/w"));
        assert!(defaults.names.is_empty() && defaults.at.is_none());
        assert!(defaults.crl_files.is_empty());
        for bad in [
            "dns-name=bad name",
            "dns-name=10.0.0.1",
            "ip=10.0.0.256",
            "at=tomorrow",
            "max-depth=-1",
        ] {
            assert!(parse(&["srv.crt", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_are_rfc3339_or_routeros_local_time() {
        let utc = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_573_380);
        assert_eq!(parse_time("2026-11-25T02:23:00Z"), Ok(utc));
        assert_eq!(parse_time("2026-11-25T03:23:00+01:00"), Ok(utc));
        let local = |y, mo, d, h, mi, s| {
            SystemTime::from(
                Local
                    .with_ymd_and_hms(y, mo, d, h, mi, s)
                    .earliest()
                    .unwrap(),
            )
        };
        assert_eq!(
            parse_time("nov/25/2026 02:16:20"),
            Ok(local(2026, 11, 25, 2, 16, 20))
        );
        assert_eq!(
            parse_time("Nov/25/2026 02:16:20"),
            Ok(local(2026, 11, 25, 2, 16, 20))
        );
        assert_eq!(
            parse_time("2026-11-25 02:16:20"),
            Ok(local(2026, 11, 25, 2, 16, 20))
        );
        assert_eq!(parse_time("nov/25/2026"), Ok(local(2026, 11, 25, 0, 0, 0)));
        assert_eq!(parse_time("2026-11-25"), Ok(local(2026, 11, 25, 0, 0, 0)));
        for t in ["nov/25/2026 02:16:20", "jan/01/2030 00:00:00"] {
            assert_eq!(routeros_time(parse_time(t).unwrap()), t);
        }
        let e = parse_time("25.11.2026").unwrap_err();
        assert!(
            e.contains("RFC 3339") && e.contains("nov/25/2026 02:16:20"),
            "{e}"
        );
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
    fn names_from_certificates_are_escaped() {
        let mut r = report();
        r.chain[0].subject = "CN=evil\x1b[2J\r\nverdict: valid".into();
        let line = cert_line(0, &r.chain[0]);
        assert!(line.contains(r"CN=evil\x1b[2J\x0d\x0averdict:"), "{line}");
        assert!(!line.contains('\x1b') && !line.contains('\n'), "{line}");
        let v = Verdict::Invalid {
            kind: Failure::Malformed,
            reason: "RFC 5280 §4.2.1.1: … critical in CN=a\nb".into(),
        };
        assert_eq!(
            verdict_line(&v),
            r"verdict: INVALID: RFC 5280 §4.2.1.1: … critical in CN=a\x0ab"
        );
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

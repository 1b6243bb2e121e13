//! The command line: clap commands taking RouterOS `name=value` as well as `--name value`,
//! printing tables or JSON. No crypto, no SQL: each command is an Args struct plus `run()`
//! calling the manager.

mod add;
pub mod agent;
mod ca_passphrase;
mod card;
mod crl;
mod ctx;
mod docs;
mod export;
mod filter;
mod help;
mod import;
pub(crate) mod json;
mod numbers;
pub(crate) mod out;
pub mod output;
mod print;
pub mod progress;
mod remove;
mod request;
mod revoke;
mod rsc;
mod scep;
mod scep_client;
mod script;
mod serve;
mod set;
mod settings;
mod sign;
mod store;
mod table;
mod token;
mod verify;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Parser, Subcommand};

use crate::error::{ExitCode as Exit, ManagerError};
use crate::protocols::crl_download::DownloadError;
use crate::service::ServiceError;
use out::outln;

pub(crate) use ctx::{new_secret, secret};
pub use ctx::{Ctx, Host};

/// certman — the RouterOS /certificate manager, with keys on tokens, cards or sealed in software.
#[derive(Debug, Parser)]
#[command(name = "certman", version, about, long_about = None)]
pub struct Cli {
    /// The store directory [default: $XDG_DATA_HOME/certman].
    #[arg(long, global = true, env = "CERTMAN_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Token profiles directory [default: $XDG_CONFIG_HOME/certman/tokens].
    #[arg(long, global = true, env = "CERTMAN_TOKENS", value_name = "DIR")]
    pub tokens: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More detail on errors.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Where the key that seals secrets at rest comes from: machine-id (the default),
    /// file:PATH (a 0600 key file of at least 32 bytes: the same file on several nodes of one
    /// store opens its secrets on all of them), pkcs11:token=…;object=…?module-path=…&
    /// pin-source=… (a secret key on a token, which never leaves it: `store seal-key-generate`)
    /// or piv:slot-id=9d;reader=…?pin-source=… (a data key in the store, wrapped to the RSA key
    /// of the certificate in the card's slot).
    #[arg(
        long,
        global = true,
        env = "CERTMAN_SEAL_KEY_SOURCE",
        value_name = "SOURCE"
    )]
    pub seal_key_source: Option<String>,
    /// Spend a PIN try that the token reports as its last one.
    #[arg(long, global = true)]
    pub force_last_pin_try: bool,
    /// Make the store if there is none (`add`, `import`, `add-scep` and
    /// `create-certificate-request` always may; any other command refuses a store directory
    /// without one, so that a mistyped store directory is not a new empty store).
    #[arg(long, global = true)]
    pub create: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// `/certificate` commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add a certificate template.
    Add(add::AddArgs),
    /// Sign a template: self-signed, or issued by ca=NAME. The template is consumed.
    Sign(sign::SignArgs),
    /// List templates and certificates: print [detail|terse|count-only|tree] [NAME|#…]
    /// [where EXPR].
    ///
    /// Modes: detail (every property), terse (one line each), count-only, tree (CAs with what
    /// they issued). The table fits the terminal, cutting what does not fit with `..`.
    /// Filters: where PROP=VALUE, !=, <, >, <=, >=, ~REGEX; a yes/no property alone (where
    /// trusted, where !revoked); joined by and (or side by side), or, !, ( ). Times compare
    /// as 2027-01-31 or jan/31/2027, expires-after as a duration (expires-after<30d).
    /// The # numbers of the last print in this terminal session stand for the entries
    /// wherever a NAME is taken (remove 0, issued-revoke 3,5).
    Print(print::PrintArgs),
    /// Change a template, or the name/trusted of a certificate.
    Set(set::SetArgs),
    /// Remove templates and certificates (a CA takes the certificates it issued with it).
    Remove(remove::RemoveArgs),
    /// Write a certificate (and, with export-passphrase, its encrypted key) to files.
    ExportCertificate(export::ExportArgs),
    /// Prove a certificate's key is on its token and matches (public key + signed challenge).
    CardVerify(card::CardVerifyArgs),
    /// Write a certificate back onto its token beside its key (after card-verify).
    CardReinstall(card::CardReinstallArgs),
    /// Token profiles and what the tokens hold.
    Token(token::TokenArgs),
    /// Store (sealed) the passphrase a CA's key exports use.
    CaSetPassphrase(ca_passphrase::CaSetPassphraseArgs),
    /// Open the private keys imported still encrypted (flag Q), RouterOS v2.8.
    Decrypt(import::DecryptArgs),
    /// Drop the decrypted copies of keys imported encrypted (back to Q), RouterOS v2.8.
    ResetCertificateCache(import::ResetCacheArgs),
    /// Import certificates and private keys from files (PEM, DER, PKCS#8, PKCS#1, SEC1).
    Import(import::ImportArgs),
    /// Write a PKCS#10 request (and its encrypted key) from a template.
    CreateCertificateRequest(request::CreateRequestArgs),
    /// Issue a certificate for a PKCS#10 request made elsewhere.
    SignCertificateRequest(request::SignRequestArgs),
    /// Revoke certificates issued by a local CA (flag R); the CA's CRL is renewed at once.
    IssuedRevoke(revoke::RevokeArgs),
    /// CRLs: print, download (trusted certificates' CDPs), flush, renew, export.
    Crl(crl::CrlArgs),
    /// RouterOS /certificate settings: crl-download, crl-use.
    Settings(settings::SettingsArgs),
    /// Check a certificate's chain against the store's trusted certificates (and CRLs).
    Verify(verify::VerifyArgs),
    /// SCEP servers (RouterOS /certificate scep-server): add, print, set, remove, enable,
    /// disable; otp generate|print; requests print|grant|reject.
    ScepServer(scep::ScepServerArgs),
    /// The service: CRLs at their CDP paths, /health, CRL renewal and download timers.
    Serve(serve::ServeArgs),
    /// Add a SCEP client (RouterOS add-scep): enrols now, then `serve` polls and renews it.
    AddScep(scep_client::AddScepArgs),
    /// A SCEP client's next step now: renew its certificate, or poll a pending request.
    ScepRenew(scep_client::ScepRenewArgs),
    /// Run a RouterOS script of /certificate lines (FILE or - for stdin) on one open store.
    ///
    /// Lines are /certificate commands as typed or exported: menu lines (/certificate,
    /// /certificate scep-server requests), # comments, \ continuations, "quoted" values,
    /// [find …]. Each line is its own durable transaction; the run stops at the first failing
    /// line, reported as FILE:LINE, unless --continue. The # numbers are the script's own.
    Script(script::ScriptArgs),
    /// Shell completions on stdout: bash, zsh, fish (also elvish, powershell).
    Completions(docs::CompletionsArgs),
    /// The man page, certman(1), on stdout (roff): every command with its options.
    Man(docs::ManArgs),
    /// Keep the store open for this terminal's commands: `certman` then runs them here.
    ///
    /// While it runs, a `certman` command on this store typed by the same user with the same
    /// environment is run by the agent instead of a new process of its own: no start-up, no
    /// opening of the store. Commands that read a secret (a passphrase, a PIN from a source)
    /// or need the terminal are run by the client itself, as without an agent. Stop it with
    /// Ctrl-C or SIGTERM; it also ends after --idle-timeout without a command.
    /// CERTMAN_AGENT=off makes `certman` ignore it; CERTMAN_AGENT=require makes a command fail
    /// rather than run without it.
    Agent(agent::AgentArgs),
    /// The store's sealing key: reseal (every secret at rest under another
    /// seal-key-source), seal-key-generate (a sealing key on a PKCS#11 token).
    Store(store::StoreArgs),
}

/// A command's error: the layer's own error, kept as it is, so that its exit code and hint
/// are chosen by variant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The certificate manager's.
    #[error(transparent)]
    Manager(#[from] ManagerError),
    /// The service's (`serve`).
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// CRL downloads could not run (`crl download`).
    #[error(transparent)]
    Download(#[from] DownloadError),
    /// A SCEP client step could not run (`add-scep`, `scep-renew`).
    #[error(transparent)]
    Enrol(#[from] crate::protocols::scep::enrolment::EnrolError),
    /// A script's line failed (reported with its line number already); its exit code.
    #[error("the script stopped at a failing line")]
    Script(Exit),
    /// What the command printed could not be written (not a reader that went away: that is
    /// a quiet success).
    #[error("cannot write to standard output: {0}")]
    Output(#[source] std::io::Error),
}

impl From<crate::error::StoreError> for CliError {
    fn from(e: crate::error::StoreError) -> Self {
        CliError::Manager(e.into())
    }
}

impl From<crate::error::KeyError> for CliError {
    fn from(e: crate::error::KeyError) -> Self {
        CliError::Manager(e.into())
    }
}

impl From<crate::error::SecretError> for CliError {
    fn from(e: crate::error::SecretError) -> Self {
        CliError::Manager(e.into())
    }
}

impl CliError {
    /// The process exit code (design/CLI.md).
    pub fn exit_code(&self) -> Exit {
        match self {
            CliError::Manager(e) => e.exit_code(),
            CliError::Service(e) => e.exit_code(),
            CliError::Download(DownloadError::Targets(e) | DownloadError::Refused(e)) => {
                e.exit_code()
            }
            CliError::Download(_) => Exit::Failed,
            CliError::Enrol(crate::protocols::scep::enrolment::EnrolError::Manager(e)) => {
                e.exit_code()
            }
            CliError::Enrol(_) | CliError::Output(_) => Exit::Failed,
            CliError::Script(code) => *code,
        }
    }

    /// The hint line to print under the error, if any.
    pub fn hint(&self) -> Option<&str> {
        match self {
            CliError::Manager(e)
            | CliError::Service(ServiceError::Manager(e))
            | CliError::Download(DownloadError::Targets(e) | DownloadError::Refused(e))
            | CliError::Enrol(crate::protocols::scep::enrolment::EnrolError::Manager(e)) => {
                e.hint()
            }
            _ => None,
        }
    }
}

/// Reports the files a command wrote (`{"files": […]}` with `--json`).
pub(crate) fn print_files(ctx: &Ctx, files: &[PathBuf]) {
    if ctx.json {
        json::print(&files_json(files));
    } else if !ctx.quiet {
        for f in files {
            outln!("wrote {}", f.display());
        }
    }
}

/// `{"files": […]}`: the files a command wrote.
pub(crate) fn files_json(files: &[PathBuf]) -> serde_json::Value {
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    serde_json::json!({ "files": names })
}

/// Reports a certificate just signed (the entry as JSON with `--json`).
pub(crate) fn print_signed(ctx: &Ctx, entry: &crate::manager::Entry) {
    if ctx.json {
        json::print(&output::entry_json(0, entry));
    } else if !ctx.quiet {
        outln!(
            "signed {} [{}] fingerprint={}",
            entry.name,
            entry.flags,
            entry.text("fingerprint").unwrap_or_default()
        );
    }
}

/// The current directory, where files are read and written.
pub(crate) fn cwd() -> Result<PathBuf, ManagerError> {
    std::env::current_dir().map_err(|source| ManagerError::File {
        path: ".".into(),
        source,
    })
}

/// RouterOS `yes`/`no` for flags that also take a value (`--force`, `delete-key=yes`).
pub fn yes_no(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(format!("expected yes or no, not '{s}'")),
    }
}

/// Rewrites RouterOS `property=value` words into `--property=value`, so that both spellings
/// reach clap. A word is a property assignment when it starts with a lower-case letter and
/// its part before `=` is letters, digits and dashes.
pub fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut passthrough = false;
    for (i, a) in args.into_iter().enumerate() {
        if i == 0 || passthrough {
            out.push(a);
            continue;
        }
        if a == "--" || a == "where" {
            // `print where trusted=yes`: the expression's words are not properties
            passthrough = true;
            out.push(a);
            continue;
        }
        let rewritten = a.to_str().and_then(|s| {
            let (k, _) = s.split_once('=')?;
            let first = k.chars().next()?;
            (first.is_ascii_lowercase()
                && k.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
            .then(|| OsString::from(format!("--{s}")))
        });
        out.push(rewritten.unwrap_or(a));
    }
    store::reseal_target(out)
}

/// Prints an error on stderr: one line (plus a hint line), or with `--json` one JSON object
/// (`{"error", "kind", "exit", "hint"?, "causes"?}`).
pub fn report_error(err: &CliError, verbose: bool, as_json: bool) {
    let mut causes = Vec::new();
    if verbose {
        let mut src = std::error::Error::source(err);
        while let Some(s) = src {
            causes.push(s.to_string());
            src = s.source();
        }
    }
    if as_json {
        let e = json::error(&err.to_string(), err.exit_code(), err.hint(), &causes);
        out::err_line(&e.to_string());
        return;
    }
    // one line: names in the message come from outside and may hold CR, LF or ESC
    out::err_line(&format!(
        "certman: error: {}",
        output::esc(&err.to_string())
    ));
    for c in &causes {
        out::err_line(&format!("  caused by: {c}"));
    }
    if let Some(h) = err.hint() {
        out::err_line(&format!("  hint: {}", output::esc(h)));
    }
}

/// The subcommand named in argv, if any (for error messages).
fn subcommand_in(args: &[OsString]) -> Option<String> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let mut it = args.iter().skip(1).filter_map(|a| a.to_str());
    while let Some(a) = it.next() {
        if a == "--store" || a == "--tokens" {
            it.next();
            continue;
        }
        if a.starts_with('-') {
            continue;
        }
        return cmd
            .get_subcommands()
            .find(|s| s.get_name() == a)
            .map(|s| s.get_name().to_owned());
    }
    None
}

/// Whether `--json` is among the options (before a `--`), for errors found before parsing
/// succeeded.
fn json_asked(args: &[OsString]) -> bool {
    args.iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json")
}

/// A clap error as one line: `unknown property 'x'`, `missing --name`, or clap's own first
/// paragraph.
pub(crate) fn usage_line(e: &clap::Error) -> String {
    let invalid: Vec<String> = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(v)) => v.clone(),
        _ => Vec::new(),
    };
    let line = match e.kind() {
        ErrorKind::UnknownArgument if !invalid.is_empty() => {
            let prop = invalid[0].trim_start_matches('-');
            let prop = prop.split('=').next().unwrap_or(prop);
            format!("unknown property '{prop}'")
        }
        ErrorKind::MissingRequiredArgument if !invalid.is_empty() => {
            format!("missing {}", invalid.join(", "))
        }
        _ => {
            // clap's message up to its first blank line, on one line.
            let rendered = e.render().to_string();
            rendered
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ")
                .trim_start_matches("error: ")
                .to_owned()
        }
    };
    line
}

fn usage_error(e: &clap::Error, args: &[OsString]) -> u8 {
    let line = usage_line(e);
    let cmd = subcommand_in(args)
        .map(|s| format!(" {s}"))
        .unwrap_or_default();
    let hint = format!("`certman{cmd} --help` lists what it takes");
    if json_asked(args) {
        out::err_line(&json::error(&line, Exit::Usage, Some(&hint), &[]).to_string());
    } else {
        out::err_line(&format!("certman{cmd}: error: {line}"));
        out::err_line(&format!("  hint: {hint}"));
    }
    Exit::Usage as u8
}

/// The `certman` program (`certman-core`, which the `certman` launcher runs when no agent
/// serves the command).
pub fn main() -> ExitCode {
    let args = normalize_args(std::env::args_os());
    let cli = match parse(&args) {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    let ctx = Ctx::from_cli(&cli, &Host::Process);
    ExitCode::from(run(&cli, &ctx))
}

/// Parses a command line: the command, or the exit code once help, the version or a usage
/// error is printed.
fn parse(args: &[OsString]) -> Result<Cli, u8> {
    // Parsed by clap's plain command tree: the examples (help.rs) are added only when help is
    // shown, not built at every start.
    Cli::try_parse_from(args).map_err(|e| {
        let with_examples = |e: clap::Error| {
            help::command()
                .try_get_matches_from(args)
                .err()
                .unwrap_or(e)
        };
        match e.kind() {
            ErrorKind::DisplayVersion => {
                let _ = e.print();
                0
            }
            ErrorKind::DisplayHelp => {
                let _ = with_examples(e).print();
                0
            }
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                let _ = with_examples(e).print();
                2
            }
            _ => usage_error(&e, args),
        }
    })
}

/// Runs a parsed command line, reports its error, and gives its exit code.
pub(crate) fn run(cli: &Cli, ctx: &Ctx) -> u8 {
    let result = dispatch(&cli.command, ctx);
    // What could not be printed: a reader that went away (`certman print | head -1`) wanted
    // no more, and the command did its work: exit 0 quietly. Any other write error fails a
    // command that did not fail already.
    let result = match (result, out::finish()) {
        (Err(e), _) => Err(e),
        (Ok(()), Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        (Ok(()), Err(e)) => Err(CliError::Output(e)),
        (Ok(()), Ok(())) => Ok(()),
    };
    match result {
        Ok(()) => 0,
        // a script's failing line is reported already, with its number
        Err(CliError::Script(code)) => code as u8,
        Err(e) => {
            report_error(&e, cli.verbose > 0, cli.json);
            e.exit_code() as u8
        }
    }
}

/// Runs one command (the program's, or a script line's).
pub(crate) fn dispatch(command: &Command, ctx: &Ctx) -> Result<(), CliError> {
    match command {
        Command::Add(a) => a.run(ctx),
        Command::Sign(a) => a.run(ctx),
        Command::Print(a) => a.run(ctx),
        Command::Set(a) => a.run(ctx),
        Command::Remove(a) => a.run(ctx),
        Command::ExportCertificate(a) => a.run(ctx),
        Command::CardVerify(a) => a.run(ctx),
        Command::CardReinstall(a) => a.run(ctx),
        Command::Token(a) => a.run(ctx),
        Command::Import(a) => a.run(ctx),
        Command::Decrypt(a) => a.run(ctx),
        Command::ResetCertificateCache(a) => a.run(ctx),
        Command::CaSetPassphrase(a) => a.run(ctx),
        Command::CreateCertificateRequest(a) => a.run(ctx),
        Command::SignCertificateRequest(a) => a.run(ctx),
        Command::IssuedRevoke(a) => a.run(ctx),
        Command::Crl(a) => a.run(ctx),
        Command::Settings(a) => a.run(ctx),
        Command::Verify(a) => a.run(ctx),
        Command::ScepServer(a) => a.run(ctx),
        Command::Serve(a) => a.run(ctx),
        Command::AddScep(a) => a.run(ctx),
        Command::ScepRenew(a) => a.run(ctx),
        Command::Script(a) => a.run(ctx),
        Command::Completions(a) => a.run(ctx),
        Command::Man(a) => a.run(ctx),
        Command::Agent(a) => a.run(ctx),
        Command::Store(a) => a.run(ctx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(v: &[&str]) -> Vec<String> {
        normalize_args(v.iter().map(OsString::from))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    #[test]
    fn routeros_assignments_become_long_options() {
        assert_eq!(
            norm(&[
                "certman",
                "add",
                "name=ca",
                "common-name=My CA",
                "--days-valid",
                "10"
            ]),
            [
                "certman",
                "add",
                "--name=ca",
                "--common-name=My CA",
                "--days-valid",
                "10"
            ]
        );
        // values may contain '='; names with upper case or dots are left alone
        assert_eq!(
            norm(&[
                "certman",
                "add",
                "subject-alt-name=URI:https://x/?a=b",
                "Foo=bar",
                "a.b=c"
            ]),
            [
                "certman",
                "add",
                "--subject-alt-name=URI:https://x/?a=b",
                "Foo=bar",
                "a.b=c"
            ]
        );
        assert_eq!(norm(&["certman", "--", "x=y"]), ["certman", "--", "x=y"]);
    }

    #[test]
    fn both_spellings_parse_the_same() {
        let a = Cli::try_parse_from(normalize_args(
            [
                "certman",
                "add",
                "name=t",
                "key-usage=key-cert-sign,crl-sign",
            ]
            .map(OsString::from),
        ))
        .unwrap();
        let b = Cli::try_parse_from(
            [
                "certman",
                "add",
                "--name",
                "t",
                "--key-usage",
                "key-cert-sign,crl-sign",
            ]
            .map(OsString::from),
        )
        .unwrap();
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }
}

//! `certman script FILE|-`: RouterOS `/certificate` lines (see [`super::rsc`]) run in one
//! process on one open store. Each line is its own command with its own durable transaction,
//! as if typed; the `#` numbers are the script's own (its `print` lines set them). The run
//! stops at the first failing line, reported with its number, unless `--continue` is given.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;

use clap::Args;

use super::out;
use super::output::esc;
use super::rsc::{self, Statement, Word};
use super::{dispatch, numbers, usage_line, Cli, CliError, Command, Ctx};
use crate::error::{ExitCode as Exit, ManagerError};

/// The largest script read (a 10,000-line bulk script is about 600 KiB).
const MAX_SCRIPT: u64 = 64 << 20;

/// `script FILE|- [--continue]`
#[derive(Debug, Args)]
pub struct ScriptArgs {
    /// The script, or `-` for standard input.
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,
    /// Go on after a failing line (the exit code is the first failure's).
    #[arg(long = "continue")]
    pub keep_going: bool,
}

/// How a line ended.
enum Outcome {
    Done,
    /// the exit code of a failed line (the message is already printed)
    Failed(Exit),
}

impl ScriptArgs {
    /// Runs the command.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let text = self.read()?;
        let statements = rsc::parse(&text).map_err(|(line, e)| {
            ManagerError::InvalidValue(format!("{}:{line}: {e}", self.file.display()))
        })?;
        let script_ctx = ctx.for_script(numbers::Numbers::script());
        // clap's command tree, built once for every line (building it is most of a line's
        // parsing cost)
        let mut parser = super::help::command();
        parser.build();
        // a bar on a terminal (never with --quiet or --json), failing lines printed above it
        let bar = ctx.progress().lines(statements.len() as u64);
        let mut first_failure: Option<Exit> = None;
        let mut failed = 0usize;
        for st in &statements {
            bar.set_message(&format!("line {}", st.line));
            let outcome = self.line(&script_ctx, &mut parser, &bar, st);
            bar.inc(1);
            match outcome {
                Outcome::Done => {}
                Outcome::Failed(code) => {
                    failed += 1;
                    first_failure.get_or_insert(code);
                    if !self.keep_going {
                        break;
                    }
                }
            }
        }
        bar.finish();
        match first_failure {
            None => Ok(()),
            Some(code) => {
                if self.keep_going {
                    out::err_line(&format!(
                        "certman script: {failed} of {} lines failed",
                        statements.len()
                    ));
                }
                Err(CliError::Script(code))
            }
        }
    }

    fn read(&self) -> Result<String, ManagerError> {
        let io = |source| ManagerError::File {
            path: self.file.clone(),
            source,
        };
        let mut bytes = Vec::new();
        if self.file.as_os_str() == "-" {
            std::io::stdin()
                .take(MAX_SCRIPT + 1)
                .read_to_end(&mut bytes)
                .map_err(io)?;
        } else {
            std::fs::File::open(&self.file)
                .map_err(io)?
                .take(MAX_SCRIPT + 1)
                .read_to_end(&mut bytes)
                .map_err(io)?;
        }
        if bytes.len() as u64 > MAX_SCRIPT {
            return Err(ManagerError::InvalidValue(format!(
                "{}: a script is at most {} MiB",
                self.file.display(),
                MAX_SCRIPT >> 20
            )));
        }
        String::from_utf8(bytes).map_err(|e| {
            ManagerError::InvalidValue(format!(
                "{}: not UTF-8 text (byte {})",
                self.file.display(),
                e.utf8_error().valid_up_to()
            ))
        })
    }

    /// Runs one statement; a failure is reported here, with its line number.
    fn line(
        &self,
        ctx: &Ctx,
        parser: &mut clap::Command,
        bar: &super::progress::Bar,
        st: &Statement,
    ) -> Outcome {
        let at = format!("{}:{}", self.file.display(), st.line);
        let report = |msg: &str, code: Exit, hint: Option<&str>| {
            if ctx.json {
                let mut e = super::json::error(msg, code, hint, &[]);
                e["file"] = self.file.display().to_string().into();
                e["line"] = st.line.into();
                bar.println(&e.to_string());
            } else {
                bar.println(&format!("certman: {}: error: {}", esc(&at), esc(msg)));
                if let Some(h) = hint {
                    bar.println(&format!("  hint: {}", esc(h)));
                }
            }
            Outcome::Failed(code)
        };
        let fail = |e: &CliError| report(&e.to_string(), e.exit_code(), e.hint());
        let words = match expand(ctx, &st.words) {
            Ok(w) => w,
            Err(e) => return fail(&e.into()),
        };
        if let Some(w) = words.iter().find(|w| {
            let w = w.to_string_lossy();
            w.starts_with("--store") || w.starts_with("--tokens")
        }) {
            let e = ManagerError::InvalidValue(format!(
                "{}: a script's lines use the script's store and tokens",
                w.to_string_lossy()
            ));
            return fail(&e.into());
        }
        let mut argv = vec![OsString::from("certman")];
        argv.extend(words);
        let argv = super::normalize_args(argv);
        let parsed = parser
            .try_get_matches_from_mut(&argv)
            .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m));
        let cli = match parsed {
            Ok(c) => c,
            Err(e) => return report(&usage_line(&e), Exit::Usage, None),
        };
        if matches!(cli.command, Command::Serve(_) | Command::Script(_)) {
            let e =
                ManagerError::InvalidValue("serve and script do not run inside a script".into());
            return fail(&e.into());
        }
        match dispatch(&cli.command, ctx) {
            Ok(()) => Outcome::Done,
            Err(e) => fail(&e),
        }
    }
}

/// The statement's words, `[find …]` replaced by the names of the entries it matches.
fn expand(ctx: &Ctx, words: &[Word]) -> Result<Vec<OsString>, ManagerError> {
    let mut out = Vec::with_capacity(words.len());
    for w in words {
        match w {
            Word::Text(t) => out.push(OsString::from(t)),
            Word::Find(expr) => {
                let mut entries = ctx.manager()?.entries(&[])?;
                if !expr.is_empty() {
                    entries = super::print::filtered(entries, &super::filter::parse(expr)?)?;
                }
                out.extend(entries.into_iter().map(|e| OsString::from(e.name)));
            }
        }
    }
    Ok(out)
}

/// For a test: parse a script line as `certman` would.
#[cfg(test)]
pub(crate) fn parses(words: &[&str]) -> bool {
    let mut argv = vec![OsString::from("certman")];
    argv.extend(words.iter().map(OsString::from));
    <Cli as clap::Parser>::try_parse_from(super::normalize_args(argv)).is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn seed_lines_parse_as_commands() {
        for line in [
            &["add", "common-name=ca", "name=ca-tpl"][..],
            &["sign", "ca-tpl", "name=ca"],
            &["scep-server", "add", "ca-cert=ca", "path=/scep/test"],
            &["scep-server", "requests", "grant", "0"],
            &[
                "add-scep",
                "template=tpl_1",
                "scep-url=http://127.0.0.1:1/scep/test",
            ],
            &["print", "where", "trusted=yes", "count-only"],
        ] {
            assert!(super::parses(line), "{line:?}");
        }
    }
}

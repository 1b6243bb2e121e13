//! `certman completions SHELL` and `certman man`: shell completions and the man page, made
//! from the clap commands (so they cannot drift from what the parser takes).

use clap::{Args, Command};
use clap_complete::Shell;
use clap_mangen::Man;

use super::{out, CliError, Ctx};
use crate::error::ManagerError;

/// `completions bash|zsh|fish|elvish|powershell`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `man`
#[derive(Debug, Args)]
pub struct ManArgs {}

impl CompletionsArgs {
    /// Runs the command: the script on stdout.
    pub fn run(&self, _ctx: &Ctx) -> Result<(), CliError> {
        let mut cmd = super::help::command();
        let mut script = Vec::new();
        clap_complete::generate(self.shell, &mut cmd, "certman", &mut script);
        out::bytes(&script);
        Ok(())
    }
}

impl ManArgs {
    /// Runs the command: `certman.1` (roff) on stdout.
    pub fn run(&self, _ctx: &Ctx) -> Result<(), CliError> {
        let page = man_page().map_err(|source| ManagerError::File {
            path: "certman.1".into(),
            source,
        })?;
        out::bytes(&page);
        Ok(())
    }
}

/// One page, `certman(1)`: the top command (its global options, the `name=value` note), then
/// a section for every command with its synopsis, options and examples.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let mut top = super::help::command();
    top.build();
    let mut page = Vec::new();
    let man = Man::new(top.clone()).manual("certman");
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    rename_sections(&mut page, |h| match h {
        "OPTIONS" => Heading::Section("GLOBAL OPTIONS".into()),
        h => Heading::Section(h.into()),
    });
    let mut commands = Vec::new();
    commands_of(&top, &mut commands);
    page.extend_from_slice(b".SH COMMANDS\n");
    for cmd in &commands {
        page.extend_from_slice(b".TP\n");
        page.extend_from_slice(format!("{}\n", roff_text(&bin_name(cmd))).as_bytes());
        if let Some(about) = cmd.get_about() {
            page.extend_from_slice(format!("{}\n", roff_text(&about.to_string())).as_bytes());
        }
    }
    for cmd in &commands {
        let mut section = Vec::new();
        let man = Man::new(without_global_options(cmd.clone()));
        man.render_description_section(&mut section)?;
        man.render_synopsis_section(&mut section)?;
        if cmd
            .get_arguments()
            .any(|a| !a.is_global_set() && !is_help(a))
        {
            man.render_options_section(&mut section)?;
        }
        if cmd.get_after_help().is_some() {
            man.render_extra_section(&mut section)?;
        }
        // The command's own headings become subsections of its section.
        rename_sections(&mut section, |h| match h {
            "DESCRIPTION" => Heading::Drop,
            "EXTRA" => Heading::Subsection("Notes and examples".into()),
            h => Heading::Subsection(capitalised(h)),
        });
        page.extend_from_slice(format!(".SH \"{}\"\n", bin_name(cmd).to_uppercase()).as_bytes());
        page.extend_from_slice(&section);
    }
    if top.get_after_help().is_some() {
        let mut section = Vec::new();
        man.render_extra_section(&mut section)?;
        rename_sections(&mut section, |_| {
            Heading::Section("NOTES AND EXAMPLES".into())
        });
        page.extend_from_slice(&section);
    }
    man.render_version_section(&mut page)?;
    Ok(ascii(&page))
}

/// The page in ASCII: `man` in the C locale formats for an ASCII terminal, where `…` and the
/// like have no glyph (troff warns); the few the help texts use have ASCII spellings, any
/// other becomes troff's `\[uXXXX]`.
fn ascii(page: &[u8]) -> Vec<u8> {
    let mut out = String::with_capacity(page.len());
    for c in String::from_utf8_lossy(page).chars() {
        match c {
            c if c.is_ascii() => out.push(c),
            '\u{2026}' => out.push_str("..."),
            '\u{2014}' => out.push_str("\\(em"),
            '\u{2013}' => out.push('-'),
            '\u{2018}' | '\u{2019}' => out.push_str("\\(aq"),
            c => out.push_str(&format!("\\[u{:04X}]", c as u32)),
        }
    }
    out.into_bytes()
}

/// Every command under `cmd` (depth first, in declaration order), without clap's `help`.
fn commands_of(cmd: &Command, out: &mut Vec<Command>) {
    for s in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        out.push(s.clone());
        commands_of(s, out);
    }
}

fn bin_name(cmd: &Command) -> String {
    cmd.get_bin_name().unwrap_or(cmd.get_name()).to_owned()
}

fn is_help(a: &clap::Arg) -> bool {
    a.get_id() == "help"
}

/// The command with the global options (listed once, at the top) and `--help` hidden.
fn without_global_options(cmd: Command) -> Command {
    let ids: Vec<clap::Id> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set() || is_help(a))
        .map(|a| a.get_id().clone())
        .collect();
    ids.into_iter()
        .fold(cmd, |c, id| c.mut_arg(id, |a| a.hide(true)))
        .disable_help_flag(true)
}

/// What a `.SH` heading of a page rendered by clap_mangen becomes in `certman.1`.
enum Heading {
    Section(String),
    Subsection(String),
    /// the heading line goes, its text stays
    Drop,
}

/// Rewrites the `.SH` lines of `roff` as `to` says.
fn rename_sections(roff: &mut Vec<u8>, to: impl Fn(&str) -> Heading) {
    let text = String::from_utf8_lossy(roff).into_owned();
    let mut renamed = String::with_capacity(text.len());
    for line in text.lines() {
        match line.strip_prefix(".SH ").map(|h| to(h.trim_matches('"'))) {
            Some(Heading::Section(h)) => renamed.push_str(&format!(".SH \"{h}\"\n")),
            Some(Heading::Subsection(h)) => renamed.push_str(&format!(".SS \"{h}\"\n")),
            Some(Heading::Drop) => {}
            None => {
                renamed.push_str(line);
                renamed.push('\n');
            }
        }
    }
    *roff = renamed.into_bytes();
}

fn capitalised(h: &str) -> String {
    let lower = h.to_lowercase();
    let mut c = lower.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// Text for a roff line: a leading `.` or `'` would be a request, `\` an escape.
fn roff_text(s: &str) -> String {
    let s = s.replace('\\', "\\e");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_every_command_once_and_no_stray_section() {
        let page = String::from_utf8(man_page().unwrap()).unwrap();
        let sections: Vec<&str> = page.lines().filter(|l| l.starts_with(".SH ")).collect();
        for cmd in [
            "CERTMAN ADD",
            "CERTMAN SCEP-SERVER OTP GENERATE",
            "CERTMAN MAN",
        ] {
            assert_eq!(
                sections
                    .iter()
                    .filter(|l| l.contains(&format!("\"{cmd}\"")))
                    .count(),
                1,
                "{cmd}: {sections:?}"
            );
        }
        // one SYNOPSIS section (the top's); the commands' are subsections
        assert_eq!(
            sections.iter().filter(|l| l.contains("SYNOPSIS")).count(),
            1
        );
        assert!(
            !page.contains("SUBCOMMANDS"),
            "clap's list names pages that do not exist"
        );
        // the global options once (and in the synopsis), not under every command
        assert_eq!(page.matches("\\-\\-store").count(), 2, "{page}");
        assert!(page.is_ascii());
    }
}

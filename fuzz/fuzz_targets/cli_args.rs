//! RouterOS-style command lines (`name=value` words): cli::normalize_args, then the clap parse
//! of the binary's Cli (all value parsers run), and the rendering of a usage error. Nothing is
//! run. Arguments are the input split at NUL bytes (not UTF-8 is allowed: argv is bytes).
//!
//! `Cli::try_parse_from` builds (and with debug assertions, checks) the whole clap command on
//! every call, ~2 ms here; the parse below is the same one on a command built once and reused
//! (clap's `try_get_matches_from_mut`, made for parsing several command lines with one command).
#![no_main]

use std::cell::RefCell;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use certman::cli::{normalize_args, Cli};
use clap::error::ContextKind;
use clap::{Command, CommandFactory, FromArgMatches};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static CMD: RefCell<Command> = RefCell::new({
        let mut cmd = Cli::command();
        cmd.build();
        cmd
    });
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 4096 {
        return;
    }
    let args = std::iter::once(OsString::from("certman")).chain(
        data.split(|b| *b == 0)
            .map(|a| OsString::from_vec(a.to_vec())),
    );
    let args = normalize_args(args);
    // = Cli::try_parse_from(&args)
    let parsed = CMD.with_borrow_mut(|cmd| {
        cmd.try_get_matches_from_mut(&args)
            .and_then(|mut m| Cli::from_arg_matches_mut(&mut m).map_err(|e| e.format(cmd)))
    });
    match parsed {
        Ok(cli) => {
            let _ = format!("{cli:?}");
        }
        Err(e) => {
            let _ = e.get(ContextKind::InvalidArg);
            let _ = e.render().to_string();
        }
    }
});

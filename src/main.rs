//! `certman`: the launcher. A command line on a store that a `certman agent` serves is sent to
//! the agent, which runs it and sends back its output and exit code; any other — and any the
//! agent declines — is run by `certman-core` (the whole program, installed beside this one),
//! which this process becomes (exec), so that it is exactly as if run directly.
//!
//! This program stays small (the standard library and libc, no certman code but the agent's
//! wire): it starts in a fraction of the time the whole program does, which is what makes a
//! served command cheap. `CERTMAN_AGENT=off` skips the agent; `CERTMAN_AGENT=require` fails a
//! command the agent does not run instead of running it here.

// No Rust runtime start-up (`no_main`): it reads /proc/self/maps, sets up a signal stack and
// checks the standard descriptors, a third of this program's time, for a program that only
// looks for an agent and hands over. The arguments and environment are still read as usual
// (glibc gives them to the standard library before `main`).
#![cfg_attr(not(test), no_main)]
// (under test the harness has the `main`: what runs of the launcher is the wire, tested here too)
#![cfg_attr(test, allow(dead_code))]

mod process_guard;
#[path = "cli/agent/wire.rs"]
mod wire;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;

use wire::{Answer, Request};

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    let code = launch();
    // what was printed is flushed (the standard library's start-up would do it on return)
    let _ = std::io::stdout().flush();
    libc::c_int::from(code)
}

fn launch() -> u8 {
    // the command line may hold a secret (`passphrase=…`)
    process_guard::no_core_dumps();
    // a reader that goes away is a write error, not a signal (as in certman-core)
    // SAFETY: ignoring SIGPIPE changes no memory; certman-core ignores it too.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let argv: Vec<OsString> = std::env::args_os().collect();
    let mode = std::env::var("CERTMAN_AGENT").unwrap_or_default();
    if mode != "off" {
        match by_agent(&argv) {
            Served::Exit(code) => return code,
            Served::Failed(e) => return fail(&e),
            Served::No(why) if mode == "require" => {
                return fail(&format!(
                    "no agent ran this command (CERTMAN_AGENT=require): {why}"
                ))
            }
            Served::No(_) => {}
        }
    }
    let core = match std::env::current_exe() {
        Ok(me) => me.with_file_name("certman-core"),
        Err(e) => return fail(&format!("cannot find this program's directory: {e}")),
    };
    let mut cmd = std::process::Command::new(&core);
    if let Some(arg0) = argv.first() {
        cmd.arg0(arg0);
    }
    let e = cmd.args(argv.iter().skip(1)).exec();
    fail(&format!("cannot run {}: {e}", core.display()))
}

/// What became of a command line sent to an agent.
enum Served {
    /// it ran: its exit code (its output is printed)
    Exit(u8),
    /// no agent ran it, nothing was printed: why
    No(String),
    /// the agent took it and then went away: whether it ran is not known
    Failed(String),
}

fn by_agent(argv: &[OsString]) -> Served {
    let Some(socket) = wire::socket_path(&wire::store_dir(argv), false) else {
        return Served::No("no agent serves the store".into());
    };
    let Ok(mut conn) = UnixStream::connect(&socket) else {
        return Served::No("no agent serves the store".into());
    };
    let mut frame = match Request::of_this_process(argv.to_vec()).and_then(|r| r.encode()) {
        Ok(f) => f,
        Err(e) => return Served::No(e.to_string()),
    };
    if let Err(e) = conn.write_all(&frame) {
        return Served::No(format!("the agent did not take the command: {e}"));
    }
    wire::wipe(&mut frame); // the command line may hold a secret (`passphrase=…`)
                            // The whole answer is read before anything is printed: an agent never waits on a reader
                            // that is slow to take this command's output (`certman print | less`).
    let mut output = Vec::new();
    let end = loop {
        match Answer::read_from(&mut conn) {
            Ok(a @ (Answer::Stdout(_) | Answer::Stderr(_))) => output.push(a),
            Ok(Answer::Exit(code)) => break code,
            Ok(Answer::RunLocally(why)) => return Served::No(why),
            Err(e) => {
                return Served::Failed(format!(
                    "the agent ended before answering ({e}); the command may or may not have run"
                ))
            }
        }
    };
    let (mut stdout, mut stderr) = (std::io::stdout().lock(), std::io::stderr().lock());
    let mut out_error = None;
    for a in output {
        match a {
            Answer::Stdout(b) if out_error.is_none() => out_error = stdout.write_all(&b).err(),
            Answer::Stderr(b) => {
                let _ = stderr.write_all(&b);
            }
            _ => {}
        }
    }
    let flushed = match out_error {
        Some(e) => Err(e),
        None => stdout.flush(),
    };
    match flushed {
        // a reader that went away (`certman print | head -1`) is not an error
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe && end == 0 => {
            Served::Failed(format!("cannot write to standard output: {e}"))
        }
        _ => Served::Exit(end),
    }
}

fn fail(what: &str) -> u8 {
    let _ = writeln!(std::io::stderr(), "certman: error: {what}");
    1
}

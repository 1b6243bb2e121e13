//! `certman agent`: command lines on its store run in it (`CERTMAN_AGENT=require` proves it),
//! with the same output, exit codes and numbers as in a process of their own; what it must
//! not run (a secret to read, another environment, another store, a command it does not
//! serve) is run by the client; its socket is private; it goes away cleanly.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A test's env with its own runtime directory (where agents' sockets are).
fn env() -> Env {
    let env = Env::new();
    let run = env.root().join("run");
    std::fs::create_dir(&run).unwrap();
    env.with_env("XDG_RUNTIME_DIR", &run)
}

/// A running agent on `env`'s store; SIGTERM and reaped on drop.
struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Agent {
    fn start(env: &Env) -> Agent {
        Agent::start_with(env, &["agent", "idle-timeout=0"])
    }

    fn start_with(env: &Env, args: &[&str]) -> Agent {
        let mut child = env
            .command(args)
            .env("CERTMAN_AGENT", "off")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start certman agent");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("serving"), "agent did not start: {line:?}");
        let socket = line
            .split(" on ")
            .nth(1)
            .and_then(|s| s.split(" (pid").next())
            .map(PathBuf::from)
            .expect("socket in the announcement");
        Agent { child, socket }
    }

    fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: kill signals the child this struct owns.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: as in stop.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// `env` with CERTMAN_AGENT=require: a command the agent does not run fails.
fn served(env: &Env, args: &[&str]) -> std::process::Output {
    env.command(args)
        .env("CERTMAN_AGENT", "require")
        .output()
        .unwrap()
}

/// `env` with CERTMAN_AGENT=off: a process of its own.
fn local(env: &Env, args: &[&str]) -> std::process::Output {
    env.command(args)
        .env("CERTMAN_AGENT", "off")
        .output()
        .unwrap()
}

#[test]
fn commands_run_in_the_agent_as_they_would_alone() {
    let env = env();
    env.make_ca("ca", &["key-type=ec", "key-size=prime256v1"]);
    let agent = Agent::start(&env);
    for args in [
        &[
            "add",
            "name=leaf",
            "common-name=leaf.example",
            "subject-alt-name=DNS:leaf.example",
            "key-type=ec",
            "key-size=prime256v1",
        ][..],
        &["sign", "leaf", "ca=ca"],
    ] {
        let out = served(&env, args);
        assert_success(&out, &format!("served {args:?}"));
    }
    // what it signed verifies, and the store shows it to a process of its own
    let ca = env.export_cert("ca");
    assert_verifies(&ca, &env.export_cert("leaf"));
    for args in [
        &["print"][..],
        &["print", "detail"],
        &["print", "--json"],
        &["print", "where", "issued"],
        &["print", "count-only"],
    ] {
        let (a, l) = (served(&env, args), local(&env, args));
        assert_success(&a, &format!("served {args:?}"));
        let strip = |o: &std::process::Output| {
            stdout(o)
                .lines()
                .filter(|l| !l.contains("expires-after"))
                .map(|l| l.to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&a), strip(&l), "{args:?} differs");
    }
    // errors: the same line and exit code
    let (a, l) = (
        served(&env, &["sign", "nosuch"]),
        local(&env, &["sign", "nosuch"]),
    );
    assert_eq!(a.status.code(), Some(EXIT_NOT_FOUND));
    assert_eq!((a.status.code(), stderr(&a)), (l.status.code(), stderr(&l)));
    let (a, l) = (
        served(&env, &["--json", "sign", "nosuch"]),
        local(&env, &["--json", "sign", "nosuch"]),
    );
    assert_eq!(stderr(&a), stderr(&l));
    // the table fits the client's width, not the agent's
    let narrow = |via: &str| {
        env.command(&["print"])
            .env("COLUMNS", "40")
            .env("CERTMAN_AGENT", via)
            .output()
            .unwrap()
    };
    let (a, l) = (narrow("require"), narrow("off"));
    assert_success(&a, "served narrow print");
    assert_eq!(stdout(&a), stdout(&l), "narrow print differs");
    assert!(
        stdout(&a).contains(".."),
        "not fitted to 40 columns:\n{}",
        stdout(&a)
    );
    assert!(agent.stop().success());
}

#[test]
fn numbers_of_a_print_in_the_agent_are_the_sessions() {
    let env = env();
    let agent = Agent::start_with(&env, &["--create", "agent", "idle-timeout=0"]);
    for n in ["a", "b", "c"] {
        assert_success(&served(&env, &["add", &format!("name={n}")]), "add");
    }
    assert_success(&served(&env, &["print"]), "print");
    // `remove 1` in a process of its own means what the agent's print showed as 1
    assert_success(&local(&env, &["remove", "1"]), "remove 1");
    // and `remove 2` in the agent, what that print showed as 2 (the print's numbers hold)
    assert_success(&served(&env, &["remove", "2"]), "remove 2");
    assert_eq!(env.names(), ["a"]);
    drop(agent);
}

#[test]
fn what_the_agent_must_not_run_the_client_runs() {
    let env = env().with_env("EXPORT_PW", "correct horse");
    env.make_ca("ca", &["key-type=ec", "key-size=prime256v1"]);
    let agent = Agent::start(&env);
    let export = [
        "export-certificate",
        "ca",
        "export-passphrase-source=env:EXPORT_PW",
    ];
    // a secret read from the client's environment: not by the agent...
    let out = served(&env, &export);
    let e = assert_error(&out, EXIT_FAILED, "served export with a secret source");
    assert!(e.contains("reads a secret"), "{e}");
    assert!(
        !env.path("cert_export_ca.key").exists(),
        "the agent wrote the key"
    );
    // ...by the client, as without an agent
    env.ok(&export);
    let key = env.path("cert_export_ca.key");
    assert_eq!(
        key_public_key(&key, "correct horse"),
        cert_public_key(&env.path("cert_export_ca.crt"))
    );
    // another environment
    let out = env
        .command(&["print"])
        .env("CERTMAN_AGENT", "require")
        .env("SOME_OTHER_VARIABLE", "1")
        .output()
        .unwrap();
    assert!(stderr(&out).contains("environment"), "{}", stderr(&out));
    let out = env
        .command(&["print"])
        .env("SOME_OTHER_VARIABLE", "1")
        .output()
        .unwrap();
    assert_success(&out, "print in another environment, by the client");
    // commands it does not serve; help and usage errors
    for args in [
        &["issued-revoke", "ca"][..],
        &["crl", "print"],
        &["--help"],
        &["add", "bogus=1"],
        &["--force-last-pin-try", "print"],
    ] {
        let out = served(&env, args);
        assert!(
            stderr(&out).contains("no agent ran this command"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // another store: no agent serves it
    let other = env.root().join("other-store");
    let out = env
        .command(&["--create", "print"])
        .env("CERTMAN_AGENT", "require")
        .env("CERTMAN_STORE", &other)
        .output()
        .unwrap();
    assert!(stderr(&out).contains("no agent"), "{}", stderr(&out));
    drop(agent);
}

#[test]
fn the_socket_is_private_and_one_agent_serves_a_store() {
    let env = env();
    env.make_ca("ca", &[]);
    let agent = Agent::start(&env);
    let m = std::fs::symlink_metadata(&agent.socket).unwrap();
    assert_eq!(m.mode() & 0o777, 0o600, "socket mode");
    assert_eq!(
        mode(agent.socket.parent().unwrap()),
        0o700,
        "socket directory mode"
    );
    // a second agent on the store is refused
    let e = env
        .command(&["agent"])
        .env("CERTMAN_AGENT", "off")
        .output()
        .unwrap();
    let e = assert_error(&e, EXIT_FAILED, "second agent");
    assert!(e.contains("already serves"), "{e}");
    // garbage on the socket: the agent notes it and goes on serving
    let mut s = std::os::unix::net::UnixStream::connect(&agent.socket).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    drop(s);
    let mut s = std::os::unix::net::UnixStream::connect(&agent.socket).unwrap();
    s.write_all(b"CMA1\xff\xff\xff\xff").unwrap();
    drop(s);
    assert_success(&served(&env, &["print"]), "print after garbage");
    // SIGTERM: it ends, removes its socket, and leaves the WAL empty for the CLI
    let socket = agent.socket.clone();
    assert!(agent.stop().success());
    assert!(!socket.exists(), "socket left behind");
    let wal = env.store.join("certman.db-wal");
    assert_eq!(
        std::fs::metadata(&wal).map_or(0, |m| m.len()),
        0,
        "WAL not emptied"
    );
}

#[test]
fn a_killed_agent_leaves_nothing_in_the_way() {
    let env = env();
    env.make_ca("ca", &[]);
    let mut agent = Agent::start(&env);
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    assert!(agent.socket.exists(), "SIGKILL cannot remove the socket");
    // its stale socket: commands run by themselves, and a new agent takes its place
    env.ok(&["print"]);
    let out = served(&env, &["print"]);
    assert!(stderr(&out).contains("no agent"), "{}", stderr(&out));
    let again = Agent::start(&env);
    assert_success(&served(&env, &["print"]), "served by the new agent");
    drop(again);
    drop(agent);
}

#[test]
fn an_idle_agent_ends_by_itself() {
    let env = env();
    env.make_ca("ca", &[]);
    let mut agent = Agent::start_with(&env, &["agent", "idle-timeout=1s"]);
    let t = Instant::now();
    loop {
        if let Some(status) = agent.child.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the agent did not end"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!agent.socket.exists());
}

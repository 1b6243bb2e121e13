//! The operator's console as a RouterOS user meets it: `print` fitted to the terminal, with
//! `where`, `count-only`, `terse` and `tree`; the `#` numbers of the last print standing for
//! entries (`remove 1`, `requests grant 0`); `certman script` running the seed's `/certificate`
//! lines from a `.rsc` file, stopping at a failing line with its number.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use common::daemon::*;
use common::*;
use serde_json::Value;

/// A CA with two leaves (one 5 days, one 400), and a template.
fn small_store() -> Env {
    let env = Env::new();
    env.make_ca("ca", &["key-type=ec"]);
    env.issue("soon", "ca", &["days-valid=5", "key-type=ec"]);
    env.issue(
        "later",
        "ca",
        &[
            "days-valid=400",
            "key-type=ec",
            "subject-alt-name=DNS:a-rather-long-name.example.com,DNS:another-long-name.example.com",
        ],
    );
    env.ok(&["add", "name=tpl", "common-name=tpl"]);
    env
}

/// `certman ARGS` in a session of its own (as from another terminal).
fn other_session(env: &Env, args: &[&str]) -> Output {
    let mut c: Command = env.command(args);
    // SAFETY: setsid in the child between fork and exec touches no shared state.
    unsafe {
        c.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    c.output().expect("run certman")
}

fn names_of(json: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(json).expect("json");
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn print_filters_counts_fits_and_draws_the_tree() {
    let env = small_store();
    assert_eq!(
        env.ok(&["print", "where", "trusted=yes", "count-only"])
            .trim(),
        "1"
    );
    assert_eq!(
        env.ok(&[
            "print",
            "where",
            "issued",
            "and",
            "expires-after<7d",
            "count-only"
        ])
        .trim(),
        "1"
    );
    assert_eq!(
        env.ok(&[
            "print",
            "count-only",
            "where",
            "!template",
            "days-valid>100"
        ])
        .trim(),
        "2"
    );
    let j: Value =
        serde_json::from_str(&env.ok(&["--json", "print", "where", "template", "count-only"]))
            .unwrap();
    assert_eq!(j["count"], 1);
    let soon = names_of(&env.ok(&[
        "--json",
        "print",
        "where",
        "invalid-after<2100-01-01",
        "and",
        "(name~^so",
        "or",
        "name=nothing)",
    ]));
    assert_eq!(soon, ["soon"]);

    // Not on a terminal: every column whole (the full fingerprint); with COLUMNS, fitted.
    let full = env.ok(&["print"]);
    let fp = env.entry("ca")["fingerprint"].as_str().unwrap().to_owned();
    assert!(full.contains(&fp), "{full}");
    assert!(full.lines().nth(1).unwrap().contains("EXPIRES-AFTER"));
    let out = env
        .command(&["print"])
        .env("COLUMNS", "80")
        .output()
        .unwrap();
    let narrow = stdout(&out);
    assert!(narrow.lines().all(|l| l.chars().count() <= 80), "{narrow}");
    assert!(narrow.contains("..") && !narrow.contains(&fp), "{narrow}");
    assert_eq!(
        narrow.lines().count(),
        full.lines().count() + 1,
        "legend wraps"
    );

    let terse = env.ok(&["print", "terse"]);
    assert_eq!(terse.lines().count(), 4, "{terse}");
    assert!(terse.lines().all(|l| l.contains("name=\"")), "{terse}");

    let tree = env.ok(&["print", "tree"]);
    let lines: Vec<&str> = tree.lines().collect();
    assert!(lines[2].contains(" ca "), "{tree}");
    assert!(
        lines[3].contains("├─ soon") && lines[4].contains("└─ later"),
        "{tree}"
    );
    assert!(lines[5].contains("tpl (template)"), "{tree}");
    let j: Value = serde_json::from_str(&env.ok(&["--json", "print", "tree"])).unwrap();
    assert_eq!(j[0]["issued"].as_array().unwrap().len(), 2, "{j}");

    // A property no entry has, and a bad expression: one line, exit 2.
    let e = env.fail(&["print", "where", "bogus=1"], 2);
    assert!(e.contains("no property 'bogus'"), "{e}");
    let e = env.fail(&["print", "where", "(trusted"], 2);
    assert!(e.contains("not closed"), "{e}");
}

#[test]
fn numbers_are_those_of_the_last_print_in_the_session() {
    let env = Env::new();
    for n in ["a", "b", "c", "d"] {
        env.ok(&["add", &format!("name={n}"), &format!("common-name={n}")]);
    }
    // Without a print in this session, a number is the position in a full print.
    let out = other_session(&env, &["--json", "print", "1"]);
    assert_success(&out, "print 1 in a fresh session");
    assert_eq!(names_of(&stdout(&out)), ["b"]);

    let shown = env.ok(&["print", "where", "name!=a"]);
    assert!(shown.contains("0           b"), "{shown}");
    env.ok(&["remove", "1"]); // c
                              // still the numbers of that print: #2 is d, though d is now second of three
    env.ok(&["remove", "2"]);
    assert_eq!(env.names(), ["a", "b"]);
    // `print --json` numbers too (env.names() printed a, b)
    let e = env.fail(&["remove", "2"], 2);
    assert!(
        e.contains("no item #2") && e.contains("shows 2 items"),
        "{e}"
    );
    env.ok(&["set", "1", "common-name=bee"]);
    assert_eq!(env.entry("b")["common-name"], "bee");
    // another terminal has its own numbers: its #0 is a full print's first
    let out = other_session(&env, &["remove", "0"]);
    assert_success(&out, "remove 0 in another session");
    assert_eq!(env.names(), ["b"]);
}

fn write(env: &Env, name: &str, text: &str) -> String {
    let p = env.path(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn the_seeds_scep_example_runs_as_scripts_and_by_numbers() {
    let server = Env::new();
    let rsc = write(
        &server,
        "server.rsc",
        "\
# RouterOS manual, Basic SCEP Example: the server
/certificate
add common-name=ca name=ca-tpl
sign ca-tpl name=ca
/certificate scep-server add ca-cert=ca path=/scep/test
",
    );
    server.ok(&["script", &rsc]);
    let d = Daemon::start(&server, "127.0.0.1:0");
    let client = Env::new();
    let url = format!("http://127.0.0.1:{}/scep/test/pkiclient.exe", d.port);
    let rsc = write(
        &client,
        "client.rsc",
        &format!(
            "\
/certificate
add common-name=tst-client name=tpl_1
add-scep template=tpl_1 \\
    scep-url=\"{url}\"
"
        ),
    );
    let out = client.ok(&["script", &rsc]);
    assert!(out.contains("requesting-pending-certificate"), "{out}");

    let queue = server.ok(&["scep-server", "requests", "print"]);
    assert!(
        queue.contains("pending") && queue.contains("tst-client"),
        "{queue}"
    );
    server.ok(&["scep-server", "requests", "grant", "0"]);
    let out = client.ok(&["scep-renew", "tpl_1"]);
    assert!(out.contains("status=issued"), "{out}");

    // the server: 0 ca, 1 the issued certificate, which RouterOS keeps (refused by number)
    let listing = server.ok(&["print"]);
    assert!(listing.lines().nth(3).unwrap().contains(" I "), "{listing}");
    let e = server.fail(&["remove", "1"], 4);
    assert!(e.contains("issued"), "{e}");
    // the client: its CA (recorded first) and tpl_1 with the issued certificate
    let listing = client.ok(&["print"]);
    let rows: Vec<&str> = listing.lines().skip(2).collect();
    assert!(rows[0].starts_with("0     A   T tpl_1_CA"), "{listing}");
    assert!(
        rows[1].starts_with("1 K") && rows[1].contains("tpl_1 "),
        "{listing}"
    );
    client.ok(&["remove", "1"]); // tpl_1, and its SCEP client
    client.ok(&["remove", "0"]); // tpl_1_CA: #0 of that print
    assert!(client.names().is_empty(), "{:?}", client.names());
    d.stop();
}

#[test]
fn a_script_stops_at_its_first_failing_line_and_names_it() {
    let env = Env::new();
    let rsc = write(
        &env,
        "setup.rsc",
        "\
/certificate
add name=x common-name=x

sign nosuch
add name=y common-name=y
",
    );
    let out = env.run(&["script", &rsc]);
    let err = assert_error(&out, 3, "a failing line");
    assert!(
        err.contains("setup.rsc:4: error: no such template"),
        "{err}"
    );
    assert_eq!(env.names(), ["x"], "nothing after the failing line ran");

    // --continue: the rest runs, the exit code is the first failure's
    env.ok(&["remove", "x"]);
    let out = env.run(&["script", "--continue", &rsc]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("1 of 3 lines failed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.names(), ["x", "y"]);

    // a line certman can't run is refused before any line runs
    let bad = write(&env, "bad.rsc", "add name=z common-name=z\n:put hello\n");
    let e = env.fail(&["script", &bad], 2);
    assert!(
        e.contains("bad.rsc:2") && e.contains("only /certificate"),
        "{e}"
    );
    assert!(!env.names().contains(&"z".to_owned()));

    // [find …] and the script's own numbers, from stdin
    let mut c = env.command(&["script", "-"]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"add name=t1 common-name=t1\nremove [find where name=y or name=t1]\nprint\nremove 0\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_success(&out, "script from stdin");
    assert!(env.names().is_empty(), "{:?}", env.names());
}

//! `--json`: every command prints one JSON document on stdout, in one shape (numbers as
//! numbers, times RFC 3339, durations RouterOS's), and an error is one JSON object on stderr
//! whose `exit` is the process's exit code.

mod common;

use std::fs;

use chrono::DateTime;
use common::*;
use serde_json::Value;

/// Keys that hold a point in time wherever they appear.
const TIMES: &[&str] = &[
    "invalid-before",
    "invalid-after",
    "this-update",
    "next-update",
    "fetched-at",
    "created",
    "expires",
    "used",
    "revoked-at",
];

/// Checks the shape rules on every object in `v`: times are RFC 3339 strings (or null),
/// `expires-after` is a RouterOS duration, an RSA `key-size` is a number, `days-valid` and
/// `#` are numbers.
fn check_shape(v: &Value, what: &str) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| check_shape(x, what)),
        Value::Object(o) => {
            for (k, x) in o {
                if TIMES.contains(&k.as_str()) && !x.is_null() {
                    let s = x
                        .as_str()
                        .unwrap_or_else(|| panic!("{what}: {k} is not a string: {x}"));
                    assert!(
                        DateTime::parse_from_rfc3339(s).is_ok(),
                        "{what}: {k} is not RFC 3339: {s}"
                    );
                }
                match k.as_str() {
                    "expires-after" if !x.is_null() => {
                        let s = x.as_str().unwrap_or_default();
                        assert!(
                            s == "expired"
                                || (!s.is_empty()
                                    && s.chars()
                                        .all(|c| c.is_ascii_digit() || "wdhms".contains(c))),
                            "{what}: expires-after is not a RouterOS duration: {x}"
                        );
                    }
                    "key-size" => assert!(
                        x.is_number() || x.as_str().is_some_and(|s| s.parse::<u64>().is_err()),
                        "{what}: key-size in bits must be a number: {x}"
                    ),
                    "days-valid" | "#" | "number" | "entries" => {
                        assert!(
                            x.is_number() || x.is_null(),
                            "{what}: {k} is not a number: {x}"
                        )
                    }
                    _ => {}
                }
                check_shape(x, what);
            }
        }
        _ => {}
    }
}

/// `certman --json ARGS…`: succeeds, prints exactly one JSON document in the shape.
fn j(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let text = env.ok(&all);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("certman {args:?} --json is not one JSON document ({e}):\n{text}")
    });
    check_shape(&v, &format!("{args:?}"));
    v
}

/// `certman --json ARGS…` fails with `code`: nothing on stdout, one JSON object on stderr,
/// its `exit` the exit code and its `kind` the code's word.
fn j_err(env: &Env, args: &[&str], code: i32) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = env.run(&all);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
    assert!(out.stdout.is_empty(), "{args:?}: {}", stdout(&out));
    let err = stderr(&out);
    assert_eq!(
        err.lines().count(),
        1,
        "{args:?}: one line on stderr: {err}"
    );
    let v: Value = serde_json::from_str(&err)
        .unwrap_or_else(|e| panic!("{args:?}: stderr is not JSON ({e}): {err}"));
    assert_eq!(v["exit"], code, "{v}");
    let kind = match code {
        EXIT_FAILED => "failed",
        EXIT_USAGE => "usage",
        EXIT_NOT_FOUND => "not_found",
        EXIT_REFUSED => "refused",
        EXIT_TOKEN => "token",
        _ => unreachable!(),
    };
    assert_eq!(v["kind"], kind, "{v}");
    assert!(!v["error"].as_str().unwrap_or_default().is_empty(), "{v}");
    v
}

#[test]
fn entries_add_set_sign_print() {
    let env = Env::new();
    let t = j(
        &env,
        &[
            "add",
            "name=ca-tpl",
            "common-name=ca",
            "key-usage=key-cert-sign,crl-sign",
        ],
    );
    assert_eq!(
        (t["name"].as_str(), t["template"].as_bool()),
        (Some("ca-tpl"), Some(true))
    );
    let t = j(&env, &["set", "ca-tpl", "days-valid=3650", "key-size=3072"]);
    assert_eq!(
        (t["days-valid"].as_i64(), t["key-size"].as_u64()),
        (Some(3650), Some(3072))
    );
    let t = j(&env, &["set", "ca-tpl", "name=root-tpl"]);
    assert_eq!(t["name"], "root-tpl");
    let ca = j(&env, &["sign", "root-tpl", "name=root"]);
    assert_eq!(
        (ca["name"].as_str(), ca["key-size"].as_u64()),
        (Some("root"), Some(3072))
    );
    j(
        &env,
        &[
            "add",
            "name=ec",
            "common-name=ec",
            "key-type=ec",
            "key-size=secp384r1",
        ],
    );
    let ec = j(&env, &["sign", "ec", "ca=root"]);
    assert_eq!(ec["key-size"], "secp384r1");
    let c = j(&env, &["set", "ec", "trusted=yes"]);
    assert_eq!(c["trusted"], true);
    let all = j(&env, &["print"]);
    assert_eq!(all.as_array().map(Vec::len), Some(2), "{all}");
    assert!(all[0]["invalid-after"].is_string());
}

#[test]
fn files_crls_revocation_settings_and_verify() {
    let env = Env::new();
    env.make_ca("root", &[]);
    env.issue(
        "srv",
        "root",
        &["key-usage=tls-server", "subject-alt-name=DNS:srv.example"],
    );
    let f = j(&env, &["export-certificate", "root"]);
    assert!(
        f["files"][0]
            .as_str()
            .unwrap()
            .ends_with("cert_export_root.crt"),
        "{f}"
    );
    assert_eq!(
        j(
            &env,
            &["ca-set-passphrase", "root", "passphrase=a long passphrase"]
        ),
        serde_json::json!({"ca-passphrase-set": "root"})
    );
    let v = j(&env, &["export-certificate", "srv"]);
    assert_eq!(v["files"].as_array().map(Vec::len), Some(1));
    let v = j(
        &env,
        &["verify", "cert_export_srv.crt", "purpose=tls-server"],
    );
    assert_eq!(v["valid"], true, "{v}");

    let r = j(&env, &["issued-revoke", "srv", "reason=superseded"]);
    assert_eq!(r["revoked"], serde_json::json!(["srv"]));
    assert!(r["crls"][0]["number"].is_number(), "{r}");
    let crls = j(&env, &["crl", "print"]);
    assert!(crls[0]["this-update"].is_string(), "{crls}");
    assert!(crls[0]["next-update"].is_string(), "{crls}");
    let renewed = j(&env, &["crl", "renew", "root"]);
    assert!(renewed[0]["number"].is_number(), "{renewed}");
    let pem = j(&env, &["crl", "export", "root", "file-name=-"]);
    assert!(
        pem["pem"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN X509 CRL-----\n"),
        "{pem}"
    );
    assert_eq!(pem["number"], renewed[0]["number"]);
    let f = j(&env, &["crl", "export", "root"]);
    assert!(f["files"][0].as_str().unwrap().ends_with("root.crl"), "{f}");
    assert_eq!(j(&env, &["crl", "flush"])["crls-flushed"], 0);
    assert_eq!(
        j(&env, &["settings", "set", "crl-use=yes"])["crl-use"],
        true
    );
    assert_eq!(j(&env, &["settings", "print"])["crl-download"], false);

    // a verdict of invalid: the report on stdout, the error on stderr, one exit code
    let out = env.run(&["--json", "verify", "cert_export_srv.crt"]);
    assert_eq!(out.status.code(), Some(EXIT_FAILED));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    check_shape(&report, "verify");
    assert_eq!(report["valid"], false);
    let e: Value = serde_json::from_str(&stderr(&out)).unwrap();
    assert_eq!(
        (e["exit"].as_i64(), e["kind"].as_str()),
        (Some(1), Some("failed"))
    );
}

#[test]
fn requests_imports_and_removal() {
    let env = Env::new();
    env.make_ca("root", &[]);
    j(&env, &["add", "name=req", "common-name=req.example"]);
    let f = j(
        &env,
        &[
            "create-certificate-request",
            "template=req",
            "key-passphrase=a long passphrase",
        ],
    );
    assert_eq!(f["files"].as_array().map(Vec::len), Some(2), "{f}");
    let issued = j(
        &env,
        &[
            "sign-certificate-request",
            "ca=root",
            "file-name=certificate-request.pem",
        ],
    );
    assert_eq!(issued["common-name"], "req.example");
    assert!(issued["files"][0].as_str().is_some(), "{issued}");

    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ed25519",
            "-nodes",
            "-subj",
            "/CN=outside",
            "-days",
            "2",
            "-keyout",
            "outside.key",
            "-out",
            "outside.crt",
        ],
        &env.work,
    );
    fs::remove_file(env.path("outside.key")).unwrap();
    let i = j(&env, &["import", "file-name=outside.crt"]);
    assert_eq!(
        (
            i["certificates-imported"].as_u64(),
            i["files-imported"].as_u64()
        ),
        (Some(1), Some(1))
    );
    // a decrypt that opens nothing fails: the error object, nothing on stdout
    let out = env.run(&["--json", "decrypt", "passphrase=nothing to open"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    let e: Value = serde_json::from_str(stderr(&out).trim()).expect("one JSON error line");
    assert_eq!(
        (e["kind"].as_str(), e["exit"].as_u64()),
        (Some("failed"), Some(1))
    );
    assert_eq!(j(&env, &["reset-certificate-cache"])["keys-dropped"], 0);

    j(&env, &["add", "name=spare"]);
    let r = j(&env, &["remove", "spare"]);
    assert_eq!(r["templates-removed"], serde_json::json!(["spare"]));
}

#[test]
fn scep_servers_otps_and_tokens() {
    let env = Env::new();
    env.make_ca("root", &[]);
    let s = j(
        &env,
        &["scep-server", "add", "ca-cert=root", "path=/scep/root"],
    );
    assert_eq!(
        (s["path"].as_str(), s["days-valid"].as_u64()),
        (Some("/scep/root"), Some(1))
    );
    let s = j(&env, &["scep-server", "set", "root", "days-valid=7"]);
    assert_eq!(s["days-valid"], 7);
    let d = j(&env, &["scep-server", "disable", "root"]);
    assert_eq!(d[0]["disabled"], true, "{d}");
    let e = j(&env, &["scep-server", "enable", "0"]);
    assert_eq!(e[0]["disabled"], false, "{e}");
    assert_eq!(j(&env, &["scep-server", "print"])[0]["path"], "/scep/root");
    let otp = j(&env, &["scep-server", "otp", "generate", "minutes-valid=5"]);
    assert!(
        otp["expires"].is_string() && otp["password"].is_string(),
        "{otp}"
    );
    let otps = j(&env, &["scep-server", "otp", "print"]);
    assert!(
        otps[0]["created"].is_string() && otps[0]["used"].is_null(),
        "{otps}"
    );
    assert_eq!(
        j(&env, &["scep-server", "requests", "print"]),
        serde_json::json!([])
    );
    assert_eq!(
        j(&env, &["scep-server", "ra", "print"]),
        serde_json::json!([])
    );
    assert_eq!(
        j(&env, &["scep-server", "remove", "root"])["removed"],
        serde_json::json!(["/scep/root"])
    );

    let no_tokens = env.root().join("no-tokens");
    fs::create_dir(&no_tokens).unwrap();
    let tokens = j(
        &env,
        &["--tokens", no_tokens.to_str().unwrap(), "token", "print"],
    );
    assert_eq!(tokens, serde_json::json!([]));
}

#[test]
fn errors_are_one_json_object_on_stderr() {
    let env = Env::new();
    env.make_ca("root", &[]);
    env.issue("srv", "root", &[]);
    let e = j_err(&env, &["print", "nosuch"], EXIT_NOT_FOUND);
    assert!(e["error"].as_str().unwrap().contains("nosuch"), "{e}");
    let e = j_err(&env, &["remove", "srv"], EXIT_REFUSED);
    assert!(
        e["hint"].is_string(),
        "a refusal says what to do instead: {e}"
    );
    j_err(&env, &["card-reinstall", "root"], EXIT_REFUSED);
    // usage errors found by the parser, with --json before or after the command
    let e = j_err(&env, &["add", "common-name=x"], EXIT_USAGE);
    assert!(e["error"].as_str().unwrap().contains("name"), "{e}");
    j_err(&env, &["add", "name=x", "colour=blue"], EXIT_USAGE);
    let out = env.run(&["set", "nosuch", "trusted=yes", "--json"]);
    assert_eq!(out.status.code(), Some(EXIT_NOT_FOUND));
    let e: Value = serde_json::from_str(&stderr(&out)).unwrap();
    assert_eq!(e["kind"], "not_found");
    // without --json the one-line text stays
    let err = env.fail(&["print", "nosuch"], EXIT_NOT_FOUND);
    assert!(err.starts_with("certman: error: "), "{err}");
}

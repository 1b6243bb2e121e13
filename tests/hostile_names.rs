//! Names from outside: CSRs (made by OpenSSL, their subjectAltName given as raw DER) asking for
//! an 8-byte IP address, a DNS name with a space or `..`, a URI holding NUL, an e-mail without
//! `@`, or a subject with ESC are refused with nothing issued; a CSR with a 512-bit RSA key
//! says so; an imported certificate whose EC point is off its curve is refused; a name
//! holding ESC prints as `\x1b`, never as the byte itself.

mod common;

use common::*;

fn ca() -> Env {
    let env = Env::new();
    env.make_ca("ca", &[]);
    env
}

/// A CSR for `/CN=cn` with `-addext` `ext`, written as `file` in the work dir.
fn csr(env: &Env, file: &str, subject: &str, ext: Option<&str>, key: &str) {
    let mut args = vec![
        "req", "-new", "-newkey", key, "-nodes", "-keyout", "csr.key", "-out", file, "-subj",
        subject,
    ];
    if let Some(e) = ext {
        args.extend(["-addext", e]);
    }
    openssl(&args, &env.path(""));
}

#[test]
fn malformed_subject_alt_names_and_subjects_in_a_csr_are_refused_with_nothing_issued() {
    let env = ca();
    let cases = [
        // [7] iPAddress of 8 bytes (a name-constraint form, not an address)
        (
            "ip8.csr",
            "/CN=x",
            Some("subjectAltName=DER:300a870801020304ffffff00"),
            "8 bytes",
        ),
        // [2] dNSName "a b.com"
        (
            "space.csr",
            "/CN=x",
            Some("subjectAltName=DER:3009820761206 22e636f6d"),
            "DNS name",
        ),
        // [2] dNSName "a..com"
        (
            "dots.csr",
            "/CN=x",
            Some("subjectAltName=DER:3008820661 2e2e636f6d"),
            "empty label",
        ),
        // [6] URI "http://x/<NUL>"
        (
            "nul.csr",
            "/CN=x",
            Some("subjectAltName=DER:300c860a687474703a2f2f782f00"),
            "URI",
        ),
        // [1] rfc822Name "nobody"
        (
            "mail.csr",
            "/CN=x",
            Some("subjectAltName=DER:30088106 6e6f626f6479"),
            "e-mail",
        ),
        // a subject with ESC
        ("esc.csr", "/CN=a\u{1b}[2Jb", None, "control characters"),
    ];
    for (file, subject, ext, expect) in cases {
        let ext = ext.map(|e| e.replace(' ', ""));
        csr(&env, file, subject, ext.as_deref(), "rsa:2048");
        let before = env.snapshot();
        let out = env.run(&[
            "sign-certificate-request",
            "ca=ca",
            &format!("file-name={file}"),
        ]);
        let err = assert_error(&out, EXIT_USAGE, file);
        assert!(err.contains(expect), "{file}: {err}");
        assert!(!err.contains('\u{1b}'), "{file}: raw ESC in {err:?}");
        assert_eq!(env.snapshot(), before, "{file} changed the store");
    }
}

#[test]
fn a_csr_with_a_tiny_rsa_key_says_so() {
    let env = ca();
    csr(&env, "small.csr", "/CN=small", None, "rsa:512");
    let out = env.run(&["sign-certificate-request", "ca=ca", "file-name=small.csr"]);
    let err = assert_error(&out, EXIT_USAGE, "512-bit request");
    assert!(
        err.contains("512 bits") && err.contains("at least 1024"),
        "{err}"
    );
}

#[test]
fn an_ec_certificate_off_its_curve_is_refused_at_import() {
    let env = Env::new();
    let dir = env.path("");
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ec.key",
            "-out",
            "ec.pem",
            "-subj",
            "/CN=ec",
            "-days",
            "1",
            "-outform",
            "PEM",
        ],
        &dir,
    );
    let der = openssl_der(&env.path("ec.pem"));
    // the uncompressed point 04 || X || Y: change the last byte of Y
    let at = der
        .windows(2)
        .position(|w| w == [0x00, 0x04])
        .expect("the point in its BIT STRING")
        + 1
        + 64;
    let mut bad = der.clone();
    bad[at] ^= 0x01;
    std::fs::write(env.path("off.der"), &bad).unwrap();
    let before = env.snapshot();
    let out = env.run(&["import", "file-name=off.der"]);
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("not a point on its curve"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.snapshot(), before);
}

#[test]
fn a_name_holding_esc_is_printed_escaped() {
    let env = Env::new();
    let dir = env.path("");
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "e.key",
            "-out",
            "e.pem",
            "-subj",
            "/CN=evil\u{1b}[2J\u{7}",
            "-days",
            "1",
        ],
        &dir,
    );
    env.ok(&["import", "file-name=e.pem"]);
    for args in [&["print"][..], &["print", "detail"][..]] {
        let out = env.ok(args);
        assert!(out.contains("evil\\x1b[2J\\x07"), "{args:?}: {out}");
        assert!(
            !out.contains('\u{1b}') && !out.contains('\u{7}'),
            "{args:?}: {out:?}"
        );
    }
    // JSON keeps the value and escapes it as JSON does
    let json = env.ok(&["print", "--json"]);
    assert!(json.contains("evil\\u001b[2J\\u0007"), "{json}");
}

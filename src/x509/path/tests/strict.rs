//! The RFC 5280 rules certman checks on top of webpki (`strict`), the names asked for and
//! the longest path, against certificates made with the `openssl` command line.

use super::*;

/// Checks `target` against a store, for any purpose, now, with the names and depth given.
fn check_for(
    target: &[u8],
    store: &[(&str, &[u8], bool)],
    names: &[ReferenceName],
    max_depth: Option<usize>,
) -> PathReport {
    let store: Vec<StoreCert<'_>> = store
        .iter()
        .map(|&(name, der, trusted)| StoreCert { name, der, trusted })
        .collect();
    validate(&PathInput {
        target,
        extra: &[],
        store: &store,
        crls: None,
        purpose: Purpose::Any,
        now: SystemTime::now(),
        names,
        max_depth,
    })
}

/// root (trusted) → int → leaf, with these extensions; the verdict for leaf.
fn chain_with(root_ext: &str, int_ext: &str, leaf_ext: &str) -> PathReport {
    let pki = Pki::new();
    let root = pki.cert("root", "ec", None, root_ext, 3650);
    let int = pki.cert("int", "ec", Some("root"), int_ext, 3650);
    let leaf = pki.cert("leaf", "ec", Some("int"), leaf_ext, 365);
    let store = [("root", &root[..], true), ("int", &int[..], false)];
    check_for(&leaf, &store, &[], None)
}

/// Requires an invalid verdict of `kind` whose reason starts with `RFC 5280 §<section>:` and
/// contains `words`.
fn assert_rule(r: &PathReport, kind: Failure, section: &str, words: &str) {
    let (k, reason) = failure(r);
    assert_eq!(k, kind, "{reason}");
    assert!(
        reason.starts_with(&format!("RFC 5280 §{section}: ")),
        "{reason}"
    );
    assert!(reason.contains(words), "{reason}");
}

const UNKNOWN_CRITICAL: &str = "1.3.6.1.4.1.55555.1=critical,DER:05:00\n";

#[test]
fn the_chain_made_for_these_tests_is_valid() {
    assert_valid(&chain_with(CA, CA, SERVER));
    // An unknown extension that is not critical is no reason to refuse.
    let ext = "1.3.6.1.4.1.55555.1=DER:05:00\n";
    assert_valid(&chain_with(
        &format!("{CA}{ext}"),
        &format!("{CA}{ext}"),
        &format!("{SERVER}{ext}"),
    ));
}

#[test]
fn an_unknown_critical_extension_is_refused_at_every_depth() {
    for (root, int, leaf, whose) in [
        (CA, CA, format!("{SERVER}{UNKNOWN_CRITICAL}"), "CN=leaf"),
        (
            CA,
            &format!("{CA}{UNKNOWN_CRITICAL}")[..],
            SERVER.into(),
            "CN=int",
        ),
        // webpki ignores the extensions of a trust anchor; certman does not.
        (
            &format!("{CA}{UNKNOWN_CRITICAL}")[..],
            CA,
            SERVER.into(),
            "CN=root",
        ),
    ] {
        let r = chain_with(root, int, &leaf);
        assert_rule(
            &r,
            Failure::Malformed,
            "4.2",
            &format!(
                "{whose} has a critical extension certman does not process: 1.3.6.1.4.1.55555.1"
            ),
        );
        assert_eq!(r.chain.len(), 3, "the chain is still shown: {r:?}");
    }
    // No policy processing: a critical certificatePolicies is not understood either.
    let r = chain_with(
        CA,
        &format!("{CA}certificatePolicies=critical,2.23.140.1.2.1\n"),
        SERVER,
    );
    assert_rule(
        &r,
        Failure::Malformed,
        "4.2",
        "CN=int has a critical extension",
    );
    assert!(failure(&r).1.contains("certificatePolicies (2.5.29.32)"));
}

#[test]
fn a_ca_certificate_without_basic_constraints_ca_cannot_issue() {
    let no_bc = "keyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n";
    let ca_false = "basicConstraints=critical,CA:FALSE\nsubjectKeyIdentifier=hash\n";
    let bare = "subjectKeyIdentifier=hash\n";
    for int in [no_bc, ca_false, bare] {
        let r = chain_with(CA, int, SERVER);
        assert_rule(
            &r,
            Failure::BasicConstraints,
            "4.2.1.9",
            "CN=int issues certificates",
        );
    }
    // The trust anchor too (webpki takes any trusted certificate as an issuer).
    for root in [ca_false, bare] {
        let r = chain_with(root, CA, SERVER);
        assert_rule(
            &r,
            Failure::BasicConstraints,
            "4.2.1.9",
            "CN=root issues certificates but is not a CA",
        );
    }
    // A trusted certificate that is not a CA is still valid as itself: it issues nothing.
    let pki = Pki::new();
    let own = pki.cert("own", "ec", None, SERVER, 365);
    assert_valid(&check_for(&own, &[("own", &own[..], true)], &[], None));
}

#[test]
fn critical_key_identifiers_are_refused() {
    let aki = "authorityKeyIdentifier=critical,keyid:always\n";
    let ski = "subjectKeyIdentifier=critical,hash\n";
    let r = chain_with(CA, CA, &format!("{SERVER}{aki}"));
    assert_rule(
        &r,
        Failure::Malformed,
        "4.2.1.1",
        "the authority key identifier extension is critical in CN=leaf",
    );
    let r = chain_with(
        CA,
        &format!("basicConstraints=critical,CA:TRUE\n{ski}"),
        SERVER,
    );
    assert_rule(
        &r,
        Failure::Malformed,
        "4.2.1.2",
        "the subject key identifier extension is critical in CN=int",
    );
    let r = chain_with(
        &format!("basicConstraints=critical,CA:TRUE\n{ski}"),
        CA,
        SERVER,
    );
    assert_rule(&r, Failure::Malformed, "4.2.1.2", "critical in CN=root");
    // A trusted certificate verified itself is held to the same rules.
    let pki = Pki::new();
    let own = pki.cert("own", "ec", None, &format!("{SERVER}{aki}"), 365);
    let r = check_for(&own, &[("own", &own[..], true)], &[], None);
    assert_rule(&r, Failure::Malformed, "4.2.1.1", "CN=own");
}

#[test]
fn a_leaf_asserting_key_cert_sign_is_refused() {
    for leaf in [
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyCertSign\n",
        "keyUsage=critical,digitalSignature,keyCertSign\n",
    ] {
        let r = chain_with(CA, CA, leaf);
        assert_rule(
            &r,
            Failure::KeyUsage,
            "4.2.1.3",
            "CN=leaf asserts keyCertSign but is not a CA",
        );
    }
    // pathLenConstraint belongs to CAs only.
    let r = chain_with(CA, CA, "basicConstraints=CA:FALSE,pathlen:0\n");
    assert_rule(
        &r,
        Failure::BasicConstraints,
        "4.2.1.9",
        "CN=leaf has a pathLenConstraint",
    );
}

#[test]
fn an_empty_subject_is_refused_on_a_ca_and_needs_a_critical_san_elsewhere() {
    let pki = Pki::new();
    let root = pki.cert("root", "ec", None, CA, 3650);
    let int = pki.cert_cn("int", "", "ec", Some("root"), CA, 3650);
    let leaf = pki.cert("leaf", "ec", Some("int"), SERVER, 365);
    let store = [("root", &root[..], true), ("int", &int[..], false)];
    let r = check_for(&leaf, &store, &[], None);
    assert_rule(&r, Failure::Malformed, "4.1.2.6", "CA certificate serial ");
    assert!(
        failure(&r)
            .1
            .ends_with(" from CN=root has an empty subject"),
        "{r:?}"
    );

    let leaf_ext = "basicConstraints=CA:FALSE\nsubjectAltName=DNS:srv.example\n";
    let empty = pki.cert_cn("empty", "", "ec", Some("root"), leaf_ext, 365);
    let store = [("root", &root[..], true)];
    let r = check_for(&empty, &store, &[], None);
    assert_rule(
        &r,
        Failure::Malformed,
        "4.2.1.6",
        "the subject is empty and the subjectAltName extension is not critical",
    );
    let leaf_ext = "basicConstraints=CA:FALSE\nsubjectAltName=critical,DNS:srv.example\n";
    let empty = pki.cert_cn("empty2", "", "ec", Some("root"), leaf_ext, 365);
    assert_valid(&check_for(&empty, &store, &[], None));
}

#[test]
fn malformed_name_constraints_are_refused() {
    let ca = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n";
    let nc = |value: &str| format!("{ca}nameConstraints={value}\n");
    // Well-formed: permitted, then excluded.
    assert_valid(&chain_with(
        CA,
        &nc("critical,permitted;DNS:srv.example"),
        SERVER,
    ));
    let r = chain_with(CA, &nc("critical,excluded;DNS:srv.example"), SERVER);
    assert_rule(
        &r,
        Failure::NameConstraints,
        "4.2.1.10",
        "the name constraints of CN=int exclude",
    );
    assert!(failure(&r).1.contains("DNS:srv.example"), "{r:?}");

    for (value, words) in [
        ("permitted;DNS:srv.example", "are not marked critical"),
        ("critical,DER:30:00", "are empty"),
        (
            "critical,DER:30:02:a0:00",
            "have an empty permittedSubtrees",
        ),
        // minimum = 1
        (
            "critical,DER:30:14:a0:12:30:10:82:0b:73:72:76:2e:65:78:61:6d:70:6c:65:80:01:01",
            "give a minimum or maximum in permittedSubtrees",
        ),
        // maximum = 3, in excludedSubtrees
        (
            "critical,DER:30:14:a1:12:30:10:82:0b:62:61:64:2e:65:78:61:6d:70:6c:65:81:01:03",
            "give a minimum or maximum in excludedSubtrees",
        ),
        (
            "critical,DER:30:0a:a0:08:30:06:87:04:0a:00:00:00",
            "hold an iPAddress of 4 octets",
        ),
        (
            "critical,excluded;IP:10.0.0.0/255.0.255.0",
            "hold an iPAddress whose mask is not a CIDR prefix",
        ),
    ] {
        let r = chain_with(CA, &nc(value), SERVER);
        assert_rule(
            &r,
            Failure::NameConstraints,
            "4.2.1.10",
            &format!("of CN=int {words}"),
        );
    }
    // On a certificate that is not a CA.
    let r = chain_with(
        CA,
        CA,
        &format!("{SERVER}nameConstraints=critical,permitted;DNS:srv.example\n"),
    );
    assert_rule(
        &r,
        Failure::NameConstraints,
        "4.2.1.10",
        "of CN=leaf are in a certificate that is not a CA",
    );
    // On the trust anchor.
    let r = chain_with(&nc("permitted;DNS:srv.example"), CA, SERVER);
    assert_rule(
        &r,
        Failure::NameConstraints,
        "4.2.1.10",
        "of CN=root are not marked critical",
    );
}

#[test]
fn names_are_matched_against_the_subject_alt_name() {
    let pki = Pki::new();
    let root = pki.cert("root", "ec", None, CA, 3650);
    let leaf_ext = "basicConstraints=CA:FALSE\n\
                    subjectAltName=DNS:srv.example,DNS:*.apps.example,IP:192.0.2.7,IP:2001:db8::7\n";
    let leaf = pki.cert("leaf", "ec", Some("root"), leaf_ext, 365);
    let store = [("root", &root[..], true)];
    let dns = |n: &str| ReferenceName::dns(n).unwrap();
    let ip = |a: &str| ReferenceName::Ip(a.parse().unwrap());
    for good in [
        vec![dns("srv.example")],
        vec![dns("SRV.Example")],
        vec![dns("a.apps.example")],
        vec![ip("192.0.2.7")],
        vec![ip("2001:db8::7")],
        vec![dns("srv.example"), ip("192.0.2.7")],
    ] {
        assert_valid(&check_for(&leaf, &store, &good, None));
    }
    for (bad, what) in [
        (vec![dns("other.example")], "DNS name other.example"),
        (vec![dns("a.b.apps.example")], "DNS name a.b.apps.example"),
        (vec![dns("apps.example")], "DNS name apps.example"),
        (vec![ip("192.0.2.8")], "IP address 192.0.2.8"),
        (vec![ip("2001:db8::8")], "IP address 2001:db8::8"),
        (
            vec![dns("srv.example"), ip("192.0.2.9")],
            "IP address 192.0.2.9",
        ),
    ] {
        let r = check_for(&leaf, &store, &bad, None);
        let (kind, reason) = failure(&r);
        assert_eq!(kind, Failure::Name, "{reason}");
        assert!(
            reason.starts_with(&format!("not valid for the {what}: ")),
            "{reason}"
        );
        assert!(reason.contains("DNS:srv.example"), "{reason}");
        assert_eq!(r.chain.len(), 2, "the chain is still shown");
    }
    // The CN is never a name to match.
    let cn_only = pki.cert_cn(
        "cn",
        "srv.example",
        "ec",
        Some("root"),
        "basicConstraints=CA:FALSE\n",
        365,
    );
    let r = check_for(&cn_only, &store, &[dns("srv.example")], None);
    assert!(failure(&r).1.contains("no subjectAltName"), "{r:?}");
    // A path failure comes first.
    let r = check_for(&leaf, &[], &[dns("other.example")], None);
    assert_eq!(failure(&r).0, Failure::UnknownIssuer);

    assert!(ReferenceName::dns("bad name").is_err());
    assert!(ReferenceName::dns("*.example").is_err());
    let e = ReferenceName::dns("192.0.2.7").unwrap_err();
    assert!(e.contains("--ip"), "{e}");
}

#[test]
fn max_depth_limits_the_intermediate_cas() {
    let pki = Pki::new();
    let root = pki.cert("root", "ec", None, CA, 3650);
    let int1 = pki.cert("int1", "ec", Some("root"), CA, 3650);
    let int2 = pki.cert("int2", "ec", Some("int1"), CA, 3650);
    let leaf = pki.cert("leaf", "ec", Some("int2"), SERVER, 365);
    let store = [
        ("root", &root[..], true),
        ("int1", &int1[..], false),
        ("int2", &int2[..], false),
    ];
    assert_valid(&check_for(&leaf, &store, &[], None));
    assert_valid(&check_for(&leaf, &store, &[], Some(2)));
    let r = check_for(&leaf, &store, &[], Some(1));
    let (kind, reason) = failure(&r);
    assert_eq!(kind, Failure::Depth);
    assert_eq!(
        reason,
        "the chain has 2 intermediate CA certificates, more than max-depth=1"
    );
    assert_eq!(r.chain.len(), 4);
    // 0: issued by the trusted certificate itself.
    let direct = pki.cert("direct", "ec", Some("root"), SERVER, 365);
    assert_valid(&check_for(&direct, &store, &[], Some(0)));
    let r = check_for(&int2, &store, &[], Some(0));
    // int2 is a CA: not verifiable as an end entity, whatever the depth.
    assert_eq!(failure(&r).0, Failure::BasicConstraints);
}

#[test]
fn crl_files_are_read_from_pem_and_der() {
    let pki = Pki::new();
    pki.cert("root", "ec", None, CA, 3650);
    let cnf = pki.ca_config("root");
    let der = pki.crl(&cnf, None);
    assert_eq!(read_crls(&der).unwrap(), vec![der.clone()]);
    let pem = der::pem::encode_string("X509 CRL", der::pem::LineEnding::LF, &der).unwrap();
    let two = format!("junk before\n{pem}{pem}");
    assert_eq!(
        read_crls(two.as_bytes()).unwrap(),
        vec![der.clone(), der.clone()]
    );
    let cert_pem = std::fs::read_to_string(pki.path("root.pem")).unwrap();
    assert_eq!(
        read_crls(cert_pem.as_bytes()).unwrap_err().to_string(),
        "no X509 CRL block in the PEM file"
    );
    let e = read_crls(b"hello").unwrap_err().to_string();
    assert!(e.starts_with("not a CRL file"), "{e}");
}

//! The status report against a real store and a fake token.

use std::time::Instant;

use super::super::tests::{make_ca, manager_with_token, token_location};
use super::*;
use crate::manager::{KeyLocation, SignRequest};
use crate::store::NewCertificate;

fn leaf(m: &Manager, name: &str, days: u32) {
    m.add_template(
        name,
        None,
        &[
            ("common-name".to_owned(), name.to_owned()),
            ("key-type".to_owned(), "ed25519".to_owned()),
            ("days-valid".to_owned(), days.to_string()),
        ],
    )
    .unwrap();
    m.sign(&SignRequest {
        template: name.into(),
        ca: Some("ca".into()),
        ..Default::default()
    })
    .unwrap();
}

fn band<'a>(r: &'a StatusReport, id: &str) -> &'a Band {
    r.expiry.bands.iter().find(|b| b.id == id).unwrap()
}

fn names(b: &Band) -> Vec<&str> {
    b.marks.iter().map(|m| m.name.as_str()).collect()
}

#[test]
fn certificates_land_in_their_band_and_under_their_ca_with_print_s_flags() {
    let (_dir, m, _token) = manager_with_token();
    make_ca(&m, token_location());
    leaf(&m, "five", 5);
    leaf(&m, "twenty", 20);
    leaf(&m, "sixty", 60);
    leaf(&m, "gone", 20);
    m.revoke(&["gone".to_owned()], None).unwrap();
    let r = m.status().unwrap();

    assert_eq!(names(band(&r, "7")), ["five"]);
    assert_eq!(names(band(&r, "30")), ["twenty"]);
    assert_eq!(names(band(&r, "90")), ["sixty"]);
    assert!(band(&r, "expired").marks.is_empty());
    let five = &band(&r, "7").marks[0];
    assert!(
        five.expires_in > 4 * DAY && five.expires_in <= 5 * DAY,
        "{five:?}"
    );
    // the CA (a year) is later; the revoked one is not drawn
    assert_eq!((r.expiry.later, r.expiry.revoked), (1, 1));
    assert_eq!(
        (
            r.counts.certificates,
            r.counts.authorities,
            r.counts.revoked
        ),
        (5, 1, 1)
    );

    assert_eq!(r.ca_tree.len(), 1);
    let ca = &r.ca_tree[0];
    assert_eq!(ca.ca.name, "ca");
    let issued: Vec<&str> = ca.issued.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        issued,
        ["five", "twenty", "sixty", "gone"],
        "live soonest first"
    );
    assert_eq!(ca.more_issued, 0);
    // the flags are print's
    let txn = m.store.begin(TxnMode::Read).unwrap();
    let printed: HashMap<String, Flags> = crate::manager::view::collect(txn.as_ref())
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.flags))
        .collect();
    for n in std::iter::once(&ca.ca).chain(&ca.issued) {
        assert_eq!(n.flags, printed[&n.name], "{}", n.name);
    }
    assert_eq!(ca.ca.flags.to_string(), "KCAT");
    assert_eq!(ca.issued[3].flags.to_string(), "KIR");
    drop(txn);

    // The CA's key is on a token no profile looks for: its presence is not known.
    assert_eq!(r.tokens.len(), 1, "{:?}", r.tokens);
    let t = &r.tokens[0];
    assert_eq!((t.kind, t.label.as_str()), ("pkcs11", "fake"));
    assert_eq!(t.serial, "FAKE0001");
    assert_eq!((t.presence, t.pin), (Presence::Unknown, PinWord::Unknown));
    assert_eq!(t.cas, ["ca"]);

    assert_eq!(r.crls.len(), 1);
    assert_eq!((r.crls[0].ca.as_str(), r.crls[0].number), ("ca", Some(2)));
    assert_eq!(r.crls[0].freshness, Freshness::Fresh);
    // 1.6 days on, the two-day CRL is due; six days on, it and "five" have expired
    let later = m.with_clock_offset(DAY * 8 / 5);
    assert_eq!(later.status().unwrap().crls[0].freshness, Freshness::Due);
    let later = later.with_clock_offset(6 * DAY);
    let r6 = later.status().unwrap();
    assert_eq!(r6.crls[0].freshness, Freshness::Expired);
    assert!(band(&r6, "7").marks.is_empty());
    assert_eq!(names(band(&r6, "30")), ["twenty"]);
    assert_eq!(names(band(&r6, "expired")), ["five"]);
}

#[test]
fn the_json_has_rfc3339_times_and_numbers_as_numbers() {
    let (_dir, m, _token) = manager_with_token();
    make_ca(&m, KeyLocation::Software);
    leaf(&m, "five", 5);
    m.renew_crl("ca").unwrap();
    let v = serde_json::to_value(m.status().unwrap()).unwrap();
    let generated = v["generated"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(generated).is_ok(),
        "{generated}"
    );
    let b7 = &v["expiry"]["bands"][1];
    assert_eq!(b7["id"], "7");
    assert_eq!(b7["total"], 1);
    assert!(b7["marks"][0]["expires-in"].is_i64());
    assert!(
        chrono::DateTime::parse_from_rfc3339(b7["marks"][0]["not-after"].as_str().unwrap()).is_ok()
    );
    assert_eq!(v["ca-tree"][0]["name"], "ca");
    assert_eq!(v["ca-tree"][0]["flags"], "KAT");
    assert_eq!(v["ca-tree"][0]["issued"][0]["name"], "five");
    assert_eq!(v["crls"][0]["freshness"], "fresh");
    assert!(v["crls"][0]["number"].is_u64());
}

#[test]
fn urls_are_shown_without_user_info_or_query() {
    assert_eq!(
        display_url("http://user:secret@ca.example:8080/scep/x?challenge=1#f"),
        "http://ca.example:8080/scep/x"
    );
    assert_eq!(display_url("http://ca.example"), "http://ca.example");
    assert_eq!(display_url("ca.example/crl"), "ca.example/crl");
}

/// 10,000 certificates under one CA (stored directly: only the records matter here).
#[test]
fn ten_thousand_certificates_are_capped_and_quick() {
    let (_dir, m, _token) = manager_with_token();
    make_ca(&m, KeyLocation::Software);
    leaf(&m, "model", 5);
    let model = m.certificate_record("model").unwrap();
    let ca = m.certificate_record("ca").unwrap();
    let now = unix_now();
    m.write(|txn| {
        for i in 0..10_000i64 {
            txn.insert_certificate(&NewCertificate {
                name: format!("bulk-{i}"),
                serial: format!("{i:040x}"),
                fingerprint: format!("{i:064x}"),
                issuer_id: Some(ca.id),
                key_id: None,
                not_after: now + (i % 120 - 10) * DAY + 3600,
                ..model.cert.clone()
            })?;
        }
        Ok(())
    })
    .unwrap();
    let started = Instant::now();
    let r = m.status().unwrap();
    let took = started.elapsed();
    eprintln!("status report of 10,002 certificates: {took:?}");
    assert_eq!(r.counts.certificates, 10_002);
    let tree = &r.ca_tree[0];
    assert_eq!(tree.issued.len(), MAX_LEAVES_PER_CA);
    assert_eq!(tree.issued.len() + tree.more_issued, 10_001);
    // 10 in each day from 0 to 6 (plus the model), capped at the band's limit
    let b7 = band(&r, "7");
    assert_eq!(b7.total, 7 * 84 + 1);
    assert_eq!(b7.marks.len(), MAX_MARKS_PER_BAND);
    assert!(b7
        .marks
        .windows(2)
        .all(|w| w[0].not_after <= w[1].not_after));
    assert_eq!(band(&r, "expired").total, 10 * 84);
    assert!(took < std::time::Duration::from_secs(1), "{took:?}");
}

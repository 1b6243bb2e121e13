//! What certman puts into a certificate's names, checked: subjectAltName entries (RFC 5280
//! §4.2.1.6) and subject attribute values, whether they come from a template or from a CSR
//! made elsewhere. A CA must not sign an 8-byte IP address, a URI holding NUL, or a DNS
//! name with spaces or `..` just because a request asked for it.

use der::{Tag, Tagged};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::name::Name;

/// The longest URI, e-mail address or attribute value certman signs.
const MAX_TEXT: usize = 2048;

fn control(c: char) -> bool {
    c.is_control()
}

/// A DNS name in RFC 5280's preferred name syntax (RFC 1034 §3.5, digits first allowed as in
/// RFC 1123): labels of letters, digits and inner hyphens, 1–63 characters each, 253 in all;
/// the leftmost label may be `*` (one wildcard label); no trailing dot.
pub fn check_dns_name(name: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("DNS name \"{}\": {why}", escape(name)));
    if name.is_empty() || name.len() > 253 {
        return bad("1 to 253 characters");
    }
    let labels: Vec<&str> = name.split('.').collect();
    for (i, label) in labels.iter().enumerate() {
        if i == 0 && *label == "*" && labels.len() > 1 {
            continue;
        }
        if label.is_empty() {
            return bad("an empty label (\"..\", or a leading or trailing dot)");
        }
        if label.len() > 63 {
            return bad("a label longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad(
                "letters, digits and hyphens only (a wildcard only as the whole first label)",
            );
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label starts or ends with a hyphen");
        }
    }
    Ok(())
}

fn check_email(addr: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("e-mail address \"{}\": {why}", escape(addr)));
    if addr.len() > MAX_TEXT || addr.chars().any(|c| control(c) || c == ' ') {
        return bad("no spaces or control characters, at most 2048 characters");
    }
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return bad("local@domain is expected");
    };
    if local.is_empty() || local.len() > 64 {
        return bad("the part before @ must be 1 to 64 characters");
    }
    check_dns_name(domain)
        .map_err(|e| format!("e-mail address \"{}\": its domain: {e}", escape(addr)))?;
    if domain.starts_with("*.") {
        return bad("no wildcard in an e-mail domain");
    }
    Ok(())
}

fn check_uri(uri: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("URI \"{}\": {why}", escape(uri)));
    if uri.len() > MAX_TEXT || uri.chars().any(|c| control(c) || c == ' ') {
        return bad("no spaces or control characters, at most 2048 characters");
    }
    let scheme = uri.split_once(':').map(|(s, _)| s).unwrap_or("");
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok {
        return bad("an absolute URI (scheme:…) is expected");
    }
    Ok(())
}

/// Checks subjectAltName entries: IP addresses of 4 or 16 bytes, DNS names, e-mail addresses
/// and URIs as above. Other kinds (directory names, registered IDs, other names) pass.
pub fn check_general_names(names: &[GeneralName]) -> Result<(), String> {
    for n in names {
        match n {
            GeneralName::DnsName(d) => check_dns_name(d.as_str())?,
            GeneralName::Rfc822Name(e) => check_email(e.as_str())?,
            GeneralName::UniformResourceIdentifier(u) => check_uri(u.as_str())?,
            GeneralName::IpAddress(ip) => {
                let len = ip.as_bytes().len();
                if len != 4 && len != 16 {
                    return Err(format!(
                        "an IP address of {len} bytes (4 for IPv4, 16 for IPv6)"
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a subject's attribute values: text without control characters, at most 2048
/// characters; a country is two letters.
pub fn check_subject(name: &Name) -> Result<(), String> {
    for atv in name.iter() {
        let v = &atv.value;
        let text = match v.tag() {
            Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::TeletexString => {
                std::str::from_utf8(v.value())
                    .map_err(|_| format!("subject attribute {}: not UTF-8", atv.oid))?
                    .to_owned()
            }
            Tag::BmpString => {
                let units: Vec<u16> = v
                    .value()
                    .chunks(2)
                    .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                    .collect();
                String::from_utf16(&units)
                    .map_err(|_| format!("subject attribute {}: not UTF-16", atv.oid))?
            }
            _ => continue,
        };
        if text.len() > MAX_TEXT || text.chars().any(control) {
            return Err(format!(
                "subject attribute {} \"{}\": no control characters, at most 2048 characters",
                atv.oid,
                escape(&text)
            ));
        }
        if atv.oid == const_oid::db::rfc4519::COUNTRY_NAME
            && !(text.len() == 2 && text.bytes().all(|b| b.is_ascii_alphabetic()))
        {
            return Err(format!(
                "country \"{}\": two letters (ISO 3166) are expected",
                escape(&text)
            ));
        }
    }
    Ok(())
}

/// Text with its control characters shown as `\xNN` (`\u{NNNN}` above U+00FF), so that a
/// name cannot move the cursor, clear the screen or start a new line where it is printed.
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if control(c) {
            let n = c as u32;
            if n <= 0xFF {
                out.push_str(&format!("\\x{n:02x}"));
            } else {
                out.push_str(&format!("\\u{{{n:04x}}}"));
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::asn1::{Ia5String, OctetString};

    #[test]
    fn dns_names_follow_the_preferred_syntax() {
        for ok in [
            "example.com",
            "a.b-c.example",
            "*.example.com",
            "1.2.3.example",
            "x",
        ] {
            check_dns_name(ok).unwrap();
        }
        for bad in [
            "",
            "a..b",
            ".example.com",
            "example.com.",
            "ex ample.com",
            "-a.com",
            "a-.com",
            "a.*.com",
            "*",
            "**.com",
            "a_b.com",
            "\u{1b}[2J.com",
            &"a".repeat(64),
            &format!("{}.com", "a.".repeat(130)),
        ] {
            assert!(check_dns_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn each_kind_of_san_is_checked() {
        let ia5 = |s: &str| Ia5String::new(s).unwrap();
        let ip = |n: usize| GeneralName::IpAddress(OctetString::new(vec![1u8; n]).unwrap());
        check_general_names(&[
            ip(4),
            ip(16),
            GeneralName::DnsName(ia5("a.example")),
            GeneralName::Rfc822Name(ia5("me@example.com")),
            GeneralName::UniformResourceIdentifier(ia5("https://example.com/x")),
        ])
        .unwrap();
        for bad in [
            ip(8),
            ip(0),
            GeneralName::DnsName(ia5("a b.example")),
            GeneralName::Rfc822Name(ia5("no-at-sign")),
            GeneralName::Rfc822Name(ia5("me@exa mple.com")),
            GeneralName::UniformResourceIdentifier(ia5("http://x/\u{0}y")),
            GeneralName::UniformResourceIdentifier(ia5("no scheme")),
        ] {
            assert!(
                check_general_names(std::slice::from_ref(&bad)).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(
            escape("a\u{1b}[31mb\r\n\u{0}"),
            "a\\x1b[31mb\\x0d\\x0a\\x00"
        );
        assert_eq!(escape("\u{85}"), "\\x85");
    }
}

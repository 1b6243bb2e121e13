//! The status page's CA tree and tables: tokens, CRLs, SCEP servers and SCEP clients, with
//! their badges.

use std::fmt::Write as _;

use super::{badge, cut, esc, name, relative, when, DAY};
use crate::manager::status::{
    CaNode, CertNode, CrlStatus, Freshness, PinWord, Presence, ScepClientRow, ScepServerStatus,
    StatusReport, TokenStatus,
};

fn cert_line(o: &mut String, n: &CertNode, class: &str) {
    let mut classes = vec![class];
    if n.flags.revoked {
        classes.push("revoked");
    } else if n.flags.expired {
        classes.push("expired");
    } else if n.expires_in < 7 * DAY {
        classes.push("soon");
    }
    let exp = if n.flags.revoked {
        format!("revoked · expires {}", when(n.not_after))
    } else if n.flags.expired {
        format!("expired {}", relative(n.expires_in))
    } else {
        format!("expires {}", relative(n.expires_in))
    };
    let _ = write!(
        o,
        "<li class=\"{}\" data-name=\"{}\" title=\"{}\"><span class=\"nm\">{}</span><code class=\"flags\">{}</code><span class=\"exp\">{}</span>",
        classes.join(" "),
        esc(&n.name),
        esc(&format!("{} — notAfter {}", n.name, when(n.not_after))),
        name(&cut(&n.name, 48)),
        esc(&n.flags.to_string()),
        esc(&exp),
    );
}

fn ca_li(o: &mut String, n: &CaNode) {
    cert_line(o, &n.ca, "ca");
    if !n.sub_cas.is_empty() || !n.issued.is_empty() || n.more_issued > 0 {
        o.push_str("<ul>");
        for s in &n.sub_cas {
            ca_li(o, s);
        }
        for l in &n.issued {
            cert_line(o, l, "leaf");
            o.push_str("</li>");
        }
        if n.more_issued > 0 {
            let _ = write!(o, "<li class=\"more\">and {} more</li>", n.more_issued);
        }
        o.push_str("</ul>");
    }
    o.push_str("</li>");
}

pub(super) fn tree(o: &mut String, r: &StatusReport) {
    let _ = write!(
        o,
        "<section id=\"tree\"><h2>CA tree<span class=\"n\">{} and what {} issued</span></h2>",
        match r.counts.authorities {
            1 => "1 CA".to_owned(),
            n => format!("{n} CAs"),
        },
        if r.counts.authorities == 1 {
            "it"
        } else {
            "each"
        },
    );
    if r.ca_tree.is_empty() && r.unrooted.is_empty() {
        o.push_str("<p class=\"empty\">No certificates yet.</p></section>");
        return;
    }
    o.push_str("<ul class=\"tree\">");
    for n in &r.ca_tree {
        ca_li(o, n);
    }
    if r.more_cas > 0 {
        let _ = write!(
            o,
            "<li class=\"more\">and {} more CAs (see print)</li>",
            r.more_cas
        );
    }
    o.push_str("</ul>");
    if !r.unrooted.is_empty() {
        o.push_str("<h2 style=\"margin-top:10px\">Without a local issuer</h2><ul class=\"tree\">");
        for n in &r.unrooted {
            cert_line(o, n, "leaf");
            o.push_str("</li>");
        }
        if r.more_unrooted > 0 {
            let _ = write!(o, "<li class=\"more\">and {} more</li>", r.more_unrooted);
        }
        o.push_str("</ul>");
    }
    o.push_str(
        "<p class=\"legend\">Flags: K private key · L CRL held · C key on a token · A authority · \
         I issued here · R revoked · E expired · T trusted · Q key still encrypted</p></section>",
    );
}

fn presence_badge(p: Presence) -> String {
    let class = match p {
        Presence::Present => "ok",
        Presence::Absent => "bad",
        Presence::Unknown => "unk",
    };
    badge(class, p.as_str())
}

fn pin_badge(p: PinWord) -> String {
    let class = match p {
        PinWord::Ok => "ok",
        PinWord::Low => "warn",
        PinWord::Locked => "bad",
        PinWord::Unknown => "unk",
    };
    badge(class, &format!("PIN {}", p.as_str()))
}

pub(super) fn tokens(o: &mut String, rows: &[TokenStatus]) {
    let _ = write!(
        o,
        "<section id=\"tokens\"><h2>Tokens and cards<span class=\"n\">looked at without a login: no PIN try is spent</span></h2>"
    );
    if rows.is_empty() {
        o.push_str("<p class=\"empty\">No token profiles, and no CA key on a token.</p></section>");
        return;
    }
    o.push_str(
        "<table><tr><th>Token</th><th>Serial</th><th>Profile</th><th>State</th><th>CAs</th><th>Note</th></tr>",
    );
    for t in rows {
        let label = if t.label.is_empty() {
            "<span class=\"muted\">(unnamed)</span>".to_owned()
        } else {
            name(&t.label)
        };
        let serial = if t.serial.is_empty() {
            "—".to_owned()
        } else {
            format!("<code class=\"serial\">{}</code>", esc(&t.serial))
        };
        let cas: Vec<String> = t
            .cas
            .iter()
            .map(|c| format!("<span class=\"nw\">{}</span>", name(c)))
            .collect();
        let _ = write!(
            o,
            "<tr data-kind=\"{}\"><td>{label} <span class=\"muted\">{}</span></td><td>{serial}</td><td class=\"t\">{}</td><td class=\"nw\">{} {}</td><td>{}</td><td class=\"muted\">{}</td></tr>",
            t.kind,
            t.kind,
            t.profiles.iter().map(|p| name(p)).collect::<Vec<_>>().join(", "),
            presence_badge(t.presence),
            pin_badge(t.pin),
            if cas.is_empty() { "—".into() } else { cas.join(", ") },
            esc(&t.detail),
        );
    }
    o.push_str("</table></section>");
}

fn freshness_badge(f: Freshness) -> String {
    let class = match f {
        Freshness::Fresh => "ok",
        Freshness::Due => "warn",
        Freshness::Expired => "bad",
        Freshness::Open => "unk",
    };
    badge(class, f.as_str())
}

pub(super) fn crls(o: &mut String, rows: &[CrlStatus], more: usize, now: i64) {
    o.push_str("<section id=\"crls\"><h2>CRLs</h2>");
    if rows.is_empty() {
        o.push_str("<p class=\"empty\">No CRLs.</p></section>");
        return;
    }
    o.push_str("<table><tr><th>CA</th><th>Source</th><th>#</th><th>Entries</th><th>Next update</th><th></th></tr>");
    for c in rows {
        let next = match c.next_update {
            Some(n) => format!(
                "{} <span class=\"muted\">({})</span>",
                when(n),
                relative(n - now)
            ),
            None => "—".into(),
        };
        let _ = write!(
            o,
            "<tr><td>{}</td><td class=\"url\">{}</td><td>{}</td><td>{}</td><td class=\"t\">{next}</td><td>{}</td></tr>",
            name(&c.ca),
            name(&c.source),
            c.number
                .map(|n| n.to_string())
                .unwrap_or_else(|| "—".into()),
            c.entries,
            freshness_badge(c.freshness),
        );
    }
    if more > 0 {
        let _ = write!(
            o,
            "<tr><td colspan=\"6\" class=\"more\">and {more} more</td></tr>"
        );
    }
    o.push_str("</table></section>");
}

pub(super) fn scep_servers(o: &mut String, rows: &[ScepServerStatus]) {
    o.push_str("<section class=\"wide\" id=\"scep-servers\"><h2>SCEP servers</h2>");
    if rows.is_empty() {
        o.push_str("<p class=\"empty\">No SCEP servers.</p></section>");
        return;
    }
    o.push_str("<table><tr><th>Path</th><th>CA</th><th>RA</th><th>Mode</th><th>Pending requests</th><th>State</th></tr>");
    for s in rows {
        let pending = if s.pending > 0 {
            badge("warn", &format!("{} pending", s.pending))
        } else {
            "<span class=\"muted\">none</span>".into()
        };
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td data-pending=\"{}\">{pending}</td><td>{}</td></tr>",
            name(&s.path),
            name(&s.ca),
            s.ra.as_deref().map(name).unwrap_or_else(|| "—".into()),
            if s.forwarding { "RA, forwarding" } else { "CA" },
            s.pending,
            if s.disabled {
                badge("unk", "disabled")
            } else {
                badge("ok", "enabled")
            },
        );
    }
    o.push_str("</table></section>");
}

fn client_badge(status: &str) -> String {
    let class = match status {
        "issued" => "ok",
        "requesting-certificate" | "requesting-pending-certificate" => "info",
        "server-unreachable" | "server-error" => "warn",
        _ => "bad",
    };
    badge(class, status)
}

pub(super) fn scep_clients(o: &mut String, rows: &[ScepClientRow]) {
    o.push_str("<section class=\"wide\" id=\"scep-clients\"><h2>SCEP clients</h2>");
    if rows.is_empty() {
        o.push_str("<p class=\"empty\">No SCEP clients.</p></section>");
        return;
    }
    o.push_str("<table><tr><th>Name</th><th>Kind</th><th>Server</th><th>Status</th><th>Certificate expires</th><th>Next look</th><th>Detail</th></tr>");
    for c in rows {
        let _ = write!(
            o,
            "<tr><td class=\"t\">{}</td><td class=\"t\">{}</td><td class=\"url\">{}</td><td class=\"t\">{}</td><td class=\"t\">{}</td><td class=\"t\">{}</td><td class=\"muted\">{}</td></tr>",
            name(&c.name),
            c.kind,
            name(&c.server),
            client_badge(c.status),
            c.expires.map(when).unwrap_or_else(|| "—".into()),
            when(c.next_attempt),
            esc(&c.detail),
        );
    }
    o.push_str("</table></section>");
}

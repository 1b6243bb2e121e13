//! The status page (`GET /`) and its JSON (`GET /status.json`): the manager's
//! [`StatusReport`] rendered as one self-contained HTML document — inline CSS, an inline SVG
//! expiry timeline, no script, no external asset (the Content-Security-Policy the route sends
//! forbids them). Every string that comes from a certificate, a token or the store is hostile
//! input: it is escaped (control characters shown as `\xNN`, then HTML-escaped) and wrapped
//! in `<bdi>` so that a right-to-left override cannot reorder the text around it.

use std::fmt::Write as _;

use serde::Serialize;

use crate::manager::status::{
    Band, CaNode, CertNode, CrlStatus, Freshness, Mark, PinWord, Presence, ScepClientRow,
    ScepServerStatus, StatusReport, TokenStatus,
};

const DAY: i64 = 86_400;

/// `/status.json`: the report with the service's version.
pub(crate) fn json(report: &StatusReport) -> String {
    #[derive(Serialize)]
    struct Doc<'a> {
        version: &'static str,
        #[serde(flatten)]
        report: &'a StatusReport,
    }
    serde_json::to_string(&Doc {
        version: env!("CARGO_PKG_VERSION"),
        report,
    })
    .unwrap_or_else(|_| "{}".into())
}

/// Text safe inside HTML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let shown = crate::x509::names::escape(s);
    let mut out = String::with_capacity(shown.len() + 8);
    for c in shown.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A name: escaped, isolated from the text around it, cut at 60 characters (the whole name
/// in its tooltip).
fn name(s: &str) -> String {
    let shown = cut(s, 60);
    if shown.len() == s.len() {
        format!("<bdi>{}</bdi>", esc(s))
    } else {
        format!("<bdi title=\"{}\">{}</bdi>", esc(s), esc(&shown))
    }
}

/// At most `max` characters of `s`, with an ellipsis when cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn when(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| secs.to_string())
}

/// `in 4 d 23 h`, `in 19 d`, `2 h ago`.
fn relative(secs: i64) -> String {
    let a = secs.unsigned_abs();
    let (d, h) = (a / DAY as u64, (a % DAY as u64) / 3600);
    let text = if d >= 7 {
        format!("{d} d")
    } else if d >= 1 {
        format!("{d} d {h} h")
    } else if h >= 1 {
        format!("{h} h")
    } else {
        format!("{} min", a / 60)
    };
    if secs < 0 {
        format!("{text} ago")
    } else {
        format!("in {text}")
    }
}

fn badge(class: &str, text: &str) -> String {
    format!("<span class=\"badge {class}\">{}</span>", esc(text))
}

const STYLE: &str = r#"
:root{--ink:#1f2933;--muted:#5f6b7a;--line:#e3e8ef;--bg:#f5f7fa;--card:#fff;
--red:#c81e1e;--red-bg:#fdecec;--amber:#b45309;--amber-bg:#fff6e0;--blue:#1d4ed8;--blue-bg:#eaf1ff;
--green:#15803d;--green-bg:#e7f6ec;--grey:#6b7280;--grey-bg:#eef0f3;--dark:#7f1d1d;--dark-bg:#f3e3e3}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--ink);background:var(--bg)}
header{display:flex;align-items:baseline;gap:16px;flex-wrap:wrap;padding:14px 24px;background:#102a43;color:#f0f4f8}
header h1{margin:0;font-size:20px;font-weight:650;letter-spacing:.2px}
header .meta{color:#bcccdc;font-size:13px}
header .counts{margin-left:auto;display:flex;gap:14px;font-size:13px}
header .counts b{color:#fff;font-size:15px}
main{padding:16px 24px 28px;display:grid;grid-template-columns:minmax(0,5fr) minmax(0,7fr);gap:16px}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 16px;min-width:0}
section.wide{grid-column:1/-1}
h2{margin:0 0 8px;font-size:15px;font-weight:650}
h2 .n{color:var(--muted);font-weight:400;font-size:13px;margin-left:6px}
svg{display:block;width:100%;height:auto}
svg text{font-family:system-ui,"DejaVu Sans",sans-serif}
.legend{color:var(--muted);font-size:12px;margin:6px 0 0}
table{border-collapse:collapse;width:100%;font-size:13px}
th{text-align:left;font-weight:600;color:var(--muted);font-size:12px;border-bottom:1px solid var(--line);padding:4px 8px 4px 0}
td{border-bottom:1px solid var(--line);padding:5px 8px 5px 0;vertical-align:top;overflow-wrap:break-word}
td.url{word-break:break-all}td.t{white-space:nowrap}
tr:last-child td{border-bottom:0}
.empty{color:var(--muted);font-style:italic;margin:4px 0}
.badge{display:inline-block;padding:0 7px;border-radius:9px;font-size:12px;font-weight:600;white-space:nowrap}
.ok{background:var(--green-bg);color:var(--green)}.warn{background:var(--amber-bg);color:var(--amber)}
.bad{background:var(--red-bg);color:var(--red)}.unk{background:var(--grey-bg);color:var(--grey)}
.info{background:var(--blue-bg);color:var(--blue)}
ul.tree,ul.tree ul{list-style:none;margin:0;padding-left:18px}
ul.tree{padding-left:0}
ul.tree li{position:relative;padding:2px 0 2px 2px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
ul.tree ul li::before{content:"";position:absolute;left:-12px;top:0;height:12px;width:9px;border-left:1px solid #c5ced9;border-bottom:1px solid #c5ced9}
.ca>.nm{font-weight:650}
.flags{font:12px ui-monospace,"DejaVu Sans Mono",monospace;background:var(--grey-bg);padding:0 5px;border-radius:4px;margin:0 6px}
.exp{color:var(--muted);font-size:12px}
.revoked .nm{text-decoration:line-through;color:var(--grey)}
.expired .exp,.soon .exp{color:var(--red);font-weight:600}
.more{color:var(--muted);font-style:italic}
.muted{color:var(--muted)}
.nw{white-space:nowrap}
code.serial{font:12px ui-monospace,"DejaVu Sans Mono",monospace;word-break:break-all;color:var(--muted)}
"#;

/// `GET /`: the whole page.
pub(crate) fn html(report: &StatusReport) -> String {
    let mut o = String::with_capacity(64 * 1024);
    let c = &report.counts;
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>certman status</title><style>{STYLE}</style></head><body>\
         <header><h1>certman status</h1><span class=\"meta\">as of {} · version {} · read-only</span>\
         <span class=\"counts\"><span><b>{}</b> certificates</span><span><b>{}</b> CAs</span>\
         <span><b>{}</b> revoked</span><span><b>{}</b> expired</span><span><b>{}</b> templates</span></span>\
         </header><main>",
        when(report.generated),
        env!("CARGO_PKG_VERSION"),
        c.certificates,
        c.authorities,
        c.revoked,
        c.expired,
        c.templates,
    );
    timeline(&mut o, report);
    tree(&mut o, report);
    o.push_str("<div class=\"col\" style=\"display:grid;gap:16px;align-content:start\">");
    tokens(&mut o, &report.tokens);
    crls(&mut o, &report.crls, report.more_crls, report.generated);
    o.push_str("</div>");
    scep_servers(&mut o, &report.scep_servers);
    scep_clients(&mut o, &report.scep_clients);
    o.push_str("</main></body></html>\n");
    o
}

/// The timeline's geometry: four bands side by side; days map linearly within each. Marks
/// are stacked in lanes below the band titles; the drawing is as tall as its lanes need.
const W: f64 = 1200.0;
const TOP: f64 = 30.0;
const LANE: f64 = 17.0;
/// At most this many lanes of labelled marks; at least `MIN_LANES` are drawn.
const LANES: usize = 9;
const MIN_LANES: usize = 3;
/// (left, right) of each band, in the order of the report's bands.
const X: [(f64, f64); 4] = [
    (0.0, 150.0),
    (150.0, 530.0),
    (530.0, 880.0),
    (880.0, 1200.0),
];
/// The expired band shows the last 30 days; older expiries sit at its left edge.
const EXPIRED_SPAN: i64 = 30;

fn band_style(id: &str) -> (&'static str, &'static str, &'static str) {
    match id {
        "expired" => ("#7f1d1d", "#f6e6e6", "expired"),
        "7" => ("#c81e1e", "#fdecec", "within 7 days"),
        "30" => ("#b45309", "#fff6e0", "7 – 30 days"),
        _ => ("#1d4ed8", "#eaf1ff", "30 – 90 days"),
    }
}

/// Where a certificate `expires_in` seconds from now sits in band `b` whose edges are `x`.
fn mark_x(b: &Band, expires_in: i64, (l, r): (f64, f64)) -> f64 {
    let pad = 8.0;
    let (l, r) = (l + pad, r - pad);
    let days = expires_in as f64 / DAY as f64;
    let t = match b.from_days {
        None => 1.0 - ((-days) / EXPIRED_SPAN as f64).clamp(0.0, 1.0),
        Some(from) => ((days - from as f64) / (b.to_days - from) as f64).clamp(0.0, 1.0),
    };
    l + t * (r - l)
}

/// A mark placed: its x, and its lane and label (none: drawn on the axis only).
struct Placed<'a> {
    mark: &'a Mark,
    x: f64,
    label: Option<(usize, String, &'static str, f64)>,
}

/// Places a band's marks: a mark takes the first lane whose last label ends left of it;
/// labels run right of the mark, or left of it near the band's right edge.
fn place(b: &Band, (l, r): (f64, f64)) -> Vec<Placed<'_>> {
    let mut lane_end = [f64::MIN; LANES];
    b.marks
        .iter()
        .map(|m| {
            let x = mark_x(b, m.expires_in, (l, r));
            let text = cut(&m.name, 22);
            let width = 6.6 * text.chars().count() as f64 + 12.0;
            let (start, end, anchor, lx) = if x + width <= r - 2.0 {
                (x - 5.0, x + width, "start", x + 7.0)
            } else {
                (x - width, x + 5.0, "end", x - 7.0)
            };
            let label = lane_end
                .iter()
                .position(|&e| e < start && start >= l)
                .map(|i| {
                    lane_end[i] = end;
                    (i, text, anchor, lx)
                });
            Placed { mark: m, x, label }
        })
        .collect()
}

fn timeline(o: &mut String, report: &StatusReport) {
    let e = &report.expiry;
    let placed: Vec<Vec<Placed<'_>>> = e
        .bands
        .iter()
        .zip(X.iter())
        .map(|(b, &x)| place(b, x))
        .collect();
    let lanes = placed
        .iter()
        .flatten()
        .filter_map(|p| p.label.as_ref().map(|l| l.0 + 1))
        .max()
        .unwrap_or(0)
        .max(MIN_LANES);
    let axis = TOP + LANE * lanes as f64 + 10.0;
    let height = axis + 24.0;
    let _ = write!(
        o,
        "<section class=\"wide\" id=\"timeline\"><h2>Expiry timeline<span class=\"n\">\
         what expires in the next 7, 30 and 90 days · {} valid for longer · {} revoked (not drawn)\
         </span></h2><svg viewBox=\"0 0 {W} {height}\" role=\"img\" aria-label=\"expiry timeline\" \
         xmlns=\"http://www.w3.org/2000/svg\">",
        e.later, e.revoked
    );
    // day ticks: (band, days left)
    let ticks: [(usize, i64); 11] = [
        (0, -30),
        (0, -7),
        (1, 0),
        (1, 1),
        (1, 3),
        (1, 5),
        (2, 7),
        (2, 14),
        (2, 21),
        (3, 30),
        (3, 60),
    ];
    for ((b, &(l, r)), marks) in e.bands.iter().zip(X.iter()).zip(&placed) {
        let (ink, bg, label) = band_style(b.id);
        let _ = write!(
            o,
            "<g id=\"band-{id}\" class=\"band\" data-band=\"{id}\" data-total=\"{total}\">\
             <rect x=\"{l}\" y=\"0\" width=\"{w}\" height=\"{axis}\" fill=\"{bg}\"/>\
             <text x=\"{tx}\" y=\"19\" font-size=\"13\" font-weight=\"650\" fill=\"{ink}\">{label} · {total}</text>",
            id = b.id,
            total = b.total,
            w = r - l,
            tx = l + 8.0,
        );
        for &(bi, day) in &ticks {
            if X[bi] == (l, r) && day != 0 && day != b.to_days {
                let x = mark_x(b, day * DAY, (l, r));
                let _ = write!(
                    o,
                    "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{axis}\" stroke=\"{ink}\" stroke-opacity=\".12\" stroke-dasharray=\"3 3\"/>"
                );
            }
        }
        for p in marks {
            let m = p.mark;
            let x = p.x;
            let title = format!(
                "{} — {} ({}){}",
                m.name,
                when(m.not_after),
                relative(m.expires_in),
                if m.authority { ", a CA" } else { "" }
            );
            let _ = write!(
                o,
                "<g class=\"mark\" data-name=\"{}\"><title>{}</title>\
                 <line x1=\"{x:.1}\" y1=\"{a0}\" x2=\"{x:.1}\" y2=\"{a1}\" stroke=\"{ink}\" stroke-width=\"2\"/>",
                esc(&m.name),
                esc(&title),
                a0 = axis - 6.0,
                a1 = axis + 4.0,
            );
            if let Some((lane, text, anchor, lx)) = &p.label {
                let y = TOP + LANE * *lane as f64 + LANE / 2.0;
                let shape = if m.authority {
                    format!(
                        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"8\" height=\"8\" transform=\"rotate(45 {x:.1} {y:.1})\" fill=\"{ink}\"/>",
                        x - 4.0,
                        y - 4.0
                    )
                } else {
                    format!("<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"{ink}\"/>")
                };
                let _ = write!(
                    o,
                    "<line x1=\"{x:.1}\" y1=\"{y:.1}\" x2=\"{x:.1}\" y2=\"{a0}\" stroke=\"{ink}\" stroke-opacity=\".3\"/>{shape}\
                     <text x=\"{lx:.1}\" y=\"{ty:.1}\" font-size=\"11.5\" text-anchor=\"{anchor}\" fill=\"#1f2933\">{}</text>",
                    esc(text),
                    a0 = axis - 6.0,
                    ty = y + 4.0,
                );
            }
            o.push_str("</g>");
        }
        let more = b.total - b.marks.len();
        if more > 0 {
            let _ = write!(
                o,
                "<text x=\"{:.1}\" y=\"19\" font-size=\"12\" text-anchor=\"end\" fill=\"{ink}\">and {more} more</text>",
                r - 8.0
            );
        }
        o.push_str("</g>");
    }
    // the axis and its day labels
    let _ = write!(
        o,
        "<line x1=\"0\" y1=\"{axis}\" x2=\"{W}\" y2=\"{axis}\" stroke=\"#9aa5b1\"/>"
    );
    for (bi, day) in ticks {
        let Some(b) = e.bands.get(bi) else { continue };
        let x = mark_x(b, day * DAY, X[bi]);
        let (text, anchor) = match day {
            -30 => ("30 d ago".to_owned(), "start"),
            d if d < 0 => (format!("{} d ago", -d), "middle"),
            0 => ("now".to_owned(), "middle"),
            d => (format!("{d} d"), "middle"),
        };
        let tx = if anchor == "start" { x - 6.0 } else { x };
        let _ = write!(
            o,
            "<line x1=\"{x:.1}\" y1=\"{axis}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#9aa5b1\"/>\
             <text x=\"{tx:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"{anchor}\" fill=\"#5f6b7a\">{text}</text>",
            axis + 5.0,
            axis + 17.0
        );
    }
    let _ = write!(
        o,
        "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\" fill=\"#5f6b7a\">90 d</text>",
        W - 2.0,
        axis + 17.0
    );
    o.push_str(
        "</svg><p class=\"legend\">● certificate · ◆ CA · a mark's tooltip gives its name and date; \
         marks beyond the lanes are drawn on the axis only.</p></section>",
    );
}

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

fn tree(o: &mut String, r: &StatusReport) {
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

fn tokens(o: &mut String, rows: &[TokenStatus]) {
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

fn crls(o: &mut String, rows: &[CrlStatus], more: usize, now: i64) {
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

fn scep_servers(o: &mut String, rows: &[ScepServerStatus]) {
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

fn scep_clients(o: &mut String, rows: &[ScepClientRow]) {
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::manager::status::{
        CaNode, Expiry, MAX_CAS, MAX_LEAVES_PER_CA, MAX_MARKS_PER_BAND, MAX_ROWS,
    };
    use crate::manager::Flags;
    use crate::service::testing::empty_report;

    const NOW: i64 = 1_700_000_000;

    fn node(name: &str, expires_in: i64) -> CertNode {
        CertNode {
            name: name.into(),
            flags: Flags {
                private_key: true,
                issued: true,
                ..Flags::default()
            },
            not_after: NOW + expires_in,
            expires_in,
        }
    }

    fn bands(per_band: usize) -> Expiry {
        let spec: [(&'static str, Option<i64>, i64); 4] = [
            ("expired", None, 0),
            ("7", Some(0), 7),
            ("30", Some(7), 30),
            ("90", Some(30), 90),
        ];
        Expiry {
            bands: spec
                .iter()
                .map(|&(id, from, to)| {
                    let from_s = from.unwrap_or(-30) * DAY;
                    let span = to * DAY - from_s;
                    Band {
                        id,
                        from_days: from,
                        to_days: to,
                        total: per_band * 10,
                        marks: (0..per_band)
                            .map(|i| {
                                let left = from_s + span * i as i64 / per_band as i64;
                                Mark {
                                    name: format!("{id}-cert-{i}.example.com"),
                                    not_after: NOW + left,
                                    expires_in: left,
                                    authority: i % 7 == 0,
                                }
                            })
                            .collect(),
                    }
                })
                .collect(),
            later: 5,
            revoked: 2,
        }
    }

    #[test]
    fn strings_are_escaped_for_html_and_control_characters_shown() {
        assert_eq!(
            esc("<a href='x'>\"&\"</a>\u{7}"),
            "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;\\x07"
        );
        assert_eq!(name("ok"), "<bdi>ok</bdi>");
        let long = "n".repeat(100);
        let shown = name(&long);
        assert!(
            shown.starts_with(&format!("<bdi title=\"{long}\">")),
            "{shown}"
        );
        assert!(shown.contains('…'));
    }

    #[test]
    fn relative_times() {
        assert_eq!(relative(5 * DAY - 60), "in 4 d 23 h");
        assert_eq!(relative(20 * DAY), "in 20 d");
        assert_eq!(relative(-3 * 3600), "3 h ago");
        assert_eq!(relative(90), "in 1 min");
    }

    #[test]
    fn each_mark_sits_in_its_band_s_group_and_between_its_band_s_edges() {
        let mut r = empty_report(NOW);
        r.expiry = bands(3);
        let html = html(&r);
        for b in &r.expiry.bands {
            let start = html.find(&format!("<g id=\"band-{}\"", b.id)).unwrap();
            // up to the next band, or the axis after the last
            let rest = &html[start + 1..];
            let end = start
                + 1
                + rest
                    .find("<g id=\"band-")
                    .or_else(|| rest.find("<line x1=\"0\""))
                    .unwrap();
            let group = &html[start..end];
            for m in &b.marks {
                assert!(
                    group.contains(&format!("data-name=\"{}\"", m.name)),
                    "{} not in band {}",
                    m.name,
                    b.id
                );
            }
        }
        // x positions stay within each band's edges
        for (b, &(l, r)) in r.expiry.bands.iter().zip(X.iter()) {
            for m in &b.marks {
                let x = mark_x(b, m.expires_in, (l, r));
                assert!(x >= l && x <= r, "{} at {x} outside {l}..{r}", m.name);
            }
        }
    }

    /// The largest page the caps allow renders quickly and stays a reasonable size.
    #[test]
    fn the_largest_page_the_caps_allow_renders_quickly() {
        let mut r = empty_report(NOW);
        r.expiry = bands(MAX_MARKS_PER_BAND);
        let issued: Vec<CertNode> = (0..MAX_LEAVES_PER_CA as i64)
            .map(|i| node(&format!("leaf-{i}"), i * DAY))
            .collect();
        r.ca_tree = (0..MAX_CAS / 4)
            .map(|i| CaNode {
                ca: node(&format!("ca-{i}"), 300 * DAY),
                sub_cas: (0..3)
                    .map(|j| CaNode {
                        ca: node(&format!("sub-{i}-{j}"), 200 * DAY),
                        sub_cas: Vec::new(),
                        issued: issued.clone(),
                        more_issued: 1000,
                    })
                    .collect(),
                issued: issued.clone(),
                more_issued: 1000,
            })
            .collect();
        r.crls = (0..MAX_ROWS)
            .map(|i| CrlStatus {
                ca: format!("ca-{i}"),
                source: "local".into(),
                number: Some(i as u64),
                this_update: NOW,
                next_update: Some(NOW + 2 * DAY),
                entries: 3,
                freshness: Freshness::Fresh,
            })
            .collect();
        let started = Instant::now();
        let page = html(&r);
        let took = started.elapsed();
        eprintln!("largest page: {} KiB in {took:?}", page.len() / 1024);
        assert!(page.len() < 4 << 20, "{} bytes", page.len());
        assert!(took < std::time::Duration::from_millis(500), "{took:?}");
        assert!(page.contains("and 1000 more"));
        assert!(
            page.contains("and 1350 more"),
            "each band's count of marks not drawn"
        );
    }
}

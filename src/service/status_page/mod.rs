//! The status page (`GET /`) and its JSON (`GET /status.json`): the manager's
//! [`StatusReport`] rendered as one self-contained HTML document — inline CSS, an inline SVG
//! expiry timeline, no script, no external asset (the Content-Security-Policy the route sends
//! forbids them). Every string that comes from a certificate, a token or the store is hostile
//! input: it is escaped (control characters shown as `\xNN`, then HTML-escaped) and wrapped
//! in `<bdi>` so that a right-to-left override cannot reorder the text around it.
//!
//! This file holds the entry points, the escaping and formatting helpers and the style;
//! `timeline.rs` draws the SVG expiry timeline, `tables.rs` the CA tree and the tables.

use std::fmt::Write as _;

use serde::Serialize;

use crate::manager::status::StatusReport;

use tables::{crls, scep_clients, scep_servers, tokens, tree};
use timeline::timeline;

mod tables;
mod timeline;

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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::timeline::{mark_x, X};
    use super::*;
    use crate::manager::status::{
        Band, CaNode, CertNode, CrlStatus, Expiry, Freshness, Mark, MAX_CAS, MAX_LEAVES_PER_CA,
        MAX_MARKS_PER_BAND, MAX_ROWS,
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

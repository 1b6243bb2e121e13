//! The status page's SVG expiry timeline: the report's four bands side by side, each
//! certificate a mark placed in a lane under its band's title.

use std::fmt::Write as _;

use super::{cut, esc, relative, when, DAY};
use crate::manager::status::{Band, Mark, StatusReport};

/// The timeline's geometry: four bands side by side; days map linearly within each. Marks
/// are stacked in lanes below the band titles; the drawing is as tall as its lanes need.
const W: f64 = 1200.0;
const TOP: f64 = 30.0;
const LANE: f64 = 17.0;
/// At most this many lanes of labelled marks; at least `MIN_LANES` are drawn.
const LANES: usize = 9;
const MIN_LANES: usize = 3;
/// (left, right) of each band, in the order of the report's bands.
pub(super) const X: [(f64, f64); 4] = [
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
pub(super) fn mark_x(b: &Band, expires_in: i64, (l, r): (f64, f64)) -> f64 {
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

pub(super) fn timeline(o: &mut String, report: &StatusReport) {
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

//! Rendering entries: RouterOS-like tables and detail, and JSON keyed by property names.

use chrono::{DateTime, Local, SecondsFormat};
use serde_json::{Map, Value as Json};

use crate::manager::view::FLAGS_LEGEND;
use crate::manager::{Entry, Value};

pub use crate::x509::routeros_time;

/// Text as a terminal may show it: control characters as `\xNN` (a certificate's names come
/// from outside and could hold ESC, CR or NUL).
pub fn esc(s: &str) -> String {
    crate::x509::names::escape(s).into_owned()
}

fn text_value(v: &Value) -> String {
    match v {
        Value::Text(s) => esc(s),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::Int(i) => i.to_string(),
        Value::Time(t) => routeros_time(*t),
    }
}

/// Unix seconds as RFC 3339 in the local time zone, as `--json` gives times.
pub fn rfc3339(secs: i64) -> String {
    DateTime::<Local>::from(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64),
    )
    .to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// One entry as a JSON object.
pub fn entry_json(index: usize, e: &Entry) -> Json {
    let mut m = Map::new();
    m.insert("#".into(), Json::from(index));
    m.insert("name".into(), Json::String(e.name.clone()));
    m.insert("flags".into(), Json::String(e.flags.to_string()));
    m.insert("template".into(), Json::Bool(e.template));
    for (k, v) in &e.properties {
        m.insert((*k).into(), super::json::property(k, v));
    }
    Json::Object(m)
}

/// `print --json`: an array of objects.
pub fn json(entries: &[Entry]) -> String {
    let arr: Vec<Json> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| entry_json(i, e))
        .collect();
    let mut s = serde_json::to_string_pretty(&Json::Array(arr)).unwrap_or_else(|_| "[]".into());
    s.push('\n');
    s
}

/// `print`: the RouterOS table, fitted to `width` (see [`super::table`]).
pub fn table(entries: &[Entry], width: Option<usize>) -> String {
    use super::table::{legend, render, Column};
    let columns = [
        Column::new("NAME", 8),
        Column::new("COMMON-NAME", 5),
        Column::new("SUBJECT-ALT-NAME", 5),
        Column::new("EXPIRES-AFTER", 8),
        Column::new("FINGERPRINT", 5),
    ];
    let rows: Vec<(String, Vec<String>)> = entries
        .iter()
        .map(|e| {
            let cells = vec![
                esc(&e.name),
                esc(e.text("common-name").unwrap_or_default()),
                esc(e.text("subject-alt-name").unwrap_or_default()),
                short_duration(e.text("expires-after").unwrap_or_default()),
                e.text("fingerprint").unwrap_or_default().to_owned(),
            ];
            (e.flags.columns().iter().collect(), cells)
        })
        .collect();
    let mut out = legend(FLAGS_LEGEND, width);
    out.push_str(&render(&columns, &rows, 9, width));
    out
}

/// A RouterOS duration cut to its two largest units (`51w6d23h59m12s` → `51w6d`), as a table
/// cell shows it; other text as it is.
pub fn short_duration(s: &str) -> String {
    let mut units = 0;
    let mut out = String::new();
    for c in s.chars() {
        out.push(c);
        if c.is_ascii_alphabetic() && c != 'e' {
            units += 1;
            if units == 2 {
                break;
            }
        }
    }
    if s.chars().any(|c| c.is_ascii_digit()) {
        out
    } else {
        s.to_owned()
    }
}

/// An entry's `name=value` items, as `print detail` and `print terse` show them.
fn items(e: &Entry) -> Vec<String> {
    let mut items = vec![format!("name=\"{}\"", esc(&e.name))];
    if e.template {
        items.push("template=yes".into());
    }
    for (k, v) in &e.properties {
        let s = text_value(v);
        if s.is_empty() {
            continue;
        }
        let needs_quotes = s.contains(' ') || matches!(v, Value::Text(_)) && *k != "key-usage";
        if needs_quotes && !matches!(v, Value::Time(_)) {
            items.push(format!("{k}=\"{s}\""));
        } else {
            items.push(format!("{k}={s}"));
        }
    }
    items
}

/// `print terse`: one line per entry, every set property on it.
pub fn terse(entries: &[Entry]) -> String {
    let idx_w = entries.len().saturating_sub(1).to_string().len().max(1);
    let mut out = String::new();
    for (i, e) in entries.iter().enumerate() {
        let flags: String = e.flags.columns().iter().collect();
        out.push_str(&format!("{i:>idx_w$} {flags} {}\n", items(e).join(" ")));
    }
    out
}

/// `print detail`: every set property, RouterOS style, wrapped at `width` (100 without one).
pub fn detail(entries: &[Entry], width: Option<usize>) -> String {
    let wrap = width.unwrap_or(100);
    let mut out = super::table::legend(FLAGS_LEGEND, width);
    let idx_w = entries.len().saturating_sub(1).to_string().len().max(1);
    let indent = " ".repeat(idx_w + 11);
    for (i, e) in entries.iter().enumerate() {
        let flags: String = e.flags.columns().iter().collect();
        let mut line = format!("{i:>idx_w$} {flags} ");
        let mut col = line.chars().count();
        for (n, item) in items(e).iter().enumerate() {
            let len = item.chars().count();
            if n > 0 && col + 1 + len > wrap {
                line.push('\n');
                line.push_str(&indent);
                col = indent.len();
            } else if n > 0 {
                line.push(' ');
                col += 1;
            }
            line.push_str(item);
            col += len;
        }
        out.push_str(&line);
        out.push_str("\n\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::Flags;

    fn entry() -> Entry {
        Entry {
            name: "ca".into(),
            template: false,
            flags: Flags {
                private_key: true,
                authority: true,
                trusted: true,
                ..Default::default()
            },
            properties: vec![
                ("common-name", Value::Text("ca".into())),
                ("fingerprint", Value::Text("ab".repeat(32))),
                ("trusted", Value::Bool(true)),
                ("days-valid", Value::Int(3650)),
            ],
        }
    }

    #[test]
    fn table_has_flag_columns() {
        let t = table(&[entry()], None);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("Flags: K - private-key"));
        assert!(lines[2].starts_with("0 K   A   T ca"), "{t}");
        assert!(lines[2].ends_with(&"ab".repeat(32)), "{t}");
        let narrow = table(&[entry()], Some(60));
        assert!(narrow.lines().all(|l| l.chars().count() <= 60), "{narrow}");
    }

    #[test]
    fn json_is_keyed_by_property_names() {
        let j: Json = serde_json::from_str(&json(&[entry()])).unwrap();
        let o = &j[0];
        assert_eq!(o["name"], "ca");
        assert_eq!(o["flags"], "KAT");
        assert_eq!(o["trusted"], true);
        assert_eq!(o["days-valid"], 3650);
    }

    #[test]
    fn detail_prints_properties() {
        let d = detail(&[entry()], None);
        assert!(d.contains("name=\"ca\""));
        assert!(d.contains("trusted=yes"));
        assert!(d.contains("days-valid=3650"));
        let t = terse(&[entry()]);
        assert_eq!(t.lines().count(), 1);
        assert!(
            t.starts_with("0 K   A   T name=\"ca\" common-name=\"ca\""),
            "{t}"
        );
        assert_eq!(short_duration("51w6d23h59m12s"), "51w6d");
        assert_eq!(short_duration("4h"), "4h");
        assert_eq!(short_duration("expired"), "expired");
    }
}

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

/// `print`: the RouterOS table.
pub fn table(entries: &[Entry]) -> String {
    let headers = ["NAME", "COMMON-NAME", "SUBJECT-ALT-NAME", "FINGERPRINT"];
    let rows: Vec<[String; 4]> = entries
        .iter()
        .map(|e| {
            let fp = e.text("fingerprint").unwrap_or_default();
            [
                esc(&e.name),
                esc(e.text("common-name").unwrap_or_default()),
                esc(e.text("subject-alt-name").unwrap_or_default()),
                fp.get(..16).map(|s| format!("{s}…")).unwrap_or_default(),
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let idx_w = entries.len().saturating_sub(1).to_string().len().max(1);
    let mut out = format!("{FLAGS_LEGEND}\n");
    let line = |out: &mut String, idx: &str, flags: &str, cols: &[String]| {
        out.push_str(&format!("{idx:>idx_w$} {flags} "));
        let mut parts = Vec::new();
        for (i, c) in cols.iter().enumerate() {
            if i + 1 == cols.len() {
                parts.push(c.clone());
            } else {
                parts.push(format!("{c:<w$}", w = widths[i]));
            }
        }
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(&mut out, "#", "         ", &headers.map(str::to_owned));
    for (i, (e, r)) in entries.iter().zip(&rows).enumerate() {
        let flags: String = e.flags.columns().iter().collect();
        line(&mut out, &i.to_string(), &flags, r);
    }
    out
}

/// `print detail`: every set property, RouterOS style, wrapped.
pub fn detail(entries: &[Entry]) -> String {
    let mut out = format!("{FLAGS_LEGEND}\n");
    let idx_w = entries.len().saturating_sub(1).to_string().len().max(1);
    let indent = " ".repeat(idx_w + 11);
    for (i, e) in entries.iter().enumerate() {
        let flags: String = e.flags.columns().iter().collect();
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
        let mut line = format!("{i:>idx_w$} {flags} ");
        let mut col = line.chars().count();
        for (n, item) in items.iter().enumerate() {
            let len = item.chars().count();
            if n > 0 && col + 1 + len > 100 {
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
        let t = table(&[entry()]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("Flags: K - private-key"));
        assert!(lines[2].starts_with("0 K   A   T ca"), "{t}");
        assert!(lines[2].ends_with("abababababababab…"));
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
        let d = detail(&[entry()]);
        assert!(d.contains("name=\"ca\""));
        assert!(d.contains("trusted=yes"));
        assert!(d.contains("days-valid=3650"));
    }
}

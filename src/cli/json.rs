//! The one `--json` shape (README, "JSON output"): every command prints one JSON document on
//! stdout; property names are RouterOS's; numbers are JSON numbers, flags JSON booleans,
//! points in time RFC 3339 strings (local offset, whole seconds); an error is one object
//! `{"error", "kind", "exit", "hint"?}` on stderr.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Local, SecondsFormat};
use serde_json::{Map, Value as Json};

use crate::error::ExitCode as Exit;
use crate::manager::Value;

/// Properties whose value is kept as text but is a number whenever it is one: `key-size` is
/// bits for RSA (`2048`) and a curve name otherwise (`prime256v1`, `ed25519`), as RouterOS
/// has it.
const NUMBER_WHEN_NUMERIC: &[&str] = &["key-size"];

/// A point in time as `--json` gives times.
pub fn time(t: SystemTime) -> Json {
    Json::String(DateTime::<Local>::from(t).to_rfc3339_opts(SecondsFormat::Secs, false))
}

/// Unix seconds as `--json` gives times.
pub fn time_secs(secs: i64) -> Json {
    time(UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
}

/// A property of an entry (`print`, `add`, `set`, `sign`…) as JSON.
pub fn property(name: &str, v: &Value) -> Json {
    match v {
        Value::Text(s) if NUMBER_WHEN_NUMERIC.contains(&name) => match s.parse::<u64>() {
            Ok(n) => Json::from(n),
            Err(_) => Json::String(s.clone()),
        },
        Value::Text(s) => Json::String(s.clone()),
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Time(t) => time(*t),
    }
}

/// The `kind` of an error object: one stable snake-case word per exit code of the CLI
/// contract.
pub fn kind(exit: Exit) -> &'static str {
    match exit {
        Exit::Failed => "failed",
        Exit::Usage => "usage",
        Exit::NotFound => "not_found",
        Exit::Refused => "refused",
        Exit::Token => "token",
    }
}

/// An error as `--json` prints it on stderr: `{"error": …, "kind": …, "exit": …}`, with
/// `"hint"` when there is one and `"causes"` (the error's sources) with `-v`.
pub fn error(message: &str, exit: Exit, hint: Option<&str>, causes: &[String]) -> Json {
    let mut m = Map::new();
    m.insert("error".into(), Json::String(message.to_owned()));
    m.insert("kind".into(), Json::String(kind(exit).to_owned()));
    m.insert("exit".into(), Json::from(exit as u8));
    if let Some(h) = hint {
        m.insert("hint".into(), Json::String(h.to_owned()));
    }
    if !causes.is_empty() {
        m.insert("causes".into(), Json::from(causes.to_vec()));
    }
    Json::Object(m)
}

/// Prints one JSON document on stdout, on one line.
pub fn print(v: &Json) {
    super::out::outln!("{v}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_size_is_a_number_for_rsa_and_a_name_for_curves() {
        let t = |s: &str| Value::Text(s.into());
        assert_eq!(property("key-size", &t("2048")), Json::from(2048));
        assert_eq!(property("key-size", &t("prime256v1")), "prime256v1");
        // other text stays text, even when it looks like a number
        assert_eq!(property("common-name", &t("2048")), "2048");
        assert_eq!(property("days-valid", &Value::Int(365)), Json::from(365));
    }

    #[test]
    fn times_are_rfc3339() {
        let s = time_secs(0);
        let parsed = DateTime::parse_from_rfc3339(s.as_str().unwrap()).unwrap();
        assert_eq!(parsed.timestamp(), 0);
        let s = time(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let parsed = DateTime::parse_from_rfc3339(s.as_str().unwrap()).unwrap();
        assert_eq!(parsed.timestamp(), 1_700_000_000);
    }

    #[test]
    fn error_object_has_kind_and_exit() {
        let e = error("no such x", Exit::NotFound, None, &[]);
        assert_eq!(e["error"], "no such x");
        assert_eq!(e["kind"], "not_found");
        assert_eq!(e["exit"], 3);
        assert!(e.get("hint").is_none() && e.get("causes").is_none());
        let e = error("no", Exit::Refused, Some("do y"), &["why".into()]);
        assert_eq!(
            (e["hint"].as_str(), e["causes"][0].as_str()),
            (Some("do y"), Some("why"))
        );
    }
}

//! `print where …`: RouterOS filter expressions over [`Entry`] properties.
//!
//! ```text
//! expr := and ("or" and)*
//! and  := not (["and"] not)*          (RouterOS also takes two conditions side by side)
//! not  := ("!" | "not") not | "(" expr ")" | cond
//! cond := PROP | PROP OP VALUE        OP: = != < > <= >= ~
//! ```
//! A bare `PROP` holds when a yes/no property is yes or a text property is not empty, so
//! `where trusted`, `where !revoked`. Values compare by the property's kind: yes/no, numbers,
//! times (`2027-01-31`, `2027-01-31 12:00:00`, RFC 3339, or RouterOS `jan/31/2027 12:00:00`),
//! text (`~` is a regular expression). `expires-after` compares as a duration (`<30d`,
//! `>1w2d`), an expired certificate's being below zero.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone};

use crate::error::ManagerError;
use crate::manager::{Entry, Value};

/// A parsed `where` expression.
#[derive(Debug)]
pub enum Filter {
    /// both
    And(Box<Filter>, Box<Filter>),
    /// either
    Or(Box<Filter>, Box<Filter>),
    /// not
    Not(Box<Filter>),
    /// `PROP` alone
    Truthy(String),
    /// `PROP OP VALUE`
    Compare(String, Op, String, Option<regex::Regex>),
}

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `>`
    Gt,
    /// `<=`
    Le,
    /// `>=`
    Ge,
    /// `~` (regular expression)
    Matches,
}

/// The longest compiled regular expression a `~` may build (bytes of automaton).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

fn bad(msg: impl Into<String>) -> ManagerError {
    ManagerError::InvalidValue(format!("where: {}", msg.into()))
}

/// Words of a `where` clause, split so that parentheses and a leading `!` stand alone.
fn tokens(words: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    for w in words {
        let mut s = w.as_str();
        loop {
            if let Some(rest) = s.strip_prefix('(') {
                out.push("(".into());
                depth += 1;
                s = rest;
            } else if let Some(rest) = s.strip_prefix('!').filter(|r| !r.starts_with('=')) {
                out.push("!".into());
                s = rest;
            } else {
                break;
            }
        }
        // a `)` closes an open `(`; otherwise it is part of a value (or an error later)
        let mut closing = 0;
        while s.ends_with(')') && (closing < depth || !s.contains(['=', '~', '<', '>'])) {
            s = &s[..s.len() - 1];
            closing += 1;
        }
        depth = depth.saturating_sub(closing);
        if !s.is_empty() {
            out.push(s.to_owned());
        }
        out.extend(std::iter::repeat_n(")".to_owned(), closing));
    }
    out
}

/// Parses the words after `where`.
pub fn parse(words: &[String]) -> Result<Filter, ManagerError> {
    let toks = tokens(words);
    if toks.is_empty() {
        return Err(bad("nothing after where"));
    }
    let mut p = Parser { toks, pos: 0 };
    let f = p.or()?;
    match p.toks.get(p.pos) {
        None => Ok(f),
        Some(t) => Err(bad(format!("unexpected '{t}'"))),
    }
}

struct Parser {
    toks: Vec<String>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&str> {
        self.toks.get(self.pos).map(String::as_str)
    }

    fn or(&mut self) -> Result<Filter, ManagerError> {
        let mut left = self.and()?;
        while self.peek() == Some("or") {
            self.pos += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, ManagerError> {
        let mut left = self.not()?;
        loop {
            match self.peek() {
                Some("and") => self.pos += 1,
                Some("or" | ")") | None => return Ok(left),
                Some(_) => {}
            }
            left = Filter::And(Box::new(left), Box::new(self.not()?));
        }
    }

    fn not(&mut self) -> Result<Filter, ManagerError> {
        match self.peek() {
            Some("!" | "not") => {
                self.pos += 1;
                Ok(Filter::Not(Box::new(self.not()?)))
            }
            Some("(") => {
                self.pos += 1;
                let f = self.or()?;
                if self.peek() != Some(")") {
                    return Err(bad("a '(' is not closed"));
                }
                self.pos += 1;
                Ok(f)
            }
            Some(")") => Err(bad("')' without '('")),
            Some(_) => self.cond(),
            None => Err(bad("a condition is missing at the end")),
        }
    }

    fn cond(&mut self) -> Result<Filter, ManagerError> {
        let word = self.toks[self.pos].clone();
        self.pos += 1;
        let (prop, op, value) = match split_condition(&word) {
            Some(parts) => parts,
            None => {
                // `PROP OP VALUE` as three words
                match self.peek().and_then(op_word) {
                    Some(op) => {
                        self.pos += 1;
                        let value = self
                            .toks
                            .get(self.pos)
                            .cloned()
                            .ok_or_else(|| bad(format!("no value after {word}")))?;
                        self.pos += 1;
                        (word, op, value)
                    }
                    None => {
                        check_property_name(&word)?;
                        return Ok(Filter::Truthy(word));
                    }
                }
            }
        };
        check_property_name(&prop)?;
        let regex = match op {
            Op::Matches => Some(
                regex::RegexBuilder::new(&value)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| bad(format!("{prop}~: {}", regex_error(&e))))?,
            ),
            _ => None,
        };
        Ok(Filter::Compare(prop, op, value, regex))
    }
}

/// The regex crate's message is several lines (the pattern with a caret); its last is the why.
fn regex_error(e: &regex::Error) -> String {
    let s = e.to_string();
    s.lines()
        .last()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned()
}

fn op_word(s: &str) -> Option<Op> {
    Some(match s {
        "=" => Op::Eq,
        "!=" => Op::Ne,
        "<" => Op::Lt,
        ">" => Op::Gt,
        "<=" => Op::Le,
        ">=" => Op::Ge,
        "~" => Op::Matches,
        _ => return None,
    })
}

/// `prop<op>value` in one word.
fn split_condition(word: &str) -> Option<(String, Op, String)> {
    let at = word.find(['=', '<', '>', '~', '!'])?;
    let (prop, rest) = word.split_at(at);
    let (op, value) = [
        ("!=", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("=", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
        ("~", Op::Matches),
    ]
    .into_iter()
    .find_map(|(s, op)| rest.strip_prefix(s).map(|v| (op, v)))?;
    Some((prop.to_owned(), op, value.to_owned()))
}

fn check_property_name(p: &str) -> Result<(), ManagerError> {
    let ok = !p.is_empty()
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(bad(format!("'{p}' is not a property name")))
    }
}

impl Filter {
    /// The property names the expression reads.
    pub fn properties(&self) -> Vec<&str> {
        match self {
            Filter::And(a, b) | Filter::Or(a, b) => {
                let mut v = a.properties();
                v.extend(b.properties());
                v
            }
            Filter::Not(a) => a.properties(),
            Filter::Truthy(p) | Filter::Compare(p, ..) => vec![p.as_str()],
        }
    }

    /// Whether `e` passes, at `now`.
    pub fn matches(&self, e: &Entry, now: SystemTime) -> Result<bool, ManagerError> {
        Ok(match self {
            Filter::And(a, b) => a.matches(e, now)? && b.matches(e, now)?,
            Filter::Or(a, b) => a.matches(e, now)? || b.matches(e, now)?,
            Filter::Not(a) => !a.matches(e, now)?,
            Filter::Truthy(p) => match property(e, p) {
                Some(Value::Bool(b)) => b,
                Some(Value::Text(s)) => !s.is_empty(),
                Some(Value::Int(i)) => i != 0,
                Some(Value::Time(_)) => true,
                None => false,
            },
            Filter::Compare(p, op, want, regex) => {
                if p == "expires-after" {
                    return compare_expiry(e, *op, want, regex.as_ref(), now);
                }
                match property(e, p) {
                    None => matches!(op, Op::Ne) || (*op == Op::Eq && want.is_empty()),
                    Some(have) => compare(p, &have, *op, want, regex.as_ref())?,
                }
            }
        })
    }
}

/// A property of `e` by its print name, with `name`, `flags` and `template` besides the
/// listed ones.
pub fn property(e: &Entry, p: &str) -> Option<Value> {
    match p {
        "name" => Some(Value::Text(e.name.clone())),
        "flags" => Some(Value::Text(e.flags.to_string())),
        "template" => Some(Value::Bool(e.template)),
        _ => e.get(p).cloned(),
    }
}

fn ordering_holds(ord: std::cmp::Ordering, op: Op) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::Eq => ord == Equal,
        Op::Ne => ord != Equal,
        Op::Lt => ord == Less,
        Op::Gt => ord == Greater,
        Op::Le => ord != Greater,
        Op::Ge => ord != Less,
        Op::Matches => false,
    }
}

fn compare(
    p: &str,
    have: &Value,
    op: Op,
    want: &str,
    regex: Option<&regex::Regex>,
) -> Result<bool, ManagerError> {
    if let Some(re) = regex {
        let text = match have {
            Value::Text(s) => s.clone(),
            Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
            Value::Int(i) => i.to_string(),
            Value::Time(t) => crate::x509::routeros_time(*t),
        };
        return Ok(re.is_match(&text));
    }
    Ok(match have {
        Value::Bool(b) => {
            let w = crate::cli::yes_no(want).map_err(|e| bad(format!("{p}: {e}")))?;
            match op {
                Op::Eq => *b == w,
                Op::Ne => *b != w,
                _ => return Err(bad(format!("{p} is yes or no: use = or !="))),
            }
        }
        Value::Int(i) => {
            let w: i64 = want
                .parse()
                .map_err(|_| bad(format!("{p} is a number, not '{want}'")))?;
            ordering_holds(i.cmp(&w), op)
        }
        Value::Time(t) => {
            let w = parse_time(want).ok_or_else(|| {
                bad(format!(
                    "{p}: '{want}' is not a time (2027-01-31, 2027-01-31 12:00:00, jan/31/2027)"
                ))
            })?;
            ordering_holds(t.cmp(&w), op)
        }
        Value::Text(s) => ordering_holds(s.as_str().cmp(want), op),
    })
}

/// `expires-after OP DURATION`: the time left until invalid-after (negative once expired).
fn compare_expiry(
    e: &Entry,
    op: Op,
    want: &str,
    regex: Option<&regex::Regex>,
    now: SystemTime,
) -> Result<bool, ManagerError> {
    if let Some(re) = regex {
        // `~`: compiled (size-limited) once, when the expression was parsed
        return Ok(re.is_match(e.text("expires-after").unwrap_or_default()));
    }
    let Some(Value::Time(after)) = e.get("invalid-after").cloned() else {
        // templates have no expiry
        return Ok(op == Op::Ne);
    };
    let left: i128 = match after.duration_since(now) {
        Ok(d) => d.as_secs() as i128,
        Err(past) => -(past.duration().as_secs() as i128) - 1,
    };
    let w = parse_duration(want).ok_or_else(|| {
        bad(format!(
            "expires-after: '{want}' is not a duration (30d, 1w2d, 12h)"
        ))
    })?;
    Ok(ordering_holds(left.cmp(&(w.as_secs() as i128)), op))
}

/// RouterOS durations: `1w2d3h4m5s` (any of the parts), or plain seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    if let Ok(n) = s.parse::<u64>() {
        return Some(Duration::from_secs(n));
    }
    let (mut secs, mut digits) = (0u64, String::new());
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            'w' => 604_800,
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        let n: u64 = digits.parse().ok()?;
        secs = secs.checked_add(n.checked_mul(unit)?)?;
        digits.clear();
    }
    (digits.is_empty() && !s.is_empty()).then(|| Duration::from_secs(secs))
}

/// A time as an operator types it, in the local time zone unless it says otherwise.
pub fn parse_time(s: &str) -> Option<SystemTime> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.into());
    }
    let naive = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%b/%d/%Y %H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .or_else(|| {
        ["%Y-%m-%d", "%b/%d/%Y"]
            .iter()
            .find_map(|f| NaiveDate::parse_from_str(s, f).ok())
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })?;
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(SystemTime::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::Flags;

    fn entry(name: &str, trusted: bool, days: i64) -> Entry {
        let after = SystemTime::now() + Duration::from_secs((days * 86_400) as u64);
        Entry {
            name: name.into(),
            template: false,
            flags: Flags {
                trusted,
                private_key: true,
                ..Default::default()
            },
            properties: vec![
                ("common-name", Value::Text(format!("{name}.example"))),
                ("trusted", Value::Bool(trusted)),
                ("days-valid", Value::Int(days)),
                ("invalid-after", Value::Time(after)),
                ("expires-after", Value::Text(format!("{days}d"))),
            ],
        }
    }

    fn passes(expr: &str, e: &Entry) -> bool {
        let words: Vec<String> = expr.split(' ').map(str::to_owned).collect();
        parse(&words)
            .unwrap()
            .matches(e, SystemTime::now())
            .unwrap()
    }

    #[test]
    fn conditions() {
        let ca = entry("ca", true, 3650);
        let leaf = entry("leaf", false, 5);
        assert!(passes("trusted", &ca) && !passes("trusted", &leaf));
        assert!(passes("!trusted", &leaf) && passes("not trusted", &leaf));
        assert!(passes("trusted=yes", &ca) && passes("trusted!=yes", &leaf));
        assert!(passes("days-valid>100", &ca) && !passes("days-valid>100", &leaf));
        assert!(passes("days-valid<=5", &leaf) && passes("days-valid >= 3650", &ca));
        assert!(passes("name=ca", &ca) && passes("common-name~^le", &leaf));
        assert!(passes("expires-after<7d", &leaf) && !passes("expires-after<7d", &ca));
        assert!(passes("expires-after~^5d", &leaf) && !passes("expires-after~^5d", &ca));
        assert!(passes("invalid-after<2999-01-01", &ca));
        assert!(passes("invalid-after>jan/01/2000", &leaf));
        assert!(passes("flags~K", &ca));
        assert!(passes("trusted=yes or days-valid=5", &leaf));
        assert!(!passes("trusted=yes and days-valid=5", &leaf));
        assert!(passes("(trusted or name=leaf) days-valid=5", &leaf));
        assert!(passes("!(trusted)", &leaf));
        // a property the entry does not have
        assert!(!passes("revoked", &ca) && passes("revoked-at!=x", &ca));
    }

    #[test]
    fn errors_are_one_line() {
        for bad in [
            "",
            "(trusted",
            "trusted)",
            "days-valid<x",
            "trusted<yes",
            "Bad=1",
            "common-name~(",
        ] {
            let words: Vec<String> = if bad.is_empty() {
                vec![]
            } else {
                bad.split(' ').map(str::to_owned).collect()
            };
            let e = parse(&words).and_then(|f| {
                f.matches(&entry("ca", true, 10), SystemTime::now())
                    .map(|_| ())
            });
            let msg = e.expect_err(bad).to_string();
            assert!(msg.contains("where") && !msg.contains('\n'), "{msg}");
        }
    }

    #[test]
    fn durations_and_times() {
        assert_eq!(parse_duration("1w2d"), Some(Duration::from_secs(777_600)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("5d3"), None);
        assert!(parse_time("2027-01-31").is_some());
        assert!(parse_time("2027-01-31T12:00:00Z").is_some());
        assert!(parse_time("jan/31/2027 12:00:00").is_some());
        assert!(parse_time("31.01.2027").is_none());
    }
}

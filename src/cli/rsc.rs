//! RouterOS script text (`.rsc`, what `/export` writes and operators keep): the `/certificate`
//! lines of it, as statements for `certman script`.
//!
//! - `# …` comments and blank lines are skipped; a line ending in `\` goes on on the next.
//! - A line that is only a menu (`/certificate`, `/certificate scep-server requests`) makes it
//!   the menu of the lines after it; a command may also name its menu in front
//!   (`/certificate scep-server add …`) without changing the current one. Before any menu
//!   line, lines are in `/certificate`.
//! - Words are split at spaces; `"…"` quotes (with `\"`, `\\`, `\n`, `\t`, `\r`, `\$`, `\?`,
//!   `\_` for a space) may be a whole word or the value of `name="…"`.
//! - `[find]`, `[find EXPR]` and `[find where EXPR]` stand for the entries the `where`
//!   expression matches (see `print where`).
//!
//! Anything else RouterOS scripting has (`:global`, `$variables`, `:foreach`, …) is refused
//! with the line's number: certman runs certificate commands, not a script language.

use crate::error::ManagerError;

/// One command of a script.
#[derive(Debug, PartialEq, Eq)]
pub struct Statement {
    /// the line it starts on (1-based)
    pub line: usize,
    /// the menu under `/certificate` (`["scep-server", "requests"]`), then the command's words
    pub words: Vec<Word>,
}

/// A word of a statement.
#[derive(Debug, PartialEq, Eq)]
pub enum Word {
    /// a plain or quoted word
    Text(String),
    /// `[find …]`: the expression's words (empty: every entry)
    Find(Vec<String>),
}

/// A script's statements, or the first error with its line number.
pub fn parse(text: &str) -> Result<Vec<Statement>, (usize, ManagerError)> {
    let mut out = Vec::new();
    let mut menu: Vec<String> = Vec::new();
    for (line, logical) in logical_lines(text) {
        let words = split(&logical).map_err(|e| (line, e))?;
        let Some(first) = words.first() else {
            continue;
        };
        let mut rest: &[Word] = &words;
        let mut menu_here = menu.clone();
        if let Word::Text(w) = first {
            if let Some(path) = w.strip_prefix('/') {
                let mut path: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
                rest = &words[1..];
                // `/certificate scep-server add`: the menu words after the path word
                if path.first() != Some(&"certificate") {
                    return Err((
                        line,
                        ManagerError::InvalidValue(format!(
                            "'{w}': only /certificate commands run here"
                        )),
                    ));
                }
                path.remove(0);
                menu_here = path.into_iter().map(str::to_owned).collect();
                while let Some(Word::Text(m)) = rest.first() {
                    if !is_menu(&menu_here, m) {
                        break;
                    }
                    menu_here.push(m.clone());
                    rest = &rest[1..];
                }
                if rest.is_empty() {
                    menu = menu_here;
                    continue;
                }
            } else if w.starts_with(':') || w.starts_with('$') || w.starts_with('{') {
                return Err((
                    line,
                    ManagerError::InvalidValue(format!(
                        "'{w}': RouterOS scripting is not run here, only /certificate commands"
                    )),
                ));
            } else if w == ".." {
                menu.pop();
                continue;
            }
        }
        let mut all: Vec<Word> = menu_here.into_iter().map(Word::Text).collect();
        all.extend(rest.iter().map(|w| match w {
            Word::Text(t) => Word::Text(t.clone()),
            Word::Find(f) => Word::Find(f.clone()),
        }));
        out.push(Statement { line, words: all });
    }
    Ok(out)
}

/// The sub-menus of `/certificate` and theirs.
fn is_menu(path: &[String], word: &str) -> bool {
    match path {
        [] => matches!(word, "scep-server" | "crl" | "settings"),
        [s] if s == "scep-server" => matches!(word, "otp" | "requests" | "ra"),
        _ => false,
    }
}

/// Lines joined at a trailing `\`, with the number of the line each starts on; comments and
/// blank lines dropped.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let (start, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        let trimmed = raw.trim();
        if acc.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match raw.strip_suffix('\\') {
            Some(head) => {
                acc.push_str(head);
                pending = Some((start, acc));
            }
            None => {
                acc.push_str(raw);
                out.push((start, acc));
            }
        }
    }
    if let Some(p) = pending {
        out.push(p);
    }
    out
}

fn bad(msg: impl Into<String>) -> ManagerError {
    ManagerError::InvalidValue(msg.into())
}

/// A line's words.
fn split(line: &str) -> Result<Vec<Word>, ManagerError> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else {
            return Ok(words);
        };
        if c == '[' {
            chars.next();
            let mut inner = String::new();
            let mut depth = 1;
            let mut quoted = false;
            for c in chars.by_ref() {
                match c {
                    '"' => quoted = !quoted,
                    '[' if !quoted => depth += 1,
                    ']' if !quoted => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                inner.push(c);
            }
            if depth != 0 {
                return Err(bad("a '[' is not closed"));
            }
            words.push(find(&inner)?);
            continue;
        }
        let mut w = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            if c != '"' {
                w.push(c);
                continue;
            }
            loop {
                match chars.next() {
                    None => return Err(bad("a '\"' is not closed")),
                    Some('"') => break,
                    Some('\\') => w.push(match chars.next() {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('r') => '\r',
                        Some('_') => ' ',
                        Some(c @ ('"' | '\\' | '$' | '?')) => c,
                        Some(c) => return Err(bad(format!("unknown escape '\\{c}'"))),
                        None => return Err(bad("a '\"' is not closed")),
                    }),
                    Some('$') => return Err(bad("$variables are not taken here")),
                    Some(c) => w.push(c),
                }
            }
        }
        if w.starts_with('$') || w.contains("=$") {
            return Err(bad("$variables are not taken here"));
        }
        words.push(Word::Text(w));
    }
}

/// `find`, `find EXPR` or `find where EXPR` (the text between the brackets).
fn find(inner: &str) -> Result<Word, ManagerError> {
    let words: Vec<String> = split(inner)?
        .into_iter()
        .map(|w| match w {
            Word::Text(t) => Ok(t),
            Word::Find(_) => Err(bad("[find] inside [find] is not taken")),
        })
        .collect::<Result<_, _>>()?;
    match words.split_first() {
        Some((f, rest)) if f == "find" || f == "/certificate/find" => {
            let rest = match rest.split_first() {
                Some((w, r)) if w == "where" => r,
                _ => rest,
            };
            Ok(Word::Find(rest.to_vec()))
        }
        _ => Err(bad(format!(
            "'[{inner}]': only [find …] is taken inside brackets"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &Statement) -> Vec<String> {
        s.words
            .iter()
            .map(|w| match w {
                Word::Text(t) => t.clone(),
                Word::Find(f) => format!("[{}]", f.join(" ")),
            })
            .collect()
    }

    #[test]
    fn the_seeds_lines() {
        let script = "\
# the seed's SCEP example
/certificate
add common-name=ca name=ca-tpl
sign ca-tpl name=ca

/certificate scep-server add ca-cert=ca path=/scep/test
add common-name=tst-client \\
    name=tpl_1
/certificate scep-server requests
grant 0
/certificate
remove [find where name~\"^tpl\" and !trusted] \"a b\"
add name=\"My \\\"CA\\\"\" days-valid=1
";
        let s = parse(script).unwrap();
        let lines: Vec<usize> = s.iter().map(|s| s.line).collect();
        assert_eq!(lines, [3, 4, 6, 7, 10, 12, 13]);
        assert_eq!(texts(&s[0]), ["add", "common-name=ca", "name=ca-tpl"]);
        assert_eq!(
            texts(&s[2]),
            ["scep-server", "add", "ca-cert=ca", "path=/scep/test"]
        );
        // a command with its menu in front does not change the menu
        assert_eq!(
            texts(&s[3]),
            ["add", "common-name=tst-client", "name=tpl_1"]
        );
        assert_eq!(texts(&s[4]), ["scep-server", "requests", "grant", "0"]);
        assert_eq!(texts(&s[5]), ["remove", "[name~^tpl and !trusted]", "a b"]);
        assert_eq!(texts(&s[6]), ["add", "name=My \"CA\"", "days-valid=1"]);
    }

    #[test]
    fn refusals_name_their_line() {
        for (script, line) in [
            ("add name=x\n:put hello\n", 2),
            ("\n\n/ip address add address=1.2.3.4\n", 3),
            ("add name=\"x\n", 1),
            ("remove [find name=x\n", 1),
            ("add name=$x\n", 1),
            ("remove [:pick 1]\n", 1),
        ] {
            let (l, e) = parse(script).expect_err(script);
            assert_eq!(l, line, "{script}: {e}");
        }
    }

    #[test]
    fn finds() {
        let s = parse("remove [find]\nremove [find trusted=yes]\n").unwrap();
        assert_eq!(s[0].words[1], Word::Find(vec![]));
        assert_eq!(s[1].words[1], Word::Find(vec!["trusted=yes".into()]));
    }
}

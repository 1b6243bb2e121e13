//! `certman print [detail|terse|count-only|tree] [NAME|#…] [where EXPR]`.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use clap::Args;
use serde_json::{json, Value as Json};

use super::numbers::Menu;
use super::{filter, output, table, CliError, Ctx};
use crate::error::ManagerError;
use crate::manager::Entry;

/// `print [detail|terse|count-only|tree] [NAME|#…] [where PROP=VALUE [and|or …]]`
#[derive(Debug, Args)]
pub struct PrintArgs {
    /// Mode words, names or numbers, then `where` and its expression.
    #[arg(
        value_name = "detail|terse|count-only|tree|NAME|#|where …",
        allow_hyphen_values = true
    )]
    pub items: Vec<String>,
    /// Every property of each entry.
    #[arg(long)]
    pub detail: bool,
    /// One line per entry with every property.
    #[arg(long)]
    pub terse: bool,
    /// Only the number of entries.
    #[arg(long)]
    pub count_only: bool,
    /// The CAs with what they issued, flags and expiry.
    #[arg(long)]
    pub tree: bool,
}

/// How entries are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Table,
    Detail,
    Terse,
    CountOnly,
    Tree,
}

/// A print's words taken apart.
struct Request {
    mode: Mode,
    names: Vec<String>,
    filter: Option<filter::Filter>,
}

fn mode_word(w: &str) -> Option<Option<Mode>> {
    Some(match w {
        "detail" => Some(Mode::Detail),
        "terse" => Some(Mode::Terse),
        "count-only" => Some(Mode::CountOnly),
        "tree" => Some(Mode::Tree),
        "without-paging" => None,
        _ => return None,
    })
}

impl PrintArgs {
    fn request(&self) -> Result<Request, ManagerError> {
        let mut modes = Vec::new();
        for (flag, m) in [
            (self.detail, Mode::Detail),
            (self.terse, Mode::Terse),
            (self.count_only, Mode::CountOnly),
            (self.tree, Mode::Tree),
        ] {
            if flag {
                modes.push(m);
            }
        }
        let mut names = Vec::new();
        let mut expr: Option<Vec<String>> = None;
        for w in &self.items {
            if let Some(m) = mode_word(w) {
                modes.extend(m);
            } else if let Some(e) = expr.as_mut() {
                e.push(w.clone());
            } else if w == "where" {
                expr = Some(Vec::new());
            } else {
                names.push(w.clone());
            }
        }
        modes.dedup();
        let mode = match modes.as_slice() {
            [] => Mode::Table,
            [m] => *m,
            _ => {
                return Err(ManagerError::InvalidValue(
                    "print takes one of detail, terse, count-only, tree".into(),
                ))
            }
        };
        let filter = expr.as_deref().map(filter::parse).transpose()?;
        Ok(Request {
            mode,
            names,
            filter,
        })
    }

    /// Runs the command.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let req = self.request()?;
        let m = ctx.manager()?;
        let names = ctx.numbers.resolve(Menu::Certificates, &req.names, || {
            Ok(m.entries(&[])?.into_iter().map(|e| e.name).collect())
        })?;
        let mut entries = m.entries(&names)?;
        // the state of keys on tokens: asked of the tokens (no login), so only where it shows
        // or may be filtered on
        if req.mode == Mode::Detail || ctx.json || req.filter.is_some() {
            m.add_key_states(&mut entries);
        }
        if let Some(f) = &req.filter {
            entries = filtered(entries, f)?;
        }
        if req.mode == Mode::CountOnly {
            if ctx.json {
                super::json::print(&json!({ "count": entries.len() }));
            } else {
                super::out::text(&format!("{}\n", entries.len()));
            }
            return Ok(());
        }
        if req.mode == Mode::Tree {
            entries = tree_order(entries);
        }
        let shown: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
        ctx.numbers.record(Menu::Certificates, &shown);
        let width = ctx.output_width();
        let text = match (ctx.json, req.mode) {
            (true, Mode::Tree) => tree_json(&entries),
            (true, _) => output::json(&entries),
            (false, Mode::Tree) => tree(&entries, width),
            (false, Mode::Detail) => output::detail(&entries, width),
            (false, Mode::Terse) => output::terse(&entries),
            (false, _) => output::table(&entries, width),
        };
        super::out::text(&text);
        if matches!(ctx.numbers, super::numbers::Numbers::Session(..)) {
            // The process ends after this print: freeing every entry one by one would cost
            // it ~10 ms more per 10,000 entries (views of certificates: no secrets in them).
            // A script's print frees them, its run going on.
            std::mem::forget(entries);
        }
        Ok(())
    }
}

/// The entries the filter passes; a property that no entry has is refused (a typo would
/// otherwise print nothing).
pub(super) fn filtered(
    entries: Vec<Entry>,
    f: &filter::Filter,
) -> Result<Vec<Entry>, ManagerError> {
    if !entries.is_empty() {
        let mut known: HashSet<&str> = ["name", "flags", "template", "expires-after"].into();
        for e in &entries {
            known.extend(e.properties.iter().map(|(k, _)| *k));
        }
        if let Some(p) = f.properties().into_iter().find(|p| !known.contains(p)) {
            return Err(ManagerError::InvalidValue(format!(
                "where: no property '{p}' (print detail lists them)"
            )));
        }
    }
    let now = SystemTime::now();
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        if f.matches(&e, now)? {
            out.push(e);
        }
    }
    Ok(out)
}

/// The issuer an entry's `ca` property names, if it is among `names`.
fn parent<'a>(e: &'a Entry, names: &HashSet<&str>) -> Option<&'a str> {
    e.text("ca")
        .filter(|ca| !ca.is_empty() && *ca != e.name && names.contains(ca))
}

/// Entries in tree order: each root (no issuer shown) followed by what it issued, depth first;
/// templates last.
fn tree_order(entries: Vec<Entry>) -> Vec<Entry> {
    let names: HashSet<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        match parent(e, &names) {
            Some(p) => children.entry(p).or_default().push(i),
            None => roots.push(i),
        }
    }
    let mut order = Vec::with_capacity(entries.len());
    let mut stack: Vec<usize> = roots.into_iter().rev().collect();
    let mut seen = vec![false; entries.len()];
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        order.push(i);
        if let Some(c) = children.get(entries[i].name.as_str()) {
            stack.extend(c.iter().rev());
        }
    }
    // an issuer cycle (not made here, but a store may hold anything) is shown flat
    order.extend((0..entries.len()).filter(|i| !seen[*i]));
    order.sort_by_key(|i| entries[*i].template);
    let mut slots: Vec<Option<Entry>> = entries.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// Depth of each entry in tree order, and whether it is the last of its siblings.
fn tree_shape(entries: &[Entry]) -> Vec<(usize, bool)> {
    let names: HashSet<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    let mut depth: HashMap<&str, usize> = HashMap::new();
    let parents: Vec<Option<&str>> = entries.iter().map(|e| parent(e, &names)).collect();
    // the last child of each parent: the first one met walking backwards
    let mut met: HashSet<Option<&str>> = HashSet::new();
    let mut last = vec![false; entries.len()];
    for (i, p) in parents.iter().enumerate().rev() {
        last[i] = met.insert(*p);
    }
    let mut shape = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let d = parents[i].and_then(|p| depth.get(p)).map_or(0, |d| d + 1);
        depth.insert(e.name.as_str(), d);
        shape.push((d, last[i]));
    }
    shape
}

/// `print tree`: the table with each name under its issuer.
fn tree(entries: &[Entry], width: Option<usize>) -> String {
    use table::Column;
    let shape = tree_shape(entries);
    let mut open: Vec<bool> = Vec::new(); // per depth: more siblings to come
    let mut rows = Vec::with_capacity(entries.len());
    for (e, (depth, last)) in entries.iter().zip(&shape) {
        open.truncate(*depth);
        let mut name = String::new();
        if *depth > 0 {
            for more in &open[1..] {
                name.push_str(if *more { "│  " } else { "   " });
            }
            name.push_str(if *last { "└─ " } else { "├─ " });
        }
        open.push(!*last);
        name.push_str(&output::esc(&e.name));
        if e.template {
            name.push_str(" (template)");
        }
        let after = e.get("invalid-after").map(|v| match v {
            crate::manager::Value::Time(t) => output::routeros_time(*t),
            _ => String::new(),
        });
        rows.push((
            e.flags.columns().iter().collect(),
            vec![
                name,
                output::short_duration(e.text("expires-after").unwrap_or_default()),
                after.unwrap_or_default(),
            ],
        ));
    }
    let columns = [
        Column::new("NAME", 12),
        Column::new("EXPIRES-AFTER", 8),
        Column::new("INVALID-AFTER", 8),
    ];
    let mut out = table::legend(crate::manager::view::FLAGS_LEGEND, width);
    out.push_str(&table::render(&columns, &rows, 9, width));
    out
}

/// `print tree --json`: roots with `issued` arrays.
fn tree_json(entries: &[Entry]) -> String {
    let shape = tree_shape(entries);
    // build bottom-up: a stack of (depth, object)
    let mut stack: Vec<(usize, Json)> = Vec::new();
    let mut roots: Vec<Json> = Vec::new();
    let attach = |stack: &mut Vec<(usize, Json)>, roots: &mut Vec<Json>, down_to: usize| {
        while stack.last().is_some_and(|(d, _)| *d >= down_to) {
            let (_, node) = stack.pop().unwrap_or_default();
            match stack.last_mut() {
                Some((_, p)) => {
                    if let Some(a) = p["issued"].as_array_mut() {
                        a.push(node)
                    }
                }
                None => roots.push(node),
            }
        }
    };
    for (i, (e, (depth, _))) in entries.iter().zip(&shape).enumerate() {
        attach(&mut stack, &mut roots, *depth);
        let mut node = output::entry_json(i, e);
        node["issued"] = Json::Array(Vec::new());
        stack.push((*depth, node));
    }
    attach(&mut stack, &mut roots, 0);
    let mut s = serde_json::to_string_pretty(&Json::Array(roots)).unwrap_or_else(|_| "[]".into());
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::{Flags, Value};

    fn e(name: &str, ca: &str) -> Entry {
        Entry {
            name: name.into(),
            template: false,
            flags: Flags::default(),
            properties: vec![("ca", Value::Text(ca.into()))],
        }
    }

    #[test]
    fn tree_puts_issued_under_their_issuer() {
        let entries = vec![
            e("root", ""),
            e("leaf1", "root"),
            e("sub", "root"),
            e("other", ""),
            e("leaf2", "sub"),
            e("leaf3", "root"),
        ];
        let ordered = tree_order(entries);
        let names: Vec<&str> = ordered.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["root", "leaf1", "sub", "leaf2", "leaf3", "other"]);
        let t = tree(&ordered, None);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[3].contains("├─ leaf1"), "{t}");
        assert!(lines[5].contains("│  └─ leaf2"), "{t}");
        assert!(lines[6].contains("└─ leaf3"), "{t}");
        let j: Json = serde_json::from_str(&tree_json(&ordered)).unwrap();
        assert_eq!(j.as_array().unwrap().len(), 2);
        assert_eq!(j[0]["issued"][1]["name"], "sub");
        assert_eq!(j[0]["issued"][1]["issued"][0]["name"], "leaf2");
    }

    #[test]
    fn words() {
        let p = PrintArgs {
            items: ["detail", "ca", "where", "trusted", "count-only"]
                .map(String::from)
                .to_vec(),
            detail: false,
            terse: false,
            count_only: false,
            tree: false,
        };
        let err = p.request().err().expect("two modes");
        assert!(err.to_string().contains("one of"));
        let p = PrintArgs {
            items: ["ca", "where", "trusted=yes", "count-only"]
                .map(String::from)
                .to_vec(),
            ..p
        };
        let r = p.request().unwrap();
        assert_eq!(r.mode, Mode::CountOnly);
        assert_eq!(r.names, ["ca"]);
        assert!(r.filter.is_some());
    }
}

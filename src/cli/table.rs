//! RouterOS tables that fit the terminal: columns shrink (the widest first) and what no longer
//! fits is cut with `..`, heads as well (`COMMON-NAME` → `COM..`), and the flag legend wraps.
//! Not on a terminal, nothing is cut (unless `$COLUMNS` says a width).

/// A column: its head and the narrowest it may become.
pub struct Column {
    /// e.g. `COMMON-NAME`
    pub head: &'static str,
    /// never narrower than this (or than its widest cell, if that is less)
    pub min: usize,
}

impl Column {
    /// A column headed `head`, never narrower than `min`.
    pub const fn new(head: &'static str, min: usize) -> Column {
        Column { head, min }
    }
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// `s` in at most `w` characters: cut with `..` (RouterOS), padded when `pad`.
pub fn cell(s: &str, w: usize, pad: bool) -> String {
    let n = chars(s);
    let mut out = if n <= w {
        s.to_owned()
    } else if w <= 2 {
        s.chars().take(w).collect()
    } else {
        let mut c: String = s.chars().take(w - 2).collect();
        c.push_str("..");
        c
    };
    if pad {
        let len = chars(&out);
        out.extend(std::iter::repeat_n(' ', w.saturating_sub(len)));
    }
    out
}

/// The legend wrapped at `width` after its commas.
pub fn legend(text: &str, width: Option<usize>) -> String {
    let Some(w) = width else {
        return format!("{text}\n");
    };
    let mut out = String::new();
    let mut line = String::new();
    for part in text.split_inclusive(", ") {
        if !line.is_empty() && chars(&line) + chars(part.trim_end()) > w {
            out.push_str(line.trim_end());
            out.push('\n');
            line.clear();
        }
        line.push_str(part);
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

/// The column widths: natural (widest of head and cells) if they fit in `avail`, else the
/// widest shrink first down to a common cap, none below its minimum.
pub fn widths<'a>(
    columns: &[Column],
    rows: impl Iterator<Item = &'a [String]>,
    avail: Option<usize>,
) -> Vec<usize> {
    let mut natural: Vec<usize> = columns.iter().map(|c| chars(c.head)).collect();
    for r in rows {
        for (n, cell) in natural.iter_mut().zip(r) {
            *n = (*n).max(chars(cell));
        }
    }
    let Some(avail) = avail else {
        return natural;
    };
    let floor: Vec<usize> = columns
        .iter()
        .zip(&natural)
        .map(|(c, n)| c.min.min(*n))
        .collect();
    let fits = |cap: usize| -> usize {
        natural
            .iter()
            .zip(&floor)
            .map(|(n, f)| (*n).min(cap.max(*f)))
            .sum()
    };
    if fits(usize::MAX) <= avail {
        return natural;
    }
    // the largest cap that fits (the floors may not fit at all: then the floors)
    let (mut lo, mut hi) = (0usize, natural.iter().copied().max().unwrap_or(0));
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(mid) <= avail {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    natural
        .iter()
        .zip(&floor)
        .map(|(n, f)| (*n).min(lo.max(*f)))
        .collect()
}

/// A table: `#` right-aligned, the flag columns, then the columns, one space apart, fitted to
/// `width`. `rows` are (flags, cells).
pub fn render(
    columns: &[Column],
    rows: &[(String, Vec<String>)],
    flag_width: usize,
    width: Option<usize>,
) -> String {
    let idx_w = rows.len().saturating_sub(1).to_string().len().max(1);
    let prefix = idx_w + 1 + flag_width + 1;
    let gaps = columns.len().saturating_sub(1);
    let w = widths(
        columns,
        rows.iter().map(|(_, c)| c.as_slice()),
        width.map(|w| w.saturating_sub(prefix + gaps)),
    );
    let mut out =
        String::with_capacity((rows.len() + 1) * (prefix + w.iter().sum::<usize>() + gaps + 1));
    let mut line = |idx: &str, flags: &str, cols: &[String]| {
        let start = out.len();
        out.push_str(&format!("{idx:>idx_w$} {flags:<flag_width$} "));
        let last = cols.len().saturating_sub(1);
        for (i, c) in cols.iter().enumerate() {
            out.push_str(&cell(c, w[i], i != last));
            if i != last {
                out.push(' ');
            }
        }
        let kept = out[start..].trim_end().len();
        out.truncate(start + kept);
        out.push('\n');
    };
    let heads: Vec<String> = columns.iter().map(|c| c.head.to_owned()).collect();
    line("#", "", &heads);
    for (i, (flags, c)) in rows.iter().enumerate() {
        line(&i.to_string(), flags, c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<Column> {
        vec![
            Column::new("NAME", 8),
            Column::new("COMMON-NAME", 5),
            Column::new("FINGERPRINT", 5),
        ]
    }

    fn rows() -> Vec<(String, Vec<String>)> {
        vec![(
            "K A".into(),
            vec!["tpl_1_CA".into(), "tst-client".into(), "ab".repeat(32)],
        )]
    }

    #[test]
    fn fits_the_width_and_cuts_with_dots() {
        let t = render(&cols(), &rows(), 3, Some(40));
        for l in t.lines() {
            assert!(l.chars().count() <= 40, "{l:?}");
        }
        assert!(t.contains(".."), "{t}");
        // nothing is cut when there is no width
        let full = render(&cols(), &rows(), 3, None);
        assert!(full.contains(&"ab".repeat(32)) && !full.contains(".."));
        // heads are cut like RouterOS's COM..
        let narrow = render(&cols(), &rows(), 3, Some(28));
        let heads = narrow.lines().next().unwrap();
        assert!(heads.contains("COM") && heads.contains(".."), "{narrow}");
        assert!(narrow.lines().nth(1).unwrap().starts_with("0 K A tpl_1_CA"));
    }

    #[test]
    fn legend_wraps_after_commas() {
        let l = legend(
            "Flags: K - private-key, D - dsa, L - crl, A - authority",
            Some(30),
        );
        assert!(l.lines().all(|x| x.chars().count() <= 30), "{l}");
        assert_eq!(l.lines().count(), 3);
        assert_eq!(legend("a, b", None), "a, b\n");
    }

    #[test]
    fn cells() {
        assert_eq!(cell("abcdef", 5, false), "abc..");
        assert_eq!(cell("ab", 5, true), "ab   ");
        assert_eq!(cell("abcdef", 2, false), "ab");
    }
}

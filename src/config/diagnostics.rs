//! Where a config error is: a toml error's span becomes a line and a key path
//! (`service[0].scaling.target_concurrency`), a key path becomes a line, and an unknown key gets a
//! "did you mean".

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::ConfigError;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

pub(super) fn render_path(segs: &[Seg]) -> String {
    let mut out = String::new();
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                let bare = !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if bare {
                    out.push_str(k);
                } else {
                    out.push_str(&format!("{k:?}"));
                }
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Inverse of [`render_path`]: `service[0].env."A.B"` -> [service, 0, env, A.B].
pub(super) fn parse_path(path: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    let mut chars = path.chars().peekable();
    let mut cur = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                // Quoted key, with `\"` and `\\` escapes.
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                cur.push(n);
                            }
                        }
                        '"' => break,
                        c => cur.push(c),
                    }
                }
                segs.push(Seg::Key(std::mem::take(&mut cur)));
            }
            '.' => {
                if !cur.is_empty() {
                    segs.push(Seg::Key(std::mem::take(&mut cur)));
                }
            }
            '[' => {
                if !cur.is_empty() {
                    segs.push(Seg::Key(std::mem::take(&mut cur)));
                }
                let mut num = String::new();
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    num.push(c);
                }
                if let Ok(i) = num.parse() {
                    segs.push(Seg::Index(i));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        segs.push(Seg::Key(cur));
    }
    segs
}

/// 1-based line of byte offset `pos` in `text`.
fn line_at(text: &str, pos: usize) -> usize {
    let pos = pos.min(text.len());
    text.as_bytes()[..pos]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn contains(span: &Range<usize>, pos: usize) -> bool {
    span.start <= pos && pos < span.end.max(span.start + 1)
}

/// The deepest key path whose key or value span contains `pos`.
fn path_at(root: &DeTable<'_>, pos: usize) -> Vec<Seg> {
    fn table(t: &DeTable<'_>, pos: usize, cur: &mut Vec<Seg>, best: &mut Vec<Seg>) {
        for (k, v) in t.iter() {
            cur.push(Seg::Key(k.get_ref().to_string()));
            if (contains(&k.span(), pos) || contains(&v.span(), pos)) && cur.len() > best.len() {
                *best = cur.clone();
            }
            value(v, pos, cur, best);
            cur.pop();
        }
    }
    fn value(v: &Spanned<DeValue<'_>>, pos: usize, cur: &mut Vec<Seg>, best: &mut Vec<Seg>) {
        match v.get_ref() {
            DeValue::Table(t) => table(t, pos, cur, best),
            DeValue::Array(a) => {
                for (i, item) in a.iter().enumerate() {
                    cur.push(Seg::Index(i));
                    if contains(&item.span(), pos) && cur.len() > best.len() {
                        *best = cur.clone();
                    }
                    value(item, pos, cur, best);
                    cur.pop();
                }
            }
            _ => {}
        }
    }
    let mut best = Vec::new();
    table(root, pos, &mut Vec::new(), &mut best);
    best
}

/// The span that best locates `segs`: the key (or array element) of the deepest segment present.
fn span_of_path(root: &DeTable<'_>, segs: &[Seg]) -> Option<Range<usize>> {
    let mut found = None;
    let mut table = Some(root);
    let mut value: Option<&Spanned<DeValue<'_>>> = None;
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                let Some((key, v)) = table.and_then(|t| {
                    t.iter()
                        .find(|(key, _)| key.get_ref().as_ref() == k.as_str())
                }) else {
                    break;
                };
                found = Some(key.span());
                value = Some(v);
            }
            Seg::Index(i) => {
                let Some(item) = value
                    .and_then(|v| v.get_ref().as_array())
                    .and_then(|a| a.get(*i))
                else {
                    break;
                };
                found = Some(item.span());
                value = Some(item);
            }
        }
        table = value.and_then(|v| v.get_ref().as_table());
    }
    found
}

/// The line where `key_path` (or its deepest present ancestor) is written in `text`.
pub(crate) fn line_of_key(text: &str, key_path: &str) -> Option<usize> {
    let root = DeTable::parse(text).ok()?;
    span_of_path(root.get_ref(), &parse_path(key_path)).map(|s| line_at(text, s.start))
}

/// Turn a toml error into a [`ConfigError`] with line and key path.
pub(super) fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let span = e.span();
    let line = span.as_ref().map(|s| line_at(text, s.start));
    let mut segs = match (&span, DeTable::parse(text)) {
        (Some(s), Ok(root)) => path_at(root.get_ref(), s.start),
        _ => Vec::new(),
    };
    let original = e.message().trim();
    let mut message = original.to_string();
    if let Some(rest) = original.strip_prefix("unknown field ") {
        message = format!(
            "unknown key {}",
            rest.replacen(", expected", "; expected", 1)
        );
        if let Some(s) = did_you_mean(rest) {
            message.push_str(&format!(" (did you mean `{s}`?)"));
        }
    } else if let Some(rest) = original.strip_prefix("missing field ") {
        // The span is the enclosing table: name the missing key in the path.
        if let Some(name) = rest.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
            segs.push(Seg::Key(name.to_string()));
        }
        message = format!("missing required key {rest}");
    } else if let Some(rest) = original.strip_prefix("unknown variant ") {
        message = format!("unknown value {rest}");
    }
    for (serde_words, ours) in [
        ("expected u32", "expected a non-negative integer"),
        ("expected usize", "expected a non-negative integer"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected a table"),
    ] {
        message = message.replace(serde_words, ours);
    }
    ConfigError {
        file: None,
        line,
        key: (!segs.is_empty()).then(|| render_path(&segs)),
        message,
    }
}

/// For serde's "`typo`, expected one of `a`, `b`": the closest expected key, if close enough.
fn did_you_mean(rest: &str) -> Option<String> {
    let mut names = rest.split('`').skip(1).step_by(2);
    let typo = names.next()?;
    names
        .map(|n| (edit_distance(typo, n), n))
        .filter(|(d, n)| *d <= 2.max(n.len() / 4))
        .min()
        .map(|(_, n)| n.to_string())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

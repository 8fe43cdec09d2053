//! The only module that names the YAML library (`serde_norway`, a maintained
//! serde_yaml fork); swapping the fork is a change here alone.
//!
//! A stream is split into documents at `---` lines so each document's start
//! line is known exactly; each document is read twice: once loosely for
//! `apiVersion`/`kind`, then into its concrete type, so serde errors keep their
//! line, column and field path (CRATES.md §8).

use serde::de::DeserializeOwned;

mod depth;

pub use depth::too_deep;

/// One document of a stream: its text and the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document<'a> {
    pub text: &'a str,
    /// Line of the document's first line of text (blank or not).
    pub first_line: usize,
}

impl Document<'_> {
    /// Line of the first line that is not blank or a comment: where the object starts.
    pub fn content_line(&self) -> usize {
        let skip = self
            .text
            .lines()
            .take_while(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
            .count();
        self.first_line + skip
    }
}

/// Split at lines that are exactly `---` (optionally followed by a space or a
/// comment) or `...`. Empty documents (only blanks and comments) are dropped.
pub fn split_documents(text: &str) -> Vec<Document<'_>> {
    let mut docs: Vec<Document<'_>> = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut offset = 0usize;
    fn push<'t>(
        text: &'t str,
        from: usize,
        to: usize,
        first_line: usize,
        docs: &mut Vec<Document<'t>>,
    ) {
        let t = &text[from..to];
        let has_content = t.lines().any(|l| {
            !l.trim().is_empty() && !l.trim_start().starts_with('#') && l.trim() != "%YAML 1.2"
        });
        if has_content {
            docs.push(Document {
                text: t,
                first_line,
            });
        }
    }
    for (line_no, line) in (1usize..).zip(text.split_inclusive('\n')) {
        let l = line.trim_end_matches(['\n', '\r']);
        let is_sep = l == "---" || l.starts_with("--- ") || l.starts_with("---\t") || l == "...";
        if is_sep {
            push(text, start, offset, start_line, &mut docs);
            // content after `--- ` on the same line belongs to the next document
            start = offset
                + if l.len() > 3 && l != "..." {
                    4.min(l.len())
                } else {
                    line.len()
                };
            if l.len() > 3 && l != "..." && l[3..].trim_start().starts_with('#') {
                start = offset + line.len();
                start_line = line_no + 1;
            } else if l.len() > 3 && l != "..." {
                start_line = line_no;
            } else {
                start_line = line_no + 1;
            }
        }
        offset += line.len();
    }
    push(text, start, text.len(), start_line, &mut docs);
    docs
}

/// A YAML error with its position translated to the whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// 1-based, in the file.
    pub line: usize,
    pub column: usize,
    /// Field path when serde knew it (e.g. `spec.containers[0].ports[0].containerPort`).
    pub path: Option<String>,
    pub message: String,
}

fn translate(e: &serde_norway::Error, doc: &Document<'_>) -> YamlError {
    let (line, column) = e
        .location()
        .map(|l| (l.line() + doc.first_line - 1, l.column()))
        .unwrap_or((doc.first_line, 1));
    let mut msg = e.to_string();
    // serde_norway writes " at line L column C" (relative to the document) for
    // the error's own position, which berth prints in front, and libyaml adds
    // the position of the enclosing construct ("while parsing a block mapping
    // at line ..."), which is worth keeping in file lines
    msg = shift_positions(&msg, doc.first_line - 1, (line, column));
    let tab = doc
        .text
        .lines()
        .nth(line.saturating_sub(doc.first_line))
        .and_then(|l| l.chars().nth(column.saturating_sub(1)))
        == Some('\t');
    if tab {
        msg.push_str(" (a tab: YAML is indented with spaces)");
    }
    // and prefixes "path: " when it has a field path
    let (path, message) = match msg.split_once(": ") {
        Some((p, m)) if !p.contains(' ') && !p.is_empty() && p != "." => {
            (Some(p.to_string()), m.to_string())
        }
        _ => (None, msg),
    };
    YamlError {
        line,
        column,
        path,
        message,
    }
}

/// Rewrite " at line L column C" in a libyaml message to file lines; drop
/// the one equal to `at` (the diagnostic's own location).
fn shift_positions(msg: &str, offset: usize, at: (usize, usize)) -> String {
    const MARK: &str = " at line ";
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find(MARK) {
        out.push_str(&rest[..i]);
        let tail = &rest[i + MARK.len()..];
        let line_end = tail
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(tail.len());
        let parsed = tail[..line_end].parse::<usize>().ok().and_then(|l| {
            let after = tail[line_end..].strip_prefix(" column ")?;
            let col_end = after
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after.len());
            let c = after[..col_end].parse::<usize>().ok()?;
            Some((l + offset, c, &after[col_end..]))
        });
        match parsed {
            Some((l, c, after)) => {
                if (l, c) != at {
                    out.push_str(&format!("{MARK}{l} column {c}"));
                }
                rest = after;
            }
            None => {
                out.push_str(MARK);
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A document read loosely: for `kind`/`apiVersion`, and for the items of a `List`.
#[derive(Debug, Clone, PartialEq)]
pub struct Loose {
    pub value: serde_json::Value,
    /// The document used YAML merge keys (`<<: *anchor`). The typed pass then
    /// has to go through the merged value ([`typed_reencoded`]), because the
    /// YAML deserializer does not apply merge keys itself.
    pub merged: bool,
}

/// Loosely typed value of a document, with merge keys applied.
pub fn value(doc: &Document<'_>) -> Result<Loose, YamlError> {
    let mut v: serde_norway::Value =
        serde_norway::from_str(doc.text).map_err(|e| translate(&e, doc))?;
    let mut merged = false;
    if doc.text.contains("<<") {
        let before = v.clone();
        v.apply_merge().map_err(|e| YamlError {
            line: doc.content_line(),
            column: 1,
            path: None,
            message: e.to_string(),
        })?;
        merged = v != before;
    }
    let value = serde_json::to_value(&v).map_err(|e| YamlError {
        line: doc.content_line(),
        column: 1,
        path: None,
        message: format!("not representable as JSON: {e}"),
    })?;
    Ok(Loose { value, merged })
}

/// Deserialize a document into `T`, collecting the paths of fields `T` does not know.
pub fn typed<T: DeserializeOwned>(doc: &Document<'_>) -> Result<(T, Vec<String>), YamlError> {
    let mut unknown = Vec::new();
    let de = serde_norway::Deserializer::from_str(doc.text);
    let t: T = serde_ignored::deserialize(de, |p| unknown.push(clean_path(&p.to_string())))
        .map_err(|e| translate(&e, doc))?;
    Ok((t, unknown))
}

/// Deserialize part of a document (a `List` item, or a whole document after
/// merge keys were applied) from its loose value. The value is written back
/// as YAML and read typed, so serde still reports the field path; the line is
/// then found by [`locate`]ing `prefix` + path in the original document.
/// `prefix` is the path of `v` in the document (`items[2]`, or empty).
pub fn typed_reencoded<T: DeserializeOwned>(
    v: &serde_json::Value,
    doc: &Document<'_>,
    prefix: &str,
) -> Result<(T, Vec<String>), YamlError> {
    let text = serde_norway::to_string(v).map_err(|e| YamlError {
        line: doc.content_line(),
        column: 1,
        path: None,
        message: e.to_string(),
    })?;
    let mut unknown = Vec::new();
    let de = serde_norway::Deserializer::from_str(&text);
    let r: Result<T, _> =
        serde_ignored::deserialize(de, |p| unknown.push(clean_path(&p.to_string())));
    match r {
        Ok(t) => Ok((t, unknown)),
        Err(e) => {
            let inner = translate(
                &e,
                &Document {
                    text: &text,
                    first_line: 1,
                },
            );
            let full = join_path(prefix, inner.path.as_deref().unwrap_or(""));
            let (line, column) = locate(doc, &full);
            Err(YamlError {
                line,
                column,
                path: inner.path,
                message: inner.message,
            })
        }
    }
}

/// `items[0]` + `spec.x` -> `items[0].spec.x`
pub fn join_path(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) if path.starts_with('[') => format!("{prefix}{path}"),
        (false, false) => format!("{prefix}.{path}"),
    }
}

/// `spec.?.containers.?.0.imag` -> `spec.containers[0].imag`
pub fn clean_path(p: &str) -> String {
    let mut out = String::new();
    for seg in p.split('.').filter(|s| *s != "?" && !s.is_empty()) {
        if seg.chars().all(|c| c.is_ascii_digit()) {
            out.push('[');
            out.push_str(seg);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

/// Best-effort line of a field path (`spec.containers[0].ports[1].containerPort`)
/// in a block-style document; falls back to the closest ancestor found, then
/// to the document start. Returns (line, column), 1-based in the file.
pub fn locate(doc: &Document<'_>, path: &str) -> (usize, usize) {
    let lines: Vec<&str> = doc.text.lines().collect();
    let mut pos = 0usize; // line index to search from
    let mut min_indent: isize = -1; // children must be indented more than this
    let mut best = (doc.first_line, 1usize);
    for seg in segments(path) {
        match seg {
            Seg::Key(k) => {
                let mut found = None;
                for (i, l) in lines.iter().enumerate().skip(pos) {
                    let (ind, rest) = indent_of(l);
                    if rest.is_empty() || rest.starts_with('#') {
                        continue;
                    }
                    if (ind as isize) <= min_indent && i > pos {
                        break;
                    }
                    let key_part = rest.strip_prefix("- ").unwrap_or(rest);
                    let key_ind = ind + (rest.len() - key_part.len());
                    if (key_part.starts_with(&format!("{k}:"))
                        || key_part.starts_with(&format!("\"{k}\":"))
                        || key_part.starts_with(&format!("'{k}':")))
                        && key_ind as isize > min_indent
                    {
                        found = Some((i, key_ind));
                        break;
                    }
                }
                let Some((i, ind)) = found else { return best };
                best = (doc.first_line + i, ind + 1);
                pos = i;
                min_indent = ind as isize;
            }
            Seg::Index(n) => {
                // the n-th "- " item below the current key
                let mut count = 0usize;
                let mut item_indent: Option<usize> = None;
                let mut found = None;
                for (i, l) in lines.iter().enumerate().skip(pos + 1) {
                    let (ind, rest) = indent_of(l);
                    if rest.is_empty() || rest.starts_with('#') {
                        continue;
                    }
                    if (ind as isize) < min_indent
                        || ((ind as isize) == min_indent
                            && !rest.starts_with("- ")
                            && !rest.starts_with('-'))
                    {
                        break;
                    }
                    if rest.starts_with("- ") || rest == "-" {
                        match item_indent {
                            None => item_indent = Some(ind),
                            Some(x) if x != ind => continue,
                            _ => {}
                        }
                        if count == n {
                            found = Some((i, ind));
                            break;
                        }
                        count += 1;
                    }
                }
                let Some((i, ind)) = found else { return best };
                best = (doc.first_line + i, ind + 3);
                pos = i;
                // keys of the item start after "- "
                min_indent = ind as isize;
            }
        }
    }
    best
}

/// Remove the field at `path` (`spec.containers[0].ports[1].containerPort`)
/// from `v`. Only a mapping key can be removed (removing a sequence item
/// would renumber its siblings); returns whether something was removed.
pub fn remove_path(v: &mut serde_json::Value, path: &str) -> bool {
    let segs = segments(path);
    let Some((last, parents)) = segs.split_last() else {
        return false;
    };
    let mut cur = v;
    for s in parents {
        let next = match s {
            Seg::Key(k) => cur.get_mut(*k),
            Seg::Index(i) => cur.get_mut(*i),
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    match (last, cur.as_object_mut()) {
        (Seg::Key(k), Some(m)) => m.remove(*k).is_some(),
        _ => false,
    }
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Split `a.b[2]["x.y"].c` into keys and indexes. A quoted key (`["..."]`,
/// written by `validate::key_path` for map keys with dots or slashes) is
/// one segment.
fn segments(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("[\"") {
            let Some(end) = r.find("\"]") else { break };
            out.push(Seg::Key(&r[..end]));
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else { break };
            if let Ok(n) = r[..end].parse() {
                out.push(Seg::Index(n));
            }
            rest = &r[end + 1..];
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            out.push(Seg::Key(&rest[..end]));
            rest = &rest[end..];
        }
    }
    out
}

fn indent_of(l: &str) -> (usize, &str) {
    let t = l.trim_start_matches(' ');
    (l.len() - t.len(), t.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_with_lines() {
        let t = "a: 1\n---\n# only a comment\n---\nb: 2\nc: 3\n--- # x\nd: 4\n...\n";
        let d = split_documents(t);
        assert_eq!(d.len(), 3);
        assert_eq!(d[0].first_line, 1);
        assert_eq!(d[1].first_line, 5);
        assert_eq!(d[1].text, "b: 2\nc: 3\n");
        assert_eq!(d[2].first_line, 8);
        assert!(split_documents("").is_empty());
        assert!(split_documents("---\n---\n").is_empty());
    }

    #[test]
    fn positions_in_messages_are_file_lines() {
        assert_eq!(
            shift_positions(
                "did not find expected key at line 8 column 4, while parsing a block mapping",
                10,
                (18, 4)
            ),
            "did not find expected key, while parsing a block mapping"
        );
        assert_eq!(
            shift_positions("x at line 2 column 3 y", 10, (1, 1)),
            "x at line 12 column 3 y"
        );
        assert_eq!(shift_positions("at line x", 1, (1, 1)), "at line x");
    }

    #[test]
    fn cleans_paths() {
        assert_eq!(
            clean_path("spec.?.containers.?.0.imag"),
            "spec.containers[0].imag"
        );
        assert_eq!(clean_path("metadata.?.foo"), "metadata.foo");
    }

    #[test]
    fn locates_fields() {
        let t = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers:\n  - name: a\n    image: i\n  - name: b\n    ports:\n    - containerPort: 1\n    - containerPort: 99999\n";
        let d = Document {
            text: t,
            first_line: 10,
        };
        assert_eq!(
            locate(&d, "spec.containers[1].ports[1].containerPort"),
            (21, 7)
        );
        assert_eq!(locate(&d, "spec.containers[0].image"), (17, 5));
        assert_eq!(locate(&d, "metadata.name"), (13, 3));
        // unknown field falls back to the deepest ancestor found
        assert_eq!(locate(&d, "spec.containers[1].nope"), (18, 5));
        assert_eq!(locate(&d, "nothing"), (10, 1));
        let t = "metadata:\n  labels:\n    a.b/c: x\n    'd e': y\n";
        let d = Document {
            text: t,
            first_line: 1,
        };
        assert_eq!(locate(&d, "metadata.labels[\"a.b/c\"]"), (3, 5));
        assert_eq!(locate(&d, "metadata.labels[\"d e\"]"), (4, 5));
    }
}

//! How deeply a YAML document nests, found in one linear pass over its text,
//! before the YAML parser sees it.
//!
//! libyaml's scanner does work proportional to the flow nesting depth for
//! every token, so a few hundred KB of `[[[[...` cost minutes, and the
//! deserializer recurses once per level. This pre-scan follows the tokenizer
//! closely enough to know which `[`, `{`, `- ` and indentation steps open a
//! collection: flow indicators inside quoted, plain and block scalars and
//! comments are text, as they are for libyaml.
//!
//! # Guarantees
//! - Linear in the length of the text; no allocation beyond one stack of
//!   indentation columns.
//! - Where libyaml would still be reading without an error, the depth found
//!   here is at least libyaml's flow depth: the scan never takes for a string
//!   or comment what libyaml reads as structure. It may count more than the
//!   real depth (a continuation line of a plain scalar that looks like a
//!   collection), never less.

/// Where the nesting first goes deeper than `max`: 1-based line and column
/// (in characters) within `text`. `None` when it stays within `max`.
pub fn too_deep(text: &str, max: usize) -> Option<(usize, usize)> {
    let mut s = Scan {
        max,
        indents: Vec::new(),
        flow: 0,
        quote: None,
        token_start: true,
        block_scalar: None,
        plain_cont: None,
        pending_coll: -1,
        found: None,
        line: 0,
        text: "",
    };
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        s.line = i + 1;
        s.text = line;
        s.scan_line(line.as_bytes());
        if let Some(at) = s.found {
            return Some(at);
        }
    }
    None
}

/// A block scalar (`|`, `>`) whose content lines are skipped.
struct BlockScalar {
    /// Column of the enclosing block collection (-1 at the document root).
    parent: isize,
    /// Content indentation, once known (explicit indicator or first line).
    indent: Option<usize>,
}

struct Scan<'t> {
    max: usize,
    /// Columns of the open block collections.
    indents: Vec<usize>,
    /// Open flow collections.
    flow: usize,
    /// Inside a quoted scalar (`"` or `'`), possibly over several lines.
    quote: Option<u8>,
    /// In flow context: the next character starts a token (not inside a plain scalar).
    token_start: bool,
    block_scalar: Option<BlockScalar>,
    /// A plain scalar in block context may continue on lines indented more than this.
    plain_cont: Option<isize>,
    /// Collection column to resume with after a quoted scalar or flow
    /// collection that ends on a later line.
    pending_coll: isize,
    found: Option<(usize, usize)>,
    line: usize,
    text: &'t str,
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn blank_or_end(bytes: &[u8], pos: usize) -> bool {
    bytes.get(pos).is_none_or(|b| is_blank(*b))
}

fn is_flow_indicator(b: u8) -> bool {
    matches!(b, b',' | b'[' | b']' | b'{' | b'}')
}

fn skip_blanks(bytes: &[u8], mut pos: usize) -> usize {
    while pos < bytes.len() && is_blank(bytes[pos]) {
        pos += 1;
    }
    pos
}

impl Scan<'_> {
    /// Record the place if the current depth exceeds the limit.
    fn check(&mut self, pos: usize) {
        if self.found.is_none() && self.indents.len() + self.flow > self.max {
            let col = self.text.get(..pos).map_or(pos, |p| p.chars().count()) + 1;
            self.found = Some((self.line, col));
        }
    }

    fn scan_line(&mut self, bytes: &[u8]) {
        let indent = bytes.iter().take_while(|b| **b == b' ').count();
        let blank = bytes[indent..].iter().all(|b| is_blank(*b));
        if let Some(bs) = &mut self.block_scalar {
            if blank {
                return;
            }
            match bs.indent {
                Some(ci) if indent >= ci => return,
                None if indent as isize > bs.parent => {
                    bs.indent = Some(indent);
                    return;
                }
                _ => self.block_scalar = None,
            }
        }
        if self.quote.is_some() {
            let Some(pos) = self.quoted(bytes, 0) else {
                return;
            };
            self.resume(bytes, pos);
            return;
        }
        if self.flow > 0 {
            let pos = self.flow_scan(bytes, 0);
            if self.flow == 0 && self.found.is_none() {
                self.block_rest(bytes, pos, self.pending_coll);
            }
            return;
        }
        if blank {
            return;
        }
        let first = bytes[indent];
        if let Some(parent) = self.plain_cont {
            if first != b'#' && indent as isize > parent {
                // more text of a multi-line plain scalar: flow indicators and
                // quotes in it are text; it ends at a comment
                self.plain_rest(bytes, indent, parent);
                return;
            }
            self.plain_cont = None;
        }
        if first == b'#' || (indent == 0 && first == b'%') {
            return;
        }
        while self.indents.last().is_some_and(|&top| top > indent) {
            self.indents.pop();
        }
        if self.indents.last() != Some(&indent) {
            self.indents.push(indent);
            self.check(indent);
        }
        let mut pos = indent;
        let mut coll = indent as isize;
        // `- `, `? ` (and `- - ` ...) open nested block collections on the same line
        while pos < bytes.len() && matches!(bytes[pos], b'-' | b'?') && blank_or_end(bytes, pos + 1)
        {
            coll = pos as isize;
            pos = skip_blanks(bytes, pos + 1);
            if pos >= bytes.len() {
                return;
            }
            if self.indents.last() != Some(&pos) {
                self.indents.push(pos);
                self.check(pos);
            }
        }
        self.block_rest(bytes, pos, coll);
    }

    /// Continue after a quoted scalar ended at `pos`.
    fn resume(&mut self, bytes: &[u8], pos: usize) {
        if self.flow > 0 {
            self.token_start = true;
            let pos = self.flow_scan(bytes, pos);
            if self.flow == 0 && self.found.is_none() {
                self.block_rest(bytes, pos, self.pending_coll);
            }
        } else {
            self.block_rest(bytes, pos, self.pending_coll);
        }
    }

    /// Block context from `pos`, at the start of a token. `coll` is the
    /// column of the innermost block collection (-1 at the root).
    fn block_rest(&mut self, bytes: &[u8], mut pos: usize, mut coll: isize) {
        loop {
            pos = skip_blanks(bytes, pos);
            if pos >= bytes.len() || self.found.is_some() {
                return;
            }
            let start = pos;
            match bytes[pos] {
                b'#' => return,
                b'&' | b'!' | b'*' => {
                    while pos < bytes.len() && !is_blank(bytes[pos]) {
                        pos += 1;
                    }
                }
                b'[' | b'{' => {
                    self.flow += 1;
                    self.check(pos);
                    self.token_start = true;
                    self.pending_coll = coll;
                    pos = self.flow_scan(bytes, pos + 1);
                    if self.flow > 0 {
                        return;
                    }
                    pos = self.after_node(bytes, pos, start, &mut coll);
                }
                q @ (b'"' | b'\'') => {
                    self.quote = Some(q);
                    self.pending_coll = coll;
                    match self.quoted(bytes, pos + 1) {
                        Some(p) => pos = self.after_node(bytes, p, start, &mut coll),
                        None => return,
                    }
                }
                b'|' | b'>' => {
                    let explicit = bytes[pos + 1..]
                        .iter()
                        .take(2)
                        .find(|b| b.is_ascii_digit())
                        .map(|b| usize::from(b - b'0'));
                    self.block_scalar = Some(BlockScalar {
                        parent: coll,
                        indent: explicit.map(|n| coll.max(0) as usize + n),
                    });
                    return;
                }
                b':' if blank_or_end(bytes, pos + 1) => pos += 1,
                _ => {
                    // a plain scalar: a key if `: ` follows on this line
                    loop {
                        if pos >= bytes.len() {
                            self.plain_cont = Some(coll);
                            return;
                        }
                        let b = bytes[pos];
                        if b == b':' && blank_or_end(bytes, pos + 1) {
                            coll = start as isize;
                            pos += 1;
                            break;
                        }
                        if b == b'#' && pos > 0 && is_blank(bytes[pos - 1]) {
                            return;
                        }
                        pos += 1;
                    }
                }
            }
        }
    }

    /// After a quoted scalar or flow collection in block context: a `:` makes it a key.
    fn after_node(&mut self, bytes: &[u8], pos: usize, start: usize, coll: &mut isize) -> usize {
        let p = skip_blanks(bytes, pos);
        if p < bytes.len() && bytes[p] == b':' {
            *coll = start as isize;
            return p + 1;
        }
        pos
    }

    /// A continuation line of a block plain scalar from `pos`.
    fn plain_rest(&mut self, bytes: &[u8], mut pos: usize, parent: isize) {
        while pos < bytes.len() {
            let b = bytes[pos];
            if b == b'#' && is_blank(bytes[pos - 1]) {
                self.plain_cont = None;
                return;
            }
            if b == b':' && blank_or_end(bytes, pos + 1) {
                // libyaml refuses a multi-line key; the rest is a value at best
                self.plain_cont = None;
                self.block_rest(bytes, pos + 1, parent);
                return;
            }
            pos += 1;
        }
    }

    /// Flow context from `pos`; returns where the outermost flow collection
    /// closed, or the end of the line while it is still open (or a quoted
    /// scalar continues on the next line).
    fn flow_scan(&mut self, bytes: &[u8], mut pos: usize) -> usize {
        let mut prev_blank = pos == 0;
        while pos < bytes.len() {
            let b = bytes[pos];
            if is_blank(b) {
                prev_blank = true;
                pos += 1;
                continue;
            }
            if b == b'#' && (prev_blank || self.token_start) {
                self.token_start = true;
                return bytes.len();
            }
            prev_blank = false;
            if !self.token_start {
                // inside a plain scalar: it ends at a flow indicator or `: `
                let ends_plain = is_flow_indicator(b)
                    || (b == b':'
                        && bytes.get(pos + 1).is_none_or(|n| {
                            is_blank(*n) || matches!(n, b',' | b'?' | b'[' | b']' | b'{' | b'}')
                        }));
                if !ends_plain {
                    pos += 1;
                    continue;
                }
                self.token_start = true;
            }
            match b {
                b'[' | b'{' => {
                    self.flow += 1;
                    self.check(pos);
                    if self.found.is_some() {
                        return bytes.len();
                    }
                }
                b']' | b'}' => {
                    self.flow = self.flow.saturating_sub(1);
                    if self.flow == 0 {
                        return pos + 1;
                    }
                }
                b',' | b':' => {}
                b'?' if blank_or_end(bytes, pos + 1) => {}
                q @ (b'"' | b'\'') => {
                    self.quote = Some(q);
                    match self.quoted(bytes, pos + 1) {
                        Some(p) => {
                            pos = p;
                            continue;
                        }
                        None => return bytes.len(),
                    }
                }
                b'&' | b'!' | b'*' => {
                    while pos < bytes.len()
                        && !is_blank(bytes[pos])
                        && !is_flow_indicator(bytes[pos])
                    {
                        pos += 1;
                    }
                    continue;
                }
                _ => self.token_start = false,
            }
            pos += 1;
        }
        bytes.len()
    }

    /// Inside a quoted scalar from `pos`: the position after its closing
    /// quote, or `None` when it continues on the next line.
    fn quoted(&mut self, bytes: &[u8], mut pos: usize) -> Option<usize> {
        let q = self.quote?;
        while pos < bytes.len() {
            let b = bytes[pos];
            if q == b'"' && b == b'\\' {
                pos += 2;
                continue;
            }
            if b == q {
                if q == b'\'' && bytes.get(pos + 1) == Some(&b'\'') {
                    pos += 2;
                    continue;
                }
                self.quote = None;
                self.token_start = true;
                return Some(pos + 1);
            }
            pos += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::too_deep;

    fn depth_ok(text: &str, max: usize) -> bool {
        too_deep(text, max).is_none()
    }

    #[test]
    fn flow_nesting_is_counted() {
        let deep = format!("a: {}1{}\n", "[".repeat(200), "]".repeat(200));
        assert_eq!(too_deep(&deep, 100), Some((1, 103)));
        assert!(depth_ok(
            &format!("{}{}", "[".repeat(50), "]".repeat(50)),
            100
        ));
        assert!(!depth_ok(&"{a: ".repeat(101), 100));
    }

    #[test]
    fn block_nesting_is_counted() {
        let mut t = String::new();
        for i in 0..120 {
            t.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
        }
        assert_eq!(too_deep(&t, 100).map(|p| p.0), Some(101));
        assert!(!depth_ok(&("- ".repeat(150) + "x\n"), 100));
        assert!(depth_ok(&("- ".repeat(20) + "x\n"), 100));
    }

    #[test]
    fn brackets_in_scalars_and_comments_are_text() {
        let b = "[".repeat(300);
        for t in [
            format!("a: \"{b}\"\n"),
            format!("a: '{b}'\n"),
            format!("a: x{b}\n"),
            format!("a: x # {b}\n"),
            format!("# {b}\n"),
            format!("a: |\n  {b}\n  more\nb: 1\n"),
            format!("a: >-\n\n    {b}\nb: 1\n"),
            format!("a: \"multi\n  line {b}\n  \"\n"),
            format!("a: [\"{b}\", '{b}']\n"),
            format!("a: plain\n  continued {b}\nb: 1\n"),
            format!("a: 'it''s {b}'\n"),
            format!("a: \"esc \\\" {b}\"\n"),
        ] {
            assert!(depth_ok(&t, 10), "{t:.80}");
        }
    }

    #[test]
    fn structure_hidden_behind_misread_quotes_is_still_counted() {
        let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
        for t in [
            // a quote inside a plain scalar (block and flow) starts no string
            format!("a: b 'x\nc: {deep}\nd: '\n"),
            format!("a: plain\n  'x\nc: {deep}\nd: '\n"),
            format!("a: {{k:'x, {deep}}}\n"),
            format!("a: [k 'x, {deep}]\n"),
            // after a block scalar ends, structure counts again
            format!("a: |\n  text\nb: {deep}\n"),
            // a closing quote is not an escape across lines
            format!("a: 'x'\nb: {deep}\n"),
        ] {
            assert!(too_deep(&t, 100).is_some(), "{t:.80}");
        }
    }

    #[test]
    fn real_manifests_are_shallow() {
        let t = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        image: busybox\n        command: [\"sh\", \"-c\", \"echo [x] {y}\"]\n        env:\n        - name: A\n          value: \"{\\\"a\\\": [1]}\"\n        livenessProbe:\n          httpGet: {path: /, port: 8080, httpHeaders: [{name: a, value: b}]}\n";
        assert!(depth_ok(t, 10));
        assert!(!depth_ok(t, 5));
    }
}

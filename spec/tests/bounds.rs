//! Hostile manifests are refused quickly with file:line (issue 14): deep
//! nesting (the YAML parser's cost grows with the square of the depth), huge
//! objects and files, and floods of findings.

use std::time::{Duration, Instant};

use berth_spec::{Severity, parse_str};

/// Loose bound: the refusals below take milliseconds; before issue 14 the
/// nested file took over two minutes. Only catches a return of that.
const SLOW: Duration = Duration::from_secs(20);

fn errors(file: &str, text: &str) -> Vec<String> {
    let t0 = Instant::now();
    let p = parse_str(file, text);
    assert!(t0.elapsed() < SLOW, "{file} took {:?}", t0.elapsed());
    p.diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.to_string())
        .collect()
}

#[test]
fn a_400_kb_nested_file_is_refused_at_its_line() {
    // regression: 400 KB of `[[[...` froze the directory source for 136 s per read
    let text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: deep}}\ndata:\n  x: {}{}\n",
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    let e = errors("deep.yaml", &text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("deep.yaml:5:") && e[0].contains("nested more than 100 levels deep"),
        "{}",
        e[0]
    );
    // the same in a later document keeps the file's own lines, and the first document still parses
    let two = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ok}}\n---\n{}\n",
        "{a: ".repeat(150_000)
    );
    let p = parse_str("two.yaml", &two);
    assert_eq!(p.objects.len(), 1);
    assert!(
        p.diagnostics[0].to_string().starts_with("two.yaml:5:"),
        "{}",
        p.diagnostics[0]
    );
    // block nesting counts too
    let mut block = String::from("a:\n");
    for i in 1..150 {
        block.push_str(&format!("{}- \n", " ".repeat(i)));
    }
    assert!(errors("block.yaml", &block)[0].contains("nested more than"));
}

#[test]
fn an_oversize_configmap_is_refused_at_its_line() {
    let big = "x".repeat(1_600_000);
    let text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: small}}\n---\n# big one\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata:\n  blob: {big}\n"
    );
    let p = parse_str("big.yaml", &text);
    let e: Vec<String> = p.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("big.yaml:6:1: object is ")
            && e[0].contains("more than Kubernetes' limit of 1572864 bytes"),
        "{}",
        e[0]
    );
    assert_eq!(p.objects.len(), 1, "the small ConfigMap still parses");
    // a List item is measured on its own
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {{name: big}}\n  data: {{blob: {big}}}\n"
    );
    let e = errors("list.yaml", &list);
    assert!(
        e[0].starts_with("list.yaml:4:3: items[0]: object is "),
        "{}",
        e[0]
    );
}

#[test]
fn an_oversize_file_is_refused_before_parsing() {
    let doc = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n";
    let text = doc.repeat((4 << 20) / doc.len() + 1);
    let e = errors("huge.yaml", &text);
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("huge.yaml:1:1: file is "), "{}", e[0]);
}

#[test]
fn a_flood_of_findings_is_capped() {
    // every unknown field used to cost a pass over the document (quadratic)
    let mut text = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n");
    for i in 0..100_000 {
        text.push_str(&format!("x{i}: 1\n"));
    }
    let t0 = Instant::now();
    let p = parse_str("many.yaml", &text);
    assert!(t0.elapsed() < SLOW);
    assert_eq!(p.diagnostics.len(), 201);
    assert!(
        p.diagnostics[200]
            .to_string()
            .contains("99800 more findings in this file are not shown"),
        "{}",
        p.diagnostics[200]
    );
    assert!(!p.has_errors(), "unknown fields stay warnings");
    assert_eq!(p.objects.len(), 1);
}

/// A zero-byte file is what a power cut leaves of a file being written: an
/// error (the objects it defined keep running), not "this file names nothing".
#[test]
fn empty_file_is_an_error_not_an_empty_set() {
    let p = parse_str("cut.yaml", "");
    assert!(p.objects.is_empty());
    assert!(
        p.diagnostics
            .iter()
            .any(|d| d.to_string().contains("cut.yaml:1:1") && d.to_string().contains("empty")),
        "{:?}",
        p.diagnostics
    );
    // a comment-only file still names nothing, without an error
    let p = parse_str("none.yaml", "# nothing\n");
    assert!(
        p.objects.is_empty() && p.diagnostics.is_empty(),
        "{:?}",
        p.diagnostics
    );
}

//! The examples a new user runs must be clean for berth and, except berth's
//! own Volume kind, valid for Kubernetes itself (`kubernetes-validate`).

use std::process::Command;

fn example_files() -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/manifests");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn examples_have_no_errors_or_warnings() {
    let mut all = Vec::new();
    let files = example_files();
    assert!(files.len() >= 3);
    for f in &files {
        let p = berth_spec::parse_str(
            &f.display().to_string(),
            &std::fs::read_to_string(f).unwrap(),
        );
        assert!(
            p.diagnostics.is_empty(),
            "{}: {:?}",
            f.display(),
            p.diagnostics
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
        );
        all.extend(p.objects);
    }
    let d = berth_spec::validate_set(&all);
    assert!(
        d.is_empty(),
        "{:?}",
        d.iter().map(|d| d.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(all.len(), 5);
}

#[test]
fn examples_are_valid_kubernetes() {
    if std::env::var("BERTH_SKIP_KUBEVALIDATE").is_ok_and(|v| v == "1") {
        eprintln!("skipped: BERTH_SKIP_KUBEVALIDATE=1");
        return;
    }
    ensure_kubernetes_validate();
    for f in example_files() {
        if f.file_name().is_some_and(|n| n == "volume.yaml") {
            continue; // berth.dev/v1alpha1 Volume is berth's own kind
        }
        let out = Command::new("kubernetes-validate")
            .args(["--strict", "-k", "1.30.0"])
            .arg(&f)
            .output()
            .expect("run kubernetes-validate");
        assert!(
            out.status.success(),
            "{} is not valid Kubernetes:\n{}{}",
            f.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `kubernetes-validate` ships the Kubernetes JSON schemas, so it works
/// offline once installed; install it with pip when it is missing.
fn ensure_kubernetes_validate() {
    let present = |v: &str| {
        Command::new(v)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if present("kubernetes-validate") {
        return;
    }
    let mut tried = Vec::new();
    for (pip, args) in [
        ("pip", &["install", "kubernetes-validate"][..]),
        (
            "python3",
            &["-m", "pip", "install", "kubernetes-validate"][..],
        ),
        (
            "python3",
            &[
                "-m",
                "pip",
                "install",
                "--break-system-packages",
                "kubernetes-validate",
            ][..],
        ),
    ] {
        match Command::new(pip).args(args).output() {
            Ok(o) if o.status.success() && present("kubernetes-validate") => return,
            Ok(o) => tried.push(format!(
                "{pip} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            )),
            Err(e) => tried.push(format!("{pip}: {e}")),
        }
    }
    panic!(
        "kubernetes-validate is missing and pip could not install it (set BERTH_SKIP_KUBEVALIDATE=1 to skip this test):\n{}",
        tried.join("\n")
    );
}

/// The schema `berth schema` prints accepts every example (Volume included)
/// and rejects a wrong one; checked with Python's `jsonschema` (a dependency
/// of kubernetes-validate, so present wherever that test runs).
#[test]
fn examples_match_the_json_schema() {
    if std::env::var("BERTH_SKIP_KUBEVALIDATE").is_ok_and(|v| v == "1") {
        eprintln!("skipped: BERTH_SKIP_KUBEVALIDATE=1");
        return;
    }
    ensure_kubernetes_validate();
    const SCRIPT: &str = r#"
import json, sys, yaml
from jsonschema import Draft202012Validator
v = Draft202012Validator(json.load(sys.stdin))
bad = 0
for f in sys.argv[1:]:
    for d in yaml.safe_load_all(open(f)):
        for e in v.iter_errors(d):
            print(f"{f}: {d.get('kind')}: {e.message}"); bad += 1
wrong = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
         "spec": {"containers": [{"name": "a", "image": "b", "ports": [{"containerPort": "http"}]}]}}
if not list(v.iter_errors(wrong)):
    print("schema accepted a Pod with a string containerPort"); bad += 1
sys.exit(1 if bad else 0)
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .args(example_files())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python3");
    let schema = serde_json::to_vec(&berth_spec::json_schema()).unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &schema).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "schema check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

//! `berth validate` on hostile directories ends quickly with a clear error
//! (issue 14: two `x -> .` links made it run forever). No root needed.

use std::io::Read;
use std::os::unix::fs::symlink;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_berth");

/// Run `berth validate ARGS` with a deadline; returns (exit code, stdout).
fn validate(args: &[&std::path::Path]) -> (i32, String) {
    let mut child = Command::new(BIN)
        .arg("validate")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("berth validate did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code().unwrap_or(-1), reader.join().unwrap())
}

#[test]
fn a_symlink_loop_ends_quickly_with_the_error() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    std::fs::write(
        root.join("pod.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: busybox\n",
    )
    .unwrap();
    symlink(".", root.join("x")).unwrap();
    symlink(".", root.join("y")).unwrap();
    let (code, out) = validate(&[root]);
    assert_eq!(code, 1, "{out}");
    let x = format!(
        "{}/x:1:1: cannot read: directory loop: {}/x leads back to",
        root.display(),
        root.display()
    );
    assert!(out.contains(&x), "{out}");
    assert!(
        out.contains(&format!(
            "{}/y:1:1: cannot read: directory loop",
            root.display()
        )),
        "{out}"
    );
    assert_eq!(out.lines().count(), 2, "only the two loops: {out}");
}

#[test]
fn a_nested_file_ends_quickly_with_its_line() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("deep.yaml");
    std::fs::write(
        &f,
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: d}}\ndata: {{x: {}}}\n",
            "[".repeat(200_000)
        ),
    )
    .unwrap();
    let (code, out) = validate(&[&f]);
    assert_eq!(code, 1);
    assert!(
        out.starts_with(&format!("{}:4:", f.display()))
            && out.contains("nested more than 100 levels deep"),
        "{out}"
    );
}

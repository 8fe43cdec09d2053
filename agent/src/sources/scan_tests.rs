use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

use super::*;

fn rel(root: &Path, found: &[Scanned]) -> Vec<String> {
    found
        .iter()
        .map(|(p, _)| p.strip_prefix(root).unwrap().display().to_string())
        .collect()
}

fn err_of(found: &[Scanned], path: &str) -> String {
    found
        .iter()
        .find(|(p, _)| p.ends_with(path))
        .and_then(|(_, r)| r.as_ref().err())
        .map(|e| e.to_string())
        .unwrap_or_else(|| panic!("no error entry for {path}"))
}

#[test]
fn names() {
    for ok in ["a.yaml", "b.yml", "x.y.yaml"] {
        assert!(is_manifest_name(ok), "{ok}");
    }
    for no in [
        ".a.yaml",
        ".#a.yaml",
        "a.yaml~",
        ".a.yaml.swp",
        "a.yaml.swp",
        "4913",
        "a.json",
        "a.yaml.tmp",
    ] {
        assert!(!is_manifest_name(no), "{no}");
    }
}

#[test]
fn walks_recursively_and_skips_hidden() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("sub/deeper")).unwrap();
    std::fs::create_dir_all(d.path().join(".git")).unwrap();
    for f in [
        "a.yaml",
        "sub/b.yml",
        "sub/deeper/c.yaml",
        ".git/x.yaml",
        "sub/.hidden.yaml",
        "notes.txt",
    ] {
        std::fs::write(d.path().join(f), "x: 1\n").unwrap();
    }
    let found = scan_dir(d.path()).unwrap();
    assert_eq!(
        rel(d.path(), &found),
        ["a.yaml", "sub/b.yml", "sub/deeper/c.yaml"]
    );
    assert!(scan_dir(&d.path().join("missing")).is_err());
}

/// Regression (issue 14): two `x -> .` links made the walk exponential and
/// the agent grow by ~100 MB/s; `berth validate` never ended.
#[test]
fn symlink_loops_are_reported_once_and_not_followed() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::write(root.join("a.yaml"), "x: 1\n").unwrap();
    std::fs::write(root.join("sub/b.yaml"), "x: 1\n").unwrap();
    symlink(".", root.join("x")).unwrap();
    symlink(".", root.join("y")).unwrap();
    symlink("..", root.join("sub/up")).unwrap();
    let t0 = Instant::now();
    let found = scan_dir(root).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(
        rel(root, &found),
        ["a.yaml", "sub/b.yaml", "sub/up", "x", "y"]
    );
    let e = err_of(&found, "x");
    assert!(
        e.starts_with("directory loop: ") && e.contains("/x leads back to"),
        "{e}"
    );
    assert!(err_of(&found, "sub/up").contains("which contains it"));
}

#[test]
fn a_directory_reached_twice_is_read_once() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    std::fs::create_dir(root.join("real")).unwrap();
    std::fs::write(root.join("real/a.yaml"), "x: 1\n").unwrap();
    // a diamond of links: without the visited set, 2^12 paths to one file
    let mut prev = PathBuf::from("real");
    for i in 0..12 {
        let dir = root.join(format!("d{i}"));
        std::fs::create_dir(&dir).unwrap();
        symlink(root.join(&prev), dir.join("l")).unwrap();
        symlink(root.join(&prev), dir.join("r")).unwrap();
        prev = PathBuf::from(format!("d{i}"));
    }
    let found = scan_dir(root).unwrap();
    assert_eq!(found.len(), 1, "{:?}", rel(root, &found));
}

#[test]
fn depth_and_size_bounds() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let mut deep = root.to_path_buf();
    for _ in 0..MAX_DEPTH + 2 {
        deep.push("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("a.yaml"), "x: 1\n").unwrap();
    std::fs::write(
        root.join("big.yaml"),
        vec![b'#'; MAX_FILE_BYTES as usize + 1],
    )
    .unwrap();
    let found = scan_dir(root).unwrap();
    assert!(err_of(&found, "big.yaml").contains("larger than"));
    let too_deep = found
        .iter()
        .filter_map(|(p, r)| r.as_ref().err().map(|e| (p, e.to_string())))
        .find(|(_, e)| e.contains("directory levels"))
        .expect("a too-deep entry");
    assert_eq!(
        too_deep.0.components().count(),
        root.components().count() + MAX_DEPTH + 1
    );
}

#[test]
fn too_many_files_fails_the_whole_scan() {
    let d = tempfile::tempdir().unwrap();
    for i in 0..=MAX_FILES {
        std::fs::write(d.path().join(format!("f{i}.yaml")), "").unwrap();
    }
    let e = scan_dir(d.path()).unwrap_err().to_string();
    assert!(e.starts_with("more than 10000 manifest files under"), "{e}");
}

#[test]
fn a_fifo_is_not_read() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("f.yaml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    assert!(scan_dir(d.path()).unwrap().is_empty());
    assert_eq!(
        read_manifest(&fifo).unwrap_err().to_string(),
        "not a regular file"
    );
}

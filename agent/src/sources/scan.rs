//! Which files are manifests, and reading a directory tree of them.

use std::io;
use std::path::{Path, PathBuf};

/// `*.yaml` / `*.yml`, not hidden, not an editor's temporary file
/// (`.#x.yaml`, `x.yaml~`, `.x.yaml.swp`, vim's `4913` probe).
pub fn is_manifest_name(name: &str) -> bool {
    !name.starts_with('.')
        && !name.ends_with('~')
        && !name.ends_with(".swp")
        && name != "4913"
        && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

/// One file found by [`scan_dir`]: its path and its text (or why it could not be read).
pub type Scanned = (PathBuf, io::Result<String>);

/// Every manifest file under `root` (recursive, sorted, hidden directories
/// skipped, symlinks followed up to a depth of 32).
///
/// # Errors
/// Only when `root` itself is missing or unreadable; unreadable files inside
/// are returned with their error.
pub fn scan_dir(root: &Path) -> io::Result<Vec<Scanned>> {
    let meta = std::fs::metadata(root)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            "not a directory",
        ));
    }
    let mut out = Vec::new();
    walk(root, 0, &mut out, true)?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<Scanned>, is_root: bool) -> io::Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if is_root => return Err(e),
        Err(e) => {
            out.push((dir.to_path_buf(), Err(e)));
            return Ok(());
        }
    };
    for entry in rd {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        }; // dangling symlink
        if meta.is_dir() {
            if depth < 32 {
                walk(&path, depth + 1, out, false)?;
            }
        } else if meta.is_file() && is_manifest_name(name) {
            let text = std::fs::read(&path).and_then(|b| {
                String::from_utf8(b)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
            });
            out.push((path, text));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let got: Vec<_> = scan_dir(d.path())
            .unwrap()
            .into_iter()
            .map(|(p, _)| p.strip_prefix(d.path()).unwrap().to_path_buf())
            .collect();
        assert_eq!(
            got,
            vec![
                PathBuf::from("a.yaml"),
                PathBuf::from("sub/b.yml"),
                PathBuf::from("sub/deeper/c.yaml")
            ]
        );
        assert!(scan_dir(&d.path().join("missing")).is_err());
    }
}

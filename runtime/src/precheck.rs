//! Checks made in the shim before libcontainer runs, so the two most common
//! user errors come back as clear `Invalid` errors instead of libcontainer's
//! "failed syscall" from inside the init: a command that does not exist in the
//! image and a working directory that is not a directory. Paths are resolved
//! inside the root filesystem (symlinks followed within it, never out).

use std::path::{Path, PathBuf};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn inside(rootfs: &Path, p: &str) -> Option<PathBuf> {
    safe_path::scoped_join(rootfs, p).ok()
}

fn is_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file())
}

/// `argv0` exists in the image (searched in the container's PATH when it has no '/').
pub fn executable(rootfs: &Path, argv0: &str, env: &[String]) -> Result<(), String> {
    if argv0.is_empty() {
        return Err(
            "no command: the container has neither command/args nor an image Entrypoint/Cmd".into(),
        );
    }
    if argv0.contains('/') {
        let full = if argv0.starts_with('/') {
            argv0.to_string()
        } else {
            format!("/{argv0}")
        };
        return match inside(rootfs, &full) {
            Some(p) if is_file(&p) => Ok(()),
            _ => Err(format!("executable file {argv0:?} not found in the image")),
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let found = path.split(':').filter(|d| !d.is_empty()).any(|d| {
        inside(rootfs, &format!("{}/{argv0}", d.trim_end_matches('/'))).is_some_and(|p| is_file(&p))
    });
    if found {
        Ok(())
    } else {
        Err(format!(
            "executable file {argv0:?} not found in $PATH ({path}) of the image"
        ))
    }
}

/// The working directory, if it exists, is a directory.
pub fn working_dir(rootfs: &Path, cwd: &str) -> Result<(), String> {
    if cwd.is_empty() || cwd == "/" {
        return Ok(());
    }
    match inside(rootfs, cwd) {
        Some(p) if p.exists() && !p.is_dir() => {
            Err(format!("working directory {cwd:?} is not a directory"))
        }
        Some(_) => Ok(()),
        None => Err(format!(
            "working directory {cwd:?} cannot be resolved in the image"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn finds_commands_and_refuses_missing_ones() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::write(r.join("usr/bin/busybox"), "").unwrap();
        symlink("usr/bin", r.join("bin")).unwrap();
        symlink("busybox", r.join("usr/bin/sh")).unwrap();
        // an absolute symlink resolves inside the root, not on the host
        symlink("/usr/bin/busybox", r.join("usr/bin/abs")).unwrap();
        let env = vec!["PATH=/bin".to_string()];
        assert!(executable(r, "/bin/sh", &env).is_ok());
        assert!(executable(r, "sh", &env).is_ok());
        assert!(executable(r, "abs", &env).is_ok());
        assert!(executable(r, "bin/sh", &env).is_ok());
        let e = executable(r, "/bin/nope", &env).unwrap_err();
        assert!(e.contains("/bin/nope"), "{e}");
        assert!(executable(r, "nope", &env).unwrap_err().contains("$PATH"));
        // host binaries are not found through the image
        assert!(executable(r, "/usr/bin/env", &env).is_err());
        assert!(executable(r, "", &env).is_err());
    }

    #[test]
    fn working_dirs() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("app")).unwrap();
        std::fs::write(r.join("file"), "").unwrap();
        assert!(working_dir(r, "/app").is_ok());
        assert!(working_dir(r, "/").is_ok());
        assert!(
            working_dir(r, "/missing").is_ok(),
            "created later, like Docker"
        );
        assert!(
            working_dir(r, "/file")
                .unwrap_err()
                .contains("not a directory")
        );
    }
}

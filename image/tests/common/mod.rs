//! Helpers for privileged image tests: preconditions, the busybox fixture,
//! a throwaway Debian `docker-registry` on loopback, skopeo/umoci wrappers.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Skip (with the reason printed) unless root and the tools exist; with
/// `BERTH_E2E_REQUIRED=1` (CI) a missing precondition fails the test.
pub fn preconditions() -> bool {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push(
            "needs root (chroot for the fixture, ownership and whiteouts on unpack)".to_string(),
        );
    }
    for t in ["docker-registry", "skopeo", "umoci"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            missing.push(format!(
                "{t} not installed (apt-get install -y docker-registry skopeo umoci busybox-static)"
            ));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("SKIPPED: {}", missing.join("; "));
    let required = std::env::var("BERTH_E2E_REQUIRED").is_ok_and(|v| v == "1");
    assert!(!required, "{msg} (BERTH_E2E_REQUIRED=1)");
    eprintln!("{msg}");
    false
}

pub fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The shared busybox fixture (built once per machine, under the temp dir).
pub fn fixture() -> PathBuf {
    let out = std::env::temp_dir().join("berth-image-test-fixtures");
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/make-busybox-image.sh");
    run(Command::new("bash").arg(&script).arg(&out));
    out
}

/// `docker-registry` on 127.0.0.1:<free port>, data in a temp dir; killed on drop.
pub struct Registry {
    child: Option<Child>,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let reg = Registry {
            child: Some(child),
            addr,
            _dir: dir,
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(&reg.addr).is_ok() {
                return reg;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("docker-registry did not listen on {}", reg.addr);
    }

    /// Push an OCI layout tag to `<addr>/<repo>`.
    pub fn push(&self, layout: &Path, tag: &str, repo_tag: &str) {
        run(Command::new("skopeo").args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci:{}:{tag}", layout.display()),
            &format!("docker://{}/{repo_tag}", self.addr),
        ]));
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Copy the fixture layout and add a layer on top of tag `1.36` as tag `new_tag`:
/// `prepare` edits the unpacked rootfs.
pub fn add_layer(
    layout_src: &Path,
    work: &Path,
    new_tag: &str,
    prepare: impl FnOnce(&Path),
) -> PathBuf {
    let layout = work.join("oci");
    run(Command::new("cp").arg("-a").arg(layout_src).arg(&layout));
    let bundle = work.join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:1.36", layout.display()))
        .arg(&bundle));
    prepare(&bundle.join("rootfs"));
    run(Command::new("umoci")
        .args(["repack", "--image"])
        .arg(format!("{}:{new_tag}", layout.display()))
        .arg(&bundle));
    let _ = std::fs::remove_dir_all(&bundle);
    layout
}

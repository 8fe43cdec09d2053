//! End to end: the real `berth` binary on a temp manifest directory, checked
//! through its HTTP API: desired objects and diagnostics (running pods are
//! covered by `tests/`). The agent sets up its instance's network (`btag1`)
//! and a tmpfs; `Agent`'s drop removes them even when an assertion fails.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_berth");

/// Kills the agent (by its PID) and removes what instance `btag1` created on
/// the host (bridge, nft table, mounts under the test dir, cgroups), even when
/// an assertion fails.
struct Agent(Child, std::path::PathBuf);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let quiet = |cmd: &str, args: &[&str]| {
            let _ = Command::new(cmd)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        quiet("ip", &["link", "del", "btag10"]);
        quiet("nft", &["delete", "table", "inet", "btag1"]);
        let prefix = self.1.display().to_string();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            quiet("umount", &["-l", &m]);
        }
        for c in [
            "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "",
        ] {
            // the pods' cgroups first (the agent is stopped before its pods go)
            let top = Path::new("/sys/fs/cgroup").join(c).join("btag1");
            for e in std::fs::read_dir(&top).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
            let _ = std::fs::remove_dir(&top);
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, buf.split_once("\r\n\r\n")?.1.to_string()))
}

fn json(port: u16, path: &str) -> Value {
    let (code, body) = get(port, path).expect("API answers");
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(15) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn pod(name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: {image}\n"
    )
}

fn pod_names(port: u16) -> Vec<String> {
    json(port, "/api/v1/pods")["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

fn start(dir: &Path, tmp: &Path, port: u16) -> Agent {
    let child = Command::new(BIN)
        .args([
            "--instance",
            "btag1",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--node-name",
            "e2e",
            "--pod-cidr",
            "10.124.40.0/24",
            "--service-cidr",
            "10.124.41.0/24",
        ])
        .arg("--manifests")
        .arg(dir)
        .arg("--state-dir")
        .arg(tmp.join("state"))
        .arg("--run-dir")
        .arg(tmp.join("run"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Agent(child, tmp.to_path_buf())
}

#[test]
fn drop_edit_break_fix_remove_through_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("manifests");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a.yaml"), pod("a", "busybox:1")).unwrap();
    let port = free_port();
    let mut agent = start(&dir, tmp.path(), port);
    eventually("API up with pod a", || {
        get(port, "/api/v1/pods").is_some_and(|(c, b)| c == 200 && b.contains("\"a\""))
    });
    assert_eq!(get(port, "/healthz").unwrap(), (200, "ok".into()));
    let st = json(port, "/api/v1/status");
    assert_eq!(st["instance"], "btag1");
    assert_eq!(st["node"], "e2e");
    assert_eq!(st["sources"][0]["type"], "directory");
    assert_eq!(st["sources"][0]["revision"].as_str().unwrap().len(), 64);
    assert!(tmp.path().join("state").is_dir() && tmp.path().join("run").is_dir());

    // drop
    std::fs::write(dir.join("b.yaml"), pod("b", "busybox:1")).unwrap();
    eventually("b appears", || pod_names(port) == ["a", "b"]);
    // edit
    std::fs::write(dir.join("a.yaml"), pod("a", "busybox:2")).unwrap();
    eventually("a edited", || {
        json(port, "/api/v1/namespaces/default/pods/a")["spec"]["containers"][0]["image"]
            == "busybox:2"
    });
    // break: a's last good definition stays, the error has file:line
    std::fs::write(
        dir.join("a.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspec:\n  containers:\n  - name: c\n",
    )
    .unwrap();
    let a_path = dir.join("a.yaml").display().to_string();
    eventually("a reported", || {
        json(port, "/api/v1/status")["sources"][0]["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| {
                d["text"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{a_path}:"))
            })
    });
    assert_eq!(
        json(port, "/api/v1/namespaces/default/pods/a")["spec"]["containers"][0]["image"],
        "busybox:2"
    );
    let (_, metrics) = get(port, "/metrics").unwrap();
    assert!(!metrics.contains("berth_parse_errors 0"), "{metrics}");
    // fix
    std::fs::write(dir.join("a.yaml"), pod("a", "busybox:3")).unwrap();
    eventually("a fixed", || json(port, "/api/v1/status")["errors"] == 0);
    assert_eq!(
        json(port, "/api/v1/namespaces/default/pods/a")["spec"]["containers"][0]["image"],
        "busybox:3"
    );
    // remove
    std::fs::remove_file(dir.join("b.yaml")).unwrap();
    eventually("b gone", || pod_names(port) == ["a"]);
    assert_eq!(
        get(port, "/api/v1/namespaces/default/pods/b").unwrap().0,
        404
    );
    // the directory vanishes: error, objects kept
    std::fs::rename(&dir, tmp.path().join("moved")).unwrap();
    eventually("missing dir reported", || {
        json(port, "/api/v1/status")["sources"][0]["lastError"].is_string()
    });
    assert_eq!(pod_names(port), ["a"]);

    // SIGTERM: clean exit
    let pid = agent.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if let Some(st) = agent.0.try_wait().unwrap() {
            assert!(st.success(), "{st:?}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("agent did not stop on SIGTERM");
}

#[test]
fn validate_prints_file_line_errors_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("ok.yaml"), pod("ok", "x")).unwrap();
    std::fs::create_dir(tmp.path().join("sub")).unwrap();
    std::fs::write(tmp.path().join("sub/bad.yaml"), "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n  containers:\n  - name: c\n    image: x\n    ports:\n    - containerPort: 99999\n").unwrap();
    let out = Command::new(BIN)
        .arg("validate")
        .arg(tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let bad = tmp.path().join("sub/bad.yaml").display().to_string();
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&format!("{bad}:10:")) && l.contains("99999")),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 error(s)"));
    let out = Command::new(BIN)
        .arg("validate")
        .arg(tmp.path().join("ok.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let out = Command::new(BIN).arg("schema").output().unwrap();
    assert!(out.status.success());
    let _: Value = serde_json::from_slice(&out.stdout).unwrap();
}

#[test]
fn bad_config_exits_64_before_side_effects() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let out = Command::new(BIN)
        .args([
            "--manifests",
            "/nonexistent",
            "--instance",
            "btag1",
            "--listen",
            "0.0.0.0:7999",
        ])
        .arg("--state-dir")
        .arg(&state)
        .env_remove("BERTH_API_TOKEN_FILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--api-token-file"));
    assert!(
        !state.exists(),
        "nothing created before the config is valid"
    );
    let out = Command::new(BIN)
        .args(["--instance", "btag1"])
        .env_remove("BERTH_MANIFESTS")
        .env_remove("BERTH_GIT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no manifest source"));
}

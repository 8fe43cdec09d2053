//! Harness for privileged tests: one instance and CIDR pair per test, and a
//! guard that removes everything the test created, even when it panics.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use berth_contract::{HostPortMapping, PodNetRequest, PodNetwork, PodRef, Protocol};
use berth_net::{HostNetwork, NetConfig, cleanup_instance};

pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Whether a missing precondition fails the test (CI) instead of skipping it.
pub fn required() -> bool {
    std::env::var("BERTH_E2E_REQUIRED").is_ok_and(|v| v == "1")
}

/// Skip (locally) or fail (with `BERTH_E2E_REQUIRED=1`) unless root and `nft`/`ip` exist.
pub fn preconditions() -> bool {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("needs root (creates bridges, netns and nft tables)".to_string());
    }
    for tool in ["nft", "ip"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            missing.push(format!("{tool} not installed"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("skipped: {}", missing.join("; "));
    assert!(!required(), "{msg} (BERTH_E2E_REQUIRED=1)");
    eprintln!("{msg}");
    false
}

macro_rules! require_root {
    () => {
        if !common::preconditions() {
            return;
        }
    };
}
pub(crate) use require_root;

/// Host facts that must not change (our own `bt*` things filtered out).
/// The host's nft tables and routes, without berth test bridges' own lines and
/// without routes into another test's CIDRs (10.123.0.0/16 is split between the
/// tests of this file, which run in parallel: a bridge another test just deleted
/// can leave its routes on a dangling `dev ifNNN` for a moment). Routes into
/// this test's own CIDRs stay in, so a leaked route of this test is caught.
pub fn host_snapshot(n: u8) -> (Vec<String>, Vec<String>) {
    let own = [
        format!("10.123.{}.", 2 * u32::from(n)),
        format!("10.123.{}.", 2 * u32::from(n) + 1),
    ];
    let another_tests = |l: &str| l.contains("10.123.") && !own.iter().any(|o| l.contains(o));
    let run = |args: &[&str]| -> Vec<String> {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .expect("run");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.contains(" bt") && !l.contains("dev bt") && !another_tests(l))
            .map(str::to_string)
            .collect()
    };
    (run(&["nft", "list", "tables"]), run(&["ip", "route"]))
}

pub struct Env {
    pub n: u8,
    pub cfg: NetConfig,
    pub dir: tempfile::TempDir,
    pub pids: Vec<u32>,
    pub extra_cleanup: Vec<Vec<String>>,
    before: (Vec<String>, Vec<String>),
}

impl Env {
    pub fn new(n: u8) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = NetConfig::new(&format!("btnet{n}"));
        cfg.pod_cidr = format!("10.123.{}.0/24", 2 * n).parse().unwrap();
        cfg.service_cidr = format!("10.123.{}.0/24", 2 * n + 1).parse().unwrap();
        cfg.run_dir = dir.path().join("run");
        cfg.state_dir = dir.path().join("state");
        cfg.node_port_range = (31000 + u16::from(n) * 10, 31009 + u16::from(n) * 10);
        cfg.dns_upstreams = Some(Vec::new());
        let before = host_snapshot(n);
        Self {
            n,
            cfg,
            dir,
            pids: Vec::new(),
            extra_cleanup: Vec::new(),
            before,
        }
    }

    pub fn pod(&self, name: &str) -> PodRef {
        PodRef {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("u{}", self.n),
        }
    }

    pub fn req(&self, name: &str, ports: Vec<HostPortMapping>) -> PodNetRequest {
        PodNetRequest {
            pod: self.pod(name),
            host_network: false,
            host_ports: ports,
        }
    }

    /// Start `busybox httpd` in the pod serving `/id` = `body`; returns its PID.
    pub fn serve(&mut self, netns: &Path, port: u16, body: &str) -> u32 {
        let www = self.dir.path().join(format!("www-{body}-{port}"));
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("id"), body).unwrap();
        let child = std::process::Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(["busybox", "httpd", "-f", "-p", &port.to_string(), "-h"])
            .arg(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn httpd");
        let pid = child.id();
        self.pids.push(pid);
        std::mem::forget(child); // reaped by kill in Drop
        std::thread::sleep(Duration::from_millis(150));
        pid
    }

    pub async fn net(&self) -> HostNetwork {
        HostNetwork::new(self.cfg.clone())
            .await
            .expect("HostNetwork::new")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(*pid as i32), None);
        }
        for cmd in &self.extra_cleanup {
            let _ = std::process::Command::new(&cmd[0])
                .args(&cmd[1..])
                .stderr(Stdio::null())
                .status();
        }
        let instance = self.cfg.instance.clone();
        let run = self.cfg.run_dir.clone();
        // a fresh runtime on a fresh thread: Drop may run inside the test's runtime
        let r = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(cleanup_instance(&instance, &run))
        })
        .join();
        let after = host_snapshot(self.n);
        if !std::thread::panicking() {
            r.expect("cleanup thread").expect("cleanup_instance");
            assert_eq!(self.before, after, "host nft tables or routes changed");
            let links = std::process::Command::new("ip")
                .args(["-br", "link"])
                .output()
                .unwrap();
            let links = String::from_utf8_lossy(&links.stdout);
            // this test's bridge by its exact name: a substring would match
            // another test's (btnet10 in btnet100) while that test runs
            let bridge = format!("btnet{}0", self.n);
            assert!(
                !links
                    .lines()
                    .filter_map(|l| l.split_whitespace().next())
                    .any(|name| name.split('@').next() == Some(bridge.as_str())),
                "bridge {bridge} left behind"
            );
            let t = std::process::Command::new("nft")
                .args(["list", "tables"])
                .output()
                .unwrap();
            assert!(
                !String::from_utf8_lossy(&t.stdout).contains(&format!("inet btnet{} ", self.n))
                    && !String::from_utf8_lossy(&t.stdout)
                        .lines()
                        .any(|l| l == format!("table inet btnet{}", self.n)),
                "table left behind"
            );
        }
    }
}

/// Run a command inside a netns; (success, stdout).
pub async fn in_ns(netns: &Path, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(args)
        .output()
        .await
        .expect("nsenter");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// HTTP GET /id from the host namespace with a plain socket.
pub async fn get_id(addr: Ipv4Addr, port: u16) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect((addr, port)),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timeout"))??;
    s.write_all(b"GET /id HTTP/1.0\r\n\r\n").await?;
    let mut buf = String::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_string(&mut buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "read timeout"))??;
    Ok(buf
        .rsplit("\r\n\r\n")
        .next()
        .unwrap_or("")
        .trim()
        .to_string())
}

pub fn hp(host_port: u16, container_port: u16) -> HostPortMapping {
    HostPortMapping {
        host_port,
        container_port,
        protocol: Protocol::Tcp,
        host_ip: None,
    }
}

pub fn ns_path(p: &PodNetwork) -> PathBuf {
    p.netns.clone().expect("pod has a netns")
}

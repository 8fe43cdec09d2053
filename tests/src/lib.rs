//! Harness for berth's end-to-end tests: start the real `berth` binary as a
//! user would, with its own instance name, CIDRs, API port, state and run dirs,
//! talk to its HTTP API, and clean up everything the instance created even
//! when a test fails (bridge, nft table, cgroups, mounts, processes).
//!
//! Tests need root; without it they print why and return (locally). In CI
//! (`BERTH_E2E_REQUIRED=1`) a missing precondition is a failure.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

/// The image every e2e manifest uses; built locally from Debian's busybox-static.
pub const IMAGE: &str = "berth.local/busybox:1.36";

/// Workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `berth` binary next to the test executable (`target/<profile>/berth`).
pub fn berth_bin() -> PathBuf {
    if let Ok(p) = std::env::var("BERTH_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    dir.join("berth")
}

/// Whether privileged tests can run here; prints the reason when not.
pub fn preconditions(test: &str) -> bool {
    let required = std::env::var("BERTH_E2E_REQUIRED").is_ok_and(|v| v == "1");
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("not running as root".to_string());
    }
    if !berth_bin().exists() {
        missing.push(format!(
            "{} not built (run cargo build first)",
            berth_bin().display()
        ));
    }
    for tool in ["nft", "ip"] {
        if which(tool).is_none() {
            missing.push(format!("{tool} not installed"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{test}: skipped: {}", missing.join("; "));
    if required {
        panic!("{msg} (BERTH_E2E_REQUIRED=1)");
    }
    eprintln!("{msg}");
    false
}

pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
}

/// Build (once per test process) the busybox image archives; returns the dir
/// holding `busybox-oci.tar` and `busybox-docker.tar`.
pub fn image_archives() -> Result<PathBuf> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = std::env::var("BERTH_TEST_IMAGES")
            .map(PathBuf::from)
            .unwrap_or_else(|_| std::env::temp_dir().join("berth-test-images"));
        let script = workspace_root().join("tests/fixtures/make-busybox-image.sh");
        let st = Command::new("bash")
            .arg(&script)
            .arg(&out)
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        if !st.success() {
            return Err(format!("{} failed: {st}", script.display()));
        }
        Ok(out)
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// A running berth agent of one test.
pub struct Agent {
    pub instance: String,
    pub dir: PathBuf,
    pub manifests: PathBuf,
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub image_dir: PathBuf,
    pub port: u16,
    pub pod_cidr: String,
    pub service_cidr: String,
    pub extra_args: Vec<String>,
    child: Option<Child>,
}

/// The third octet of `net`'s CIDRs: 2n for the pods, 2n+1 for the services.
/// `net` must be below 128 (2n+1 is an octet); computed in u16 so a larger
/// `net` is this clear panic, not a u8 overflow or a wrapped CIDR.
fn net_octet(net: u8, which: u16) -> u16 {
    assert!(
        net < 128,
        "AgentOpts.net {net} is out of range: 10.124.<2n>.0/24 needs n < 128"
    );
    2 * u16::from(net) + which
}

/// Settings for [`Agent::new`]. `net` picks distinct CIDRs: 10.124.<2n>.0/24 and 10.124.<2n+1>.0/24.
pub struct AgentOpts<'a> {
    pub instance: &'a str,
    pub net: u8,
    pub port: u16,
    pub with_image: bool,
}

impl Agent {
    /// Prepare dirs (removing leftovers of an earlier failed run of the same instance).
    pub fn new(o: AgentOpts<'_>) -> Result<Self> {
        cleanup_instance(o.instance);
        let dir = std::env::temp_dir().join(format!("berth-e2e-{}", o.instance));
        let _ = std::fs::remove_dir_all(&dir);
        let manifests = dir.join("manifests");
        let state_dir = dir.join("state");
        let run_dir = PathBuf::from(format!("/run/{}", o.instance));
        let image_dir = dir.join("images");
        for d in [&manifests, &state_dir, &image_dir] {
            std::fs::create_dir_all(d)?;
        }
        if o.with_image {
            let src = image_archives()?.join("busybox-oci.tar");
            std::fs::copy(&src, image_dir.join("busybox-oci.tar"))
                .with_context(|| format!("copying {}", src.display()))?;
        }
        Ok(Self {
            instance: o.instance.to_string(),
            dir,
            manifests,
            state_dir,
            run_dir,
            image_dir,
            port: o.port,
            pod_cidr: format!("10.124.{}.0/24", net_octet(o.net, 0)),
            service_cidr: format!("10.124.{}.0/24", net_octet(o.net, 1)),
            extra_args: Vec::new(),
            child: None,
        })
    }

    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            "--instance".into(),
            self.instance.clone(),
            "--manifests".into(),
            self.manifests.display().to_string(),
            "--state-dir".into(),
            self.state_dir.display().to_string(),
            "--run-dir".into(),
            self.run_dir.display().to_string(),
            "--image-dir".into(),
            self.image_dir.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{}", self.port),
            "--pod-cidr".into(),
            self.pod_cidr.clone(),
            "--service-cidr".into(),
            self.service_cidr.clone(),
        ];
        a.extend(self.extra_args.iter().cloned());
        a
    }

    /// Start the agent and wait until /healthz answers.
    pub fn start(&mut self) -> Result<()> {
        let log = std::fs::File::create(self.dir.join("agent.log"))?;
        let child = Command::new(berth_bin())
            .args(self.args())
            .env("RUST_LOG", "info,berth=debug")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting berth")?;
        self.child = Some(child);
        let t0 = Instant::now();
        loop {
            if let Ok((200, _)) = self.get("/healthz") {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Some(st) = c.try_wait()?
            {
                bail!("berth exited early ({st}); log:\n{}", self.log());
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("berth did not answer /healthz in 30s; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until /readyz answers 200: every source synced and the reconciler
    /// finished its first pass (adoption). Before that the pod list shows the
    /// manifests' pods only, not pods still running from before a restart.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let t0 = Instant::now();
        loop {
            match self.get("/readyz") {
                Ok((200, _)) => return Ok(()),
                r if t0.elapsed() > timeout => {
                    bail!(
                        "berth not ready after {timeout:?}: {r:?}; log:\n{}",
                        self.log()
                    )
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL the agent (workloads must survive).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    pub fn write_manifest(&self, name: &str, text: &str) -> Result<()> {
        let tmp = self.manifests.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, self.manifests.join(name))?;
        Ok(())
    }

    pub fn remove_manifest(&self, name: &str) -> Result<()> {
        std::fs::remove_file(self.manifests.join(name))?;
        Ok(())
    }

    /// GET a path on the API; returns (status, body).
    pub fn get(&self, path: &str) -> Result<(u16, String)> {
        http(self.port, "GET", path)
    }

    pub fn get_json(&self, path: &str) -> Result<Value> {
        let (code, body) = self.get(path)?;
        if code != 200 {
            bail!("GET {path}: {code}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// Poll `f` on `/api/v1/pods` until it returns Some or `timeout` passes.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Value) -> Option<T>,
    ) -> Result<T> {
        let t0 = Instant::now();
        let mut last = Value::Null;
        loop {
            if let Ok(v) = self.get_json("/api/v1/pods") {
                if let Some(t) = f(&v) {
                    return Ok(t);
                }
                last = v;
            }
            if t0.elapsed() > timeout {
                bail!(
                    "timed out after {timeout:?} waiting for {what}; last pods:\n{}\nagent log tail:\n{}",
                    serde_json::to_string_pretty(&last).unwrap_or_default(),
                    tail(&self.log(), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Run a one-shot pod `client` (restartPolicy Never, the test image)
    /// with `sh -c script`, wait up to 60 s for it to end, and return its log.
    pub fn run_client(&self, script: &str) -> Result<String> {
        let command = serde_json::to_string(&["sh", "-c", script])?;
        self.write_manifest(
            "client.yaml",
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: client}}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: c\n    image: {IMAGE}\n    command: {command}\n"
            ),
        )?;
        self.wait_for("client done", Duration::from_secs(60), |v| {
            let ph = Self::pod(v, "client")?["status"]["phase"]
                .as_str()?
                .to_string();
            (ph == "Succeeded" || ph == "Failed").then_some(())
        })?;
        let (_, log) = self.get("/api/v1/namespaces/default/pods/client/log")?;
        Ok(log)
    }

    /// Pod object by name from a PodList.
    pub fn pod<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
        list["items"]
            .as_array()?
            .iter()
            .find(|p| p["metadata"]["name"] == name)
    }

    /// Remove all manifests, wait for the pods to go, then stop the agent.
    pub fn shutdown_clean(&mut self) -> Result<()> {
        for e in std::fs::read_dir(&self.manifests)?.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        // An empty directory is not "delete all": keep one empty file so the
        // source is valid and names nothing.
        self.write_manifest("empty.yaml", "# nothing\n")?;
        let r = self.wait_for("all pods gone", Duration::from_secs(60), |v| {
            v["items"]
                .as_array()
                .is_some_and(|a| a.is_empty())
                .then_some(())
        });
        self.stop();
        r
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
        cleanup_instance(&self.instance);
        if std::env::var_os("BERTH_KEEP_E2E").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A minimal HTTP/1.1 client for loopback (no extra dependencies).
pub fn http(port: u16, method: &str, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status)?;
    let code: u16 = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status:?}"))?;
    let mut chunked = false;
    let mut len: Option<usize> = None;
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().ok();
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut sz = String::new();
            r.read_line(&mut sz)?;
            let n = usize::from_str_radix(sz.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = len {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

/// Plain TCP request to any address inside the test's own bridge, or loopback.
pub fn tcp_request(addr: &str, payload: &[u8], timeout: Duration) -> Result<String> {
    let sa: std::net::SocketAddr = addr.parse()?;
    let mut s = TcpStream::connect_timeout(&sa, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(payload)?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    Ok(out)
}

fn run_quiet(cmd: &str, args: &[&str]) {
    let _ = Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Remove everything an instance may have left: processes in its cgroups and
/// its shims (by PID), mounts under its run/state dirs, bridge, nft table,
/// cgroup dirs. Touches only names derived from `instance`.
pub fn cleanup_instance(instance: &str) {
    assert!(instance.starts_with("bt"), "test instances are named bt*");
    let run_dir = format!("/run/{instance}");
    let state_dir = std::env::temp_dir().join(format!("berth-e2e-{instance}"));
    // 1. processes: shims recorded in the run dir, and everything in the instance's cgroups
    let mut pids: Vec<i32> = Vec::new();
    if let Ok(out) = Command::new("find")
        .args([&run_dir, "-name", "*.pid"])
        .output()
    {
        for f in String::from_utf8_lossy(&out.stdout).lines() {
            if let Ok(s) = std::fs::read_to_string(f)
                && let Some(Ok(p)) = s.split_whitespace().next().map(str::parse)
            {
                pids.push(p);
            }
        }
    }
    for hier in ["pids", "memory", "cpu", "freezer", "unified", ""] {
        let base = if hier.is_empty() {
            format!("/sys/fs/cgroup/{instance}")
        } else {
            format!("/sys/fs/cgroup/{hier}/{instance}")
        };
        if let Ok(out) = Command::new("find")
            .args([&base, "-name", "cgroup.procs"])
            .output()
        {
            for f in String::from_utf8_lossy(&out.stdout).lines() {
                for l in std::fs::read_to_string(f).unwrap_or_default().lines() {
                    if let Ok(p) = l.trim().parse() {
                        pids.push(p);
                    }
                }
            }
        }
    }
    pids.sort();
    pids.dedup();
    for p in &pids {
        if *p > 1 {
            // processes of this test instance only (its cgroups and shims)
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    if !pids.is_empty() {
        std::thread::sleep(Duration::from_millis(200));
    }
    // 2. mounts under the instance's dirs, deepest first
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut targets: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|t| t.starts_with(&run_dir) || t.starts_with(&*state_dir.to_string_lossy()))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in targets {
        run_quiet("umount", &["-l", &t]);
    }
    // 3. network: the pods' host-side veths (still on the bridge when their
    // netns outlives the unmount), then the bridge and the table
    if let Ok(ports) = std::fs::read_dir(format!("/sys/class/net/{instance}0/brif")) {
        for p in ports.flatten() {
            run_quiet("ip", &["link", "del", &p.file_name().to_string_lossy()]);
        }
    }
    run_quiet("ip", &["link", "del", &format!("{instance}0")]);
    run_quiet("nft", &["delete", "table", "inet", instance]);
    // 4. cgroup dirs, deepest first
    if let Ok(out) = Command::new("find")
        .args([
            "/sys/fs/cgroup",
            "-maxdepth",
            "6",
            "-type",
            "d",
            "-path",
            &format!("*/{instance}*"),
        ])
        .output()
    {
        let mut dirs: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.len()));
        for d in dirs {
            let _ = std::fs::remove_dir(&d);
        }
    }
    let _ = std::fs::remove_dir_all(&run_dir);
}

/// Find a container process of a pod through the pod status (containerID) is
/// runtime-specific; tests use `pgrep -f` on a unique marker instead.
pub fn pgrep(marker: &str) -> Vec<u32> {
    Command::new("pgrep")
        .args(["-f", marker])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

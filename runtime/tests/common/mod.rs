//! Shared harness of the privileged runtime tests.
//!
//! Each test gets its own instance name (`btrtN`), a tempdir holding its run
//! and state dirs and a busybox image layer (Debian's static busybox with
//! `--install -s` symlinks, plus /etc/passwd and /etc/group). Everything the
//! test made is removed by `Harness`'s `Drop`, also when the test fails:
//! containers (through the runtime, then by force), sandboxes, mounts below the
//! tempdir, and the instance's cgroups in every hierarchy.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_contract::{
    ContainerConfig, ContainerState, ImageConfig, ImageInfo, PodNetwork, PodRef, Resources,
    Runtime, Sandbox, SandboxConfig, Security,
};
use berth_runtime::{RuntimeConfig, ShimRuntime};

/// `None` (and a printed reason) when the tests cannot run here.
pub fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root".into());
    }
    if !Path::new("/bin/busybox").exists() {
        return Some("/bin/busybox missing (apt-get install busybox-static)".into());
    }
    None
}

/// Return early (printing why) when the privileged tests cannot run here;
/// with `BERTH_E2E_REQUIRED=1` (CI, `scripts/test.sh`) fail instead.
macro_rules! require_root {
    () => {
        if let Some(why) = common::skip_reason() {
            if std::env::var("BERTH_E2E_REQUIRED").is_ok_and(|v| v == "1") {
                panic!("privileged test cannot run: {why} (BERTH_E2E_REQUIRED=1)");
            }
            eprintln!("skipping: {why}");
            return;
        }
    };
}
pub(crate) use require_root;

/// Build a busybox rootfs layer in `dir`.
pub fn busybox_layer(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    // retried: another test thread forking while the copy's write fd is open
    // makes the exec fail with ETXTBSY for a moment
    let mut last = String::new();
    let ok = (0..20).any(|_| {
        let out = Command::new("chroot")
            .arg(dir)
            .args(["/bin/busybox", "--install", "-s", "/bin"])
            .output()
            .unwrap();
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        out.status.success() || {
            std::thread::sleep(Duration::from_millis(50));
            false
        }
    });
    assert!(ok, "busybox --install failed: {last}");
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nextra:x:2000:app\n",
    )
    .unwrap();
}

pub struct Harness {
    pub instance: String,
    pub tmp: tempfile::TempDir,
    pub cfg: RuntimeConfig,
    pub rt: Option<ShimRuntime>,
    pub layer: PathBuf,
    pods: std::sync::Mutex<Vec<PodRef>>,
}

impl Harness {
    pub fn new(instance: &str) -> Self {
        Self::with(instance, |_| {})
    }

    pub fn with(instance: &str, tweak: impl FnOnce(&mut RuntimeConfig)) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{instance}-"))
            .tempdir()
            .unwrap();
        let layer = tmp.path().join("layer");
        busybox_layer(&layer);
        let mut cfg =
            RuntimeConfig::new(instance, &tmp.path().join("run"), &tmp.path().join("state"));
        cfg.shim_path = PathBuf::from(env!("CARGO_BIN_EXE_berth-shim"));
        tweak(&mut cfg);
        let rt = ShimRuntime::new(cfg.clone()).expect("ShimRuntime::new");
        Self {
            instance: instance.to_string(),
            tmp,
            cfg,
            rt: Some(rt),
            layer,
            pods: Default::default(),
        }
    }

    pub fn rt(&self) -> &ShimRuntime {
        self.rt.as_ref().expect("runtime present")
    }

    /// Simulate an agent restart: forget the runtime object, make a new one on the same dirs.
    pub fn restart(&mut self) {
        self.rt = None;
        self.rt = Some(ShimRuntime::new(self.cfg.clone()).expect("ShimRuntime::new after restart"));
    }

    pub fn pod(&self, name: &str) -> PodRef {
        PodRef {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("{:08x}", rand_u32()),
        }
    }

    /// A sandbox; `netns` = a namespace the test made, or `None` for host network.
    pub async fn sandbox(&self, pod: &PodRef, netns: Option<PathBuf>) -> Sandbox {
        self.sandbox_with(pod, netns, Resources::default()).await
    }

    pub async fn sandbox_with(
        &self,
        pod: &PodRef,
        netns: Option<PathBuf>,
        resources: Resources,
    ) -> Sandbox {
        self.pods.lock().unwrap().push(pod.clone());
        let cfg = SandboxConfig {
            pod: pod.clone(),
            hostname: pod.name.clone(),
            network: PodNetwork {
                netns,
                ip: Some("10.250.0.2".parse().unwrap()),
                dns_servers: vec!["10.250.0.1".parse().unwrap()],
                dns_search: vec!["default.svc.cluster.local".into()],
            },
            resources,
            share_process_namespace: false,
            hosts: None,
            resolv_conf: None,
        };
        self.rt()
            .ensure_sandbox(&cfg)
            .await
            .expect("ensure_sandbox")
    }

    pub fn container(&self, sb: &Sandbox, name: &str, args: &[&str]) -> ContainerConfig {
        ContainerConfig {
            id: format!("{}_{name}_0", sb.pod.key()),
            pod: sb.pod.clone(),
            name: name.into(),
            labels: BTreeMap::from([("test".to_string(), self.instance.clone())]),
            image: ImageInfo {
                reference: "localhost/busybox:test".into(),
                image_id: "sha256:0".into(),
                repo_digest: None,
                layers: vec![self.layer.clone()],
                config: ImageConfig::default(),
            },
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/bin".into(), "HOME=/root".into()],
            working_dir: "/".into(),
            image_user: None,
            sandbox: sb.clone(),
            mounts: vec![],
            resources: Resources::default(),
            security: Security {
                allow_privilege_escalation: true,
                ..Default::default()
            },
        }
    }

    /// Run and wait (30 s at most) for the exit.
    pub async fn run_to_end(&self, c: &ContainerConfig) -> ContainerState {
        self.rt()
            .run(c)
            .await
            .unwrap_or_else(|e| panic!("run {}: {}", c.id, berth_contract::error_chain(&e)));
        self.wait(&c.id).await
    }

    pub async fn wait(&self, id: &str) -> ContainerState {
        tokio::time::timeout(Duration::from_secs(30), self.rt().wait(id))
            .await
            .unwrap_or_else(|_| panic!("{id} did not exit within 30s"))
            .expect("wait")
    }

    /// Run `argv` in the running container `id` (bounded by 10 s); panics
    /// when the exec cannot be started at all.
    pub async fn exec(&self, id: &str, argv: &[String]) -> berth_contract::ExecResult {
        self.rt()
            .exec(id, argv, Duration::from_secs(10))
            .await
            .expect("exec")
    }

    /// Messages of the container's log (all rotated files, oldest first) for one stream.
    pub async fn log_lines(&self, id: &str, stream: &str) -> Vec<String> {
        let info = self.rt().status(id).await.expect("status");
        parse_cri(&read_all_logs(&info.log_path), stream)
    }

    pub fn cgroup_dir(&self, controller: &str, rel: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(&self.instance)
            .join(rel)
    }
}

/// Current file plus rotated ones (`.1` newest rotated ... `.N` oldest), oldest first.
pub fn read_all_logs(p: &Path) -> String {
    let mut parts = Vec::new();
    for i in (1..20).rev() {
        if let Ok(s) = std::fs::read_to_string(format!("{}.{i}", p.display())) {
            parts.push(s);
        }
    }
    parts.push(std::fs::read_to_string(p).unwrap_or_default());
    parts.concat()
}

/// Join CRI records of `stream` into lines (P records are continued by the next record).
pub fn parse_cri(text: &str, stream: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for l in text.lines() {
        let mut it = l.splitn(4, ' ');
        let (_ts, s, tag, msg) = (it.next(), it.next(), it.next(), it.next().unwrap_or(""));
        if s != Some(stream) {
            continue;
        }
        cur.push_str(msg);
        if tag == Some("F") {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

pub fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    u32::from_le_bytes(b)
}

/// A network namespace of the test's own, bind-mounted at `path`.
pub fn make_netns(path: &Path) {
    std::fs::File::create(path).unwrap();
    let p = path.to_path_buf();
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &p,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
    })
    .join()
    .unwrap();
}

/// Mount points at or below `dir` in this process's mount table.
pub fn mounts_below(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|t| *t == prefix || t.starts_with(&format!("{prefix}/")))
        .collect()
}

fn cgroup_dirs(instance: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            let d = e.path().join(instance);
            if d.is_dir() {
                out.push(d);
            }
        }
    }
    let unified = Path::new("/sys/fs/cgroup").join(instance);
    if unified.join("cgroup.procs").exists() {
        out.push(unified);
    }
    out
}

/// The instance's cgroup dirs that still exist (any hierarchy).
pub fn leftover_cgroups(instance: &str) -> Vec<PathBuf> {
    cgroup_dirs(instance)
}

fn kill_and_rmdir(d: &Path) {
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                kill_and_rmdir(&e.path());
            }
        }
    }
    for _ in 0..50 {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        for p in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if std::fs::remove_dir(d).is_ok() || !d.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // the shims' own logs explain most failures
            if let Ok(rd) = std::fs::read_dir(self.tmp.path().join("run/containers")) {
                for e in rd.flatten() {
                    let log =
                        std::fs::read_to_string(e.path().join("shim.log")).unwrap_or_default();
                    eprintln!(
                        "--- shim.log of {}:\n{log}",
                        e.file_name().to_string_lossy()
                    );
                }
            }
        }
        if let Some(rt) = self.rt.take() {
            let pods = std::mem::take(&mut *self.pods.lock().unwrap());
            std::thread::scope(|s| {
                s.spawn(|| {
                    let tokio = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    tokio.block_on(async {
                        if let Ok(list) = rt.list().await {
                            for c in list {
                                let _ = rt.remove(&c.id).await;
                            }
                        }
                        for p in &pods {
                            let _ = rt.remove_sandbox(p).await;
                        }
                    });
                    rt.cleanup_instance();
                });
            });
        }
        // whatever the runtime left behind: processes, cgroups, mounts
        for d in cgroup_dirs(&self.instance) {
            kill_and_rmdir(&d);
        }
        let mut m = mounts_below(self.tmp.path());
        m.sort_by_key(|t| std::cmp::Reverse(t.len()));
        for t in m {
            let _ = nix::mount::umount2(Path::new(&t), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

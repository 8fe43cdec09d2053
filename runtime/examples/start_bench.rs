//! Start-latency benchmark of berth's runtime against `crun run` and `runc run`
//! on the same busybox rootfs, in the same run. Prints, never asserts.
//!
//! ```text
//! cargo build --release -p berth-runtime --bins --examples
//! sudo target/release/examples/start_bench [N]
//! ```
//!
//! Needs root, /bin/busybox (busybox-static), and optionally crun/runc in PATH.
//! Measures:
//! * berth: `run()` (create to process running) and run+wait+remove of /bin/true;
//! * crun/runc: `<rt> run -b BUNDLE` of /bin/true (create+start+wait+delete),
//!   bundle = `<rt> spec` with the rootfs, no network namespace (berth's
//!   container here has host network too); crun also with berth's
//!   RuntimeDefault seccomp profile added (`<rt> spec` has none, and no
//!   overlay: the rootfs is the layer dir itself);
//! * the shim's memory (VmRSS, Pss) while a container runs;
//! * the time to stop 50 running containers (concurrently, SIGTERM honoured).
//!
//! `BENCH_RAW_ONLY=1` stops after the start figures, `BENCH_NO_PEERS=1` runs
//! berth only (both for strace/perf runs). `BENCH_NNP=1` runs berth's
//! containers with allowPrivilegeEscalation false (no_new_privs, as crun's
//! bundle has it): the case whose RuntimeDefault filter berth precompiles;
//! `BERTH_SHIM_SECCOMP=libcontainer` (inherited by the shim) leaves the
//! filter to libcontainer again, for a before/after in one build.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_contract::{
    ContainerConfig, ImageConfig, ImageInfo, PodNetwork, PodRef, Resources, Runtime, SandboxConfig,
    Security,
};
use berth_runtime::{RuntimeConfig, ShimRuntime};

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn report(name: &str, v: &mut [Duration]) {
    if v.is_empty() {
        println!("{name:<48} (no samples)");
        return;
    }
    println!(
        "{name:<48} n={:<3} p50 {:>9}  p95 {:>9}  min {:>9}",
        v.len(),
        ms(pct(v, 0.5)),
        ms(pct(v, 0.95)),
        ms(pct(v, 0.0))
    );
}

fn busybox_layer(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    let st = Command::new("chroot")
        .arg(dir)
        .args(["/bin/busybox", "--install", "-s", "/bin"])
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
}

/// `<rt> spec` edited for /bin/true on `rootfs`, no netns, no terminal.
fn bundle(rt: &str, dir: &Path, rootfs: &Path) -> bool {
    std::fs::create_dir_all(dir).unwrap();
    let ok = Command::new(rt)
        .arg("spec")
        .current_dir(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        return false;
    }
    let p = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    v["process"]["terminal"] = false.into();
    v["process"]["args"] = serde_json::json!(["/bin/true"]);
    v["root"]["path"] = rootfs.to_string_lossy().into_owned().into();
    v["root"]["readonly"] = true.into();
    if let Some(ns) = v["linux"]["namespaces"].as_array_mut() {
        ns.retain(|n| n["type"] != "network");
    }
    std::fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    true
}

fn peer(rt: &str, dir: &Path, n: usize) -> Result<Vec<Duration>, String> {
    let mut v = Vec::new();
    for i in 0..n + 2 {
        let id = format!("btbench-{rt}-{}-{i}", std::process::id());
        let t0 = Instant::now();
        let out = Command::new(rt)
            .args(["run", "-b"])
            .arg(dir)
            .arg(&id)
            .output()
            .map_err(|e| e.to_string())?;
        let d = t0.elapsed();
        if !out.status.success() {
            let _ = Command::new(rt).args(["delete", "-f", &id]).output();
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        if i >= 2 {
            v.push(d); // 2 warm-up runs
        }
    }
    Ok(v)
}

fn container(
    pod: &PodRef,
    sb: &berth_contract::Sandbox,
    layer: &Path,
    name: &str,
    args: &[&str],
) -> ContainerConfig {
    ContainerConfig {
        id: format!("{}_{name}", pod.key()),
        pod: pod.clone(),
        name: name.into(),
        labels: Default::default(),
        image: ImageInfo {
            reference: "localhost/busybox:bench".into(),
            image_id: "sha256:0".into(),
            repo_digest: None,
            layers: vec![layer.to_path_buf()],
            config: ImageConfig::default(),
        },
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec!["PATH=/bin".into()],
        working_dir: "/".into(),
        image_user: None,
        sandbox: sb.clone(),
        mounts: vec![],
        resources: Resources::default(),
        security: Security {
            // BENCH_NNP=1: allowPrivilegeEscalation false (no_new_privs, as
            // `crun spec` sets it), where berth loads a precompiled filter
            allow_privilege_escalation: std::env::var_os("BENCH_NNP").is_none(),
            // BENCH_UNCONFINED=1: no seccomp filter (to see what compiling it costs)
            seccomp_unconfined: std::env::var_os("BENCH_UNCONFINED").is_some(),
            ..Default::default()
        },
    }
}

fn kib(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("start_bench needs root");
        std::process::exit(2);
    }
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let tmp = tempfile::Builder::new()
        .prefix("btbench-")
        .tempdir()
        .unwrap();
    let layer = tmp.path().join("layer");
    busybox_layer(&layer);
    // BENCH_START_INSTANCE: another instance name (parallel runs)
    let instance = std::env::var("BENCH_START_INSTANCE").unwrap_or_else(|_| "btbench".into());
    let mut cfg = RuntimeConfig::new(
        &instance,
        &tmp.path().join("run"),
        &tmp.path().join("state"),
    );
    let exe_dir: PathBuf = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    cfg.shim_path = exe_dir.join("berth-shim");
    assert!(
        cfg.shim_path.exists(),
        "build the shim first: {}",
        cfg.shim_path.display()
    );
    let rt = std::sync::Arc::new(ShimRuntime::new(cfg.clone()).unwrap());
    let pod = PodRef {
        namespace: "default".into(),
        name: "bench".into(),
        uid: "b0".into(),
    };
    let sb = rt
        .ensure_sandbox(&SandboxConfig {
            pod: pod.clone(),
            hostname: "bench".into(),
            network: PodNetwork {
                netns: None,
                ip: None,
                dns_servers: vec![],
                dns_search: vec![],
            },
            resources: Resources::default(),
            share_process_namespace: false,
            hosts: None,
            resolv_conf: None,
        })
        .await
        .unwrap();

    println!("busybox /bin/true, n={n} (after 2 warm-up runs each), this host, same run\n");
    // interleave berth and the peers in rounds so drift hits all alike
    let mut berth_run = Vec::new();
    let mut berth_full = Vec::new();
    let mut crun_v = Vec::new();
    let mut runc_v = Vec::new();
    let crun_b = tmp.path().join("bundle-crun");
    let runc_b = tmp.path().join("bundle-runc");
    // BENCH_NO_PEERS=1: berth only (profiling runs)
    let peers = std::env::var_os("BENCH_NO_PEERS").is_none();
    let have_crun = peers && bundle("crun", &crun_b, &layer);
    // the same bundle with berth's RuntimeDefault seccomp profile: crun's
    // default spec has none, berth builds one in every container
    let crun_sb = tmp.path().join("bundle-crun-seccomp");
    let have_crun_sc = have_crun && bundle("crun", &crun_sb, &layer) && {
        let p = crun_sb.join("config.json");
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let caps: Vec<String> = berth_runtime::oci::DEFAULT_CAPS
            .iter()
            .map(|c| c.to_string())
            .collect();
        v["linux"]["seccomp"] = berth_runtime::seccomp::profile(&caps);
        std::fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).is_ok()
    };
    let mut crun_sc_v = Vec::new();
    let mut crun_sc_err = None;
    let have_runc = peers && bundle("runc", &runc_b, &layer);
    let mut crun_err = None;
    let mut runc_err = None;
    let rounds = 5;
    for r in 0..rounds {
        for i in 0..(n / rounds).max(1) + if r == 0 { 2 } else { 0 } {
            let c = container(&pod, &sb, &layer, &format!("t{r}-{i}"), &["/bin/true"]);
            let t0 = Instant::now();
            rt.run(&c).await.unwrap();
            let running = t0.elapsed();
            rt.wait(&c.id).await.unwrap();
            if std::env::var_os("BERTH_SHIM_TIMING").is_some() && r == 0 && i == 2 {
                let log = cfg.run_dir.join("containers").join(&c.id).join("shim.log");
                print!("{}", std::fs::read_to_string(log).unwrap_or_default());
                println!(
                    "agent: run() returned at {}, wait() at {}",
                    ms(running),
                    ms(t0.elapsed())
                );
            }
            rt.remove(&c.id).await.unwrap();
            let full = t0.elapsed();
            if !(r == 0 && i < 2) {
                berth_run.push(running);
                berth_full.push(full);
            }
        }
        if have_crun && crun_err.is_none() {
            match peer("crun", &crun_b, (n / rounds).max(1)) {
                Ok(v) => crun_v.extend(v),
                Err(e) => crun_err = Some(e),
            }
        }
        if have_crun_sc && crun_sc_err.is_none() {
            match peer("crun", &crun_sb, (n / rounds).max(1)) {
                Ok(v) => crun_sc_v.extend(v),
                Err(e) => crun_sc_err = Some(e),
            }
        }
        if have_runc && runc_err.is_none() {
            match peer("runc", &runc_b, (n / rounds).max(1)) {
                Ok(v) => runc_v.extend(v),
                Err(e) => runc_err = Some(e),
            }
        }
    }
    report("berth run() = create..process running", &mut berth_run);
    report("berth run+wait+remove (/bin/true)", &mut berth_full);
    match (&crun_err, have_crun) {
        (Some(e), _) => println!("{:<48} failed: {e}", "crun run"),
        (None, false) => println!("{:<48} not installed", "crun run"),
        _ => report("crun run -b (create+start+wait+delete)", &mut crun_v),
    }
    match (&crun_sc_err, have_crun_sc) {
        (Some(e), _) => println!("{:<48} failed: {e}", "crun run, berth's seccomp"),
        (None, false) => {}
        _ => report("crun run -b, berth's seccomp profile", &mut crun_sc_v),
    }
    match (&runc_err, have_runc) {
        (Some(e), _) => println!("{:<48} failed: {e}", "runc run"),
        (None, false) => println!("{:<48} not installed", "runc run"),
        _ => report("runc run -b (create+start+wait+delete)", &mut runc_v),
    }

    // BENCH_RAW_ONLY=1: only the start figures above (profiling runs)
    if std::env::var_os("BENCH_RAW_ONLY").is_some() {
        rt.remove_sandbox(&pod).await.unwrap();
        rt.cleanup_instance();
        return;
    }
    // shim memory while a container runs
    let c = container(&pod, &sb, &layer, "rss", &["/bin/sleep", "60"]);
    rt.run(&c).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let shim_pid =
        std::fs::read_to_string(cfg.run_dir.join("containers").join(&c.id).join("shim.pid"))
            .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_default();
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", shim_pid.trim())).unwrap_or_default();
    let rollup = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", shim_pid.trim()))
        .unwrap_or_default();
    println!(
        "\nshim pid {}: VmRSS {} KiB, Pss {} KiB, threads {}",
        shim_pid.trim(),
        kib(&status, "VmRSS:"),
        kib(&rollup, "Pss:"),
        kib(&status, "Threads:")
    );
    rt.stop(&c.id, Duration::ZERO).await.unwrap();
    rt.remove(&c.id).await.unwrap();

    // stop 50 containers that honour SIGTERM
    let mut ids = Vec::new();
    let t0 = Instant::now();
    for i in 0..50 {
        let c = container(
            &pod,
            &sb,
            &layer,
            &format!("s{i}"),
            &["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"],
        );
        rt.run(&c).await.unwrap();
        ids.push(c.id);
    }
    println!(
        "started 50 containers (sequentially) in {}",
        ms(t0.elapsed())
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for id in ids.clone() {
        let rt = rt.clone();
        tasks.push(tokio::spawn(async move {
            rt.stop(&id, Duration::from_secs(10)).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    println!(
        "stopped 50 containers (concurrently, grace 10 s) in {}",
        ms(t0.elapsed())
    );
    let t0 = Instant::now();
    for id in &ids {
        rt.remove(id).await.unwrap();
    }
    println!("removed 50 containers in {}", ms(t0.elapsed()));
    rt.remove_sandbox(&pod).await.unwrap();
    rt.cleanup_instance();
}

//! Many pods removed at once leave nothing of theirs on the host: no cgroup
//! in any hierarchy, no veth on the bridge, no mount under the run dir, no
//! process. The removal runs while the host is busy (threads spinning on
//! every core), where a killed supervisor can take longer to leave its
//! cgroup than the runtime used to wait; the cgroup then stayed forever.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use berth_e2e::{Agent, AgentOpts, IMAGE, pgrep, preconditions};

const PODS: usize = 20;

/// Everything of the instance's pods still on the host, one line each.
fn leftovers(a: &Agent) -> Vec<String> {
    let mut out = Vec::new();
    let inst = &a.instance;
    let mut bases = vec![std::path::PathBuf::from("/sys/fs/cgroup")];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        bases.extend(rd.flatten().map(|e| e.path()).filter(|p| !p.is_symlink()));
    }
    for b in bases {
        let d = b.join(inst);
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    out.push(format!("cgroup {}", e.path().display()));
                }
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(format!("/sys/class/net/{inst}0/brif")) {
        for e in rd.flatten() {
            out.push(format!("veth {:?} on the bridge", e.file_name()));
        }
    }
    let run = a.run_dir.to_string_lossy().into_owned();
    if let Ok(mi) = std::fs::read_to_string("/proc/self/mountinfo") {
        for l in mi.lines() {
            if let Some(mp) = l.split_whitespace().nth(4)
                && (mp.starts_with(&format!("{run}/containers/"))
                    || mp.starts_with(&format!("{run}/pods/")))
            {
                out.push(format!("mount {mp}"));
            }
        }
    }
    for pid in pgrep("sleep 7125") {
        out.push(format!("process {pid}"));
    }
    out
}

#[test]
fn twenty_pods_removed_at_once_under_load_leave_nothing_behind() -> anyhow::Result<()> {
    if !preconditions("twenty_pods_removed_at_once_under_load_leave_nothing_behind") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "bttd1",
        net: 125,
        port: 17410,
        with_image: true,
    })?;
    let docs: Vec<String> = (0..PODS)
        .map(|i| {
            format!(
                r#"apiVersion: v1
kind: Pod
metadata:
  name: td{i:02}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "exec sleep 7125"]
"#
            )
        })
        .collect();
    a.write_manifest("twenty.yaml", &docs.join("---\n"))?;
    a.start()?;
    a.wait_for("20 pods Running", Duration::from_secs(120), |v| {
        let running = v["items"]
            .as_array()?
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count();
        (running == PODS).then_some(())
    })?;
    assert_eq!(pgrep("sleep 7125").len(), PODS, "one process per pod");

    // a busy host: one spinning thread per core (and one more) during removal
    let stop = Arc::new(AtomicBool::new(false));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let spinners: Vec<_> = (0..=cores)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    std::hint::black_box(x);
                }
            })
        })
        .collect();
    let removed = (|| -> anyhow::Result<()> {
        // an empty directory is an error (kept), a file naming nothing is not
        a.write_manifest("twenty.yaml", "# nothing\n")?;
        a.wait_for("no pods listed", Duration::from_secs(60), |v| {
            v["items"].as_array()?.is_empty().then_some(())
        })?;
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        let _ = s.join();
    }
    removed?;

    // the API forgets a pod once its worker is done; what it leaves on the
    // host must be gone by then or soon after (cleanup retries), never leak
    let t0 = Instant::now();
    let left = loop {
        let left = leftovers(&a);
        if left.is_empty() || t0.elapsed() > Duration::from_secs(20) {
            break left;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        left.is_empty(),
        "left behind {:?} after removing {PODS} pods:\n{left:#?}\nagent log:\n{}",
        t0.elapsed(),
        berth_e2e::tail(&a.log(), 60)
    );
    a.shutdown_clean()?;
    Ok(())
}

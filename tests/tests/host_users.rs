//! Issue 14, item 2: an unprivileged local user can neither read nor
//! execute anything under the agent's state and run dirs (layer store with
//! setuid files and device nodes, container specs with resolved secrets,
//! secret volume files, emptyDirs, logs, sockets).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_e2e::{Agent, AgentOpts, IMAGE, preconditions, which};

const NOBODY: &str = "65534";

/// Every path under `root` (not following symlinks), at most `max`.
fn walk(root: &Path, max: usize, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    for e in rd.flatten() {
        if out.len() >= max {
            return;
        }
        let p = e.path();
        out.push(p.clone());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&p, max, out);
        }
    }
}

/// Run a shell script as uid/gid 65534 with no supplementary groups.
fn as_nobody(script: &str, args: &[PathBuf]) -> anyhow::Result<String> {
    let out = Command::new("setpriv")
        .args([
            "--reuid",
            NOBODY,
            "--regid",
            NOBODY,
            "--clear-groups",
            "--",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .args(args)
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn attack_local_user_reads_or_executes_under_state_and_run_dirs() -> anyhow::Result<()> {
    if !preconditions("attack_local_user_reads_or_executes_under_state_and_run_dirs") {
        return Ok(());
    }
    if which("setpriv").is_none() {
        panic!("setpriv (util-linux) is required");
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btusr1",
        net: 40,
        port: 17140,
        with_image: true,
    })?;
    // The harness makes the test dir 0755 like any /tmp dir: make every
    // parent traversable so only berth's own modes can stop the user.
    for d in [&a.dir, &a.state_dir] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
    }
    a.write_manifest(
        "pod.yaml",
        &format!(
            r#"apiVersion: v1
kind: Secret
metadata: {{name: creds}}
stringData: {{password: hunter2-canary}}
---
apiVersion: v1
kind: Pod
metadata: {{name: holder}}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {{name: s, secret: {{secretName: creds}}}}
  - {{name: scratch, emptyDir: {{}}}}
  containers:
  - name: c
    image: {IMAGE}
    command: ["sh", "-c", "echo log-line; touch /scratch/x; exec sleep 3600"]
    env:
    - name: PASSWORD
      valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}
    volumeMounts:
    - {{name: s, mountPath: /etc/creds}}
    - {{name: scratch, mountPath: /scratch}}
"#
        ),
    )?;
    a.start()?;
    a.wait_for("holder running", Duration::from_secs(60), |v| {
        let p = Agent::pod(v, "holder")?;
        (p["status"]["containerStatuses"][0]["state"]["running"].is_object()).then_some(())
    })?;

    for d in [&a.state_dir, &a.run_dir] {
        let mode = std::fs::metadata(d)?.permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700, "{} mode {mode:o}", d.display());
    }
    assert!(
        a.log().contains("made it 0700"),
        "the pre-existing 0755 state dir was tightened with a warning"
    );

    let mut paths = Vec::new();
    for d in [&a.state_dir, &a.run_dir] {
        paths.push(d.clone());
        walk(d, 20_000, &mut paths);
    }
    assert!(paths.len() > 20, "the agent wrote its state: {paths:?}");
    let spec_json = paths
        .iter()
        .any(|p| p.file_name().is_some_and(|n| n == "spec.json"));
    assert!(spec_json, "container specs exist under the run dir");

    // Read every file, list every directory, write into every directory,
    // and execute every executable (the layer store's busybox included).
    let got = as_nobody(
        r#"for p in "$@"; do
             if [ -d "$p" ]; then
               ls "$p" >/dev/null 2>&1 && echo "LISTED $p"
               touch "$p/.nobody" 2>/dev/null && echo "WROTE $p"
             elif [ -f "$p" ]; then
               head -c1 "$p" >/dev/null 2>&1 && echo "READ $p"
               [ -x "$p" ] && "$p" true >/dev/null 2>&1 && echo "EXECUTED $p"
             fi
           done; echo done"#,
        &paths,
    )?;
    assert!(got.trim_end().ends_with("done"), "the probe ran: {got}");
    let leaks: Vec<_> = got.lines().filter(|l| *l != "done").collect();
    assert!(
        leaks.is_empty(),
        "an unprivileged user reached berth's files:\n{}",
        leaks.join("\n")
    );
    a.shutdown_clean()?;
    Ok(())
}

/// Issue 14, item 9: an image archive that fails to import is shown in
/// `/api/v1/status` (a condition), as an `ImportFailed` event and in
/// `/metrics`, not only in the agent's log.
#[test]
fn attack_bad_image_archive_is_reported_in_status_events_and_metrics() -> anyhow::Result<()> {
    if !preconditions("attack_bad_image_archive_is_reported_in_status_events_and_metrics") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btusr2",
        net: 41,
        port: 17141,
        with_image: false,
    })?;
    // not an image archive at all
    let bad = a.image_dir.join("evil.tar");
    std::fs::write(&bad, vec![0x5au8; 4096])?;
    let old = std::time::SystemTime::now() - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&bad)?
        .set_modified(old)?;
    a.write_manifest("empty.yaml", "# nothing\n")?;
    a.start()?;
    let t0 = std::time::Instant::now();
    loop {
        let st = a.get_json("/api/v1/status")?;
        let cond = st["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "ImageImportsSucceeded");
        if let Some(c) = cond {
            assert_eq!(c["status"], "False");
            assert!(
                c["message"].as_str().unwrap_or("").contains("evil.tar"),
                "{c}"
            );
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no import condition in status: {st}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let ev = a.get_json("/api/v1/events")?;
    let found = ev["items"].as_array().into_iter().flatten().any(|e| {
        e["reason"] == "ImportFailed" && e["message"].as_str().unwrap_or("").contains("evil.tar")
    });
    assert!(found, "ImportFailed event: {ev}");
    let (code, m) = a.get("/metrics")?;
    assert_eq!(code, 200);
    assert!(
        m.contains("berth_agent_condition{type=\"ImageImportsSucceeded\",status=\"False\""),
        "{m}"
    );
    // removing the archive clears the condition
    std::fs::remove_file(&bad)?;
    let t0 = std::time::Instant::now();
    loop {
        let st = a.get_json("/api/v1/status")?;
        let still = st["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "ImageImportsSucceeded");
        if !still {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "condition stays after the archive is gone: {st}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    a.stop();
    Ok(())
}

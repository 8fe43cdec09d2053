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
        a.log().contains("making it 0700"),
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

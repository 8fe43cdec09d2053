//! RuntimeDefault seccomp through the real agent for a container with
//! `allowPrivilegeEscalation: false` (no_new_privs), whose filter the
//! supervisor precompiles: the container and its exec readiness probe run
//! filtered (mode 2, one filter, user namespaces refused), and the program
//! cache in the run dir is root-only.
//!
//! The probe also guards against a gap of libcontainer 0.7's exec: its
//! tenant builder rebuilds `linux` without `seccomp`, so a process started
//! by `berth-shim exec` from a bundle profile would run unfiltered; berth
//! loads the filter in the exec'd process itself (also with
//! `BERTH_SHIM_SECCOMP=libcontainer`, see `runtime/src/exec_seccomp.rs`).
//!
//! Without no_new_privs (allowPrivilegeEscalation unset, the Kubernetes
//! default) the supervisor hands the filter and the final capability drop
//! to berth's executor: the exec probes of a root and a non-root container
//! (one with an added capability) run filtered with exactly their
//! container's capabilities (on libcontainer's path, and on main before
//! the hand-off, such a probe ran with Seccomp 0).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use berth_e2e::{Agent, AgentOpts, IMAGE, preconditions};
use serde_json::Value;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0)
}

/// The container's log lines (CRI format, payload only), all files of the pod.
fn log_lines(a: &Agent, pod: &str) -> Vec<String> {
    let prefix = format!("default_{pod}_");
    let mut out = Vec::new();
    let Ok(pods) = std::fs::read_dir(a.state_dir.join("logs")) else {
        return out;
    };
    for p in pods.flatten().map(|e| e.path()) {
        if !p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        {
            continue;
        }
        for c in std::fs::read_dir(&p).into_iter().flatten().flatten() {
            for f in std::fs::read_dir(c.path()).into_iter().flatten().flatten() {
                let text = std::fs::read_to_string(f.path()).unwrap_or_default();
                // `<time> <stream> <tag> <payload>`
                out.extend(
                    text.lines()
                        .filter_map(|l| l.splitn(4, ' ').nth(3))
                        .map(str::to_string),
                );
            }
        }
    }
    out
}

/// Wait up to 60 s for `pod` to be Ready by `f`; on failure the error also
/// carries `/api/v1/status` (`wait_for` already adds the pods and the log).
fn wait_ready(a: &Agent, pod: &str, f: impl FnMut(&Value) -> Option<()>) -> anyhow::Result<()> {
    a.wait_for(&format!("{pod} Ready"), Duration::from_secs(60), f)
        .map_err(|e| {
            let status = a.get_json("/api/v1/status").unwrap_or(Value::Null);
            anyhow::anyhow!("{e}\nstatus: {status}")
        })
}

#[test]
fn no_new_privs_container_and_probe_run_under_the_precompiled_filter() -> anyhow::Result<()> {
    if !preconditions("no_new_privs_container_and_probe_run_under_the_precompiled_filter") {
        return Ok(());
    }
    // This test's net is 128, which the harness's u8 arithmetic
    // (10.124.<2n>) cannot express: the same mapping carried past
    // 10.124.255 gives 10.125.0.0/24 and 10.125.1.0/24, set after `new`.
    let mut a = Agent::new(AgentOpts {
        instance: "btsc3",
        net: 0,
        port: 17440,
        with_image: true,
    })?;
    a.pod_cidr = "10.125.0.0/24".into();
    a.service_cidr = "10.125.1.0/24".into();
    // the probe passes only inside the filter: mode 2 and user namespaces refused
    a.write_manifest(
        "p.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: filtered
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "grep -E '^(Seccomp|Seccomp_filters|NoNewPrivs):' /proc/self/status; unshare -U true && echo UNSHARED || echo refused; exec sleep 7440"]
    securityContext:
      allowPrivilegeEscalation: false
    readinessProbe:
      exec:
        command: ["sh", "-c", "grep -q '^Seccomp:.2$' /proc/self/status && grep -q '^NoNewPrivs:.1$' /proc/self/status && ! unshare -U true"]
      periodSeconds: 1
"#
        ),
    )?;
    a.start()?;
    wait_ready(&a, "filtered", |v| {
        let s = &Agent::pod(v, "filtered")?["status"]["containerStatuses"][0];
        (s["ready"] == true).then_some(())
    })?;
    let out = log_lines(&a, "filtered");
    for want in [
        "Seccomp:\t2",
        "Seccomp_filters:\t1",
        "NoNewPrivs:\t1",
        "refused",
    ] {
        assert!(out.iter().any(|l| l == want), "no {want:?} in {out:?}");
    }
    let cache = a.run_dir.join("seccomp");
    assert_eq!(mode(&cache), 0o700, "{}", cache.display());
    let files: Vec<_> = std::fs::read_dir(&cache)?
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(mode(&files[0]), 0o600);
    a.shutdown_clean()?;
    Ok(())
}

/// A probe that passes only filtered, without no_new_privs, with exactly
/// the capabilities its container wrote to /dev/shm/caps at its start.
const SAME_CAPS_PROBE: &str = r#"        command:
        - sh
        - -c
        - |
          grep -q '^Seccomp:.2$' /proc/self/status &&
          grep -q '^Seccomp_filters:.1$' /proc/self/status &&
          grep -q '^NoNewPrivs:.0$' /proc/self/status &&
          ! unshare -U true &&
          [ "$(grep -E '^(Cap|NoNewPrivs)' /proc/self/status)" = "$(cat /dev/shm/caps)" ]
"#;

#[test]
fn escalation_allowed_containers_and_probes_run_filtered_with_their_caps() -> anyhow::Result<()> {
    if !preconditions("escalation_allowed_containers_and_probes_run_filtered_with_their_caps") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btsc2e",
        net: 0,
        port: 17470,
        with_image: true,
    })?;
    a.pod_cidr = "10.125.2.0/24".into();
    a.service_cidr = "10.125.3.0/24".into();
    let start = "grep -E '^(Cap|NoNewPrivs)' /proc/self/status > /dev/shm/caps; \
                 grep -E '^(Seccomp|Seccomp_filters|NoNewPrivs):' /proc/self/status; \
                 unshare -U true && echo UNSHARED || echo refused; exec sleep 7470";
    a.write_manifest(
        "p.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: handoff
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: root
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "{start}"]
    readinessProbe:
      periodSeconds: 1
      exec:
{SAME_CAPS_PROBE}
  - name: user
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "{start}"]
    securityContext:
      runAsUser: 1000
      capabilities:
        add: ["NET_ADMIN"]
    readinessProbe:
      periodSeconds: 1
      exec:
{SAME_CAPS_PROBE}
"#
        ),
    )?;
    a.start()?;
    wait_ready(&a, "handoff", |v| {
        let s = &Agent::pod(v, "handoff")?["status"]["containerStatuses"];
        let all = s.as_array()?;
        (all.len() == 2 && all.iter().all(|c| c["ready"] == true)).then_some(())
    })?;
    let out = log_lines(&a, "handoff");
    for want in [
        "Seccomp:\t2",
        "Seccomp_filters:\t1",
        "NoNewPrivs:\t0",
        "refused",
    ] {
        let n = out.iter().filter(|l| *l == want).count();
        assert_eq!(n, 2, "{want:?} twice in {out:?}");
    }
    // both handed off: the own capabilities kept root-only beside the bundle
    let mut kept = Vec::new();
    for c in std::fs::read_dir(a.run_dir.join("containers"))?.flatten() {
        let f = c.path().join("bundle/capabilities.json");
        if f.exists() {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
            kept.push(f);
        }
    }
    assert_eq!(kept.len(), 2, "{kept:?}");
    a.shutdown_clean()?;
    Ok(())
}

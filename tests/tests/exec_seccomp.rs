//! Exec probes in containers whose seccomp filter libcontainer loads for
//! the init (`Localhost` profiles with filter flags or a notify action),
//! through the real agent: a profile with filter flags filters the exec
//! probe exactly as the init (the readiness probe passes only filtered),
//! and a profile with a notify action refuses the exec: the liveness probe
//! errors with the reason, in an `Unhealthy` event of the pod, as kubelet's
//! "Liveness probe errored: ..." (that no process starts is checked by
//! `runtime/tests/seccomp_containers.rs`).

use std::time::{Duration, Instant};

use berth_e2e::{Agent, AgentOpts, IMAGE, preconditions};
use serde_json::Value;

#[test]
fn exec_probes_run_under_a_flagged_filter_and_a_notify_profile_refuses_them() -> anyhow::Result<()>
{
    if !preconditions("exec_probes_run_under_a_flagged_filter_and_a_notify_profile_refuses_them") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btxs3",
        net: 107,
        port: 17490,
        with_image: true,
    })?;
    // libcontainer hands the notify listener fd to this socket at each
    // start; the connection waits in its backlog (nothing here answers, and
    // the payload never makes the notified call)
    let socket = a.dir.join("listener.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket)?;
    let profiles = a.state_dir.join("seccomp");
    std::fs::create_dir_all(&profiles)?;
    let flagged = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [{"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    std::fs::write(profiles.join("flagged.json"), flagged.to_string())?;
    let notify = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": socket,
        "syscalls": [{"names": ["acct"], "action": "SCMP_ACT_NOTIFY"}]
    });
    std::fs::write(profiles.join("notify.json"), notify.to_string())?;
    a.write_manifest(
        "p.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: xs
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: flagged
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "7490"]
    securityContext:
      seccompProfile: {{type: Localhost, localhostProfile: flagged.json}}
    readinessProbe:
      periodSeconds: 1
      exec:
        command: ["sh", "-c", "grep -q '^Seccomp:.2$' /proc/self/status && grep -q '^Seccomp_filters:.1$' /proc/self/status && ! unshare -U true"]
  - name: notified
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "7491"]
    securityContext:
      allowPrivilegeEscalation: false
      seccompProfile: {{type: Localhost, localhostProfile: notify.json}}
    livenessProbe:
      periodSeconds: 1
      failureThreshold: 1
      exec:
        command: ["sh", "-c", "echo > /tmp/probe-ran"]
"#
        ),
    )?;
    a.start()?;
    let status = |a: &Agent| a.get_json("/api/v1/status").unwrap_or(Value::Null);
    a.wait_for("flagged Ready", Duration::from_secs(60), |v| {
        let ss = Agent::pod(v, "xs")?["status"]["containerStatuses"].as_array()?;
        ss.iter()
            .any(|s| s["name"] == "flagged" && s["ready"] == true)
            .then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\nstatus: {}", status(&a)))?;

    // the notify container's liveness probe: errored, with the reason
    let t0 = Instant::now();
    let event = loop {
        let ev = a.get_json("/api/v1/events")?;
        let found = ev["items"].as_array().into_iter().flatten().find(|e| {
            e["reason"] == "Unhealthy"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("Liveness probe errored:"))
        });
        if let Some(e) = found {
            break e.clone();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no 'Liveness probe errored' event: {ev}\nstatus: {}\nlog:\n{}",
            status(&a),
            berth_e2e::tail(&a.log(), 40)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("event: {event}");
    let msg = event["message"].as_str().unwrap_or("");
    assert!(msg.contains("SCMP_ACT_NOTIFY"), "{event}");
    assert_eq!(event["type"], "Warning", "{event}");
    assert_eq!(event["involvedObject"]["kind"], "Pod", "{event}");
    assert_eq!(event["involvedObject"]["name"], "xs", "{event}");
    // the flagged container stayed ready all along (no restarts)
    let pods = a.get_json("/api/v1/pods")?;
    let ss = &Agent::pod(&pods, "xs").expect("pod")["status"]["containerStatuses"];
    let flagged = ss
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == "flagged")
        .expect("flagged status");
    assert_eq!(flagged["restartCount"], 0, "{flagged}");
    a.shutdown_clean()?;
    Ok(())
}

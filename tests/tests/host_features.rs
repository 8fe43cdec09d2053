//! The host items of issue 19 through the real binary: the route for the
//! service range (VIPs reachable from the host without a default route),
//! the host checks in `/api/v1/status` and `/metrics` (degraded mode), plain
//! logs when stderr is not a terminal, and `berth doctor`.

use std::process::Command;
use std::time::Duration;

use berth_e2e::{Agent, AgentOpts, berth_bin, preconditions};

fn route_of(cidr: &str) -> String {
    let out = Command::new("ip")
        .args(["-4", "route", "show", "exact", cidr])
        .output()
        .expect("ip route");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn service_route_host_checks_plain_logs_and_doctor() -> anyhow::Result<()> {
    if !preconditions("service_route_host_checks_plain_logs_and_doctor") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "bthost1",
        net: 25,
        port: 17260,
        with_image: false,
    })?;
    a.write_manifest("empty.yaml", "# nothing\n")?;
    a.start()?;
    a.wait_ready(Duration::from_secs(30))?;

    // the service range goes to the bridge, with the bridge's address as source
    let r = route_of(&a.service_cidr);
    let bridge = format!("{}0", a.instance);
    assert!(
        r.contains(&format!("dev {bridge}")) && r.contains("src 10.124.50.1"),
        "route for {}: {r:?}",
        a.service_cidr
    );

    // the host checks: every one in the status, with a level
    let st = a.get_json("/api/v1/status")?;
    let checks = st["host"]["checks"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    for want in [
        "kernel",
        "cgroups",
        "cgroup controller memory",
        "overlayfs",
        "nftables",
        "CA certificates",
    ] {
        assert!(names.contains(&want), "no check {want:?} in {names:?}");
    }
    assert!(
        checks
            .iter()
            .all(|c| c["level"].is_string() && c["found"].is_string()),
        "{checks:?}"
    );
    // a degraded host says so in a condition; a complete one has none
    let degraded = checks
        .iter()
        .any(|c| c["level"] == "degraded" || c["level"] == "missing");
    let cond = st["conditions"].as_array().and_then(|cs| {
        cs.iter()
            .find(|c| c["type"] == "HostFeaturesComplete")
            .cloned()
    });
    assert_eq!(
        degraded,
        cond.is_some(),
        "checks {checks:?}, condition {cond:?}"
    );
    let (code, metrics) = a.get("/metrics")?;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("berth_host_feature{check=\"cgroups\",level=\"ok\"} 1"),
        "{}",
        berth_e2e::tail(&metrics, 40)
    );

    // stderr is a file here: no colour codes
    let log = a.log();
    assert!(log.contains("berth agent started"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a log file:\n{}",
        berth_e2e::tail(&log, 10)
    );

    // berth doctor: reads the host, says what it found, exit 0 where the agent runs
    let out = Command::new(berth_bin())
        .args(["doctor", "--instance", &a.instance, "--manifests"])
        .arg(&a.manifests)
        .arg("--state-dir")
        .arg(&a.state_dir)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "doctor failed ({}):\n{text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "ok        configuration: ",
        "cgroups: ",
        "overlayfs: ",
        "nftables: ",
        "state dir: ",
        "summary: ",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
    assert!(!text.contains('\u{1b}'));

    // the route goes with the bridge
    a.stop();
    drop(a);
    assert_eq!(route_of("10.124.51.0/24"), "", "route left after cleanup");
    Ok(())
}

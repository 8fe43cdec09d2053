//! Issue 14: hostile local clients cannot take the agent down. A flood of
//! half-sent requests on the API (1,100 of them used up the agent's file
//! descriptors: the API stopped answering, manifests became unreadable and
//! reconciling stalled) must leave /healthz answering promptly and manifest
//! changes applied, while the flood is still held open.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use berth_e2e::{Agent, AgentOpts, IMAGE, http, preconditions};

const FLOOD: usize = 1_500;

fn pod(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [\"sleep\", \"7161\"]\n"
    )
}

fn configmap(value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flood\ndata:\n  v: {value}\n")
}

/// Open file descriptors of a process.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Raise this process's soft open-file limit: the flood needs 1,500 sockets.
fn raise_nofile() -> anyhow::Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    anyhow::ensure!(
        hard >= 4096,
        "hard open-file limit {hard} is too low for the flood"
    );
    Ok(())
}

#[test]
fn a_connection_flood_leaves_the_agent_working() -> anyhow::Result<()> {
    if !preconditions("a_connection_flood_leaves_the_agent_working") {
        return Ok(());
    }
    raise_nofile()?;
    let mut a = Agent::new(AgentOpts {
        instance: "bthc1",
        net: 61,
        port: 17161,
        with_image: true,
    })?;
    a.write_manifest("cm.yaml", &configmap("before"))?;
    a.start()?;
    a.wait_ready(Duration::from_secs(60))?;
    let pid = a.pid().expect("agent pid");
    let fds_before = fds(pid);

    // the flood: connections that send part of a request head and stop
    let t0 = Instant::now();
    let mut flood = Vec::with_capacity(FLOOD);
    for i in 0..FLOOD {
        let mut s = TcpStream::connect(("127.0.0.1", a.port))?;
        // the server may already have closed an evicted one: ignore write errors
        let _ = write!(
            s,
            "GET /api/v1/pods?n={i} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
        );
        flood.push(s);
    }
    eprintln!("opened {FLOOD} half-sent requests in {:?}", t0.elapsed());
    let fds_flood = fds(pid);

    // with the flood still held open: the API answers promptly...
    let t1 = Instant::now();
    let (code, body) = http(a.port, "GET", "/healthz")?;
    let took = t1.elapsed();
    assert_eq!((code, body.as_str()), (200, "ok"));
    assert!(
        took < Duration::from_secs(3),
        "/healthz took {took:?} during the flood"
    );

    // ...and manifest changes are read and reconciled
    a.write_manifest("cm.yaml", &configmap("after"))?;
    a.write_manifest("pod.yaml", &pod("survivor"))?;
    let t2 = Instant::now();
    loop {
        let cm = a.get_json("/api/v1/namespaces/default/configmaps/flood");
        if cm.as_ref().is_ok_and(|v| v["data"]["v"] == "after") {
            break;
        }
        assert!(
            t2.elapsed() < Duration::from_secs(30),
            "ConfigMap change not applied during the flood: {cm:?}\n{}",
            berth_e2e::tail(&a.log(), 30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    a.wait_for("survivor Running", Duration::from_secs(90), |v| {
        (Agent::pod(v, "survivor")?["status"]["phase"] == "Running").then_some(())
    })?;
    let log = a.log();
    assert!(
        !log.contains("Too many open files"),
        "the agent ran out of descriptors:\n{}",
        berth_e2e::tail(&log, 30)
    );
    // the flood cost about the connection cap in descriptors, not one per
    // flooding connection (1,500): evicted connections close on their own
    // task, so a burst of evictions can briefly hold more than the cap (349
    // with 18 before was seen once, 282 usually)
    assert!(
        fds_flood < fds_before + 2 * 256,
        "{fds_flood} descriptors during the flood ({fds_before} before)"
    );
    eprintln!("agent descriptors: {fds_before} before, {fds_flood} during the flood");
    drop(flood);

    // the half-sent requests are closed by the header timeout (10 s)
    let t3 = Instant::now();
    while fds(pid) > fds_before + 32 {
        assert!(
            t3.elapsed() < Duration::from_secs(30),
            "{} descriptors 30 s after the flood ({fds_before} before)",
            fds(pid)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    a.shutdown_clean()?;
    Ok(())
}

//! Privileged: a real `kill -9` of an agent process. The test re-runs its own
//! binary as the "agent" (the ignored `agent_child` test, driven by env vars),
//! which starts two containers and is SIGKILLed; a new runtime on the same
//! dirs then learns how both are doing.

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_contract::{ContainerConfig, ContainerState, Runtime, Sandbox};
use berth_runtime::{RuntimeConfig, ShimRuntime};
use common::{Harness, require_root};

#[tokio::test(flavor = "multi_thread")]
#[ignore = "the agent half of agent_killed_with_sigkill, run by it"]
async fn agent_child() {
    let Ok(spec) = std::env::var("BTRT_AGENT_CHILD") else {
        return;
    };
    let (cfg_run, cfg_state, instance, shim, containers): (
        String,
        String,
        String,
        String,
        Vec<ContainerConfig>,
    ) = serde_json::from_str(&spec).unwrap();
    let mut cfg = RuntimeConfig::new(&instance, cfg_run.as_ref(), cfg_state.as_ref());
    cfg.shim_path = shim.into();
    let rt = ShimRuntime::new(cfg).unwrap();
    for c in &containers {
        rt.run(c).await.unwrap();
    }
    println!("STARTED");
    tokio::time::sleep(Duration::from_secs(600)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_killed_with_sigkill() {
    require_root!();
    let h = Harness::new("btrt15");
    let pod = h.pod("killed");
    let sb: Sandbox = h.sandbox(&pod, None).await;
    let long = h.container(&sb, "long", &["/bin/sh", "-c", "sleep 300"]);
    let short = h.container(
        &sb,
        "short",
        &["/bin/sh", "-c", "sleep 1; echo done; exit 9"],
    );
    let spec = serde_json::to_string(&(
        h.cfg.run_dir.display().to_string(),
        h.cfg.state_dir.display().to_string(),
        h.instance.clone(),
        h.cfg.shim_path.display().to_string(),
        vec![long.clone(), short.clone()],
    ))
    .unwrap();
    let mut agent = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "agent_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BTRT_AGENT_CHILD", spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(agent.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.contains("STARTED"))),
        "the agent child did not start its containers"
    );
    // kill -9 the agent while both run; the short one ends while no agent is there
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let st = agent.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // a "restarted agent": a fresh runtime on the same dirs
    let rt = ShimRuntime::new(h.cfg.clone()).unwrap();
    let list = rt.list().await.unwrap();
    let state = |id: &str| list.iter().find(|c| c.id == id).map(|c| c.state.clone());
    assert!(
        matches!(state(&long.id), Some(ContainerState::Running { .. })),
        "{:?}",
        state(&long.id)
    );
    assert!(
        matches!(
            state(&short.id),
            Some(ContainerState::Exited { exit_code: 9, .. })
        ),
        "{:?}",
        state(&short.id)
    );
    assert_eq!(h.log_lines(&short.id, "stdout").await, vec!["done"]);
    rt.stop(&long.id, Duration::from_millis(100)).await.unwrap();
    assert!(matches!(
        h.wait(&long.id).await,
        ContainerState::Exited {
            signal: Some(9),
            ..
        }
    ));
}

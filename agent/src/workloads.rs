//! Wiring of the host-facing crates into the reconciler: the content store,
//! the pod network, the container runtime, and the control loop. Everything
//! here is set up once at start; the loop runs until shutdown, and shutdown
//! leaves workloads running (their shims own them).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use berth_image::{ImageStore, ImageStoreConfig};
use berth_net::{HostNetwork, NetConfig};
use berth_reconciler::{DesiredRx, Reconciler, ReconcilerConfig, StatusWriter};
use berth_runtime::{RuntimeConfig, ShimRuntime};
use tokio::sync::watch;

use crate::config::Config;

pub async fn start_workloads(
    cfg: &Config,
    desired_rx: DesiredRx,
    status_tx: StatusWriter,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let mut icfg = ImageStoreConfig::new(cfg.state_dir.join("images"));
    icfg.import_dir = Some(cfg.image_dir.clone());
    icfg.docker_config = cfg.registry_config.clone();
    icfg.insecure_registries = cfg.insecure_registries.clone();
    let mut mirrors: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in &cfg.registry_mirrors {
        if let Some((host, url)) = m.split_once('=') {
            mirrors
                .entry(host.to_string())
                .or_default()
                .push(url.to_string());
        }
    }
    icfg.mirrors = mirrors;
    icfg.layer_limits.max_bytes = cfg.max_layer_bytes;
    icfg.archive_limits.max_bytes = cfg.max_archive_bytes;
    let images = Arc::new(
        ImageStore::open(icfg)
            .await
            .context("opening the image store")?,
    );
    images.spawn_import_watcher();

    let mut ncfg = NetConfig::new(&cfg.instance);
    ncfg.pod_cidr = cfg.pod_cidr.parse().context("--pod-cidr")?;
    ncfg.service_cidr = cfg.service_cidr.parse().context("--service-cidr")?;
    ncfg.run_dir = cfg.run_dir.clone();
    ncfg.state_dir = cfg.state_dir.clone();
    let net = Arc::new(
        HostNetwork::new(ncfg)
            .await
            .context("setting up the pod network")?,
    );

    // Secrets and memory-backed emptyDirs live under <run>/pods: keep that on
    // tmpfs even where /run is on disk, so secret data never reaches a disk.
    ensure_tmpfs(&cfg.run_dir.join("pods")).context("preparing the tmpfs for pod files")?;

    let mut rt_cfg = RuntimeConfig::new(&cfg.instance, &cfg.run_dir, &cfg.state_dir);
    // hostPath volumes are resolved beneath the prefixes the policy allows,
    // so a symlink in an allowed directory cannot lead a mount out of it
    rt_cfg.host_path_prefixes = cfg.policy.as_ref().map(|p| {
        p.policy
            .allowed_host_paths
            .iter()
            .map(|r| std::path::PathBuf::from(&r.path_prefix))
            .collect()
    });
    let runtime = Arc::new(ShimRuntime::new(rt_cfg).context("starting the container runtime")?);

    let rcfg = ReconcilerConfig {
        state_dir: cfg.state_dir.clone(),
        run_dir: cfg.run_dir.clone(),
        node_name: cfg.node_name.clone(),
        host_ip: net.host_ip(),
        resync: Duration::from_secs(5),
        image_gc_interval: Duration::from_secs(300),
    };
    tracing::info!(bridge = %net.config().bridge(), gateway = %net.gateway(), "workloads ready");
    Reconciler::new(images, runtime, net, rcfg, status_tx)
        .run(desired_rx, shutdown)
        .await;
    Ok(())
}

/// Mount a tmpfs on `dir` unless it already is on one (idempotent across agent restarts).
fn ensure_tmpfs(dir: &std::path::Path) -> Result<()> {
    use nix::mount::{MsFlags, mount};
    use nix::sys::statfs::{TMPFS_MAGIC, statfs};
    std::fs::create_dir_all(dir)?;
    if statfs(dir)?.filesystem_type() == TMPFS_MAGIC {
        return Ok(());
    }
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0711,size=256m"),
    )
    .with_context(|| format!("mounting tmpfs on {}", dir.display()))?;
    Ok(())
}

//! The `berth` binary: a declarative container host agent.
//!
//! `main` is the startup story (G13): parse and validate all configuration
//! (exit 64 before any side effect on bad config), init logging, create the
//! state and run dirs, start the manifest sources, the HTTP API and the
//! workloads (reconciler), log the bound address and instance, then wait for
//! SIGTERM/SIGINT. Shutdown stops the sources and the API and never touches
//! workloads (their shims own them); a second signal forces the exit.
//!
//! Subcommands `validate` and `schema` never touch the host; `doctor` only
//! reads it.

#![forbid(unsafe_code)]

mod api;
mod config;
mod dirs;
mod host;
mod logging;
mod policy;
mod rollout;
mod sources;
mod validate_cmd;
mod workloads;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, watch};

use crate::config::{Command, Config, EXIT_CONFIG};
use crate::sources::{Hub, NodeInfo};
use crate::workloads::start_workloads;

/// How long stopping sources and the API may take before we exit anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Watch and log-follow streams one API client may hold open.
const API_STREAMS_PER_CLIENT: usize = 32;
/// Streams of all clients together (half the connection cap, so streams
/// never hold every connection).
const API_STREAMS_TOTAL: usize = 128;

fn main() -> ExitCode {
    let cli = match config::parse_cli(std::env::args_os()) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_CONFIG as u8 } else { 0 });
        }
    };
    match &cli.command {
        Some(Command::Validate { paths, policy }) => {
            return ExitCode::from(validate_cmd::run(paths, policy.as_deref()) as u8);
        }
        Some(Command::Schema) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&berth_spec::json_schema()).unwrap_or_default()
            );
            return ExitCode::SUCCESS;
        }
        Some(Command::Doctor { agent }) => {
            return ExitCode::from(host::doctor::run(agent) as u8);
        }
        None => {}
    }
    let cfg = match config::resolve(&cli.agent, &config::Host::real()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth: {}", sources::git::error_chain(&e));
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    logging::init(cfg.log_format);
    // libnftables' one context, before the open-file limit goes up (its
    // socket must stay below 1024) and on this thread (the host's netns)
    berth_net::prepare_nft();
    raise_fd_limit();
    // two malloc arenas for all threads (glibc's default allows 16 on two
    // cores): the blocking pool's threads come and go in bursts and each
    // arena kept its freed pages resident (see trim_heap)
    berth_runtime::heap::cap_arenas(2);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "berth stopped");
            ExitCode::FAILURE
        }
    }
}

/// Raise the soft limit on open files to the hard limit: containers, image
/// layers, watches and API clients all need descriptors, and the API's
/// connection cap is meant to sit far below this limit.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open-file limit"),
            Err(e) => tracing::warn!(soft, hard, error = %e, "cannot raise the open-file limit"),
        },
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the open-file limit"),
    }
}

/// Threads of the blocking pool (tokio's default is 512): container
/// starts, netns handles, image unpacks and file I/O. A burst of 100 pod
/// starts queues here instead of holding a hundred threads (stacks, malloc
/// caches) that stay resident until they time out.
const MAX_BLOCKING_THREADS: usize = 32;
/// An idle blocking thread exits after this (tokio's default is 10 s): the
/// idle agent after a burst holds no threads, and a new burst's thread costs
/// tens of microseconds to start.
const BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(1);

/// How often freed heap pages are given back to the kernel.
const HEAP_TRIM_INTERVAL: Duration = Duration::from_secs(3);

/// After a burst of work (pods started or removed, an image unpacked, a
/// revision parsed) the freed heap stays resident; giving it back every few
/// seconds keeps the idle agent at its working set. A trim takes well under a
/// millisecond on this heap.
fn trim_heap() {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(HEAP_TRIM_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // freed heap means a burst of work ended: the code only it (or
            // start-up) ran need not stay resident either
            if berth_runtime::heap::trim() {
                berth_runtime::heap::drop_code_pages();
            }
        }
    });
}

async fn run(cfg: Config) -> Result<()> {
    trim_heap();
    for d in [&cfg.state_dir, &cfg.run_dir] {
        dirs::ensure_private_dir(d).with_context(|| format!("preparing {}", d.display()))?;
    }
    // what this host offers: reported (degraded mode), never a reason to
    // stop; probed beside start-up, so the API does not wait for it
    let host_report = Arc::new(host::HostCell::default());
    {
        let cell = host_report.clone();
        let roots = host::Roots::real(cfg.state_dir.clone());
        tokio::task::spawn_blocking(move || {
            let https = berth_image::pull::Puller::new(Default::default()).https_available();
            let report = host::probe(&roots, https);
            report.log();
            cell.set(report);
        });
    }
    let (shutdown_tx, shutdown) = watch::channel(false);
    let (desired_tx, desired_rx) = berth_reconciler::desired_channel();
    let (status_tx, status_rx) = berth_reconciler::status_channel();
    let rollouts = rollout::Rollouts::new(&cfg.state_dir, cfg.rollout.clone());
    let hub = Hub::with_rollouts(
        desired_tx,
        NodeInfo {
            name: cfg.node_name.clone(),
            labels: cfg.node_labels.clone(),
        },
        cfg.policy.as_ref().map(|p| Arc::new(p.policy.clone())),
        Some(rollouts),
    );
    match &cfg.policy {
        Some(p) => tracing::info!(policy = %p.path.display(), "operator policy in force"),
        None => tracing::warn!(
            "no --policy: manifests may use privileged containers, hostPath, hostNetwork and added capabilities (whoever writes them is root on this host)"
        ),
    }

    // sources: register all before any publishes, so `complete` waits for every one
    let mut tasks = Vec::new();
    let handles: Vec<_> = cfg
        .manifests
        .iter()
        .map(|d| (d.clone(), hub.register()))
        .collect();
    let git = cfg
        .git
        .clone()
        .map(|g| (g, hub.register(), Arc::new(Notify::new())));
    for (dir, h) in handles {
        tasks.push(tokio::spawn(sources::dir::run(
            dir,
            cfg.manifests_resync,
            h,
            shutdown.clone(),
        )));
    }
    let git_sync = git.as_ref().map(|g| g.2.clone());
    if let Some((g, h, notify)) = git {
        let webhook = g.webhook_secret.clone();
        tasks.push(tokio::spawn(sources::git::run(
            g,
            cfg.state_dir.clone(),
            h,
            notify,
            shutdown.clone(),
        )));
        let _ = webhook;
    }

    tasks.push(tokio::spawn(rollout::run(
        hub.clone(),
        status_rx.clone(),
        shutdown.clone(),
    )));

    // HTTP API
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let state = api::ApiState {
        view: hub.view(),
        status: status_rx,
        instance: cfg.instance.as_str().into(),
        node: cfg.node_name.as_str().into(),
        token: cfg.api_token.as_deref().map(Into::into),
        git_sync,
        webhook_secret: cfg
            .git
            .as_ref()
            .and_then(|g| g.webhook_secret.as_deref())
            .map(Into::into),
        shutdown: shutdown.clone(),
        streams: api::limits::StreamLimiter::new(API_STREAMS_PER_CLIENT, API_STREAMS_TOTAL),
        page: api::PageCtx {
            node_labels: Arc::new(cfg.node_labels.clone()),
            host: host_report.clone(),
            ..Default::default()
        },
        model: api::model_cache(),
    };
    tasks.push(tokio::spawn(api::usage::run(
        berth_runtime::ShimRuntime::new(berth_runtime::RuntimeConfig::new(
            &cfg.instance,
            &cfg.run_dir,
            &cfg.state_dir,
        ))
        .context("opening the container runtime for usage sampling")?,
        state.page.usage.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(api::serve::serve(
        listener,
        api::router(state),
        api::serve::Limits::default(),
        shutdown.clone(),
    )));
    tracing::info!(instance = %cfg.instance, listen = %addr, node = %cfg.node_name, sources = cfg.manifests.len() + usize::from(cfg.git.is_some()), "berth agent started");

    // workloads
    let wcfg = cfg.clone();
    let wshutdown = shutdown.clone();
    let workloads =
        tokio::spawn(async move { start_workloads(&wcfg, desired_rx, status_tx, wshutdown).await });

    // wait for a signal; the second one forces the exit
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping sources and API; workloads keep running"),
        _ = int.recv() => tracing::info!("SIGINT: stopping sources and API; workloads keep running"),
    }
    let _ = shutdown_tx.send(true);
    let stop = async {
        for t in tasks {
            let _ = t.await;
        }
        match workloads.await {
            Ok(Err(e)) => {
                tracing::error!(error = format!("{e:#}"), "workloads stopped with an error")
            }
            Err(e) => tracing::error!(error = %e, "workloads task failed"),
            Ok(Ok(())) => {}
        }
    };
    tokio::select! {
        _ = stop => tracing::info!("berth stopped"),
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::warn!("shutdown took too long; exiting anyway"),
        _ = term.recv() => tracing::warn!("second signal: exiting now"),
        _ = int.recv() => tracing::warn!("second signal: exiting now"),
    }
    Ok(())
}

//! Agent configuration: flags > environment (`BERTH_<FLAG>`) > `--config` YAML file (G14).
//!
//! [`resolve`] is a pure function over the three layers handed in as values
//! ([`Raw`] from the command line, an env lookup function, the file's text),
//! so tests never touch the process environment. clap still declares the
//! `env = "BERTH_..."` names (they show up in `--help`); [`cli_command`]
//! strips them before parsing so clap itself never reads the environment and
//! every env value goes through the same lookup.
//!
//! Repeatable options read from the environment or from a single string are
//! comma-separated (`BERTH_MANIFESTS=/a,/b`). Everything is validated here,
//! before any side effect: a bad value is a [`ConfigError`] naming the key
//! and the value, and the binary exits 64.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::Deserialize;

use crate::policy::{LoadedPolicy, MAX_POLICY_BYTES, PolicyError, read_bounded};
use rollout::{rollout_settings, yaml_scalar};

pub use berth_reconciler::rollout::Settings as RolloutSettings;

mod rollout;

/// Exit code for bad configuration (EX_USAGE).
pub const EXIT_CONFIG: i32 = 64;

/// Files the configuration names (config, token, secrets, policy) are read up to this size.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "berth: a declarative container host agent",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub agent: AgentArgs,
}

// `Doctor` carries the agent flags; the enum is parsed once at start
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check manifests (files or directories, recursively); print every finding; exit 1 on any error.
    Validate {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Also apply this operator policy (as the agent would with --policy)
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
    /// Print the JSON Schema of berth manifests (for yaml-language-server).
    Schema,
    /// Check this host for berth: kernel, cgroups and controllers, overlayfs,
    /// nftables, namespaces, seccomp, PSI, forwarding, state dir, disk, CA
    /// bundle, the systemd unit; exit 1 when something required is missing.
    /// Takes the agent's flags (default config: /etc/berth/config.yaml).
    Doctor {
        #[command(flatten)]
        agent: AgentArgs,
    },
}

/// The agent's flags. No clap defaults: a value missing here may come from env or the file.
#[derive(Debug, Default, Clone, Args, PartialEq)]
pub struct AgentArgs {
    /// Directory of manifests to watch (repeatable)
    #[arg(long, env = "BERTH_MANIFESTS", value_name = "DIR")]
    pub manifests: Vec<String>,
    /// Full re-read of manifest directories as a safety net [default: 60s]
    #[arg(long, env = "BERTH_MANIFESTS_RESYNC", value_name = "DURATION")]
    pub manifests_resync: Option<String>,
    /// Git repository URL (https://, ssh://, file://)
    #[arg(long, env = "BERTH_GIT", value_name = "URL")]
    pub git: Option<String>,
    /// Branch, tag or 40-hex commit to follow [default: main]
    #[arg(long, env = "BERTH_GIT_BRANCH")]
    pub git_branch: Option<String>,
    /// Path inside the repository (repeatable; `{node}` becomes the node name) [default: /]
    #[arg(long, env = "BERTH_GIT_PATH")]
    pub git_path: Vec<String>,
    /// Fetch interval [default: 30s]
    #[arg(long, env = "BERTH_GIT_INTERVAL", value_name = "DURATION")]
    pub git_interval: Option<String>,
    /// File with the shared secret for POST /api/v1/sources/git/sync
    #[arg(long, env = "BERTH_GIT_WEBHOOK_SECRET_FILE", value_name = "FILE")]
    pub git_webhook_secret_file: Option<String>,
    /// SSH private key for ssh:// remotes
    #[arg(long, env = "BERTH_GIT_SSH_KEY", value_name = "FILE")]
    pub git_ssh_key: Option<String>,
    /// known_hosts file for ssh:// remotes
    #[arg(long, env = "BERTH_GIT_KNOWN_HOSTS", value_name = "FILE")]
    pub git_known_hosts: Option<String>,
    /// Instance name, prefix of every host resource [default: berth]
    #[arg(long, env = "BERTH_INSTANCE")]
    pub instance: Option<String>,
    /// [default: /var/lib/<instance>]
    #[arg(long, env = "BERTH_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<String>,
    /// [default: /run/<instance>]
    #[arg(long, env = "BERTH_RUN_DIR", value_name = "DIR")]
    pub run_dir: Option<String>,
    /// Image archives to import [default: <state-dir>/images/import]
    #[arg(long, env = "BERTH_IMAGE_DIR", value_name = "DIR")]
    pub image_dir: Option<String>,
    /// HTTP API address [default: 127.0.0.1:7070]
    #[arg(long, env = "BERTH_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// [default: 10.44.0.0/16]
    #[arg(long, env = "BERTH_POD_CIDR")]
    pub pod_cidr: Option<String>,
    /// [default: 10.45.0.0/16]
    #[arg(long, env = "BERTH_SERVICE_CIDR")]
    pub service_cidr: Option<String>,
    /// [default: the hostname]
    #[arg(long, env = "BERTH_NODE_NAME")]
    pub node_name: Option<String>,
    /// Node labels k=v,... (kubernetes.io/hostname and kubernetes.io/arch are added)
    #[arg(long, env = "BERTH_NODE_LABELS")]
    pub node_labels: Option<String>,
    /// Bearer token file for the API (required when --listen is not loopback)
    #[arg(long, env = "BERTH_API_TOKEN_FILE", value_name = "FILE")]
    pub api_token_file: Option<String>,
    /// YAML configuration file (keys are the flag names)
    #[arg(long, env = "BERTH_CONFIG", value_name = "FILE")]
    pub config: Option<String>,
    /// text or json [default: text]
    #[arg(long, env = "BERTH_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Docker-style config.json with registry credentials
    #[arg(long, env = "BERTH_REGISTRY_CONFIG", value_name = "FILE")]
    pub registry_config: Option<String>,
    /// Registry reachable over plain HTTP (repeatable)
    #[arg(long, env = "BERTH_INSECURE_REGISTRY", value_name = "HOST")]
    pub insecure_registry: Vec<String>,
    /// Mirror for a registry, host=url (repeatable)
    #[arg(long, env = "BERTH_REGISTRY_MIRROR", value_name = "HOST=URL")]
    pub registry_mirror: Vec<String>,
    /// Largest unpacked image layer (bytes of file content, e.g. 8Gi)
    #[arg(long, env = "BERTH_MAX_LAYER_SIZE", value_name = "BYTES")]
    pub max_layer_size: Option<String>,
    /// Largest size an image archive may expand to when imported (e.g. 16Gi)
    #[arg(long, env = "BERTH_MAX_ARCHIVE_SIZE", value_name = "BYTES")]
    pub max_archive_size: Option<String>,
    /// Operator policy (berth.dev/v1alpha1 Policy): what manifests may ask of the host
    #[arg(long, env = "BERTH_POLICY", value_name = "FILE")]
    pub policy: Option<String>,
    /// How long a revision's changed workloads must stay Ready, without a restart, to be healthy [default: 30s]
    #[arg(long, env = "BERTH_ROLLOUT_SOAK", value_name = "DURATION")]
    pub rollout_soak: Option<String>,
    /// Deadline for a revision to become healthy [default: the largest progressDeadlineSeconds of the changed Deployments, else 120s]
    #[arg(long, env = "BERTH_ROLLOUT_DEADLINE", value_name = "DURATION")]
    pub rollout_deadline: Option<String>,
    /// Restarts of a changed container that fail its revision [default: 3]
    #[arg(long, env = "BERTH_ROLLOUT_CRASH_LOOP_RESTARTS", value_name = "N")]
    pub rollout_crash_loop_restarts: Option<String>,
    /// Re-apply the last healthy revision when a new one fails (true or false) [default: true]
    #[arg(long, env = "BERTH_AUTO_ROLLBACK", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub auto_rollback: Option<String>,
}

/// The `--config` file: the flag names as keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    manifests: Option<Vec<String>>,
    manifests_resync: Option<String>,
    git: Option<String>,
    git_branch: Option<String>,
    git_path: Option<Vec<String>>,
    git_interval: Option<String>,
    git_webhook_secret_file: Option<String>,
    git_ssh_key: Option<String>,
    git_known_hosts: Option<String>,
    instance: Option<String>,
    state_dir: Option<String>,
    run_dir: Option<String>,
    image_dir: Option<String>,
    listen: Option<String>,
    pod_cidr: Option<String>,
    service_cidr: Option<String>,
    node_name: Option<String>,
    node_labels: Option<NodeLabels>,
    api_token_file: Option<String>,
    log_format: Option<String>,
    registry_config: Option<String>,
    insecure_registry: Option<Vec<String>>,
    registry_mirror: Option<Vec<String>>,
    max_layer_size: Option<String>,
    max_archive_size: Option<String>,
    policy: Option<String>,
    rollout_soak: Option<String>,
    rollout_deadline: Option<String>,
    rollout_crash_loop_restarts: Option<serde_norway::Value>,
    auto_rollback: Option<serde_norway::Value>,
}

/// `node-labels` in the file may be a map or the flag's `k=v,...` string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum NodeLabels {
    Map(BTreeMap<String, String>),
    Text(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value {value:?} for {key}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("reading config file {path}")]
    ReadFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    ParseFile { path: String, message: String },
    #[error("no manifest source: give --manifests DIR and/or --git URL")]
    NoSource,
    #[error(
        "--listen {0} is not a loopback address: an --api-token-file is required so the API is not open to the network"
    )]
    TokenRequired(SocketAddr),
    #[error("reading {key} {path}")]
    ReadSecret {
        key: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{key} {path} is empty")]
    EmptySecret { key: &'static str, path: String },
    #[error("cannot determine the node name (give --node-name)")]
    NoNodeName,
    /// `--policy`: unreadable, unparsable or invalid (never "allow all").
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GitConfig {
    pub url: String,
    /// Branch, tag or 40-hex commit.
    pub branch: String,
    /// Paths inside the repository, `{node}` already replaced, without leading `/` (`""` = root).
    pub paths: Vec<String>,
    pub interval: Duration,
    pub webhook_secret: Option<String>,
    pub ssh_key: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
}

/// The validated configuration of a running agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub manifests: Vec<PathBuf>,
    pub manifests_resync: Duration,
    pub git: Option<GitConfig>,
    pub instance: String,
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub image_dir: PathBuf,
    pub listen: SocketAddr,
    /// Validated CIDR text (e.g. `10.44.0.0/16`).
    pub pod_cidr: String,
    pub service_cidr: String,
    pub node_name: String,
    /// User labels plus `kubernetes.io/hostname` and `kubernetes.io/arch`.
    pub node_labels: BTreeMap<String, String>,
    pub api_token: Option<String>,
    pub log_format: LogFormat,
    pub registry_config: Option<PathBuf>,
    pub insecure_registries: Vec<String>,
    /// `host=url` entries, validated.
    pub registry_mirrors: Vec<String>,
    /// Bound on one unpacked layer's file content, in bytes.
    pub max_layer_bytes: u64,
    /// Bound on what one image archive expands to, in bytes.
    pub max_archive_bytes: u64,
    /// The operator's policy; None: manifests get what kubelet would give them.
    pub policy: Option<LoadedPolicy>,
    /// Health-gated rollouts: soak, deadline, crash-loop threshold, auto-rollback.
    pub rollout: RolloutSettings,
}

/// What the outside world provides besides the three layers (kept injectable for tests).
pub struct Host<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub read_file: &'a dyn Fn(&str) -> std::io::Result<String>,
    pub hostname: &'a dyn Fn() -> Option<String>,
}

impl Host<'static> {
    /// The real process environment, file system and hostname.
    pub fn real() -> Self {
        Host {
            env: &|k| std::env::var(k).ok(),
            read_file: &|p| read_bounded(std::path::Path::new(p), MAX_FILE_BYTES),
            hostname: &default_hostname,
        }
    }
}

/// The clap command with its `env` attributes removed (see module docs).
pub fn cli_command() -> clap::Command {
    let mut cmd = Cli::command();
    let ids: Vec<String> = cmd
        .get_arguments()
        .filter(|a| a.get_env().is_some())
        .map(|a| a.get_id().to_string())
        .collect();
    for id in ids {
        cmd = cmd.mut_arg(id, |a| a.env(None));
    }
    cmd
}

/// Parse the command line (no environment involved).
pub fn parse_cli<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let m = cli_command().try_get_matches_from(args)?;
    Cli::from_arg_matches(&m)
}

fn env_name(id: &str) -> String {
    format!("BERTH_{}", id.to_ascii_uppercase().replace('-', "_"))
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Fill every option the command line left empty from the environment.
fn env_layer(cli: &AgentArgs, env: &dyn Fn(&str) -> Option<String>) -> AgentArgs {
    let one = |cur: &Option<String>, id: &str| {
        cur.clone()
            .or_else(|| env(&env_name(id)).filter(|v| !v.is_empty()))
    };
    let many = |cur: &Vec<String>, id: &str| {
        if cur.is_empty() {
            env(&env_name(id))
                .map(|v| split_list(&v))
                .unwrap_or_default()
        } else {
            cur.clone()
        }
    };
    AgentArgs {
        manifests: many(&cli.manifests, "manifests"),
        manifests_resync: one(&cli.manifests_resync, "manifests-resync"),
        git: one(&cli.git, "git"),
        git_branch: one(&cli.git_branch, "git-branch"),
        git_path: many(&cli.git_path, "git-path"),
        git_interval: one(&cli.git_interval, "git-interval"),
        git_webhook_secret_file: one(&cli.git_webhook_secret_file, "git-webhook-secret-file"),
        git_ssh_key: one(&cli.git_ssh_key, "git-ssh-key"),
        git_known_hosts: one(&cli.git_known_hosts, "git-known-hosts"),
        instance: one(&cli.instance, "instance"),
        state_dir: one(&cli.state_dir, "state-dir"),
        run_dir: one(&cli.run_dir, "run-dir"),
        image_dir: one(&cli.image_dir, "image-dir"),
        listen: one(&cli.listen, "listen"),
        pod_cidr: one(&cli.pod_cidr, "pod-cidr"),
        service_cidr: one(&cli.service_cidr, "service-cidr"),
        node_name: one(&cli.node_name, "node-name"),
        node_labels: one(&cli.node_labels, "node-labels"),
        api_token_file: one(&cli.api_token_file, "api-token-file"),
        config: one(&cli.config, "config"),
        log_format: one(&cli.log_format, "log-format"),
        registry_config: one(&cli.registry_config, "registry-config"),
        insecure_registry: many(&cli.insecure_registry, "insecure-registry"),
        registry_mirror: many(&cli.registry_mirror, "registry-mirror"),
        max_layer_size: one(&cli.max_layer_size, "max-layer-size"),
        max_archive_size: one(&cli.max_archive_size, "max-archive-size"),
        // set but empty is an error later, never "no policy"
        policy: cli.policy.clone().or_else(|| env(&env_name("policy"))),
        rollout_soak: one(&cli.rollout_soak, "rollout-soak"),
        rollout_deadline: one(&cli.rollout_deadline, "rollout-deadline"),
        rollout_crash_loop_restarts: one(
            &cli.rollout_crash_loop_restarts,
            "rollout-crash-loop-restarts",
        ),
        auto_rollback: one(&cli.auto_rollback, "auto-rollback"),
    }
}

/// Fill what flags and env left empty from the config file.
fn file_layer(a: AgentArgs, f: FileConfig) -> AgentArgs {
    let many = |cur: Vec<String>, file: Option<Vec<String>>| {
        if cur.is_empty() {
            file.unwrap_or_default()
        } else {
            cur
        }
    };
    AgentArgs {
        manifests: many(a.manifests, f.manifests),
        manifests_resync: a.manifests_resync.or(f.manifests_resync),
        git: a.git.or(f.git),
        git_branch: a.git_branch.or(f.git_branch),
        git_path: many(a.git_path, f.git_path),
        git_interval: a.git_interval.or(f.git_interval),
        git_webhook_secret_file: a.git_webhook_secret_file.or(f.git_webhook_secret_file),
        git_ssh_key: a.git_ssh_key.or(f.git_ssh_key),
        git_known_hosts: a.git_known_hosts.or(f.git_known_hosts),
        instance: a.instance.or(f.instance),
        state_dir: a.state_dir.or(f.state_dir),
        run_dir: a.run_dir.or(f.run_dir),
        image_dir: a.image_dir.or(f.image_dir),
        listen: a.listen.or(f.listen),
        pod_cidr: a.pod_cidr.or(f.pod_cidr),
        service_cidr: a.service_cidr.or(f.service_cidr),
        node_name: a.node_name.or(f.node_name),
        node_labels: a.node_labels.or(f.node_labels.map(|l| match l {
            NodeLabels::Text(t) => t,
            NodeLabels::Map(m) => m
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        })),
        api_token_file: a.api_token_file.or(f.api_token_file),
        config: a.config,
        log_format: a.log_format.or(f.log_format),
        registry_config: a.registry_config.or(f.registry_config),
        insecure_registry: many(a.insecure_registry, f.insecure_registry),
        registry_mirror: many(a.registry_mirror, f.registry_mirror),
        max_layer_size: a.max_layer_size.or(f.max_layer_size),
        max_archive_size: a.max_archive_size.or(f.max_archive_size),
        policy: a.policy.or(f.policy),
        rollout_soak: a.rollout_soak.or(f.rollout_soak),
        rollout_deadline: a.rollout_deadline.or(f.rollout_deadline),
        rollout_crash_loop_restarts: a
            .rollout_crash_loop_restarts
            .or(f.rollout_crash_loop_restarts.map(yaml_scalar)),
        auto_rollback: a.auto_rollback.or(f.auto_rollback.map(yaml_scalar)),
    }
}

/// Merge flags > env > file and validate everything. Pure apart from what `host` reads.
///
/// # Errors
/// The first invalid value, with its key; a missing source; a non-loopback
/// `--listen` without `--api-token-file`; unreadable or empty secret files.
pub fn resolve(cli: &AgentArgs, host: &Host<'_>) -> Result<Config, ConfigError> {
    let merged = env_layer(cli, host.env);
    let merged = match merged.config.clone() {
        Some(path) => {
            let text = (host.read_file)(&path).map_err(|source| ConfigError::ReadFile {
                path: path.clone(),
                source,
            })?;
            let file: FileConfig = if text.trim().is_empty() {
                FileConfig::default()
            } else {
                serde_norway::from_str(&text).map_err(|e| ConfigError::ParseFile {
                    path: path.clone(),
                    message: e.to_string(),
                })?
            };
            file_layer(merged, file)
        }
        None => merged,
    };
    build(merged, host)
}

fn invalid(key: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn duration(
    key: &'static str,
    v: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => {
            let d = humantime::parse_duration(s).map_err(|e| invalid(key, s, e.to_string()))?;
            if d < Duration::from_secs(1) {
                return Err(invalid(key, s, "must be at least 1s"));
            }
            Ok(d)
        }
    }
}

fn read_secret(key: &'static str, path: &str, host: &Host<'_>) -> Result<String, ConfigError> {
    let text = (host.read_file)(path).map_err(|source| ConfigError::ReadSecret {
        key,
        path: path.to_string(),
        source,
    })?;
    let t = text.trim().to_string();
    if t.is_empty() {
        return Err(ConfigError::EmptySecret {
            key,
            path: path.to_string(),
        });
    }
    Ok(t)
}

fn build(a: AgentArgs, host: &Host<'_>) -> Result<Config, ConfigError> {
    if a.manifests.is_empty() && a.git.is_none() {
        return Err(ConfigError::NoSource);
    }
    let instance = a.instance.clone().unwrap_or_else(|| "berth".into());
    validate_instance(&instance)?;
    let listen_s = a.listen.clone().unwrap_or_else(|| "127.0.0.1:7070".into());
    let listen: SocketAddr = listen_s.parse().map_err(|_| {
        invalid(
            "--listen",
            &listen_s,
            "expected IP:PORT, e.g. 127.0.0.1:7070",
        )
    })?;
    let api_token = a
        .api_token_file
        .as_deref()
        .map(|p| read_secret("--api-token-file", p, host))
        .transpose()?;
    if !listen.ip().is_loopback() && api_token.is_none() {
        return Err(ConfigError::TokenRequired(listen));
    }
    let pod_cidr = a.pod_cidr.clone().unwrap_or_else(|| "10.44.0.0/16".into());
    check_cidr("--pod-cidr", &pod_cidr)?;
    let service_cidr = a
        .service_cidr
        .clone()
        .unwrap_or_else(|| "10.45.0.0/16".into());
    check_cidr("--service-cidr", &service_cidr)?;
    let node_name = match a.node_name.clone() {
        Some(n) => n,
        None => (host.hostname)().ok_or(ConfigError::NoNodeName)?,
    };
    if node_name.is_empty()
        || node_name.len() > 253
        || !node_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(invalid(
            "--node-name",
            &node_name,
            "must be a DNS name ([A-Za-z0-9.-], at most 253 characters)",
        ));
    }
    let node_labels = node_labels(a.node_labels.as_deref().unwrap_or(""), &node_name)?;
    let state_dir = PathBuf::from(
        a.state_dir
            .clone()
            .unwrap_or_else(|| format!("/var/lib/{instance}")),
    );
    let run_dir = PathBuf::from(
        a.run_dir
            .clone()
            .unwrap_or_else(|| format!("/run/{instance}")),
    );
    let image_dir = a
        .image_dir
        .clone()
        .map(PathBuf::from)
        .unwrap_or_else(|| state_dir.join("images/import"));
    let log_format = match a.log_format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => return Err(invalid("--log-format", other, "expected text or json")),
    };
    let size = |flag: &'static str, v: &Option<String>, default: u64| match v {
        None => Ok(default),
        Some(v) => match berth_spec::quantity::parse_bytes(v) {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(invalid(
                flag,
                v,
                "expected a positive size such as 8Gi or 500M",
            )),
        },
    };
    let max_layer_bytes = size(
        "--max-layer-size",
        &a.max_layer_size,
        berth_image::unpack::UnpackLimits::default().max_bytes,
    )?;
    let max_archive_bytes = size(
        "--max-archive-size",
        &a.max_archive_size,
        berth_image::archive::ArchiveLimits::default().max_bytes,
    )?;
    for m in &a.registry_mirror {
        match m.split_once('=') {
            Some((h, u))
                if !h.is_empty() && (u.starts_with("http://") || u.starts_with("https://")) => {}
            _ => {
                return Err(invalid(
                    "--registry-mirror",
                    m,
                    "expected HOST=URL with an http:// or https:// URL",
                ));
            }
        }
    }
    let rollout = rollout_settings(&a)?;
    let git = match &a.git {
        None => None,
        Some(url) => Some(git_config(url, &a, &node_name, host)?),
    };
    let policy = a
        .policy
        .as_deref()
        .map(|path| load_policy(path, host))
        .transpose()?;
    for key in [
        "git-branch",
        "git-interval",
        "git-webhook-secret-file",
        "git-ssh-key",
        "git-known-hosts",
    ] {
        let given = match key {
            "git-branch" => a.git_branch.is_some(),
            "git-interval" => a.git_interval.is_some(),
            "git-webhook-secret-file" => a.git_webhook_secret_file.is_some(),
            "git-ssh-key" => a.git_ssh_key.is_some(),
            _ => a.git_known_hosts.is_some(),
        };
        if given && git.is_none() {
            return Err(ConfigError::Invalid {
                key: "--git",
                value: String::new(),
                reason: format!("--{key} needs --git URL"),
            });
        }
    }
    Ok(Config {
        manifests: a.manifests.iter().map(PathBuf::from).collect(),
        manifests_resync: duration(
            "--manifests-resync",
            a.manifests_resync.as_deref(),
            Duration::from_secs(60),
        )?,
        git,
        instance,
        state_dir,
        run_dir,
        image_dir,
        listen,
        pod_cidr,
        service_cidr,
        node_name,
        node_labels,
        api_token,
        log_format,
        registry_config: a.registry_config.map(PathBuf::from),
        insecure_registries: a.insecure_registry,
        registry_mirrors: a.registry_mirror,
        max_layer_bytes,
        max_archive_bytes,
        policy,
        rollout,
    })
}

/// Read and check `--policy`; an empty path is an error, not "no policy".
fn load_policy(path: &str, host: &Host<'_>) -> Result<LoadedPolicy, ConfigError> {
    if path.trim().is_empty() {
        return Err(invalid("--policy", path, "expected a file name"));
    }
    let text = (host.read_file)(path).map_err(|source| PolicyError::Read {
        path: path.to_string(),
        source,
    })?;
    if text.len() as u64 > MAX_POLICY_BYTES {
        return Err(PolicyError::Read {
            path: path.to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("larger than {MAX_POLICY_BYTES} bytes"),
            ),
        }
        .into());
    }
    Ok(crate::policy::parse(path, &text)?)
}

fn git_config(
    url: &str,
    a: &AgentArgs,
    node: &str,
    host: &Host<'_>,
) -> Result<GitConfig, ConfigError> {
    if !["https://", "http://", "ssh://", "file://", "git@"]
        .iter()
        .any(|p| url.starts_with(p))
        && !url.starts_with('/')
    {
        return Err(invalid(
            "--git",
            url,
            "expected an https://, ssh://, git@host:path, file:// URL or an absolute path",
        ));
    }
    let branch = a.git_branch.clone().unwrap_or_else(|| "main".into());
    if branch.is_empty()
        || branch.contains("..")
        || branch.starts_with('-')
        || branch.contains(char::is_whitespace)
    {
        return Err(invalid(
            "--git-branch",
            &branch,
            "not a valid branch, tag or commit",
        ));
    }
    let raw_paths = if a.git_path.is_empty() {
        vec!["/".to_string()]
    } else {
        a.git_path.clone()
    };
    let mut paths = Vec::new();
    for p in &raw_paths {
        let p2 = p.replace("{node}", node);
        let trimmed = p2.trim_matches('/').to_string();
        if trimmed.split('/').any(|c| c == ".." || c == ".") {
            return Err(invalid(
                "--git-path",
                p,
                "must not contain . or .. components",
            ));
        }
        if !paths.contains(&trimmed) {
            paths.push(trimmed);
        }
    }
    Ok(GitConfig {
        url: url.to_string(),
        branch,
        paths,
        interval: duration(
            "--git-interval",
            a.git_interval.as_deref(),
            Duration::from_secs(30),
        )?,
        webhook_secret: a
            .git_webhook_secret_file
            .as_deref()
            .map(|p| read_secret("--git-webhook-secret-file", p, host))
            .transpose()?,
        ssh_key: a.git_ssh_key.clone().map(PathBuf::from),
        known_hosts: a.git_known_hosts.clone().map(PathBuf::from),
    })
}

/// The instance names host resources (`<instance>0` bridge: at most 15 bytes for an interface).
fn validate_instance(s: &str) -> Result<(), ConfigError> {
    if s.is_empty() || s.len() > 11 {
        return Err(invalid(
            "--instance",
            s,
            "must be 1 to 11 characters (it prefixes interface names)",
        ));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || !s.starts_with(|c: char| c.is_ascii_lowercase())
    {
        return Err(invalid(
            "--instance",
            s,
            "must be [a-z0-9-] and start with a letter",
        ));
    }
    Ok(())
}

fn check_cidr(key: &'static str, s: &str) -> Result<(), ConfigError> {
    let (ip, len) = s
        .split_once('/')
        .ok_or_else(|| invalid(key, s, "expected ADDRESS/PREFIX, e.g. 10.44.0.0/16"))?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| invalid(key, s, "not an IP address"))?;
    let len: u8 = len
        .parse()
        .map_err(|_| invalid(key, s, "prefix length is not a number"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len > max || len < 8 {
        return Err(invalid(key, s, format!("prefix length must be 8..={max}")));
    }
    Ok(())
}

fn node_labels(s: &str, node: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for kv in split_list(s) {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| invalid("--node-labels", &kv, "expected key=value"))?;
        if k.is_empty()
            || k.len() > 316
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            return Err(invalid("--node-labels", &kv, "not a valid label key"));
        }
        if v.len() > 63
            || !v
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid("--node-labels", &kv, "not a valid label value"));
        }
        out.insert(k.to_string(), v.to_string());
    }
    out.insert("kubernetes.io/hostname".into(), node.to_string());
    out.insert("kubernetes.io/arch".into(), kube_arch().to_string());
    out.insert("kubernetes.io/os".into(), "linux".into());
    Ok(out)
}

/// Go's GOARCH names, as Kubernetes uses them.
pub fn kube_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// `/etc/hostname`, else uname's nodename.
pub fn default_hostname() -> Option<String> {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
        })
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

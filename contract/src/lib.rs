//! The contracts between the reconciler and the crates that touch the host.
//!
//! `image/`, `runtime/` and `net/` depend on this crate and implement these
//! traits; the reconciler calls only through them, so planning and acting are
//! tested with fakes (G5). The data types here are plain values: nothing in
//! them refers to a live resource except by path or id.
//!
//! Lifecycle of one pod, as the reconciler drives it:
//!
//! ```text
//! net.ensure_pod(PodNetRequest)        -> PodNetwork { netns, ip, dns }   (idempotent)
//! runtime.ensure_sandbox(SandboxConfig)-> Sandbox { ipc/uts ns, etc files }(idempotent)
//! images.ensure(image, policy)         -> ImageInfo { layers, config }
//! runtime.run(ContainerConfig)         -> ContainerInfo (Running)         one per container
//! runtime.wait(id)                      resolves when the container exits (trigger only)
//! runtime.stop(id, grace) ; runtime.remove(id)
//! runtime.remove_sandbox(pod) ; net.remove_pod(pod)
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub mod conformance;

// === errors ===

/// How the reconciler reacts to a failed operation (G4). Never parse strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The thing does not exist (e.g. image not in store with policy Never, unknown container).
    NotFound,
    /// Already there; treat as done.
    AlreadyExists,
    /// The request itself is wrong (bad image reference, binary missing in image, bad workdir): don't retry until the spec changes.
    Invalid,
    /// Worth retrying with back-off (registry unreachable, EAGAIN, a busy resource).
    Transient,
    /// The host can't do it (no overlayfs, a cgroup controller missing).
    Unsupported,
    /// A bug or an unexpected host state.
    Internal,
}

/// Every error type crossing these traits can be classified.
pub trait Classify: std::error::Error + Send + Sync + 'static {
    fn kind(&self) -> ErrorKind;
}

/// The whole `source()` chain as one line, for status messages and events.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        s.push_str(": ");
        s.push_str(&e.to_string());
        cur = e.source();
    }
    s
}

// === names shared across the boundary ===

/// Labels the reconciler puts on each [`ContainerConfig`]; runtimes read them back.
pub const LABEL_CONTAINER: &str = "berth.dev/container";
/// How many times this container was restarted (a runtime shows it as `restartCount`).
pub const LABEL_RESTARTS: &str = "berth.dev/restarts";
pub const LABEL_INIT: &str = "berth.dev/init";
pub const LABEL_SPEC_HASH: &str = "berth.dev/spec-hash";

/// Reason of the `ContainerState::Failed` a runtime's `wait` returns when the
/// container's supervisor died before it recorded the end: the runtime has
/// killed what was left and recorded the end, which `status` then reports.
pub const REASON_SUPERVISOR_LOST: &str = "SupervisorLost";

/// Reason of the `ContainerState::Failed` a runtime reports for a container
/// that ran and ended without its end being recorded (its supervisor gone,
/// its exit status missing or unreadable). Kubelet reports such a container
/// as terminated with exit code 137 and this reason; it counts as a failure
/// for the restart policy and the back-off.
pub const REASON_STATUS_UNKNOWN: &str = "ContainerStatusUnknown";

// === pods ===

/// Identifies a pod instance. `uid` changes whenever the pod is replaced
/// (a new spec hash or a new Deployment pod), so leftovers of an older
/// instance never collide with the new one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    /// Short unique id (hex), stable for the life of this pod instance.
    pub uid: String,
}

impl PodRef {
    /// A host-unique, filesystem- and interface-safe key: `<namespace>_<name>_<uid>`.
    pub fn key(&self) -> String {
        format!("{}_{}_{}", self.namespace, self.name, self.uid)
    }
}

// === images ===

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// The parts of an OCI image config a container needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value`
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
}

/// An image ready to run: unpacked read-only layers, lowest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Normalised reference, e.g. `docker.io/library/busybox:latest`.
    pub reference: String,
    /// `sha256:<config digest>` (Kubernetes' imageID).
    pub image_id: String,
    /// `repo@sha256:<manifest digest>` when known.
    pub repo_digest: Option<String>,
    /// Unpacked layer directories, lowest first; used as overlayfs lowerdirs (top last).
    pub layers: Vec<PathBuf>,
    pub config: ImageConfig,
}

/// Why an image could not be made ready, shaped for Kubernetes reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageFailureReason {
    InvalidImageName,
    ErrImagePull,
    ErrImageNeverPull,
}

pub trait Images: Send + Sync + 'static {
    type Error: Classify;

    /// Make the image present (pulling or importing as the policy says) and
    /// its layers unpacked. Concurrent calls for the same image do the work once.
    fn ensure(
        &self,
        image: &str,
        policy: PullPolicy,
    ) -> impl Future<Output = Result<ImageInfo, Self::Error>> + Send;

    /// Kubernetes reason for a failure from `ensure`.
    fn failure_reason(err: &Self::Error) -> ImageFailureReason;

    /// Drop images and layers not named in `in_use` (normalised references or
    /// image ids) when disk usage passes the high threshold.
    fn gc(&self, in_use: &[String]) -> impl Future<Output = Result<GcReport, Self::Error>> + Send;

    /// Image archives whose import failed, as (file name, error): the
    /// current set, or `None` when it cannot be read without waiting.
    fn import_failures(&self) -> Option<Vec<(String, String)>> {
        Some(Vec::new())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    pub removed_images: Vec<String>,
    pub freed_bytes: u64,
}

// === network ===

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
    /// `None` = all host addresses.
    pub host_ip: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodNetRequest {
    pub pod: PodRef,
    /// Host network pods get no namespace, no IP of their own and no mappings.
    pub host_network: bool,
    /// Conflicts are resolved by the reconciler before this call.
    pub host_ports: Vec<HostPortMapping>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodNetwork {
    /// Bind-mounted network namespace to join; `None` for hostNetwork.
    pub netns: Option<PathBuf>,
    /// Pod IP (the host's primary address for hostNetwork pods, when known).
    pub ip: Option<Ipv4Addr>,
    /// Nameservers and search domains for the pod's resolv.conf.
    pub dns_servers: Vec<Ipv4Addr>,
    pub dns_search: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePort {
    pub name: Option<String>,
    pub protocol: Protocol,
    pub port: u16,
    /// Resolved numeric target port (named ports resolved by the reconciler).
    pub target_port: u16,
    /// Requested node port for `type: NodePort` (None = allocate one).
    pub node_port: Option<u16>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEntry {
    pub namespace: String,
    pub name: String,
    /// `spec.clusterIP` when given.
    pub cluster_ip: Option<Ipv4Addr>,
    /// Node ports are allocated (`type: NodePort` or `LoadBalancer`).
    pub node_port_type: bool,
    pub ports: Vec<ServicePort>,
    /// Ready endpoint addresses only.
    pub endpoints: Vec<Ipv4Addr>,
    /// `type: LoadBalancer`: besides the node ports, each `port` is
    /// published on the host's own addresses (as k3s's service load balancer does).
    #[serde(default)]
    pub load_balancer: bool,
    /// `clusterIP: None`: no virtual IP and no rules; DNS answers the ready
    /// endpoints' addresses.
    #[serde(default)]
    pub headless: bool,
    /// Ready endpoints with a DNS name of their own: a pod whose
    /// `spec.subdomain` names this Service, by its `spec.hostname` (StatefulSet
    /// pods: `web-0`), answered as `<hostname>.<service>.<namespace>.svc.<domain>`.
    #[serde(default)]
    pub endpoint_hosts: Vec<(String, Ipv4Addr)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAssigned {
    pub namespace: String,
    pub name: String,
    pub cluster_ip: Ipv4Addr,
    /// (port, allocated node port) for NodePort services.
    pub node_ports: Vec<(u16, u16)>,
    /// Per-service error (e.g. requested clusterIP outside the CIDR or taken).
    pub error: Option<String>,
}

pub trait Network: Send + Sync + 'static {
    type Error: Classify;

    /// Create (or find again) the pod's netns, veth, IP and hostPort rules. Idempotent.
    fn ensure_pod(
        &self,
        req: &PodNetRequest,
    ) -> impl Future<Output = Result<PodNetwork, Self::Error>> + Send;

    /// Remove the pod's veth, IP, netns and nft elements. Idempotent.
    fn remove_pod(&self, pod: &PodRef) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Pods that have network state on this host (for adoption and leak cleanup).
    fn list_pods(&self) -> impl Future<Output = Result<Vec<PodRef>, Self::Error>> + Send;

    /// Replace the whole Service table (VIPs, NodePorts, DNS names) with this set.
    fn sync_services(
        &self,
        services: &[ServiceEntry],
    ) -> impl Future<Output = Result<Vec<ServiceAssigned>, Self::Error>> + Send;
}

// === runtime ===

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxConfig {
    pub pod: PodRef,
    /// Pod name; written to /etc/hostname and set in the pod's UTS namespace.
    pub hostname: String,
    pub network: PodNetwork,
    /// Pod-level cgroup limits (sum of containers), optional.
    pub resources: Resources,
    /// `shareProcessNamespace`: one PID namespace for all the pod's
    /// containers, held by a small init process (PID 1 of the pod, as
    /// kubelet's pause container).
    #[serde(default)]
    pub share_process_namespace: bool,
    /// The pod's whole `/etc/hosts`, when it is not the default
    /// ([`HOSTS_LOCALHOST`] and `<ip>\t<hostname>`): the FQDN line of a pod
    /// with a subdomain, `hostAliases`. The runtime writes it.
    #[serde(default)]
    pub hosts: Option<String>,
    /// The pod's whole `/etc/resolv.conf`, when its spec sets one
    /// (`dnsPolicy`, `dnsConfig`); else the runtime's from `network`.
    #[serde(default)]
    pub resolv_conf: Option<String>,
}

/// The loopback lines every pod's `/etc/hosts` starts with.
pub const HOSTS_LOCALHOST: &str =
    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/// Pod-level things containers share, kept under the run dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    pub pod: PodRef,
    pub netns: Option<PathBuf>,
    pub ipc_ns: Option<PathBuf>,
    pub uts_ns: Option<PathBuf>,
    /// The pod's shared PID namespace (`shareProcessNamespace`), if any.
    #[serde(default)]
    pub pid_ns: Option<PathBuf>,
    pub hosts_file: PathBuf,
    pub hostname_file: PathBuf,
    pub resolv_conf: PathBuf,
    /// Cgroup path of the pod, relative to the hierarchy root(s).
    pub cgroup_parent: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_request_millis: Option<u64>,
    pub cpu_limit_millis: Option<u64>,
    pub memory_request_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    /// None = runtime's configured default.
    pub pids_limit: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Security {
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// false => no_new_privs
    pub allow_privilege_escalation: bool,
    pub read_only_root_fs: bool,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: bool,
    pub supplemental_groups: Vec<i64>,
    /// `RuntimeDefault` (default) or `Unconfined`.
    pub seccomp_unconfined: bool,
    /// A `Localhost` seccomp profile: its OCI JSON text (read by the
    /// reconciler from beneath `<state-dir>/seccomp/`), used instead of the
    /// default filter.
    #[serde(default)]
    pub seccomp_localhost: Option<String>,
    /// `hostPID`: no PID namespace of its own.
    #[serde(default)]
    pub host_pid: bool,
    /// `hostIPC`: the host's IPC namespace instead of the pod's.
    #[serde(default)]
    pub host_ipc: bool,
    /// `supplementalGroupsPolicy: Strict`: only the pod's groups, not those
    /// the image's `/etc/group` lists the user in (`Merge`, the default).
    #[serde(default)]
    pub supplemental_groups_strict: bool,
    /// A `Localhost` AppArmor profile's name (loaded in the kernel), applied
    /// to the container's process; only where the kernel has AppArmor.
    #[serde(default)]
    pub apparmor_profile: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// Bind-mount `source` (a host path) at `destination`.
    Bind,
    /// A fresh tmpfs; `size_bytes` limits it.
    Tmpfs { size_bytes: Option<u64> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    pub kind: MountKind,
    pub source: PathBuf,
    pub destination: String,
    /// Relative path inside `source` (Kubernetes subPath); must not escape `source`.
    pub sub_path: Option<String>,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// Unique on the host, e.g. `<pod key>_<container name>_<attempt>`.
    pub id: String,
    pub pod: PodRef,
    pub name: String,
    /// Kept by the runtime and returned by `list`, for adoption (spec hash, attempt, init flag...).
    pub labels: BTreeMap<String, String>,
    pub image: ImageInfo,
    /// Final argv (Kubernetes command/args already merged with Entrypoint/Cmd).
    pub args: Vec<String>,
    /// `KEY=value`, image env already merged.
    pub env: Vec<String>,
    pub working_dir: String,
    /// Image `User` when runAsUser is not set (name or uid[:gid]); resolved through the image's /etc/passwd.
    pub image_user: Option<String>,
    pub sandbox: Sandbox,
    pub mounts: Vec<MountSpec>,
    pub resources: Resources,
    pub security: Security,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    /// Created but not started, or the shim is still setting it up.
    Created,
    Running {
        pid: u32,
        started_at: SystemTime,
    },
    Exited {
        exit_code: i32,
        /// Signal number when killed by a signal (exit_code is then 128+signal).
        signal: Option<i32>,
        oom_killed: bool,
        started_at: Option<SystemTime>,
        finished_at: SystemTime,
    },
    /// Setting up failed before the process ran (binary not found, bad
    /// workdir...), or, with reason [`REASON_STATUS_UNKNOWN`], the process
    /// ran and ended but how it ended was not recorded.
    Failed {
        /// `CreateContainerError` / `RunContainerError` style reason.
        reason: String,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub id: String,
    pub pod: PodRef,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub state: ContainerState,
    pub log_path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResult {
    pub exit_code: i32,
    /// Combined stdout/stderr, truncated to a few KiB.
    pub output: String,
    pub timed_out: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub cpu_usage_nanos: u64,
    pub memory_working_set_bytes: u64,
}

/// A container runtime; it also dials probes and keeps pod volumes, as both
/// are host work the reconciler only decides.
pub trait Runtime: Prober + Volumes + Send + Sync + 'static {
    type Error: Classify;

    fn ensure_sandbox(
        &self,
        cfg: &SandboxConfig,
    ) -> impl Future<Output = Result<Sandbox, Self::Error>> + Send;

    /// Remove the pod's namespaces, files and cgroup. Containers must be removed first.
    fn remove_sandbox(&self, pod: &PodRef) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Create and start a container under its own shim. Returns once the process runs
    /// (or with `ContainerState::Failed` details in the error).
    fn run(
        &self,
        cfg: &ContainerConfig,
    ) -> impl Future<Output = Result<ContainerInfo, Self::Error>> + Send;

    fn status(&self, id: &str) -> impl Future<Output = Result<ContainerInfo, Self::Error>> + Send;

    /// Every container this instance's runtime knows (running or exited, not yet removed).
    fn list(&self) -> impl Future<Output = Result<Vec<ContainerInfo>, Self::Error>> + Send;

    /// Resolves when the container has exited (immediately if it already has).
    fn wait(&self, id: &str) -> impl Future<Output = Result<ContainerState, Self::Error>> + Send;

    /// SIGTERM, then SIGKILL to the whole cgroup after `grace`.
    fn stop(
        &self,
        id: &str,
        grace: Duration,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Stop (if needed) and delete everything of the container but its logs.
    fn remove(&self, id: &str) -> impl Future<Output = Result<(), Self::Error>> + Send;

    fn exec(
        &self,
        id: &str,
        argv: &[String],
        timeout: Duration,
    ) -> impl Future<Output = Result<ExecResult, Self::Error>> + Send;

    fn usage(&self, id: &str) -> impl Future<Output = Result<Usage, Self::Error>> + Send;
}

// === probes ===

/// A network check of a probe (`tcpSocket`, `httpGet`, `grpc`), as the host
/// dials it. Exec probes go through [`Runtime::exec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetCheck {
    /// Succeeds when a TCP connection to `addr` opens.
    Tcp { addr: SocketAddr },
    /// `GET path` over HTTP/1.1; succeeds on a status in 200..400.
    HttpGet {
        addr: SocketAddr,
        path: String,
        headers: Vec<(String, String)>,
    },
    /// One `grpc.health.v1.Health/Check` call for `service` (empty: the
    /// server as a whole) over HTTP/2 cleartext; succeeds when the answer
    /// is `SERVING`.
    Grpc { addr: SocketAddr, service: String },
}

/// Outcome of one probe attempt; a failure carries the message kubelet would show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    Success,
    Failure(String),
}

/// Dials probe targets from the host. Implemented host-side, never in the reconciler.
pub trait Prober: Send + Sync + 'static {
    /// One attempt, bounded by `timeout`.
    fn check(
        &self,
        check: &NetCheck,
        timeout: Duration,
    ) -> impl Future<Output = CheckOutcome> + Send;
}

// === volumes ===

/// `hostPath.type`, checked (or created) on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostPathType {
    /// `""`: no check.
    Any,
    DirectoryOrCreate,
    Directory,
    FileOrCreate,
    File,
    Socket,
    CharDevice,
    BlockDevice,
}

impl HostPathType {
    /// The Kubernetes spelling; `None` for an unknown type.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "" => Self::Any,
            "DirectoryOrCreate" => Self::DirectoryOrCreate,
            "Directory" => Self::Directory,
            "FileOrCreate" => Self::FileOrCreate,
            "File" => Self::File,
            "Socket" => Self::Socket,
            "CharDevice" => Self::CharDevice,
            "BlockDevice" => Self::BlockDevice,
            _ => return None,
        })
    }
}

/// One file of a configMap/secret projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectedFile {
    /// Relative path below the volume; one that climbs out is skipped.
    pub path: String,
    pub content: Vec<u8>,
    /// Permission bits (`defaultMode` / `items[].mode`).
    pub mode: u32,
}

/// What one pod volume is, decided by the reconciler from the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// A `Volume` (PersistentVolumeClaim) of the pod's namespace: outlives pods.
    Claim {
        claim: String,
    },
    HostPath {
        path: PathBuf,
        type_: HostPathType,
    },
    /// Gone with the pod; `memory` = tmpfs limited to `size_bytes`.
    EmptyDir {
        memory: bool,
        size_bytes: Option<u64>,
    },
    /// A configMap or secret projection, swapped atomically when it changes.
    Projection {
        files: Vec<ProjectedFile>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRequest {
    pub pod: PodRef,
    /// The volume's name in the pod spec.
    pub name: String,
    pub source: VolumeSource,
}

/// Where a pod volume is on the host, for [`MountSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostVolume {
    pub kind: MountKind,
    pub path: PathBuf,
}

/// A pod's `fsGroup`, to apply to some of its volumes (those
/// [`Volumes::ensure_volume`] returned: emptyDirs on disk and claims).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsGroupRequest {
    pub pod: PodRef,
    pub gid: u32,
    /// `fsGroupChangePolicy: OnRootMismatch`: a volume whose root already
    /// has the group and the setgid bit is left alone.
    pub on_root_mismatch: bool,
    /// Host paths of the volumes; each must be a volume this implementation
    /// made (anything else is refused as [`ErrorKind::Invalid`]).
    pub volumes: Vec<PathBuf>,
}

/// The host side of pod volumes: directories and projected files.
pub trait Volumes: Send + Sync + 'static {
    type VolumeError: Classify;

    /// Create or refresh one volume. Idempotent: a projection whose files are
    /// unchanged is left alone.
    fn ensure_volume(
        &self,
        req: &VolumeRequest,
    ) -> impl Future<Output = Result<HostVolume, Self::VolumeError>> + Send;

    /// Remove the pod's own volumes (emptyDir, projections). Claims are kept.
    fn remove_pod_volumes(
        &self,
        pod: &PodRef,
    ) -> impl Future<Output = Result<(), Self::VolumeError>> + Send;

    /// Give every file and directory of the volumes the pod's group, group
    /// read/write (search on directories) and setgid on directories, as
    /// kubelet does; symlinks are neither followed nor changed.
    fn apply_fs_group(
        &self,
        req: &FsGroupRequest,
    ) -> impl Future<Output = Result<(), Self::VolumeError>> + Send;

    /// Create the directory of a claim (a `Volume` object of `namespace`)
    /// if it is not there; returns where it is. Idempotent.
    fn ensure_claim(
        &self,
        namespace: &str,
        claim: &str,
    ) -> impl Future<Output = Result<PathBuf, Self::VolumeError>> + Send;

    /// Delete a claim's data (`reclaimPolicy: Delete`). Idempotent.
    fn remove_claim(
        &self,
        namespace: &str,
        claim: &str,
    ) -> impl Future<Output = Result<(), Self::VolumeError>> + Send;

    /// Bytes held by the claim's regular files (symlinks not followed), or
    /// `None` when the claim has no directory.
    fn claim_usage(
        &self,
        namespace: &str,
        claim: &str,
    ) -> impl Future<Output = Result<Option<u64>, Self::VolumeError>> + Send;
}

//! The shim's `spec.json` as a versioned file, and the supervisor's
//! `state.json` and `status.json` read without ever mistaking "unreadable"
//! for "not there".
//!
//! ```text
//! spec.json   { "version": 1, "config": ContainerConfig, "run_dir", "state_dir",
//!               "log_path", "log_max_bytes", "log_max_files", "cgroup_path",
//!               "default_pids_limit" }
//!             no "version": written by berth before the envelope, read as 1
//! ```
//!
//! The agent writes `spec.json` before it starts the shim; the shim and the
//! supervisor read it (and ignore `"version"`). A running container's
//! `spec.json` is never quarantined: the shim's exec and the supervisor still
//! use it, and moving it would hide a running container. When a newer or
//! older berth wrote a `spec.json` this one cannot decode in full, the
//! container is still identified from the fields every version has
//! ([`SpecIdentity`]: id, pod, name, labels, log path, cgroup), so it is
//! adopted or stopped but never lost track of and started again beside itself.
//! When `spec.json` is truncated or garbage, the same fields come from
//! `identity.json` or the container's names ([`crate::identity`]).
//!
//! `state.json` and `status.json` are read as a [`Record`]: missing,
//! readable, or there but unreadable; what an unreadable one means is
//! decided from the processes (`observe`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use berth_contract::PodRef;
use berth_state::{DecodeError, StateError, Versioned};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::layout::{Exit, ShimSpec, Started};

/// The `spec.json` format this berth writes.
pub const SPEC_VERSION: u32 = 1;
/// A ContainerConfig with a large environment stays far below this.
const SPEC_MAX_BYTES: u64 = 16 << 20;

/// What identifies a container, readable from every `spec.json` version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecIdentity {
    pub config: IdentityConfig,
    pub log_path: PathBuf,
    pub cgroup_path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityConfig {
    pub id: String,
    pub pod: PodRef,
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// What reading a container's `spec.json` found.
#[derive(Debug)]
pub enum SpecRead {
    Missing,
    /// Decoded in full.
    Full(Box<ShimSpec>),
    /// Not decodable in full (another berth version), but identified.
    Identity {
        identity: SpecIdentity,
        why: StateError,
    },
    /// Neither: the container cannot be attributed to a pod.
    Unreadable(StateError),
}

impl SpecIdentity {
    /// The identity fields of a whole spec.
    pub fn of(s: &ShimSpec) -> Self {
        SpecIdentity {
            config: IdentityConfig {
                id: s.config.id.clone(),
                pod: s.config.pod.clone(),
                name: s.config.name.clone(),
                labels: s.config.labels.clone(),
            },
            log_path: s.log_path.clone(),
            cgroup_path: s.cgroup_path.clone(),
        }
    }
}

impl SpecRead {
    pub fn identity(&self) -> Option<SpecIdentity> {
        match self {
            SpecRead::Full(s) => Some(SpecIdentity::of(s)),
            SpecRead::Identity { identity, .. } => Some(identity.clone()),
            SpecRead::Missing | SpecRead::Unreadable(_) => None,
        }
    }
}

struct SpecFile(ShimSpec);

impl Versioned for SpecFile {
    const WHAT: &'static str = "container spec";
    const CURRENT: u32 = SPEC_VERSION;
    const MAX_BYTES: u64 = SPEC_MAX_BYTES;

    fn decode(version: u32, doc: Value) -> Result<Self, DecodeError> {
        match version {
            // version 1 is today's ShimSpec; unversioned files are the same shape
            1 => serde_json::from_value(doc)
                .map(SpecFile)
                .map_err(|source| DecodeError::Invalid { version, source }),
            found => Err(DecodeError::UnknownVersion {
                found,
                newest: Self::CURRENT,
            }),
        }
    }
}

/// Write `spec.json` atomically with its format version.
///
/// The document `berth_state::write_versioned` writes (`"version"` beside the
/// body, from [`berth_state::encode_versioned`]), stored like the run dir's other files: temp + rename without fsync
/// ([`berth_supervise::layout::write_volatile`]), which takes two fsyncs off
/// every container start where /run is on disk.
pub fn write_spec(path: &Path, spec: &ShimSpec) -> Result<(), StateError> {
    let data = berth_state::encode_versioned(path, SPEC_VERSION, spec)?;
    berth_supervise::layout::write_volatile(path, &data).map_err(|source| StateError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Read `spec.json`: in full when possible, else the container's identity.
pub fn read_spec(path: &Path) -> SpecRead {
    let data = match read_bounded(path) {
        Ok(Some(d)) => d,
        Ok(None) => return SpecRead::Missing,
        Err(e) => return SpecRead::Unreadable(e),
    };
    match berth_state::decode::<SpecFile>(path, &data) {
        Ok((SpecFile(spec), _)) => SpecRead::Full(Box::new(spec)),
        Err(why) => match serde_json::from_slice::<SpecIdentity>(&data) {
            Ok(identity) => SpecRead::Identity { identity, why },
            Err(_) => SpecRead::Unreadable(why),
        },
    }
}

fn read_bounded(path: &Path) -> Result<Option<Vec<u8>>, StateError> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut data = Vec::new();
    f.take(SPEC_MAX_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(|source| StateError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if data.len() as u64 > SPEC_MAX_BYTES {
        return Err(StateError::TooLarge {
            path: path.to_path_buf(),
            limit: SPEC_MAX_BYTES,
        });
    }
    Ok(Some(data))
}

/// What reading one of the supervisor's small files found.
#[derive(Debug, Clone, PartialEq)]
pub enum Record<T> {
    Missing,
    Read(T),
    /// There, but not readable or not decodable (reported, kept in place).
    Unreadable,
}

impl<T> Record<T> {
    pub fn ok(self) -> Option<T> {
        match self {
            Record::Read(v) => Some(v),
            Record::Missing | Record::Unreadable => None,
        }
    }

    /// The file is there (readable or not).
    pub fn present(&self) -> bool {
        !matches!(self, Record::Missing)
    }
}

/// The supervisor's final `status.json`.
///
/// A version field (written by a later supervisor) is ignored as long as the
/// exit fields are there. An unreadable file is logged and reported: the
/// caller then decides from the shim and the cgroup (a container whose
/// supervisor is gone and whose init is not running has ended, how is not
/// known), which never makes a running container look gone.
pub fn read_exit(dir: &Path) -> Record<Exit> {
    read_reported(&dir.join("status.json"), "container exit status")
}

/// The supervisor's `state.json` (the container's init pid and start); an
/// unreadable one is reported as [`read_exit`]'s is. It is written once the
/// container's init runs, so even an unreadable one says the container started.
pub fn read_started(dir: &Path) -> Record<Started> {
    read_reported(&dir.join("state.json"), "container start record")
}

/// The supervisor's small files are far below this.
const RECORD_MAX_BYTES: u64 = 64 << 10;

/// A small JSON file the shim or the supervisor wrote; one that is there
/// but does not decode is logged and reported (kept in place: the caller
/// decides from the processes).
fn read_reported<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Record<T> {
    let data = match std::fs::File::open(path).and_then(|f| {
        let mut data = Vec::new();
        f.take(RECORD_MAX_BYTES + 1).read_to_end(&mut data)?;
        if data.len() as u64 > RECORD_MAX_BYTES {
            return Err(std::io::Error::other(format!(
                "larger than {RECORD_MAX_BYTES} bytes"
            )));
        }
        Ok(data)
    }) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Record::Missing,
        Err(e) => {
            if berth_state::report_unreadable(what, path, &e) {
                tracing::warn!(path = %path.display(), err = %e, "unreadable {what}; deciding from the processes");
            }
            return Record::Unreadable;
        }
    };
    match serde_json::from_slice::<T>(&data) {
        Ok(v) => Record::Read(v),
        Err(err) => {
            if berth_state::report_unreadable(what, path, &err) {
                tracing::warn!(path = %path.display(), %err, "unreadable {what}; deciding from the processes");
            }
            Record::Unreadable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_UNVERSIONED: &str = r#"{"config":{"id":"u1-web-0","pod":{"namespace":"default","name":"web","uid":"u1"},"name":"web","labels":{"berth.dev/spec-hash":"h"},"image":{"reference":"r","image_id":"sha256:x","repo_digest":null,"layers":[],"config":{"entrypoint":[],"cmd":[],"env":[],"working_dir":null,"user":null,"exposed_ports":[],"volumes":[]}},"args":["sh"],"env":[],"working_dir":"/","image_user":null,"sandbox":{"pod":{"namespace":"default","name":"web","uid":"u1"},"netns":null,"ipc_ns":null,"uts_ns":null,"hosts_file":"/h","hostname_file":"/n","resolv_conf":"/r","cgroup_parent":"/b/p"},"mounts":[],"resources":{"cpu_request_millis":null,"cpu_limit_millis":null,"memory_request_bytes":null,"memory_limit_bytes":null,"pids_limit":null},"security":{"privileged":false,"cap_add":[],"cap_drop":[],"allow_privilege_escalation":false,"read_only_root_fs":false,"run_as_user":null,"run_as_group":null,"run_as_non_root":false,"supplemental_groups":[],"seccomp_unconfined":false}},"run_dir":"/run/b","state_dir":"/var/lib/b","log_path":"/l/0.log","log_max_bytes":10,"log_max_files":3,"cgroup_path":"/b/p/u1-web-0","default_pids_limit":1024}"#;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-spec-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn todays_unversioned_spec_reads_as_version_one_and_roundtrips() {
        let d = dir("v1");
        let p = d.join("spec.json");
        std::fs::write(&p, V1_UNVERSIONED).unwrap();
        let SpecRead::Full(spec) = read_spec(&p) else {
            panic!("not read in full")
        };
        assert_eq!(spec.config.pod.uid, "u1");
        write_spec(&p, &spec).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"version\":1"));
        // the supervisor's view of the same file still decodes
        let sup: berth_supervise::layout::ShimSpec<berth_supervise::layout::ContainerId> =
            serde_json::from_str(&text).unwrap();
        assert_eq!(sup.config.id, "u1-web-0");
        assert!(matches!(read_spec(&p), SpecRead::Full(_)));
        std::fs::remove_dir_all(&d).unwrap();
    }

    // regression (issue 17): a spec.json a future berth wrote was read as
    // "not found", so its running container was started again beside itself
    #[test]
    fn future_or_changed_spec_still_identifies_the_container() {
        let d = dir("future");
        let p = d.join("spec.json");
        let mut doc: Value = serde_json::from_str(V1_UNVERSIONED).unwrap();
        doc["version"] = 2.into();
        doc["config"]["args"] = Value::String("changed shape".into());
        std::fs::write(&p, doc.to_string()).unwrap();
        let read = read_spec(&p);
        assert!(matches!(read, SpecRead::Identity { .. }), "{read:?}");
        let id = read.identity().unwrap();
        assert_eq!(id.config.pod.name, "web");
        assert_eq!(id.config.labels["berth.dev/spec-hash"], "h");
        assert_eq!(id.cgroup_path, "/b/p/u1-web-0");
        // not moved: the container's files stay where its supervisor expects them
        assert!(p.exists());
        std::fs::write(&p, b"{garbage").unwrap();
        assert!(matches!(read_spec(&p), SpecRead::Unreadable(_)));
        assert!(matches!(read_spec(&d.join("none")), SpecRead::Missing));
        std::fs::remove_dir_all(&d).unwrap();
    }
}

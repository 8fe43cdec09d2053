//! Who a container is, even when its `spec.json` is damaged.
//!
//! A running container must never be lost track of because one file cannot
//! be read: the reconciler would not see it and start a second copy beside
//! it. So its identity (id, pod, name, labels, log path, cgroup) comes from
//! the first of:
//!
//! ```text
//! spec.json       the whole spec, or its identity fields (spec_file)
//! identity.json   { "version": 1, "config": { "id", "pod", "name", "labels" },
//!                   "log_path", "cgroup_path" }: a small copy of the same
//!                 fields, written atomically after spec.json and never
//!                 rewritten, so one damaged file leaves the other
//! the names       berth names a container <pod uid>-<name>-<restarts>, its
//!                 log <logs>/<pod key>/<name>/<restarts>.log and its cgroup
//!                 /<instance>/<pod key>/<id>, pod key <namespace>_<name>_<uid>:
//!                 the log dir (kept after the container ends), else the
//!                 cgroup (there while it runs) gives the pod back; for
//!                 containers of a berth without identity.json
//! ```
//!
//! Identified from the names, a container lacks the labels only its spec
//! had (`berth.dev/init`, the spec hash, the image id): the reconciler then
//! matches it by its name against the pod's spec. Every fallback reports the
//! damaged file (`StateFilesReadable`); nothing is moved or rewritten.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use berth_contract::{LABEL_CONTAINER, LABEL_RESTARTS, PodRef};
use berth_state::{DecodeError, StateError, Versioned};
use serde_json::Value;

use crate::spec_file::{IdentityConfig, SpecIdentity, SpecRead, read_spec};
use crate::{RuntimeError, ShimRuntime};

/// The `identity.json` format this berth writes.
pub const IDENTITY_VERSION: u32 = 1;
/// Labels and paths: far below this.
const IDENTITY_MAX_BYTES: u64 = 1 << 20;
/// Pod dirs (logs, cgroups) looked at to recover a container's pod.
const MAX_POD_DIRS: usize = 100_000;

pub const IDENTITY_FILE: &str = "identity.json";

struct IdentityFile(SpecIdentity);

impl Versioned for IdentityFile {
    const WHAT: &'static str = "container identity";
    const CURRENT: u32 = IDENTITY_VERSION;
    const MAX_BYTES: u64 = IDENTITY_MAX_BYTES;

    fn decode(version: u32, doc: Value) -> Result<Self, DecodeError> {
        match version {
            1 => serde_json::from_value(doc)
                .map(IdentityFile)
                .map_err(|source| DecodeError::Invalid { version, source }),
            found => Err(DecodeError::UnknownVersion {
                found,
                newest: Self::CURRENT,
            }),
        }
    }
}

/// Write the container's `identity.json` atomically (0600, fsynced).
pub fn write_identity(dir: &Path, identity: &SpecIdentity) -> Result<(), StateError> {
    berth_state::write_versioned(&dir.join(IDENTITY_FILE), IDENTITY_VERSION, identity)
}

/// The container's `identity.json`: `Ok(None)` when there is none.
pub fn read_identity(dir: &Path) -> Result<Option<SpecIdentity>, StateError> {
    let path = dir.join(IDENTITY_FILE);
    let f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateError::Read { path, source }),
    };
    let mut data = Vec::new();
    f.take(IDENTITY_MAX_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(|source| StateError::Read {
            path: path.clone(),
            source,
        })?;
    if data.len() as u64 > IDENTITY_MAX_BYTES {
        return Err(StateError::TooLarge {
            path,
            limit: IDENTITY_MAX_BYTES,
        });
    }
    berth_state::decode::<IdentityFile>(&path, &data).map(|(IdentityFile(i), _)| Some(i))
}

/// Container `id`'s identity from its name and its pod's log dir (see the
/// module doc); `None` unless exactly one pod of `log_dir` fits.
pub fn from_names(id: &str, log_dir: &Path, instance: &str) -> Option<SpecIdentity> {
    from_pod_dirs(id, log_dir, instance, log_dir, |pod_dir, name| {
        pod_dir.join(name).is_dir()
    })
}

/// Container `id`'s identity from its cgroup (`<instance cgroup>/<pod
/// key>/<id>`, there while any of its processes runs); `None` unless exactly
/// one pod fits.
pub fn from_cgroup(
    id: &str,
    instance_cgroup: &Path,
    log_dir: &Path,
    instance: &str,
) -> Option<SpecIdentity> {
    from_pod_dirs(id, instance_cgroup, instance, log_dir, |pod_dir, _| {
        pod_dir.join(id).is_dir()
    })
}

/// The one entry of `pods` (dirs named by pod key) that fits `id` and `has`.
fn from_pod_dirs(
    id: &str,
    pods: &Path,
    instance: &str,
    log_dir: &Path,
    has: impl Fn(&Path, &str) -> bool,
) -> Option<SpecIdentity> {
    let rd = std::fs::read_dir(pods).ok()?;
    let mut found = None;
    for e in rd.flatten().take(MAX_POD_DIRS) {
        let key = e.file_name().to_string_lossy().into_owned();
        let Some((pod, name, restarts)) = fit(id, &key) else {
            continue;
        };
        if !has(&e.path(), &name) {
            continue;
        }
        if found.is_some() {
            // two pods fit: guessing could attribute it to the wrong one
            return None;
        }
        let labels = BTreeMap::from([
            (LABEL_CONTAINER.to_string(), name.clone()),
            (LABEL_RESTARTS.to_string(), restarts.to_string()),
        ]);
        found = Some(SpecIdentity {
            config: IdentityConfig {
                id: id.to_string(),
                pod,
                name: name.clone(),
                labels,
            },
            log_path: log_dir
                .join(&key)
                .join(&name)
                .join(format!("{restarts}.log")),
            cgroup_path: format!("/{instance}/{key}/{id}"),
        });
    }
    found
}

/// The pod, container name and restart count if `id` is a container of the
/// pod with key `key` (`<namespace>_<name>_<uid>`) as berth names them.
fn fit(id: &str, key: &str) -> Option<(PodRef, String, u32)> {
    let mut parts = key.splitn(3, '_');
    let (ns, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
    if ns.is_empty() || pod.is_empty() || uid.is_empty() {
        return None;
    }
    let (name, restarts) = id.strip_prefix(uid)?.strip_prefix('-')?.rsplit_once('-')?;
    let restarts = restarts.parse::<u32>().ok()?;
    if name.is_empty() || !crate::retention::is_component(name) {
        return None;
    }
    let pod = PodRef {
        namespace: ns.to_string(),
        name: pod.to_string(),
        uid: uid.to_string(),
    };
    Some((pod, name.to_string(), restarts))
}

impl ShimRuntime {
    /// Who the container in `dir` is: from its `spec.json`, else its
    /// `identity.json`, else its names (see the module doc); each damaged file
    /// reported. `NotFound` while neither file is there (a container being
    /// set up or removed).
    pub(crate) fn identity_at(&self, dir: &Path) -> Result<SpecIdentity, RuntimeError> {
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let spec_path = dir.join("spec.json");
        let read = read_spec(&spec_path);
        let why = match read {
            SpecRead::Full(s) => return Ok(SpecIdentity::of(&s)),
            SpecRead::Identity { identity, why } => {
                if berth_state::report_unreadable("container spec", &spec_path, &why) {
                    tracing::warn!(container = %id, err = %berth_contract::error_chain(&why), "spec.json read by its identity only");
                }
                return Ok(identity);
            }
            SpecRead::Missing => None,
            SpecRead::Unreadable(why) => Some(why),
        };
        let second = read_identity(dir);
        // logged the first time only: the runtime reads a container's files often
        let first = match (&why, &second) {
            (None, Ok(None)) => return Err(RuntimeError::NotFound { id }),
            (Some(why), _) => {
                let first = berth_state::report_unreadable("container spec", &spec_path, why);
                if first {
                    tracing::warn!(container = %id, err = %berth_contract::error_chain(why), "spec.json cannot be read; identifying the container otherwise");
                }
                first
            }
            (None, _) => {
                let gone = std::io::Error::new(std::io::ErrorKind::NotFound, "missing");
                let first = berth_state::report_unreadable("container spec", &spec_path, &gone);
                if first {
                    tracing::warn!(container = %id, "spec.json is missing; identifying the container otherwise");
                }
                first
            }
        };
        let second_err = match second {
            Ok(Some(identity)) => return Ok(identity),
            Ok(None) => None,
            Err(e) => {
                let path = dir.join(IDENTITY_FILE);
                berth_state::report_unreadable("container identity", &path, &e);
                Some(e)
            }
        };
        let instance_cgroup = match self.cg.version {
            crate::cgroups::Version::V2 => self.cg.root.join(&self.cfg.instance),
            crate::cgroups::Version::V1 => self.cg.root.join("pids").join(&self.cfg.instance),
        };
        let (log_dir, instance) = (&self.cfg.log_dir, &self.cfg.instance);
        if let Some(found) = from_names(&id, log_dir, instance)
            .or_else(|| from_cgroup(&id, &instance_cgroup, log_dir, instance))
        {
            if first {
                tracing::warn!(container = %id, pod = %found.config.pod.key(), "container identified from its names only");
            }
            return Ok(found);
        }
        Err(RuntimeError::SpecRead {
            id: id.clone(),
            source: why.or(second_err).unwrap_or(berth_state::StateError::Read {
                path: spec_path,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "missing"),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-identity-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn identity() -> SpecIdentity {
        SpecIdentity {
            config: IdentityConfig {
                id: "u1-web-2".into(),
                pod: PodRef {
                    namespace: "default".into(),
                    name: "web".into(),
                    uid: "u1".into(),
                },
                name: "web".into(),
                labels: BTreeMap::from([("berth.dev/init".to_string(), "true".to_string())]),
            },
            log_path: "/l/default_web_u1/web/2.log".into(),
            cgroup_path: "/bt/default_web_u1/u1-web-2".into(),
        }
    }

    #[test]
    fn identity_file_roundtrips_and_damage_is_an_error_not_none() {
        let d = dir("file");
        assert!(read_identity(&d).unwrap().is_none());
        write_identity(&d, &identity()).unwrap();
        let text = std::fs::read_to_string(d.join(IDENTITY_FILE)).unwrap();
        assert!(text.contains("\"version\":1"), "{text}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join(IDENTITY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read_identity(&d).unwrap(), Some(identity()));
        std::fs::write(d.join(IDENTITY_FILE), &text.as_bytes()[..text.len() / 2]).unwrap();
        assert!(read_identity(&d).is_err());
        std::fs::write(
            d.join(IDENTITY_FILE),
            text.replace("\"version\":1", "\"version\":9"),
        )
        .unwrap();
        assert!(read_identity(&d).is_err());
        // nothing moved: the container's files stay where they are
        assert!(d.join(IDENTITY_FILE).exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn names_give_the_pod_back_from_its_log_dir() {
        let logs = dir("names");
        std::fs::create_dir_all(logs.join("default_web_u1/web")).unwrap();
        std::fs::create_dir_all(logs.join("other_db_u2/db")).unwrap();
        std::fs::create_dir_all(logs.join("nonsense")).unwrap();
        let got = from_names("u1-web-2", &logs, "bt").unwrap();
        assert_eq!(got.config.pod.key(), "default_web_u1");
        assert_eq!(got.config.name, "web");
        assert_eq!(got.config.labels[LABEL_RESTARTS], "2");
        assert_eq!(got.config.labels[LABEL_CONTAINER], "web");
        assert_eq!(got.cgroup_path, "/bt/default_web_u1/u1-web-2");
        assert_eq!(got.log_path, logs.join("default_web_u1/web/2.log"));
        // a container name with dashes
        std::fs::create_dir_all(logs.join("default_web_u1/side-car")).unwrap();
        let got = from_names("u1-side-car-0", &logs, "bt").unwrap();
        assert_eq!(got.config.name, "side-car");
        // no fit: unknown uid, no such container, no restart count, not berth's naming
        assert!(from_names("u3-web-0", &logs, "bt").is_none());
        assert!(from_names("u1-api-0", &logs, "bt").is_none());
        assert!(from_names("u1-web-x", &logs, "bt").is_none());
        assert!(from_names("default_web_u1_crashy_0", &logs, "bt").is_none());
        assert!(from_names("u1-web-0", &logs.join("none"), "bt").is_none());
        // a uid that is a prefix of another's: the container dir decides
        std::fs::create_dir_all(logs.join("default_web2_u1-web/x")).unwrap();
        let got = from_names("u1-web-x-0", &logs, "bt").unwrap();
        assert_eq!(got.config.pod.name, "web2");
        // two pods fit: none is guessed
        std::fs::create_dir_all(logs.join("default_web3_u1/web-x")).unwrap();
        assert!(from_names("u1-web-x-0", &logs, "bt").is_none());
        std::fs::remove_dir_all(&logs).unwrap();
    }

    #[test]
    fn a_cgroup_gives_the_pod_back_while_the_container_runs() {
        let cg = dir("cgroup");
        std::fs::create_dir_all(cg.join("default_web_u1/u1-web-3")).unwrap();
        std::fs::create_dir_all(cg.join("default_web_u1/supervisor")).unwrap();
        let got = from_cgroup("u1-web-3", &cg, Path::new("/logs"), "bt").unwrap();
        assert_eq!(got.config.pod.key(), "default_web_u1");
        assert_eq!(got.config.name, "web");
        assert_eq!(got.cgroup_path, "/bt/default_web_u1/u1-web-3");
        assert_eq!(got.log_path, Path::new("/logs/default_web_u1/web/3.log"));
        // its cgroup gone (ended and cleaned up): not identified this way
        assert!(from_cgroup("u1-web-2", &cg, Path::new("/logs"), "bt").is_none());
        std::fs::remove_dir_all(&cg).unwrap();
    }
}

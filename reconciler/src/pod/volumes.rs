//! Pod volumes on the host: directories and projected files that the runtime
//! bind-mounts into containers.
//!
//! ```text
//! <state>/volumes/<ns>/<claim>/            Volume / PersistentVolumeClaim (outlives pods)
//! <state>/pods/<pod key>/empty-dir/<name>/ emptyDir (gone with the pod)
//! <run>/pods/<pod key>/volumes/<name>/     configMap and secret projections
//!     ..data -> ..<rev>/   key -> ..data/key  (atomic update, as kubelet does)
//! ```
//!
//! Projections are swapped atomically by renaming the `..data` symlink, so a
//! container sees the old or the new set of files, never a mix; containers
//! get them read-only, as from kubelet.
//!
//! Other host users never reach a volume: the dirs above each one
//! (`<state>/pods/<pod key>`, `<state>/pods/<pod key>/empty-dir`,
//! `<run>/pods/<pod key>/volumes`, `<state>/volumes/<ns>`) are 0700. The
//! volume dirs themselves keep the modes containers expect (an emptyDir is
//! 0777, projected files have their `defaultMode`), as they are what the
//! container sees.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_spec::k8s_openapi::api::core::v1::{KeyToPath, PodSpec, Volume as PodVolume};

use crate::container::ConfigObjects;
use crate::traits::{MountKind, MountSpec, PodRef};

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {volume}: Volume (PersistentVolumeClaim) {namespace}/{claim} is not defined")]
    ClaimMissing {
        volume: String,
        namespace: String,
        claim: String,
    },
    #[error("volume {volume}: hostPath {path} check failed: {reason}")]
    HostPath {
        volume: String,
        path: String,
        reason: String,
    },
    #[error("volume {volume}: {kind} {namespace}/{name} not found")]
    SourceMissing {
        volume: String,
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("volume {volume}: key {key} not found in {kind} {name}")]
    KeyMissing {
        volume: String,
        kind: &'static str,
        name: String,
        key: String,
    },
    #[error("volume {volume}: file {path}")]
    Downward {
        volume: String,
        path: String,
        #[source]
        source: Box<crate::container::BuildError>,
    },
    #[error("volume {volume}: unsupported volume type")]
    Unsupported { volume: String },
    #[error("volumeMount {mount}: no volume with that name")]
    NoSuchVolume { mount: String },
    #[error("volume {volume}: preparing {path}")]
    Io {
        volume: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where pod volumes live.
#[derive(Debug, Clone)]
pub struct VolumeDirs {
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
}

impl VolumeDirs {
    pub fn claim_dir(&self, namespace: &str, claim: &str) -> PathBuf {
        self.state_dir.join("volumes").join(namespace).join(claim)
    }
    pub fn pod_state(&self, pod: &PodRef) -> PathBuf {
        self.state_dir.join("pods").join(pod.key())
    }
    pub fn pod_run(&self, pod: &PodRef) -> PathBuf {
        self.run_dir.join("pods").join(pod.key())
    }
}

/// A pod volume on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedVolume {
    pub kind: MountKind,
    pub path: PathBuf,
    /// Mounted read-only whatever the volumeMount says (configMap, secret).
    pub read_only: bool,
}

/// Host paths of each pod volume, by volume name.
pub type Prepared = BTreeMap<String, PreparedVolume>;

/// `dir` and its missing parents exist; `dir` itself is 0700 whatever it was.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// `dir` exists below root-only parents: each of `private` (ancestors of
/// `dir`, outermost first) is made 0700.
fn dir_below_private(dir: &Path, private: &[PathBuf]) -> std::io::Result<()> {
    for p in private {
        private_dir(p)?;
    }
    fs::create_dir_all(dir)
}

fn io(volume: &str, path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError {
    let volume = volume.to_string();
    let path = path.to_path_buf();
    move |source| VolumeError::Io {
        volume,
        path,
        source,
    }
}

/// Create or refresh every volume of the pod. Idempotent; configMap/secret
/// contents are updated in place when they changed.
/// `fields`: the pod's own fields, for downwardAPI files (without them a
/// downwardAPI or projected volume is refused).
pub fn prepare(
    dirs: &VolumeDirs,
    pod: &PodRef,
    spec: &PodSpec,
    claims: &std::collections::BTreeSet<(String, String)>,
    objs: &ConfigObjects,
    fields: Option<&crate::container::PodFields<'_>>,
) -> Result<Prepared, VolumeError> {
    let mut out = Prepared::new();
    let node = crate::downward::NodeCapacity::of_host();
    for v in spec.volumes.iter().flatten() {
        let projected = fields.and_then(|f| super::projection::files(v, objs, f, node));
        let (kind, path) = match projected {
            Some(files) => {
                let files = files?;
                let name = v.name.as_str();
                let p = projection_dir(dirs, pod, name).map_err(io(name, &dirs.pod_run(pod)))?;
                project(&p, &files).map_err(io(name, &p))?;
                (MountKind::Bind, p)
            }
            None => prepare_one(dirs, pod, v, claims, objs)?,
        };
        let read_only = v.config_map.is_some()
            || v.secret.is_some()
            || v.downward_api.is_some()
            || v.projected.is_some();
        out.insert(
            v.name.clone(),
            PreparedVolume {
                kind,
                path,
                read_only,
            },
        );
    }
    Ok(out)
}

fn prepare_one(
    dirs: &VolumeDirs,
    pod: &PodRef,
    v: &PodVolume,
    claims: &std::collections::BTreeSet<(String, String)>,
    objs: &ConfigObjects,
) -> Result<(MountKind, PathBuf), VolumeError> {
    let name = v.name.as_str();
    if let Some(pvc) = &v.persistent_volume_claim {
        if !claims.contains(&(pod.namespace.clone(), pvc.claim_name.clone())) {
            return Err(VolumeError::ClaimMissing {
                volume: name.into(),
                namespace: pod.namespace.clone(),
                claim: pvc.claim_name.clone(),
            });
        }
        let p = dirs.claim_dir(&pod.namespace, &pvc.claim_name);
        let private = [
            dirs.state_dir.join("volumes"),
            dirs.state_dir.join("volumes").join(&pod.namespace),
        ];
        dir_below_private(&p, &private).map_err(io(name, &p))?;
        return Ok((MountKind::Bind, p));
    }
    if let Some(hp) = &v.host_path {
        let p = PathBuf::from(&hp.path);
        check_host_path(name, &p, hp.type_.as_deref().unwrap_or(""))?;
        return Ok((MountKind::Bind, p));
    }
    if let Some(ed) = &v.empty_dir {
        if ed.medium.as_deref() == Some("Memory") {
            let size = ed
                .size_limit
                .as_ref()
                .and_then(|q| berth_spec::quantity::parse_bytes(&q.0).ok());
            let base = dirs.pod_run(pod);
            let p = base.join("empty-dir").join(name);
            let private = [
                dirs.run_dir.join("pods"),
                base.clone(),
                base.join("empty-dir"),
            ];
            dir_below_private(&p, &private).map_err(io(name, &p))?;
            return Ok((MountKind::Tmpfs { size_bytes: size }, p));
        }
        // 0777 as kubelet's, for any user in the container; below 0700 dirs on the host
        let base = dirs.pod_state(pod);
        let p = base.join("empty-dir").join(name);
        let private = [
            dirs.state_dir.join("pods"),
            base.clone(),
            base.join("empty-dir"),
        ];
        dir_below_private(&p, &private).map_err(io(name, &p))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o777)).map_err(io(name, &p))?;
        return Ok((MountKind::Bind, p));
    }
    if let Some(cm) = &v.config_map {
        let key = (pod.namespace.clone(), cm.name.clone());
        let data: BTreeMap<String, Vec<u8>> = match objs.config_maps.get(&key) {
            Some(c) => c
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                .chain(
                    c.binary_data
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.0.clone())),
                )
                .collect(),
            None if cm.optional == Some(true) => BTreeMap::new(),
            None => {
                return Err(VolumeError::SourceMissing {
                    volume: name.into(),
                    kind: "configmap",
                    namespace: key.0,
                    name: key.1,
                });
            }
        };
        let mode = cm.default_mode.unwrap_or(0o644) as u32;
        let files = select_items(
            name,
            "configmap",
            &cm.name,
            &data,
            cm.items.as_deref(),
            mode,
        )?;
        let p = projection_dir(dirs, pod, name).map_err(io(name, &dirs.pod_run(pod)))?;
        project(&p, &files).map_err(io(name, &p))?;
        return Ok((MountKind::Bind, p));
    }
    if let Some(sec) = &v.secret {
        let sname = sec.secret_name.clone().unwrap_or_default();
        let key = (pod.namespace.clone(), sname.clone());
        let data: BTreeMap<String, Vec<u8>> = match objs.secrets.get(&key) {
            Some(s) => s
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect(),
            None if sec.optional == Some(true) => BTreeMap::new(),
            None => {
                return Err(VolumeError::SourceMissing {
                    volume: name.into(),
                    kind: "secret",
                    namespace: key.0,
                    name: key.1,
                });
            }
        };
        let mode = sec.default_mode.unwrap_or(0o644) as u32;
        let files = select_items(name, "secret", &sname, &data, sec.items.as_deref(), mode)?;
        let p = projection_dir(dirs, pod, name).map_err(io(name, &dirs.pod_run(pod)))?;
        project(&p, &files).map_err(io(name, &p))?;
        return Ok((MountKind::Bind, p));
    }
    Err(VolumeError::Unsupported {
        volume: name.into(),
    })
}

/// `<run>/pods/<pod key>/volumes/<name>`, below root-only dirs.
fn projection_dir(dirs: &VolumeDirs, pod: &PodRef, name: &str) -> std::io::Result<PathBuf> {
    let base = dirs.pod_run(pod);
    let private = [
        dirs.run_dir.join("pods"),
        base.clone(),
        base.join("volumes"),
    ];
    for p in &private {
        private_dir(p)?;
    }
    Ok(base.join("volumes").join(name))
}

fn check_host_path(volume: &str, p: &Path, type_: &str) -> Result<(), VolumeError> {
    use std::os::unix::fs::FileTypeExt;
    let err = |reason: &str| VolumeError::HostPath {
        volume: volume.into(),
        path: p.display().to_string(),
        reason: reason.into(),
    };
    let md = fs::metadata(p);
    match type_ {
        "" => Ok(()),
        "DirectoryOrCreate" => {
            if md.is_err() {
                fs::create_dir_all(p).map_err(io(volume, p))?;
                fs::set_permissions(p, fs::Permissions::from_mode(0o755)).map_err(io(volume, p))?;
                return Ok(());
            }
            md.ok()
                .filter(|m| m.is_dir())
                .map(|_| ())
                .ok_or_else(|| err("is not a directory"))
        }
        "Directory" => md
            .ok()
            .filter(|m| m.is_dir())
            .map(|_| ())
            .ok_or_else(|| err("is not a directory")),
        "FileOrCreate" => {
            if md.is_err() {
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o644)
                    .open(p)
                    .map_err(io(volume, p))?;
                return Ok(());
            }
            md.ok()
                .filter(|m| m.is_file())
                .map(|_| ())
                .ok_or_else(|| err("is not a file"))
        }
        "File" => md
            .ok()
            .filter(|m| m.is_file())
            .map(|_| ())
            .ok_or_else(|| err("is not a file")),
        "Socket" => md
            .ok()
            .filter(|m| m.file_type().is_socket())
            .map(|_| ())
            .ok_or_else(|| err("is not a socket")),
        "CharDevice" => md
            .ok()
            .filter(|m| m.file_type().is_char_device())
            .map(|_| ())
            .ok_or_else(|| err("is not a character device")),
        "BlockDevice" => md
            .ok()
            .filter(|m| m.file_type().is_block_device())
            .map(|_| ())
            .ok_or_else(|| err("is not a block device")),
        other => Err(err(&format!("unknown hostPath type {other:?}"))),
    }
}

/// (relative path, content, mode)
pub(super) type FileSet = Vec<(String, Vec<u8>, u32)>;

pub(super) fn select_items(
    volume: &str,
    kind: &'static str,
    name: &str,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
) -> Result<FileSet, VolumeError> {
    let Some(items) = items.filter(|i| !i.is_empty()) else {
        return Ok(data
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), default_mode))
            .collect());
    };
    let mut out = Vec::new();
    for it in items {
        let Some(v) = data.get(&it.key) else {
            return Err(VolumeError::KeyMissing {
                volume: volume.into(),
                kind,
                name: name.into(),
                key: it.key.clone(),
            });
        };
        let mode = it.mode.map(|m| m as u32).unwrap_or(default_mode);
        out.push((it.path.clone(), v.clone(), mode));
    }
    Ok(out)
}

/// Write `files` into a fresh `..<rev>` dir and atomically point `..data` at it.
fn project(dir: &Path, files: &FileSet) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let rev = crate::hash::spec_hash(&files.iter().map(|(p, c, m)| (p, c, m)).collect::<Vec<_>>());
    let data_link = dir.join("..data");
    let rev_name = format!("..{rev}");
    if fs::read_link(&data_link).ok().as_deref() == Some(Path::new(&rev_name)) {
        return Ok(());
    }
    let rev_dir = dir.join(&rev_name);
    let _ = fs::remove_dir_all(&rev_dir);
    fs::create_dir_all(&rev_dir)?;
    for (rel, content, mode) in files {
        // Keys are validated names; refuse anything that would climb out.
        if rel.split('/').any(|c| c == ".." || c.is_empty()) || rel.starts_with('/') {
            continue;
        }
        let target = rev_dir.join(rel);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut f = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(*mode & 0o777)
            .open(&target)?;
        f.write_all(content)?;
        f.sync_all()?;
        fs::set_permissions(&target, fs::Permissions::from_mode(*mode & 0o777))?;
    }
    let tmp_link = dir.join("..data_tmp");
    let _ = fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&rev_name, &tmp_link)?;
    let old = fs::read_link(&data_link).ok();
    fs::rename(&tmp_link, &data_link)?;
    // user-visible names: top-level entries as symlinks through ..data
    let mut tops: Vec<String> = files
        .iter()
        .filter_map(|(rel, _, _)| rel.split('/').next().map(str::to_string))
        .collect();
    tops.sort();
    tops.dedup();
    for top in &tops {
        let link = dir.join(top);
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(top), &link)?;
        }
    }
    // drop names that are gone
    for entry in fs::read_dir(dir)?.flatten() {
        let n = entry.file_name().to_string_lossy().into_owned();
        if !n.starts_with("..") && !tops.contains(&n) {
            let _ = fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old
        && old != Path::new(&rev_name)
    {
        let _ = fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

/// Mounts of one container, from its volumeMounts and the prepared volumes.
pub fn mounts_for(
    c: &berth_spec::k8s_openapi::api::core::v1::Container,
    prepared: &Prepared,
) -> Result<Vec<MountSpec>, VolumeError> {
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let Some(v) = prepared.get(&m.name) else {
            return Err(VolumeError::NoSuchVolume {
                mount: m.name.clone(),
            });
        };
        out.push(MountSpec {
            kind: v.kind.clone(),
            source: v.path.clone(),
            destination: m.mount_path.clone(),
            sub_path: m.sub_path.clone().filter(|s| !s.is_empty()),
            read_only: v.read_only || m.read_only.unwrap_or(false),
        });
    }
    Ok(out)
}

/// Remove the pod's own volume dirs (emptyDir, projections). Claims are kept.
pub fn remove_pod(dirs: &VolumeDirs, pod: &PodRef) -> std::io::Result<()> {
    for d in [dirs.pod_state(pod), dirs.pod_run(pod)] {
        match fs::remove_dir_all(&d) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_swaps_atomically_and_prunes() {
        let dir = std::env::temp_dir().join(format!("berth-proj-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        project(
            &dir,
            &vec![
                ("a".into(), b"1".to_vec(), 0o644),
                ("b".into(), b"2".to_vec(), 0o400),
            ],
        )
        .unwrap();
        assert_eq!(fs::read(dir.join("a")).unwrap(), b"1");
        let mode = fs::metadata(dir.join("b")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o400);
        project(&dir, &vec![("a".into(), b"3".to_vec(), 0o644)]).unwrap();
        assert_eq!(fs::read(dir.join("a")).unwrap(), b"3");
        assert!(fs::symlink_metadata(dir.join("b")).is_err());
        // only one revision dir remains
        let revs = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with("..") && n != "..data"
            })
            .count();
        assert_eq!(revs, 1);
        // hostile key is not written outside
        project(&dir, &vec![("../escape".into(), b"x".to_vec(), 0o644)]).unwrap();
        assert!(!dir.parent().unwrap().join("escape").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn projections_are_read_only_and_host_dirs_private() {
        use berth_spec::k8s_openapi::api::core::v1::{ConfigMap, Container, Secret};
        let t = std::env::temp_dir().join(format!("berth-vol-ro-{}", std::process::id()));
        let _ = fs::remove_dir_all(&t);
        let dirs = VolumeDirs {
            state_dir: t.join("state"),
            run_dir: t.join("run"),
        };
        let pod = PodRef {
            namespace: "default".into(),
            name: "p".into(),
            uid: "1".into(),
        };
        let spec: PodSpec = serde_json::from_value(serde_json::json!({
            "containers": [{"name": "c", "volumeMounts": [
                {"name": "cfg", "mountPath": "/cfg", "readOnly": false},
                {"name": "sec", "mountPath": "/sec"},
                {"name": "scratch", "mountPath": "/scratch"},
                {"name": "data", "mountPath": "/data"},
            ]}],
            "volumes": [
                {"name": "cfg", "configMap": {"name": "cm"}},
                {"name": "sec", "secret": {"secretName": "s", "defaultMode": 0o400}},
                {"name": "scratch", "emptyDir": {}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "d"}},
            ],
        }))
        .unwrap();
        let mut objs = ConfigObjects::default();
        let cm: ConfigMap =
            serde_json::from_value(serde_json::json!({"data": {"k": "v"}})).unwrap();
        let sec: Secret =
            serde_json::from_value(serde_json::json!({"data": {"pw": "aHVudGVyMg=="}})).unwrap();
        objs.config_maps.insert(("default".into(), "cm".into()), cm);
        objs.secrets.insert(("default".into(), "s".into()), sec);
        let claims = [("default".to_string(), "d".to_string())].into();
        let prepared = prepare(&dirs, &pod, &spec, &claims, &objs, None).unwrap();
        let c: Container = spec.containers[0].clone();
        let mounts = mounts_for(&c, &prepared).unwrap();
        let ro: BTreeMap<&str, bool> = mounts
            .iter()
            .map(|m| (m.destination.as_str(), m.read_only))
            .collect();
        assert_eq!(
            ro,
            BTreeMap::from([
                ("/cfg", true),
                ("/sec", true),
                ("/scratch", false),
                ("/data", false)
            ])
        );
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let run = dirs.pod_run(&pod);
        let state = dirs.pod_state(&pod);
        for d in [
            dirs.run_dir.join("pods"),
            run.clone(),
            run.join("volumes"),
            dirs.state_dir.join("pods"),
            state.clone(),
            state.join("empty-dir"),
            dirs.state_dir.join("volumes"),
            dirs.state_dir.join("volumes/default"),
        ] {
            assert_eq!(mode(&d), 0o700, "{}", d.display());
        }
        assert_eq!(mode(&state.join("empty-dir/scratch")), 0o777);
        assert_eq!(mode(&run.join("volumes/sec/pw")), 0o400);
        assert_eq!(fs::read(run.join("volumes/sec/pw")).unwrap(), b"hunter2");
        fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn host_path_types() {
        let dir = std::env::temp_dir().join(format!("berth-hp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        assert!(check_host_path("v", &dir, "Directory").is_err());
        check_host_path("v", &dir, "DirectoryOrCreate").unwrap();
        assert!(dir.is_dir());
        assert!(check_host_path("v", &dir, "File").is_err());
        let f = dir.join("f");
        check_host_path("v", &f, "FileOrCreate").unwrap();
        check_host_path("v", &f, "File").unwrap();
        assert!(check_host_path("v", &f, "Socket").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}

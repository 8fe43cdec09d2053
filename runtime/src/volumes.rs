//! Pod volumes on the host: the directories and projected files that the
//! reconciler asks for ([`VolumeRequest`]) and the runtime bind-mounts.
//!
//! ```text
//! <state>/volumes/<ns>/<claim>/            Volume / PersistentVolumeClaim (outlives pods)
//! <state>/pods/<pod key>/empty-dir/<name>/ emptyDir (gone with the pod)
//! <run>/pods/<pod key>/empty-dir/<name>/   emptyDir with medium Memory (a tmpfs mount)
//! <run>/pods/<pod key>/volumes/<name>/     configMap and secret projections
//!     ..data -> ..<rev>/   key -> ..data/key  (atomic update, as kubelet does)
//! ```
//!
//! Projections are swapped atomically by renaming the `..data` symlink, so a
//! container sees the old or the new set of files, never a mix.
//!
//! Other host users never reach a volume: the dirs above each one
//! (`<state>/pods/<pod key>`, `<state>/pods/<pod key>/empty-dir`,
//! `<run>/pods/<pod key>/volumes`, `<state>/volumes/<ns>`) are 0700. The
//! volume dirs themselves keep the modes containers expect (an emptyDir is
//! 0777, projected files have their `defaultMode`), as they are what the
//! container sees.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_contract::{
    Classify, ErrorKind, FsGroupRequest, HostPathType, HostVolume, MountKind, PodRef,
    ProjectedFile, VolumeRequest, VolumeSource, Volumes,
};
use sha2::{Digest, Sha256};

use crate::host_path;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {volume}: hostPath {path} check failed: {reason}")]
    HostPath {
        volume: String,
        path: String,
        reason: String,
    },
    #[error("volume {volume}: preparing {path}")]
    Io {
        volume: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("removing the volumes of pod {pod}")]
    Remove {
        pod: String,
        #[source]
        source: std::io::Error,
    },
    #[error("volume {volume}: name {volume:?} is not a single path component")]
    BadName { volume: String },
    #[error("claim {namespace}/{claim}: names must be single path components")]
    BadClaimName { namespace: String, claim: String },
    #[error("claim {namespace}/{claim}: {path}")]
    Claim {
        namespace: String,
        claim: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("fsGroup of pod {pod}: {path} is not one of its volumes")]
    NotAVolume { pod: String, path: PathBuf },
    #[error("fsGroup {gid} on {path}")]
    FsGroup {
        gid: u32,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Classify for VolumeError {
    fn kind(&self) -> ErrorKind {
        match self {
            VolumeError::HostPath { .. }
            | VolumeError::BadName { .. }
            | VolumeError::BadClaimName { .. }
            | VolumeError::NotAVolume { .. } => ErrorKind::Invalid,
            VolumeError::Io { .. }
            | VolumeError::Remove { .. }
            | VolumeError::Claim { .. }
            | VolumeError::FsGroup { .. } => ErrorKind::Transient,
        }
    }
}

/// Where pod volumes live: the agent's state and run dirs.
#[derive(Debug, Clone)]
pub struct VolumeDirs {
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    /// The operator policy's `allowedHostPaths` prefixes: hostPath volumes
    /// are resolved beneath them ([`crate::host_path`]). None: no policy,
    /// any hostPath as written (whoever writes manifests is root).
    pub host_path_prefixes: Option<Vec<PathBuf>>,
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

    /// Create or refresh one volume (blocking: call off the async runtime).
    pub fn ensure(&self, req: &VolumeRequest) -> Result<HostVolume, VolumeError> {
        let name = req.name.as_str();
        if !single_component(name) {
            return Err(VolumeError::BadName {
                volume: name.into(),
            });
        }
        let pod = &req.pod;
        let bind = |path| HostVolume {
            kind: MountKind::Bind,
            path,
        };
        match &req.source {
            VolumeSource::Claim { claim } => {
                if !single_component(claim) || !single_component(&pod.namespace) {
                    return Err(VolumeError::BadName {
                        volume: name.into(),
                    });
                }
                let p = self.claim_dir(&pod.namespace, claim);
                let private = [
                    self.state_dir.join("volumes"),
                    self.state_dir.join("volumes").join(&pod.namespace),
                ];
                dir_below_private(&p, &private).map_err(io(name, &p))?;
                Ok(bind(p))
            }
            VolumeSource::HostPath { path, type_ } => {
                let Some(prefixes) = &self.host_path_prefixes else {
                    check_host_path(name, path, *type_)?;
                    return Ok(bind(path.clone()));
                };
                let create = match type_ {
                    HostPathType::DirectoryOrCreate => host_path::Create::Directory,
                    HostPathType::FileOrCreate => host_path::Create::File,
                    _ => host_path::Create::Nothing,
                };
                let real = host_path::confine(path, prefixes, create).map_err(|e| {
                    VolumeError::HostPath {
                        volume: name.into(),
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    }
                })?;
                check_host_path(name, &real, *type_)?;
                Ok(bind(real))
            }
            VolumeSource::EmptyDir { memory, size_bytes } => {
                let (root, base) = if *memory {
                    (self.run_dir.join("pods"), self.pod_run(pod))
                } else {
                    (self.state_dir.join("pods"), self.pod_state(pod))
                };
                let p = base.join("empty-dir").join(name);
                let private = [root, base.clone(), base.join("empty-dir")];
                dir_below_private(&p, &private).map_err(io(name, &p))?;
                if *memory {
                    return Ok(HostVolume {
                        kind: MountKind::Tmpfs {
                            size_bytes: *size_bytes,
                        },
                        path: p,
                    });
                }
                // 0777 as kubelet's, for any user in the container; below 0700 dirs on the host
                fs::set_permissions(&p, fs::Permissions::from_mode(0o777)).map_err(io(name, &p))?;
                Ok(bind(p))
            }
            VolumeSource::Projection { files } => {
                let base = self.pod_run(pod);
                let private = [
                    self.run_dir.join("pods"),
                    base.clone(),
                    base.join("volumes"),
                ];
                for d in &private {
                    berth_state::ensure_private_dir(d).map_err(io(name, d))?;
                }
                let p = base.join("volumes").join(name);
                project(&p, files).map_err(io(name, &p))?;
                Ok(bind(p))
            }
        }
    }

    /// The directory of claim `namespace/claim`, refusing names that are
    /// not one path component each.
    fn claim_path(&self, namespace: &str, claim: &str) -> Result<PathBuf, VolumeError> {
        if !single_component(namespace) || !single_component(claim) {
            return Err(VolumeError::BadClaimName {
                namespace: namespace.into(),
                claim: claim.into(),
            });
        }
        Ok(self.claim_dir(namespace, claim))
    }

    fn claim_err(
        namespace: &str,
        claim: &str,
        path: &Path,
    ) -> impl FnOnce(std::io::Error) -> VolumeError {
        let (namespace, claim, path) =
            (namespace.to_string(), claim.to_string(), path.to_path_buf());
        move |source| VolumeError::Claim {
            namespace,
            claim,
            path,
            source,
        }
    }

    /// Create a claim's directory below root-only parents (blocking).
    pub fn make_claim(&self, namespace: &str, claim: &str) -> Result<PathBuf, VolumeError> {
        let p = self.claim_path(namespace, claim)?;
        let private = [
            self.state_dir.join("volumes"),
            self.state_dir.join("volumes").join(namespace),
        ];
        dir_below_private(&p, &private).map_err(Self::claim_err(namespace, claim, &p))?;
        Ok(p)
    }

    /// Delete a claim's directory and data (blocking).
    pub fn delete_claim(&self, namespace: &str, claim: &str) -> Result<(), VolumeError> {
        let p = self.claim_path(namespace, claim)?;
        match fs::remove_dir_all(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Self::claim_err(namespace, claim, &p)(e))
            }
            _ => Ok(()),
        }
    }

    /// Bytes of the claim's regular files; `None` without a directory (blocking).
    pub fn measure_claim(&self, namespace: &str, claim: &str) -> Result<Option<u64>, VolumeError> {
        let p = self.claim_path(namespace, claim)?;
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => Ok(Some(dir_size(&p))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::claim_err(namespace, claim, &p)(e)),
        }
    }

    /// Remove the pod's own volume dirs (emptyDir, projections). Claims are kept.
    pub fn remove_pod(&self, pod: &PodRef) -> Result<(), VolumeError> {
        for d in [self.pod_state(pod), self.pod_run(pod)] {
            match fs::remove_dir_all(&d) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(VolumeError::Remove {
                        pod: pod.key(),
                        source: e,
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl Volumes for VolumeDirs {
    type VolumeError = VolumeError;

    async fn ensure_volume(&self, req: &VolumeRequest) -> Result<HostVolume, VolumeError> {
        let (dirs, req) = (self.clone(), req.clone());
        blocking(move || dirs.ensure(&req)).await
    }

    async fn remove_pod_volumes(&self, pod: &PodRef) -> Result<(), VolumeError> {
        let (dirs, pod) = (self.clone(), pod.clone());
        blocking(move || dirs.remove_pod(&pod)).await
    }

    async fn apply_fs_group(&self, req: &FsGroupRequest) -> Result<(), VolumeError> {
        let (dirs, req) = (self.clone(), req.clone());
        blocking(move || dirs.fs_group(&req)).await
    }

    async fn ensure_claim(&self, namespace: &str, claim: &str) -> Result<PathBuf, VolumeError> {
        let (dirs, ns, c) = (self.clone(), namespace.to_string(), claim.to_string());
        blocking(move || dirs.make_claim(&ns, &c)).await
    }

    async fn remove_claim(&self, namespace: &str, claim: &str) -> Result<(), VolumeError> {
        let (dirs, ns, c) = (self.clone(), namespace.to_string(), claim.to_string());
        blocking(move || dirs.delete_claim(&ns, &c)).await
    }

    async fn claim_usage(&self, namespace: &str, claim: &str) -> Result<Option<u64>, VolumeError> {
        let (dirs, ns, c) = (self.clone(), namespace.to_string(), claim.to_string());
        blocking(move || dirs.measure_claim(&ns, &c)).await
    }
}

impl Volumes for crate::ShimRuntime {
    type VolumeError = VolumeError;

    async fn ensure_volume(&self, req: &VolumeRequest) -> Result<HostVolume, VolumeError> {
        self.volume_dirs().ensure_volume(req).await
    }

    async fn remove_pod_volumes(&self, pod: &PodRef) -> Result<(), VolumeError> {
        self.volume_dirs().remove_pod_volumes(pod).await
    }

    async fn apply_fs_group(&self, req: &FsGroupRequest) -> Result<(), VolumeError> {
        self.volume_dirs().apply_fs_group(req).await
    }

    async fn ensure_claim(&self, namespace: &str, claim: &str) -> Result<PathBuf, VolumeError> {
        Volumes::ensure_claim(&self.volume_dirs(), namespace, claim).await
    }

    async fn remove_claim(&self, namespace: &str, claim: &str) -> Result<(), VolumeError> {
        Volumes::remove_claim(&self.volume_dirs(), namespace, claim).await
    }

    async fn claim_usage(&self, namespace: &str, claim: &str) -> Result<Option<u64>, VolumeError> {
        Volumes::claim_usage(&self.volume_dirs(), namespace, claim).await
    }
}

impl crate::ShimRuntime {
    /// Pod volumes live in the agent's state and run dirs, as the runtime's own files do.
    pub fn volume_dirs(&self) -> VolumeDirs {
        VolumeDirs {
            state_dir: self.cfg.state_dir.clone(),
            run_dir: self.cfg.run_dir.clone(),
            host_path_prefixes: self.cfg.host_path_prefixes.clone(),
        }
    }
}

/// Filesystem work off the async runtime's threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, VolumeError> + Send + 'static,
) -> Result<T, VolumeError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Bytes used by regular files under `dir` (symlinks not followed).
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            if md.is_dir() {
                stack.push(e.path());
            } else if md.is_file() {
                total += md.len();
            }
        }
    }
    total
}

fn single_component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
}

/// `dir` exists below root-only parents: each of `private` (ancestors of
/// `dir`, outermost first) is made 0700.
fn dir_below_private(dir: &Path, private: &[PathBuf]) -> std::io::Result<()> {
    for p in private {
        berth_state::ensure_private_dir(p)?;
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

fn check_host_path(volume: &str, p: &Path, type_: HostPathType) -> Result<(), VolumeError> {
    use std::os::unix::fs::FileTypeExt;
    let err = |reason: &str| VolumeError::HostPath {
        volume: volume.into(),
        path: p.display().to_string(),
        reason: reason.into(),
    };
    let md = fs::metadata(p);
    let is = |ok: fn(&fs::Metadata) -> bool, what: &str| {
        md.as_ref()
            .ok()
            .filter(|m| ok(m))
            .map(|_| ())
            .ok_or_else(|| err(what))
    };
    match type_ {
        HostPathType::Any => Ok(()),
        HostPathType::DirectoryOrCreate if md.is_err() => {
            fs::create_dir_all(p).map_err(io(volume, p))?;
            fs::set_permissions(p, fs::Permissions::from_mode(0o755)).map_err(io(volume, p))
        }
        HostPathType::DirectoryOrCreate | HostPathType::Directory => {
            is(|m| m.is_dir(), "is not a directory")
        }
        HostPathType::FileOrCreate if md.is_err() => fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .open(p)
            .map(drop)
            .map_err(io(volume, p)),
        HostPathType::FileOrCreate | HostPathType::File => is(|m| m.is_file(), "is not a file"),
        HostPathType::Socket => is(|m| m.file_type().is_socket(), "is not a socket"),
        HostPathType::CharDevice => is(
            |m| m.file_type().is_char_device(),
            "is not a character device",
        ),
        HostPathType::BlockDevice => {
            is(|m| m.file_type().is_block_device(), "is not a block device")
        }
    }
}

/// Revision name of a file set: equal sets, equal names.
fn revision(files: &[ProjectedFile]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update((f.path.len() as u64).to_le_bytes());
        h.update(f.path.as_bytes());
        h.update((f.content.len() as u64).to_le_bytes());
        h.update(&f.content);
        h.update(f.mode.to_le_bytes());
    }
    hex::encode(&h.finalize()[..5])
}

/// Write `files` into a fresh `..<rev>` dir and atomically point `..data` at it.
fn project(dir: &Path, files: &[ProjectedFile]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let rev_name = format!("..{}", revision(files));
    let data_link = dir.join("..data");
    if fs::read_link(&data_link).ok().as_deref() == Some(Path::new(&rev_name)) {
        return Ok(());
    }
    let rev_dir = dir.join(&rev_name);
    let _ = fs::remove_dir_all(&rev_dir);
    fs::create_dir_all(&rev_dir)?;
    for f in files {
        // Keys are validated names; refuse anything that would climb out.
        let rel = &f.path;
        if rel.split('/').any(|c| c == ".." || c.is_empty()) || rel.starts_with('/') {
            continue;
        }
        let target = rev_dir.join(rel);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        let mode = f.mode & 0o777;
        let mut out = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(mode)
            .open(&target)?;
        out.write_all(&f.content)?;
        out.sync_all()?;
        fs::set_permissions(&target, fs::Permissions::from_mode(mode))?;
    }
    let tmp_link = dir.join("..data_tmp");
    let _ = fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&rev_name, &tmp_link)?;
    let old = fs::read_link(&data_link).ok();
    fs::rename(&tmp_link, &data_link)?;
    // user-visible names: top-level entries as symlinks through ..data
    let mut tops: Vec<String> = files
        .iter()
        .filter_map(|f| f.path.split('/').next().map(str::to_string))
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

mod fs_group;

#[cfg(test)]
mod tests;

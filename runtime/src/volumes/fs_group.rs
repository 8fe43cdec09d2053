//! `fsGroup` ownership of a pod's writable volumes, as kubelet applies it:
//! every file and directory gets the group, group read/write (and search on
//! directories), and directories the setgid bit so new files inherit the
//! group. `fsGroupChangePolicy: OnRootMismatch` skips a volume whose root
//! already has both. Symlinks are neither followed nor changed; the walk
//! stays on the volume's own filesystem entries (no `..`, no links out).
//!
//! Only volumes this host made are walked: an emptyDir of the pod itself
//! (`<state>/pods/<pod key>/empty-dir/<name>`) or a claim of its namespace
//! (`<state>/volumes/<ns>/<claim>`); any other path is refused.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path};

use berth_contract::FsGroupRequest;

use super::{VolumeDirs, VolumeError};

const SETGID: u32 = 0o2000;

/// Deepest directory level walked (a volume deeper than this keeps the rest
/// as it was, and the error says so).
const MAX_DEPTH: usize = 256;

impl VolumeDirs {
    /// Apply the request (blocking: call off the async runtime).
    pub fn fs_group(&self, req: &FsGroupRequest) -> Result<(), VolumeError> {
        for v in &req.volumes {
            if !self.owns_volume_of(req, v) {
                return Err(VolumeError::NotAVolume {
                    pod: req.pod.key(),
                    path: v.clone(),
                });
            }
        }
        for v in &req.volumes {
            if req.on_root_mismatch && root_matches(v, req.gid) {
                continue;
            }
            walk(v, req.gid, 0).map_err(|(path, source)| VolumeError::FsGroup {
                gid: req.gid,
                path: path.display().to_string(),
                source,
            })?;
        }
        Ok(())
    }

    /// `path` is one of the pod's emptyDirs on disk or a claim of its namespace.
    fn owns_volume_of(&self, req: &FsGroupRequest, path: &Path) -> bool {
        let plain = path
            .components()
            .enumerate()
            .all(|(i, c)| matches!(c, Component::Normal(_)) || (i == 0 && c == Component::RootDir));
        if !plain || !path.is_absolute() {
            return false;
        }
        let one_below = |base: &Path| {
            path.strip_prefix(base)
                .is_ok_and(|rest| rest.components().count() == 1)
        };
        one_below(&self.pod_state(&req.pod).join("empty-dir"))
            || one_below(&self.state_dir.join("volumes").join(&req.pod.namespace))
    }
}

fn root_matches(p: &Path, gid: u32) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.gid() == gid && m.mode() & SETGID != 0)
}

type WalkError = (std::path::PathBuf, std::io::Error);

fn walk(p: &Path, gid: u32, depth: usize) -> Result<(), WalkError> {
    let at = |e| (p.to_path_buf(), e);
    let m = fs::symlink_metadata(p).map_err(at)?;
    if m.file_type().is_symlink() {
        return Ok(());
    }
    std::os::unix::fs::lchown(p, None, Some(gid)).map_err(at)?;
    let mode = m.mode() & 0o7777;
    let want = if m.is_dir() {
        mode | 0o060 | 0o010 | SETGID
    } else {
        mode | 0o060
    };
    if want != mode {
        fs::set_permissions(p, fs::Permissions::from_mode(want)).map_err(at)?;
    }
    if m.is_dir() {
        if depth >= MAX_DEPTH {
            return Err(at(std::io::Error::other(format!(
                "deeper than {MAX_DEPTH} levels"
            ))));
        }
        for e in fs::read_dir(p).map_err(at)? {
            let e = e.map_err(at)?;
            walk(&e.path(), gid, depth + 1)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use berth_contract::{PodRef, VolumeRequest, VolumeSource};

    use super::*;

    // Works unprivileged: the test's own gid is always one it may chown to.
    #[test]
    fn group_and_setgid_applied_through_the_tree_without_following_links() {
        let t = tempfile::tempdir().unwrap();
        let dirs = VolumeDirs {
            state_dir: t.path().join("state"),
            run_dir: t.path().join("run"),
            host_path_prefixes: None,
        };
        let pod = PodRef {
            namespace: "default".into(),
            name: "fsg".into(),
            uid: "u1".into(),
        };
        let vol = dirs
            .ensure(&VolumeRequest {
                pod: pod.clone(),
                name: "data".into(),
                source: VolumeSource::EmptyDir {
                    memory: false,
                    size_bytes: None,
                },
            })
            .unwrap()
            .path;
        fs::create_dir_all(vol.join("sub")).unwrap();
        fs::write(vol.join("sub/f"), b"x").unwrap();
        fs::set_permissions(vol.join("sub/f"), fs::Permissions::from_mode(0o600)).unwrap();
        let outside = t.path().join("outside");
        fs::write(&outside, b"y").unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&outside, vol.join("link")).unwrap();
        let gid = fs::metadata(t.path()).unwrap().gid();
        let req = FsGroupRequest {
            pod: pod.clone(),
            gid,
            on_root_mismatch: false,
            volumes: vec![vol.clone()],
        };
        dirs.fs_group(&req).unwrap();
        let mode = |p: &Path| fs::symlink_metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&vol.join("sub")) & (SETGID | 0o070), SETGID | 0o070);
        assert_eq!(mode(&vol.join("sub/f")), 0o660);
        assert!(root_matches(&vol, gid));
        // the link's target is not the volume's
        assert_eq!(mode(&outside), 0o600);
        // OnRootMismatch: a matching root is left alone (a new file keeps its mode)
        fs::write(vol.join("new"), b"z").unwrap();
        fs::set_permissions(vol.join("new"), fs::Permissions::from_mode(0o600)).unwrap();
        dirs.fs_group(&FsGroupRequest {
            on_root_mismatch: true,
            ..req.clone()
        })
        .unwrap();
        assert_eq!(mode(&vol.join("new")), 0o600);
        // another pod's volume is not this pod's to change
        let other = FsGroupRequest {
            pod: PodRef {
                uid: "u2".into(),
                ..pod
            },
            ..req
        };
        assert!(matches!(
            dirs.fs_group(&other),
            Err(VolumeError::NotAVolume { .. })
        ));
    }
}

//! `fsGroup` ownership of a pod's writable volumes, as kubelet applies it:
//! every file and directory gets the group, group read/write (and search on
//! directories), and directories the setgid bit so new files inherit the
//! group. `fsGroupChangePolicy: OnRootMismatch` skips a volume whose root
//! already has both. Symlinks are neither followed nor changed; the walk
//! stays on the volume's own filesystem entries (no `..`, no links out).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_spec::k8s_openapi::api::core::v1::PodSpec;

use super::volumes::Prepared;
use crate::traits::MountKind;

const SETGID: u32 = 0o2000;

/// Deepest directory level walked (a volume deeper than this keeps the rest
/// as it was, and the error says so).
const MAX_DEPTH: usize = 256;

#[derive(Debug, thiserror::Error)]
#[error("fsGroup {gid} on {path}")]
pub struct FsGroupError {
    gid: u32,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// The volumes of `spec` that take the pod's fsGroup: emptyDirs on disk and
/// Volumes (claims). hostPath volumes are the host's and keep their owner,
/// as with kubelet; projections are read-only.
pub fn apply(spec: &PodSpec, prepared: &Prepared) -> Result<(), FsGroupError> {
    let Some(sc) = spec.security_context.as_ref() else {
        return Ok(());
    };
    let Some(gid) = sc.fs_group.and_then(|g| u32::try_from(g).ok()) else {
        return Ok(());
    };
    let on_mismatch = sc.fs_group_change_policy.as_deref() == Some("OnRootMismatch");
    for v in spec.volumes.iter().flatten() {
        if v.empty_dir.is_none() && v.persistent_volume_claim.is_none() {
            continue;
        }
        let Some(p) = prepared.get(&v.name) else {
            continue;
        };
        if p.kind != MountKind::Bind {
            continue;
        }
        if on_mismatch && root_matches(&p.path, gid) {
            continue;
        }
        walk(&p.path, gid, 0)?;
    }
    Ok(())
}

fn root_matches(p: &Path, gid: u32) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.gid() == gid && m.mode() & SETGID != 0)
}

fn err(gid: u32, path: &Path) -> impl FnOnce(std::io::Error) -> FsGroupError {
    let path = path.to_path_buf();
    move |source| FsGroupError { gid, path, source }
}

fn walk(p: &Path, gid: u32, depth: usize) -> Result<(), FsGroupError> {
    let m = fs::symlink_metadata(p).map_err(err(gid, p))?;
    if m.file_type().is_symlink() {
        return Ok(());
    }
    std::os::unix::fs::lchown(p, None, Some(gid)).map_err(err(gid, p))?;
    let mode = m.mode() & 0o7777;
    let want = if m.is_dir() {
        mode | 0o060 | 0o010 | SETGID
    } else {
        mode | 0o060
    };
    if want != mode {
        fs::set_permissions(p, fs::Permissions::from_mode(want)).map_err(err(gid, p))?;
    }
    if m.is_dir() {
        if depth >= MAX_DEPTH {
            return Err(err(gid, p)(std::io::Error::other(format!(
                "deeper than {MAX_DEPTH} levels"
            ))));
        }
        for e in fs::read_dir(p).map_err(err(gid, p))? {
            let e = e.map_err(err(gid, p))?;
            walk(&e.path(), gid, depth + 1)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use berth_spec::k8s_openapi::api::core::v1::{
        EmptyDirVolumeSource, PodSecurityContext, Volume,
    };

    use super::super::volumes::PreparedVolume;
    use super::*;

    // Works unprivileged: the test's own gid is always one it may chown to.
    #[test]
    fn group_and_setgid_applied_through_the_tree_without_following_links() {
        let dir = std::env::temp_dir().join(format!("berth-fsgroup-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let vol = dir.join("vol");
        fs::create_dir_all(vol.join("sub")).unwrap();
        fs::write(vol.join("sub/f"), b"x").unwrap();
        fs::set_permissions(vol.join("sub/f"), fs::Permissions::from_mode(0o600)).unwrap();
        let outside = dir.join("outside");
        fs::write(&outside, b"y").unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&outside, vol.join("link")).unwrap();
        let gid = fs::metadata(&dir).unwrap().gid();
        let spec = PodSpec {
            security_context: Some(PodSecurityContext {
                fs_group: Some(gid as i64),
                ..Default::default()
            }),
            volumes: Some(vec![Volume {
                name: "data".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let prepared: Prepared = [(
            "data".to_string(),
            PreparedVolume {
                kind: MountKind::Bind,
                path: vol.clone(),
                read_only: false,
            },
        )]
        .into();
        apply(&spec, &prepared).unwrap();
        let mode = |p: &Path| fs::symlink_metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&vol.join("sub")) & (SETGID | 0o070), SETGID | 0o070);
        assert_eq!(mode(&vol.join("sub/f")), 0o660);
        assert!(root_matches(&vol, gid));
        // the link's target is not the volume's
        assert_eq!(mode(&outside), 0o600);
        fs::remove_dir_all(&dir).unwrap();
    }
}

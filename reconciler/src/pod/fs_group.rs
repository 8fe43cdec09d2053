//! Which volumes take a pod's `fsGroup` (a decision; the host walks and
//! chowns them, [`crate::traits::Volumes::apply_fs_group`]): emptyDirs on
//! disk and Volumes (claims). hostPath volumes are the host's and keep their
//! owner, as with kubelet; projections are read-only and memory emptyDirs
//! are fresh tmpfs mounts.

use berth_spec::k8s_openapi::api::core::v1::PodSpec;

use super::volumes::Prepared;
use crate::traits::{FsGroupRequest, MountKind, PodRef};

/// The request for `spec`'s fsGroup, or `None` when there is nothing to do.
pub fn request(pod: &PodRef, spec: &PodSpec, prepared: &Prepared) -> Option<FsGroupRequest> {
    let sc = spec.security_context.as_ref()?;
    let gid = sc.fs_group.and_then(|g| u32::try_from(g).ok())?;
    let volumes: Vec<_> = spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.empty_dir.is_some() || v.persistent_volume_claim.is_some())
        .filter_map(|v| prepared.get(&v.name))
        .filter(|p| p.kind == MountKind::Bind)
        .map(|p| p.path.clone())
        .collect();
    if volumes.is_empty() {
        return None;
    }
    Some(FsGroupRequest {
        pod: pod.clone(),
        gid,
        on_root_mismatch: sc.fs_group_change_policy.as_deref() == Some("OnRootMismatch"),
        volumes,
    })
}

#[cfg(test)]
mod tests {
    use berth_spec::k8s_openapi::api::core::v1::{
        EmptyDirVolumeSource, HostPathVolumeSource, PersistentVolumeClaimVolumeSource,
        PodSecurityContext, Volume,
    };

    use super::super::volumes::PreparedVolume;
    use super::*;

    fn vol(name: &str) -> Volume {
        Volume {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn only_empty_dirs_on_disk_and_claims_take_the_group() {
        let pod = PodRef {
            namespace: "default".into(),
            name: "p".into(),
            uid: "u".into(),
        };
        let mut spec = PodSpec {
            volumes: Some(vec![
                Volume {
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..vol("scratch")
                },
                Volume {
                    empty_dir: Some(EmptyDirVolumeSource {
                        medium: Some("Memory".into()),
                        ..Default::default()
                    }),
                    ..vol("mem")
                },
                Volume {
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: "data".into(),
                        ..Default::default()
                    }),
                    ..vol("data")
                },
                Volume {
                    host_path: Some(HostPathVolumeSource {
                        path: "/srv".into(),
                        ..Default::default()
                    }),
                    ..vol("host")
                },
            ]),
            ..Default::default()
        };
        let bind = |p: &str| PreparedVolume {
            kind: MountKind::Bind,
            path: p.into(),
            read_only: false,
        };
        let prepared: Prepared = [
            ("scratch".to_string(), bind("/v/scratch")),
            (
                "mem".to_string(),
                PreparedVolume {
                    kind: MountKind::Tmpfs { size_bytes: None },
                    ..bind("/v/mem")
                },
            ),
            ("data".to_string(), bind("/v/data")),
            ("host".to_string(), bind("/srv")),
        ]
        .into();
        assert_eq!(request(&pod, &spec, &prepared), None, "no fsGroup");
        spec.security_context = Some(PodSecurityContext {
            fs_group: Some(2000),
            fs_group_change_policy: Some("OnRootMismatch".into()),
            ..Default::default()
        });
        assert_eq!(
            request(&pod, &spec, &prepared),
            Some(FsGroupRequest {
                pod: pod.clone(),
                gid: 2000,
                on_root_mismatch: true,
                volumes: vec!["/v/scratch".into(), "/v/data".into()],
            })
        );
        spec.security_context.as_mut().unwrap().fs_group = Some(-1);
        assert_eq!(request(&pod, &spec, &prepared), None, "not a gid");
    }
}

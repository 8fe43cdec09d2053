//! Pod volumes, decided: which host volume each pod volume is
//! ([`VolumeRequest`]), and the mounts of each container. The host work
//! (directories, projected files, hostPath checks) is the runtime's
//! ([`crate::traits::Volumes`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_spec::k8s_openapi::api::core::v1::{KeyToPath, PodSpec, Volume as PodVolume};

use crate::container::ConfigObjects;
use crate::traits::{
    HostPathType, MountKind, MountSpec, PodRef, ProjectedFile, VolumeRequest, VolumeSource,
};

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {volume}: Volume (PersistentVolumeClaim) {namespace}/{claim} is not defined")]
    ClaimMissing {
        volume: String,
        namespace: String,
        claim: String,
    },
    #[error("volume {volume}: unknown hostPath type {type_:?}")]
    HostPathType { volume: String, type_: String },
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

/// One volume to ask the host for, and whether containers get it read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub request: VolumeRequest,
    pub read_only: bool,
}

/// What every volume of the pod is (pure). configMap/secret contents are
/// resolved here, so the host only writes files.
pub fn plan(
    pod: &PodRef,
    spec: &PodSpec,
    claims: &std::collections::BTreeSet<(String, String)>,
    objs: &ConfigObjects,
    fields: Option<&crate::container::PodFields<'_>>,
) -> Result<Vec<Planned>, VolumeError> {
    let mut out = Vec::new();
    let node = crate::downward::NodeCapacity::of_host();
    for v in spec.volumes.iter().flatten() {
        // downwardAPI and projected volumes are files computed from the pod's
        // own fields (without them such a volume is refused)
        let source = match fields.and_then(|f| super::projection::files(v, objs, f, node)) {
            Some(files) => VolumeSource::Projection { files: files? },
            None => source_of(pod, v, claims, objs)?,
        };
        let read_only = v.config_map.is_some()
            || v.secret.is_some()
            || v.downward_api.is_some()
            || v.projected.is_some();
        out.push(Planned {
            request: VolumeRequest {
                pod: pod.clone(),
                name: v.name.clone(),
                source,
            },
            read_only,
        });
    }
    Ok(out)
}

fn source_of(
    pod: &PodRef,
    v: &PodVolume,
    claims: &std::collections::BTreeSet<(String, String)>,
    objs: &ConfigObjects,
) -> Result<VolumeSource, VolumeError> {
    let name = v.name.as_str();
    if let Some(pvc) = &v.persistent_volume_claim {
        if !claims.contains(&(pod.namespace.clone(), pvc.claim_name.clone())) {
            return Err(VolumeError::ClaimMissing {
                volume: name.into(),
                namespace: pod.namespace.clone(),
                claim: pvc.claim_name.clone(),
            });
        }
        return Ok(VolumeSource::Claim {
            claim: pvc.claim_name.clone(),
        });
    }
    if let Some(hp) = &v.host_path {
        let t = hp.type_.as_deref().unwrap_or("");
        let Some(type_) = HostPathType::parse(t) else {
            return Err(VolumeError::HostPathType {
                volume: name.into(),
                type_: t.into(),
            });
        };
        return Ok(VolumeSource::HostPath {
            path: PathBuf::from(&hp.path),
            type_,
        });
    }
    if let Some(ed) = &v.empty_dir {
        let memory = ed.medium.as_deref() == Some("Memory");
        let size_bytes = ed
            .size_limit
            .as_ref()
            .filter(|_| memory)
            .and_then(|q| berth_spec::quantity::parse_bytes(&q.0).ok());
        return Ok(VolumeSource::EmptyDir { memory, size_bytes });
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
        return Ok(VolumeSource::Projection { files });
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
        return Ok(VolumeSource::Projection { files });
    }
    Err(VolumeError::Unsupported {
        volume: name.into(),
    })
}

/// The files of a projection.
pub(super) type FileSet = Vec<ProjectedFile>;

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
            .map(|(k, v)| ProjectedFile {
                path: k.clone(),
                content: v.clone(),
                mode: default_mode,
            })
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
        out.push(ProjectedFile {
            path: it.path.clone(),
            content: v.clone(),
            mode,
        });
    }
    Ok(out)
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

#[cfg(test)]
mod tests;

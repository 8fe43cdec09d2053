//! The files of `downwardAPI` and `projected` volumes (configMap, secret and
//! downwardAPI sources), written by [`super::volumes`] like configMap and
//! secret volumes: atomically swapped, read-only in the container.

use std::collections::BTreeMap;

use berth_spec::k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, Volume as PodVolume};

use super::volumes::{FileSet, VolumeError, select_items};
use crate::container::{ConfigObjects, PodFields};
use crate::downward::{self, NodeCapacity};

fn config_map_data(
    objs: &ConfigObjects,
    ns: &str,
    name: &str,
) -> Option<BTreeMap<String, Vec<u8>>> {
    let c = objs.config_maps.get(&(ns.to_string(), name.to_string()))?;
    Some(
        c.data
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
    )
}

fn secret_data(objs: &ConfigObjects, ns: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    let s = objs.secrets.get(&(ns.to_string(), name.to_string()))?;
    Some(
        s.data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect(),
    )
}

fn downward_files(
    volume: &str,
    items: &[DownwardAPIVolumeFile],
    mode: u32,
    pod: &PodFields<'_>,
    node: NodeCapacity,
) -> Result<FileSet, VolumeError> {
    items
        .iter()
        .map(|f| {
            let content =
                downward::file_content(f, pod, node).map_err(|source| VolumeError::Downward {
                    volume: volume.into(),
                    path: f.path.clone(),
                    source: Box::new(source),
                })?;
            let m = f.mode.map(|m| m as u32).unwrap_or(mode);
            Ok((f.path.clone(), content.into_bytes(), m))
        })
        .collect()
}

/// The files of a `downwardAPI` or `projected` volume; `None` for any other.
pub fn files(
    v: &PodVolume,
    objs: &ConfigObjects,
    pod: &PodFields<'_>,
    node: NodeCapacity,
) -> Option<Result<FileSet, VolumeError>> {
    let name = v.name.as_str();
    if let Some(d) = &v.downward_api {
        let mode = d.default_mode.unwrap_or(0o644) as u32;
        return Some(downward_files(
            name,
            d.items.as_deref().unwrap_or_default(),
            mode,
            pod,
            node,
        ));
    }
    let p = v.projected.as_ref()?;
    let mode = p.default_mode.unwrap_or(0o644) as u32;
    let mut out: FileSet = Vec::new();
    let mut add = |files: FileSet| {
        // a later source wins a path, as kubelet's
        for f in files {
            out.retain(|(p, _, _)| *p != f.0);
            out.push(f);
        }
    };
    for s in p.sources.iter().flatten() {
        let files = if let Some(c) = &s.config_map {
            match config_map_data(objs, pod.namespace, &c.name) {
                Some(data) => {
                    select_items(name, "configmap", &c.name, &data, c.items.as_deref(), mode)
                }
                None if c.optional == Some(true) => Ok(Vec::new()),
                None => Err(VolumeError::SourceMissing {
                    volume: name.into(),
                    kind: "configmap",
                    namespace: pod.namespace.into(),
                    name: c.name.clone(),
                }),
            }
        } else if let Some(c) = &s.secret {
            match secret_data(objs, pod.namespace, &c.name) {
                Some(data) => {
                    select_items(name, "secret", &c.name, &data, c.items.as_deref(), mode)
                }
                None if c.optional == Some(true) => Ok(Vec::new()),
                None => Err(VolumeError::SourceMissing {
                    volume: name.into(),
                    kind: "secret",
                    namespace: pod.namespace.into(),
                    name: c.name.clone(),
                }),
            }
        } else if let Some(d) = &s.downward_api {
            downward_files(
                name,
                d.items.as_deref().unwrap_or_default(),
                mode,
                pod,
                node,
            )
        } else {
            // serviceAccountToken and other cluster-issued sources are refused by validation
            Err(VolumeError::Unsupported {
                volume: name.into(),
            })
        };
        match files {
            Ok(f) => add(f),
            Err(e) => return Some(Err(e)),
        }
    }
    Some(Ok(out))
}

#[cfg(test)]
mod tests {
    use berth_spec::k8s_openapi::api::core::v1::{
        ConfigMap, ConfigMapProjection, DownwardAPIProjection, ObjectFieldSelector,
        ProjectedVolumeSource, VolumeProjection,
    };

    use super::*;

    const NODE: NodeCapacity = NodeCapacity {
        cpu_millis: 1000,
        memory_bytes: 1 << 30,
    };

    #[test]
    fn projected_sources_combine() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let fields = PodFields {
            namespace: "default",
            name: "p",
            uid: "u",
            node_name: "n",
            labels: &labels,
            annotations: &labels,
            pod_ip: None,
            host_ip: None,
            service_account: "default",
            containers: &[],
        };
        let mut objs = ConfigObjects::default();
        objs.config_maps.insert(
            ("default".into(), "cfg".into()),
            ConfigMap {
                data: Some([("a.conf".to_string(), "x=1".to_string())].into()),
                ..Default::default()
            },
        );
        let v = PodVolume {
            name: "all".into(),
            projected: Some(ProjectedVolumeSource {
                default_mode: Some(0o440),
                sources: Some(vec![
                    VolumeProjection {
                        config_map: Some(ConfigMapProjection {
                            name: "cfg".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    VolumeProjection {
                        downward_api: Some(DownwardAPIProjection {
                            items: Some(vec![DownwardAPIVolumeFile {
                                path: "labels".into(),
                                field_ref: Some(ObjectFieldSelector {
                                    field_path: "metadata.labels".into(),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }]),
                        }),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let files = files(&v, &objs, &fields, NODE).unwrap().unwrap();
        assert_eq!(
            files,
            vec![
                ("a.conf".to_string(), b"x=1".to_vec(), 0o440),
                ("labels".to_string(), b"app=\"web\"\n".to_vec(), 0o440),
            ]
        );
        // a missing configMap is named
        let objs = ConfigObjects::default();
        let err = files_err(&v, &objs, &fields);
        assert!(err.contains("configmap default/cfg not found"), "{err}");
    }

    fn files_err(v: &PodVolume, objs: &ConfigObjects, f: &PodFields<'_>) -> String {
        files(v, objs, f, NODE).unwrap().unwrap_err().to_string()
    }
}

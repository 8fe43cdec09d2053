use berth_spec::k8s_openapi::api::core::v1::{ConfigMap, Container, Secret};

use super::*;

fn pod() -> PodRef {
    PodRef {
        namespace: "default".into(),
        name: "p".into(),
        uid: "1".into(),
    }
}

fn spec(v: serde_json::Value) -> PodSpec {
    serde_json::from_value(v).unwrap()
}

#[test]
fn projections_are_resolved_and_read_only() {
    let spec = spec(serde_json::json!({
        "containers": [{"name": "c", "volumeMounts": [
            {"name": "cfg", "mountPath": "/cfg", "readOnly": false},
            {"name": "sec", "mountPath": "/sec"},
            {"name": "scratch", "mountPath": "/scratch"},
            {"name": "data", "mountPath": "/data"},
        ]}],
        "volumes": [
            {"name": "cfg", "configMap": {"name": "cm", "items": [{"key": "k", "path": "sub/k", "mode": 0o600}]}},
            {"name": "sec", "secret": {"secretName": "s", "defaultMode": 0o400}},
            {"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "d"}},
        ],
    }));
    let mut objs = ConfigObjects::default();
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({"data": {"k": "v"}})).unwrap();
    let sec: Secret =
        serde_json::from_value(serde_json::json!({"data": {"pw": "aHVudGVyMg=="}})).unwrap();
    objs.config_maps.insert(("default".into(), "cm".into()), cm);
    objs.secrets.insert(("default".into(), "s".into()), sec);
    let claims = [("default".to_string(), "d".to_string())].into();
    let planned = plan(&pod(), &spec, &claims, &objs, None).unwrap();
    let by_name: BTreeMap<&str, &Planned> = planned
        .iter()
        .map(|p| (p.request.name.as_str(), p))
        .collect();
    assert_eq!(
        by_name["cfg"].request.source,
        VolumeSource::Projection {
            files: vec![ProjectedFile {
                path: "sub/k".into(),
                content: b"v".to_vec(),
                mode: 0o600
            }]
        }
    );
    assert_eq!(
        by_name["sec"].request.source,
        VolumeSource::Projection {
            files: vec![ProjectedFile {
                path: "pw".into(),
                content: b"hunter2".to_vec(),
                mode: 0o400
            }]
        }
    );
    // a size limit only bounds a memory-backed emptyDir
    assert_eq!(
        by_name["scratch"].request.source,
        VolumeSource::EmptyDir {
            memory: false,
            size_bytes: None
        }
    );
    assert_eq!(
        by_name["data"].request.source,
        VolumeSource::Claim { claim: "d".into() }
    );
    let prepared: Prepared = planned
        .iter()
        .map(|p| {
            let v = PreparedVolume {
                kind: MountKind::Bind,
                path: PathBuf::from("/h").join(&p.request.name),
                read_only: p.read_only,
            };
            (p.request.name.clone(), v)
        })
        .collect();
    let c: Container = spec.containers[0].clone();
    let ro: BTreeMap<String, bool> = mounts_for(&c, &prepared)
        .unwrap()
        .into_iter()
        .map(|m| (m.destination, m.read_only))
        .collect();
    assert_eq!(
        ro,
        BTreeMap::from([
            ("/cfg".into(), true),
            ("/sec".into(), true),
            ("/scratch".into(), false),
            ("/data".into(), false)
        ])
    );
}

#[test]
fn missing_sources_are_errors_unless_optional() {
    let objs = ConfigObjects::default();
    let none = Default::default();
    let e = plan(
        &pod(),
        &spec(serde_json::json!({"containers": [], "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "x"}}]})),
        &none,
        &objs,
        None,
    )
    .unwrap_err();
    assert!(matches!(e, VolumeError::ClaimMissing { .. }), "{e}");
    let e = plan(
        &pod(),
        &spec(serde_json::json!({"containers": [], "volumes": [{"name": "c", "configMap": {"name": "x"}}]})),
        &none,
        &objs,
        None,
    )
    .unwrap_err();
    assert!(matches!(e, VolumeError::SourceMissing { .. }), "{e}");
    let ok = plan(
        &pod(),
        &spec(serde_json::json!({"containers": [], "volumes": [{"name": "c", "configMap": {"name": "x", "optional": true}}]})),
        &none,
        &objs,
        None,
    )
    .unwrap();
    assert_eq!(
        ok[0].request.source,
        VolumeSource::Projection { files: vec![] }
    );
    let e = plan(
        &pod(),
        &spec(serde_json::json!({"containers": [], "volumes": [{"name": "h", "hostPath": {"path": "/x", "type": "Bogus"}}]})),
        &none,
        &objs,
        None,
    )
    .unwrap_err();
    assert!(matches!(e, VolumeError::HostPathType { .. }), "{e}");
}

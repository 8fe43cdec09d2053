use super::*;
use crate::traits::ImageConfig;
use berth_spec::k8s_openapi::api::core::v1::{
    ConfigMapKeySelector, EnvVarSource, ObjectFieldSelector, ResourceRequirements, SecurityContext,
};

fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageInfo {
    ImageInfo {
        reference: "x".into(),
        image_id: "sha256:1".into(),
        repo_digest: None,
        layers: vec![],
        config: ImageConfig {
            entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/bin".into(), "A=image".into()],
            ..Default::default()
        },
    }
}

fn strs(v: &[&str]) -> Option<Vec<String>> {
    Some(v.iter().map(|s| s.to_string()).collect())
}

#[test]
fn command_and_args_follow_kubernetes() {
    let img = image(&["/ep"], &["cmd1"]);
    let env = BTreeMap::new();
    let mut c = Container::default();
    assert_eq!(argv(&c, &img, &env).unwrap(), vec!["/ep", "cmd1"]);
    c.args = strs(&["a1"]);
    assert_eq!(argv(&c, &img, &env).unwrap(), vec!["/ep", "a1"]);
    c.command = strs(&["/c"]);
    assert_eq!(argv(&c, &img, &env).unwrap(), vec!["/c", "a1"]);
    c.args = None;
    assert_eq!(argv(&c, &img, &env).unwrap(), vec!["/c"]);
    let empty = image(&[], &[]);
    assert_eq!(
        argv(&Container::default(), &empty, &env),
        Err(BuildError::NoCommand)
    );
}

#[test]
fn var_expansion() {
    let env: BTreeMap<String, String> = [("A".to_string(), "1".to_string())].into();
    assert_eq!(expand_vars("x$(A)y", &env), "x1y");
    assert_eq!(expand_vars("$(B)", &env), "$(B)");
    assert_eq!(expand_vars("$$(A)", &env), "$(A)");
    assert_eq!(expand_vars("$(A", &env), "$(A");
    assert_eq!(expand_vars("é$(A)", &env), "é1");
}

fn fields<'a>(labels: &'a BTreeMap<String, String>) -> PodFields<'a> {
    PodFields {
        namespace: "ns",
        name: "p",
        uid: "u",
        node_name: "node",
        labels,
        annotations: labels,
        pod_ip: Some(Ipv4Addr::new(10, 0, 0, 2)),
        host_ip: None,
        service_account: "default",
        containers: &[],
    }
}

#[test]
fn env_sources() {
    let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
    let mut objs = ConfigObjects::default();
    objs.config_maps.insert(
        ("ns".into(), "cm".into()),
        ConfigMap {
            data: Some([("k".to_string(), "v".to_string())].into()),
            ..Default::default()
        },
    );
    let c = Container {
        env: Some(vec![
            EnvVar {
                name: "A".into(),
                value: Some("mine-$(PATH)".into()),
                value_from: None,
            },
            EnvVar {
                name: "IP".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "status.podIP".into(),
                        api_version: None,
                    }),
                    ..Default::default()
                }),
            },
            EnvVar {
                name: "APP".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.labels['app']".into(),
                        api_version: None,
                    }),
                    ..Default::default()
                }),
            },
            EnvVar {
                name: "K".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: "cm".into(),
                        key: "k".into(),
                        optional: None,
                    }),
                    ..Default::default()
                }),
            },
        ]),
        ..Default::default()
    };
    let env = environment(&c, &image(&[], &[]), &fields(&labels), &objs).unwrap();
    assert_eq!(env["A"], "mine-/bin");
    assert_eq!(env["IP"], "10.0.0.2");
    assert_eq!(env["APP"], "web");
    assert_eq!(env["K"], "v");
    assert_eq!(env["PATH"], "/bin");

    let missing = Container {
        env: Some(vec![EnvVar {
            name: "K".into(),
            value: None,
            value_from: Some(EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: "cm".into(),
                    key: "nope".into(),
                    optional: None,
                }),
                ..Default::default()
            }),
        }]),
        ..Default::default()
    };
    assert!(matches!(
        environment(&missing, &image(&[], &[]), &fields(&labels), &objs),
        Err(BuildError::ConfigMapKey { .. })
    ));
}

#[test]
fn resources_and_security() {
    let c = Container {
        resources: Some(ResourceRequirements {
            limits: Some(
                [
                    ("memory".to_string(), Quantity("64Mi".into())),
                    ("cpu".to_string(), Quantity("500m".into())),
                ]
                .into(),
            ),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            run_as_user: Some(1000),
            ..Default::default()
        }),
        ..Default::default()
    };
    let r = resources(&c).unwrap();
    assert_eq!(r.memory_limit_bytes, Some(64 * 1024 * 1024));
    assert_eq!(r.memory_request_bytes, Some(64 * 1024 * 1024));
    assert_eq!(r.cpu_limit_millis, Some(500));
    let s = security(&c, None);
    assert!(!s.allow_privilege_escalation);
    assert_eq!(s.run_as_user, Some(1000));
    assert!(!s.seccomp_unconfined);
}

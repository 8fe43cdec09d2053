//! Defaults filled by the parser, as kube-apiserver would.

use berth_spec::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use berth_spec::volume::ReclaimPolicy;
use berth_spec::{Kind, Object, parse_str};

fn one(text: &str) -> Object {
    let p = parse_str("d.yaml", text);
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
    assert_eq!(p.objects.len(), 1);
    p.objects.into_iter().next().unwrap().object
}

#[test]
fn deployment_defaults() {
    let Object::Deployment(d) = one(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers:\n      - name: c\n        image: berth.local/busybox:1.36\n        ports: [{containerPort: 80}]\n        livenessProbe: {tcpSocket: {port: 80}}\n",
    ) else {
        panic!()
    };
    assert_eq!(d.metadata.namespace.as_deref(), Some("default"));
    let s = &d.spec;
    assert_eq!(s.replicas, Some(1));
    assert_eq!(s.revision_history_limit, Some(10));
    assert_eq!(s.progress_deadline_seconds, Some(600));
    assert_eq!(s.min_ready_seconds, Some(0));
    let st = s.strategy.as_ref().unwrap();
    assert_eq!(st.type_.as_deref(), Some("RollingUpdate"));
    let ru = st.rolling_update.as_ref().unwrap();
    assert_eq!(ru.max_surge, Some(IntOrString::String("25%".into())));
    assert_eq!(ru.max_unavailable, Some(IntOrString::String("25%".into())));
    let ps = s.template.spec.as_ref().unwrap();
    assert_eq!(ps.restart_policy.as_deref(), Some("Always"));
    assert_eq!(ps.dns_policy.as_deref(), Some("ClusterFirst"));
    assert_eq!(ps.termination_grace_period_seconds, Some(30));
    let c = &ps.containers[0];
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(
        c.termination_message_path.as_deref(),
        Some("/dev/termination-log")
    );
    assert_eq!(c.termination_message_policy.as_deref(), Some("File"));
    assert_eq!(
        c.ports.as_ref().unwrap()[0].protocol.as_deref(),
        Some("TCP")
    );
    let lp = c.liveness_probe.as_ref().unwrap();
    assert_eq!(
        (
            lp.period_seconds,
            lp.timeout_seconds,
            lp.success_threshold,
            lp.failure_threshold
        ),
        (Some(10), Some(1), Some(1), Some(3))
    );
}

#[test]
fn recreate_gets_no_rolling_update() {
    let Object::Deployment(d) = one(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  strategy: {type: Recreate}\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers: [{name: c, image: x:1}]\n",
    ) else {
        panic!()
    };
    assert!(d.spec.strategy.unwrap().rolling_update.is_none());
}

#[test]
fn service_defaults() {
    let Object::Service(s) = one(
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: edge}\nspec:\n  selector: {a: b}\n  ports:\n  - {name: a, port: 80}\n  - {name: b, port: 53, protocol: UDP, targetPort: dns}\n",
    ) else {
        panic!()
    };
    assert_eq!(s.metadata.namespace.as_deref(), Some("edge"));
    let spec = s.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    let p = spec.ports.unwrap();
    assert_eq!(p[0].protocol.as_deref(), Some("TCP"));
    assert_eq!(p[0].target_port, Some(IntOrString::Int(80)));
    assert_eq!(p[1].protocol.as_deref(), Some("UDP"));
    assert_eq!(p[1].target_port, Some(IntOrString::String("dns".into())));
}

#[test]
fn secret_string_data_is_merged_into_data() {
    let Object::Secret(s) = one(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {a: YQ==, b: Yg==}\nstringData: {b: B, c: C}\n",
    ) else {
        panic!()
    };
    assert!(s.string_data.is_none());
    let d = s.data.unwrap();
    let v: Vec<(&str, &[u8])> = d.iter().map(|(k, v)| (k.as_str(), &v.0[..])).collect();
    assert_eq!(v, [("a", &b"a"[..]), ("b", b"B"), ("c", b"C")]);
    assert_eq!(s.type_.as_deref(), Some("Opaque"));
}

#[test]
fn pvc_becomes_a_retained_volume() {
    let o = one(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data, labels: {a: b}}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 2Gi}}\n",
    );
    assert_eq!(o.kind(), Kind::Volume);
    assert_eq!(o.api_version(), "berth.dev/v1alpha1");
    let Object::Volume(v) = o else { panic!() };
    assert_eq!(v.api_version, "berth.dev/v1alpha1");
    assert_eq!(v.kind, "Volume");
    assert_eq!(v.metadata.labels.unwrap()["a"], "b");
    assert_eq!(v.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(v.spec.reclaim_policy, ReclaimPolicy::Retain);
    assert_eq!(v.spec.size.as_deref(), Some("2Gi"));
}

#[test]
fn objects_serialize_to_the_kubernetes_shape() {
    let p = parse_str(
        "s.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: v}\n---\napiVersion: berth.dev/v1alpha1\nkind: Volume\nmetadata: {name: v}\n",
    );
    let j = serde_json::to_value(&p.objects).unwrap();
    assert_eq!(
        j[0],
        serde_json::json!({
            "object": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}, "data": {"k": "v"}},
            "location": {"file": "s.yaml", "line": 1, "column": 1}
        })
    );
    assert_eq!(
        j[1]["object"],
        serde_json::json!({"apiVersion": "berth.dev/v1alpha1", "kind": "Volume", "metadata": {"name": "v", "namespace": "default"}, "spec": {"reclaimPolicy": "Retain"}})
    );
    assert_eq!(p.objects[0].object.api_version(), "v1");
}

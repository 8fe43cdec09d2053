//! StatefulSet manifests that are valid although they differ from the
//! usual shape.

use berth_spec::{Object, parse_str};

#[test]
fn a_statefulset_without_service_name_is_valid() {
    // serviceName is optional since Kubernetes 1.29 (no per-pod DNS names then)
    let text = "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: c
        image: busybox:1.36
";
    let p = parse_str("s.yaml", text);
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
    assert!(
        matches!(&p.objects[..], [s] if matches!(&s.object, Object::StatefulSet(x) if x.spec.service_name.is_none()))
    );
}

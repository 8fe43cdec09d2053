//! Parsing and validation of whole files, with exact messages and positions.
//! Each `fixtures/invalid/NAME.yaml` has a golden `NAME.expected` (regenerate
//! with `BLESS=1 cargo test -p berth-spec`).

use berth_spec::{Object, Severity, parse_str, validate_set};

fn render(file: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/invalid/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed = parse_str(&format!("invalid/{file}"), &text);
    let mut lines: Vec<String> = parsed.diagnostics.iter().map(|d| d.to_string()).collect();
    lines.extend(validate_set(&parsed.objects).iter().map(|d| d.to_string()));
    lines.join("\n") + "\n"
}

#[test]
fn invalid_fixtures_match_golden_messages() {
    let dir = format!("{}/tests/fixtures/invalid", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    assert!(!names.is_empty());
    for n in names {
        let got = render(&n);
        let golden = format!("{dir}/{}", n.replace(".yaml", ".expected"));
        if std::env::var_os("BLESS").is_some() {
            std::fs::write(&golden, &got).unwrap();
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|_| panic!("missing {golden}; run with BLESS=1"));
        assert_eq!(got, want, "diagnostics of {n} changed");
    }
}

#[test]
fn port_error_points_at_the_field() {
    let out = render("bad-port.yaml");
    assert_eq!(
        out.trim(),
        "invalid/bad-port.yaml:11:7: Pod \"x\": spec.containers[0].ports[0].containerPort: 99999 is not a valid port (1-65535)"
    );
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let out = render("multi.yaml");
    for want in [
        "multi.yaml:8:", // wrong type, in the first document
        "spec.ports[0].port: invalid type: string \"http\"",
        "Deployment \"Web_App\": metadata.name",
        "selector app=web does not match the template labels",
        "duplicate container name \"web\"",
        "spec.template.spec.containers[0].image: image is required",
        "64Mx",
        "warning: Deployment \"Web_App\": spec.template.spec.containers[0].imag: unknown field",
        "unknown kind Gadget in apiVersion v1",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn syntax_errors_keep_their_position() {
    let out = render("syntax.yaml");
    assert!(out.starts_with("invalid/syntax.yaml:4:"), "{out}");
}

#[test]
fn multi_document_list_anchors_and_defaults() {
    let text = r#"
# comment
base: &img berth.local/busybox:1.36
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: a}
  data: {k: v}
- apiVersion: v1
  kind: Secret
  metadata: {name: s, namespace: prod}
  stringData: {password: x}
---
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
  - name: c
    image: busybox
    readinessProbe: {httpGet: {port: 80}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, annotations: {berth.dev/reclaim-policy: Delete}}
spec: {resources: {requests: {storage: 1Gi}}, accessModes: [ReadWriteOnce]}
"#;
    let p = parse_str("t.yaml", text);
    // the first document has no kind: an error, the rest still parse
    assert_eq!(
        p.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count(),
        1,
        "{:?}",
        p.diagnostics
    );
    assert!(
        p.diagnostics[0]
            .to_string()
            .starts_with("t.yaml:3:1: missing kind"),
        "{}",
        p.diagnostics[0]
    );
    assert_eq!(p.objects.len(), 4);
    let pod = p.objects.iter().find_map(|s| match &s.object {
        Object::Pod(p) => Some(p),
        _ => None,
    });
    let pod = pod.unwrap();
    assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    let c = &spec.containers[0];
    assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
    let rp = c.readiness_probe.as_ref().unwrap();
    assert_eq!(
        (rp.period_seconds, rp.timeout_seconds, rp.failure_threshold),
        (Some(10), Some(1), Some(3))
    );
    assert_eq!(rp.http_get.as_ref().unwrap().path.as_deref(), Some("/"));
    let pod_loc = p
        .objects
        .iter()
        .find(|s| matches!(s.object, Object::Pod(_)))
        .unwrap();
    assert_eq!(pod_loc.location.line, 17);
    let secret = p.objects.iter().find_map(|s| match &s.object {
        Object::Secret(s) => Some(s),
        _ => None,
    });
    assert_eq!(secret.unwrap().data.as_ref().unwrap()["password"].0, b"x");
    let vol = p.objects.iter().find_map(|s| match &s.object {
        Object::Volume(v) => Some(v),
        _ => None,
    });
    let vol = vol.unwrap();
    assert_eq!(
        vol.spec.reclaim_policy,
        berth_spec::volume::ReclaimPolicy::Delete
    );
    assert_eq!(vol.spec.size.as_deref(), Some("1Gi"));
}

#[test]
fn duplicates_across_files_are_reported_on_both() {
    let a = parse_str(
        "a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    );
    let b = parse_str(
        "b.yaml",
        "\n\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    );
    let all: Vec<_> = a.objects.into_iter().chain(b.objects).collect();
    let d = validate_set(&all);
    assert_eq!(d.len(), 2);
    assert!(d[0].to_string().starts_with("a.yaml:1:1:"));
    assert!(d[1].to_string().starts_with("b.yaml:3:1:"));
    assert!(d[0].message.contains("a.yaml:1:1, b.yaml:3:1"));
}

#[test]
fn unknown_fields_are_warnings_with_lines() {
    let p = parse_str(
        "w.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  colour: blue\nspec:\n  containers:\n  - name: c\n    image: busybox:1\n",
    );
    assert!(!p.has_errors());
    assert_eq!(p.diagnostics.len(), 1);
    assert_eq!(
        p.diagnostics[0].to_string(),
        "w.yaml:5:3: warning: Pod \"p\": metadata.colour: unknown field (ignored)"
    );
}

#[test]
fn schema_covers_every_kind() {
    let s = berth_spec::json_schema();
    let defs = s["$defs"].as_object().unwrap();
    for k in [
        "berth.Pod",
        "berth.Deployment",
        "berth.Service",
        "berth.ConfigMap",
        "berth.Secret",
        "berth.Volume",
        "berth.PersistentVolumeClaim",
        "berth.Job",
        "berth.CronJob",
        "berth.StatefulSet",
        "berth.DaemonSet",
        "berth.ReplicaSet",
        "berth.ReplicationController",
    ] {
        assert!(defs.contains_key(k), "{k} missing");
    }
    assert_eq!(s["allOf"].as_array().unwrap().len(), 14);
    let golden = format!("{}/tests/golden/schema.json", env!("CARGO_MANIFEST_DIR"));
    let text = serde_json::to_string_pretty(&s).unwrap() + "\n";
    if std::env::var_os("BLESS").is_some() {
        std::fs::create_dir_all(format!("{}/tests/golden", env!("CARGO_MANIFEST_DIR"))).unwrap();
        std::fs::write(&golden, &text).unwrap();
    }
    let want = std::fs::read_to_string(&golden).expect("golden schema; run with BLESS=1");
    assert!(
        want == text,
        "JSON schema changed; review and re-bless with BLESS=1"
    );
}

#[test]
fn merge_keys_are_applied() {
    let p = parse_str(
        "m.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - &c\n    name: a\n    image: busybox:1\n  - <<: *c\n    name: b\n    ports:\n    - containerPort: 0\n",
    );
    let d: Vec<String> = p.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        d,
        [
            "m.yaml:12:7: Pod \"p\": spec.containers[1].ports[0].containerPort: 0 is not a valid port (1-65535)"
        ]
    );
    let Object::Pod(pod) = &p.objects[0].object else {
        panic!()
    };
    let c = &pod.spec.as_ref().unwrap().containers[1];
    assert_eq!(
        (c.name.as_str(), c.image.as_deref()),
        ("b", Some("busybox:1"))
    );
}

#[test]
fn list_items_keep_paths_and_lines() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: ok}\n- apiVersion: v1\n  kind: Service\n  metadata:\n    name: s\n  spec:\n    selector: {app: a}\n    ports:\n    - port: http\n- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: p\n  spec:\n    containers:\n    - name: c\n      colour: red\n      image: busybox:1\n      ports:\n      - containerPort: 70000\n- kind: Gizmo\n  apiVersion: v9\n";
    let p = parse_str("l.yaml", text);
    let d: Vec<String> = p.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        d,
        [
            "l.yaml:14:7: Service \"s\": spec.ports[0].port: invalid type: string \"http\", expected i32",
            "l.yaml:25:9: Pod \"p\": spec.containers[0].ports[0].containerPort: 70000 is not a valid port (1-65535)",
            "l.yaml:26:3: items[3]: v9 Gizmo: metadata.name is required (berth would skip this kind, but it is not a valid object)",
            "l.yaml:22:7: warning: Pod \"p\": spec.containers[0].colour: unknown field (ignored)",
        ]
    );
    assert_eq!(p.objects.len(), 2);
    assert_eq!(p.objects[0].location.line, 4);
    assert_eq!(p.objects[1].location.line, 15);
}

#[test]
fn crlf_and_byte_order_mark() {
    let text = "\u{feff}apiVersion: v1\r\nkind: Pod\r\nmetadata:\r\n  name: p\r\nspec:\r\n  containers:\r\n  - name: c\r\n    image: busybox:1\r\n    ports:\r\n    - containerPort: 0\r\n---\r\napiVersion: v1\r\nkind: ConfigMap\r\nmetadata: {name: c}\r\n";
    let p = parse_str("w.yaml", text);
    let d: Vec<String> = p.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        d,
        [
            "w.yaml:10:7: Pod \"p\": spec.containers[0].ports[0].containerPort: 0 is not a valid port (1-65535)"
        ]
    );
    assert_eq!(p.objects.len(), 2);
    assert_eq!(p.objects[1].location.line, 12);
}

#[test]
fn type_errors_point_at_the_value() {
    let p = parse_str(
        "t.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {app: web}\nspec:\n  containers:\n  - name: c\n    image: busybox:1\n    ports:\n    - containerPort: http\n",
    );
    assert_eq!(
        p.diagnostics[0].to_string(),
        "t.yaml:11:22: Pod \"p\": spec.containers[0].ports[0].containerPort: invalid type: string \"http\", expected i32"
    );
    let p = parse_str(
        "t.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {}\n",
    );
    assert_eq!(
        p.diagnostics[0].to_string(),
        "t.yaml:4:1: Pod \"p\": spec.containers: a pod needs at least one container"
    );
}

#[test]
fn yaml_1_1_octal_file_modes() {
    let p = parse_str(
        "o.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: busybox:1}]\n  volumes:\n  - name: s\n    secret: {secretName: s, defaultMode: 0640, items: [{key: a, path: a, mode: 0400}]}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {a: b}\n",
    );
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
    let Object::Pod(pod) = &p.objects[0].object else {
        panic!()
    };
    let sec = pod.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0]
        .secret
        .as_ref()
        .unwrap();
    assert_eq!(sec.default_mode, Some(0o640));
    assert_eq!(sec.items.as_ref().unwrap()[0].mode, Some(0o400));
}

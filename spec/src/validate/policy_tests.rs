use super::*;
use crate::parse_str;

fn policy(yaml: &str) -> PolicyFile {
    serde_norway::from_str(yaml).expect("policy parses")
}

fn spec_policy(spec: &str) -> Policy {
    policy(&format!(
        "apiVersion: berth.dev/v1alpha1\nkind: Policy\nspec:\n{spec}"
    ))
    .spec
}

/// A Pod with `spec` (indented YAML under `spec:`), parsed and defaulted.
fn pod(spec: &str) -> Sourced {
    let text = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n{spec}");
    let parsed = parse_str("pod.yaml", &text);
    assert_eq!(parsed.objects.len(), 1, "{:?}", parsed.diagnostics);
    parsed.objects.into_iter().next().unwrap()
}

const CTR: &str = "  containers:\n  - name: c\n    image: busybox\n";

/// The findings' `path: message` lines.
fn findings(p: &Policy, s: &Sourced) -> Vec<String> {
    check(p, &s.object)
        .into_iter()
        .map(|f| format!("{}: {}", f.path.unwrap_or_default(), f.message))
        .collect()
}

#[test]
fn a_plain_pod_passes_the_strictest_policy() {
    let p = spec_policy("  {}");
    assert_eq!(p, Policy::default());
    let s = pod(&format!(
        "{CTR}    ports:\n    - containerPort: 80\n      hostPort: 8080\n"
    ));
    assert!(findings(&p, &s).is_empty());
}

#[test]
fn privileged_is_refused_unless_allowed() {
    let s = pod(&format!(
        "{CTR}    securityContext:\n      privileged: true\n"
    ));
    let f = findings(&Policy::default(), &s);
    assert_eq!(
        f,
        [
            "spec.containers[0].securityContext.privileged: refused by policy (privileged): privileged containers are not allowed"
        ]
    );
    assert!(findings(&spec_policy("  privileged: true\n"), &s).is_empty());
    // privileged: false is fine
    let s = pod(&format!(
        "{CTR}    securityContext:\n      privileged: false\n"
    ));
    assert!(findings(&Policy::default(), &s).is_empty());
}

#[test]
fn init_containers_are_checked_too() {
    let s = pod(&format!(
        "  initContainers:\n  - name: i\n    image: busybox\n    securityContext:\n      privileged: true\n{CTR}"
    ));
    let f = findings(&Policy::default(), &s);
    assert_eq!(f.len(), 1);
    assert!(
        f[0].starts_with("spec.initContainers[0].securityContext.privileged:"),
        "{f:?}"
    );
}

#[test]
fn host_namespaces_are_refused_unless_allowed() {
    let s = pod(&format!("  hostNetwork: true\n{CTR}"));
    assert_eq!(
        findings(&Policy::default(), &s),
        ["spec.hostNetwork: refused by policy (hostNetwork): hostNetwork pods are not allowed"]
    );
    assert!(findings(&spec_policy("  hostNetwork: true\n"), &s).is_empty());
    // hostPID/hostIPC are refused by validation today; the policy rule still
    // holds for the typed object
    let mut obj = pod(CTR).object;
    if let Object::Pod(p) = &mut obj {
        let spec = p.spec.as_mut().unwrap();
        spec.host_pid = Some(true);
        spec.host_ipc = Some(true);
    }
    let f: Vec<String> = check(&Policy::default(), &obj)
        .into_iter()
        .map(|f| f.path.unwrap_or_default())
        .collect();
    assert_eq!(f, ["spec.hostPID", "spec.hostIPC"]);
    let open = spec_policy("  hostPID: true\n  hostIPC: true\n");
    assert!(check(&open, &obj).is_empty());
}

const HOST_VOL: &str = "  volumes:\n  - name: h\n    hostPath:\n      path: PATH\n";

fn host_path_pod(path: &str, read_only: Option<bool>, ty: Option<&str>) -> Sourced {
    let mut text = format!("{CTR}    volumeMounts:\n    - name: h\n      mountPath: /h\n");
    if let Some(ro) = read_only {
        text.push_str(&format!("      readOnly: {ro}\n"));
    }
    text.push_str(&HOST_VOL.replace("PATH", path));
    if let Some(t) = ty {
        text.push_str(&format!("      type: {t}\n"));
    }
    pod(&text)
}

#[test]
fn host_paths_are_refused_by_default() {
    let s = host_path_pod("/", None, None);
    assert_eq!(
        findings(&Policy::default(), &s),
        [
            "spec.volumes[0].hostPath.path: refused by policy (allowedHostPaths): hostPath \"/\": hostPath volumes are not allowed"
        ]
    );
}

#[test]
fn host_paths_match_whole_components_of_a_prefix() {
    let p = spec_policy("  allowedHostPaths:\n  - pathPrefix: /srv/data/\n");
    for ok in ["/srv/data", "/srv/data/x/y", "/srv//data/./x"] {
        assert!(
            findings(&p, &host_path_pod(ok, None, None)).is_empty(),
            "{ok}"
        );
    }
    for bad in ["/srv/database", "/srv", "/", "/etc"] {
        let f = findings(&p, &host_path_pod(bad, None, None));
        assert_eq!(f.len(), 1, "{bad}: {f:?}");
        assert!(
            f[0].contains("is not below an allowed prefix (/srv/data/)"),
            "{f:?}"
        );
    }
    // '..' never matches (validation refuses it as well)
    let mut obj = host_path_pod("/srv/data", None, None).object;
    if let Object::Pod(pd) = &mut obj {
        pd.spec.as_mut().unwrap().volumes.as_mut().unwrap()[0]
            .host_path
            .as_mut()
            .unwrap()
            .path = "/srv/data/../../etc".into();
    }
    let f = check(&p, &obj);
    assert_eq!(f.len(), 1);
    assert!(f[0].message.contains("without '..'"), "{f:?}");
}

#[test]
fn read_only_host_paths_need_read_only_mounts() {
    let p = spec_policy("  allowedHostPaths:\n  - pathPrefix: /srv\n    readOnly: true\n");
    assert!(findings(&p, &host_path_pod("/srv/a", Some(true), None)).is_empty());
    for ro in [None, Some(false)] {
        let f = findings(&p, &host_path_pod("/srv/a", ro, None));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].starts_with(
                "spec.containers[0].volumeMounts[0].readOnly: refused by policy (allowedHostPaths)"
            ),
            "{f:?}"
        );
    }
    // creating the path on the host is a write
    let f = findings(
        &p,
        &host_path_pod("/srv/a", Some(true), Some("DirectoryOrCreate")),
    );
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].starts_with("spec.volumes[0].hostPath.type:"), "{f:?}");
    // a read-write rule for a longer prefix wins where it matches
    let p = spec_policy(
        "  allowedHostPaths:\n  - pathPrefix: /srv\n    readOnly: true\n  - pathPrefix: /srv/rw\n",
    );
    assert!(findings(&p, &host_path_pod("/srv/rw/x", Some(false), None)).is_empty());
    assert_eq!(
        findings(&p, &host_path_pod("/srv/ro", Some(false), None)).len(),
        1
    );
}

fn cap_pod(caps: &str) -> Sourced {
    pod(&format!(
        "{CTR}    securityContext:\n      capabilities:\n        add: {caps}\n"
    ))
}

#[test]
fn added_capabilities_are_refused_unless_listed() {
    let s = cap_pod("[SYS_ADMIN]");
    assert_eq!(
        findings(&Policy::default(), &s),
        [
            "spec.containers[0].securityContext.capabilities.add[0]: refused by policy (allowedCapabilities): adding capability \"SYS_ADMIN\" is not allowed (no capability may be added)"
        ]
    );
    let p = spec_policy("  allowedCapabilities: [CAP_NET_ADMIN, net_bind_service]\n");
    assert!(findings(&p, &cap_pod("[NET_ADMIN, CAP_NET_BIND_SERVICE]")).is_empty());
    let f = findings(&p, &cap_pod("[NET_ADMIN, SYS_ADMIN]"));
    assert_eq!(f.len(), 1);
    assert!(
        f[0].starts_with("spec.containers[0].securityContext.capabilities.add[1]:")
            && f[0].contains("(allowed: NET_ADMIN, NET_BIND_SERVICE)"),
        "{f:?}"
    );
    // add: [ALL] needs ALL in the policy; ALL in the policy allows anything
    assert_eq!(findings(&p, &cap_pod("[ALL]")).len(), 1);
    let all = spec_policy("  allowedCapabilities: [ALL]\n");
    assert!(findings(&all, &cap_pod("[ALL, SYS_ADMIN]")).is_empty());
    // dropping is always fine
    let s = pod(&format!(
        "{CTR}    securityContext:\n      capabilities:\n        drop: [ALL]\n"
    ));
    assert!(findings(&Policy::default(), &s).is_empty());
}

fn port_pod(host_network: bool, port: &str) -> Sourced {
    let hn = if host_network {
        "  hostNetwork: true\n"
    } else {
        ""
    };
    pod(&format!("{hn}{CTR}    ports:\n{port}"))
}

#[test]
fn host_ports_below_1024_are_refused_by_default() {
    let s = port_pod(false, "    - containerPort: 80\n      hostPort: 80\n");
    assert_eq!(
        findings(&Policy::default(), &s),
        [
            "spec.containers[0].ports[0].hostPort: refused by policy (allowedHostPorts): host port 80 is not allowed (allowed: 1024-65535)"
        ]
    );
    let p =
        spec_policy("  allowedHostPorts:\n  - {min: 80, max: 80}\n  - {min: 8000, max: 9000}\n");
    assert!(findings(&p, &s).is_empty());
    let s = port_pod(false, "    - containerPort: 80\n      hostPort: 9001\n");
    assert_eq!(findings(&p, &s).len(), 1);
    // none at all
    let none = spec_policy("  allowedHostPorts: []\n");
    let s = port_pod(false, "    - containerPort: 80\n      hostPort: 8080\n");
    let f = findings(&none, &s);
    assert!(f[0].ends_with("(no host port is allowed)"), "{f:?}");
    // a port without hostPort is not a host port
    let s = port_pod(false, "    - containerPort: 80\n");
    assert!(findings(&Policy::default(), &s).is_empty());
}

#[test]
fn host_network_container_ports_are_host_ports() {
    let p = spec_policy("  hostNetwork: true\n");
    let s = port_pod(true, "    - containerPort: 80\n");
    let f = findings(&p, &s);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].starts_with("spec.containers[0].ports[0].containerPort: refused by policy (allowedHostPorts): host port (hostNetwork) 80"),
        "{f:?}"
    );
    assert!(findings(&p, &port_pod(true, "    - containerPort: 8080\n")).is_empty());
}

#[test]
fn deployment_templates_are_checked() {
    let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  selector:\n    matchLabels: {app: d}\n  template:\n    metadata:\n      labels: {app: d}\n    spec:\n      hostNetwork: true\n      containers:\n      - name: c\n        image: busybox\n        securityContext:\n          privileged: true\n";
    let parsed = parse_str("d.yaml", text);
    assert!(!parsed.has_errors(), "{:?}", parsed.diagnostics);
    let d = check_objects(&Policy::default(), &parsed.objects);
    let lines: Vec<String> = d.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "d.yaml:1:1: Deployment \"d\": spec.template.spec.hostNetwork: refused by policy (hostNetwork): hostNetwork pods are not allowed",
            "d.yaml:1:1: Deployment \"d\": spec.template.spec.containers[0].securityContext.privileged: refused by policy (privileged): privileged containers are not allowed",
        ]
    );
}

#[test]
fn other_kinds_are_not_concerned() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: b\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  selector: {app: x}\n  ports:\n  - port: 80\n";
    let parsed = parse_str("x.yaml", text);
    assert_eq!(parsed.objects.len(), 2);
    assert!(check_objects(&Policy::default(), &parsed.objects).is_empty());
}

#[test]
fn diagnostics_name_the_object_location() {
    let text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n{CTR}    securityContext:\n      privileged: true\n"
    );
    let parsed = parse_str("m/x.yaml", &text);
    let d = check_objects(&Policy::default(), &parsed.objects);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].location.line, 6);
    assert_eq!(d[0].severity, Severity::Error);
    assert!(
        d[0].to_string()
            .starts_with("m/x.yaml:6:1: Pod \"bad\": spec.containers[0].securityContext.privileged: refused by policy (privileged)"),
        "{}",
        d[0]
    );
}

#[test]
fn policy_file_problems() {
    let ok = policy("apiVersion: berth.dev/v1alpha1\nkind: Policy\nspec: {}\n");
    assert!(ok.problems().is_empty());
    let bad = policy(
        "apiVersion: berth.dev/v1\nkind: Polcy\nspec:\n  allowedHostPaths:\n  - pathPrefix: srv\n  - pathPrefix: /a/../b\n  allowedCapabilities: [\"SYS ADMIN\"]\n  allowedHostPorts:\n  - {min: 2000, max: 1000}\n  - {min: 0, max: 10}\n",
    );
    let p = bad.problems();
    assert_eq!(p.len(), 7, "{p:?}");
    assert!(p[0].starts_with("apiVersion: \"berth.dev/v1\" is not supported"));
    assert!(p[1].starts_with("kind:"));
    assert!(p[2].starts_with("spec.allowedHostPaths[0].pathPrefix:"));
    assert!(p[3].starts_with("spec.allowedHostPaths[1].pathPrefix:"));
    assert!(p[4].starts_with("spec.allowedCapabilities[0]:"));
    assert!(p[5].starts_with("spec.allowedHostPorts[0]:"));
    assert!(p[6].starts_with("spec.allowedHostPorts[1]:"));
}

#[test]
fn policy_file_typos_are_errors() {
    // a misspelt rule must not silently fall back to a default
    let r: Result<PolicyFile, _> = serde_norway::from_str(
        "apiVersion: berth.dev/v1alpha1\nkind: Policy\nspec:\n  allowedHostPath: []\n",
    );
    assert!(r.unwrap_err().to_string().contains("allowedHostPath"));
    let r: Result<PolicyFile, _> =
        serde_norway::from_str("apiVersion: berth.dev/v1alpha1\nkind: Policy\n");
    assert!(r.unwrap_err().to_string().contains("spec"));
}

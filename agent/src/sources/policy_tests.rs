//! The operator policy in the merge: refused objects are per-object errors.

use berth_spec::Kind;
use berth_spec::validate::policy::Policy;

use super::*;
use crate::sources::dir::tests_support::pod;

fn report(file: &str, text: &str) -> SourceReport {
    let p = berth_spec::parse_str(file, text);
    assert!(!p.has_errors(), "{:?}", p.diagnostics);
    SourceReport {
        complete: true,
        objects: p.objects,
        status: SourceStatus {
            kind: "directory",
            ..Default::default()
        },
    }
}

fn privileged(name: &str, image: &str) -> String {
    format!(
        "{}    securityContext:\n      privileged: true\n",
        pod(name, image)
    )
}

fn pods(d: &DesiredState) -> Vec<String> {
    d.objects
        .keys()
        .filter(|k| k.kind == Kind::Pod)
        .map(|k| k.name.clone())
        .collect()
}

#[test]
fn a_refused_object_is_left_out_and_the_others_are_applied() {
    let text = format!("{}---\n{}", pod("ok", "x"), privileged("root", "x"));
    let p = Policy::default();
    let m = merge(
        &[Some(report("/m/a.yaml", &text))],
        &DesiredState::default(),
        &NodeInfo::default(),
        Some(&p),
    );
    assert_eq!(pods(&m.desired), ["ok"]);
    assert!(m.desired.complete, "a refusal does not hold back pruning");
    assert_eq!(m.refused.len(), 1);
    let r = &m.refused[0];
    assert_eq!(r.object, "Pod/default/root");
    assert_eq!(r.location, "/m/a.yaml:10:1");
    assert_eq!(
        r.reasons,
        [
            "/m/a.yaml:10:1: Pod \"root\": spec.containers[0].securityContext.privileged: refused by policy (privileged): privileged containers are not allowed"
        ]
    );
    // the source shows it like its other per-object errors
    let d = &m.sources[0].diagnostics;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].text, r.reasons[0]);
    assert_eq!(d[0].diag.severity, Severity::Error);
    // without a policy, the same set is applied whole
    let m = merge(
        &[Some(report("/m/a.yaml", &text))],
        &DesiredState::default(),
        &NodeInfo::default(),
        None,
    );
    assert_eq!(pods(&m.desired), ["ok", "root"]);
    assert!(m.refused.is_empty());
}

#[test]
fn a_refused_change_keeps_the_previous_definition() {
    let p = Policy::default();
    let node = NodeInfo::default();
    let m = merge(
        &[Some(report("/m/a.yaml", &pod("web", "img:1")))],
        &DesiredState::default(),
        &node,
        Some(&p),
    );
    let prev = m.desired;
    let m = merge(
        &[Some(report("/m/a.yaml", &privileged("web", "img:2")))],
        &prev,
        &node,
        Some(&p),
    );
    assert_eq!(m.refused.len(), 1);
    assert_eq!(
        m.desired.objects, prev.objects,
        "the running definition stays"
    );
}

#[test]
fn deployments_and_only_scheduled_objects_are_policed() {
    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  selector:\n    matchLabels: {app: d}\n  template:\n    metadata:\n      labels: {app: d}\n    spec:\n      hostNetwork: true\n      containers:\n      - name: c\n        image: x\n";
    let elsewhere = format!(
        "{}  nodeSelector:\n    site: north\n",
        privileged("other", "x")
    );
    let text = format!("{deploy}---\n{elsewhere}");
    let p = Policy::default();
    let m = merge(
        &[Some(report("/m/a.yaml", &text))],
        &DesiredState::default(),
        &NodeInfo::default(),
        Some(&p),
    );
    assert!(m.desired.objects.is_empty());
    let refused: Vec<&str> = m.refused.iter().map(|r| r.object.as_str()).collect();
    assert_eq!(refused, ["Deployment/default/d"]);
    assert_eq!(m.unscheduled.len(), 1, "not for this node: not refused");
}

#[test]
fn the_hub_lists_refusals_with_a_stable_time() {
    let (tx, rx) = berth_reconciler::desired_channel();
    let hub = Hub::with_policy(tx, NodeInfo::default(), Some(Arc::new(Policy::default())));
    let h = hub.register();
    let text = format!("{}---\n{}", pod("ok", "x"), privileged("root", "x"));
    h.publish(report("/m/a.yaml", &text));
    let v = hub.view().borrow().clone();
    assert_eq!(v.refused.len(), 1);
    let since = v.refused[0].since.clone();
    assert!(!since.is_empty());
    assert_eq!(pods(&rx.borrow()), ["ok"]);
    std::thread::sleep(std::time::Duration::from_millis(5));
    h.publish(report(
        "/m/a.yaml",
        &format!("{text}---\n{}", pod("more", "y")),
    ));
    let v = hub.view().borrow().clone();
    assert_eq!(v.refused[0].since, since, "the same refusal keeps its time");
    // fixed: the refusal goes away
    h.publish(report("/m/a.yaml", &pod("root", "x")));
    let v = hub.view().borrow().clone();
    assert!(v.refused.is_empty());
    assert_eq!(pods(&rx.borrow()), ["root"]);
}

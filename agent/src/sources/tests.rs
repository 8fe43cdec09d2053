use berth_spec::Kind;

use super::*;
use crate::sources::dir::tests_support::pod;

fn report(kind: &'static str, file: &str, text: &str) -> SourceReport {
    let p = berth_spec::parse_str(file, text);
    assert!(!p.has_errors(), "{:?}", p.diagnostics);
    SourceReport {
        complete: true,
        objects: p.objects,
        status: SourceStatus {
            kind,
            ..Default::default()
        },
    }
}

fn image(d: &DesiredState, name: &str) -> Option<String> {
    d.objects
        .iter()
        .find(|(k, _)| k.kind == Kind::Pod && k.name == name)
        .and_then(|(_, s)| match &s.object {
            berth_spec::Object::Pod(p) => p.spec.as_ref()?.containers[0].image.clone(),
            _ => None,
        })
}

#[test]
fn the_same_object_from_two_sources_keeps_the_running_definition() {
    let node = NodeInfo::default();
    let a = report("directory", "/m/a.yaml", &pod("web", "img:1"));
    let m = merge(
        &[Some(a.clone()), None],
        &DesiredState::default(),
        &node,
        None,
    );
    assert!(!m.desired.complete, "one source has not reported yet");
    let m = merge(
        &[
            Some(a.clone()),
            Some(report("git", "apps/x.yaml", &pod("other", "o"))),
        ],
        &DesiredState::default(),
        &node,
        None,
    );
    assert!(m.desired.complete);
    let prev = m.desired;
    // the git source now defines web too: an error on both, the running definition stays
    let b = report("git", "apps/web.yaml", &pod("web", "img:2"));
    let m = merge(&[Some(a.clone()), Some(b.clone())], &prev, &node, None);
    assert_eq!(image(&m.desired, "web").as_deref(), Some("img:1"));
    assert!(
        m.sources[0]
            .diagnostics
            .iter()
            .any(|d| d.text.contains("more than once"))
    );
    assert!(
        m.sources[1]
            .diagnostics
            .iter()
            .any(|d| d.text.contains("more than once"))
    );
    assert_eq!(m.conflicts.len(), 2);
    assert!(
        image(&m.desired, "other").is_none(),
        "the git source's report replaced its old objects"
    );
    // a key that never ran stays absent while it is in conflict
    let m = merge(&[Some(a), Some(b)], &DesiredState::default(), &node, None);
    assert!(image(&m.desired, "web").is_none());
}

#[test]
fn node_selector_mismatch_is_left_out_not_an_error() {
    let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  selector:\n    matchLabels: {app: d}\n  template:\n    metadata:\n      labels: {app: d}\n    spec:\n      nodeSelector:\n        kubernetes.io/arch: s390x\n      containers:\n      - name: c\n        image: x\n";
    let node = NodeInfo {
        name: "n".into(),
        labels: [("kubernetes.io/arch".to_string(), "amd64".to_string())].into(),
    };
    let m = merge(
        &[Some(report("directory", "/m/d.yaml", text))],
        &DesiredState::default(),
        &node,
        None,
    );
    assert!(m.desired.objects.is_empty());
    assert_eq!(m.unscheduled.len(), 1);
    assert!(
        m.unscheduled[0]
            .reason
            .contains("kubernetes.io/arch=s390x (node has amd64)"),
        "{}",
        m.unscheduled[0].reason
    );
    assert!(m.conflicts.is_empty());
}

#[test]
fn hub_publishes_only_changes_and_tracks_first_seen() {
    let (tx, mut rx) = berth_reconciler::desired_channel();
    let hub = Hub::new(tx, NodeInfo::default());
    let h = hub.register();
    h.publish(report("directory", "/m/a.yaml", &pod("a", "x")));
    assert!(rx.has_changed().unwrap());
    let first = rx.borrow_and_update().clone();
    assert!(first.complete && first.objects.len() == 1);
    h.publish(report("directory", "/m/a.yaml", &pod("a", "x")));
    assert!(!rx.has_changed().unwrap(), "the same set is not sent again");
    let v = hub.view().borrow().clone();
    assert_eq!(v.first_seen.len(), 1);
    assert!(v.synced);
}

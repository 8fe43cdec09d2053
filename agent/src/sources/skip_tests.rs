//! Issue 15: kinds berth does not run never block anything, and an
//! incomplete source never stops the pruning of what a complete one dropped.

use std::time::SystemTime;

use berth_reconciler::desired_channel;
use berth_spec::{Kind, ObjectKey};

use super::dir::DirState;
use super::dir::tests_support::pod;
use super::scan::scan_dir;
use super::*;

const INGRESS: &str = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web\nspec:\n  rules:\n  - http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service: {name: web, port: {number: 80}}\n";

#[test]
fn a_foreign_kind_beside_a_pod_is_skipped_and_listed_not_refused() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().to_path_buf();
    std::fs::write(
        root.join("app.yaml"),
        format!("{}---\n{INGRESS}", pod("a", "busybox:1")),
    )
    .unwrap();
    std::fs::write(
        root.join("np.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: prod}\nspec: {podSelector: {}}\n",
    )
    .unwrap();
    let mut st = DirState::new(root.clone());
    let r = st.apply(scan_dir(&root), SystemTime::now());
    assert!(r.complete, "{:?}", r.status);
    assert!(r.status.files_with_errors.is_empty());
    assert_eq!(r.objects.len(), 1);
    assert_eq!(r.status.skipped_count, 2);
    let listed: Vec<String> = r.status.skipped.iter().map(ToString::to_string).collect();
    assert_eq!(
        listed,
        [
            "networking.k8s.io/v1 Ingress \"web\"",
            "networking.k8s.io/v1 NetworkPolicy \"prod/deny\""
        ]
    );
    let warnings: Vec<&DiagView> = r
        .status
        .diagnostics
        .iter()
        .filter(|d| d.text.contains("not run by berth"))
        .collect();
    assert_eq!(warnings.len(), 2, "one warning per skipped object");
    assert!(
        warnings
            .iter()
            .all(|w| w.diag.severity == berth_spec::Severity::Warning)
    );
    assert!(
        warnings[0].text.contains("app.yaml:10:1"),
        "{}",
        warnings[0].text
    );
}

#[test]
fn an_invalid_object_holds_back_only_its_file_and_is_named() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().to_path_buf();
    std::fs::write(root.join("a.yaml"), pod("a", "busybox:1")).unwrap();
    std::fs::write(root.join("b.yaml"), pod("b", "busybox:1")).unwrap();
    let mut st = DirState::new(root.clone());
    let now = SystemTime::now();
    assert!(st.apply(scan_dir(&root), now).complete);
    // b.yaml gains a bad second object: b stays as it was, a is untouched
    std::fs::write(
        root.join("b.yaml"),
        format!(
            "{}---\n{}",
            pod("b", "busybox:2"),
            pod("Bad_Name", "busybox:1")
        ),
    )
    .unwrap();
    let r = st.apply(scan_dir(&root), now);
    assert!(r.complete, "b was good before in this run");
    assert_eq!(r.objects.len(), 2);
    assert_eq!(r.status.files_with_errors.len(), 1);
    assert!(r.status.files_with_errors[0].ends_with("b.yaml"));
    assert!(
        r.status
            .diagnostics
            .iter()
            .any(|d| d.text.contains("Pod \"Bad_Name\": metadata.name")),
        "{:?}",
        r.status.diagnostics
    );
}

fn report(complete: bool, file: &str, text: &str) -> SourceReport {
    let p = berth_spec::parse_str(file, text);
    assert!(!p.has_errors(), "{:?}", p.diagnostics);
    SourceReport {
        complete,
        objects: p.objects,
        status: SourceStatus {
            kind: "directory",
            complete,
            ..Default::default()
        },
    }
}

#[test]
fn an_incomplete_source_does_not_stop_pruning_what_a_complete_one_dropped() {
    let (tx, rx) = desired_channel();
    let hub = Hub::new(tx, NodeInfo::default());
    let (a, b) = (hub.register(), hub.register());
    let both = format!("{}---\n{}", pod("keep", "i"), pod("gone", "i"));
    a.publish(report(true, "/a/x.yaml", &both));
    b.publish(report(true, "/b/y.yaml", &pod("usb", "i")));
    assert!(rx.borrow().complete);
    // the USB directory disappears: source b keeps its last objects, incomplete
    b.publish(report(false, "/b/y.yaml", &pod("usb", "i")));
    assert!(!rx.borrow().complete);
    // source a drops "gone": it may be pruned although b is incomplete
    a.publish(report(true, "/a/x.yaml", &pod("keep", "i")));
    let d = rx.borrow().clone();
    assert!(!d.complete);
    let gone = ObjectKey::new(Kind::Pod, "default", "gone");
    assert!(d.may_prune(&gone), "{:?}", d.prunable);
    assert!(!d.may_prune(&ObjectKey::new(Kind::Pod, "default", "usb")));
    assert!(!d.may_prune(&ObjectKey::new(Kind::Pod, "default", "never-seen")));
    // it comes back: no longer prunable
    a.publish(report(true, "/a/x.yaml", &both));
    assert!(!rx.borrow().may_prune(&gone));
    // an incomplete source's own drop is not a prune
    b.publish(report(false, "/b/y.yaml", "# nothing\n"));
    assert!(
        !rx.borrow()
            .may_prune(&ObjectKey::new(Kind::Pod, "default", "usb"))
    );
}

use std::sync::Arc;

use berth_spec::Kind;

use super::*;
use crate::sources::{Hub, NodeInfo};

use super::tests_support::pod;

fn names(r: &SourceReport) -> Vec<String> {
    let mut v: Vec<String> = r.objects.iter().map(|s| s.object.key().name).collect();
    v.sort();
    v
}

fn image_of(r: &SourceReport, name: &str) -> String {
    let s = r
        .objects
        .iter()
        .find(|s| s.object.key().name == name)
        .expect("object");
    match &s.object {
        berth_spec::Object::Pod(p) => p.spec.as_ref().unwrap().containers[0]
            .image
            .clone()
            .unwrap(),
        _ => panic!("not a pod"),
    }
}

#[test]
fn drop_edit_break_fix_remove() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().to_path_buf();
    let mut st = DirState::new(root.clone());
    let now = SystemTime::now();
    std::fs::write(root.join("a.yaml"), pod("a", "busybox:1")).unwrap();
    std::fs::write(root.join("b.yaml"), pod("b", "busybox:1")).unwrap();
    let r = st.apply(scan_dir(&root), now);
    assert!(r.complete);
    assert_eq!(names(&r), ["a", "b"]);
    let rev1 = r.status.revision.clone().unwrap();

    // edit
    std::fs::write(root.join("a.yaml"), pod("a", "busybox:2")).unwrap();
    let r = st.apply(scan_dir(&root), now);
    assert_eq!(image_of(&r, "a"), "busybox:2");
    assert_ne!(
        r.status.revision.clone().unwrap(),
        rev1,
        "revision is a content hash"
    );

    // break: the last good objects stay, the error names file:line
    std::fs::write(root.join("a.yaml"), "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspec:\n  containers:\n  - name: c\n    image: busybox:3\n    ports:\n    - containerPort: 99999\n").unwrap();
    let r = st.apply(scan_dir(&root), now);
    assert_eq!(names(&r), ["a", "b"]);
    assert_eq!(
        image_of(&r, "a"),
        "busybox:2",
        "the last good definition keeps running"
    );
    let a = root.join("a.yaml").display().to_string();
    assert_eq!(r.status.files_with_errors, vec![a.clone()]);
    let texts: Vec<&str> = r
        .status
        .diagnostics
        .iter()
        .map(|d| d.text.as_str())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with(&format!("{a}:")) && t.contains("99999")),
        "{texts:?}"
    );
    assert!(
        r.complete,
        "a broken file that was good before keeps the set complete"
    );

    // fix
    std::fs::write(root.join("a.yaml"), pod("a", "busybox:4")).unwrap();
    let r = st.apply(scan_dir(&root), now);
    assert_eq!(image_of(&r, "a"), "busybox:4");
    assert!(r.status.diagnostics.is_empty());

    // remove a file: its objects go
    std::fs::remove_file(root.join("b.yaml")).unwrap();
    let r = st.apply(scan_dir(&root), now);
    assert_eq!(names(&r), ["a"]);
}

#[test]
fn missing_or_empty_directory_keeps_the_previous_set() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("m");
    let mut st = DirState::new(root.clone());
    let r = st.apply(scan_dir(&root), SystemTime::now());
    assert!(!r.complete, "never read: the reconciler must not prune");
    assert!(
        r.status
            .last_error
            .as_deref()
            .unwrap()
            .contains("cannot read directory")
    );

    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("a.yaml"), pod("a", "x")).unwrap();
    let r = st.apply(scan_dir(&root), SystemTime::now());
    assert!(r.complete && r.status.last_error.is_none());

    std::fs::remove_file(root.join("a.yaml")).unwrap();
    let r = st.apply(scan_dir(&root), SystemTime::now());
    assert_eq!(
        names(&r),
        ["a"],
        "an empty directory is an error, not delete-all"
    );
    assert!(r.status.last_error.as_deref().unwrap().contains("empty"));

    std::fs::remove_dir(&root).unwrap();
    let r = st.apply(scan_dir(&root), SystemTime::now());
    assert_eq!(names(&r), ["a"]);
    assert!(r.complete, "was complete before; stays so");
}

#[test]
fn a_file_broken_since_start_keeps_the_set_incomplete() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("a.yaml"), pod("a", "x")).unwrap();
    std::fs::write(d.path().join("b.yaml"), "kind: Pod\n  bad: [\n").unwrap();
    let mut st = DirState::new(d.path().to_path_buf());
    let r = st.apply(scan_dir(d.path()), SystemTime::now());
    assert_eq!(names(&r), ["a"]);
    assert!(
        !r.complete,
        "b.yaml may define running objects: no pruning until it is fixed"
    );
    std::fs::write(d.path().join("b.yaml"), pod("b", "x")).unwrap();
    assert!(st.apply(scan_dir(d.path()), SystemTime::now()).complete);
}

async fn wait_view(
    rx: &mut crate::sources::ViewRx,
    mut f: impl FnMut(&crate::sources::View) -> bool,
) -> Arc<crate::sources::View> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let v = rx.borrow_and_update().clone();
            if f(&v) {
                return v;
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("timed out waiting for the view")
}

fn pods_in(v: &crate::sources::View) -> usize {
    v.desired
        .objects
        .keys()
        .filter(|k| k.kind == Kind::Pod)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_burst_is_one_reload_and_atomic_rename_is_seen() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().to_path_buf();
    std::fs::write(root.join("first.yaml"), pod("first", "x")).unwrap();
    let (tx, _rx) = berth_reconciler::desired_channel();
    let hub = Hub::new(tx, NodeInfo::default());
    let h = hub.register();
    let mut view = hub.view();
    let (stop_tx, stop) = watch::channel(false);
    let task = tokio::spawn(run(root.clone(), Duration::from_secs(3600), h, stop));
    let v0 = wait_view(&mut view, |v| pods_in(v) == 1).await;

    // 50 files at once: coalesced into a few reloads (one when the machine is
    // quiet; a loaded CI box may pause between two writes for longer than
    // the 3 ms settle time; without coalescing it would be up to 50)
    for i in 0..50 {
        std::fs::write(root.join(format!("p{i}.yaml")), pod(&format!("p{i}"), "x")).unwrap();
    }
    let v1 = wait_view(&mut view, |v| pods_in(v) == 51).await;
    assert!(
        v1.generation - v0.generation <= 10,
        "50 files caused {} reloads",
        v1.generation - v0.generation
    );

    // atomic write: temp file + rename over the old one
    std::fs::write(root.join(".first.yaml.tmp"), pod("first", "busybox:new")).unwrap();
    std::fs::rename(root.join(".first.yaml.tmp"), root.join("first.yaml")).unwrap();
    wait_view(&mut view, |v| {
        v.desired.objects.values().any(|s| matches!(&s.object, berth_spec::Object::Pod(p) if p.metadata.name.as_deref() == Some("first") && p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("busybox:new")))
    })
    .await;

    // editor temp files are ignored; removing a file drops its objects
    std::fs::write(root.join("p0.yaml.swp"), "garbage").unwrap();
    std::fs::remove_file(root.join("p1.yaml")).unwrap();
    let v = wait_view(&mut view, |v| pods_in(v) == 50).await;
    assert!(v.sources[0].diagnostics.is_empty());

    // the directory disappears: error, previous set kept; it comes back: read again
    let moved = d.path().with_extension("moved");
    std::fs::rename(&root, &moved).unwrap();
    let v = wait_view(&mut view, |v| v.sources[0].last_error.is_some()).await;
    assert_eq!(pods_in(&v), 50);
    std::fs::rename(&moved, &root).unwrap();
    std::fs::remove_file(root.join("p2.yaml")).unwrap();
    wait_view(&mut view, |v| {
        v.sources[0].last_error.is_none() && pods_in(v) == 49
    })
    .await;

    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("source stops on shutdown")
        .unwrap();
}

#[test]
fn a_burst_waits_long_only_while_a_file_is_open_for_writing_or_a_manifest_is_gone() {
    use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, ModifyKind, RenameMode};
    use notify::{Event, EventKind};
    let ev = |kind, paths: &[&str]| {
        let mut e = Event::new(kind);
        for p in paths {
            e = e.add_path(std::path::PathBuf::from(p));
        }
        e
    };
    let mut open = super::OpenWrites::default();
    assert_eq!(open.quiet(), super::SETTLE);
    // written in place: long quiet until the writer closes it
    open.note(&ev(EventKind::Create(CreateKind::File), &["/m/a.yaml"]));
    open.note(&ev(
        EventKind::Modify(ModifyKind::Data(DataChange::Any)),
        &["/m/a.yaml"],
    ));
    assert_eq!(open.quiet(), super::DEBOUNCE);
    open.note(&ev(
        EventKind::Access(AccessKind::Close(AccessMode::Write)),
        &["/m/a.yaml"],
    ));
    assert_eq!(open.quiet(), super::SETTLE);
    // temp file + rename into place: the temp name is done with the rename
    open.note(&ev(EventKind::Create(CreateKind::File), &["/m/.b.tmp"]));
    open.note(&ev(
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
        &["/m/.b.tmp", "/m/b.yaml"],
    ));
    assert_eq!(open.quiet(), super::SETTLE);
    // a directory created is not a file being written
    open.note(&ev(EventKind::Create(CreateKind::Folder), &["/m/sub"]));
    assert_eq!(open.quiet(), super::SETTLE);
    // a file removed while open is no longer waited for as open, but a
    // manifest gone is a gap: long quiet until it is back
    open.note(&ev(
        EventKind::Modify(ModifyKind::Data(DataChange::Any)),
        &["/m/c.yaml"],
    ));
    open.note(&ev(
        EventKind::Remove(notify::event::RemoveKind::File),
        &["/m/c.yaml"],
    ));
    assert_eq!(open.quiet(), super::GAP_SETTLE);
    open.note(&ev(EventKind::Create(CreateKind::File), &["/m/c.yaml"]));
    open.note(&ev(
        EventKind::Access(AccessKind::Close(AccessMode::Write)),
        &["/m/c.yaml"],
    ));
    assert_eq!(open.quiet(), super::SETTLE);
    // vim's save: the manifest renamed away to its backup, then written anew
    open.note(&ev(
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
        &["/m/d.yaml", "/m/d.yaml~"],
    ));
    assert_eq!(open.quiet(), super::GAP_SETTLE);
    open.note(&ev(EventKind::Create(CreateKind::File), &["/m/d.yaml"]));
    assert_eq!(open.quiet(), super::DEBOUNCE);
    open.note(&ev(
        EventKind::Access(AccessKind::Close(AccessMode::Write)),
        &["/m/d.yaml"],
    ));
    assert_eq!(open.quiet(), super::SETTLE);
    // a temporary file or a backup removed is no gap
    open.note(&ev(
        EventKind::Remove(notify::event::RemoveKind::File),
        &["/m/d.yaml~"],
    ));
    open.note(&ev(
        EventKind::Modify(ModifyKind::Name(RenameMode::From)),
        &["/m/.e.yaml.tmp"],
    ));
    assert_eq!(open.quiet(), super::SETTLE);
    // a manifest renamed away and in again (split rename events)
    open.note(&ev(
        EventKind::Modify(ModifyKind::Name(RenameMode::From)),
        &["/m/f.yaml"],
    ));
    assert_eq!(open.quiet(), super::GAP_SETTLE);
    open.note(&ev(
        EventKind::Modify(ModifyKind::Name(RenameMode::To)),
        &["/m/f.yaml"],
    ));
    assert_eq!(open.quiet(), super::SETTLE);
}

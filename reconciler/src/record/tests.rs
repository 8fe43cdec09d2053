use std::fs;
use std::time::Duration;

use super::*;
use crate::backoff::BackoffWait;

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("berth-rec-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        Dir(d)
    }
    fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.0.join("reconciler"))
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn rec(name: &str) -> PodRecord {
    PodRecord {
        pod: PodRef {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        },
        owner: None,
        owner_kind: None,
        template_hash: None,
        spec_hash: "h".into(),
        labels: BTreeMap::new(),
        spec: PodSpec::default(),
        created: SystemTime::UNIX_EPOCH,
        backoff: BTreeMap::new(),
    }
}

/// Exactly what berth wrote before this change (format version 1).
const V1_FILE: &str = r#"{
  "version": 1,
  "pods": [
    {
      "pod": {"namespace": "default", "name": "a", "uid": "u-a"},
      "owner": null,
      "template_hash": null,
      "spec_hash": "h1",
      "labels": {"app": "a"},
      "spec": {"containers": [{"name": "main", "image": "busybox"}]},
      "created": {"secs_since_epoch": 1700000000, "nanos_since_epoch": 0}
    },
    {
      "pod": {"namespace": "default", "name": "web-abc-x1", "uid": "u-w"},
      "owner": "web",
      "template_hash": "abc",
      "spec_hash": "abc",
      "labels": {"app": "web"},
      "spec": {"containers": [{"name": "web", "image": "busybox"}]},
      "created": {"secs_since_epoch": 1700000001, "nanos_since_epoch": 5}
    }
  ]
}"#;

#[test]
fn roundtrip_and_missing_file() {
    let d = Dir::new("rt");
    let store = RecordStore::new(&d.0);
    let l = store.load();
    assert!(l.records.is_empty() && l.problems.is_empty() && l.version == 0);
    let mut b = rec("b");
    b.backoff.insert(
        "main".into(),
        BackoffRecord {
            restarts: 3,
            next_delay_ms: 40_000,
            waiting: Some(BackoffWait {
                container_id: "uid-b-main-3".into(),
                until: SystemTime::UNIX_EPOCH + Duration::from_secs(5),
                exit_code: 1,
            }),
        },
    );
    store.save(&[rec("a"), b.clone()]).unwrap();
    let l = store.load();
    assert_eq!(l.version, FORMAT_VERSION);
    assert!(l.problems.is_empty());
    assert_eq!(l.records, vec![rec("a"), b]);
}

// an upgrade from the current release adopts everything: today's file is version 1
#[test]
fn version_one_file_migrates() {
    let d = Dir::new("v1");
    let store = RecordStore::new(&d.0);
    fs::create_dir_all(d.0.join("reconciler")).unwrap();
    fs::write(store.path(), V1_FILE).unwrap();
    let l = store.load();
    assert_eq!(l.version, 1);
    assert!(l.problems.is_empty(), "{:?}", l.problems);
    assert_eq!(l.records.len(), 2);
    assert_eq!(l.records[1].owner.as_deref(), Some("web"));
    assert_eq!(l.records[0].spec.containers[0].name, "main");
    assert!(l.records.iter().all(|r| r.backoff.is_empty()));
    // saved again as version 2, read back the same
    store.save(&l.records).unwrap();
    let again = store.load();
    assert_eq!(again.version, 2);
    assert_eq!(again.records, l.records);
}

// regression (issue 17): an unreadable records file was taken for "no pods",
// and adoption then removed every container it found
#[test]
fn unreadable_files_are_quarantined_not_empty() {
    let cases: &[(&str, &[u8])] = &[
        ("truncated", &V1_FILE.as_bytes()[..V1_FILE.len() / 2]),
        ("garbage", b"\x7fELF\x02\x01garbage"),
        ("future", br#"{"version": 99, "pods": []}"#),
        ("empty", b""),
    ];
    for (tag, body) in cases {
        let d = Dir::new(tag);
        let store = RecordStore::new(&d.0);
        fs::create_dir_all(d.0.join("reconciler")).unwrap();
        fs::write(store.path(), body).unwrap();
        let l = store.load();
        assert!(l.records.is_empty());
        let [
            RecordProblem::Quarantined {
                moved_to, cause, ..
            },
        ] = l.problems.as_slice()
        else {
            panic!("{tag}: {:?}", l.problems)
        };
        assert_eq!(fs::read(moved_to).unwrap(), *body, "{tag}");
        assert!(!store.path().exists(), "{tag}");
        if *tag == "future" {
            assert!(cause.contains("format version 99 is unknown"), "{cause}");
        }
        let files = d.files();
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].starts_with("pods.json.quarantined-"), "{files:?}");
        assert!(l.problems[0].message().contains("moved aside"));
    }
}

#[test]
fn a_bad_entry_is_dropped_alone_and_the_file_kept() {
    let d = Dir::new("entry");
    let store = RecordStore::new(&d.0);
    fs::create_dir_all(d.0.join("reconciler")).unwrap();
    let mut doc: Value = serde_json::from_str(V1_FILE).unwrap();
    doc["pods"][0]["spec"] = Value::String("not a spec".into());
    fs::write(store.path(), doc.to_string()).unwrap();
    let l = store.load();
    assert_eq!(l.records.len(), 1);
    assert_eq!(l.records[0].pod.name, "web-abc-x1");
    let [RecordProblem::EntriesDropped { copy, entries, .. }] = l.problems.as_slice() else {
        panic!("{:?}", l.problems)
    };
    assert!(entries[0].contains("default/a"), "{entries:?}");
    let copy = copy.as_ref().unwrap();
    assert_eq!(fs::read_to_string(copy).unwrap(), doc.to_string());
    assert!(store.path().exists());
}

#[test]
fn saved_files_are_root_only() {
    use std::os::unix::fs::PermissionsExt;
    let d = Dir::new("mode");
    let store = RecordStore::new(&d.0);
    store.save(&[rec("a")]).unwrap();
    let m = fs::metadata(store.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(m, 0o600);
    let m = fs::metadata(d.0.join("reconciler"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(m, 0o700);
}

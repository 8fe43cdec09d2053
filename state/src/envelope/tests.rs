use serde::{Deserialize, Serialize};

use super::*;

/// Version 1 had `items: [String]`; version 2 has `items: [{name}]`.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Thing {
    items: Vec<Item>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Item {
    name: String,
}

impl Versioned for Thing {
    const WHAT: &'static str = "things";
    const CURRENT: u32 = 2;
    const MAX_BYTES: u64 = 1024;

    fn decode(version: u32, doc: Value) -> Result<Self, DecodeError> {
        let invalid = |source| DecodeError::Invalid { version, source };
        match version {
            1 => {
                #[derive(Deserialize)]
                struct V1 {
                    items: Vec<String>,
                }
                let v: V1 = serde_json::from_value(doc).map_err(invalid)?;
                Ok(Thing {
                    items: v.items.into_iter().map(|name| Item { name }).collect(),
                })
            }
            2 => serde_json::from_value(doc).map_err(invalid),
            found => Err(DecodeError::UnknownVersion {
                found,
                newest: Self::CURRENT,
            }),
        }
    }
}

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("berth-env-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn quarantined(l: Loaded<Thing>) -> Quarantine {
    match l {
        Loaded::Quarantined(q) => q,
        other => panic!("expected quarantine, got {other:?}"),
    }
}

#[test]
fn roundtrip_current_version() {
    let d = Dir::new("rt");
    let p = d.0.join("t.json");
    let t = Thing {
        items: vec![Item { name: "a".into() }],
    };
    write_versioned(&p, 2, &t).unwrap();
    let text = fs::read_to_string(&p).unwrap();
    assert!(text.contains("\"version\":2"), "{text}");
    match read_versioned::<Thing>(&p).unwrap() {
        Loaded::Found { value, version } => {
            assert_eq!(value, t);
            assert_eq!(version, 2);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_file_is_missing() {
    let d = Dir::new("missing");
    assert!(matches!(
        read_versioned::<Thing>(&d.0.join("nope")).unwrap(),
        Loaded::Missing
    ));
}

#[test]
fn unversioned_file_is_version_one_and_migrates() {
    let d = Dir::new("v1");
    let p = d.0.join("t.json");
    fs::write(&p, br#"{"items": ["x", "y"]}"#).unwrap();
    match read_versioned::<Thing>(&p).unwrap() {
        Loaded::Found { value, version } => {
            assert_eq!(version, 1);
            assert_eq!(value.items[1].name, "y");
        }
        other => panic!("{other:?}"),
    }
    // read, not moved
    assert_eq!(d.names(), vec!["t.json"]);
}

#[test]
fn garbage_truncated_future_and_huge_files_are_quarantined_never_empty() {
    let cases: &[(&str, &[u8])] = &[
        ("garbage", b"\x00\x01 not json"),
        ("truncated", br#"{"version": 2, "items": [{"na"#),
        ("future", br#"{"version": 3, "items": []}"#),
        ("wrongshape", br#"{"version": 2, "items": "x"}"#),
        ("array", b"[]"),
        ("badversion", br#"{"version": "2", "items": []}"#),
        ("empty", b""),
    ];
    for (tag, body) in cases {
        let d = Dir::new(tag);
        let p = d.0.join("t.json");
        fs::write(&p, body).unwrap();
        let q = quarantined(read_versioned::<Thing>(&p).unwrap());
        assert_eq!(q.path, p);
        assert!(!p.exists(), "{tag}: the original is moved");
        assert_eq!(fs::read(&q.moved_to).unwrap(), *body, "{tag}: content kept");
        let names = d.names();
        assert_eq!(names.len(), 1, "{tag}: {names:?}");
        assert!(names[0].starts_with("t.json.quarantined-"), "{names:?}");
    }
    let d = Dir::new("huge");
    let p = d.0.join("t.json");
    fs::write(&p, vec![b' '; 2048]).unwrap();
    let q = quarantined(read_versioned::<Thing>(&p).unwrap());
    assert!(matches!(q.cause, StateError::TooLarge { limit: 1024, .. }));
}

#[test]
fn future_version_names_the_version_in_the_cause() {
    let d = Dir::new("futmsg");
    let p = d.0.join("t.json");
    fs::write(&p, br#"{"version": 7}"#).unwrap();
    let q = quarantined(read_versioned::<Thing>(&p).unwrap());
    let mut msg = q.cause.to_string();
    let mut src = std::error::Error::source(&q.cause);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    assert!(msg.contains("format version 7 is unknown"), "{msg}");
}

#[test]
fn encode_failure_writes_nothing() {
    let d = Dir::new("enc");
    let p = d.0.join("t.json");
    fs::write(&p, b"{\"version\":2,\"items\":[]}").unwrap();
    // a map with non-string keys cannot be JSON
    let bad: std::collections::BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
    #[derive(Serialize)]
    struct Bad {
        m: std::collections::BTreeMap<(u8, u8), u8>,
    }
    assert!(matches!(
        write_versioned(&p, 2, &Bad { m: bad }),
        Err(StateError::Encode { .. })
    ));
    assert_eq!(fs::read(&p).unwrap(), b"{\"version\":2,\"items\":[]}");
    // not an object: refused too
    assert!(matches!(
        write_versioned(&p, 2, &vec![1]),
        Err(StateError::NotAnObject { .. })
    ));
    assert_eq!(d.names(), vec!["t.json"]);
}

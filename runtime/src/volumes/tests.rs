use std::collections::BTreeMap;

use super::*;

fn file(path: &str, content: &[u8], mode: u32) -> ProjectedFile {
    ProjectedFile {
        path: path.into(),
        content: content.to_vec(),
        mode,
    }
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn projection_swaps_atomically_and_prunes() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("proj");
    project(&dir, &[file("a", b"1", 0o644), file("b", b"2", 0o400)]).unwrap();
    assert_eq!(fs::read(dir.join("a")).unwrap(), b"1");
    assert_eq!(mode(&dir.join("b")), 0o400);
    project(&dir, &[file("a", b"3", 0o644)]).unwrap();
    assert_eq!(fs::read(dir.join("a")).unwrap(), b"3");
    assert!(fs::symlink_metadata(dir.join("b")).is_err());
    // only one revision dir remains
    let revs = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("..") && n != "..data"
        })
        .count();
    assert_eq!(revs, 1);
    // hostile key is not written outside
    project(&dir, &[file("../escape", b"x", 0o644)]).unwrap();
    assert!(!t.path().join("escape").exists());
}

#[test]
fn volumes_land_below_private_dirs() {
    let t = tempfile::tempdir().unwrap();
    let dirs = VolumeDirs {
        state_dir: t.path().join("state"),
        run_dir: t.path().join("run"),
        host_path_prefixes: None,
    };
    let pod = PodRef {
        namespace: "default".into(),
        name: "p".into(),
        uid: "1".into(),
    };
    let req = |name: &str, source| VolumeRequest {
        pod: pod.clone(),
        name: name.into(),
        source,
    };
    let sources = [
        (
            "sec",
            VolumeSource::Projection {
                files: vec![file("pw", b"hunter2", 0o400)],
            },
        ),
        (
            "scratch",
            VolumeSource::EmptyDir {
                memory: false,
                size_bytes: None,
            },
        ),
        (
            "mem",
            VolumeSource::EmptyDir {
                memory: true,
                size_bytes: Some(1 << 20),
            },
        ),
        ("data", VolumeSource::Claim { claim: "d".into() }),
    ];
    let mut got = BTreeMap::new();
    for (name, src) in sources {
        got.insert(name, dirs.ensure(&req(name, src)).unwrap());
    }
    assert_eq!(
        got["mem"].kind,
        MountKind::Tmpfs {
            size_bytes: Some(1 << 20)
        }
    );
    assert_eq!(got["data"].path, dirs.claim_dir("default", "d"));
    let run = dirs.pod_run(&pod);
    let state = dirs.pod_state(&pod);
    for d in [
        dirs.run_dir.join("pods"),
        run.clone(),
        run.join("volumes"),
        run.join("empty-dir"),
        dirs.state_dir.join("pods"),
        state.clone(),
        state.join("empty-dir"),
        dirs.state_dir.join("volumes"),
        dirs.state_dir.join("volumes/default"),
    ] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    assert_eq!(mode(&state.join("empty-dir/scratch")), 0o777);
    assert_eq!(mode(&run.join("volumes/sec/pw")), 0o400);
    assert_eq!(fs::read(run.join("volumes/sec/pw")).unwrap(), b"hunter2");
    dirs.remove_pod(&pod).unwrap();
    assert!(!run.exists() && !state.exists());
    assert!(
        dirs.claim_dir("default", "d").is_dir(),
        "claims outlive pods"
    );
}

#[test]
fn names_that_climb_out_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let dirs = VolumeDirs {
        state_dir: t.path().join("state"),
        run_dir: t.path().join("run"),
        host_path_prefixes: None,
    };
    let pod = PodRef {
        namespace: "default".into(),
        name: "p".into(),
        uid: "1".into(),
    };
    for (name, source) in [
        (
            "..",
            VolumeSource::EmptyDir {
                memory: false,
                size_bytes: None,
            },
        ),
        (
            "ok",
            VolumeSource::Claim {
                claim: "../../etc".into(),
            },
        ),
    ] {
        let req = VolumeRequest {
            pod: pod.clone(),
            name: name.into(),
            source,
        };
        let e = dirs.ensure(&req).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    }
}

#[test]
fn host_path_types() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("hp");
    assert!(check_host_path("v", &dir, HostPathType::Directory).is_err());
    check_host_path("v", &dir, HostPathType::DirectoryOrCreate).unwrap();
    assert!(dir.is_dir());
    assert!(check_host_path("v", &dir, HostPathType::File).is_err());
    let f = dir.join("f");
    check_host_path("v", &f, HostPathType::FileOrCreate).unwrap();
    check_host_path("v", &f, HostPathType::File).unwrap();
    assert!(check_host_path("v", &f, HostPathType::Socket).is_err());
    check_host_path("v", &t.path().join("nope"), HostPathType::Any).unwrap();
}

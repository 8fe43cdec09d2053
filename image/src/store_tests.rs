//! ImageStore without a registry and without root: archives built in memory.

use std::io::Write;

use berth_contract::{Classify, ErrorKind};

use super::*;

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A `docker save`-style archive with one image of two layers.
fn docker_archive(tag: &str) -> (Vec<u8>, String) {
    let l1 = tar_of(&[("etc/os-release", b"berth\n")]);
    let l2 = tar_of(&[("app/run", b"#!/bin/sh\n")]);
    let diff = |t: &[u8]| Digest::of(t).to_string();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["/app/run"],"Env":["A=1"],"User":"1000"}},"rootfs":{{"type":"layers","diff_ids":["{}","{}"]}}}}"#,
        diff(&l1),
        diff(&l2)
    );
    let cd = Digest::of(config.as_bytes());
    let manifest = format!(
        r#"[{{"Config":"{}.json","RepoTags":["{tag}"],"Layers":["l1/layer.tar","l2/layer.tar"]}}]"#,
        cd.hex()
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&l2).unwrap();
    let l2gz = gz.finish().unwrap();
    let outer = tar_of(&[
        ("manifest.json", manifest.as_bytes()),
        (&format!("{}.json", cd.hex()), config.as_bytes()),
        ("l1/layer.tar", &l1),
        ("l2/layer.tar", &l2gz),
    ]);
    (outer, cd.to_string())
}

#[tokio::test]
async fn import_and_policies_without_a_registry() {
    let t = tempfile::tempdir().unwrap();
    let import = t.path().join("import");
    std::fs::create_dir(&import).unwrap();
    let (archive, image_id) = docker_archive("example.org/app:1");
    let p = import.join("app.tar");
    std::fs::write(&p, &archive).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(10))
        .unwrap();
    let mut cfg = ImageStoreConfig::new(t.path().join("images"));
    cfg.import_dir = Some(import);
    let s = ImageStore::open(cfg).await.unwrap();

    let info = s
        .ensure("example.org/app:1", PullPolicy::Never)
        .await
        .unwrap();
    assert_eq!(info.image_id, image_id);
    assert_eq!(info.repo_digest, None);
    assert_eq!(info.config.cmd, vec!["/app/run"]);
    assert_eq!(info.config.user.as_deref(), Some("1000"));
    assert_eq!(info.layers.len(), 2);
    assert_eq!(
        std::fs::read(info.layers[0].join("etc/os-release")).unwrap(),
        b"berth\n"
    );
    assert_eq!(
        std::fs::read(info.layers[1].join("app/run")).unwrap(),
        b"#!/bin/sh\n"
    );
    assert!(
        !info.layers[1].join("etc").exists(),
        "each layer dir holds only its own diff"
    );

    // IfNotPresent finds it locally (no registry exists for example.org here)
    assert_eq!(
        s.ensure("example.org/app:1", PullPolicy::IfNotPresent)
            .await
            .unwrap(),
        info
    );

    let e = s
        .ensure("example.org/absent:1", PullPolicy::Never)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(
        ImageStore::failure_reason(&e),
        ImageFailureReason::ErrImageNeverPull
    );
    assert!(e.to_string().contains("example.org/absent:1"), "{e}");
    let e = s
        .ensure("UPPER/case", PullPolicy::IfNotPresent)
        .await
        .unwrap_err();
    assert_eq!(
        ImageStore::failure_reason(&e),
        ImageFailureReason::InvalidImageName
    );

    // a corrupt config blob makes the local copy unusable; it is dropped, not used
    let cfg_path = t
        .path()
        .join("images/blobs/sha256")
        .join(image_id.trim_start_matches("sha256:"));
    std::fs::write(&cfg_path, b"{}").unwrap();
    assert!(
        s.ensure("example.org/app:1", PullPolicy::Never)
            .await
            .is_err()
    );
    assert!(s.images().is_empty());

    // a deleted layer dir is unpacked again from its blob
    let s2 = {
        let t2 = tempfile::tempdir().unwrap();
        let p = t2.path().join("a.tar");
        std::fs::write(&p, &archive).unwrap();
        let s2 = ImageStore::open(ImageStoreConfig::new(t.path().join("images2")))
            .await
            .unwrap();
        s2.import_one(&p).await.unwrap();
        s2
    };
    let i2 = s2
        .ensure("example.org/app:1", PullPolicy::Never)
        .await
        .unwrap();
    std::fs::remove_dir_all(&i2.layers[1]).unwrap();
    let i3 = s2
        .ensure("example.org/app:1", PullPolicy::Never)
        .await
        .unwrap();
    assert!(i3.layers[1].join("app/run").is_file());
    assert_eq!(s2.stats().layers_unpacked, 3);
}

/// Regression (issue 15): an archive put into the import dir just before the
/// agent started was left for a later scan (it may still have been being
/// written), so the first pod pulled, failed ("dns error") and backed off. A
/// pull of an image not in the store now imports the import dir first.
#[tokio::test]
async fn a_fresh_archive_is_imported_before_any_pull() {
    let t = tempfile::tempdir().unwrap();
    let import = t.path().join("import");
    std::fs::create_dir(&import).unwrap();
    let (archive, image_id) = docker_archive("example.org/fresh:1");
    std::fs::write(import.join("fresh.tar"), &archive).unwrap();
    let mut cfg = ImageStoreConfig::new(t.path().join("images"));
    cfg.import_dir = Some(import);
    let s = ImageStore::open(cfg).await.unwrap();
    // too fresh for the start-up scan
    assert!(s.images().is_empty());
    let t0 = std::time::Instant::now();
    let info = s
        .ensure("example.org/fresh:1", PullPolicy::IfNotPresent)
        .await
        .expect("imported, not pulled (no registry is reachable here)");
    assert_eq!(info.image_id, image_id);
    assert!(t0.elapsed() < crate::archive::IMPORT_FIRST_MAX_WAIT);
    // nothing left to settle: an unknown image fails at once, no waiting
    let t0 = std::time::Instant::now();
    assert!(
        s.ensure("example.org/absent:1", PullPolicy::Never)
            .await
            .is_err()
    );
    assert!(t0.elapsed() < Duration::from_secs(2));
}

/// Regression: GC took per-image locks while holding the exclusive lease,
/// and `ensure` takes the image lock before the shared lease: a deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_and_ensure_run_concurrently_without_deadlock() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("a.tar");
    std::fs::write(&p, docker_archive("example.org/app:1").0).unwrap();
    let s = std::sync::Arc::new(
        ImageStore::open(ImageStoreConfig::new(t.path().join("images")))
            .await
            .unwrap(),
    );
    s.import_one(&p).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (s, p) = (s.clone(), p.clone());
        tasks.push(tokio::spawn(async move {
            match i % 3 {
                // ensure may find the image or not (GC removes it, import brings it back)
                0 => match s.ensure("example.org/app:1", PullPolicy::Never).await {
                    Ok(_) | Err(ImageError::NeverPull { .. }) => {}
                    Err(e) => panic!("{e}"),
                },
                1 => {
                    s.gc_with(&[], true).await.unwrap();
                }
                _ => {
                    s.import_one(&p).await.unwrap();
                }
            }
        }));
    }
    tokio::time::timeout(Duration::from_secs(20), async {
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await
    .expect("no deadlock between GC and ensure");
}

#[test]
fn a_use_within_a_minute_does_not_rewrite_the_index() {
    let old = ImageRecord {
        manifest: "sha256:m".into(),
        config: "sha256:c".into(),
        repo_digest: None,
        extra_blobs: vec![],
        layers: vec![],
        size: 10,
        created: 1000,
        last_used: 1000,
    };
    let used = |t| ImageRecord {
        last_used: t,
        ..old.clone()
    };
    assert!(only_used_recently(&old, &used(1000)));
    assert!(only_used_recently(&old, &used(1059)));
    assert!(
        !only_used_recently(&old, &used(1060)),
        "a minute later it is written"
    );
    let changed = ImageRecord {
        manifest: "sha256:other".into(),
        ..used(1001)
    };
    assert!(
        !only_used_recently(&old, &changed),
        "any other change is written"
    );
}

//! Privileged end-to-end tests against a real loopback registry.

mod common;

use std::os::unix::fs::FileTypeExt;
use std::sync::Arc;

use berth_contract::{Classify, ErrorKind, ImageFailureReason, Images, PullPolicy, error_chain};
use berth_image::{ImageError, ImageStore, ImageStoreConfig};
use common::*;

async fn store(dir: &std::path::Path) -> ImageStore {
    ImageStore::open(ImageStoreConfig::new(dir.join("images")))
        .await
        .unwrap()
}

#[tokio::test]
async fn pull_policies_and_offline_fallback() {
    if !preconditions() {
        return;
    }
    let fx = fixture();
    let mut reg = Registry::start();
    reg.push(&fx.join("oci"), "1.36", "busybox:1.36");
    let t = tempfile::tempdir().unwrap();
    let s = store(t.path()).await;
    let image = format!("{}/busybox:1.36", reg.addr);

    // Never + absent
    let e = s.ensure(&image, PullPolicy::Never).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(
        ImageStore::failure_reason(&e),
        ImageFailureReason::ErrImageNeverPull
    );

    let info = s.ensure(&image, PullPolicy::IfNotPresent).await.unwrap();
    assert_eq!(info.reference, image);
    assert_eq!(info.layers.len(), 1);
    let l = &info.layers[0];
    assert!(l.starts_with(t.path().join("images/layers")));
    assert!(l.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(l.join("bin/sh")).unwrap(),
        std::path::Path::new("/bin/busybox")
    );
    let passwd = std::fs::read_to_string(l.join("etc/passwd")).unwrap();
    assert!(passwd.contains("app:x:1000:1000"), "{passwd}");
    assert_eq!(info.config.cmd, vec!["/bin/sh"]);
    assert!(info.config.env.iter().any(|e| e.starts_with("PATH=")));
    assert!(info.image_id.starts_with("sha256:"));
    assert!(
        info.repo_digest
            .as_deref()
            .unwrap()
            .starts_with(&format!("{}/busybox@sha256:", reg.addr))
    );
    // the image id is the config digest skopeo sees
    let out = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{image}"),
        ])
        .output()
        .unwrap();
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["config"]["digest"].as_str().unwrap(), info.image_id);

    let st = s.stats();
    assert_eq!(st.blobs_fetched, 2, "config + 1 layer");
    assert_eq!(st.layers_unpacked, 1);

    // IfNotPresent again: no registry traffic
    let again = s.ensure(&image, PullPolicy::IfNotPresent).await.unwrap();
    assert_eq!(again, info);
    assert_eq!(s.stats().manifests_fetched, st.manifests_fetched);

    // Always: asks the registry, fetches no blob
    s.ensure(&image, PullPolicy::Always).await.unwrap();
    assert_eq!(s.stats().manifests_fetched, st.manifests_fetched + 1);
    assert_eq!(s.stats().blobs_fetched, 2);

    // unknown tag: the registry's message is in the chain
    let e = s
        .ensure(
            &format!("{}/busybox:nope", reg.addr),
            PullPolicy::IfNotPresent,
        )
        .await
        .unwrap_err();
    assert_eq!(
        ImageStore::failure_reason(&e),
        ImageFailureReason::ErrImagePull
    );
    assert!(
        error_chain(&e).contains("manifest unknown"),
        "{}",
        error_chain(&e)
    );

    // invalid name
    let e = s
        .ensure("Bad//Name", PullPolicy::IfNotPresent)
        .await
        .unwrap_err();
    assert_eq!(
        ImageStore::failure_reason(&e),
        ImageFailureReason::InvalidImageName
    );
    assert_eq!(e.kind(), ErrorKind::Invalid);

    // registry gone: Always falls back to the local copy, a missing image fails Transient
    reg.stop();
    let off = s.ensure(&image, PullPolicy::Always).await.unwrap();
    assert_eq!(off.image_id, info.image_id);
    let e = s
        .ensure(&format!("{}/other:1", reg.addr), PullPolicy::IfNotPresent)
        .await
        .unwrap_err();
    assert!(matches!(e, ImageError::Pull { .. }));
    assert_eq!(e.kind(), ErrorKind::Transient);

    // reopening the store keeps the image (index on disk)
    drop(s);
    let s = store(t.path()).await;
    assert_eq!(
        s.ensure(&image, PullPolicy::Never).await.unwrap().image_id,
        info.image_id
    );
}

#[tokio::test]
async fn multi_layer_image_with_whiteout_and_concurrent_ensure() {
    if !preconditions() {
        return;
    }
    let fx = fixture();
    let reg = Registry::start();
    let w = tempfile::tempdir().unwrap();
    let layout = add_layer(&fx.join("oci"), w.path(), "two", |rootfs| {
        std::fs::remove_file(rootfs.join("etc/group")).unwrap();
        std::fs::write(rootfs.join("hello"), "hi\n").unwrap();
    });
    reg.push(&layout, "two", "busybox:two");
    let t = tempfile::tempdir().unwrap();
    let s = Arc::new(store(t.path()).await);
    let image = format!("{}/busybox:two", reg.addr);
    let (a, b) = tokio::join!(
        {
            let s = s.clone();
            let i = image.clone();
            async move { s.ensure(&i, PullPolicy::IfNotPresent).await }
        },
        {
            let s = s.clone();
            let i = image.clone();
            async move { s.ensure(&i, PullPolicy::IfNotPresent).await }
        }
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b);
    assert_eq!(a.layers.len(), 2);
    let st = s.stats();
    assert_eq!(st.blobs_fetched, 3, "config + 2 layers, each once: {st:?}");
    assert_eq!(st.layers_unpacked, 2, "{st:?}");
    let top = &a.layers[1];
    assert_eq!(std::fs::read_to_string(top.join("hello")).unwrap(), "hi\n");
    let wh = std::fs::symlink_metadata(top.join("etc/group")).unwrap();
    assert!(
        wh.file_type().is_char_device(),
        "whiteout for the removed /etc/group"
    );
    assert!(
        !top.join("bin/busybox").exists(),
        "top layer holds only the diff"
    );

    // the base image shares its layer dir with this one
    reg.push(&fx.join("oci"), "1.36", "busybox:1.36");
    let base = s
        .ensure(
            &format!("{}/busybox:1.36", reg.addr),
            PullPolicy::IfNotPresent,
        )
        .await
        .unwrap();
    assert_eq!(base.layers[0], a.layers[0]);
    assert_eq!(
        s.stats().layers_unpacked,
        2,
        "shared layer not unpacked again"
    );
}

#[tokio::test]
async fn cancelled_pull_leaves_a_consistent_store() {
    if !preconditions() {
        return;
    }
    let fx = fixture();
    let reg = Registry::start();
    let w = tempfile::tempdir().unwrap();
    let layout = add_layer(&fx.join("oci"), w.path(), "big", |rootfs| {
        run(std::process::Command::new("dd")
            .args(["if=/dev/urandom", "bs=1M", "count=160", "status=none"])
            .arg(format!("of={}", rootfs.join("big").display())));
    });
    reg.push(&layout, "big", "busybox:big");
    let t = tempfile::tempdir().unwrap();
    let s = Arc::new(store(t.path()).await);
    let image = format!("{}/busybox:big", reg.addr);
    let ingest = t.path().join("images/ingest");
    let task = {
        let (s, i) = (s.clone(), image.clone());
        tokio::spawn(async move { s.ensure(&i, PullPolicy::IfNotPresent).await })
    };
    // abort once a blob is partly written
    let mut aborted_mid_download = false;
    for _ in 0..4000 {
        let partial = std::fs::read_dir(&ingest)
            .unwrap()
            .flatten()
            .any(|e| e.metadata().map(|m| m.len() > 1 << 20).unwrap_or(false));
        if partial {
            task.abort();
            aborted_mid_download = true;
            break;
        }
        if task.is_finished() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert!(
        aborted_mid_download,
        "the pull finished before it could be aborted (make the layer bigger)"
    );
    assert!(task.await.unwrap_err().is_cancelled());
    // nothing in the index, no temp file left, no half blob under its digest
    assert!(s.images().is_empty());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        std::fs::read_dir(&ingest).unwrap().count(),
        0,
        "aborted download removed its temp file"
    );
    for b in std::fs::read_dir(t.path().join("images/blobs/sha256"))
        .unwrap()
        .flatten()
    {
        let data = std::fs::read(b.path()).unwrap();
        let hex = b.file_name().into_string().unwrap();
        assert_eq!(
            berth_image::content::Digest::of(&data).hex(),
            hex,
            "every committed blob matches its name"
        );
    }
    // a second ensure completes
    let info = s.ensure(&image, PullPolicy::IfNotPresent).await.unwrap();
    assert_eq!(info.layers.len(), 2);
    assert_eq!(
        std::fs::metadata(info.layers[1].join("big")).unwrap().len(),
        160 << 20
    );
}

#[tokio::test]
async fn gc_never_removes_images_in_use() {
    if !preconditions() {
        return;
    }
    let fx = fixture();
    let reg = Registry::start();
    let w = tempfile::tempdir().unwrap();
    let layout = add_layer(&fx.join("oci"), w.path(), "two", |rootfs| {
        std::fs::write(rootfs.join("hello"), "hi\n").unwrap();
    });
    reg.push(&layout, "two", "busybox:two");
    reg.push(&fx.join("oci"), "1.36", "busybox:1.36");
    let t = tempfile::tempdir().unwrap();
    let mut cfg = ImageStoreConfig::new(t.path().join("images"));
    // thresholds at 0 %: every GC pass is "over the threshold"
    cfg.gc_high_percent = 0;
    cfg.gc_low_percent = 0;
    let s = ImageStore::open(cfg).await.unwrap();
    let base = s
        .ensure(
            &format!("{}/busybox:1.36", reg.addr),
            PullPolicy::IfNotPresent,
        )
        .await
        .unwrap();
    let two = s
        .ensure(
            &format!("{}/busybox:two", reg.addr),
            PullPolicy::IfNotPresent,
        )
        .await
        .unwrap();
    // an orphan blob (as an aborted pull would leave)
    let orphan = t
        .path()
        .join("images/blobs/sha256")
        .join(berth_image::content::Digest::of(b"orphan").hex());
    std::fs::write(&orphan, b"orphan").unwrap();

    // in use by image id: nothing of it may go
    let r = s.gc(std::slice::from_ref(&two.image_id)).await.unwrap();
    assert_eq!(r.removed_images, vec![base.reference.clone()]);
    assert!(r.freed_bytes > 0);
    assert!(!orphan.exists());
    for l in &two.layers {
        assert!(
            l.is_dir(),
            "layer of an in-use image kept (shared base layer included)"
        );
    }
    assert_eq!(
        s.ensure(&two.reference, PullPolicy::Never).await.unwrap(),
        two
    );
    assert!(s.ensure(&base.reference, PullPolicy::Never).await.is_err());

    // in use by (un-normalised) reference
    let r = s
        .gc_with(&[format!("{}/busybox:two", reg.addr)], true)
        .await
        .unwrap();
    assert!(r.removed_images.is_empty());
    // nothing in use: everything goes
    let r = s.gc_with(&[], true).await.unwrap();
    assert_eq!(r.removed_images, vec![two.reference.clone()]);
    assert_eq!(
        std::fs::read_dir(t.path().join("images/layers"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(t.path().join("images/blobs/sha256"))
            .unwrap()
            .count(),
        0
    );

    // with the default thresholds (85 %), a normal GC on this disk does nothing
    let s2 = store(t.path()).await;
    s2.ensure(&base.reference, PullPolicy::IfNotPresent)
        .await
        .unwrap();
    if berth_image::gc::disk_usage_percent(t.path()).unwrap() < 85.0 {
        assert!(s2.gc(&[]).await.unwrap().removed_images.is_empty());
    }
}

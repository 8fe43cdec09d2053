//! Privileged tests of the air-gap import dir (docker-archive and oci-archive).

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_contract::{Images, PullPolicy};
use berth_image::{ImageStore, ImageStoreConfig};
use common::*;

fn copy_old(src: &std::path::Path, dst: &std::path::Path) {
    std::fs::copy(src, dst).unwrap();
    let f = std::fs::File::options().write(true).open(dst).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(60))
        .unwrap();
}

#[tokio::test]
async fn imports_both_archive_kinds_at_open_and_watches_for_new_ones() {
    if !preconditions() {
        return;
    }
    let fx = fixture();
    let t = tempfile::tempdir().unwrap();
    let import = t.path().join("import");
    std::fs::create_dir(&import).unwrap();
    copy_old(&fx.join("busybox-oci.tar"), &import.join("busybox-oci.tar"));
    let mut cfg = ImageStoreConfig::new(t.path().join("images"));
    cfg.import_dir = Some(import.clone());
    cfg.import_poll_interval = Duration::from_millis(200);
    let s = Arc::new(ImageStore::open(cfg.clone()).await.unwrap());
    let info = s
        .ensure("berth.local/busybox:1.36", PullPolicy::Never)
        .await
        .unwrap();
    assert_eq!(info.layers.len(), 1);
    assert!(info.layers[0].join("bin/busybox").is_file());
    assert_eq!(info.config.cmd, vec!["/bin/sh"]);
    assert_eq!(s.stats().layers_unpacked, 1);

    // docker-archive of the same image, retagged: same config => same image id,
    // its uncompressed layer has the same diff ID => the layer dir is shared.
    let w = tempfile::tempdir().unwrap();
    let docker_tar = w.path().join("other.tar");
    run(std::process::Command::new("skopeo").args([
        "copy",
        "--quiet",
        &format!("docker-archive:{}", fx.join("busybox-docker.tar").display()),
        &format!(
            "docker-archive:{}:berth.local/other:2",
            docker_tar.display()
        ),
    ]));
    let watcher = s.spawn_import_watcher();
    copy_old(&docker_tar, &import.join("other.tar"));
    let mut found = None;
    for _ in 0..50 {
        if let Ok(i) = s.ensure("berth.local/other:2", PullPolicy::Never).await {
            found = Some(i);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let other = found.expect("watcher imported the new archive");
    assert_eq!(other.image_id, info.image_id);
    assert_eq!(other.layers, info.layers);
    assert_eq!(s.stats().layers_unpacked, 1);
    watcher.abort();

    // the original docker archive (symlinked layer.tar inside) imports too
    copy_old(
        &fx.join("busybox-docker.tar"),
        &import.join("busybox-docker.tar"),
    );
    let r = s.import_dir_once().await;
    assert_eq!(
        r.imported,
        vec!["berth.local/busybox:1.36".to_string()],
        "{r:?}"
    );

    // a broken archive is reported, not fatal, and not retried while unchanged
    std::fs::write(import.join("junk.tar"), b"not a tar").unwrap();
    let f = std::fs::File::options()
        .write(true)
        .open(import.join("junk.tar"))
        .unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(60))
        .unwrap();
    let r = s.import_dir_once().await;
    assert_eq!(r.failed.len(), 1, "{r:?}");
    assert!(s.import_dir_once().await.failed.is_empty());

    // restart: nothing re-imported, images still there
    drop(s);
    let s = ImageStore::open(cfg).await.unwrap();
    assert_eq!(s.stats().layers_unpacked, 0);
    s.ensure("berth.local/busybox:1.36", PullPolicy::Never)
        .await
        .unwrap();
    s.ensure("berth.local/other:2", PullPolicy::Never)
        .await
        .unwrap();
}

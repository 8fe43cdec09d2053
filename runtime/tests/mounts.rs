//! Privileged: volume mounts (issue 9's runtime side): bind, subPath,
//! read-only, tmpfs, and symlinks that try to lead a mount out of its volume.

mod common;

use std::os::unix::fs::symlink;

use berth_contract::{ContainerState, MountKind, MountSpec, Runtime};
use common::{Harness, require_root};

fn bind(source: &std::path::Path, dest: &str, sub: Option<&str>, ro: bool) -> MountSpec {
    MountSpec {
        kind: MountKind::Bind,
        source: source.to_path_buf(),
        destination: dest.into(),
        sub_path: sub.map(str::to_string),
        read_only: ro,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bind_subpath_readonly_and_tmpfs() {
    require_root!();
    let h = Harness::new("btrt12");
    let vol = h.tmp.path().join("vol");
    std::fs::create_dir_all(vol.join("data/inner")).unwrap();
    std::fs::write(vol.join("data/inner/hello"), "from-volume\n").unwrap();
    std::fs::write(vol.join("top"), "top-file\n").unwrap();
    let pod = h.pod("vols");
    let sb = h.sandbox(&pod, None).await;
    let mut c = h.container(
        &sb,
        "m",
        &[
            "/bin/sh",
            "-c",
            "cat /v/top; cat /sub/hello; echo new > /v/written; \
             echo x > /ro/x 2>/dev/null && echo RO-WRITABLE || echo ro-refused; \
             df -k /scratch | tail -1; echo t > /scratch/t && echo tmpfs-ok; \
             grep -E ' /v | /scratch ' /proc/self/mountinfo",
        ],
    );
    c.mounts = vec![
        bind(&vol, "/v", None, false),
        bind(&vol, "/sub", Some("data/inner"), false),
        bind(&vol, "/ro", None, true),
        MountSpec {
            kind: MountKind::Tmpfs {
                size_bytes: Some(8 << 20),
            },
            source: "tmpfs".into(),
            destination: "/scratch".into(),
            sub_path: None,
            read_only: false,
        },
    ];
    assert!(matches!(
        h.run_to_end(&c).await,
        ContainerState::Exited { exit_code: 0, .. }
    ));
    let out = h.log_lines(&c.id, "stdout").await;
    let text = out.join("\n");
    assert!(out.contains(&"top-file".to_string()), "{text}");
    assert!(out.contains(&"from-volume".to_string()), "{text}");
    assert!(out.contains(&"ro-refused".to_string()), "{text}");
    assert!(out.contains(&"tmpfs-ok".to_string()), "{text}");
    assert!(text.contains(" 8192 "), "tmpfs size 8 MiB: {text}");
    // the container's write reached the host volume
    assert_eq!(
        std::fs::read_to_string(vol.join("written")).unwrap(),
        "new\n"
    );
    // propagation private: no "shared:" tag on the volume mount
    let vline = out
        .iter()
        .find(|l| l.contains(" /v "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(!vline.contains("shared:"), "{vline}");
}

#[tokio::test(flavor = "multi_thread")]
async fn symlinks_in_subpath_never_lead_out_of_the_volume() {
    require_root!();
    let h = Harness::new("btrt13");
    let secret = h.tmp.path().join("host-secret");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("key"), "host-only\n").unwrap();
    let vol = h.tmp.path().join("vol");
    std::fs::create_dir_all(vol.join("ok")).unwrap();
    // hostile content of a volume: absolute symlink out, relative symlink out, nested
    symlink(&secret, vol.join("abs")).unwrap();
    symlink("../host-secret", vol.join("rel")).unwrap();
    std::fs::create_dir_all(vol.join("deep")).unwrap();
    symlink("../../host-secret", vol.join("deep/up")).unwrap();
    let pod = h.pod("evil");
    let sb = h.sandbox(&pod, None).await;
    for (i, sub) in [
        "abs",
        "rel",
        "deep/up",
        "deep/up/key",
        "../host-secret",
        "/etc",
    ]
    .iter()
    .enumerate()
    {
        let mut c = h.container(
            &sb,
            &format!("evil{i}"),
            &["/bin/sh", "-c", "cat /x/key; ls /x"],
        );
        c.mounts = vec![bind(&vol, "/x", Some(sub), false)];
        match h.rt().run(&c).await {
            Err(e) => {
                let msg = berth_contract::error_chain(&e);
                assert!(
                    msg.contains("subPath") || msg.contains("symlink"),
                    "clear error for {sub}: {msg}"
                );
            }
            Ok(_) => {
                let s = h.wait(&c.id).await;
                let out = h.log_lines(&c.id, "stdout").await;
                panic!("subPath {sub:?} was mounted ({s:?}): {out:?}");
            }
        }
    }
    // a plain subPath still works, and a missing one is created (as kubelet does)
    let mut c = h.container(&sb, "fine", &["/bin/sh", "-c", "echo ok > /x/f"]);
    c.mounts = vec![
        bind(&vol, "/x", Some("ok"), false),
        bind(&vol, "/y", Some("made/here"), false),
    ];
    assert!(matches!(
        h.run_to_end(&c).await,
        ContainerState::Exited { exit_code: 0, .. }
    ));
    assert_eq!(std::fs::read_to_string(vol.join("ok/f")).unwrap(), "ok\n");
    assert!(vol.join("made/here").is_dir());
    // nothing was written to the host secret dir
    assert_eq!(std::fs::read_dir(&secret).unwrap().count(), 1);
}

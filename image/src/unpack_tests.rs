//! Hostile and ordinary layer archives, built in memory with the `tar` crate.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use tar::{EntryType, Header};

use super::*;

/// One raw tar entry; the name bytes are written as-is (no validation), so
/// tests can carry `..` and absolute paths.
struct E<'a> {
    name: &'a str,
    kind: EntryType,
    link: Option<&'a str>,
    data: &'a [u8],
    mode: u32,
}

fn f<'a>(name: &'a str, data: &'a [u8]) -> E<'a> {
    E {
        name,
        kind: EntryType::Regular,
        link: None,
        data,
        mode: 0o644,
    }
}
fn d(name: &str) -> E<'_> {
    E {
        name,
        kind: EntryType::Directory,
        link: None,
        data: b"",
        mode: 0o755,
    }
}
fn sym<'a>(name: &'a str, to: &'a str) -> E<'a> {
    E {
        name,
        kind: EntryType::Symlink,
        link: Some(to),
        data: b"",
        mode: 0o777,
    }
}
fn hard<'a>(name: &'a str, to: &'a str) -> E<'a> {
    E {
        name,
        kind: EntryType::Link,
        link: Some(to),
        data: b"",
        mode: 0o644,
    }
}

fn build(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = Header::new_gnu();
        {
            let g = h.as_gnu_mut().unwrap();
            g.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
            if let Some(l) = e.link {
                g.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        b.append(&h, e.data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A header with every numeric field set (as real archives have).
fn hdr(path: &str, kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_path(path).unwrap();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.set_size(size);
    h
}

fn caps() -> Caps {
    Caps::detect()
}

/// Extract into `<tmp>/root` with a sentinel dir `<tmp>/outside` next to it.
fn extract(entries: &[E<'_>]) -> (tempfile::TempDir, Result<UnpackStats, UnpackError>) {
    extract_raw(&build(entries))
}

/// [`extract`] for an archive built by the caller.
fn extract_raw(data: &[u8]) -> (tempfile::TempDir, Result<UnpackStats, UnpackError>) {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir(t.path().join("root")).unwrap();
    fs::create_dir(t.path().join("outside")).unwrap();
    fs::write(t.path().join("outside/secret"), b"keep").unwrap();
    fs::set_permissions(
        t.path().join("outside/secret"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::set_permissions(t.path().join("outside"), fs::Permissions::from_mode(0o700)).unwrap();
    let mut ar = tar::Archive::new(data);
    let r = apply_tar(
        &mut ar,
        &t.path().join("root"),
        caps(),
        UnpackLimits::default(),
    );
    (t, r)
}

fn outside_untouched(t: &Path) {
    let names: Vec<_> = fs::read_dir(t.join("outside"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["secret"], "nothing new outside");
    assert_eq!(fs::read(t.join("outside/secret")).unwrap(), b"keep");
    let m = fs::symlink_metadata(t.join("outside/secret")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o600, "canary mode");
    assert_ne!(m.mtime(), 1_600_000_000, "canary mtime");
    assert_eq!(
        (m.uid(), m.gid()),
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw()
        )
    );
    let m = fs::symlink_metadata(t.join("outside")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o700, "outside dir mode");
    assert_ne!(m.mtime(), 1_600_000_000, "outside dir mtime");
    if xattr::SUPPORTED_PLATFORM {
        let attrs: Vec<_> = xattr::list(t.join("outside/secret"))
            .map(|l| l.collect())
            .unwrap_or_default();
        assert!(attrs.is_empty(), "canary xattrs: {attrs:?}");
    }
    let top: Vec<_> = fs::read_dir(t)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(top.len(), 2, "only root and outside at the top: {top:?}");
}

#[test]
fn ordinary_layer() {
    let (t, r) = extract(&[
        d("bin/"),
        f("bin/sh", b"#!"),
        sym("bin/ls", "sh"),
        hard("bin/sh2", "bin/sh"),
        f("./etc/passwd", b"root"),
    ]);
    let s = r.unwrap();
    assert_eq!(s.entries, 5);
    let root = t.path().join("root");
    assert_eq!(fs::read(root.join("bin/sh")).unwrap(), b"#!");
    assert_eq!(fs::read_link(root.join("bin/ls")).unwrap(), Path::new("sh"));
    assert_eq!(
        fs::metadata(root.join("bin/sh2")).unwrap().ino(),
        fs::metadata(root.join("bin/sh")).unwrap().ino()
    );
    assert_eq!(
        fs::metadata(root.join("bin/sh")).unwrap().mtime(),
        1_600_000_000
    );
    assert_eq!(
        fs::metadata(root.join("bin")).unwrap().mtime(),
        1_600_000_000
    );
    assert_eq!(fs::read(root.join("etc/passwd")).unwrap(), b"root");
}

#[test]
fn dotdot_escape_is_refused() {
    let (t, r) = extract(&[f("../outside/evil", b"x")]);
    assert!(matches!(r, Err(UnpackError::PathEscapes { .. })), "{r:?}");
    outside_untouched(t.path());
    let (t, r) = extract(&[f("a/../../outside/evil", b"x")]);
    assert!(matches!(r, Err(UnpackError::PathEscapes { .. })), "{r:?}");
    outside_untouched(t.path());
    // `..` that stays inside is fine, resolved lexically
    let (t, r) = extract(&[f("a/../b", b"x")]);
    r.unwrap();
    assert_eq!(fs::read(t.path().join("root/b")).unwrap(), b"x");
}

#[test]
fn absolute_paths_are_rooted_in_the_layer() {
    let (t, r) = extract(&[f("/etc/evil", b"x"), f("//tmp/x", b"y")]);
    r.unwrap();
    assert_eq!(fs::read(t.path().join("root/etc/evil")).unwrap(), b"x");
    assert_eq!(fs::read(t.path().join("root/tmp/x")).unwrap(), b"y");
    outside_untouched(t.path());
}

#[test]
fn writing_through_a_symlink_is_refused() {
    for target in ["../outside", "/tmp", "."] {
        let (t, r) = extract(&[sym("link", target), f("link/evil", b"x")]);
        assert!(
            matches!(r, Err(UnpackError::ThroughSymlink { .. })),
            "{target}: {r:?}"
        );
        outside_untouched(t.path());
    }
    // the same with a nested directory
    let (t, r) = extract(&[
        d("a/"),
        sym("a/b", "../../outside"),
        d("a/b/c/"),
        f("a/b/c/evil", b"x"),
    ]);
    assert!(
        matches!(r, Err(UnpackError::ThroughSymlink { .. })),
        "{r:?}"
    );
    outside_untouched(t.path());
}

#[test]
fn a_symlink_replaced_by_a_file_is_not_followed() {
    // Creating a file over a symlink must replace the link, not write to its target.
    let (t, r) = extract(&[sym("x", "../outside/secret"), f("x", b"new")]);
    r.unwrap();
    outside_untouched(t.path());
    assert_eq!(fs::read(t.path().join("root/x")).unwrap(), b"new");
    // a directory entry over a symlink replaces the symlink too
    let (t, r) = extract(&[sym("x", "../outside"), d("x/"), f("x/y", b"1")]);
    r.unwrap();
    outside_untouched(t.path());
    assert!(
        fs::symlink_metadata(t.path().join("root/x"))
            .unwrap()
            .is_dir()
    );
}

#[test]
fn hardlinks_outside_or_through_symlinks_are_refused() {
    let (t, r) = extract(&[hard("h", "../outside/secret")]);
    assert!(matches!(r, Err(UnpackError::BadHardlink { .. })), "{r:?}");
    outside_untouched(t.path());
    let (t, r) = extract(&[hard("h", "/etc/passwd")]);
    assert!(
        matches!(
            r,
            Err(UnpackError::BadHardlink {
                reason: "target does not exist in this layer",
                ..
            })
        ),
        "{r:?}"
    );
    outside_untouched(t.path());
    let (t, r) = extract(&[sym("l", "../outside"), hard("h", "l/secret")]);
    assert!(
        matches!(
            r,
            Err(UnpackError::BadHardlink {
                reason: "target path goes through a symlink",
                ..
            })
        ),
        "{r:?}"
    );
    outside_untouched(t.path());
    let (_t, r) = extract(&[d("dir/"), hard("h", "dir")]);
    assert!(
        matches!(
            r,
            Err(UnpackError::BadHardlink {
                reason: "target is a directory",
                ..
            })
        ),
        "{r:?}"
    );
    // a hard link to a symlink links the symlink itself, never its target
    let (t, r) = extract(&[sym("l", "../outside/secret"), hard("h", "l")]);
    r.unwrap();
    assert!(
        fs::symlink_metadata(t.path().join("root/h"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    outside_untouched(t.path());
}

#[test]
fn device_nodes_need_cap_mknod() {
    let mut e = E {
        name: "dev/null",
        kind: EntryType::Char,
        link: None,
        data: b"",
        mode: 0o666,
    };
    e.mode = 0o666;
    let data = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = hdr(e.name, e.kind, e.mode, 0);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        h.set_mode(e.mode);
        h.set_size(0);
        h.set_cksum();
        b.append(&h, &b""[..]).unwrap();
        b.into_inner().unwrap()
    };
    let t = tempfile::tempdir().unwrap();
    // Without the capability: skipped, counted.
    let s = apply_tar(
        &mut tar::Archive::new(&data[..]),
        t.path(),
        Caps {
            is_root: false,
            can_mknod: false,
        },
        UnpackLimits::default(),
    )
    .unwrap();
    assert_eq!(s.skipped_devices, 1);
    assert!(!t.path().join("dev/null").exists());
    if Caps::detect().can_mknod {
        let s = apply_tar(
            &mut tar::Archive::new(&data[..]),
            t.path(),
            Caps::detect(),
            UnpackLimits::default(),
        )
        .unwrap();
        assert_eq!(s.skipped_devices, 0);
        let m = fs::symlink_metadata(t.path().join("dev/null")).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), nix::sys::stat::makedev(1, 3));
        assert_eq!(m.permissions().mode() & 0o7777, 0o666);
    }
}

#[test]
fn setuid_and_ownership_survive() {
    let data = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = hdr("bin/su", EntryType::Regular, 0o4755, 2);
        h.set_uid(1000);
        h.set_gid(1001);
        h.set_size(2);
        h.set_cksum();
        b.append(&h, &b"su"[..]).unwrap();
        let mut h = hdr("tmp/", EntryType::Directory, 0o1777, 0);
        h.set_cksum();
        b.append(&h, &b""[..]).unwrap();
        b.into_inner().unwrap()
    };
    let t = tempfile::tempdir().unwrap();
    let c = Caps::detect();
    apply_tar(
        &mut tar::Archive::new(&data[..]),
        t.path(),
        c,
        UnpackLimits::default(),
    )
    .unwrap();
    let m = fs::metadata(t.path().join("bin/su")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(
        fs::metadata(t.path().join("tmp"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o1777
    );
    if c.is_root {
        assert_eq!((m.uid(), m.gid()), (1000, 1001));
    }
}

#[test]
fn xattrs_from_pax_headers() {
    let data = {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([
            ("SCHILY.xattr.user.berth", &b"v1"[..]),
            ("SCHILY.xattr.trusted.evil", &b"x"[..]),
        ])
        .unwrap();
        let mut h = hdr("file", EntryType::Regular, 0o644, 1);
        h.set_cksum();
        b.append(&h, &b"z"[..]).unwrap();
        b.into_inner().unwrap()
    };
    let t = tempfile::tempdir().unwrap();
    apply_tar(
        &mut tar::Archive::new(&data[..]),
        t.path(),
        Caps::detect(),
        UnpackLimits::default(),
    )
    .unwrap();
    let p = t.path().join("file");
    assert_eq!(fs::read(&p).unwrap(), b"z");
    // user.* xattrs need filesystem support (tmpfs has it since 6.6); check when supported.
    if xattr::SUPPORTED_PLATFORM && xattr::set(t.path(), "user.probe", b"1").is_ok() {
        assert_eq!(
            xattr::get(&p, "user.berth").unwrap().as_deref(),
            Some(&b"v1"[..])
        );
    }
    assert_eq!(
        xattr::get(&p, "trusted.evil").ok().flatten(),
        None,
        "trusted.* from archives is never applied"
    );
}

#[test]
fn whiteouts_become_overlayfs_whiteouts() {
    let (t, r) = extract(&[
        d("etc/"),
        f("etc/.wh.shadow", b""),
        d("var/"),
        f("var/.wh..wh..opq", b""),
        f(".wh..wh.plnk", b""),
    ]);
    let root = t.path().join("root");
    if Caps::detect().is_root {
        let s = r.unwrap();
        assert_eq!(s.whiteouts, 2);
        let m = fs::symlink_metadata(root.join("etc/shadow")).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), 0);
        assert!(!root.join("etc/.wh.shadow").exists());
        assert!(!root.join(".wh..wh.plnk").exists());
        assert_eq!(
            xattr::get(root.join("var"), "trusted.overlay.opaque")
                .unwrap()
                .as_deref(),
            Some(&b"y"[..])
        );
    } else {
        // Unprivileged 0:0 mknod is allowed since Linux 5.8; trusted.* xattrs never are.
        assert!(
            matches!(
                r,
                Err(UnpackError::WhiteoutNotPermitted { .. }
                    | UnpackError::OpaqueNotPermitted { .. })
            ),
            "{r:?}"
        );
    }
    // whiteout names cannot escape either
    let (t, r) = extract(&[f("../outside/.wh.secret", b"")]);
    assert!(matches!(r, Err(UnpackError::PathEscapes { .. })), "{r:?}");
    outside_untouched(t.path());
    let (t, r) = extract(&[sym("l", "../outside"), f("l/.wh.secret", b"")]);
    assert!(
        matches!(r, Err(UnpackError::ThroughSymlink { .. })),
        "{r:?}"
    );
    outside_untouched(t.path());
}

fn layer_blob(dir: &Path, comp: Compression) -> (PathBuf, Digest, Digest) {
    let tar = build(&[d("a/"), f("a/b", &[7u8; 100_000])]);
    let diff = Digest::of(&tar);
    let blob = match comp {
        Compression::None => tar,
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&tar).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(&tar[..], 3).unwrap(),
    };
    let p = dir.join(format!("blob-{comp:?}"));
    fs::write(&p, &blob).unwrap();
    (p, Digest::of(&blob), diff)
}

#[test]
fn unpack_layer_verifies_digests_for_each_compression() {
    let t = tempfile::tempdir().unwrap();
    let tmp = t.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    for comp in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let (blob, bd, diff) = layer_blob(t.path(), comp);
        let dst = t.path().join(format!("layer-{comp:?}"));
        // wrong diff id: nothing committed, temp cleaned
        let e = unpack_layer(
            &blob,
            &bd,
            &Digest::of(b"x"),
            &dst,
            &tmp,
            caps(),
            UnpackLimits::default(),
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                UnpackError::DigestMismatch {
                    what: "uncompressed (diff ID)",
                    ..
                }
            ),
            "{e}"
        );
        assert!(!dst.exists());
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
        // corrupt blob: refused
        let mut bytes = fs::read(&blob).unwrap();
        let n = bytes.len();
        bytes[n - 10] ^= 0xff;
        let bad = t.path().join("bad");
        fs::write(&bad, &bytes).unwrap();
        assert!(
            unpack_layer(
                &bad,
                &bd,
                &diff,
                &dst,
                &tmp,
                caps(),
                UnpackLimits::default()
            )
            .is_err()
        );
        assert!(!dst.exists());
        // good
        let s = unpack_layer(
            &blob,
            &bd,
            &diff,
            &dst,
            &tmp,
            caps(),
            UnpackLimits::default(),
        )
        .unwrap();
        assert_eq!(s.bytes, 100_000);
        assert_eq!(fs::read(dst.join("a/b")).unwrap(), vec![7u8; 100_000]);
        // second unpack onto an existing layer keeps the first
        unpack_layer(
            &blob,
            &bd,
            &diff,
            &dst,
            &tmp,
            caps(),
            UnpackLimits::default(),
        )
        .unwrap();
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    }
}

#[test]
fn truncated_layer_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let tmp = t.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    let (blob, bd, diff) = layer_blob(t.path(), Compression::Gzip);
    let bytes = fs::read(&blob).unwrap();
    fs::write(&blob, &bytes[..bytes.len() / 2]).unwrap();
    let dst = t.path().join("layer");
    assert!(
        unpack_layer(
            &blob,
            &bd,
            &diff,
            &dst,
            &tmp,
            caps(),
            UnpackLimits::default()
        )
        .is_err()
    );
    assert!(!dst.exists());
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
}

/// The decode thread runs ahead of the entries being applied: a layer whose
/// bad entry comes several chunks in (after files were written) still
/// leaves nothing committed, nothing in the scratch dir, and returns (the
/// decode thread, blocked on a full channel, is ended and joined).
#[test]
fn layer_failing_mid_stream_commits_nothing() {
    let t = tempfile::tempdir().unwrap();
    let tmp = t.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    let big = vec![3u8; crate::layerstream::CHUNK * crate::layerstream::DEPTH * 4];
    let tar = build(&[
        d("a/"),
        f("a/first", &big),
        f("a/second", &big),
        sym("a/link", "/etc"),
        f("a/link/passwd", b"x"),
        f("a/after", &big),
        f("a/more", &big),
    ]);
    for comp in [Compression::Gzip, Compression::None] {
        let blob = match comp {
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&tar).unwrap();
                e.finish().unwrap()
            }
            _ => tar.clone(),
        };
        let p = t.path().join(format!("mid-{comp:?}"));
        fs::write(&p, &blob).unwrap();
        let dst = t.path().join(format!("layer-{comp:?}"));
        let e = unpack_layer(
            &p,
            &Digest::of(&blob),
            &Digest::of(&tar),
            &dst,
            &tmp,
            caps(),
            UnpackLimits::default(),
        )
        .unwrap_err();
        assert!(matches!(e, UnpackError::ThroughSymlink { .. }), "{e}");
        assert!(!dst.exists());
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0, "scratch removed");
    }
}

// === regression tests named after the attacks of issue 14 ===

fn with_mode<'a>(mut e: E<'a>, mode: u32) -> E<'a> {
    e.mode = mode;
    e
}

#[test]
fn attack_directory_replaced_by_symlink_cannot_chmod_the_target() {
    // The critical hole: `d` (07777), then `d -> <host file>`; the final
    // directory pass used to chmod the link's target.
    for to in [
        "../outside/secret",
        "../outside",
        "/nonexistent-berth-canary",
    ] {
        let (t, r) = extract(&[with_mode(d("d/"), 0o7777), sym("d", to)]);
        assert!(
            matches!(r, Err(UnpackError::ThroughSymlink { ref entry, .. }) if entry == "d/"),
            "{to}: {r:?}"
        );
        outside_untouched(t.path());
    }
    // The same with an absolute link to the canary's real path.
    let t0 = tempfile::tempdir().unwrap();
    let canary = t0.path().join("canary");
    fs::write(&canary, b"keep").unwrap();
    fs::set_permissions(&canary, fs::Permissions::from_mode(0o600)).unwrap();
    let to = canary.to_str().unwrap().to_string();
    let (t, r) = extract(&[with_mode(d("a/b/"), 0o7777), d("a/"), sym("a/b", &to)]);
    assert!(r.is_err(), "{r:?}");
    outside_untouched(t.path());
    assert_eq!(
        fs::metadata(&canary).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    // A parent replaced by a symlink: its child's mode must not land either.
    let (t, r) = extract(&[
        d("p/"),
        with_mode(d("p/c/"), 0o7777),
        sym("p", "../outside"),
    ]);
    assert!(r.is_err(), "{r:?}");
    outside_untouched(t.path());
}

#[test]
fn attack_directory_replaced_by_file_keeps_the_file() {
    // Not an attack, the legitimate cousin: a later non-directory entry wins
    // and the directory's metadata is dropped.
    let (t, r) = extract(&[with_mode(d("d/"), 0o700), with_mode(f("d", b"x"), 0o640)]);
    r.unwrap();
    let m = fs::symlink_metadata(t.path().join("root/d")).unwrap();
    assert!(m.is_file());
    assert_eq!(m.permissions().mode() & 0o7777, 0o640);
    outside_untouched(t.path());
}

#[test]
fn attack_xattrs_and_times_on_a_symlink_stay_on_the_link() {
    let data = {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("SCHILY.xattr.user.evil", &b"x"[..])])
            .unwrap();
        let mut h = hdr("l", EntryType::Symlink, 0o777, 0);
        h.set_link_name("../outside/secret").unwrap();
        h.set_cksum();
        b.append(&h, &b""[..]).unwrap();
        b.into_inner().unwrap()
    };
    let (t, r) = extract_raw(&data);
    r.unwrap();
    outside_untouched(t.path());
}

#[test]
fn attack_whiteout_of_dot_or_dotdot_is_refused() {
    for name in [".wh..", ".wh...", "a/.wh..", "a/.wh..."] {
        let (t, r) = extract(&[d("a/"), f("a/keep", b"1"), f(name, b"")]);
        assert!(
            matches!(r, Err(UnpackError::BadWhiteout { .. })),
            "{name}: {r:?}"
        );
        outside_untouched(t.path());
        assert_eq!(fs::read(t.path().join("root/a/keep")).unwrap(), b"1");
    }
}

#[test]
fn attack_layer_over_its_size_limit_is_refused_while_streaming() {
    let big = vec![0u8; 64 * 1024];
    let entries: Vec<E<'_>> = (0..4)
        .map(|i| f(["f0", "f1", "f2", "f3"][i], &big))
        .collect();
    let data = build(&entries);
    let t = tempfile::tempdir().unwrap();
    let limits = UnpackLimits {
        max_bytes: 100 * 1024,
        max_entries: 100,
    };
    let r = apply_tar(&mut tar::Archive::new(&data[..]), t.path(), caps(), limits);
    assert!(
        matches!(r, Err(UnpackError::TooLarge { ref entry, max }) if entry == "f1" && max == 100 * 1024),
        "{r:?}"
    );
    assert!(!t.path().join("f1").exists(), "refused before writing");
    let limits = UnpackLimits {
        max_bytes: 1 << 30,
        max_entries: 3,
    };
    let r = apply_tar(&mut tar::Archive::new(&data[..]), t.path(), caps(), limits);
    assert!(
        matches!(r, Err(UnpackError::TooManyEntries { max: 3 })),
        "{r:?}"
    );
}

#[test]
fn attack_deep_paths_are_refused() {
    let deep = "a/".repeat(MAX_DEPTH + 1) + "f";
    let data = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = hdr("x", EntryType::Regular, 0o644, 1);
        b.append_data(&mut h, &deep, &b"z"[..]).unwrap();
        b.into_inner().unwrap()
    };
    let t = tempfile::tempdir().unwrap();
    let r = apply_tar(
        &mut tar::Archive::new(&data[..]),
        t.path(),
        caps(),
        UnpackLimits::default(),
    );
    assert!(matches!(r, Err(UnpackError::TooDeep { .. })), "{r:?}");
}

#[test]
fn attack_refused_layer_leaves_no_trace_in_the_store() {
    let t = tempfile::tempdir().unwrap();
    let data = build(&[with_mode(d("d/"), 0o7777), sym("d", "/etc/passwd")]);
    let blob = t.path().join("blob");
    fs::write(&blob, &data).unwrap();
    let bd = Digest::of(&data);
    let tmp = t.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    let dst = t.path().join("layer");
    let r = unpack_layer(&blob, &bd, &bd, &dst, &tmp, caps(), UnpackLimits::default());
    assert!(
        matches!(r, Err(UnpackError::ThroughSymlink { .. })),
        "{r:?}"
    );
    assert!(!dst.exists());
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0, "scratch removed");
}

//! Fuzz the layer unpacker: any byte stream, read as a tar layer, must
//! either unpack beneath its root or be refused; it must never touch the
//! canary beside the root, and never panic.
#![no_main]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use berth_image::targuard::TarGuard;
use berth_image::unpack::{Caps, UnpackLimits, apply_tar};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    fs::create_dir(&root).unwrap();
    let canary = t.path().join("canary");
    fs::write(&canary, b"keep").unwrap();
    fs::set_permissions(&canary, fs::Permissions::from_mode(0o600)).unwrap();
    let before = fs::metadata(&canary).unwrap();
    let caps = Caps {
        is_root: Caps::detect().is_root,
        can_mknod: false,
    };
    let limits = UnpackLimits {
        max_bytes: 1 << 20,
        max_entries: 1_000,
    };
    let _ = apply_tar(
        &mut tar::Archive::new(TarGuard::new(data)),
        &root,
        caps,
        limits,
    );
    let after = fs::symlink_metadata(&canary).unwrap();
    assert!(after.is_file(), "canary replaced");
    assert_eq!(fs::read(&canary).unwrap(), b"keep", "canary content");
    assert_eq!(after.mode(), before.mode(), "canary mode");
    assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    assert_eq!(after.mtime(), before.mtime(), "canary mtime");
    let names: Vec<_> = fs::read_dir(t.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 2, "nothing new beside the root: {names:?}");
});

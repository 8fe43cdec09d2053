//! Mounts a container leaves behind.

use std::fs;
use std::path::Path;

use nix::mount::{MntFlags, umount2};

/// Lazily unmount every mount at or below `dir`, deepest first.
pub fn unmount_below(dir: &Path) {
    let prefix = dir.to_string_lossy().to_string();
    let mut targets: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|t| *t == prefix || t.starts_with(&format!("{prefix}/")))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in targets {
        let _ = umount2(Path::new(&t), MntFlags::MNT_DETACH);
    }
}

//! The supervisor's resident set after start-up.
//!
//! A static binary is mapped in 64 KiB chunks (the kernel's fault-around),
//! and start-up runs code spread over most of it: argument parsing, the
//! spec's JSON, the log and socket set-up. Once the poll loop runs, only a
//! few chunks of that are used again, yet every chunk faulted once stays in
//! the process's RSS. [`drop_startup_pages`] unmaps the executable's
//! read-only, unmodified pages from this process; the loop faults back in
//! what it uses (from the page cache, where the file's pages stay: other
//! supervisors map the same file).

use std::ffi::c_void;
use std::path::Path;
use std::ptr::NonNull;

use nix::sys::mman::{MmapAdvise, madvise};

/// One mapping of `/proc/self/smaps` that may be dropped.
#[derive(Debug, PartialEq, Eq)]
pub struct Droppable {
    pub start: usize,
    pub len: usize,
}

/// Mappings of `exe` that are not writable and hold no private (anonymous)
/// page: their content is the file's, so unmapping their pages loses
/// nothing. A read-only mapping with anonymous pages (RELRO after the
/// start-up relocations) is never listed.
pub fn droppable(smaps: &str, exe: &Path) -> Vec<Droppable> {
    let exe = exe.as_os_str().to_string_lossy();
    droppable_where(smaps, |path| path == exe)
}

/// [`droppable`] for every mapped file whose path `pick` accepts.
pub fn droppable_where(smaps: &str, pick: impl Fn(&str) -> bool) -> Vec<Droppable> {
    let mut out = Vec::new();
    let mut cur: Option<Droppable> = None;
    for line in smaps.lines() {
        let mut it = line.split_whitespace();
        let (Some(first), Some(second)) = (it.next(), it.next()) else {
            continue;
        };
        if let Some((a, b)) = first.split_once('-')
            && second.len() == 4
            && let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            // header: range perms offset dev inode path
            let path: Vec<&str> = it.skip(3).collect();
            let ours = !second.contains('w') && end > start && pick(&path.join(" "));
            cur = ours.then_some(Droppable {
                start,
                len: end - start,
            });
            continue;
        }
        if first == "Anonymous:"
            && let Some(m) = cur.take()
            && second == "0"
        {
            out.push(m);
        }
    }
    out
}

/// Drop this process's pages of its own executable's read-only,
/// unmodified mappings; the bytes dropped (0 when nothing could be read).
pub fn drop_startup_pages() -> usize {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return 0;
    };
    let exe = exe.as_os_str().to_string_lossy().into_owned();
    drop_pages_where(|path| path == exe)
}

/// [`drop_startup_pages`] for every mapped file whose path `pick` accepts
/// (the executable's or shared libraries'; a library file is replaced by a
/// package upgrade as a new inode, so the mapping keeps reading the old one,
/// as it does for every page it had not faulted in yet).
pub fn drop_pages_where(pick: impl Fn(&str) -> bool) -> usize {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let mut dropped = 0;
    for m in droppable_where(&smaps, pick) {
        let Some(addr) = NonNull::new(m.start as *mut c_void) else {
            continue;
        };
        // SAFETY: [start, start+len) is a whole file mapping of this process
        // (its executable or a shared library), read-only and without one
        // private (anonymous) page, as /proc/self/smaps said just now (such
        // mappings are made at exec or dlopen, never unmapped by berth, and do
        // not change after the start-up relocations). MADV_DONTNEED
        // on such a private file mapping only unmaps the pages; the next
        // access maps the same bytes again from the file (which cannot change
        // while it is executed), so no code or constant data changes under us.
        if unsafe { madvise(addr, m.len, MmapAdvise::MADV_DONTNEED) }.is_ok() {
            dropped += m.len;
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
00400000-00440000 r--p 00000000 fd:00 123   /usr/bin/berth-supervise
Size:                256 kB
Rss:                 256 kB
Anonymous:             0 kB
00440000-00540000 r-xp 00040000 fd:00 123   /usr/bin/berth-supervise
Rss:                1012 kB
Anonymous:             0 kB
00540000-0054a000 r--p 00140000 fd:00 123   /usr/bin/berth-supervise
Rss:                  40 kB
Anonymous:            40 kB
0054a000-0054d000 rw-p 0014a000 fd:00 123   /usr/bin/berth-supervise
Anonymous:            12 kB
0054d000-00550000 rw-p 00000000 00:00 0 
Anonymous:            12 kB
7f0000000000-7f0000001000 r-xp 00000000 fd:00 77   /usr/lib/other.so
Anonymous:             0 kB
";

    #[test]
    fn only_our_read_only_unmodified_mappings() {
        let d = droppable(SMAPS, Path::new("/usr/bin/berth-supervise"));
        assert_eq!(
            d,
            vec![
                Droppable {
                    start: 0x400000,
                    len: 0x40000
                },
                Droppable {
                    start: 0x440000,
                    len: 0x100000
                },
            ]
        );
    }

    #[test]
    fn a_deleted_or_other_binary_is_left_alone() {
        let s = SMAPS.replace(
            "/usr/bin/berth-supervise",
            "/usr/bin/berth-supervise (deleted)",
        );
        assert!(droppable(&s, Path::new("/usr/bin/berth-supervise")).is_empty());
        assert!(droppable(SMAPS, Path::new("/usr/bin/berth")).is_empty());
    }

    #[test]
    fn dropping_keeps_the_process_working() {
        // this test binary's own code pages: dropped, then the code (and
        // its constants) still run as before
        let before = format!("{:?}", (1..=10).map(|i| i * 3).collect::<Vec<u64>>());
        let dropped = drop_startup_pages();
        assert!(
            dropped > 0,
            "no read-only mapping of the test binary was dropped"
        );
        let after = format!("{:?}", (1..=10).map(|i| i * 3).collect::<Vec<u64>>());
        assert_eq!(before, after);
        assert_eq!(after, "[3, 6, 9, 12, 15, 18, 21, 24, 27, 30]");
    }
}

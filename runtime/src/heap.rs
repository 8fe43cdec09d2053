//! The agent's heap (glibc malloc), kept small after bursts of work.
//!
//! glibc gives each thread that allocates under contention an arena of its
//! own, up to 8 per core, and keeps freed memory in them. The agent's
//! blocking-pool threads (netns handles, image unpacks, file I/O) come and
//! go in bursts, so after a burst of pod starts the freed memory of several
//! arenas stays resident. [`cap_arenas`] bounds their number and [`trim`]
//! returns free pages at the top and inside the arenas to the kernel. Both
//! only tune the allocator; neither frees or moves a live allocation.
//! [`drop_code_pages`] does the same for code pages that ran once.

/// At most `n` malloc arenas for this process (0 or negative: unchanged).
/// Best called before the runtime's threads start. False when refused or
/// not glibc.
pub fn cap_arenas(n: i32) -> bool {
    if n <= 0 {
        return false;
    }
    imp::cap_arenas(n)
}

/// Give free heap pages back to the kernel; true when any were released.
pub fn trim() -> bool {
    imp::trim()
}

/// Unmap this process's pages of its own executable's read-only, unmodified
/// mappings (code and constants), and those of the shared libraries in
/// [`IDLE_LIBRARIES`], so that what a burst of work ran once and start-up
/// code (argument parsing, host probes, configuration, OpenSSL's and
/// libnftables' set-up) do not stay resident; what runs again faults back in
/// from the page cache. The bytes of mappings dropped. See
/// `berth_supervise::resident`.
pub fn drop_code_pages() -> usize {
    let own = berth_supervise::resident::drop_startup_pages();
    own + berth_supervise::resident::drop_pages_where(idle_library)
}

/// Whether `path` is one of [`IDLE_LIBRARIES`] (any version suffix).
fn idle_library(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    IDLE_LIBRARIES.iter().any(|lib| {
        name.strip_prefix(lib)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    })
}

/// Libraries whose pages the idle agent does not need: the agent's own
/// dependencies besides libc (TLS for Git and registries, zlib, the unwinder,
/// libm) and libnftables with its dependencies (used per nft batch). Each is
/// loaded for the process's life (a DT_NEEDED of the agent, or of
/// libnftables, which is never dlclose'd), so none of their mappings goes
/// away between reading `/proc/self/smaps` and dropping its pages. libc and
/// the dynamic loader stay: the idle loop runs them.
pub const IDLE_LIBRARIES: &[&str] = &[
    "libssl.so",
    "libcrypto.so",
    "libz.so",
    "libgcc_s.so",
    "libm.so",
    "libnftables.so",
    "libnftnl.so",
    "libmnl.so",
    "libgmp.so",
    "libjansson.so",
    "libxtables.so",
];

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    pub fn cap_arenas(n: i32) -> bool {
        // SAFETY: mallopt sets a tuning parameter of glibc's allocator under
        // its own lock; it takes plain integers and touches no memory of ours.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, n) == 1 }
    }

    pub fn trim() -> bool {
        // SAFETY: malloc_trim releases free chunks' pages (madvise) under the
        // arenas' locks; live allocations are untouched, any thread may call it.
        unsafe { libc::malloc_trim(0) == 1 }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn cap_arenas(_n: i32) -> bool {
        false
    }

    pub fn trim() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_libraries_by_name() {
        for yes in [
            "/usr/lib/x86_64-linux-gnu/libm.so.6",
            "/lib/x86_64-linux-gnu/libnftables.so.1.1.0",
            "/usr/lib/x86_64-linux-gnu/libcrypto.so.3",
            "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13",
        ] {
            assert!(idle_library(yes), "{yes}");
        }
        for no in [
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            "/usr/lib/x86_64-linux-gnu/libzstd.so.1",
            "/usr/lib/x86_64-linux-gnu/libmagic.so.1",
            "/usr/bin/berth",
        ] {
            assert!(!idle_library(no), "{no}");
        }
    }

    /// Dropping the pages of loaded libraries leaves them working: their
    /// code faults back in from the file.
    #[test]
    fn dropped_library_pages_come_back() {
        let before = (0..1000).map(|i| f64::from(i).sin().cbrt()).sum::<f64>();
        drop_code_pages();
        let after = (0..1000).map(|i| f64::from(i).sin().cbrt()).sum::<f64>();
        assert_eq!(before.to_bits(), after.to_bits());
    }

    #[test]
    fn trim_gives_freed_pages_back() {
        // 8 MB freed below a live block (so free() cannot shrink the heap's
        // top by itself): trim must report pages released (glibc only)
        let blocks: Vec<Vec<u8>> = (0..2000).map(|i| vec![i as u8 | 1; 4096]).collect();
        let fence = Box::new([7u8; 64]); // a live heap block above the freed ones
        let sum: u64 = blocks.iter().map(|b| u64::from(b[0])).sum();
        assert!(sum > 0);
        drop(blocks);
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(trim(), "malloc_trim released nothing after 8 MB were freed");
            assert!(cap_arenas(2));
        }
        assert!(!cap_arenas(0));
        assert_eq!(fence[63], 7);
    }
}

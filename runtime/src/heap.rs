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
/// mappings (code and constants), so that what a burst of work ran once and
/// start-up code (argument parsing, host probes, configuration) do not stay
/// resident; what runs again faults back in from the page cache. The bytes
/// of mappings dropped. See `berth_supervise::resident`.
pub fn drop_code_pages() -> usize {
    berth_supervise::resident::drop_startup_pages()
}

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

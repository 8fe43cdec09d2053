//! The few places berth-runtime needs `unsafe`, each a tiny safe function
//! with its justification (G6). Nothing here runs between fork and exec.
//! File descriptors handed across exec are shared with the supervisor.

pub use berth_supervise::fd;

/// The calling process has one thread (`Threads:` in `/proc/self/status`).
fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse::<u32>().ok())
        })
        == Some(1)
}

/// `fork(2)` of a process that has a single thread, so the child is a
/// complete copy that may run any code (allocate, lock, exit normally).
/// `None` when the process has other threads (the caller then starts a
/// new process instead) or the fork failed.
pub fn fork_single_threaded() -> Option<nix::unistd::ForkResult> {
    if !single_threaded() {
        return None;
    }
    // SAFETY: with one thread no lock (allocator, stdio) can be held by a
    // thread that does not exist in the child, which is what makes fork in
    // a multi-threaded process unsafe; checked just above, and the callers
    // (berth-shim's `run`) start no thread before calling this.
    unsafe { nix::unistd::fork() }.ok()
}

/// Whether this kernel runs x32 programs (x86_64 only: `CONFIG_X86_X32_ABI`
/// and not switched off at boot), found by making one x32 system call,
/// `getpid` with the x32 bit: it returns this process's pid when the kernel
/// has the ABI and fails with ENOSYS when not. Asked once per process.
///
/// A process that runs under a seccomp filter itself (`Seccomp:` not 0 in
/// `/proc/self/status`, e.g. berth inside a container or a unit with
/// `SystemCallArchitectures=native`) does not probe, since such a filter may
/// kill it for a call of another ABI: the answer is then "yes", which keeps
/// x32 in the filter as before.
#[cfg(target_arch = "x86_64")]
pub fn x32_abi_available() -> bool {
    static X32: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *X32.get_or_init(|| {
        let unfiltered = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Seccomp:"))
                    .map(|v| v.trim() == "0")
            })
            .unwrap_or(false);
        if !unfiltered {
            return true;
        }
        const X32_SYSCALL_BIT: libc::c_long = 0x4000_0000;
        // SAFETY: getpid takes no arguments, touches no memory and has no
        // side effect; with the x32 bit it is the same call through the x32
        // table, or -1/ENOSYS where the kernel has none
        let r = unsafe { libc::syscall(X32_SYSCALL_BIT | libc::SYS_getpid) };
        r == libc::c_long::from(std::process::id() as i32)
    })
}

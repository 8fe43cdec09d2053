//! Privileged: the precompiled RuntimeDefault filter (`seccomp_bpf`) installs
//! exactly the instructions libcontainer's own seccomp setup installs for the
//! same profile, read back from the kernel with PTRACE_SECCOMP_GET_FILTER.
//!
//! One test in this file on purpose: it forks, and a fork of a process whose
//! other threads are busy (other tests) could inherit a held malloc lock.

mod common;

use berth_runtime::seccomp_bpf;
use common::require_root;
use oci_spec::runtime::LinuxSeccomp;

const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;

/// The instructions of the filters of a child that ran `apply` (after
/// setting no_new_privs), read by ptrace while it is stopped; `Err` when
/// `apply` failed or the child did not stop.
fn installed_filters(apply: impl FnOnce() -> bool) -> Result<Vec<Vec<u8>>, String> {
    // SAFETY: the child only runs `apply` (libseccomp / one syscall, in a
    // process whose only other thread is the test harness's idle main
    // thread) and then stops itself or exits without unwinding.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: plain syscalls of the child on itself.
        unsafe {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
                libc::_exit(2);
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                libc::_exit(3);
            }
            if !apply() {
                libc::_exit(4);
            }
            libc::raise(libc::SIGSTOP);
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    let result = if r != pid || !libc::WIFSTOPPED(status) {
        Err(format!(
            "child did not stop: waitpid {r}, status {status:#x}"
        ))
    } else {
        let mut filters = Vec::new();
        for index in 0.. {
            // SAFETY: with a null buffer the kernel only returns the count.
            let n = unsafe {
                libc::ptrace(
                    PTRACE_SECCOMP_GET_FILTER,
                    pid,
                    index as usize,
                    std::ptr::null_mut::<u8>(),
                )
            };
            if n < 0 {
                break;
            }
            let mut buf = vec![0u8; n as usize * 8];
            // SAFETY: `buf` has room for the `n` instructions the kernel reported.
            let m = unsafe {
                libc::ptrace(
                    PTRACE_SECCOMP_GET_FILTER,
                    pid,
                    index as usize,
                    buf.as_mut_ptr(),
                )
            };
            assert_eq!(m, n, "filter {index} changed size");
            filters.push(buf);
        }
        Ok(filters)
    };
    // SAFETY: our own child, killed and reaped.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, &mut status, 0);
    }
    result
}

fn profile(caps: &[&str]) -> LinuxSeccomp {
    let caps: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
    serde_json::from_value(berth_runtime::seccomp::profile(&caps)).unwrap()
}

#[test]
fn the_kernel_holds_the_same_filter_as_with_libcontainer() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for caps in [
        &[][..],
        &["CAP_SYS_CHROOT"][..],
        &["CAP_SYS_CHROOT", "CAP_SYS_ADMIN"][..],
    ] {
        let p = profile(caps);
        let theirs = installed_filters(|| libcontainer::seccomp::initialize_seccomp(&p).is_ok())
            .unwrap_or_else(|e| panic!("libcontainer's filter for {caps:?}: {e}"));
        // compiled, then from the cache (the second time)
        for round in ["compiled", "cached"] {
            let prog = seccomp_bpf::cached(tmp.path(), &p).unwrap();
            let ours = installed_filters(|| prog.load().is_ok())
                .unwrap_or_else(|e| panic!("berth's {round} filter for {caps:?}: {e}"));
            assert_eq!(theirs.len(), 1, "one filter installed: {caps:?}");
            assert_eq!(ours.len(), 1, "one filter installed: {caps:?}");
            assert!(theirs[0].len() > 100, "{caps:?}: {} bytes", theirs[0].len());
            assert!(
                ours[0] == theirs[0],
                "{round} program for {caps:?} differs: {} vs {} bytes",
                ours[0].len(),
                theirs[0].len()
            );
            assert_eq!(ours[0], prog.to_bytes());
        }
        seen.push(theirs[0].clone());
    }
    // the comparison can fail: the profiles (and so the programs) differ by caps
    assert_ne!(seen[0], seen[1]);
    assert_ne!(seen[1], seen[2]);
    // Localhost profiles (an operator's own file): other default actions,
    // errno values, kill/log/trace actions, argument comparisons, two arches
    for (what, json) in localhost_profiles() {
        let p: LinuxSeccomp = serde_json::from_value(json).unwrap();
        assert!(seccomp_bpf::precompilable(&p), "{what}");
        let theirs = installed_filters(|| libcontainer::seccomp::initialize_seccomp(&p).is_ok())
            .unwrap_or_else(|e| panic!("libcontainer's filter for {what}: {e}"));
        let prog = seccomp_bpf::cached(tmp.path(), &p).unwrap();
        let ours = installed_filters(|| prog.load().is_ok())
            .unwrap_or_else(|e| panic!("berth's filter for {what}: {e}"));
        assert_eq!((theirs.len(), ours.len()), (1, 1), "{what}");
        assert!(ours[0] == theirs[0], "{what}: the programs differ");
        assert!(!seen.contains(&ours[0]), "{what}: not a distinct program");
        seen.push(ours[0].clone());
    }
    // a filter the kernel refuses is an error, not a silent success
    let bad = seccomp_bpf::Program::from_bytes(&[0u8; 16]).unwrap();
    assert!(installed_filters(|| bad.load().is_ok()).is_err());
}

/// Profiles as operators write them for `seccompProfile: Localhost`.
fn localhost_profiles() -> Vec<(&'static str, serde_json::Value)> {
    use serde_json::json;
    vec![
        (
            "a deny-list: allow by default, refuse a few",
            json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                "syscalls": [
                    {"names": ["keyctl", "add_key", "request_key"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                    {"names": ["ptrace"], "action": "SCMP_ACT_KILL_PROCESS"},
                    {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                     "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_NE"}]},
                ]
            }),
        ),
        (
            "an allow-list with logging, errno and argument checks",
            json!({
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 13,
                "syscalls": [
                    {"names": ["read", "write", "exit", "exit_group", "rt_sigreturn", "brk", "mmap",
                               "munmap", "close", "fstat", "execve", "openat", "newfstatat",
                               // the test child stops itself with raise(SIGSTOP)
                               "getpid", "gettid", "tgkill", "rt_sigprocmask"],
                     "action": "SCMP_ACT_ALLOW"},
                    {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
                    {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": 2114060288u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                    {"names": ["setuid", "setgid"], "action": "SCMP_ACT_LOG"},
                    {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_LE"}]},
                ]
            }),
        ),
    ]
}

//! The `RuntimeDefault` seccomp profile: an allow-list modelled on Docker's
//! default profile (moby `profiles/seccomp/default.json`), written here as
//! data. Everything not listed fails with EPERM. Syscalls that only make sense
//! with a capability (mount needs CAP_SYS_ADMIN, reboot CAP_SYS_BOOT...) are
//! allowed only when the container has that capability, as Docker does; the
//! namespace flags of `clone` are refused without CAP_SYS_ADMIN and `clone3`
//! answers ENOSYS then, so libcs fall back to `clone`. Names the host's
//! libseccomp does not know (32-bit variants on x86_64, very new calls) are
//! skipped by libcontainer.

use serde_json::{Value, json};

/// Allowed for every container.
const ALLOW: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "arch_prctl",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "ioctl",
    "ioprio_get",
    "ioprio_set",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "modify_ldt",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "process_vm_readv",
    "process_vm_writev",
    "pselect6",
    "pselect6_time64",
    "ptrace",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "setsid",
    "setsockopt",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socket",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Allowed only with the capability.
const BY_CAP: &[(&str, &[&str])] = &[
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &["kcmp", "pidfd_getfd", "process_madvise"],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &[
            "settimeofday",
            "stime",
            "clock_settime",
            "clock_settime64",
            "clock_adjtime",
            "clock_adjtime64",
        ],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
];

/// CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET (and NEWTIME's
/// neighbour bits as Docker masks them): 0x7E020000.
const CLONE_NS_MASK: u64 = 0x7E02_0000;

/// personality(2) values Docker allows (PER_LINUX, PER_LINUX32, UNAME26 variants, query).
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// The ABIs the filter covers: the native one and the compat ABIs its kernel
/// also runs (a 64-bit kernel runs 32-bit binaries), as Docker lists them. An
/// ABI missing here is refused whole by the kernel (the filter's default for
/// an unknown architecture is to kill), so an architecture this list does not
/// name gets only its native ABI (libseccomp always adds the native one).
///
/// x32 is listed only where the kernel runs x32 programs: most kernels are
/// built without that ABI (`CONFIG_X86_X32_ABI`), and there its part of the
/// filter is never used but costs libseccomp about 10 ms of CPU to build in
/// every container start (16.5 ms for the three ABIs, 6.7 ms without x32,
/// measured on the 6.18 test host); the kernel refuses those calls either way.
fn arches() -> Value {
    #[cfg(target_arch = "x86_64")]
    if !crate::sys::x32_abi_available() {
        return json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]);
    }
    let names: &[&str] = if cfg!(target_arch = "x86_64") {
        &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    } else if cfg!(target_arch = "x86") {
        &["SCMP_ARCH_X86"]
    } else if cfg!(target_arch = "aarch64") {
        &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    } else if cfg!(target_arch = "arm") {
        &["SCMP_ARCH_ARM"]
    } else if cfg!(all(target_arch = "powerpc64", target_endian = "little")) {
        &["SCMP_ARCH_PPC64LE"]
    } else if cfg!(target_arch = "s390x") {
        &["SCMP_ARCH_S390X", "SCMP_ARCH_S390"]
    } else if cfg!(target_arch = "riscv64") {
        &["SCMP_ARCH_RISCV64"]
    } else {
        &[]
    };
    json!(names)
}

/// Which argument of clone(2) holds the flags: the first everywhere but on
/// s390, whose clone takes the stack first.
const CLONE_FLAGS_ARG: u32 = if cfg!(target_arch = "s390x") { 1 } else { 0 };

/// The OCI `linux.seccomp` value for a container with these (effective) capabilities.
pub fn profile(caps: &[String]) -> Value {
    let has = |c: &str| caps.iter().any(|x| x == c);
    let mut allow: Vec<&str> = ALLOW.to_vec();
    for (cap, names) in BY_CAP {
        if has(cap) {
            allow.extend_from_slice(names);
        }
    }
    allow.sort_unstable();
    allow.dedup();
    let mut rules = vec![json!({"names": allow, "action": "SCMP_ACT_ALLOW"})];
    for p in PERSONALITIES {
        rules.push(json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": p, "op": "SCMP_CMP_EQ"}]}));
    }
    if has("CAP_SYS_ADMIN") {
        rules.push(json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW"}));
    } else {
        // threads and plain forks, no new namespaces
        rules.push(json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": CLONE_FLAGS_ARG, "value": CLONE_NS_MASK, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}));
        // glibc and musl fall back to clone on ENOSYS
        rules.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}));
    }
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": arches(),
        "syscalls": rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(p: &Value) -> Vec<String> {
        p["syscalls"][0]["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn the_native_abi_comes_first() {
        let a = arches();
        let native = match std::env::consts::ARCH {
            "x86_64" => Some("SCMP_ARCH_X86_64"),
            "aarch64" => Some("SCMP_ARCH_AARCH64"),
            "arm" => Some("SCMP_ARCH_ARM"),
            _ => None,
        };
        if let Some(n) = native {
            assert_eq!(a[0], n, "{a}");
        }
        assert_eq!(profile(&[])["architectures"], a);
    }

    /// x32 is covered exactly where the kernel runs x32 programs (on this
    /// host: `CONFIG_X86_X32_ABI` in /proc/config.gz, when that is readable),
    /// or where this process could not ask (it runs under a seccomp filter).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x32_is_covered_where_the_kernel_runs_it() {
        let a = arches();
        let listed = a.as_array().unwrap().iter().any(|v| v == "SCMP_ARCH_X32");
        assert_eq!(listed, crate::sys::x32_abi_available(), "{a}");
        assert_eq!(a[1], "SCMP_ARCH_X86", "32-bit programs stay covered: {a}");
        let config = std::process::Command::new("zcat")
            .arg("/proc/config.gz")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        let filtered = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .any(|l| l.starts_with("Seccomp:") && l.trim_end() != "Seccomp:\t0");
        if let Some(c) = config.filter(|_| !filtered) {
            let built = c.lines().any(|l| l == "CONFIG_X86_X32_ABI=y");
            if !built {
                assert!(!listed, "x32 listed on a kernel built without it");
            }
        }
    }

    #[test]
    fn default_caps_get_no_mount_or_namespaces() {
        let caps: Vec<String> = crate::oci::DEFAULT_CAPS
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = profile(&caps);
        let a = allowed(&p);
        for s in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "init_module",
            "bpf",
            "reboot",
            "keyctl",
            "add_key",
            "clone3",
        ] {
            assert!(!a.contains(&s.to_string()), "{s} allowed by default");
        }
        for s in ["read", "execve", "chroot", "socket", "ptrace", "wait4"] {
            assert!(a.contains(&s.to_string()), "{s} refused by default");
        }
        let clone = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["names"][0] == "clone")
            .unwrap();
        assert_eq!(clone["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(clone["args"][0]["index"], CLONE_FLAGS_ARG);
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
    }

    #[test]
    fn capabilities_open_their_syscalls() {
        let caps = vec!["CAP_SYS_ADMIN".to_string(), "CAP_SYS_TIME".to_string()];
        let p = profile(&caps);
        let a = allowed(&p);
        for s in ["mount", "unshare", "setns", "clock_settime", "clone3"] {
            assert!(a.contains(&s.to_string()), "{s}");
        }
        assert!(!a.contains(&"chroot".to_string()), "no CAP_SYS_CHROOT here");
        // keyrings stay closed whatever the caps
        assert!(!a.contains(&"keyctl".to_string()));
    }

    #[test]
    fn parses_as_an_oci_seccomp() {
        let caps: Vec<String> = crate::oci::DEFAULT_CAPS
            .iter()
            .map(|s| s.to_string())
            .collect();
        let s: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(profile(&caps)).unwrap();
        assert!(s.syscalls().as_ref().unwrap().len() > 5);
    }
}

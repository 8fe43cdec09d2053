//! The RuntimeDefault seccomp filter as a precompiled BPF program.
//!
//! libcontainer hands an OCI seccomp profile to libseccomp inside every
//! container's init: a rule per syscall name per ABI, then BPF generation,
//! several milliseconds of CPU on the start's critical path. For berth's
//! own profile ([`crate::seccomp::profile`]) the supervisor instead
//! translates the profile the way libcontainer 0.7 does
//! (`libcontainer::seccomp::initialize_seccomp`), exports the program once
//! per content (cached in the run dir) and gives libcontainer a spec without
//! `linux.seccomp` and a [`SeccompExecutor`] that loads the program with
//! `seccomp(2)` in the init, at the point where libcontainer would have
//! loaded it (after no_new_privs, the capability drop and chdir, before the
//! payload's lookup and exec). A tested property: the kernel holds the same
//! instructions either way (`tests/seccomp_precompiled.rs`).
//!
//! Only profiles whose load needs nothing libcontainer does around it take
//! this path ([`precompilable`]): no filter flags, no notify action. A
//! process without no_new_privs takes it through [`crate::seccomp_handoff`]
//! (the executor also drops the capabilities libcontainer left widened).

use std::collections::HashSet;
use std::io::{Read, Seek};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
    ScmpVersion,
};
use oci_spec::runtime::{
    Arch, LinuxCapabilities, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, Spec,
};
use sha2::{Digest, Sha256};

/// The kernel's limit on a classic BPF program (BPF_MAXINSNS).
pub const MAX_INSNS: usize = 4096;
/// Bytes per instruction: u16 code, u8 jt, u8 jf, u32 k.
const INSN: usize = 8;
/// A cache file is the program followed by the sha256 of the program.
const SUM: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("libseccomp: {what}")]
    Libseccomp {
        what: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("the seccomp profile cannot be precompiled: {0}")]
    Unsupported(&'static str),
    #[error("exporting the seccomp program")]
    Export(#[source] std::io::Error),
    #[error("the exported seccomp program has {0} bytes (not 1 to {MAX_INSNS} instructions)")]
    BadLength(usize),
    #[error("loading the precompiled seccomp filter")]
    Load(#[source] std::io::Error),
}

fn lib(what: impl Into<String>) -> impl FnOnce(libseccomp::error::SeccompError) -> BpfError {
    let what = what.into();
    move |source| BpfError::Libseccomp { what, source }
}

/// A classic BPF program for `seccomp(SECCOMP_SET_MODE_FILTER)`, in the
/// host's byte order as libseccomp exports it.
#[derive(Clone)]
pub struct Program {
    insns: Vec<libc::sock_filter>,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Program({} instructions)", self.insns.len())
    }
}

impl PartialEq for Program {
    fn eq(&self, o: &Program) -> bool {
        self.to_bytes() == o.to_bytes()
    }
}

impl Program {
    /// The program from its exported bytes: 1 to [`MAX_INSNS`] whole instructions.
    pub fn from_bytes(b: &[u8]) -> Result<Program, BpfError> {
        if b.is_empty() || !b.len().is_multiple_of(INSN) || b.len() / INSN > MAX_INSNS {
            return Err(BpfError::BadLength(b.len()));
        }
        let insns = b
            .chunks_exact(INSN)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        Ok(Program { insns })
    }

    /// The exported form (what [`Program::from_bytes`] reads).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.insns.len() * INSN);
        for i in &self.insns {
            out.extend_from_slice(&i.code.to_ne_bytes());
            out.extend_from_slice(&[i.jt, i.jf]);
            out.extend_from_slice(&i.k.to_ne_bytes());
        }
        out
    }

    pub fn len(&self) -> usize {
        self.insns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// Install the program as a seccomp filter of the calling thread, with
    /// no flags (what libseccomp's load does for a profile without flags
    /// or notify rules). Needs no_new_privs or CAP_SYS_ADMIN.
    pub fn load(&self) -> Result<(), BpfError> {
        self.load_with(0)
    }

    /// [`Program::load`] with `SECCOMP_FILTER_FLAG_*` bits (see
    /// [`load_flags`]): what libseccomp passes for a profile with those
    /// flags and no notify rule. A flag the kernel does not know fails.
    pub fn load_with(&self, flags: libc::c_ulong) -> Result<(), BpfError> {
        let prog = libc::sock_fprog {
            len: self.insns.len() as libc::c_ushort,
            filter: self.insns.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points at `self.insns` (at most MAX_INSNS
        // instructions, checked when built), which outlives the call; the
        // kernel only reads it (copies it in before returning).
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(BpfError::Load(std::io::Error::last_os_error()))
        }
    }
}

/// Whether `profile` can be loaded as a precompiled program with the same
/// effect as libcontainer's load: no filter flags (TSYNC, LOG, SPEC_ALLOW
/// would change the load), no notify action (needs the listener fd sent
/// to the runtime).
pub fn precompilable(profile: &LinuxSeccomp) -> bool {
    let notify = LinuxSeccompAction::ScmpActNotify;
    profile.flags().as_ref().is_none_or(|f| f.is_empty())
        && profile.default_action() != notify
        && profile
            .syscalls()
            .iter()
            .flatten()
            .all(|s| s.action() != notify)
}

/// Whether `profile` has a notify action (default or in a rule): its
/// filter needs a listener fd handed to a supervisor, which only
/// libcontainer's init path does.
pub fn has_notify(profile: &LinuxSeccomp) -> bool {
    let notify = LinuxSeccompAction::ScmpActNotify;
    profile.default_action() == notify
        || profile
            .syscalls()
            .iter()
            .flatten()
            .any(|s| s.action() == notify)
}

/// The `seccomp(2)` flags of `profile`'s filter flags, as libseccomp loads
/// them for a filter without notify rules: LOG, TSYNC and SPEC_ALLOW as
/// such; WAIT_KILLABLE_RECV only applies to a notify listener (libseccomp
/// passes it with one only, and the kernel refuses it without), so none.
/// The flags do not change the program, only its load.
pub fn load_flags(profile: &LinuxSeccomp) -> libc::c_ulong {
    profile
        .flags()
        .iter()
        .flatten()
        .map(|f| match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 0,
        })
        .fold(0, |a, b| a | b)
}

fn arch(a: Arch) -> ScmpArch {
    match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

/// An OCI action as libcontainer translates it (errno defaults to EPERM).
fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, BpfError> {
    let errno = errno.map(|e| e as i32).unwrap_or(libc::EPERM);
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(
            u16::try_from(errno).map_err(|_| BpfError::Unsupported("a trace errno above 65535"))?,
        ),
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(BpfError::Unsupported("a notify action"));
        }
    })
}

fn op(o: LinuxSeccompOperator, mask: Option<u64>) -> ScmpCompareOp {
    match o {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(mask.unwrap_or(0)),
    }
}

/// The libseccomp filter for `profile`, built as libcontainer 0.7 builds it:
/// the default action (errno EPERM unless `defaultErrnoRet`), the listed
/// architectures, CTL_NNP off, rules whose action equals the default
/// skipped, names libseccomp does not know skipped, and the comparisons of a
/// rule that compares one argument twice added as separate rules.
fn filter(profile: &LinuxSeccomp) -> Result<ScmpFilterContext, BpfError> {
    // filter flags change only the load ([`load_flags`]), not the program
    if has_notify(profile) {
        return Err(BpfError::Unsupported("a notify action"));
    }
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(lib("creating a filter"))?;
    for &a in profile.architectures().iter().flatten() {
        ctx.add_arch(arch(a))
            .map_err(lib(format!("adding architecture {a:?}")))?;
    }
    ctx.set_ctl_nnp(false).map_err(lib("setting CTL_NNP"))?;
    for rule in profile.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue;
        }
        for name in rule.names() {
            // unknown to this libseccomp (newer than it): as libcontainer, skipped
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                continue;
            };
            let add = |ctx: &mut ScmpFilterContext, cmp: &[ScmpArgCompare]| {
                ctx.add_rule_conditional(act, sc, cmp)
                    .map(|_| ())
                    .map_err(lib(format!("adding the rule for {name}")))
            };
            match rule.args() {
                None => {
                    ctx.add_rule(act, sc)
                        .map_err(lib(format!("adding the rule for {name}")))?;
                }
                Some(args) => {
                    let cmps: Vec<ScmpArgCompare> = args
                        .iter()
                        .map(|a| {
                            ScmpArgCompare::new(
                                a.index() as u32,
                                op(a.op(), a.value_two()),
                                a.value(),
                            )
                        })
                        .collect();
                    let mut seen = HashSet::new();
                    let twice = args.iter().any(|a| !seen.insert(a.index()));
                    if twice {
                        for c in &cmps {
                            add(&mut ctx, std::slice::from_ref(c))?;
                        }
                    } else {
                        add(&mut ctx, &cmps)?;
                    }
                }
            }
        }
    }
    Ok(ctx)
}

/// Compile `profile` to a BPF program (exported by libseccomp into a memfd).
pub fn compile(profile: &LinuxSeccomp) -> Result<Program, BpfError> {
    let ctx = filter(profile)?;
    let name = c"berth-seccomp";
    // SAFETY: a plain syscall with a valid NUL-terminated name; the returned
    // descriptor (checked below) is owned by nobody else.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(BpfError::Export(std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh descriptor that only this File owns.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    ctx.export_bpf(&file)
        .map_err(lib("exporting the BPF program"))?;
    file.rewind().map_err(BpfError::Export)?;
    let mut bytes = Vec::new();
    (&mut file)
        .take((MAX_INSNS * INSN + 1) as u64)
        .read_to_end(&mut bytes)
        .map_err(BpfError::Export)?;
    Program::from_bytes(&bytes)
}

/// The cache key of `profile`'s program: sha256 of the profile's JSON, the
/// libseccomp version and API level and the architecture berth runs on.
pub fn cache_key(profile: &LinuxSeccomp) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(profile).unwrap_or_default());
    let v = ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    h.update(format!("\0libseccomp {v} api {}\0", libseccomp::get_api()));
    h.update(std::env::consts::ARCH);
    hex::encode(h.finalize())
}

/// Where [`cached`] keeps `profile`'s program under `dir`.
pub fn cache_path(dir: &Path, profile: &LinuxSeccomp) -> PathBuf {
    dir.join(format!("{}.bpf", cache_key(profile)))
}

/// Owned by this process's user and not writable, readable or searchable
/// by group or others.
fn private_to_us(md: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    md.uid() == me && md.mode() & 0o077 == 0
}

/// A cache file's program, if the file is a regular file of a plausible
/// size whose trailing sha256 matches: anything else is not trusted.
fn read_cache(path: &Path) -> Option<Program> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let md = f.metadata().ok()?;
    let max = (MAX_INSNS * INSN + SUM) as u64;
    if !md.is_file() || md.len() > max || !private_to_us(&md) {
        return None;
    }
    // the checksum catches a torn file, not a planted one: the file and its
    // directory must be ours and closed to everyone else (a run dir that was
    // somehow opened up must not let anyone hand containers a filter)
    if !path
        .parent()
        .and_then(|d| std::fs::symlink_metadata(d).ok())
        .is_some_and(|d| d.is_dir() && private_to_us(&d))
    {
        return None;
    }
    let mut buf = Vec::with_capacity(md.len() as usize);
    f.by_ref().take(max + 1).read_to_end(&mut buf).ok()?;
    if buf.len() < SUM {
        return None;
    }
    let (prog, sum) = buf.split_at(buf.len() - SUM);
    if Sha256::digest(prog).as_slice() != sum {
        return None;
    }
    Program::from_bytes(prog).ok()
}

/// `profile`'s program from the cache in `dir` (root-only: dir 0700, file
/// 0600, written atomically), compiled and stored there when missing or not
/// valid. A cache that cannot be written is reported on stderr and the
/// compiled program used.
pub fn cached(dir: &Path, profile: &LinuxSeccomp) -> Result<Program, BpfError> {
    let path = cache_path(dir, profile);
    if let Some(p) = read_cache(&path) {
        return Ok(p);
    }
    let prog = compile(profile)?;
    let mut data = prog.to_bytes();
    let sum = Sha256::digest(&data);
    data.extend_from_slice(&sum);
    let stored =
        crate::layout::private_dir(dir).and_then(|()| crate::layout::write_volatile(&path, &data));
    if let Err(e) = stored {
        eprintln!(
            "berth-shim: caching the seccomp program in {}: {e}",
            path.display()
        );
    }
    Ok(prog)
}

/// libcontainer's default executor, with a precompiled filter (if any)
/// loaded first, where libcontainer itself loads seccomp under
/// no_new_privs: its init calls `validate` right after that point (after
/// the capability drop and chdir). For a process without no_new_privs
/// ([`crate::seccomp_handoff`]) libcontainer dropped to widened sets and
/// the executor then drops to the spec's own ones after the load. A failed
/// load or drop fails `validate`, so the container's create fails with the
/// error (never a payload without its filter or with more capabilities).
/// Without a program it is exactly [`DefaultExecutor`].
#[derive(Clone)]
pub struct SeccompExecutor {
    program: Option<Arc<Program>>,
    flags: libc::c_ulong,
    drop_to: Option<Arc<LinuxCapabilities>>,
}

impl SeccompExecutor {
    pub fn new(program: Option<Program>) -> SeccompExecutor {
        SeccompExecutor {
            program: program.map(Arc::new),
            flags: 0,
            drop_to: None,
        }
    }

    /// The same executor loading its program with `flags` ([`load_flags`]).
    pub fn with_flags(self, flags: libc::c_ulong) -> SeccompExecutor {
        SeccompExecutor { flags, ..self }
    }

    /// Load `program` (with CAP_SYS_ADMIN still effective), then drop the
    /// capabilities to exactly `caps` (all five sets as libcontainer's
    /// `drop_privileges` sets them).
    pub fn dropping(
        program: Program,
        caps: LinuxCapabilities,
    ) -> Result<SeccompExecutor, crate::seccomp_handoff::HandoffError> {
        crate::seccomp_handoff::check(&caps)?;
        Ok(SeccompExecutor {
            program: Some(Arc::new(program)),
            flags: 0,
            drop_to: Some(Arc::new(caps)),
        })
    }
}

impl Executor for SeccompExecutor {
    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        if let Some(p) = &self.program {
            p.load_with(self.flags).map_err(|e| {
                ExecutorValidationError::ArgValidationError(berth_contract::error_chain(&e))
            })?;
        }
        if let Some(caps) = &self.drop_to {
            let syscall = libcontainer::syscall::syscall::create_syscall();
            libcontainer::capabilities::drop_privileges(caps, syscall.as_ref()).map_err(|e| {
                ExecutorValidationError::ArgValidationError(format!(
                    "dropping capabilities after loading the seccomp filter: {}",
                    berth_contract::error_chain(&e)
                ))
            })?;
        }
        DefaultExecutor {}.validate(spec)
    }

    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        DefaultExecutor {}.exec(spec)
    }
}

#[cfg(test)]
mod tests;

//! The per-container supervisor, run as the `berth-shim` binary.
//!
//! `berth-shim run <container dir>`: while still single-threaded (libcontainer
//! forks with clone3 and runs Rust in the child, which is only safe then), it
//! mounts the overlay rootfs, writes the OCI bundle and creates and starts the
//! container with libcontainer; the container's init is its child (CLONE_PARENT).
//! Then it execs the small `berth-supervise` (see [`crate::supervise`]),
//! which pumps stdout/stderr into the CRI log, waits for the init, and records
//! how it ended (exit code, signal, OOM kill, time) in `status.json`. It owns
//! the container, so the agent can die and come back at any time.
//!
//! `berth-shim exec <container dir> <timeout ms> -- ARGV`: runs ARGV inside the
//! running container (its namespaces, cgroup, env) via libcontainer's tenant
//! builder, and prints an `ExecResult` as JSON.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use berth_contract::{ErrorKind, ExecResult};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::mount::{MsFlags, mount};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::cgroups::Cgroups;
use crate::exec_seccomp::{self, SECCOMP_FILE};
use crate::layout::{
    ContainerId, Layout, SetupError, ShimSpec, Started, ns_of, read_json, write_json,
};
use crate::oci;
use crate::seccomp_bpf::{self, SeccompExecutor};
use crate::seccomp_handoff;

/// A setup failure: Kubernetes-style reason, message, and how the agent should react.
struct Fail(&'static str, String, ErrorKind);

/// A failure whose kind follows from its reason: configuration errors are the
/// user's to fix, the rest is worth retrying.
fn fail(reason: &'static str, message: String) -> Fail {
    let kind = if reason == "CreateContainerConfigError" {
        ErrorKind::Invalid
    } else {
        ErrorKind::Transient
    };
    Fail(reason, message, kind)
}

/// `BERTH_SHIM_TIMING=1`: phase times in the shim log, in ms since the
/// shim's first mark and as wall-clock time (Unix seconds, µs), which lines
/// up with the agent's `berth::timing` events.
fn mark(what: &str) {
    static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let t0 = *T0.get_or_init(Instant::now);
    if std::env::var_os("BERTH_SHIM_TIMING").is_some() {
        let wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        eprintln!(
            "berth-shim timing: {what} at {:.1} ms (wall {}.{:06})",
            t0.elapsed().as_secs_f64() * 1000.0,
            wall.as_secs(),
            wall.subsec_micros()
        );
    }
}

fn read_in_rootfs(rootfs: &Path, rel: &str) -> String {
    // never follow a symlink out of the image
    let p = rootfs.join(rel);
    match fs::symlink_metadata(&p) {
        Ok(md) if md.is_file() => fs::read_to_string(p).unwrap_or_default(),
        _ => String::new(),
    }
}

fn resolve_user(spec: &ShimSpec, rootfs: &Path) -> Result<oci::User, Fail> {
    let s = &spec.config.security;
    let passwd = read_in_rootfs(rootfs, "etc/passwd");
    let group = read_in_rootfs(rootfs, "etc/group");
    let (mut uid, mut gid) = match &spec.config.image_user {
        Some(u) if s.run_as_user.is_none() => oci::resolve_user(u, &passwd, &group)
            .map_err(|m| fail("CreateContainerConfigError", m))?,
        _ => (0, 0),
    };
    if let Some(u) = s.run_as_user {
        uid = u as u32;
        gid = oci::resolve_user(&uid.to_string(), &passwd, &group)
            .map(|x| x.1)
            .unwrap_or(0);
    }
    if let Some(g) = s.run_as_group {
        gid = g as u32;
    }
    if s.run_as_non_root && uid == 0 {
        return Err(fail(
            "CreateContainerConfigError",
            format!(
                "container {} has runAsNonRoot and image will run as root",
                spec.config.name
            ),
        ));
    }
    let mut additional_gids: Vec<u32> = s.supplemental_groups.iter().map(|g| *g as u32).collect();
    // supplementalGroupsPolicy Merge (the default): also the groups the
    // image's /etc/group lists the user in, as containerd adds them
    if !s.supplemental_groups_strict {
        for g in oci::member_groups(uid, &passwd, &group) {
            if g != gid && !additional_gids.contains(&g) {
                additional_gids.push(g);
            }
        }
    }
    Ok(oci::User {
        uid,
        gid,
        additional_gids,
    })
}

fn mount_rootfs(spec: &ShimSpec, layout: &Layout, rootfs: &Path) -> Result<(), Fail> {
    let id = &spec.config.id;
    let upper_base = layout.upper(id);
    let upper = upper_base.join("upper");
    let work = upper_base.join("work");
    // root-only above the upper dir; the upper dir itself keeps the usual
    // mode, as it becomes the container's `/`
    crate::layout::private_dir(&upper_base).map_err(|e| {
        fail(
            "CreateContainerError",
            format!("creating {}: {e}", upper_base.display()),
        )
    })?;
    for d in [&upper, &work, &rootfs.to_path_buf()] {
        fs::create_dir_all(d).map_err(|e| {
            fail(
                "CreateContainerError",
                format!("creating {}: {e}", d.display()),
            )
        })?;
    }
    let layers: Vec<String> = spec
        .config
        .image
        .layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    if layers.is_empty() {
        return Err(fail("CreateContainerError", "image has no layers".into()));
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        layers.join(":"),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|e| {
        let msg = format!("mounting the overlay root filesystem: {e} (is overlayfs available?)");
        let kind = if e == nix::errno::Errno::ENODEV {
            ErrorKind::Unsupported
        } else {
            ErrorKind::Transient
        };
        Fail("CreateContainerError", msg, kind)
    })
}

fn create_workdir(rootfs: &Path, cwd: &str) {
    let mut p = rootfs.to_path_buf();
    for c in Path::new(cwd).components() {
        if let std::path::Component::Normal(n) = c {
            p.push(n);
            match fs::symlink_metadata(&p) {
                Ok(md) if md.is_dir() => continue,
                Ok(_) => return,
                Err(_) => {
                    if fs::create_dir(&p).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

fn nofile() -> (u64, u64) {
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .unwrap_or((1024, 1024));
    (hard.min(1_048_576), hard)
}

use berth_contract::error_chain as err_chain;

/// How long `berth-shim run` waits for the supervisor to report that the
/// container runs (or could not be started) before it returns anyway (the
/// agent then reads the container's files as before).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// `berth-shim run DIR`: fork the supervisor off and return once it has
/// started the container (`state.json`) or recorded why not
/// (`error.json`), so the agent needs no polling: the agent reaps this
/// short-lived parent, the supervisor is re-parented to init and survives
/// the agent being killed. Its pid is in `shim.pid` before this returns.
/// Stdout/stderr (the shim log) are inherited.
///
/// The supervisor is a fork of this process (single-threaded here), not a
/// second exec of this binary: that exec and its dynamic loading cost a
/// few milliseconds per container. Should fork be unavailable, it falls
/// back to starting `berth-shim serve DIR`.
pub fn launch(dir: &Path) -> i32 {
    let (ready_r, ready_w) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("berth-shim: ready pipe: {e}");
            return launch_exec(dir);
        }
    };
    match crate::sys::fork_single_threaded() {
        Some(nix::unistd::ForkResult::Child) => {
            drop(ready_r);
            std::process::exit(serve(dir, Some(ready_w)));
        }
        Some(nix::unistd::ForkResult::Parent { child }) => {
            drop(ready_w);
            if let Err(e) = crate::layout::write_shim_pid(dir, child.as_raw()) {
                // a supervisor nobody can find would run its container
                // unseen: it goes, and the agent reports the failure
                eprintln!("berth-shim: writing shim.pid: {e}");
                let _ = kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
                return 1;
            }
            wait_ready(ready_r, READY_TIMEOUT);
            0
        }
        None => launch_exec(dir),
    }
}

/// Until the supervisor writes its byte or closes its end of the pipe
/// (exec, exit), at most `timeout`.
fn wait_ready(r: std::io::PipeReader, timeout: Duration) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let t0 = Instant::now();
    loop {
        let left = timeout.saturating_sub(t0.elapsed());
        if left.is_zero() {
            eprintln!("berth-shim: the supervisor did not report within {timeout:?}");
            return;
        }
        let mut fds = [PollFd::new(r.as_fd(), PollFlags::POLLIN)];
        let t = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, t) {
            Err(nix::errno::Errno::EINTR) => continue,
            _ => return,
        }
    }
}

/// The fallback of [`launch`]: `berth-shim serve DIR` as a new process.
fn launch_exec(dir: &Path) -> i32 {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("berth-shim: finding its own executable: {e}");
            return 1;
        }
    };
    match std::process::Command::new(exe)
        .arg("serve")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .spawn()
    {
        Ok(child) => match crate::layout::write_shim_pid(dir, child.id() as i32) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("berth-shim: writing shim.pid: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("berth-shim: starting the supervisor: {e}");
            1
        }
    }
}

/// `berth-shim serve DIR`: in a session of its own (no controlling terminal,
/// no signals aimed at the agent's process group), supervise the container.
pub fn serve_main(dir: &Path) -> i32 {
    // started on its own (not forked by `run`): record its own pid
    let _ = crate::layout::write_shim_pid(dir, std::process::id() as i32);
    serve(dir, None)
}

/// The supervisor in a session of its own; `ready` is written to (and
/// closed) once the container runs or its failure is recorded.
fn serve(dir: &Path, ready: Option<std::io::PipeWriter>) -> i32 {
    mark("serve");
    if let Err(e) = nix::unistd::setsid() {
        eprintln!("berth-shim: setsid: {e}");
    }
    mark("setsid");
    run_main(dir, ready)
}

/// The supervisor proper; returns the process exit code.
pub fn run_main(dir: &Path, mut ready: Option<std::io::PipeWriter>) -> i32 {
    let Some(spec) = read_json::<ShimSpec>(&dir.join("spec.json")) else {
        eprintln!("berth-shim: cannot read {}/spec.json", dir.display());
        return 2;
    };
    // whoever waits for the start (`berth-shim run`) goes on: the files say how it went
    let mut report_ready = move || {
        if let Some(mut w) = ready.take() {
            use std::io::Write;
            let _ = w.write_all(b"r");
        }
    };
    mark("spec read");
    let _ = nix::sys::prctl::set_child_subreaper(true);
    mark("subreaper");
    let layout = Layout {
        run_dir: spec.run_dir.clone(),
        state_dir: spec.state_dir.clone(),
    };
    let rootfs = dir.join("rootfs");
    let cg = Cgroups::detect(Path::new("/sys/fs/cgroup"));
    match start(&spec, &layout, dir, &rootfs) {
        Err(Fail(reason, message, kind)) => {
            let _ = write_json(
                &dir.join("error.json"),
                &SetupError {
                    reason: reason.into(),
                    message,
                    kind: Some(kind),
                },
            );
            report_ready();
            cleanup(&spec, &layout, &rootfs, &cg);
            1
        }
        Ok((pid, started_at, out_r, err_r)) => {
            report_ready();
            let oom_before = cg.oom_kills(&spec.cgroup_path);
            // Drop libcontainer's pages: exec `berth-supervise` (or, without
            // it, `berth-shim supervise`), keeping the pid (the init stays
            // our child) and the pipe readers. If exec fails, supervise from
            // this image.
            if std::env::var_os("BERTH_SHIM_NO_REEXEC").is_none() {
                let e = reexec_supervise(dir, pid, started_at, &out_r, &err_r, oom_before);
                eprintln!("berth-shim: re-exec into the supervisor failed, staying: {e}");
            }
            crate::supervise::run(dir, pid, started_at, out_r.into(), err_r.into(), oom_before)
        }
    }
}

/// Exec the supervisor: `berth-supervise` next to this executable, else
/// this executable's own `supervise`. Returns only on failure.
fn reexec_supervise(
    dir: &Path,
    pid: Pid,
    started_at: SystemTime,
    out_r: &std::io::PipeReader,
    err_r: &std::io::PipeReader,
    oom_before: u64,
) -> std::io::Error {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    if let Err(e) = crate::sys::fd::keep_across_exec(out_r)
        .and_then(|_| crate::sys::fd::keep_across_exec(err_r))
    {
        return e;
    }
    let args = [
        dir.as_os_str().to_owned(),
        pid.as_raw().to_string().into(),
        out_r.as_raw_fd().to_string().into(),
        err_r.as_raw_fd().to_string().into(),
        ns_of(started_at).to_string().into(),
        oom_before.to_string().into(),
    ];
    match crate::supervise::binary_path() {
        Some(small) => {
            let e = std::process::Command::new(&small).args(&args).exec();
            eprintln!(
                "berth-shim: exec {}: {e}; supervising from berth-shim",
                small.display()
            );
        }
        None => eprintln!(
            "berth-shim: no berth-supervise next to berth-shim; supervising from berth-shim"
        ),
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return e,
    };
    std::process::Command::new(exe)
        .arg("supervise")
        .args(&args)
        .exec()
}

/// `berth-shim supervise DIR PID OUT_FD ERR_FD STARTED_NS OOM_BEFORE`: the
/// supervisor in this image, when `berth-supervise` is missing.
pub fn supervise_main(args: &[String]) -> i32 {
    crate::supervise::main(args)
}

type Started4 = (Pid, SystemTime, std::io::PipeReader, std::io::PipeReader);

fn start(spec: &ShimSpec, layout: &Layout, dir: &Path, rootfs: &Path) -> Result<Started4, Fail> {
    let cfg = &spec.config;
    mark("start");
    mount_rootfs(spec, layout, rootfs)?;
    mark("overlay mounted");
    let user = resolve_user(spec, rootfs)?;
    create_workdir(rootfs, &cfg.working_dir);
    let invalid = |m: String| Fail("CreateContainerError", m, ErrorKind::Invalid);
    crate::precheck::working_dir(rootfs, &cfg.working_dir).map_err(invalid)?;
    crate::precheck::executable(
        rootfs,
        cfg.args.first().map(String::as_str).unwrap_or(""),
        &cfg.env,
    )
    .map_err(invalid)?;
    // subPaths resolved here, never following a symlink (see `subpath`)
    let mut resolved = cfg.clone();
    for m in &mut resolved.mounts {
        if let Some(sp) = m.sub_path.take() {
            m.source = crate::subpath::resolve(&m.source, &sp).map_err(|e| {
                fail(
                    "CreateContainerConfigError",
                    format!("mount {}: {}", m.destination, err_chain(&e)),
                )
            })?;
        }
    }
    let mut value = oci::spec(
        &resolved,
        rootfs,
        &spec.cgroup_path,
        &user,
        spec.default_pids_limit,
        nofile(),
    )
    .map_err(|m| fail("CreateContainerConfigError", m))?;
    // v1 without swap accounting (swapaccount=0) has no memsw files: a swap
    // limit there would make libcontainer fail; the memory limit alone stays
    let v1_no_memsw = Path::new("/sys/fs/cgroup/memory").is_dir()
        && !Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists();
    if v1_no_memsw && let Some(m) = value["linux"]["resources"]["memory"].as_object_mut() {
        m.remove("swap");
    }
    let dropped = crate::cgroups::host_fit::fit_resources(
        &mut value,
        &Cgroups::detect(Path::new("/sys/fs/cgroup")),
    );
    if !dropped.is_empty() {
        eprintln!(
            "berth-shim: no {} cgroup controller on this host: those limits are not enforced",
            dropped.join(", ")
        );
    }
    let bounding =
        crate::caps::own_bounding_set(&fs::read_to_string("/proc/self/status").unwrap_or_default());
    crate::caps::finish(&mut value, &cfg.security, bounding)
        .map_err(|m| fail("CreateContainerConfigError", m))?;
    let bundle = dir.join("bundle");
    crate::layout::private_dir(&bundle).map_err(|e| fail("CreateContainerError", e.to_string()))?;
    let executor = precompiled_seccomp(&mut value, &cfg.security, layout, &bundle, bounding)?;
    mark("seccomp program");
    let parsed: oci_spec::runtime::Spec = serde_json::from_value(value)
        .map_err(|e| fail("CreateContainerError", format!("OCI spec: {e}")))?;
    mark("spec built");
    parsed
        .save(bundle.join("config.json"))
        .map_err(|e| fail("CreateContainerError", format!("writing config.json: {e}")))?;
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(
            bundle.join("config.json"),
            fs::Permissions::from_mode(0o600),
        )
        .map_err(|e| fail("CreateContainerError", format!("config.json mode: {e}")))?;
    }
    let (out_r, out_w) = std::io::pipe().map_err(|e| fail("RunContainerError", e.to_string()))?;
    let (err_r, err_w) = std::io::pipe().map_err(|e| fail("RunContainerError", e.to_string()))?;
    let youki_root = layout.youki_root();
    crate::layout::private_dir(&youki_root)
        .map_err(|e| fail("RunContainerError", e.to_string()))?;
    let run_err =
        |e: libcontainer::error::LibcontainerError| fail("RunContainerError", err_chain(&e));
    let mut c = ContainerBuilder::new(cfg.id.clone(), SyscallType::default())
        .with_executor(executor)
        .with_root_path(&youki_root)
        .map_err(run_err)?
        .with_stdout(out_w)
        .with_stderr(err_w)
        .validate_id()
        .map_err(run_err)?
        .as_init(&bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|e| fail("CreateContainerError", err_chain(&e)))?;
    mark("libcontainer created");
    c.start().map_err(run_err)?;
    mark("libcontainer started");
    let pid = c.pid().map(|p| Pid::from_raw(p.as_raw())).ok_or_else(|| {
        fail(
            "RunContainerError",
            "container has no pid after start".into(),
        )
    })?;
    let started_at = SystemTime::now();
    write_json(
        &dir.join("state.json"),
        &Started {
            pid: pid.as_raw(),
            started_at_ns: ns_of(started_at),
        },
    )
    .map_err(|e| fail("RunContainerError", e.to_string()))?;
    Ok((pid, started_at, out_r, err_r))
}

/// The container's seccomp profile (berth's RuntimeDefault, or a Localhost
/// profile that [`seccomp_bpf::precompilable`] accepts: no filter flags, no
/// notify action): taken out of `value` (libcontainer would
/// build it with libseccomp in the init) and loaded as a precompiled
/// program (see [`seccomp_bpf`]) by the returned executor, its profile kept
/// in `bundle/seccomp.json` for `berth-shim exec`. Without no_new_privs the
/// process is handed off ([`seccomp_handoff`]): `value`'s capabilities are
/// widened and its own kept in `bundle/capabilities.json`, written before
/// config.json. Unconfined profiles, privileged containers, Localhost
/// profiles with flags or notify actions, processes the hand-off cannot take
/// and any container when
/// `BERTH_SHIM_SECCOMP=libcontainer` is set (for comparisons) stay with
/// libcontainer (the default executor) for the init; `berth-shim exec`
/// still loads their filter itself or refuses ([`exec_seccomp`]).
fn precompiled_seccomp(
    value: &mut serde_json::Value,
    sec: &berth_contract::Security,
    layout: &Layout,
    bundle: &Path,
    own_bounding: u64,
) -> Result<SeccompExecutor, Fail> {
    let libcontainers = SeccompExecutor::new(None);
    // Localhost profiles too: libcontainer 0.7's exec drops `linux.seccomp`,
    // so on its path an exec'd process would run unfiltered
    let runtime_default = !sec.privileged && !sec.seccomp_unconfined;
    let nnp = value["process"]["noNewPrivileges"] == serde_json::Value::Bool(true);
    let knob = std::env::var("BERTH_SHIM_SECCOMP").is_ok_and(|v| v == "libcontainer");
    if !runtime_default || knob || !value["linux"]["seccomp"].is_object() {
        return Ok(libcontainers);
    }
    if !nnp && !seccomp_handoff::possible(value, own_bounding) {
        return Ok(libcontainers);
    }
    let profile: oci_spec::runtime::LinuxSeccomp =
        serde_json::from_value(value["linux"]["seccomp"].clone())
            .map_err(|e| fail("CreateContainerError", format!("seccomp profile: {e}")))?;
    if !seccomp_bpf::precompilable(&profile) {
        return Ok(libcontainers);
    }
    let program = seccomp_bpf::cached(&layout.run_dir.join("seccomp"), &profile)
        .map_err(|e| fail("CreateContainerError", err_chain(&e)))?;
    let executor = if nnp {
        SeccompExecutor::new(Some(program))
    } else {
        let own = seccomp_handoff::widen(value)
            .map_err(|e| fail("CreateContainerError", err_chain(&e)))?;
        write_json(&bundle.join(seccomp_handoff::FILE), &own).map_err(|e| {
            fail(
                "CreateContainerError",
                format!("writing {}: {e}", seccomp_handoff::FILE),
            )
        })?;
        SeccompExecutor::dropping(program, own)
            .map_err(|e| fail("CreateContainerError", err_chain(&e)))?
    };
    write_json(&bundle.join(SECCOMP_FILE), &profile).map_err(|e| {
        fail(
            "CreateContainerError",
            format!("writing {SECCOMP_FILE}: {e}"),
        )
    })?;
    if let Some(linux) = value["linux"].as_object_mut() {
        linux.remove("seccomp");
    }
    Ok(executor)
}

/// After a failed setup: libcontainer's delete of what it created, then
/// what the supervisor removes after a container's end.
fn cleanup(spec: &ShimSpec, layout: &Layout, rootfs: &Path, cg: &Cgroups) {
    let youki = layout.youki_root().join(&spec.config.id);
    if let Ok(mut c) = libcontainer::container::Container::load(youki) {
        let _ = c.delete(true);
    }
    crate::supervise::cleanup(layout, &spec.config.id, rootfs, cg, &spec.cgroup_path);
}

/// `berth-shim exec DIR TIMEOUT_MS -- ARGV`: prints an ExecResult JSON.
/// What `berth-shim exec` prints instead of an [`ExecResult`] when it
/// started no process (a refusal such as [`exec_seccomp::Refused`], or a
/// setup failure): the runtime reports it as an exec error, not as the
/// command's exit.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ExecNotStarted {
    pub not_started: String,
}

/// `berth-shim exec DIR TIMEOUT_MS -- ARGV`: prints an ExecResult JSON, or
/// an [`ExecNotStarted`] one.
pub fn exec_main(dir: &Path, timeout: Duration, argv: Vec<String>) -> i32 {
    let out = match exec(dir, timeout, argv) {
        Ok(result) => serde_json::to_string(&result),
        Err(m) => serde_json::to_string(&ExecNotStarted { not_started: m }),
    };
    println!("{}", out.unwrap_or_default());
    0
}

fn exec(dir: &Path, timeout: Duration, argv: Vec<String>) -> Result<ExecResult, String> {
    // the container's id and run dir; from the dir's own place
    // (`<run>/containers/<id>`) when its spec.json is damaged, so probes of
    // a running container go on
    let (id, layout) = match read_json::<ShimSpec<ContainerId>>(&dir.join("spec.json")) {
        Some(spec) => (
            spec.config.id,
            Layout {
                run_dir: spec.run_dir,
                state_dir: spec.state_dir,
            },
        ),
        None => {
            let id = dir.file_name().map(|n| n.to_string_lossy().into_owned());
            let run_dir = dir.parent().and_then(Path::parent);
            let (Some(id), Some(run_dir)) = (id, run_dir) else {
                return Err("cannot read spec.json".into());
            };
            (
                id,
                Layout {
                    run_dir: run_dir.to_path_buf(),
                    state_dir: PathBuf::new(),
                },
            )
        }
    };
    // the container's own process (user, groups, caps, env, cwd, rlimits,
    // no_new_privs) with the exec's argv: without it, libcontainer's tenant
    // builder runs as uid 0 with default settings
    let bundle = fs::read(dir.join("bundle/config.json"))
        .map_err(|e| format!("reading the bundle config: {e}"))?;
    let bundle: serde_json::Value =
        serde_json::from_slice(&bundle).map_err(|e| format!("bundle config: {e}"))?;
    let mut process = bundle["process"].clone();
    process["args"] = serde_json::json!(argv);
    process["terminal"] = false.into();
    // the container's filter, or no process (see `exec_seccomp`)
    let executor =
        exec_seccomp::executor(dir, &layout, &bundle, &mut process).map_err(|e| err_chain(&e))?;
    let process_file = dir.join(format!("exec-{}.json", std::process::id()));
    write_json(&process_file, &process)
        .map_err(|e| format!("writing {}: {e}", process_file.display()))?;
    let (mut r, w) = std::io::pipe().map_err(|e| e.to_string())?;
    let w2 = w.try_clone().map_err(|e| e.to_string())?;
    let built = ContainerBuilder::new(id, SyscallType::default())
        .with_executor(executor)
        .with_root_path(layout.youki_root())
        .map_err(|e| err_chain(&e))?
        .with_stdout(w)
        .with_stderr(w2)
        .as_tenant()
        .with_process(Some(&process_file))
        .with_detach(true)
        .build()
        .map(|p| Pid::from_raw(p.as_raw()))
        .map_err(|e| err_chain(&e));
    let _ = fs::remove_file(&process_file);
    let pid = built?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut r).take(64 * 1024).read_to_end(&mut buf);
        buf
    });
    let t0 = Instant::now();
    let (code, timed_out) = loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => break (c, false),
            Ok(WaitStatus::Signaled(_, s, _)) => break (128 + s as i32, false),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break (255, false),
        }
        if t0.elapsed() > timeout {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            break (137, true);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = if timed_out {
        Vec::new()
    } else {
        reader.join().unwrap_or_default()
    };
    let mut output = String::from_utf8_lossy(&out).into_owned();
    output.truncate(4096);
    Ok(ExecResult {
        exit_code: code,
        output,
        timed_out,
    })
}

pub fn dir_arg(s: &str) -> PathBuf {
    PathBuf::from(s)
}

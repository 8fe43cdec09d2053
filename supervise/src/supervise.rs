//! The resident half of the shim: what stays in memory next to every running
//! container, so it is kept small (this crate depends on nix and serde_json
//! only: no libcontainer, tokio, tracing or date library).
//!
//! `berth-supervise DIR PID OUT_FD ERR_FD STARTED_NS OOM_BEFORE` (also
//! `berth-shim supervise ...`): `berth-shim serve` has created and started
//! the container (its init PID is this process's child) and execs this with
//! the read ends of the container's stdout/stderr pipes. One thread, one
//! poll(2) loop over
//!
//! * the two pipes, copied into the CRI log ([`crate::logs`]);
//! * a signalfd for SIGCHLD: the process is a child subreaper and reaps
//!   everything, the init last recorded as (exit code, signal, OOM);
//! * the control socket `shim.sock` and its clients ([`crate::control`]):
//!   status, wait and stop (SIGTERM, then SIGKILL to the cgroup every 500 ms
//!   once the grace period is over).
//!
//! Signals go to the init only while it has not been reaped, and reaping
//! happens on the same thread, so a signal never reaches a process that
//! reused the pid. The supervisor runs in the pod's cgroup, in the leaf
//! `supervisor` beside the containers (see [`crate::cgroups::SUPERVISOR_LEAF`]),
//! unless its container has ended before it got there (then it only cleans up).
//! When the init has ended and both pipes are at EOF, the
//! supervisor removes what the container left (cgroup, rootfs mounts,
//! libcontainer's state dir), writes `status.json` atomically, answers the
//! waiters, removes the socket and exits 0.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::mount::{MntFlags, umount2};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::cgroups::Cgroups;
use crate::control::{MAX_SOCK_PATH, Reply, Request};
use crate::layout::{ContainerId, Exit, Layout, ShimSpec, ns_of, read_json, time_of, write_json};
use crate::logs::{LogWriter, Splitter};

/// Control connections served at once; more wait in the listen backlog.
const MAX_CLIENTS: usize = 64;
/// Longest request line.
const MAX_REQUEST: usize = 4096;
/// Between two rounds of SIGKILL once a stop's grace period is over.
const KILL_INTERVAL: Duration = Duration::from_millis(500);
/// Wake-up interval when no signalfd could be made, or the init is not our child.
const FALLBACK_TICK: Duration = Duration::from_millis(100);

/// Parse the arguments, take the inherited pipes and supervise; the exit code.
pub fn main(args: &[String]) -> i32 {
    let parse = |i: usize| args.get(i).and_then(|s| s.parse::<i64>().ok());
    let (Some(dir), Some(pid), Some(out_fd), Some(err_fd), Some(started), Some(oom_before)) = (
        args.first(),
        parse(1),
        parse(2),
        parse(3),
        args.get(4).and_then(|s| s.parse::<u128>().ok()),
        parse(5),
    ) else {
        eprintln!("berth-supervise: bad arguments {args:?}");
        return 64;
    };
    let (out, err) = match (
        crate::fd::take_inherited(out_fd as i32),
        crate::fd::take_inherited(err_fd as i32),
    ) {
        (Ok(o), Ok(e)) => (o, e),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("berth-supervise: inherited pipes: {e}");
            return 65;
        }
    };
    run(
        Path::new(dir),
        Pid::from_raw(pid as i32),
        time_of(started),
        out,
        err,
        oom_before as u64,
    )
}

/// Supervise the running container whose init is `pid` (a child of this
/// process) until it has ended and been cleaned up; the exit code.
pub fn run(
    dir: &Path,
    pid: Pid,
    started_at: SystemTime,
    out: OwnedFd,
    err: OwnedFd,
    oom_before: u64,
) -> i32 {
    let Some(spec) = read_json::<ShimSpec<ContainerId>>(&dir.join("spec.json")) else {
        eprintln!("berth-supervise: cannot read {}/spec.json", dir.display());
        return 2;
    };
    let _ = nix::sys::prctl::set_child_subreaper(true);
    // whatever this process creates (socket, logs, status) is root-only from
    // the start; it creates nothing the container sees
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let cg = Cgroups::detect(Path::new("/sys/fs/cgroup"));
    let log = match LogWriter::open(&spec.log_path, spec.log_max_bytes, spec.log_max_files) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "berth-supervise: opening log {}: {e}",
                spec.log_path.display()
            );
            return 3;
        }
    };
    // SIGCHLD through a signalfd: blocked first, so none is lost; exits
    // from before that are found by the first reap
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    let sigfd = mask
        .thread_block()
        .and_then(|_| SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC))
        .map_err(|e| eprintln!("berth-supervise: signalfd: {e} (polling for the exit instead)"))
        .ok();
    let sock = dir.join("shim.sock");
    let listener = if sock.as_os_str().len() <= MAX_SOCK_PATH {
        let _ = fs::remove_file(&sock);
        // a socket takes its mode from the umask: 0600 from the start
        let umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(&sock);
        nix::sys::stat::umask(umask);
        let bound = bound.and_then(|l| {
            // only root may connect (the container dir is 0700 as well)
            fs::set_permissions(&sock, fs::Permissions::from_mode(0o600))?;
            l.set_nonblocking(true).map(|_| l)
        });
        match bound {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!(
                    "berth-supervise: control socket: {e} (the agent falls back to files and signals)"
                );
                None
            }
        }
    } else {
        None
    };
    let mut s = Supervisor {
        pid,
        cg,
        cgroup: spec.cgroup_path.clone(),
        oom_before,
        ended: None,
        foreign: false,
        exit: None,
        log,
        pipes: [Pipe::new(out, "stdout"), Pipe::new(err, "stderr")],
        clients: Vec::new(),
    };
    s.reap();
    // a container that has ended already (a short command) is only cleaned
    // up: joining the pod's cgroup would cost a cgroup migration (on v1 an
    // RCU grace period, 5 to 20 ms on the test host) before the exit is told
    if s.ended.is_none() {
        join_pod_cgroup(&s.cg, &spec.cgroup_path);
    }
    // start-up is over: its code pages need not stay resident
    crate::resident::drop_startup_pages();
    s.serve(sigfd.as_ref(), listener.as_ref(), None);
    let (exit_code, signal, oom_killed) = s.ended.unwrap_or((255, None, false));
    let exit = Exit {
        exit_code,
        signal,
        oom_killed,
        started_at_ns: Some(ns_of(started_at)),
        finished_at_ns: ns_of(SystemTime::now()),
    };
    let layout = Layout {
        run_dir: spec.run_dir.clone(),
        state_dir: spec.state_dir.clone(),
    };
    cleanup(
        &layout,
        &spec.config.id,
        &dir.join("rootfs"),
        &s.cg,
        &spec.cgroup_path,
    );
    if let Err(e) = write_json(&dir.join("status.json"), &exit) {
        eprintln!("berth-supervise: writing status: {e}");
    }
    s.exit = Some(exit);
    // answer the waiters, and for a moment whoever else asks
    s.serve(
        None,
        listener.as_ref(),
        Some(Instant::now() + Duration::from_millis(50)),
    );
    if listener.is_some() {
        let _ = fs::remove_file(&sock);
    }
    0
}

/// Move this process into the pod's supervisor cgroup (beside the pod's
/// containers, below the pod's limits), so that copying the container's
/// output is paid for by the pod and not by the host. The OOM killer takes
/// the container's processes before the supervisor, which is small and
/// records how they ended.
fn join_pod_cgroup(cg: &Cgroups, container_cgroup: &str) {
    let _ = fs::write("/proc/self/oom_score_adj", "-998");
    let Some(pod) = Cgroups::pod_of(container_cgroup) else {
        return;
    };
    if let Err(e) = cg.join_supervisor_leaf(pod, std::process::id()) {
        eprintln!("berth-supervise: staying outside the pod cgroup: {e}");
    }
}

/// What a container leaves behind once its init has ended: processes still
/// in its cgroup and the cgroup, libcontainer's state dir, the rootfs mounts.
pub fn cleanup(layout: &Layout, id: &str, rootfs: &Path, cg: &Cgroups, cgroup: &str) {
    cg.kill_and_remove(cgroup);
    let youki = layout.youki_root().join(id);
    if youki.exists() {
        let _ = fs::remove_dir_all(&youki);
    }
    crate::mounts::unmount_below(rootfs);
    let _ = umount2(rootfs, MntFlags::MNT_DETACH);
}

/// One of the container's output pipes.
struct Pipe {
    file: Option<File>,
    split: Splitter,
}

impl Pipe {
    fn new(fd: OwnedFd, stream: &'static str) -> Self {
        // poll says when to read; never block on it
        let _ = fcntl(&fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
        Self {
            file: Some(File::from(fd)),
            split: Splitter::new(stream),
        }
    }

    /// Read what is there; at EOF (or an error) write the last partial line and close.
    fn read(&mut self, buf: &mut [u8], log: &mut LogWriter) {
        let Some(f) = &mut self.file else { return };
        loop {
            match f.read(buf) {
                Ok(0) => break,
                Ok(n) => return self.split.feed(&buf[..n], log),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => break,
            }
        }
        self.split.finish(log);
        self.file = None;
    }
}

/// A control connection.
struct Client {
    conn: UnixStream,
    buf: Vec<u8>,
    state: Waiting,
    /// The peer has shut down its side: poll only for the hang-up.
    eof: bool,
}

enum Waiting {
    /// Reading the request line.
    Request,
    /// Answered with the exit once the container has ended.
    Exit,
    /// A stop: SIGKILL to the cgroup at this instant (and every
    /// [`KILL_INTERVAL`] after it) until the container has ended.
    Stop(Instant),
}

struct Supervisor {
    pid: Pid,
    cg: Cgroups,
    cgroup: String,
    oom_before: u64,
    /// (exit code, signal, OOM killed) once the init is reaped.
    ended: Option<(i32, Option<i32>, bool)>,
    /// The init turned out not to be our child: watched with kill(pid, 0).
    foreign: bool,
    /// The final record, once written to `status.json`.
    exit: Option<Exit>,
    log: LogWriter,
    pipes: [Pipe; 2],
    clients: Vec<Client>,
}

impl Supervisor {
    /// The poll loop: until the init has ended and both pipes are closed, or
    /// (pipes and SIGCHLD no longer watched) until `until`, or earlier when
    /// nothing more happens for a few milliseconds.
    fn serve(
        &mut self,
        sigfd: Option<&SignalFd>,
        listener: Option<&UnixListener>,
        until: Option<Instant>,
    ) {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            self.tick();
            let now = Instant::now();
            if until.is_none_or(|u| now >= u) && self.done() {
                return;
            }
            let mut timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(now));
            if until.is_none() && (sigfd.is_none() || self.foreign) {
                timeout = Some(timeout.map_or(FALLBACK_TICK, |t| t.min(FALLBACK_TICK)));
            }
            if until.is_some() {
                timeout = Some(Duration::from_millis(5));
            }
            let accepting = self.clients.len() < MAX_CLIENTS;
            let ready = {
                let mut fds: Vec<PollFd> = Vec::with_capacity(4 + self.clients.len());
                let watching_children = until.is_none();
                let sig = watching_children.then_some(sigfd).flatten();
                if let Some(f) = sig {
                    fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                }
                for p in &self.pipes {
                    if let Some(f) = p.file.as_ref().filter(|_| watching_children) {
                        fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                    }
                }
                if let Some(l) = listener.filter(|_| accepting) {
                    fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
                }
                for c in &self.clients {
                    let ev = if c.eof {
                        PollFlags::empty()
                    } else {
                        PollFlags::POLLIN
                    };
                    fds.push(PollFd::new(c.conn.as_fd(), ev));
                }
                let t = timeout.map_or(PollTimeout::NONE, |t| {
                    // round up: a deadline 0.4 ms away is not "now"
                    PollTimeout::try_from(t + Duration::from_micros(999))
                        .unwrap_or(PollTimeout::MAX)
                });
                match poll(&mut fds, t) {
                    Ok(n) => {
                        let ready: Vec<bool> = fds
                            .iter()
                            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                            .collect();
                        (n, ready)
                    }
                    Err(Errno::EINTR) => continue,
                    Err(e) => {
                        eprintln!("berth-supervise: poll: {e}");
                        std::thread::sleep(FALLBACK_TICK);
                        continue;
                    }
                }
            };
            let (n, ready) = ready;
            if n == 0 && until.is_some() {
                return; // nobody else is asking
            }
            let mut ready = ready.into_iter();
            if until.is_none() {
                if let Some(f) = sigfd {
                    if ready.next() == Some(true) {
                        while let Ok(Some(_)) = f.read_signal() {}
                        self.reap();
                    }
                } else {
                    self.reap();
                }
                if self.foreign && self.ended.is_none() && kill(self.pid, None).is_err() {
                    self.ended = Some((255, None, false));
                }
                for i in 0..2 {
                    if self.pipes[i].file.is_some() && ready.next() == Some(true) {
                        self.pipes[i].read(&mut buf, &mut self.log);
                    }
                }
            }
            let accept = listener.is_some() && accepting && ready.next() == Some(true);
            let client_ready: Vec<bool> = ready.collect();
            // clients first (their indices are the poll's), then new connections
            for i in (0..client_ready.len()).rev() {
                if client_ready[i] && !self.on_client(i) {
                    self.clients.swap_remove(i);
                }
            }
            if let (true, Some(l)) = (accept, listener) {
                self.accept(l);
            }
        }
    }

    /// The container has ended and its output is all in the log.
    fn done(&self) -> bool {
        self.exit.is_some() || (self.ended.is_some() && self.pipes.iter().all(|p| p.file.is_none()))
    }

    fn next_deadline(&self) -> Option<Instant> {
        if self.exit.is_some() {
            return None;
        }
        self.clients
            .iter()
            .filter_map(|c| match c.state {
                Waiting::Stop(at) => Some(at),
                _ => None,
            })
            .min()
    }

    /// Collect every child that has ended; the init's end is recorded.
    fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p == self.pid => self.init_ended(code, None),
                Ok(WaitStatus::Signaled(p, sig, _)) if p == self.pid => {
                    self.init_ended(128 + sig as i32, Some(sig as i32))
                }
                Ok(WaitStatus::StillAlive) => return,
                Ok(_) => {} // an orphan of the container, reaped
                Err(Errno::EINTR) => {}
                Err(Errno::ECHILD) => {
                    // not our child (should not happen: libcontainer starts
                    // it with CLONE_PARENT): watch it instead
                    if self.ended.is_none() {
                        self.foreign = true;
                    }
                    return;
                }
                Err(_) => return,
            }
        }
    }

    /// Kubernetes reports a signal death as 128 + signal.
    fn init_ended(&mut self, code: i32, signal: Option<i32>) {
        let kills = self.cg.oom_kills(&self.cgroup);
        let oom = kills > self.oom_before || (signal == Some(9) && kills > 0);
        self.ended = Some((code, signal, oom));
    }

    /// Signal the init, unless it has been reaped (its pid may be reused then).
    fn signal_init(&self, sig: Signal) {
        if self.ended.is_none() {
            let _ = kill(self.pid, sig);
        }
    }

    fn accept(&mut self, listener: &UnixListener) {
        while self.clients.len() < MAX_CLIENTS {
            match listener.accept() {
                Ok((conn, _)) => {
                    if conn.set_nonblocking(true).is_ok() {
                        self.clients.push(Client {
                            conn,
                            buf: Vec::new(),
                            state: Waiting::Request,
                            eof: false,
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return, // WouldBlock: no more for now
            }
        }
    }

    /// Something happened on client `i`; false to drop it.
    fn on_client(&mut self, i: usize) -> bool {
        let c = &mut self.clients[i];
        if c.eof {
            return false; // it hung up while waiting
        }
        let mut chunk = [0u8; 512];
        loop {
            match (&c.conn).read(&mut chunk) {
                Ok(0) => {
                    c.eof = true;
                    break;
                }
                // once a request is read, more input is ignored
                Ok(n) if matches!(c.state, Waiting::Request) => {
                    c.buf.extend_from_slice(&chunk[..n]);
                    if c.buf.contains(&b'\n') || c.buf.len() > MAX_REQUEST {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return false,
            }
        }
        if !matches!(c.state, Waiting::Request) {
            return true;
        }
        let line = match c.buf.iter().position(|b| *b == b'\n') {
            Some(n) => &c.buf[..n],
            None if c.buf.len() > MAX_REQUEST => {
                let reply = Reply {
                    error: Some(format!("bad request: longer than {MAX_REQUEST} bytes")),
                    ..Default::default()
                };
                send(&c.conn, &reply);
                return false;
            }
            None if c.eof && !c.buf.is_empty() => &c.buf[..],
            None => return !c.eof,
        };
        let request = serde_json::from_slice::<Request>(line);
        c.buf = Vec::new();
        self.request(i, request)
    }

    /// Act on client `i`'s request: answer it now (false: done with it) or park it.
    fn request(&mut self, i: usize, request: Result<Request, serde_json::Error>) -> bool {
        let reply = match (request, &self.exit) {
            (Ok(_), Some(e)) => Reply {
                exit: Some(e.clone()),
                ..Default::default()
            },
            (Ok(Request::Status), None) => Reply {
                running: true,
                pid: Some(self.pid.as_raw()),
                ..Default::default()
            },
            (Ok(Request::Wait), None) => {
                self.clients[i].state = Waiting::Exit;
                return true;
            }
            (Ok(Request::Stop { grace_ms }), None) => {
                self.signal_init(Signal::SIGTERM);
                let at = Instant::now() + Duration::from_millis(grace_ms);
                self.clients[i].state = Waiting::Stop(at);
                return true;
            }
            (Err(e), _) => Reply {
                error: Some(format!("bad request: {e}")),
                ..Default::default()
            },
        };
        send(&self.clients[i].conn, &reply);
        false
    }

    /// Stops whose grace period is over; once the exit is known, the
    /// answers to everyone parked.
    fn tick(&mut self) {
        if let Some(e) = &self.exit {
            let reply = Reply {
                exit: Some(e.clone()),
                ..Default::default()
            };
            self.clients.retain(|c| {
                let parked = !matches!(c.state, Waiting::Request);
                if parked {
                    send(&c.conn, &reply);
                }
                !parked
            });
            return;
        }
        let now = Instant::now();
        let mut kill_now = false;
        for c in &mut self.clients {
            if let Waiting::Stop(at) = c.state
                && at <= now
            {
                kill_now = true;
                c.state = Waiting::Stop(now + KILL_INTERVAL);
            }
        }
        if kill_now {
            self.cg.kill_all(&self.cgroup);
            self.signal_init(Signal::SIGKILL);
        }
    }
}

/// One reply line; a client that does not take it is dropped anyway.
fn send(conn: &UnixStream, reply: &Reply) {
    if let Ok(mut line) = serde_json::to_vec(reply) {
        line.push(b'\n');
        let _ = (&*conn).write_all(&line);
    }
}

/// `berth-supervise`, found next to the running executable.
pub fn binary_path() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join("berth-supervise");
    p.is_file().then_some(p)
}

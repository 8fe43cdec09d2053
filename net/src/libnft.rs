//! nft batches applied in-process through libnftables (the library the `nft`
//! binary is a front end of), with one context kept for the agent's life.
//!
//! Why: a `nft -j -f -` process per apply cost 10–16 ms on the test host
//! (measured: p50 16 ms with one core busy, against 0.04 ms for the same
//! batch through a kept context). Most of it is not the kernel's work: the
//! process start, libnftables' set-up (it reads iproute2's tables), and the
//! close of its netlink socket after a commit, which waited 9–45 ms in strace.
//! Every Service, endpoint and hostPort change is one apply, so the cost sat
//! on the path from a pod running to its first request through a Service.
//!
//! The library is opened with `dlopen` (Debian's `libnftables1`, which the
//! `nftables` package depends on), so building berth needs no `-dev` package
//! and a host without the library falls back to the `nft` binary. The batch
//! is the same JSON, parsed by the same code, as `nft -j -f -`; errors are
//! the same messages (the context buffers them instead of printing them).
//!
//! libnftables keeps process-wide state besides its context (a generation id,
//! its parser's input descriptors, GMP's allocator hooks, libxtables'
//! globals), so berth makes exactly one context and every call into the
//! library runs under one mutex, on a blocking thread (see [`run`]).
//!
//! The context's netlink socket is made early ([`prepare`], at agent start):
//! in the host's network namespace, at a low descriptor (libnftables waits on
//! it with `select`, which cannot take descriptors from 1024 up, and the agent
//! raises its open-file limit far beyond that), and it is marked
//! close-on-exec (libmnl opens it without), so no shim, supervisor or git
//! process inherits a netfilter socket. libnftables calls `exit` when it
//! cannot open that socket, so berth first opens one itself and keeps to the
//! binary when that fails. What stays accepted: a bug in libnftables (an
//! assertion, an allocation failure) now ends the agent rather than an `nft`
//! process; the agent is restarted by its service manager and adopts its
//! pods.

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::sync::{Mutex, OnceLock};

/// `NFT_CTX_DEFAULT` for `nft_ctx_new`.
const NFT_CTX_DEFAULT: c_uint = 0;
/// `NFT_CTX_OUTPUT_JSON`: with it, `nft_run_cmd_from_buffer` parses a JSON
/// batch (and falls back to nft's text syntax when the buffer is not JSON),
/// as `nft -j` does.
const NFT_CTX_OUTPUT_JSON: c_uint = 1 << 4;

type CtxNew = unsafe extern "C" fn(c_uint) -> *mut c_void;
type SetFlags = unsafe extern "C" fn(*mut c_void, c_uint);
type Buffer = unsafe extern "C" fn(*mut c_void) -> c_int;
type GetBuffer = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

struct Lib {
    ctx: *mut c_void,
    run: RunCmd,
    error_buffer: GetBuffer,
    output_buffer: GetBuffer,
}

// SAFETY: there is one `Lib` (and one context) per process, reached only
// through the mutex in `LIB`, so no two threads are ever inside libnftables
// at once; its process-wide state is therefore only touched serially, and it
// keeps no thread-local state that would tie the context to one thread.
unsafe impl Send for Lib {}

static LIB: OnceLock<Option<Mutex<Lib>>> = OnceLock::new();

/// The outcome of one batch: `Ok` or nft's error text.
pub(crate) type Outcome = Result<(), String>;

/// Load libnftables and make the one context now: at agent start, before the
/// open-file limit is raised and on the main thread (host network
/// namespace). True when batches will go through the library.
pub fn prepare() -> bool {
    LIB.get_or_init(open).is_some()
}

/// Run `cmd` (a JSON batch or one line of nft syntax) in the shared context;
/// `Err(cmd)` back when libnftables is not in use (the caller runs `nft`).
/// Blocking: call it from a blocking thread.
pub(crate) fn run(cmd: Vec<u8>) -> Result<Outcome, Vec<u8>> {
    let Some(lib) = LIB.get_or_init(open).as_ref() else {
        return Err(cmd);
    };
    let cmd = match CString::new(cmd) {
        Ok(c) => c,
        Err(_) => return Ok(Err("the batch contains a NUL byte".into())),
    };
    let lib = lib.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: `ctx` is a live context from nft_ctx_new (never freed), used
    // by this thread alone while the lock is held; `cmd` is NUL-terminated
    // and outlives the call, which does not keep it.
    let rc = unsafe { (lib.run)(lib.ctx, cmd.as_ptr()) };
    // both buffers are read after every call: reading one rewinds it, so
    // neither grows across calls (the output, e.g. of a `list`, is dropped)
    // SAFETY: the buffers were enabled in `load`; the pointers they return
    // are NUL-terminated strings owned by the context, valid until its next
    // call, and the error text is copied out before the lock is released.
    let err = unsafe {
        (lib.output_buffer)(lib.ctx);
        text((lib.error_buffer)(lib.ctx))
    };
    Ok(if rc == 0 { Ok(()) } else { Err(err) })
}

/// A C string from the context's buffers as owned text ("" for NULL).
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for the duration of the call.
unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: per the function's contract
    unsafe { CStr::from_ptr(p) }
        .to_string_lossy()
        .trim()
        .to_string()
}

/// Load the library and make the one context, or `None` (logged once).
fn open() -> Option<Mutex<Lib>> {
    match load() {
        Ok(lib) => Some(Mutex::new(lib)),
        Err(why) => {
            tracing::info!(%why, "libnftables not loaded; applying nft batches with the nft binary");
            None
        }
    }
}

fn load() -> Result<Lib, String> {
    // SAFETY: dlopen with a constant, NUL-terminated name; RTLD_LOCAL keeps
    // the library's symbols out of the global namespace. The handle is kept
    // for the process's life (never dlclose'd), so the function pointers
    // taken below stay valid.
    let handle = unsafe {
        libc::dlopen(
            c"libnftables.so.1".as_ptr(),
            libc::RTLD_NOW | libc::RTLD_LOCAL,
        )
    };
    if handle.is_null() {
        return Err(dl_error());
    }
    let sym = |name: &CStr| -> Result<*mut c_void, String> {
        // SAFETY: `handle` is a live handle from dlopen, `name` is NUL-terminated
        let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
        if p.is_null() {
            Err(format!(
                "libnftables.so.1 has no {}",
                name.to_string_lossy()
            ))
        } else {
            Ok(p)
        }
    };
    #[rustfmt::skip]
    // SAFETY: each transmute turns a symbol of libnftables' public API
    // (nftables/libnftables.h, stable since 0.9) into the C signature the
    // types above spell out; a function pointer and `*mut c_void` have the
    // same size on every platform berth builds for.
    let (ctx_new, output_flags, buffer_output, buffer_error, output_buffer, error_buffer, run) = unsafe {
        (
            std::mem::transmute::<*mut c_void, CtxNew>(sym(c"nft_ctx_new")?),
            std::mem::transmute::<*mut c_void, SetFlags>(sym(c"nft_ctx_output_set_flags")?),
            std::mem::transmute::<*mut c_void, Buffer>(sym(c"nft_ctx_buffer_output")?),
            std::mem::transmute::<*mut c_void, Buffer>(sym(c"nft_ctx_buffer_error")?),
            std::mem::transmute::<*mut c_void, GetBuffer>(sym(c"nft_ctx_get_output_buffer")?),
            std::mem::transmute::<*mut c_void, GetBuffer>(sym(c"nft_ctx_get_error_buffer")?),
            std::mem::transmute::<*mut c_void, RunCmd>(sym(c"nft_run_cmd_from_buffer")?),
        )
    };
    // libnftables exits the process when it cannot open its netlink socket:
    // find out first, with a socket of berth's own
    netfilter_socket_opens()?;
    // SAFETY: plain calls into the library just loaded; the context they set
    // up is owned by the returned `Lib` and used only under its mutex.
    let ctx = unsafe {
        let ctx = ctx_new(NFT_CTX_DEFAULT);
        if ctx.is_null() {
            return Err("nft_ctx_new failed".into());
        }
        output_flags(ctx, NFT_CTX_OUTPUT_JSON);
        if buffer_output(ctx) != 0 || buffer_error(ctx) != 0 {
            return Err("cannot buffer libnftables' output".into());
        }
        ctx
    };
    // the context's socket: close-on-exec, and low enough for select(2)
    for fd in netfilter_sockets() {
        if fd >= libc::FD_SETSIZE as i32 {
            return Err(format!(
                "its netlink socket is descriptor {fd}, beyond what select(2) takes"
            ));
        }
        // SAFETY: F_SETFD only sets the close-on-exec flag of `fd`, an open
        // descriptor of this process (the context's socket, never closed)
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            return Err(format!(
                "marking its netlink socket close-on-exec: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(Lib {
        ctx,
        run,
        error_buffer,
        output_buffer,
    })
}

/// Whether this process may open a NETLINK_NETFILTER socket.
fn netfilter_socket_opens() -> Result<(), String> {
    // SAFETY: socket(2) with constant arguments; the descriptor it returns
    // is owned at once and closed on drop
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(format!(
            "cannot open a netfilter netlink socket: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else
    drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    Ok(())
}

/// This process's NETLINK_NETFILTER sockets without close-on-exec (the
/// context's: every other one berth opens has the flag).
fn netfilter_sockets() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let netfilter = int_sockopt(fd, libc::SO_DOMAIN) == Some(libc::AF_NETLINK)
            && int_sockopt(fd, libc::SO_PROTOCOL) == Some(libc::NETLINK_NETFILTER);
        // SAFETY: F_GETFD reads a descriptor's flags; a descriptor closed
        // meanwhile by another thread makes it fail, which skips it
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if netfilter && flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
            out.push(fd);
        }
    }
    out
}

/// An integer SOL_SOCKET option of `fd`, `None` when it is not a socket.
fn int_sockopt(fd: i32, name: c_int) -> Option<c_int> {
    let mut v: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `v`, a live c_int,
    // and the length back into `len`; on a descriptor that is not a socket
    // (or is closed meanwhile) it fails and writes nothing
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&raw mut v).cast(),
            &raw mut len,
        )
    };
    (rc == 0).then_some(v)
}

fn dl_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated message owned by libc,
    // valid until the next dl* call on this thread; it is copied at once.
    unsafe { text(libc::dlerror()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded() -> bool {
        let ok = prepare();
        assert!(
            ok || std::env::var_os("BERTH_E2E_REQUIRED").is_none(),
            "libnftables.so.1 could not be loaded"
        );
        ok
    }

    /// A batch into a table that does not exist fails with nft's own message
    /// (as root "No such file or directory", otherwise "Operation not
    /// permitted"), and the context stays usable for the next batch.
    #[test]
    fn a_rejected_batch_reports_nfts_message_and_the_context_goes_on() {
        if !loaded() {
            return;
        }
        let batch = br#"{"nftables":[{"add":{"rule":{"family":"inet","table":"btlibnft-none","chain":"c","expr":[{"accept":null}]}}}]}"#;
        for _ in 0..2 {
            match run(batch.to_vec()) {
                Err(_) => panic!("the library was loaded"),
                Ok(Ok(())) => panic!("a rule into a missing table was accepted"),
                Ok(Err(msg)) => assert!(
                    msg.contains("No such file or directory")
                        || msg.contains("Operation not permitted"),
                    "unexpected message: {msg:?}"
                ),
            }
        }
        // not JSON: parsed as nft syntax, and a syntax error says so
        let Ok(Err(msg)) = run(b"frobnicate table inet x".to_vec()) else {
            panic!("a syntax error was accepted")
        };
        assert!(msg.contains("syntax error"), "unexpected message: {msg:?}");
        assert!(matches!(run(b"foo\0bar".to_vec()), Ok(Err(m)) if m.contains("NUL")));
    }

    /// The context's netlink socket is close-on-exec and below 1024, so no
    /// child inherits it and libnftables' select(2) can wait on it.
    #[test]
    fn the_contexts_socket_is_close_on_exec_and_low() {
        if !loaded() {
            return;
        }
        assert!(
            netfilter_sockets().is_empty(),
            "a netfilter socket is inherited by children"
        );
        let ours: Vec<i32> = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|&fd| {
                int_sockopt(fd, libc::SO_DOMAIN) == Some(libc::AF_NETLINK)
                    && int_sockopt(fd, libc::SO_PROTOCOL) == Some(libc::NETLINK_NETFILTER)
            })
            .collect();
        assert!(!ours.is_empty(), "the context has no netfilter socket");
        assert!(
            ours.iter().all(|&fd| fd < libc::FD_SETSIZE as i32),
            "{ours:?}"
        );
        // a child sees none of them
        let out = std::process::Command::new("ls")
            .arg("-l")
            .arg("/proc/self/fd")
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&out.stdout);
        for fd in ours {
            assert!(
                !listing
                    .lines()
                    .any(|l| l.contains(&format!(" {fd} -> socket:"))),
                "fd {fd} leaked into a child: {listing}"
            );
        }
    }
}

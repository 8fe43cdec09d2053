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
//! The context is not thread-safe: one mutex serialises every call, each of
//! which runs on a blocking thread (see [`run`]).

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

// SAFETY: the context is only ever used under the mutex around `Lib`, so no
// two threads touch it at once; libnftables keeps no thread-local state.
unsafe impl Send for Lib {}

static LIB: OnceLock<Option<Mutex<Lib>>> = OnceLock::new();

/// The outcome of one batch: `Ok` or nft's error text.
pub(crate) type Outcome = Result<(), String>;

/// Run `cmd` (a JSON batch or one line of nft syntax) in the shared context;
/// `None` when libnftables cannot be loaded (the caller runs `nft` instead).
/// Blocking: call it from a blocking thread.
pub(crate) fn run(cmd: &[u8]) -> Option<Outcome> {
    let lib = LIB.get_or_init(open).as_ref()?;
    let Ok(cmd) = CString::new(cmd) else {
        return Some(Err("the batch contains a NUL byte".into()));
    };
    let lib = lib.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: `ctx` is a live context from nft_ctx_new (never freed), used
    // by this thread alone while the lock is held; `cmd` is NUL-terminated
    // and outlives the call, which does not keep it.
    let rc = unsafe { (lib.run)(lib.ctx, cmd.as_ptr()) };
    // both buffers are read after every call: reading one rewinds it, so
    // neither grows across calls
    // SAFETY: the buffers were enabled in `open`; the pointers they return
    // are NUL-terminated strings owned by the context, valid until its next
    // call, and copied out before the lock is released.
    let (err, _out) = unsafe {
        (
            text((lib.error_buffer)(lib.ctx)),
            text((lib.output_buffer)(lib.ctx)),
        )
    };
    Some(if rc == 0 { Ok(()) } else { Err(err) })
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
    // SAFETY: plain calls into the library just loaded; the context they set
    // up is owned by the returned `Lib` and used only under its mutex.
    unsafe {
        let ctx = ctx_new(NFT_CTX_DEFAULT);
        if ctx.is_null() {
            return Err("nft_ctx_new failed".into());
        }
        output_flags(ctx, NFT_CTX_OUTPUT_JSON);
        if buffer_output(ctx) != 0 || buffer_error(ctx) != 0 {
            return Err("cannot buffer libnftables' output".into());
        }
        Ok(Lib {
            ctx,
            run,
            error_buffer,
            output_buffer,
        })
    }
}

fn dl_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated message owned by libc,
    // valid until the next dl* call on this thread; it is copied at once.
    unsafe { text(libc::dlerror()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch into a table that does not exist fails with nft's own message
    /// (as root "No such file or directory", otherwise "Operation not
    /// permitted"), and the context stays usable for the next batch.
    #[test]
    fn a_rejected_batch_reports_nfts_message_and_the_context_goes_on() {
        let batch = br#"{"nftables":[{"add":{"rule":{"family":"inet","table":"btlibnft-none","chain":"c","expr":[{"accept":null}]}}}]}"#;
        for _ in 0..2 {
            match run(batch) {
                None => {
                    assert!(
                        std::env::var_os("BERTH_E2E_REQUIRED").is_none(),
                        "libnftables.so.1 could not be loaded"
                    );
                    return;
                }
                Some(Ok(())) => panic!("a rule into a missing table was accepted"),
                Some(Err(msg)) => assert!(
                    msg.contains("No such file or directory")
                        || msg.contains("Operation not permitted"),
                    "unexpected message: {msg:?}"
                ),
            }
        }
        // not JSON: parsed as nft syntax, and a syntax error says so
        let Some(Err(msg)) = run(b"frobnicate table inet x") else {
            panic!("a syntax error was accepted")
        };
        assert!(msg.contains("syntax error"), "unexpected message: {msg:?}");
        assert!(matches!(run(b"foo\0bar"), Some(Err(m)) if m.contains("NUL")));
    }
}

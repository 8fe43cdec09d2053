//! File descriptors handed from one program image to the next across `exec`.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};

/// Take ownership of `fd`, inherited from this process's previous image
/// (`berth-shim serve` exec'ing the supervisor with the container's
/// stdout/stderr pipe readers). Fails unless `fd` is open. Marks it close-on-exec again.
///
/// Must be called at most once per fd, before anything else in the process
/// could open or close descriptors by number (it is called first thing in
/// [`crate::supervise::main`]).
pub fn take_inherited(fd: RawFd) -> std::io::Result<OwnedFd> {
    if fd < 3 {
        return Err(std::io::Error::other(format!(
            "fd {fd} is stdio, not an inherited pipe"
        )));
    }
    // SAFETY: F_GETFD on an arbitrary number only queries the descriptor
    // table; EBADF if it is not open. The borrow does not outlive the call.
    let open = unsafe { fcntl(std::os::fd::BorrowedFd::borrow_raw(fd), FcntlArg::F_GETFD) };
    open.map_err(std::io::Error::from)?;
    // SAFETY: `fd` is open (checked above), was left open across exec for this
    // process on purpose, and nothing else in this process owns it: the
    // previous image gave it up by exec'ing, and callers take each number once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(std::io::Error::from)?;
    Ok(owned)
}

/// Let `fd` survive the next exec of this process.
pub fn keep_across_exec(fd: &impl std::os::fd::AsFd) -> std::io::Result<()> {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))
        .map(|_| ())
        .map_err(std::io::Error::from)
}

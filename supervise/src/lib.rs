//! berth's per-container supervisor, the process that stays resident next to
//! every running container (see [`supervise`]), and what it shares with
//! `berth-runtime`: log timestamps ([`clock`]), the container dir's files ([`layout`]), CRI logs
//! ([`logs`]), the control socket's protocol ([`control`]), cgroup files
//! ([`cgroups`]), mount cleanup ([`mounts`]), fds handed across exec
//! ([`fd`]) and its resident set after start-up ([`resident`]).
//!
//! A crate of its own so that the `berth-supervise` binary links nothing it
//! does not use (no libcontainer, libseccomp, tokio or tracing): it is small
//! and can be linked statically on its own
//! (`cargo rustc --release -p berth-supervise --bin berth-supervise -- -C target-feature=+crt-static`).

pub mod cgroups;
pub mod clock;
pub mod control;
pub mod fd;
pub mod layout;
pub mod logs;
pub mod mounts;
pub mod resident;
pub mod supervise;

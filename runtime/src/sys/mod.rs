//! The few places berth-runtime needs `unsafe`, each a tiny safe function
//! with its justification (G6). Nothing here runs between fork and exec.
//! File descriptors handed across exec are shared with the supervisor.

pub use berth_supervise::fd;

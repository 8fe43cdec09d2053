//! berth's files on disk: one way to write them, one way to version them.
//!
//! Every file berth keeps across a process or version boundary (the pod
//! records, the shim's `spec.json`, IPAM and Service state, the applied Git
//! commit, image indexes) is written with [`write_atomic`]: a temp file
//! (mode 0600) in the same directory, fsync, rename over the target, fsync of
//! the directory. A crash leaves the old file or the new one, never a mix.
//!
//! Versioned files are JSON objects with a top-level `"version"` next to
//! their own fields ([`write_versioned`]). A file without `"version"` is a
//! version 1 file (that is what berth wrote before the envelope existed).
//! [`read_versioned`] hands the document to the format's decoder
//! ([`Versioned::decode`]), which migrates older versions. A file that cannot
//! be decoded (garbage, truncated, too large, a version this berth does not
//! know) is never taken for "empty": it is moved aside as
//! `<name>.quarantined-<unix seconds>-<nanos>` and reported as
//! [`Loaded::Quarantined`], so the caller recovers from what it can observe
//! and the evidence stays on disk. Every quarantine is also reported
//! ([`take_reports`]), so the agent shows it as an event and a condition.
//!
//! Not here: what the files mean, or when to write them.

mod atomic;
mod envelope;
mod report;

pub use atomic::{
    create_private_dir, ensure_private_dir, write_atomic, write_atomic_in, write_atomic_mode,
};
pub use envelope::{
    DecodeError, Loaded, Quarantine, StateError, Versioned, decode, encode_versioned, quarantine,
    read_versioned, write_versioned,
};
pub use report::{FileProblem, report, report_unreadable, take_reports};

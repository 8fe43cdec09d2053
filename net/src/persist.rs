//! berth-net's state files, through berth-state: versioned, written with the
//! one atomic writer (temp file, fsync, rename, fsync dir), and moved aside
//! (quarantined) when they cannot be read, never taken for empty.

use std::path::Path;

use berth_state::{Loaded, StateError, Versioned};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error(transparent)]
    State(#[from] StateError),
}

/// Write `value` (a JSON object) as format `version` of its file.
pub fn write<T: Serialize>(path: &Path, version: u32, value: &T) -> Result<(), PersistError> {
    Ok(berth_state::write_versioned(path, version, value)?)
}

/// Read a state file, migrating older versions. A file that cannot be
/// decoded (garbage, truncated, a newer version) comes back as
/// [`Loaded::Quarantined`], already moved aside.
pub fn read<T: Versioned>(path: &Path) -> Result<Loaded<T>, PersistError> {
    Ok(berth_state::read_versioned(path)?)
}

/// Warn about a quarantined file (the caller then recovers without it).
pub fn report(q: &berth_state::Quarantine) {
    tracing::error!(
        file = %q.path.display(),
        moved_to = %q.moved_to.display(),
        err = %berth_contract::error_chain(&q.cause),
        "state file unreadable; moved aside"
    );
}

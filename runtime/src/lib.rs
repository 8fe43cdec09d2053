//! berth runtime (issue 5).

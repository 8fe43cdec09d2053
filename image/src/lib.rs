//! berth images (issue 4).

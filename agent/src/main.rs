//! The `berth` binary (issue 3).
fn main() {}

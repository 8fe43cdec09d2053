//! The few places berth-runtime needs `unsafe`, each a tiny safe function
//! with its justification (G6). Nothing here runs between fork and exec.

pub mod fd;

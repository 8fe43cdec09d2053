//! berth images (issue 4): references, content store, registry pulls, air-gap archive import, safe layer unpack, GC.
pub mod content;
pub mod fsutil;
pub mod manifest;
pub mod reference;
pub mod unpack;

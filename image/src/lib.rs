//! berth images (issue 4): everything from an image reference to a set of
//! unpacked, read-only layer directories that `runtime/` stacks with overlayfs.
//!
//! - [`reference`]: Docker/containerd normalisation and validation.
//! - [`content`]: blobs by sha256, verified on commit and on read.
//! - [`index`]: reference -> image record (atomic, versioned JSON).
//! - [`unpack`]: safe layer extraction keyed by chain ID, OCI -> overlayfs whiteouts.
//! - [`layerstream`]: a layer blob read, hashed and decompressed on its own thread.
//! - [`pull`]: registry pulls (oci-client), mirrors, auth, plain HTTP for loopback/insecure.
//! - [`archive`]: `docker save` and OCI archive import, the air-gap import dir.
//! - [`gc`]: disk-usage-triggered garbage collection.
//! - [`store`]: [`ImageStore`], the `berth_contract::Images` implementation.
//!
//! Not here: mounting (runtime/ builds the overlay from `ImageInfo.layers`),
//! pushing images, credential helpers, signature verification.

pub mod archive;
pub mod auth;
pub mod content;
pub mod error;
pub mod fsutil;
pub mod gc;
pub mod index;
pub mod layerstream;
pub mod locks;
pub mod manifest;
pub mod pull;
pub mod reference;
pub mod store;
pub mod targuard;
pub mod unpack;

pub use archive::ImportReport;
pub use error::ImageError;
pub use reference::Reference;
pub use store::{ImageStore, ImageStoreConfig, StoreStats};

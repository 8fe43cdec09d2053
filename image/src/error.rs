//! The error `ImageStore` returns across the `Images` trait.

use std::path::PathBuf;

use berth_contract::{Classify, ErrorKind};

use crate::archive::ArchiveError;
use crate::auth::AuthError;
use crate::content::ContentError;
use crate::index::IndexError;
use crate::pull::PullError;
use crate::reference::ReferenceError;
use crate::unpack::UnpackError;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    InvalidReference(#[from] ReferenceError),
    #[error("image {reference} is not present and the pull policy is Never")]
    NeverPull { reference: String },
    #[error("pulling {reference}")]
    Pull {
        reference: String,
        #[source]
        source: Box<PullError>,
    },
    #[error("image {reference}: {what}")]
    Content {
        reference: String,
        what: &'static str,
        #[source]
        source: ContentError,
    },
    #[error("image {reference}: unpacking layer {chain_id}")]
    Unpack {
        reference: String,
        chain_id: String,
        #[source]
        source: UnpackError,
    },
    #[error("image {reference}: {what} {digest} is not valid")]
    BadDocument {
        reference: String,
        what: &'static str,
        digest: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("image {reference}: manifest {digest} is an index, expected an image manifest")]
    UnexpectedIndex { reference: String, digest: String },
    #[error(
        "image {reference}: manifest lists {layers} layers but the config lists {diff_ids} diff IDs"
    )]
    LayerCountMismatch {
        reference: String,
        layers: usize,
        diff_ids: usize,
    },
    #[error("image index")]
    Index(#[from] IndexError),
    #[error("importing image archive {path}")]
    Import {
        path: PathBuf,
        #[source]
        source: Box<ArchiveError>,
    },
    #[error("registry credentials")]
    Auth(#[from] AuthError),
    #[error("image store: {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image store: measuring disk usage of {path}")]
    DiskUsage {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("image store: background task failed")]
    Task(#[source] tokio::task::JoinError),
}

impl Classify for ImageError {
    fn kind(&self) -> ErrorKind {
        match self {
            ImageError::InvalidReference(_) => ErrorKind::Invalid,
            ImageError::NeverPull { .. } => ErrorKind::NotFound,
            ImageError::Pull { source, .. } => match source.as_ref() {
                PullError::NoPlatform { .. } | PullError::NestedIndex { .. } => ErrorKind::Invalid,
                _ => ErrorKind::Transient,
            },
            // a corrupt blob was removed; the next attempt fetches it again
            ImageError::Content { .. } => ErrorKind::Transient,
            ImageError::Unpack { source, .. } => match source {
                UnpackError::WhiteoutNotPermitted { .. }
                | UnpackError::OpaqueNotPermitted { .. } => ErrorKind::Unsupported,
                UnpackError::DigestMismatch { .. }
                | UnpackError::Io { .. }
                | UnpackError::Sys { .. } => ErrorKind::Transient,
                _ => ErrorKind::Invalid, // hostile or malformed layer
            },
            ImageError::BadDocument { .. }
            | ImageError::UnexpectedIndex { .. }
            | ImageError::LayerCountMismatch { .. }
            | ImageError::Import { .. }
            | ImageError::Auth(_) => ErrorKind::Invalid,
            ImageError::Index(_)
            | ImageError::Io { .. }
            | ImageError::DiskUsage { .. }
            | ImageError::Task(_) => ErrorKind::Internal,
        }
    }
}

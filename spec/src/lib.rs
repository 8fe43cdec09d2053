//! berth's resource model.
//!
//! The Kubernetes kinds (Pod, Deployment, Service, ConfigMap, Secret) are the
//! upstream types from `k8s-openapi`, so field names, JSON shapes and status
//! objects are exactly kube-apiserver's. berth adds one kind of its own,
//! [`Volume`] (`berth.dev/v1alpha1`); a `PersistentVolumeClaim` manifest is
//! read as the same thing.
//!
//! What this crate does: parse YAML text (multi-document streams, `kind: List`)
//! into typed [`Object`]s with the file, line and column of each, fill
//! Kubernetes defaults, validate single objects and whole sets, and print JSON
//! Schema. What it deliberately doesn't: any I/O beyond the text handed in, and
//! no tokio. The YAML library (`serde_norway`) is named only in `yaml`.
//!
//! Decisions a user can see:
//! - Unknown fields are warnings; everything else found is an error, and every
//!   error is reported (several type errors in one object included).
//! - A well-formed object of a kind berth does not run (Ingress,
//!   NetworkPolicy, RBAC, custom resources, ...) is skipped with a warning
//!   and listed in [`Parsed::skipped`] ([`skipped`]); it never refuses its file.
//! - Valid Kubernetes that berth cannot honour on one host (volume types
//!   berth does not have, `resourceClaims`, `runtimeClassName`, ExternalName
//!   Services, ...) is an error saying so ([`validate::unsupported`]); a
//!   field berth ignores without changing what runs in a way that matters
//!   (`imagePullSecrets`, `sessionAffinity`, ...) is a warning naming it.
//! - Numbers and booleans where Kubernetes wants a string (`value: 8080`) are
//!   errors, so berth manifests stay valid Kubernetes.
//! - A Service without a selector is a warning (berth has no manual Endpoints).
//! - A PersistentVolumeClaim becomes a [`Volume`] with the same metadata,
//!   `spec.size` from `resources.requests.storage`, and reclaim policy
//!   `Retain` unless the annotation `berth.dev/reclaim-policy: Delete`
//!   ([`defaults::RECLAIM_ANNOTATION`]).
//! - YAML merge keys (`<<: *anchor`) are applied; a leading byte order mark
//!   is ignored.

pub use k8s_openapi;

pub mod cron;
pub mod defaults;
pub mod diag;
pub mod object;
mod parse;
pub mod quantity;
pub(crate) mod schema;
pub mod skipped;
pub mod validate;
pub mod volume;
mod workloads;
mod yaml;

pub use diag::{Diagnostic, Severity};
pub use object::{DEFAULT_NAMESPACE, Kind, Location, Object, ObjectKey, Sourced, namespace_of};
pub use parse::{SUPPORTED, parse_str};
pub use schema::json_schema;
pub use skipped::Skipped;
pub use volume::Volume;

/// Rules across objects (duplicates across files, duplicate ClusterIPs,
/// references to objects not in the set). Per-object rules are applied by
/// [`parse_str`].
pub fn validate_set(objects: &[Sourced]) -> Vec<Diagnostic> {
    validate::set(objects)
}

/// The result of reading one file: the objects that parsed and passed
/// per-object validation (with defaults applied), and every diagnostic found.
/// A file with any `Severity::Error` diagnostic should be treated as bad as a
/// whole by sources (its objects are still returned for tooling).
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub objects: Vec<Sourced>,
    pub diagnostics: Vec<Diagnostic>,
    /// Well-formed objects of kinds berth does not run (each also has one
    /// warning in `diagnostics`); they never make the file bad.
    pub skipped: Vec<Skipped>,
}

impl Parsed {
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }
}

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

pub use k8s_openapi;

pub mod diag;
pub mod object;
pub mod volume;

pub use diag::{Diagnostic, Severity};
pub use object::{Kind, Location, Object, ObjectKey, Sourced};
pub use volume::Volume;

/// The result of reading one file: the objects that parsed and passed
/// per-object validation (with defaults applied), and every diagnostic found.
/// A file with any `Severity::Error` diagnostic should be treated as bad as a
/// whole by sources (its objects are still returned for tooling).
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub objects: Vec<Sourced>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Parsed {
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }
}

// Contract, implemented by the spec work (issue 3):
//
// /// Parse one file's text (`file` is used only for locations). Never panics.
// pub fn parse_str(file: &str, text: &str) -> Parsed;
//
// /// Rules across objects (duplicates across files, ...). Per-object rules are
// /// already applied by `parse_str`.
// pub fn validate_set(objects: &[Sourced]) -> Vec<Diagnostic>;
//
// /// JSON Schema for all kinds (usable by yaml-language-server).
// pub fn json_schema() -> serde_json::Value;
//
// /// Parse a Kubernetes quantity ("64Mi", "500m") — `quantity` module.

//! Diagnostics: what is wrong (or suspicious) in a manifest, and where.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::object::{Kind, Location};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The object (and, for a Git revision, the whole revision) is refused.
    Error,
    /// Reported in status; the object is still applied (e.g. unknown fields).
    Warning,
}

/// One finding, printed as
/// `path/file.yaml:LINE:COL: Pod "x": spec.containers[0].ports[0].containerPort: 99999 is not a valid port (1-65535)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub location: Location,
    /// Kind and name of the object, when known.
    pub object: Option<(Kind, String)>,
    /// Field path such as `spec.containers[0].image`, when known.
    pub path: Option<String>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.location)?;
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if let Some((kind, name)) = &self.object {
            write!(f, "{kind} {name:?}: ")?;
        }
        if let Some(path) = &self.path {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.message)
    }
}

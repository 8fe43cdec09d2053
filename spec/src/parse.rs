//! From text to typed, defaulted, validated objects with diagnostics.
//!
//! Two passes per document (CRATES.md §8): a loose pass reads `apiVersion`,
//! `kind` and `metadata.name`; the typed pass deserializes the document
//! straight into the concrete k8s-openapi type, so serde errors keep their
//! line, column and field path. `List` items and documents using merge keys
//! go through [`yaml::typed_reencoded`], which keeps the path and finds the
//! line by path.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, Secret, Service,
};
use serde::de::DeserializeOwned;

use crate::diag::{Diagnostic, Severity};
use crate::object::{Kind, Location, Object, Sourced};
use crate::volume::Volume;
use crate::yaml::{self, Document, YamlError};
use crate::{Parsed, defaults, validate};

/// The kinds and apiVersions berth reads, for error messages.
pub const SUPPORTED: &str = "v1 Pod, apps/v1 Deployment, apps/v1 StatefulSet, apps/v1 DaemonSet, apps/v1 ReplicaSet, v1 ReplicationController, v1 Service, v1 ConfigMap, v1 Secret, v1 PersistentVolumeClaim, berth.dev/v1alpha1 Volume, batch/v1 Job, batch/v1 CronJob, v1 List";

/// Parse one file's text (`file` is used only for locations). Never panics.
///
/// Objects come out in the order they appear in the text (List items in
/// place of their List); diagnostics are sorted (errors first, then by line
/// and column), so the result is deterministic for a given text.
pub fn parse_str(file: &str, text: &str) -> Parsed {
    let mut out = Parsed::default();
    if text.len() > MAX_FILE_BYTES {
        out.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            location: loc(file, 1, 1),
            object: None,
            path: None,
            message: format!(
                "file is {} bytes, more than the limit of {} bytes for one manifest file: split it",
                text.len(),
                MAX_FILE_BYTES
            ),
        });
        return out;
    }
    if text.is_empty() {
        // What a power cut leaves of a file being written (delayed
        // allocation), and what `kubectl apply` refuses too ("no objects
        // passed to apply"): never read as "this file names nothing", which
        // would prune what it defined. A file meant to name nothing says so
        // with a comment.
        out.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            location: loc(file, 1, 1),
            object: None,
            path: None,
            message: "file is empty (0 bytes): the objects it defined before keep running; to remove them delete the file, or leave a comment in it".to_string(),
        });
        return out;
    }
    // editors on Windows may write a byte order mark; the YAML parser
    // mistakes a document starting with one for a second document
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for doc in yaml::split_documents(text) {
        if bounded(file, &doc, &mut out) {
            parse_document(file, &doc, &mut out);
        }
    }
    out.diagnostics.sort();
    cap_diagnostics(file, &mut out.diagnostics);
    out
}

/// Largest file [`parse_str`] reads, in bytes (several objects fit).
pub const MAX_FILE_BYTES: usize = 4 << 20;
/// Largest single object (one YAML document or `List` item), in bytes:
/// Kubernetes refuses requests above about 1.5 MiB.
pub const MAX_OBJECT_BYTES: usize = 3 << 19;
/// Deepest nesting of mappings and sequences in a document. Manifests nest
/// about 10 levels; the YAML parser's cost grows with the square of the depth.
pub const MAX_DEPTH: usize = 100;
/// At most this many diagnostics are reported per file (the rest are counted).
pub const MAX_DIAGNOSTICS: usize = 200;
/// At most this many findings (unknown fields, rule violations) are placed
/// at their line per object; the others point at the object's start.
const MAX_FINDINGS_PER_OBJECT: usize = 100;

/// Size and depth checks of one document before the YAML parser sees it.
/// Returns whether the document may be parsed.
fn bounded(file: &str, doc: &Document<'_>, out: &mut Parsed) -> bool {
    let refuse = |out: &mut Parsed, line: usize, column: usize, message: String| {
        out.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            location: loc(file, line, column),
            object: None,
            path: None,
            message,
        });
        false
    };
    // a List is measured per item, after parsing (up to the file limit)
    let list = || doc.text.lines().any(|l| l.trim_end() == "kind: List");
    if doc.text.len() > MAX_OBJECT_BYTES && !list() {
        return refuse(
            out,
            doc.content_line(),
            1,
            format!(
                "object is {} bytes, more than Kubernetes' limit of {} bytes for one object",
                doc.text.len(),
                MAX_OBJECT_BYTES
            ),
        );
    }
    if let Some((line, column)) = yaml::too_deep(doc.text, MAX_DEPTH) {
        return refuse(
            out,
            line + doc.first_line - 1,
            column,
            format!("nested more than {MAX_DEPTH} levels deep"),
        );
    }
    true
}

/// Keep the first [`MAX_DIAGNOSTICS`] (errors sort first) and say how many more there were.
fn cap_diagnostics(file: &str, diags: &mut Vec<Diagnostic>) {
    if diags.len() <= MAX_DIAGNOSTICS {
        return;
    }
    let more = diags.len() - MAX_DIAGNOSTICS;
    let errors = diags.iter().any(|d| d.severity == Severity::Error);
    diags.truncate(MAX_DIAGNOSTICS);
    diags.push(Diagnostic {
        severity: if errors {
            Severity::Error
        } else {
            Severity::Warning
        },
        location: loc(file, 1, 1),
        object: None,
        path: None,
        message: format!("{more} more findings in this file are not shown"),
    });
}

fn loc(file: &str, line: usize, column: usize) -> Location {
    Location {
        file: file.to_string(),
        line,
        column,
    }
}

fn parse_document(file: &str, doc: &Document<'_>, out: &mut Parsed) {
    let mut loose = match yaml::value(doc) {
        Ok(v) => v,
        Err(e) => {
            out.diagnostics.push(Diagnostic {
                severity: Severity::Error,
                location: loc(file, e.line, e.column),
                object: None,
                path: e.path,
                message: e.message,
            });
            return;
        }
    };
    if loose.value.is_null() {
        return;
    }
    let octal = octal_modes(&mut loose.value);
    let start = loc(file, doc.content_line(), 1);
    if loose.value.get("kind").and_then(|k| k.as_str()) == Some("List") {
        let Some(items) = loose.value.get("items").and_then(|i| i.as_array()) else {
            out.diagnostics.push(Diagnostic {
                severity: Severity::Error,
                location: start,
                object: None,
                path: Some("items".into()),
                message: "a List needs an items array".into(),
            });
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let prefix = format!("items[{i}]");
            let (line, col) = yaml::locate(doc, &prefix);
            let at = loc(file, line, col);
            let size = serde_json::to_vec(item).map_or(0, |v| v.len());
            if size > MAX_OBJECT_BYTES {
                out.diagnostics.push(Diagnostic {
                    severity: Severity::Error,
                    location: at,
                    object: None,
                    path: Some(prefix),
                    message: format!(
                        "object is {size} bytes (as JSON), more than Kubernetes' limit of {MAX_OBJECT_BYTES} bytes for one object"
                    ),
                });
                continue;
            }
            parse_one(file, doc, &prefix, at, item, false, out);
        }
        return;
    }
    parse_one(
        file,
        doc,
        "",
        start,
        &loose.value,
        !loose.merged && !octal,
        out,
    );
}

/// One object: a whole document (`prefix` empty) or a List item.
/// `direct`: deserialize from the document text (best positions) rather than
/// from the loose value.
fn parse_one(
    file: &str,
    doc: &Document<'_>,
    prefix: &str,
    start: Location,
    v: &serde_json::Value,
    direct: bool,
    out: &mut Parsed,
) {
    let at_prefix = (!prefix.is_empty()).then(|| prefix.to_string());
    if !v.is_object() {
        out.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            location: start,
            object: None,
            path: at_prefix,
            message: "a manifest must be a mapping with apiVersion and kind".into(),
        });
        return;
    }
    let text =
        |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).unwrap_or_default().to_string();
    let api = text(v.get("apiVersion"));
    let kind = text(v.get("kind"));
    let name = text(v.get("metadata").and_then(|m| m.get("name")));
    let Some(k) = kind_of(&api, &kind) else {
        let known_in = API_OF.iter().find(|(k, _)| *k == kind).map(|(_, a)| *a);
        match crate::skipped::check(&api, &kind, &name, known_in, SUPPORTED) {
            Ok(()) => {
                out.diagnostics.push(Diagnostic {
                    severity: Severity::Warning,
                    location: start.clone(),
                    object: None,
                    path: at_prefix,
                    message: format!("{name:?}: {}", crate::skipped::message(&api, &kind)),
                });
                let namespace = text(v.get("metadata").and_then(|m| m.get("namespace")));
                out.skipped.push(crate::Skipped {
                    api_version: api,
                    kind,
                    namespace: Some(namespace).filter(|n| !n.is_empty()),
                    name,
                    location: start,
                });
            }
            Err(message) => out.diagnostics.push(Diagnostic {
                severity: Severity::Error,
                location: start,
                object: None,
                path: at_prefix,
                message,
            }),
        }
        return;
    };
    // placing a finding costs a pass over the document: past a limit,
    // findings point at the object's start
    let placed = std::cell::Cell::new(0usize);
    let object_start = start.clone();
    let locate = |p: &str| {
        if placed.get() >= MAX_FINDINGS_PER_OBJECT {
            return object_start.clone();
        }
        placed.set(placed.get() + 1);
        let (l, c) = yaml::locate(doc, &yaml::join_path(prefix, p));
        loc(file, l, c)
    };
    for (path, val) in crate::schema::unquoted_strings(k.schema_name(), v) {
        out.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            location: locate(&path),
            object: Some((k.kind(), name.clone())),
            path: Some(path),
            message: format!("{val} must be a string for Kubernetes: quote it (\"{val}\")"),
        });
    }
    let first = match typed_object(k, doc, v, prefix, direct) {
        Ok((object, unknown)) => {
            finish(object, start, unknown, &locate, &[], true, out);
            return;
        }
        Err(e) => e,
    };
    // serde stops at the first wrong field. To report every error, drop the
    // offending field and read again (up to a limit); then run the rules on
    // what remains, leaving out findings under the dropped fields. The object
    // itself is not handed out: it is not what the file says.
    let mut errors = vec![first];
    let mut removed: Vec<String> = Vec::new();
    let mut lenient = v.clone();
    let mut recovered = None;
    while errors.len() < MAX_TYPE_ERRORS {
        let last = &errors[errors.len() - 1];
        let Some(path) = last.path.clone() else { break };
        if last.message.starts_with("missing field") || !yaml::remove_path(&mut lenient, &path) {
            break;
        }
        removed.push(path);
        match typed_object(k, doc, &lenient, prefix, false) {
            Ok(o) => {
                recovered = Some(o);
                break;
            }
            Err(e) => {
                // a required field we dropped ourselves is not the user's error
                if e.message.starts_with("missing field") {
                    let field = e.message.split('`').nth(1).unwrap_or_default();
                    let full = yaml::join_path(e.path.as_deref().unwrap_or(""), field);
                    if removed.contains(&full) {
                        break;
                    }
                }
                errors.push(e);
            }
        }
    }
    for mut e in errors {
        let binary = matches!(k, Known::Secret)
            && e.path.as_deref().is_some_and(|p| p.starts_with("data"))
            || matches!(k, Known::ConfigMap)
                && e.path
                    .as_deref()
                    .is_some_and(|p| p.starts_with("binaryData"));
        if binary && !e.message.starts_with("invalid type") {
            e.message = format!("not valid base64 ({})", e.message.trim_end_matches('.'));
        }
        out.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            location: loc(file, e.line, e.column),
            object: Some((k.kind(), name.clone())),
            path: e.path,
            message: e.message,
        });
    }
    if let Some((object, unknown)) = recovered {
        finish(object, start, unknown, &locate, &removed, false, out);
    }
}

/// At most this many type errors are reported for one object.
const MAX_TYPE_ERRORS: usize = 20;

fn typed_object(
    k: Known,
    doc: &Document<'_>,
    v: &serde_json::Value,
    prefix: &str,
    direct: bool,
) -> Result<(Object, Vec<String>), YamlError> {
    Ok(match k {
        Known::Pod => {
            let (o, u) = read::<Pod>(doc, v, prefix, direct)?;
            (Object::Pod(o.into()), u)
        }
        Known::Deployment => {
            let (o, u) = read::<Deployment>(doc, v, prefix, direct)?;
            (Object::Deployment(o.into()), u)
        }
        Known::StatefulSet => {
            let (o, u) = read::<StatefulSet>(doc, v, prefix, direct)?;
            (Object::StatefulSet(o.into()), u)
        }
        Known::DaemonSet => {
            let (o, u) = read::<DaemonSet>(doc, v, prefix, direct)?;
            (Object::DaemonSet(o.into()), u)
        }
        Known::ReplicaSet => {
            let (o, u) = read::<ReplicaSet>(doc, v, prefix, direct)?;
            (Object::ReplicaSet(o.into()), u)
        }
        Known::ReplicationController => {
            let (o, u) = read::<ReplicationController>(doc, v, prefix, direct)?;
            (Object::ReplicationController(o.into()), u)
        }
        Known::Service => {
            let (o, u) = read::<Service>(doc, v, prefix, direct)?;
            (Object::Service(o.into()), u)
        }
        Known::ConfigMap => {
            let (o, u) = read::<ConfigMap>(doc, v, prefix, direct)?;
            (Object::ConfigMap(o.into()), u)
        }
        Known::Secret => {
            let (o, u) = read::<Secret>(doc, v, prefix, direct)?;
            (Object::Secret(o.into()), u)
        }
        Known::Volume => {
            let (o, u) = read::<Volume>(doc, v, prefix, direct)?;
            (Object::Volume(o.into()), u)
        }
        Known::Pvc => {
            let (o, u) = read::<PersistentVolumeClaim>(doc, v, prefix, direct)?;
            (Object::Volume(defaults::volume_from_pvc(o).into()), u)
        }
        Known::Job => {
            let (o, u) = read::<Job>(doc, v, prefix, direct)?;
            (Object::Job(o.into()), u)
        }
        Known::CronJob => {
            let (o, u) = read::<CronJob>(doc, v, prefix, direct)?;
            (Object::CronJob(o.into()), u)
        }
    })
}

fn read<T: DeserializeOwned>(
    doc: &Document<'_>,
    v: &serde_json::Value,
    prefix: &str,
    direct: bool,
) -> Result<(T, Vec<String>), YamlError> {
    if direct {
        yaml::typed::<T>(doc)
    } else {
        yaml::typed_reencoded::<T>(v, doc, prefix)
    }
}

/// Unknown-field warnings, defaults, per-object validation; then the object
/// joins the output (also when it has errors: tools may still want it, and
/// [`Parsed::has_errors`] tells sources to refuse the file). Findings under
/// the `skip` paths are left out; `emit: false` reports without handing the
/// object out (used after type errors).
fn finish(
    mut object: Object,
    start: Location,
    unknown: Vec<String>,
    locate: &dyn Fn(&str) -> Location,
    skip: &[String],
    emit: bool,
    out: &mut Parsed,
) {
    let kind = object.kind();
    let name = object.metadata().name.clone().unwrap_or_default();
    for u in unknown {
        out.diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            location: locate(&u),
            object: Some((kind, name.clone())),
            path: Some(u),
            message: "unknown field (ignored)".into(),
        });
    }
    defaults::apply(&mut object);
    let under = |p: &str, r: &str| {
        p.strip_prefix(r)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
    };
    for p in validate::object(&object) {
        if p.path
            .as_deref()
            .is_some_and(|path| skip.iter().any(|r| under(path, r)))
        {
            continue;
        }
        out.diagnostics.push(Diagnostic {
            severity: p.severity,
            location: p
                .path
                .as_deref()
                .map(locate)
                .unwrap_or_else(|| start.clone()),
            object: Some((kind, name.clone())),
            path: p.path,
            message: p.message,
        });
    }
    if emit {
        out.objects.push(Sourced {
            object,
            location: start,
        });
    }
}

#[derive(Clone, Copy)]
enum Known {
    Pod,
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    ReplicationController,
    Service,
    ConfigMap,
    Secret,
    Volume,
    Pvc,
    Job,
    CronJob,
}

impl Known {
    /// Name of the kind's definition in the JSON Schema (`berth.NAME`).
    fn schema_name(self) -> &'static str {
        match self {
            Known::Pod => "Pod",
            Known::Deployment => "Deployment",
            Known::StatefulSet => "StatefulSet",
            Known::DaemonSet => "DaemonSet",
            Known::ReplicaSet => "ReplicaSet",
            Known::ReplicationController => "ReplicationController",
            Known::Service => "Service",
            Known::ConfigMap => "ConfigMap",
            Known::Secret => "Secret",
            Known::Volume => "Volume",
            Known::Pvc => "PersistentVolumeClaim",
            Known::Job => "Job",
            Known::CronJob => "CronJob",
        }
    }

    fn kind(self) -> Kind {
        match self {
            Known::Pod => Kind::Pod,
            Known::Deployment => Kind::Deployment,
            Known::StatefulSet => Kind::StatefulSet,
            Known::DaemonSet => Kind::DaemonSet,
            Known::ReplicaSet => Kind::ReplicaSet,
            Known::ReplicationController => Kind::ReplicationController,
            Known::Service => Kind::Service,
            Known::ConfigMap => Kind::ConfigMap,
            Known::Secret => Kind::Secret,
            Known::Volume | Known::Pvc => Kind::Volume,
            Known::Job => Kind::Job,
            Known::CronJob => Kind::CronJob,
        }
    }
}

/// The apiVersion berth reads each supported kind in.
const API_OF: [(&str, &str); 13] = [
    ("Pod", "v1"),
    ("Deployment", "apps/v1"),
    ("StatefulSet", "apps/v1"),
    ("DaemonSet", "apps/v1"),
    ("ReplicaSet", "apps/v1"),
    ("ReplicationController", "v1"),
    ("Service", "v1"),
    ("ConfigMap", "v1"),
    ("Secret", "v1"),
    ("PersistentVolumeClaim", "v1"),
    ("Volume", crate::volume::API_VERSION),
    ("Job", "batch/v1"),
    ("CronJob", "batch/v1"),
];

fn kind_of(api: &str, kind: &str) -> Option<Known> {
    Some(match (api, kind) {
        ("v1", "Pod") => Known::Pod,
        ("apps/v1", "Deployment") => Known::Deployment,
        ("apps/v1", "StatefulSet") => Known::StatefulSet,
        ("apps/v1", "DaemonSet") => Known::DaemonSet,
        ("apps/v1", "ReplicaSet") => Known::ReplicaSet,
        ("v1", "ReplicationController") => Known::ReplicationController,
        ("v1", "Service") => Known::Service,
        ("v1", "ConfigMap") => Known::ConfigMap,
        ("v1", "Secret") => Known::Secret,
        ("v1", "PersistentVolumeClaim") => Known::Pvc,
        (crate::volume::API_VERSION, "Volume") => Known::Volume,
        ("batch/v1", "Job") => Known::Job,
        ("batch/v1", "CronJob") => Known::CronJob,
        _ => return None,
    })
}

/// File modes written the YAML 1.1 way, as Kubernetes reads them:
/// `defaultMode: 0644` is octal 420. The YAML 1.2 library reads `0644` as a
/// string, so such values are converted in the loose value (and the typed
/// pass then reads from it). Returns whether anything was converted.
fn octal_modes(v: &mut serde_json::Value) -> bool {
    match v {
        serde_json::Value::Object(m) => {
            let mut changed = false;
            for (k, child) in m.iter_mut() {
                if (k == "defaultMode" || k == "mode")
                    && let Some(n) = child
                        .as_str()
                        .and_then(|t| t.strip_prefix('0'))
                        .filter(|t| !t.is_empty() && t.bytes().all(|b| (b'0'..=b'7').contains(&b)))
                        .and_then(|t| i64::from_str_radix(t, 8).ok())
                {
                    *child = serde_json::Value::from(n);
                    changed = true;
                    continue;
                }
                changed |= octal_modes(child);
            }
            changed
        }
        serde_json::Value::Array(a) => a.iter_mut().fold(false, |c, x| octal_modes(x) | c),
        _ => false,
    }
}

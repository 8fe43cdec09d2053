//! From text to typed, defaulted, validated objects with diagnostics.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use serde::de::DeserializeOwned;

use crate::diag::{Diagnostic, Severity};
use crate::object::{Kind, Location, Object, Sourced};
use crate::volume::Volume;
use crate::yaml::{self, Document};
use crate::{Parsed, defaults, validate};

/// The kinds and apiVersions berth reads, for error messages.
pub const SUPPORTED: &str = "v1 Pod, apps/v1 Deployment, v1 Service, v1 ConfigMap, v1 Secret, v1 PersistentVolumeClaim, berth.dev/v1alpha1 Volume, v1 List";

/// Parse one file's text (`file` is used only for locations). Never panics.
pub fn parse_str(file: &str, text: &str) -> Parsed {
    let mut out = Parsed::default();
    for doc in yaml::split_documents(text) {
        parse_document(file, &doc, &mut out);
    }
    out.diagnostics.sort();
    out
}

fn loc(file: &str, line: usize, column: usize) -> Location {
    Location {
        file: file.to_string(),
        line,
        column,
    }
}

fn parse_document(file: &str, doc: &Document<'_>, out: &mut Parsed) {
    let v = match yaml::value(doc) {
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
    if v.is_null() {
        return;
    }
    let start = loc(file, doc.content_line(), 1);
    let Some(map) = v.as_object() else {
        out.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            location: start,
            object: None,
            path: None,
            message: "a manifest must be a mapping with apiVersion and kind".into(),
        });
        return;
    };
    let api = map
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let kind = map
        .get("kind")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or("")
        .to_string();
    if kind == "List" {
        let Some(items) = map.get("items").and_then(|i| i.as_array()) else {
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
            let (line, col) = yaml::locate(doc, &format!("items[{i}]"));
            parse_item(
                file,
                &loc(file, line, col),
                &format!("items[{i}]"),
                item.clone(),
                out,
            );
        }
        return;
    }
    let Some(k) = kind_of(&api, &kind) else {
        out.diagnostics
            .push(unknown_kind(start, &api, &kind, &name));
        return;
    };
    let typed = match k {
        Known::Pod => from_doc::<Pod>(doc).map(|(o, u)| (Object::Pod(Box::new(o)), u)),
        Known::Deployment => {
            from_doc::<Deployment>(doc).map(|(o, u)| (Object::Deployment(Box::new(o)), u))
        }
        Known::Service => from_doc::<Service>(doc).map(|(o, u)| (Object::Service(Box::new(o)), u)),
        Known::ConfigMap => {
            from_doc::<ConfigMap>(doc).map(|(o, u)| (Object::ConfigMap(Box::new(o)), u))
        }
        Known::Secret => from_doc::<Secret>(doc).map(|(o, u)| (Object::Secret(Box::new(o)), u)),
        Known::Volume => from_doc::<Volume>(doc).map(|(o, u)| (Object::Volume(Box::new(o)), u)),
        Known::Pvc => from_doc::<PersistentVolumeClaim>(doc)
            .map(|(o, u)| (Object::Volume(Box::new(defaults::volume_from_pvc(o))), u)),
    };
    match typed {
        Err(e) => out.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            location: loc(file, e.line, e.column),
            object: Some((k.kind(), name)),
            path: e.path,
            message: e.message,
        }),
        Ok((object, unknown)) => {
            let locate = |p: &str| {
                let (l, c) = yaml::locate(doc, p);
                loc(file, l, c)
            };
            finish(object, start.clone(), unknown, &locate, out);
        }
    }
}

fn parse_item(file: &str, at: &Location, prefix: &str, item: serde_json::Value, out: &mut Parsed) {
    let api = item
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let kind = item
        .get("kind")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let name = item
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or("")
        .to_string();
    let Some(k) = kind_of(&api, &kind) else {
        out.diagnostics
            .push(unknown_kind(at.clone(), &api, &kind, &name));
        return;
    };
    let typed = match k {
        Known::Pod => from_value::<Pod>(item).map(|(o, u)| (Object::Pod(Box::new(o)), u)),
        Known::Deployment => {
            from_value::<Deployment>(item).map(|(o, u)| (Object::Deployment(Box::new(o)), u))
        }
        Known::Service => {
            from_value::<Service>(item).map(|(o, u)| (Object::Service(Box::new(o)), u))
        }
        Known::ConfigMap => {
            from_value::<ConfigMap>(item).map(|(o, u)| (Object::ConfigMap(Box::new(o)), u))
        }
        Known::Secret => from_value::<Secret>(item).map(|(o, u)| (Object::Secret(Box::new(o)), u)),
        Known::Volume => from_value::<Volume>(item).map(|(o, u)| (Object::Volume(Box::new(o)), u)),
        Known::Pvc => from_value::<PersistentVolumeClaim>(item)
            .map(|(o, u)| (Object::Volume(Box::new(defaults::volume_from_pvc(o))), u)),
    };
    match typed {
        Err(message) => out.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            location: at.clone(),
            object: Some((k.kind(), name)),
            path: Some(prefix.to_string()),
            message,
        }),
        Ok((object, unknown)) => {
            let _ = file;
            let locate = |_: &str| at.clone();
            finish(object, at.clone(), unknown, &locate, out);
        }
    }
}

fn finish(
    mut object: Object,
    start: Location,
    unknown: Vec<String>,
    locate: &dyn Fn(&str) -> Location,
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
    let problems = validate::object(&object);
    let mut bad = false;
    for p in problems {
        bad |= p.severity == Severity::Error;
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
    let _ = bad;
    out.objects.push(Sourced {
        object,
        location: start,
    });
}

fn from_doc<T: DeserializeOwned>(doc: &Document<'_>) -> Result<(T, Vec<String>), yaml::YamlError> {
    yaml::typed::<T>(doc)
}

fn from_value<T: DeserializeOwned>(v: serde_json::Value) -> Result<(T, Vec<String>), String> {
    yaml::typed_value::<T>(v)
}

#[derive(Clone, Copy)]
enum Known {
    Pod,
    Deployment,
    Service,
    ConfigMap,
    Secret,
    Volume,
    Pvc,
}

impl Known {
    fn kind(self) -> Kind {
        match self {
            Known::Pod => Kind::Pod,
            Known::Deployment => Kind::Deployment,
            Known::Service => Kind::Service,
            Known::ConfigMap => Kind::ConfigMap,
            Known::Secret => Kind::Secret,
            Known::Volume | Known::Pvc => Kind::Volume,
        }
    }
}

fn kind_of(api: &str, kind: &str) -> Option<Known> {
    Some(match (api, kind) {
        ("v1", "Pod") => Known::Pod,
        ("apps/v1", "Deployment") => Known::Deployment,
        ("v1", "Service") => Known::Service,
        ("v1", "ConfigMap") => Known::ConfigMap,
        ("v1", "Secret") => Known::Secret,
        ("v1", "PersistentVolumeClaim") => Known::Pvc,
        (crate::volume::API_VERSION, "Volume") => Known::Volume,
        _ => return None,
    })
}

fn unknown_kind(at: Location, api: &str, kind: &str, name: &str) -> Diagnostic {
    let _ = name;
    let message = match (api.is_empty(), kind.is_empty()) {
        (_, true) => format!("missing kind (supported: {SUPPORTED})"),
        (true, false) => format!("missing apiVersion for kind {kind} (supported: {SUPPORTED})"),
        _ => format!("unsupported kind {kind} in apiVersion {api} (supported: {SUPPORTED})"),
    };
    Diagnostic {
        severity: Severity::Error,
        location: at,
        object: None,
        path: None,
        message,
    }
}

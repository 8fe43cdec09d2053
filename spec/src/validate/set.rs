//! Rules across objects: the same object twice, duplicate ClusterIPs,
//! references to objects not in the set.

use std::collections::BTreeMap;

use crate::diag::{Diagnostic, Severity};
use crate::object::{Object, ObjectKey, Sourced};

/// Rules across objects (files): the same object defined twice, duplicate ClusterIPs,
/// references to ConfigMaps/Secrets/Volumes not in the set (warnings).
pub fn set(objects: &[Sourced]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut by_key: BTreeMap<ObjectKey, Vec<&Sourced>> = BTreeMap::new();
    for s in objects {
        by_key.entry(s.object.key()).or_default().push(s);
    }
    for (key, defs) in &by_key {
        if defs.len() > 1 {
            let places: Vec<String> = defs.iter().map(|d| d.location.to_string()).collect();
            for d in defs {
                out.push(Diagnostic {
                    severity: Severity::Error,
                    location: d.location.clone(),
                    object: Some((key.kind, key.name.clone())),
                    path: None,
                    message: format!("{key} is defined more than once: {}", places.join(", ")),
                });
            }
        }
    }
    let mut ips: BTreeMap<String, &Sourced> = BTreeMap::new();
    for s in objects {
        if let Object::Service(svc) = &s.object {
            if let Some(ip) = svc
                .spec
                .as_ref()
                .and_then(|s| s.cluster_ip.clone())
                .filter(|i| !i.is_empty() && i != "None")
            {
                if let Some(other) = ips.insert(ip.clone(), s) {
                    if other.object.key() != s.object.key() {
                        out.push(Diagnostic {
                            severity: Severity::Error,
                            location: s.location.clone(),
                            object: Some((s.object.kind(), s.object.key().name)),
                            path: Some("spec.clusterIP".into()),
                            message: format!(
                                "clusterIP {ip} is also used by {}",
                                other.object.key()
                            ),
                        });
                    }
                }
            }
        }
    }
    // references that can be checked statically: warnings, the object may arrive later
    let present = |kind: crate::Kind, ns: &str, name: &str| {
        by_key.contains_key(&ObjectKey::new(kind, ns, name))
    };
    for s in objects {
        let key = s.object.key();
        let spec = match &s.object {
            Object::Pod(p) => p.spec.as_ref(),
            Object::Deployment(d) => d.spec.template.spec.as_ref(),
            _ => None,
        };
        let Some(spec) = spec else { continue };
        for v in spec.volumes.iter().flatten() {
            let missing = if let Some(c) = &v.config_map {
                (c.optional != Some(true)
                    && !present(crate::Kind::ConfigMap, &key.namespace, &c.name))
                .then(|| format!("ConfigMap {:?}", c.name))
            } else if let Some(sec) = &v.secret {
                let n = sec.secret_name.clone().unwrap_or_default();
                (sec.optional != Some(true) && !present(crate::Kind::Secret, &key.namespace, &n))
                    .then(|| format!("Secret {n:?}"))
            } else if let Some(c) = &v.persistent_volume_claim {
                (!present(crate::Kind::Volume, &key.namespace, &c.claim_name))
                    .then(|| format!("Volume {:?}", c.claim_name))
            } else {
                None
            };
            if let Some(m) = missing {
                out.push(Diagnostic {
                    severity: Severity::Warning,
                    location: s.location.clone(),
                    object: Some((key.kind, key.name.clone())),
                    path: None,
                    message: format!(
                        "volume {:?} refers to {m}, which is not defined in these manifests",
                        v.name
                    ),
                });
            }
        }
    }
    out.sort();
    out
}

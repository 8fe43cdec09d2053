//! Rules across objects: the same object twice, duplicate ClusterIPs,
//! references to objects not in the set.

use std::collections::BTreeMap;

use crate::diag::{Diagnostic, Severity};
use crate::object::{Kind, Object, ObjectKey, Sourced};

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
        if let Object::Service(svc) = &s.object
            && let Some(ip) = svc
                .spec
                .as_ref()
                .and_then(|s| s.cluster_ip.clone())
                .filter(|i| !i.is_empty() && i != "None")
            && let Some(other) = ips.insert(ip.clone(), s)
            && other.object.key() != s.object.key()
        {
            out.push(Diagnostic {
                severity: Severity::Error,
                location: s.location.clone(),
                object: Some((s.object.kind(), s.object.key().name)),
                path: Some("spec.clusterIP".into()),
                message: format!("clusterIP {ip} is also used by {}", other.object.key()),
            });
        }
    }
    node_ports(objects, &mut out);
    // references that can be checked statically: warnings, the object may arrive later
    let present =
        |kind: Kind, ns: &str, name: &str| by_key.contains_key(&ObjectKey::new(kind, ns, name));
    for s in objects {
        let key = s.object.key();
        let (base, spec) = match &s.object {
            Object::Pod(p) => ("spec", p.spec.as_ref()),
            o => match o.pod_spec() {
                Some((base, spec)) => (base, Some(spec)),
                None => continue,
            },
        };
        let Some(spec) = spec else { continue };
        let mut refs: Vec<(String, Kind, String)> = Vec::new();
        for (i, v) in spec.volumes.iter().flatten().enumerate() {
            let p = format!("{base}.volumes[{i}]");
            if let Some(c) = v.config_map.as_ref().filter(|c| c.optional != Some(true)) {
                refs.push((
                    format!("{p}.configMap.name"),
                    Kind::ConfigMap,
                    c.name.clone(),
                ));
            }
            if let Some(sec) = v.secret.as_ref().filter(|c| c.optional != Some(true)) {
                let n = sec.secret_name.clone().unwrap_or_default();
                refs.push((format!("{p}.secret.secretName"), Kind::Secret, n));
            }
            if let Some(c) = &v.persistent_volume_claim {
                let n = c.claim_name.clone();
                refs.push((
                    format!("{p}.persistentVolumeClaim.claimName"),
                    Kind::Volume,
                    n,
                ));
            }
        }
        for (cp, c) in super::containers_at(base, spec) {
            for (j, e) in c.env_from.iter().flatten().enumerate() {
                if let Some(r) = e
                    .config_map_ref
                    .as_ref()
                    .filter(|r| r.optional != Some(true))
                {
                    refs.push((
                        format!("{cp}.envFrom[{j}].configMapRef.name"),
                        Kind::ConfigMap,
                        r.name.clone(),
                    ));
                }
                if let Some(r) = e.secret_ref.as_ref().filter(|r| r.optional != Some(true)) {
                    refs.push((
                        format!("{cp}.envFrom[{j}].secretRef.name"),
                        Kind::Secret,
                        r.name.clone(),
                    ));
                }
            }
            for (j, e) in c.env.iter().flatten().enumerate() {
                let Some(vf) = &e.value_from else { continue };
                if let Some(r) = vf
                    .config_map_key_ref
                    .as_ref()
                    .filter(|r| r.optional != Some(true))
                {
                    refs.push((
                        format!("{cp}.env[{j}].valueFrom.configMapKeyRef.name"),
                        Kind::ConfigMap,
                        r.name.clone(),
                    ));
                }
                if let Some(r) = vf
                    .secret_key_ref
                    .as_ref()
                    .filter(|r| r.optional != Some(true))
                {
                    refs.push((
                        format!("{cp}.env[{j}].valueFrom.secretKeyRef.name"),
                        Kind::Secret,
                        r.name.clone(),
                    ));
                }
            }
        }
        for (path, kind, name) in refs {
            // an empty name is reported by the per-object rules
            if name.is_empty() || present(kind, &key.namespace, &name) {
                continue;
            }
            out.push(Diagnostic {
                severity: Severity::Warning,
                location: s.location.clone(),
                object: Some((key.kind, key.name.clone())),
                path: Some(path),
                message: format!(
                    "refers to {kind} {name:?}, which is not defined in these manifests"
                ),
            });
        }
    }
    out.sort();
    out
}

/// A NodePort (with its protocol) can be owned by one Service only.
fn node_ports(objects: &[Sourced], out: &mut Vec<Diagnostic>) {
    let mut seen: BTreeMap<(i32, String), (ObjectKey, usize)> = BTreeMap::new();
    for (idx, s) in objects.iter().enumerate() {
        let Object::Service(svc) = &s.object else {
            continue;
        };
        let key = s.object.key();
        for (i, p) in svc
            .spec
            .iter()
            .flat_map(|s| s.ports.iter().flatten())
            .enumerate()
        {
            let Some(np) = p.node_port else { continue };
            let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            match seen.get(&(np, proto.clone())) {
                // the same object defined twice is reported on its own
                Some((other, _)) if *other == key && seen[&(np, proto.clone())].1 != idx => {}
                Some((other, _)) if *other != key => out.push(Diagnostic {
                    severity: Severity::Error,
                    location: s.location.clone(),
                    object: Some((key.kind, key.name.clone())),
                    path: Some(format!("spec.ports[{i}].nodePort")),
                    message: format!("nodePort {np}/{proto} is also used by {other}"),
                }),
                Some(_) => out.push(Diagnostic {
                    severity: Severity::Error,
                    location: s.location.clone(),
                    object: Some((key.kind, key.name.clone())),
                    path: Some(format!("spec.ports[{i}].nodePort")),
                    message: format!("duplicate nodePort {np}/{proto}"),
                }),
                None => {
                    seen.insert((np, proto), (key.clone(), idx));
                }
            }
        }
    }
}

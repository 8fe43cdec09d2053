//! From a Kubernetes container spec plus its image to a runtime [`ContainerConfig`]:
//! command/args vs Entrypoint/Cmd, env (incl. valueFrom / envFrom and `$(VAR)`
//! expansion), working dir, resources and security context. Pure: no I/O.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use berth_spec::k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, PodSecurityContext, PodSpec, Secret,
};
use berth_spec::k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::traits::{ImageInfo, Resources, Security};

/// ConfigMaps and Secrets of the desired set, by (namespace, name).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigObjects {
    pub config_maps: BTreeMap<(String, String), ConfigMap>,
    pub secrets: BTreeMap<(String, String), Secret>,
}

impl ConfigObjects {
    fn config_map_value(&self, ns: &str, name: &str, key: &str) -> Option<String> {
        let cm = self.config_maps.get(&(ns.to_string(), name.to_string()))?;
        cm.data.as_ref()?.get(key).cloned()
    }

    fn secret_value(&self, ns: &str, name: &str, key: &str) -> Option<String> {
        let s = self.secrets.get(&(ns.to_string(), name.to_string()))?;
        let v = s.data.as_ref()?.get(key)?;
        Some(String::from_utf8_lossy(&v.0).into_owned())
    }
}

/// What `$(fieldRef)` can refer to.
#[derive(Debug, Clone)]
pub struct PodFields<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub node_name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub annotations: &'a BTreeMap<String, String>,
    pub pod_ip: Option<Ipv4Addr>,
    pub host_ip: Option<Ipv4Addr>,
    pub service_account: &'a str,
    /// The pod's containers (init and main), for `resourceFieldRef`.
    pub containers: &'a [berth_spec::k8s_openapi::api::core::v1::Container],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKey {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKey {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("configmap {namespace}/{name} not found")]
    ConfigMapMissing { namespace: String, name: String },
    #[error("secret {namespace}/{name} not found")]
    SecretMissing { namespace: String, name: String },
    #[error("unsupported fieldRef {path}")]
    FieldRef { path: String },
    #[error("container has no command and the image has no Entrypoint or Cmd")]
    NoCommand,
    #[error("resource {what}: {value:?} is not a valid quantity")]
    Quantity { what: String, value: String },
}

/// Kubernetes semantics: `command` replaces Entrypoint (and drops Cmd), `args` replaces Cmd.
pub fn argv(
    c: &Container,
    image: &ImageInfo,
    env: &BTreeMap<String, String>,
) -> Result<Vec<String>, BuildError> {
    let command = c.command.clone().unwrap_or_default();
    let args = c.args.clone().unwrap_or_default();
    let (head, tail) = match (command.is_empty(), c.args.is_some()) {
        (false, true) => (command, args),
        (false, false) => (command, Vec::new()),
        (true, true) => (image.config.entrypoint.clone(), args),
        (true, false) => (image.config.entrypoint.clone(), image.config.cmd.clone()),
    };
    let expand = !c.command.as_ref().is_none_or(Vec::is_empty) || c.args.is_some();
    let mut out: Vec<String> = head.into_iter().chain(tail).collect();
    if expand {
        out = out.iter().map(|s| expand_vars(s, env)).collect();
    }
    if out.is_empty() {
        return Err(BuildError::NoCommand);
    }
    Ok(out)
}

/// Kubernetes `$(VAR)` expansion; `$$` escapes; unknown references stay as written.
pub fn expand_vars(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'('
                && let Some(end) = s[i + 2..].find(')')
            {
                let name = &s[i + 2..i + 2 + end];
                if let Some(v) = env.get(name) {
                    out.push_str(v);
                } else {
                    out.push_str(&s[i..i + 3 + end]);
                }
                i += 3 + end;
                continue;
            }
        }
        let ch = s[i..].chars().next().unwrap_or('\0');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The environment as an ordered map: image env, then envFrom, then env (later wins).
pub fn environment(
    c: &Container,
    image: &ImageInfo,
    pod: &PodFields<'_>,
    objs: &ConfigObjects,
) -> Result<BTreeMap<String, String>, BuildError> {
    let mut env = BTreeMap::new();
    for kv in &image.config.env {
        if let Some((k, v)) = kv.split_once('=') {
            env.insert(k.to_string(), v.to_string());
        }
    }
    for src in c.env_from.iter().flatten() {
        let prefix = src.prefix.clone().unwrap_or_default();
        if let Some(r) = &src.config_map_ref {
            let key = (pod.namespace.to_string(), r.name.clone());
            match objs.config_maps.get(&key) {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        env.insert(format!("{prefix}{k}"), v.clone());
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(BuildError::ConfigMapMissing {
                        namespace: key.0,
                        name: key.1,
                    });
                }
            }
        }
        if let Some(r) = &src.secret_ref {
            let key = (pod.namespace.to_string(), r.name.clone());
            match objs.secrets.get(&key) {
                Some(s) => {
                    for (k, v) in s.data.iter().flatten() {
                        env.insert(
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                        );
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(BuildError::SecretMissing {
                        namespace: key.0,
                        name: key.1,
                    });
                }
            }
        }
    }
    for var in c.env.iter().flatten() {
        if let Some(v) = env_value(&c.name, var, pod, objs, &env)? {
            env.insert(var.name.clone(), v);
        }
    }
    Ok(env)
}

fn env_value(
    own: &str,
    var: &EnvVar,
    pod: &PodFields<'_>,
    objs: &ConfigObjects,
    so_far: &BTreeMap<String, String>,
) -> Result<Option<String>, BuildError> {
    let Some(from) = &var.value_from else {
        return Ok(Some(expand_vars(
            var.value.as_deref().unwrap_or(""),
            so_far,
        )));
    };
    if let Some(r) = &from.config_map_key_ref {
        return match objs.config_map_value(pod.namespace, &r.name, &r.key) {
            Some(v) => Ok(Some(v)),
            None if r.optional == Some(true) => Ok(None),
            None => Err(BuildError::ConfigMapKey {
                namespace: pod.namespace.to_string(),
                name: r.name.clone(),
                key: r.key.clone(),
            }),
        };
    }
    if let Some(r) = &from.secret_key_ref {
        return match objs.secret_value(pod.namespace, &r.name, &r.key) {
            Some(v) => Ok(Some(v)),
            None if r.optional == Some(true) => Ok(None),
            None => Err(BuildError::SecretKey {
                namespace: pod.namespace.to_string(),
                name: r.name.clone(),
                key: r.key.clone(),
            }),
        };
    }
    if let Some(f) = &from.field_ref {
        return field_ref(&f.field_path, pod).map(Some);
    }
    if let Some(r) = &from.resource_field_ref {
        let node = crate::downward::NodeCapacity::of_host();
        return crate::downward::resource_value(pod.containers, own, r, node).map(Some);
    }
    Ok(None)
}

pub(crate) fn field_ref(path: &str, pod: &PodFields<'_>) -> Result<String, BuildError> {
    let ip = |a: Option<Ipv4Addr>| a.map(|a| a.to_string()).unwrap_or_default();
    Ok(match path {
        "metadata.name" => pod.name.to_string(),
        "metadata.namespace" => pod.namespace.to_string(),
        "metadata.uid" => pod.uid.to_string(),
        "spec.nodeName" => pod.node_name.to_string(),
        "spec.serviceAccountName" => pod.service_account.to_string(),
        "status.podIP" | "status.podIPs" => ip(pod.pod_ip),
        "status.hostIP" | "status.hostIPs" => ip(pod.host_ip),
        p => {
            let sub = |prefix: &str, m: &BTreeMap<String, String>| {
                p.strip_prefix(prefix)
                    .and_then(|r| r.strip_prefix("['").and_then(|r| r.strip_suffix("']")))
                    .map(|k| m.get(k).cloned().unwrap_or_default())
            };
            if let Some(v) = sub("metadata.labels", pod.labels) {
                v
            } else if let Some(v) = sub("metadata.annotations", pod.annotations) {
                v
            } else {
                return Err(BuildError::FieldRef {
                    path: p.to_string(),
                });
            }
        }
    })
}

fn quantity(
    map: Option<&BTreeMap<String, Quantity>>,
    key: &str,
    what: &str,
    parse: fn(&str) -> Option<u64>,
) -> Result<Option<u64>, BuildError> {
    let Some(q) = map.and_then(|m| m.get(key)) else {
        return Ok(None);
    };
    parse(&q.0).map(Some).ok_or_else(|| BuildError::Quantity {
        what: format!("{what}.{key}"),
        value: q.0.clone(),
    })
}

/// requests/limits as numbers. A limit without a request sets the request (Kubernetes).
pub fn resources(c: &Container) -> Result<Resources, BuildError> {
    let r = c.resources.as_ref();
    let req = r.and_then(|r| r.requests.as_ref());
    let lim = r.and_then(|r| r.limits.as_ref());
    let bytes = |s: &str| berth_spec::quantity::parse_bytes(s).ok();
    let millis = |s: &str| berth_spec::quantity::parse_millicores(s).ok();
    let cpu_limit = quantity(lim, "cpu", "limits", millis)?;
    let mem_limit = quantity(lim, "memory", "limits", bytes)?;
    let cpu_request = quantity(req, "cpu", "requests", millis)?.or(cpu_limit);
    let mem_request = quantity(req, "memory", "requests", bytes)?.or(mem_limit);
    Ok(Resources {
        cpu_request_millis: cpu_request,
        cpu_limit_millis: cpu_limit,
        memory_request_bytes: mem_request,
        memory_limit_bytes: mem_limit,
        pids_limit: None,
    })
}

/// Container securityContext over the pod's.
pub fn security(c: &Container, pod: Option<&PodSecurityContext>) -> Security {
    let sc = c.security_context.as_ref();
    let privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let seccomp_type = sc
        .and_then(|s| s.seccomp_profile.as_ref())
        .or_else(|| pod.and_then(|p| p.seccomp_profile.as_ref()))
        .map(|p| p.type_.as_str());
    Security {
        privileged,
        cap_add: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
        cap_drop: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
        allow_privilege_escalation: sc
            .and_then(|s| s.allow_privilege_escalation)
            .unwrap_or(true),
        read_only_root_fs: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        run_as_user: sc
            .and_then(|s| s.run_as_user)
            .or_else(|| pod.and_then(|p| p.run_as_user)),
        run_as_group: sc
            .and_then(|s| s.run_as_group)
            .or_else(|| pod.and_then(|p| p.run_as_group)),
        run_as_non_root: sc
            .and_then(|s| s.run_as_non_root)
            .or_else(|| pod.and_then(|p| p.run_as_non_root))
            .unwrap_or(false),
        // fsGroup is one of the process's groups too, as kubelet adds it
        supplemental_groups: {
            let mut g = pod
                .and_then(|p| p.supplemental_groups.clone())
                .unwrap_or_default();
            if let Some(fs) = pod.and_then(|p| p.fs_group)
                && !g.contains(&fs)
            {
                g.push(fs);
            }
            g
        },
        seccomp_unconfined: privileged || seccomp_type == Some("Unconfined"),
        // set by the worker: they need the pod spec and the state dir
        seccomp_localhost: None,
        host_pid: false,
        host_ipc: false,
        supplemental_groups_strict: pod.and_then(|p| p.supplemental_groups_policy.as_deref())
            == Some("Strict"),
        // set by the worker: it needs the pod's annotations
        apparmor_profile: None,
    }
}

/// Working dir: the container's, else the image's, else `/`.
pub fn working_dir(c: &Container, image: &ImageInfo) -> String {
    c.working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| image.config.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_string())
}

/// The pod cgroup's limits: the pod-level `resources` when the spec has
/// them (Kubernetes' pod-level resources), else the sum of container limits
/// (only when every container has one).
pub fn pod_resources(spec: &PodSpec) -> Resources {
    if let Some(r) = spec.resources.as_ref() {
        let pod = Container {
            resources: Some(r.clone()),
            ..Default::default()
        };
        // validated quantities; an unreadable one leaves the sum below
        if let Ok(res) = resources(&pod) {
            return res;
        }
    }
    let all: Vec<Resources> = spec
        .containers
        .iter()
        .filter_map(|c| resources(c).ok())
        .collect();
    let sum = |f: fn(&Resources) -> Option<u64>| -> Option<u64> {
        if all.is_empty() {
            return None;
        }
        all.iter().map(f).sum::<Option<u64>>()
    };
    Resources {
        cpu_request_millis: sum(|r| r.cpu_request_millis),
        cpu_limit_millis: sum(|r| r.cpu_limit_millis),
        memory_request_bytes: sum(|r| r.memory_request_bytes),
        memory_limit_bytes: sum(|r| r.memory_limit_bytes),
        pids_limit: None,
    }
}

#[cfg(test)]
mod tests;

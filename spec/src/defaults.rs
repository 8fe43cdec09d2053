//! Kubernetes defaults, applied after parsing so every consumer sees the same
//! values kube-apiserver would have filled in.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{Container, PersistentVolumeClaim, PodSpec, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::object::Object;
use crate::volume::{API_VERSION, ReclaimPolicy, Volume, VolumeSpec};

/// Annotation that sets a PersistentVolumeClaim's reclaim policy (`Delete` or `Retain`).
pub const RECLAIM_ANNOTATION: &str = "berth.dev/reclaim-policy";

pub fn apply(o: &mut Object) {
    let ns = |m: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        if m.namespace.as_deref().is_none_or(str::is_empty) {
            m.namespace = Some(crate::object::DEFAULT_NAMESPACE.into());
        }
    };
    match o {
        Object::Pod(p) => {
            ns(&mut p.metadata);
            if let Some(s) = p.spec.as_mut() {
                pod_spec(s);
            }
        }
        Object::Deployment(d) => {
            ns(&mut d.metadata);
            let s = &mut d.spec;
            s.replicas.get_or_insert(1);
            s.revision_history_limit.get_or_insert(10);
            s.progress_deadline_seconds.get_or_insert(600);
            s.min_ready_seconds.get_or_insert(0);
            let st = s.strategy.get_or_insert_with(DeploymentStrategy::default);
            let ty = st.type_.get_or_insert_with(|| "RollingUpdate".into());
            if ty == "RollingUpdate" {
                let ru = st
                    .rolling_update
                    .get_or_insert_with(RollingUpdateDeployment::default);
                ru.max_surge
                    .get_or_insert(IntOrString::String("25%".into()));
                ru.max_unavailable
                    .get_or_insert(IntOrString::String("25%".into()));
            }
            if let Some(ps) = s.template.spec.as_mut() {
                pod_spec(ps);
            }
        }
        Object::Service(svc) => {
            ns(&mut svc.metadata);
            if let Some(s) = svc.spec.as_mut() {
                s.type_.get_or_insert_with(|| "ClusterIP".into());
                s.session_affinity.get_or_insert_with(|| "None".into());
                for p in s.ports.iter_mut().flatten() {
                    p.protocol.get_or_insert_with(|| "TCP".into());
                    p.target_port.get_or_insert(IntOrString::Int(p.port));
                }
            }
        }
        Object::ConfigMap(c) => ns(&mut c.metadata),
        Object::Secret(s) => {
            ns(&mut s.metadata);
            s.type_.get_or_insert_with(|| "Opaque".into());
            if let Some(sd) = s.string_data.take() {
                let data = s.data.get_or_insert_with(BTreeMap::new);
                for (k, v) in sd {
                    data.insert(k, ByteString(v.into_bytes()));
                }
            }
        }
        Object::Volume(v) => ns(&mut v.metadata),
        Object::StatefulSet(_)
        | Object::DaemonSet(_)
        | Object::ReplicaSet(_)
        | Object::ReplicationController(_) => {
            let m = match o {
                Object::StatefulSet(x) => &mut x.metadata,
                Object::DaemonSet(x) => &mut x.metadata,
                Object::ReplicaSet(x) => &mut x.metadata,
                Object::ReplicationController(x) => &mut x.metadata,
                _ => return,
            };
            ns(m);
            crate::workloads::defaults(o);
            if let Some(ps) = o.pod_template_mut().and_then(|t| t.spec.as_mut()) {
                pod_spec(ps);
            }
        }
        Object::Job(j) => {
            ns(&mut j.metadata);
            if let Some(s) = j.spec.as_mut() {
                job_spec(s);
            }
        }
        Object::CronJob(c) => {
            ns(&mut c.metadata);
            let s = &mut c.spec;
            s.concurrency_policy.get_or_insert_with(|| "Allow".into());
            s.suspend.get_or_insert(false);
            s.successful_jobs_history_limit.get_or_insert(3);
            s.failed_jobs_history_limit.get_or_insert(1);
            if let Some(js) = s.job_template.spec.as_mut() {
                job_spec(js);
            }
        }
    }
}

/// Job defaults as kube-apiserver fills them.
fn job_spec(s: &mut k8s_openapi::api::batch::v1::JobSpec) {
    if s.completions.is_none() && s.parallelism.is_none() {
        s.completions = Some(1);
    }
    s.parallelism.get_or_insert(1);
    s.backoff_limit.get_or_insert(6);
    s.completion_mode.get_or_insert_with(|| "NonIndexed".into());
    s.suspend.get_or_insert(false);
    if let Some(ps) = s.template.spec.as_mut() {
        pod_spec(ps);
    }
}

/// Pod-level and container-level defaults.
pub fn pod_spec(s: &mut PodSpec) {
    s.restart_policy.get_or_insert_with(|| "Always".into());
    s.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    s.termination_grace_period_seconds.get_or_insert(30);
    s.scheduler_name
        .get_or_insert_with(|| "default-scheduler".into());
    for c in s.init_containers.iter_mut().flatten() {
        container(c);
    }
    for c in s.containers.iter_mut() {
        container(c);
    }
}

fn container(c: &mut Container) {
    if c.image_pull_policy.is_none() {
        let image = c.image.as_deref().unwrap_or("");
        c.image_pull_policy = Some(default_pull_policy(image).into());
    }
    c.termination_message_path
        .get_or_insert_with(|| "/dev/termination-log".into());
    c.termination_message_policy
        .get_or_insert_with(|| "File".into());
    for p in c.ports.iter_mut().flatten() {
        p.protocol.get_or_insert_with(|| "TCP".into());
    }
    for p in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        probe(p);
    }
}

/// `Always` for `:latest` or no tag (and no digest), else `IfNotPresent`.
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn probe(p: &mut Probe) {
    p.period_seconds.get_or_insert(10);
    p.timeout_seconds.get_or_insert(1);
    p.success_threshold.get_or_insert(1);
    p.failure_threshold.get_or_insert(3);
    p.initial_delay_seconds.get_or_insert(0);
    if let Some(h) = p.http_get.as_mut() {
        h.scheme.get_or_insert_with(|| "HTTP".into());
        h.path.get_or_insert_with(|| "/".into());
    }
}

/// A PersistentVolumeClaim is read as berth's Volume: same metadata, size from
/// `spec.resources.requests.storage`, reclaim policy from the
/// `berth.dev/reclaim-policy` annotation (default Retain: data is never lost
/// by accident).
pub fn volume_from_pvc(pvc: PersistentVolumeClaim) -> Volume {
    let size = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone());
    let reclaim = match pvc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RECLAIM_ANNOTATION))
        .map(String::as_str)
    {
        Some("Delete") => ReclaimPolicy::Delete,
        _ => ReclaimPolicy::Retain,
    };
    Volume {
        api_version: API_VERSION.into(),
        kind: "Volume".into(),
        metadata: pvc.metadata,
        spec: VolumeSpec {
            reclaim_policy: reclaim,
            size,
        },
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy() {
        assert_eq!(default_pull_policy("busybox"), "Always");
        assert_eq!(default_pull_policy("busybox:latest"), "Always");
        assert_eq!(default_pull_policy("busybox:1.36"), "IfNotPresent");
        assert_eq!(default_pull_policy("host:5000/a/b"), "Always");
        assert_eq!(default_pull_policy("host:5000/a/b:v1"), "IfNotPresent");
        assert_eq!(default_pull_policy("b@sha256:abc"), "IfNotPresent");
    }
}

//! The closed set of kinds berth understands, and the key that names an object.

use std::fmt;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ReplicationController, Secret, Service};
use serde::{Deserialize, Serialize};

use crate::volume::Volume;

/// The kinds berth reconciles. `PersistentVolumeClaim` manifests become [`Kind::Volume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    Pod,
    Deployment,
    Service,
    Volume,
    ConfigMap,
    Secret,
    Job,
    CronJob,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    ReplicationController,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Pod,
        Kind::Deployment,
        Kind::Service,
        Kind::Volume,
        Kind::ConfigMap,
        Kind::Secret,
        Kind::Job,
        Kind::CronJob,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::ReplicaSet,
        Kind::ReplicationController,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::Deployment => "Deployment",
            Kind::Service => "Service",
            Kind::Volume => "Volume",
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
            Kind::Job => "Job",
            Kind::CronJob => "CronJob",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::ReplicationController => "ReplicationController",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names one object: kind, namespace (defaulted to `default`) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    /// `Kind/namespace/name`, the form used in logs and events.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// One typed object. Defaults are applied by the parser before it is handed out.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Object {
    Pod(Box<Pod>),
    Deployment(Box<Deployment>),
    Service(Box<Service>),
    Volume(Box<Volume>),
    ConfigMap(Box<ConfigMap>),
    Secret(Box<Secret>),
    Job(Box<Job>),
    CronJob(Box<CronJob>),
    StatefulSet(Box<StatefulSet>),
    DaemonSet(Box<DaemonSet>),
    ReplicaSet(Box<ReplicaSet>),
    ReplicationController(Box<ReplicationController>),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Pod(_) => Kind::Pod,
            Object::Deployment(_) => Kind::Deployment,
            Object::Service(_) => Kind::Service,
            Object::Volume(_) => Kind::Volume,
            Object::ConfigMap(_) => Kind::ConfigMap,
            Object::Secret(_) => Kind::Secret,
            Object::Job(_) => Kind::Job,
            Object::CronJob(_) => Kind::CronJob,
            Object::StatefulSet(_) => Kind::StatefulSet,
            Object::DaemonSet(_) => Kind::DaemonSet,
            Object::ReplicaSet(_) => Kind::ReplicaSet,
            Object::ReplicationController(_) => Kind::ReplicationController,
        }
    }

    /// The apiVersion of this kind as berth writes it (`v1`, `apps/v1`,
    /// `berth.dev/v1alpha1`); a PersistentVolumeClaim was converted to Volume.
    pub fn api_version(&self) -> &'static str {
        match self {
            Object::Deployment(_)
            | Object::StatefulSet(_)
            | Object::DaemonSet(_)
            | Object::ReplicaSet(_) => "apps/v1",
            Object::Volume(_) => crate::volume::API_VERSION,
            Object::Job(_) | Object::CronJob(_) => "batch/v1",
            Object::Pod(_)
            | Object::Service(_)
            | Object::ConfigMap(_)
            | Object::Secret(_)
            | Object::ReplicationController(_) => "v1",
        }
    }

    pub fn metadata(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            Object::Pod(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::Volume(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::Job(o) => &o.metadata,
            Object::CronJob(o) => &o.metadata,
            Object::StatefulSet(o) => &o.metadata,
            Object::DaemonSet(o) => &o.metadata,
            Object::ReplicaSet(o) => &o.metadata,
            Object::ReplicationController(o) => &o.metadata,
        }
    }

    /// The pod spec this object runs (a Pod's own, a controller's template)
    /// and its path in the object, for rules that apply to every pod spec.
    pub fn pod_spec(&self) -> Option<(&'static str, &k8s_openapi::api::core::v1::PodSpec)> {
        match self {
            Object::Pod(p) => p.spec.as_ref().map(|s| ("spec", s)),
            Object::Job(j) => j
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .map(|s| ("spec.template.spec", s)),
            Object::CronJob(c) => c
                .spec
                .job_template
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .map(|s| ("spec.jobTemplate.spec.template.spec", s)),
            o => o
                .pod_template()
                .and_then(|t| t.spec.as_ref())
                .map(|s| ("spec.template.spec", s)),
        }
    }

    /// The pod template of a replicated workload (Deployment, StatefulSet,
    /// DaemonSet, ReplicaSet, ReplicationController).
    pub fn pod_template(&self) -> Option<&k8s_openapi::api::core::v1::PodTemplateSpec> {
        match self {
            Object::Deployment(o) => Some(&o.spec.template),
            Object::StatefulSet(o) => Some(&o.spec.template),
            Object::DaemonSet(o) => Some(&o.spec.template),
            Object::ReplicaSet(o) => o.spec.template.as_ref(),
            Object::ReplicationController(o) => o.spec.as_ref()?.template.as_ref(),
            _ => None,
        }
    }

    /// [`Object::pod_template`], mutable.
    pub fn pod_template_mut(&mut self) -> Option<&mut k8s_openapi::api::core::v1::PodTemplateSpec> {
        match self {
            Object::Deployment(o) => Some(&mut o.spec.template),
            Object::StatefulSet(o) => Some(&mut o.spec.template),
            Object::DaemonSet(o) => Some(&mut o.spec.template),
            Object::ReplicaSet(o) => o.spec.template.as_mut(),
            Object::ReplicationController(o) => o.spec.as_mut()?.template.as_mut(),
            _ => None,
        }
    }

    /// The key of this object; the namespace is `default` when unset.
    pub fn key(&self) -> ObjectKey {
        let m = self.metadata();
        ObjectKey::new(
            self.kind(),
            namespace_of(m),
            m.name.clone().unwrap_or_default(),
        )
    }
}

/// Kubernetes' namespace of an object that names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The namespace of an object. Sources set it on load ([`crate::defaults`]);
/// this is the one place that knows the default, for objects built otherwise.
pub fn namespace_of(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    m.namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE)
}

/// Where an object (or a diagnostic) came from: file and 1-based line/column of
/// the start of its YAML document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// An object together with where it was read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sourced {
    pub object: Object,
    pub location: Location,
}

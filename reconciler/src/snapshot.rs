//! Building the status snapshot the API serves: Kubernetes objects with `status`.
//!
//! A pure projection of the desired set and the controller's observed state
//! (pods, the last Deployment plans, Service assignments, events): nothing
//! here plans or decides.

use std::collections::BTreeMap;

use berth_spec::k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus};
use berth_spec::k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Pod, PodCondition, PodStatus, PortStatus, Service,
    ServiceStatus,
};
use berth_spec::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use berth_spec::volume::VolumeStatus;
use berth_spec::{Object, Volume};

use crate::controller::Reconciler;
use crate::deployment;
use crate::desired::DesiredState;
use crate::pod::status::time;
use crate::status::Snapshot;

mod replicated;

pub(crate) fn build<I, R, N>(
    r: &Reconciler<I, R, N>,
    desired: &DesiredState,
    version: u64,
    passes: u64,
) -> Snapshot {
    let mut pods = Vec::new();
    let mut logs = Vec::new();
    for ((ns, name), e) in &r.pods {
        let mut labels = e.record.labels.clone();
        let owner = e.record.owner.as_deref().map(|o| {
            (
                e.record.owner_kind.unwrap_or(berth_spec::Kind::Deployment),
                o,
            )
        });
        if let (Some(h), Some((berth_spec::Kind::Deployment, _))) = (&e.record.template_hash, owner)
        {
            labels.insert(crate::controller::LABEL_TEMPLATE_HASH.into(), h.clone());
        }
        let mut spec = e.record.spec.clone();
        spec.node_name = Some(r.cfg().node_name.clone());
        pods.push(Pod {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                uid: Some(e.record.pod.uid.clone()),
                labels: Some(labels),
                annotations: (!e.annotations.is_empty()).then(|| e.annotations.clone()),
                creation_timestamp: Some(time(e.record.created)),
                deletion_timestamp: e.terminating.map(time),
                owner_references: owner.map(|(kind, o)| {
                    let job = kind == berth_spec::Kind::Job;
                    vec![OwnerReference {
                        api_version: crate::owner::api_version(kind).into(),
                        kind: kind.as_str().into(),
                        name: o.to_string(),
                        uid: if job {
                            e.record
                                .labels
                                .get(crate::controller::jobs::LABEL_CONTROLLER_UID)
                                .cloned()
                                .unwrap_or_default()
                        } else {
                            String::new()
                        },
                        controller: Some(true),
                        block_owner_deletion: job.then_some(true),
                    }]
                }),
                ..Default::default()
            },
            spec: Some(spec),
            status: Some(e.status.clone().unwrap_or_else(|| PodStatus {
                phase: Some("Pending".into()),
                ..Default::default()
            })),
        });
        for (c, path) in &e.logs {
            logs.push((ns.clone(), name.clone(), c.clone(), path.clone()));
        }
    }
    for ((ns, name), (d, msg)) in &r.blocked {
        pods.push(Pod {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                labels: Some(d.labels.clone()),
                ..Default::default()
            },
            spec: Some(d.spec.clone()),
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                conditions: Some(vec![PodCondition {
                    type_: "PodScheduled".into(),
                    status: "False".into(),
                    reason: Some("Unschedulable".into()),
                    message: Some(msg.clone()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        });
    }

    let mut deployments = Vec::new();
    let mut services = Vec::new();
    let mut volumes = Vec::new();
    let mut stateful_sets = Vec::new();
    let mut daemon_sets = Vec::new();
    let mut replica_sets = Vec::new();
    let mut replication_controllers = Vec::new();
    for s in desired.objects.values() {
        match &s.object {
            Object::StatefulSet(x) => stateful_sets.push(replicated::stateful_set(r, x)),
            Object::DaemonSet(x) => daemon_sets.push(replicated::daemon_set(r, x)),
            Object::ReplicaSet(x) => replica_sets.push(replicated::replica_set(r, x)),
            Object::ReplicationController(x) => {
                replication_controllers.push(replicated::replication_controller(r, x))
            }
            Object::Deployment(d) => deployments.push(deployment_status(r, d)),
            Object::Service(svc) => services.push(service_status(r, svc, &pods)),
            Object::Volume(v) => volumes.push(volume_status(r, v)),
            _ => {}
        }
    }
    let (jobs, cron_jobs) = crate::batch_status::build(r, desired);
    Snapshot {
        version,
        pods,
        deployments,
        services,
        volumes,
        jobs,
        cron_jobs,
        stateful_sets,
        daemon_sets,
        replica_sets,
        replication_controllers,
        events: r.events.to_vec(),
        logs,
        reconcile_passes: passes,
        ready: true,
        conditions: r.last_conditions.clone(),
    }
}

fn deployment_status<I, R, N>(r: &Reconciler<I, R, N>, d: &Deployment) -> Deployment {
    let mut d = d.clone();
    let ns = berth_spec::namespace_of(&d.metadata).to_string();
    let name = d.metadata.name.clone().unwrap_or_default();
    let spec = d.spec.clone();
    let spec = &spec;
    let hash = deployment::template_hash(&spec.template);
    // the controller's last plan of this Deployment (none yet: nothing counted)
    let progress = r.progress.get(&(ns.clone(), name.clone()));
    let stalled = progress.is_some_and(|p| p.stalled);
    let complete = progress.is_some_and(|p| p.complete && p.hash == hash);
    let c = progress.map(|p| p.last_counts.clone()).unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let (_, max_unavail) = deployment::surge_unavailable(spec.strategy.as_ref(), replicas);
    let now = time(std::time::SystemTime::now());
    let cond = |type_: &str, ok: bool, reason: &str, message: String| DeploymentCondition {
        type_: Some(type_.into()),
        status: Some(if ok { "True" } else { "False" }.into()),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    let available = c.available >= replicas - max_unavail;
    let progressing = if stalled {
        cond(
            "Progressing",
            false,
            "ProgressDeadlineExceeded",
            format!("ReplicaSet \"{name}-{hash}\" has timed out progressing."),
        )
    } else if complete {
        cond(
            "Progressing",
            true,
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{name}-{hash}\" has successfully progressed."),
        )
    } else {
        cond(
            "Progressing",
            true,
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{name}-{hash}\" is progressing."),
        )
    };
    d.status = Some(DeploymentStatus {
        observed_generation: Some(1),
        replicas: Some(c.replicas),
        updated_replicas: Some(c.updated),
        ready_replicas: Some(c.ready),
        available_replicas: Some(c.available),
        unavailable_replicas: Some(c.unavailable),
        conditions: Some(vec![
            cond(
                "Available",
                available,
                if available {
                    "MinimumReplicasAvailable"
                } else {
                    "MinimumReplicasUnavailable"
                },
                if available {
                    "Deployment has minimum availability.".into()
                } else {
                    "Deployment does not have minimum availability.".into()
                },
            ),
            progressing,
        ]),
        ..Default::default()
    });
    d
}

fn service_status<I, R, N>(r: &Reconciler<I, R, N>, s: &Service, _pods: &[Pod]) -> Service {
    let mut s = s.clone();
    let key = (
        berth_spec::namespace_of(&s.metadata).to_string(),
        s.metadata.name.clone().unwrap_or_default(),
    );
    let headless = s
        .spec
        .as_ref()
        .is_some_and(|sp| sp.cluster_ip.as_deref() == Some("None"));
    let load_balancer = s
        .spec
        .as_ref()
        .is_some_and(|sp| sp.type_.as_deref() == Some("LoadBalancer"));
    if let (Some(a), Some(spec)) = (r.assigned.get(&key), s.spec.as_ref())
        && a.error.is_none()
        && load_balancer
    {
        // the ports are published on the host's addresses (servicelb)
        let ports: Vec<PortStatus> = spec
            .ports
            .iter()
            .flatten()
            .map(|p| PortStatus {
                port: p.port,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                error: None,
            })
            .collect();
        s.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: r.cfg.host_ip.map(|ip| {
                    vec![LoadBalancerIngress {
                        ip: Some(ip.to_string()),
                        ip_mode: Some("VIP".into()),
                        ports: Some(ports),
                        ..Default::default()
                    }]
                }),
            }),
            ..Default::default()
        });
    }
    if let (Some(a), Some(spec)) = (r.assigned.get(&key), s.spec.as_mut()) {
        let ip = if headless {
            "None".to_string()
        } else {
            a.cluster_ip.to_string()
        };
        spec.cluster_ip = Some(ip.clone());
        spec.cluster_ips = Some(vec![ip]);
        for p in spec.ports.iter_mut().flatten() {
            if let Some((_, np)) = a
                .node_ports
                .iter()
                .find(|(port, _)| i32::from(*port) == p.port)
            {
                p.node_port = Some(i32::from(*np));
            }
        }
        let mut ann = s.metadata.annotations.clone().unwrap_or_default();
        if let Some(err) = &a.error {
            ann.insert("berth.dev/error".into(), err.clone());
        }
        s.metadata.annotations = Some(ann);
    }
    // ready endpoints, as berth programs them
    let eps = endpoints(r, &key);
    let mut ann: BTreeMap<String, String> = s.metadata.annotations.clone().unwrap_or_default();
    ann.insert("berth.dev/ready-endpoints".into(), eps.join(","));
    s.metadata.annotations = Some(ann);
    s
}

fn endpoints<I, R, N>(r: &Reconciler<I, R, N>, key: &(String, String)) -> Vec<String> {
    r.assigned_endpoints(key)
}

fn volume_status<I, R, N>(r: &Reconciler<I, R, N>, v: &Volume) -> Volume {
    let mut v = v.clone();
    let ns = berth_spec::namespace_of(&v.metadata).to_string();
    let name = v.metadata.name.clone().unwrap_or_default();
    let path = r
        .claims
        .get(&(ns.clone(), name.clone()))
        .and_then(|c| c.path.clone());
    let used_by: Vec<String> = r
        .pods
        .values()
        .filter(|e| {
            e.record.pod.namespace == ns
                && e.terminating.is_none()
                && e.record.spec.volumes.iter().flatten().any(|vol| {
                    vol.persistent_volume_claim
                        .as_ref()
                        .is_some_and(|c| c.claim_name == name)
                })
        })
        .map(|e| e.record.pod.name.clone())
        .collect();
    v.status =
        Some(VolumeStatus {
            phase: Some(if path.is_some() { "Bound" } else { "Pending" }.into()),
            host_path: path.map(|p| p.display().to_string()),
            used_bytes: r.volume_usage(&ns, &name),
            used_by,
            message: v.spec.size.as_ref().map(|s| {
                format!("size {s} is not enforced: berth does not set filesystem quotas yet")
            }),
        });
    v
}

//! Deployments: ReplicaSet-like revisions and rollouts, planned purely.
//!
//! Pods of a Deployment are named `<deployment>-<template hash>-<suffix>` and
//! carry the `pod-template-hash` label. [`plan`] decides, from the pods that
//! exist now, how many pods of the current template to create and which pods
//! to delete, following RollingUpdate (maxSurge / maxUnavailable, counting only
//! available pods) or Recreate. As in Kubernetes, terminating pods do not
//! count against maxSurge, so a rollout does not wait for an old pod's grace
//! period, unless the old pod still holds a hostPort the new pods need.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use berth_spec::k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy};
use berth_spec::k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use berth_spec::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The hash that names a template revision (pod-template-hash).
pub fn template_hash(t: &PodTemplateSpec) -> String {
    crate::hash::spec_hash(t)
}

/// A pod of this Deployment as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodObs {
    pub name: String,
    pub template_hash: String,
    pub ready: bool,
    /// Ready since (for minReadySeconds).
    pub ready_since: Option<SystemTime>,
    pub terminating: bool,
    pub created: SystemTime,
    /// The host ports (port, protocol) the pod holds.
    pub host_ports: BTreeSet<(i32, String)>,
}

/// The host ports (port, protocol) a pod spec asks for.
pub fn host_ports(spec: Option<&PodSpec>) -> BTreeSet<(i32, String)> {
    spec.into_iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|h| *h > 0)?;
            Some((port, p.protocol.clone().unwrap_or_else(|| "TCP".into())))
        })
        .collect()
}

impl PodObs {
    fn available(&self, min_ready: Duration, now: SystemTime) -> bool {
        self.ready
            && !self.terminating
            && self
                .ready_since
                .is_some_and(|t| now.duration_since(t).unwrap_or_default() >= min_ready)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Pods of the current template to create.
    pub create: usize,
    /// Pods to delete (gracefully).
    pub delete: Vec<String>,
    pub counts: Counts,
    /// All non-terminating pods run the current template, ready and enough.
    pub complete: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub replicas: i32,
    pub updated: i32,
    pub ready: i32,
    pub available: i32,
    pub unavailable: i32,
}

fn scaled(v: Option<&IntOrString>, replicas: i32, default_pct: i32, round_up: bool) -> i32 {
    match v {
        Some(IntOrString::Int(n)) => (*n).max(0),
        Some(IntOrString::String(s)) => {
            let pct: i32 = s.trim_end_matches('%').parse().unwrap_or(default_pct);
            percent(replicas, pct, round_up)
        }
        None => percent(replicas, default_pct, round_up),
    }
}

fn percent(replicas: i32, pct: i32, round_up: bool) -> i32 {
    let x = replicas as i64 * pct as i64;
    (if round_up { (x + 99) / 100 } else { x / 100 }) as i32
}

/// (maxSurge, maxUnavailable) resolved as Kubernetes does: surge rounds up,
/// unavailable rounds down, and both zero means unavailable 1.
pub fn surge_unavailable(strategy: Option<&DeploymentStrategy>, replicas: i32) -> (i32, i32) {
    let ru = strategy.and_then(|s| s.rolling_update.as_ref());
    let surge = scaled(ru.and_then(|r| r.max_surge.as_ref()), replicas, 25, true);
    let mut unavail = scaled(
        ru.and_then(|r| r.max_unavailable.as_ref()),
        replicas,
        25,
        false,
    );
    if surge == 0 && unavail == 0 {
        unavail = 1;
    }
    (surge, unavail)
}

/// Plan one step of the rollout. `stalled` (progress deadline exceeded) stops
/// replacing old pods and creating new ones beyond what already exists.
pub fn plan(
    spec: &DeploymentSpec,
    hash: &str,
    pods: &[PodObs],
    now: SystemTime,
    stalled: bool,
) -> Plan {
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let min_ready = Duration::from_secs(spec.min_ready_seconds.unwrap_or(0).max(0) as u64);
    let live: Vec<&PodObs> = pods.iter().filter(|p| !p.terminating).collect();
    let (new, old): (Vec<&PodObs>, Vec<&PodObs>) =
        live.iter().partition(|p| p.template_hash == hash);
    let available = live.iter().filter(|p| p.available(min_ready, now)).count() as i32;
    let counts = Counts {
        replicas: live.len() as i32,
        updated: new.len() as i32,
        ready: live.iter().filter(|p| p.ready).count() as i32,
        available,
        unavailable: (replicas - available).max(0),
    };
    let new_available = new.iter().filter(|p| p.available(min_ready, now)).count() as i32;
    let complete = old.is_empty() && new.len() as i32 == replicas && new_available == replicas;
    let mut out = Plan {
        counts,
        complete,
        ..Default::default()
    };
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");

    // Too many pods of the current template: drop the least useful first.
    let excess_new = |out: &mut Plan| {
        let extra = new.len() as i32 - replicas;
        if extra > 0 && old.is_empty() {
            let mut victims: Vec<&&PodObs> = new.iter().collect();
            victims.sort_by_key(|p| (p.ready, std::cmp::Reverse(p.created)));
            out.delete
                .extend(victims.iter().take(extra as usize).map(|p| p.name.clone()));
        }
    };

    if recreate {
        if !old.is_empty() {
            out.delete.extend(old.iter().map(|p| p.name.clone()));
            return out;
        }
        // wait until old pods have fully terminated
        if pods
            .iter()
            .any(|p| p.terminating && p.template_hash != hash)
        {
            return out;
        }
        out.create = (replicas - new.len() as i32).max(0) as usize;
        excess_new(&mut out);
        return out;
    }

    let (surge, max_unavail) = surge_unavailable(spec.strategy.as_ref(), replicas);
    if old.is_empty() {
        out.create = (replicas - new.len() as i32).max(0) as usize;
        excess_new(&mut out);
        return out;
    }
    if stalled {
        return out;
    }
    // Scale up the new revision within maxSurge. Terminating pods do not
    // count (Kubernetes semantics), except one still holding a hostPort of
    // the template: the new pod could not bind it yet.
    let wanted_ports = host_ports(spec.template.spec.as_ref());
    let blocking = pods
        .iter()
        .filter(|p| p.terminating && !p.host_ports.is_disjoint(&wanted_ports))
        .count();
    let total = (live.len() + blocking) as i32;
    let want_new = replicas - new.len() as i32;
    let room = replicas + surge - total;
    if want_new > 0 && room > 0 {
        out.create = want_new.min(room) as usize;
    }
    // Scale down old: unavailable old pods first (they serve nothing), then
    // available ones while availability stays >= replicas - maxUnavailable.
    let min_available = replicas - max_unavail;
    let mut old_sorted: Vec<&&PodObs> = old.iter().collect();
    old_sorted.sort_by_key(|p| (p.available(min_ready, now), p.created));
    let mut avail = available;
    for p in old_sorted {
        if p.available(min_ready, now) {
            if avail - 1 < min_available {
                break;
            }
            avail -= 1;
        }
        // unavailable old pods serve nothing: they can always go
        out.delete.push(p.name.clone());
    }
    out
}

#[cfg(test)]
mod tests;

//! Valid Kubernetes that berth cannot honour on its single host: a clear
//! per-object error instead of silently different behaviour (DESIGN.md,
//! "Kinds and API versions"). Pure scheduling preferences that cannot change
//! the outcome on one host (preferred affinities) are warnings; tolerations,
//! priorities and spread constraints are accepted silently. Required node
//! affinity is checked here for form and evaluated by the agent against the
//! node's labels, like nodeSelector.

use k8s_openapi::api::core::v1::{Container, NodeSelector, PodSpec};

use super::Out;

/// `kubernetes.io/arch` of the host berth runs on (the architecture it was built for).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn unsupported(o: &mut Out, path: String, what: &str) {
    o.err(path, format!("{what} is not supported by berth"));
}

pub(crate) fn pod_spec(o: &mut Out, base: &str, s: &PodSpec) {
    // hostPID, hostIPC and shareProcessNamespace are honoured (the operator
    // policy may forbid the first two); the remaining fields: `pod_fields`
    super::pod_fields::pod_spec(o, base, s);
    super::dns::pod_spec(o, base, s);
    super::security_profiles::pod_spec(o, base, s);
    if let Some(r) = &s.resources {
        // pod-level resources: the pod cgroup's limits
        super::container::resources(o, &format!("{base}.resources"), r);
    }
    if s.scheduling_gates.as_ref().is_some_and(|g| !g.is_empty()) {
        o.warn(
            format!("{base}.schedulingGates"),
            "schedulingGates are ignored by berth (one host, no scheduler): the pod runs at once",
        );
    }
    if s.runtime_class_name
        .as_deref()
        .is_some_and(|r| !r.is_empty())
    {
        unsupported(o, format!("{base}.runtimeClassName"), "runtimeClassName");
    }
    if s.ephemeral_containers
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        unsupported(
            o,
            format!("{base}.ephemeralContainers"),
            "ephemeralContainers",
        );
    }
    if s.readiness_gates.as_ref().is_some_and(|g| !g.is_empty()) {
        o.err(
            format!("{base}.readinessGates"),
            "readinessGates are not supported by berth (nothing would set the condition, so the pod would never be ready)",
        );
    }
    if let Some(os) = s.os.as_ref().filter(|os| os.name != "linux") {
        o.err(
            format!("{base}.os.name"),
            format!("{:?} does not match this host (linux)", os.name),
        );
    }
    // nodeSelector is not validated here: whether it matches depends on the
    // host (--node-name, --node-labels), and a pod for another host in a shared
    // repository is "not scheduled here", never an error (issue 8, fleets).

    if let Some(a) = &s.affinity {
        let p = format!("{base}.affinity");
        let node_req = a.node_affinity.as_ref().and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
        if let Some(req) = node_req {
            // evaluated against this node's labels by the agent, like nodeSelector
            node_selector(
                o,
                &format!("{p}.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"),
                req,
            );
        }
        let pod_req = [
            &a.pod_affinity
                .as_ref()
                .map(|p| &p.required_during_scheduling_ignored_during_execution),
            &a.pod_anti_affinity
                .as_ref()
                .map(|p| &p.required_during_scheduling_ignored_during_execution),
        ]
        .iter()
        .any(|r| r.is_some_and(|r| r.as_ref().is_some_and(|v| !v.is_empty())));
        let preferred = a.node_affinity.as_ref().is_some_and(|n| {
            n.preferred_during_scheduling_ignored_during_execution
                .as_ref()
                .is_some_and(|v| !v.is_empty())
        }) || a.pod_affinity.as_ref().is_some_and(|x| {
            x.preferred_during_scheduling_ignored_during_execution
                .as_ref()
                .is_some_and(|v| !v.is_empty())
        }) || a.pod_anti_affinity.as_ref().is_some_and(|x| {
            x.preferred_during_scheduling_ignored_during_execution
                .as_ref()
                .is_some_and(|v| !v.is_empty())
        });
        if pod_req {
            o.err(
                p,
                "required pod (anti-)affinity is not supported by berth (it places pods relative to each other across nodes; berth is one node)",
            );
        } else if preferred {
            o.warn(p, "preferred affinities are ignored by berth (one host)");
        }
    }
    if let Some(sc) = &s.security_context {
        let p = format!("{base}.securityContext");
        if sc.se_linux_options.is_some() {
            unsupported(o, format!("{p}.seLinuxOptions"), "seLinuxOptions");
        }
        if sc.windows_options.is_some() {
            unsupported(o, format!("{p}.windowsOptions"), "windowsOptions");
        }
        if sc.sysctls.as_ref().is_some_and(|s| !s.is_empty()) {
            o.err(format!("{p}.sysctls"), "sysctls are not supported by berth");
        }
    }
    for (i, c) in s.init_containers.iter().flatten().enumerate() {
        let p = format!("{base}.initContainers[{i}]");
        super::lifecycle::restart_policy(o, &p, c, true);
        super::lifecycle::hooks(o, &p, c, true, super::lifecycle::is_sidecar(c));
        container(o, &p, c);
    }
    for (i, c) in s.containers.iter().enumerate() {
        let p = format!("{base}.containers[{i}]");
        super::lifecycle::restart_policy(o, &p, c, false);
        super::lifecycle::hooks(o, &p, c, false, false);
        container(o, &p, c);
    }
}

/// A required node affinity: valid operators and values (whether it matches
/// this node is the agent's business).
fn node_selector(o: &mut Out, p: &str, sel: &NodeSelector) {
    if sel.node_selector_terms.is_empty() {
        o.err(
            format!("{p}.nodeSelectorTerms"),
            "at least one term is required",
        );
    }
    for (i, t) in sel.node_selector_terms.iter().enumerate() {
        let tp = format!("{p}.nodeSelectorTerms[{i}]");
        let exprs = t
            .match_expressions
            .iter()
            .flatten()
            .map(|r| (r, "matchExpressions"));
        let fields = t.match_fields.iter().flatten().map(|r| (r, "matchFields"));
        let mut per: std::collections::BTreeMap<&str, usize> = Default::default();
        for (r, what) in exprs.chain(fields) {
            let n = per.entry(what).or_default();
            let rp = format!("{tp}.{what}[{n}]");
            *n += 1;
            let count = r.values.as_ref().map_or(0, Vec::len);
            let ok = match r.operator.as_str() {
                "In" | "NotIn" => count > 0,
                "Exists" | "DoesNotExist" => count == 0,
                "Gt" | "Lt" => {
                    count == 1
                        && r.values
                            .as_ref()
                            .is_some_and(|v| v[0].parse::<i64>().is_ok())
                }
                other => {
                    o.err(
                        format!("{rp}.operator"),
                        format!(
                            "{other:?} is not valid (In, NotIn, Exists, DoesNotExist, Gt or Lt)"
                        ),
                    );
                    continue;
                }
            };
            if !ok {
                o.err(
                    format!("{rp}.values"),
                    format!(
                        "wrong values for operator {} (In/NotIn: one or more; Exists/DoesNotExist: none; Gt/Lt: one integer)",
                        r.operator
                    ),
                );
            }
            if what == "matchFields" && r.key != "metadata.name" {
                o.err(
                    format!("{rp}.key"),
                    format!("{:?} is not a supported field (metadata.name)", r.key),
                );
            }
        }
    }
}

fn container(o: &mut Out, p: &str, c: &Container) {
    if let Some(sc) = &c.security_context {
        let sp = format!("{p}.securityContext");
        if sc.se_linux_options.is_some() {
            unsupported(o, format!("{sp}.seLinuxOptions"), "seLinuxOptions");
        }
        if sc.windows_options.is_some() {
            unsupported(o, format!("{sp}.windowsOptions"), "windowsOptions");
        }
        if sc.proc_mount.as_deref().is_some_and(|m| m != "Default") {
            unsupported(o, format!("{sp}.procMount"), "procMount other than Default");
        }
    }
    for (j, m) in c.volume_mounts.iter().flatten().enumerate() {
        let mp = format!("{p}.volumeMounts[{j}]");
        if m.mount_propagation.as_deref().is_some_and(|x| x != "None") {
            unsupported(o, format!("{mp}.mountPropagation"), "mount propagation");
        }
        if m.sub_path_expr.as_deref().is_some_and(|x| !x.is_empty()) {
            unsupported(o, format!("{mp}.subPathExpr"), "subPathExpr");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    // Regression: a nodeSelector for another host (or arch) is not an error:
    // one repository drives many hosts; the agent leaves such pods out (issue 8).
    #[test]
    fn node_selector_for_another_host_is_not_an_error() {
        let s = PodSpec {
            node_selector: Some(BTreeMap::from([
                ("kubernetes.io/arch".to_string(), "sparc".to_string()),
                ("site".to_string(), "north".to_string()),
            ])),
            ..Default::default()
        };
        let mut o = Out(Vec::new());
        pod_spec(&mut o, "spec", &s);
        assert!(o.0.is_empty(), "{:?}", o.0);
    }
}

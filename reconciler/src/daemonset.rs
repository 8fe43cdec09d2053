//! DaemonSets on one node, planned purely.
//!
//! The agent's sources only hand the reconciler DaemonSets whose
//! nodeSelector and required node affinity match this node (the others are
//! listed as not scheduled), so a desired DaemonSet wants exactly one pod
//! here. Updates: `RollingUpdate` (maxUnavailable 1, maxSurge 0 on one node)
//! deletes the outdated pod and creates the new one once it is gone;
//! `OnDelete` replaces nothing (a deleted pod comes back at the current
//! revision).

use berth_spec::k8s_openapi::api::apps::v1::DaemonSetSpec;

/// A pod of the set as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodObs {
    pub name: String,
    pub revision: String,
    pub terminating: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub create: bool,
    pub delete: Vec<String>,
}

/// Plan one step. `revision` is the current template's revision.
pub fn plan(spec: &DaemonSetSpec, revision: &str, pods: &[PodObs]) -> Plan {
    let on_delete = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        == Some("OnDelete");
    let mut live: Vec<&PodObs> = pods.iter().filter(|p| !p.terminating).collect();
    // the current revision's pod first: it is the one kept
    live.sort_by_key(|p| (p.revision != revision, p.name.clone()));
    let mut out = Plan::default();
    let Some(first) = live.first() else {
        // nothing live: start one once the old pod is gone (maxSurge 0)
        out.create = pods.is_empty();
        return out;
    };
    out.delete.extend(live[1..].iter().map(|p| p.name.clone()));
    if first.revision != revision && !on_delete {
        out.delete.push(first.name.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use berth_spec::k8s_openapi::api::apps::v1::DaemonSetUpdateStrategy;

    use super::*;

    fn spec(strategy: &str) -> DaemonSetSpec {
        DaemonSetSpec {
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some(strategy.into()),
                rolling_update: None,
            }),
            ..Default::default()
        }
    }

    fn pod(name: &str, rev: &str, terminating: bool) -> PodObs {
        PodObs {
            name: name.into(),
            revision: rev.into(),
            terminating,
        }
    }

    /// (what, strategy, pods, create, delete)
    type Case = (
        &'static str,
        &'static str,
        Vec<PodObs>,
        bool,
        Vec<&'static str>,
    );

    #[test]
    fn table() {
        let cases: Vec<Case> = vec![
            ("none: create", "RollingUpdate", vec![], true, vec![]),
            (
                "current: nothing",
                "RollingUpdate",
                vec![pod("a", "r2", false)],
                false,
                vec![],
            ),
            (
                "outdated: delete it",
                "RollingUpdate",
                vec![pod("a", "r1", false)],
                false,
                vec!["a"],
            ),
            (
                "old pod still terminating: wait",
                "RollingUpdate",
                vec![pod("a", "r1", true)],
                false,
                vec![],
            ),
            (
                "OnDelete keeps the outdated pod",
                "OnDelete",
                vec![pod("a", "r1", false)],
                false,
                vec![],
            ),
            (
                "OnDelete recreates a deleted pod",
                "OnDelete",
                vec![],
                true,
                vec![],
            ),
            (
                "two pods: the current one stays",
                "RollingUpdate",
                vec![pod("a", "r1", false), pod("b", "r2", false)],
                false,
                vec!["a"],
            ),
        ];
        for (what, strategy, pods, create, delete) in cases {
            let p = plan(&spec(strategy), "r2", &pods);
            assert_eq!(p.create, create, "{what}");
            assert_eq!(p.delete, delete, "{what}");
        }
    }
}

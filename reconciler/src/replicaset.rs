//! ReplicaSets and ReplicationControllers on one node, planned purely.
//!
//! Kubernetes semantics: keep `replicas` live pods whose labels match the
//! selector. A changed template is not rolled out: existing pods stay as
//! they are and only pods created from now on use the new template. Scaling
//! down deletes the least useful pods first (not ready before ready, then
//! the newest), as the ReplicaSet controller ranks them.

use std::collections::BTreeMap;
use std::time::SystemTime;

/// A pod of the set as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodObs {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ready: bool,
    pub terminating: bool,
    pub created: SystemTime,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Pods of the current template to create.
    pub create: usize,
    /// Pods to delete (gracefully).
    pub delete: Vec<String>,
}

/// Whether `labels` satisfy a matchLabels selector (an empty selector
/// matches nothing, as for a controller).
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Plan one step: `replicas` wanted, `pods` the set's pods.
pub fn plan(replicas: i32, selector: &BTreeMap<String, String>, pods: &[PodObs]) -> Plan {
    let replicas = replicas.max(0) as usize;
    let mut live: Vec<&PodObs> = pods
        .iter()
        .filter(|p| !p.terminating && selects(selector, &p.labels))
        .collect();
    let mut out = Plan::default();
    if live.len() < replicas {
        out.create = replicas - live.len();
    } else if live.len() > replicas {
        // not ready first, then the newest
        live.sort_by_key(|p| (p.ready, std::cmp::Reverse(p.created)));
        out.delete = live[..live.len() - replicas]
            .iter()
            .map(|p| p.name.clone())
            .collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn sel() -> BTreeMap<String, String> {
        [("app".to_string(), "fe".to_string())].into()
    }

    fn pod(name: &str, ready: bool, age: u64) -> PodObs {
        PodObs {
            name: name.into(),
            labels: sel(),
            ready,
            terminating: false,
            created: SystemTime::UNIX_EPOCH + Duration::from_secs(1000 - age),
        }
    }

    /// (what, replicas, pods, create, delete)
    type Case = (&'static str, i32, Vec<PodObs>, usize, Vec<&'static str>);

    #[test]
    fn table() {
        let dying = PodObs {
            terminating: true,
            ..pod("d", true, 1)
        };
        let stray = PodObs {
            labels: [("app".to_string(), "other".to_string())].into(),
            ..pod("s", true, 1)
        };
        let cases: Vec<Case> = vec![
            ("empty: create all", 3, vec![], 3, vec![]),
            (
                "enough",
                2,
                vec![pod("a", true, 5), pod("b", false, 4)],
                0,
                vec![],
            ),
            ("one short", 2, vec![pod("a", true, 5)], 1, vec![]),
            (
                "terminating pods do not count",
                1,
                vec![dying.clone()],
                1,
                vec![],
            ),
            (
                "pods the selector does not match do not count",
                1,
                vec![stray],
                1,
                vec![],
            ),
            (
                "scale down: not ready first, then newest",
                1,
                vec![
                    pod("old", true, 9),
                    pod("new", true, 1),
                    pod("sick", false, 5),
                ],
                0,
                vec!["sick", "new"],
            ),
            (
                "scale to zero",
                0,
                vec![pod("a", true, 2), dying],
                0,
                vec!["a"],
            ),
            ("negative replicas is zero", -1, vec![], 0, vec![]),
        ];
        for (what, replicas, pods, create, delete) in cases {
            let p = plan(replicas, &sel(), &pods);
            assert_eq!(p.create, create, "{what}");
            assert_eq!(p.delete, delete, "{what}");
        }
    }

    #[test]
    fn empty_selector_selects_nothing() {
        assert!(!selects(&BTreeMap::new(), &sel()));
        assert!(selects(&sel(), &sel()));
    }
}

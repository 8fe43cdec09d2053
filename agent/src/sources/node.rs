//! This node's name and labels, and the scheduling check (issue 8, fleets):
//! `nodeSelector` and required `nodeAffinity` are evaluated against this
//! node's labels (and name, for `matchFields` on `metadata.name`), as
//! kube-scheduler would for a one-node cluster (issue 15).

use std::collections::BTreeMap;

use berth_spec::Object;
use berth_spec::k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, PodSpec};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl NodeInfo {
    /// Why `obj` does not run here, if its (template's) `nodeSelector` or
    /// required node affinity does not match this node.
    pub fn mismatch(&self, obj: &Object) -> Option<String> {
        let spec: &PodSpec = match obj {
            Object::Pod(p) => p.spec.as_ref()?,
            o => o.pod_template()?.spec.as_ref()?,
        };
        if let Some(sel) = &spec.node_selector {
            let missing: Vec<String> = sel
                .iter()
                .filter(|(k, v)| self.labels.get(*k) != Some(*v))
                .map(|(k, v)| match self.labels.get(k) {
                    Some(have) => format!("{k}={v} (node has {have})"),
                    None => format!("{k}={v} (node has no such label)"),
                })
                .collect();
            if !missing.is_empty() {
                return Some(format!(
                    "not scheduled on this node {:?} (nodeSelector {})",
                    self.name,
                    missing.join(", ")
                ));
            }
        }
        let required = spec
            .affinity
            .as_ref()?
            .node_affinity
            .as_ref()?
            .required_during_scheduling_ignored_during_execution
            .as_ref()?;
        self.affinity_mismatch(required).map(|why| {
            format!(
                "not scheduled on this node {:?} (required nodeAffinity: {why})",
                self.name
            )
        })
    }

    /// The terms are ORed; the requirements of one term are ANDed. `None`
    /// when some term matches, else why the first term does not.
    fn affinity_mismatch(&self, sel: &NodeSelector) -> Option<String> {
        let mut first = None;
        for term in &sel.node_selector_terms {
            let exprs = term.match_expressions.iter().flatten();
            let fields = term.match_fields.iter().flatten();
            let failed = exprs
                .map(|r| (r, self.labels.get(&r.key).map(String::as_str)))
                .chain(fields.map(|r| {
                    let v = (r.key == "metadata.name").then_some(self.name.as_str());
                    (r, v)
                }))
                .find(|(r, v)| !requirement_holds(r, *v));
            match failed {
                None if term.match_expressions.iter().flatten().next().is_some()
                    || term.match_fields.iter().flatten().next().is_some() =>
                {
                    return None;
                }
                // an empty term matches nothing (Kubernetes semantics)
                None => first = first.or_else(|| Some("an empty term matches no node".into())),
                Some((r, have)) => {
                    first = first.or_else(|| {
                        Some(format!(
                            "{} {} {:?} (node has {})",
                            r.key,
                            r.operator,
                            r.values.clone().unwrap_or_default(),
                            have.map_or("no such label".into(), |h| format!("{h:?}"))
                        ))
                    })
                }
            }
        }
        Some(first.unwrap_or_else(|| "no nodeSelectorTerms".into()))
    }
}

/// One requirement against the node's value for its key (None: absent).
fn requirement_holds(r: &NodeSelectorRequirement, have: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => have.is_some_and(|h| values.iter().any(|v| v == h)),
        "NotIn" => have.is_none_or(|h| values.iter().all(|v| v != h)),
        "Exists" => have.is_some(),
        "DoesNotExist" => have.is_none(),
        "Gt" | "Lt" => {
            let (Some(h), Some(v)) = (
                have.and_then(number),
                values.first().and_then(|v| number(v)),
            ) else {
                return false;
            };
            if r.operator == "Gt" { h > v } else { h < v }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use berth_spec::k8s_openapi::api::core::v1::{
        Affinity, Container, NodeAffinity, NodeSelectorTerm, Pod,
    };

    use super::*;

    fn node() -> NodeInfo {
        NodeInfo {
            name: "edge1".into(),
            labels: BTreeMap::from([
                ("disktype".to_string(), "ssd".to_string()),
                ("cores".to_string(), "4".to_string()),
                ("kubernetes.io/hostname".to_string(), "edge1".to_string()),
            ]),
        }
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn pod(terms: Vec<Vec<NodeSelectorRequirement>>, fields: bool) -> Object {
        let terms = terms
            .into_iter()
            .map(|rs| NodeSelectorTerm {
                match_expressions: (!fields).then(|| rs.clone()),
                match_fields: fields.then_some(rs),
            })
            .collect();
        Object::Pod(Box::new(Pod {
            spec: Some(PodSpec {
                containers: vec![Container::default()],
                affinity: Some(Affinity {
                    node_affinity: Some(NodeAffinity {
                        required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                            node_selector_terms: terms,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    #[test]
    fn required_node_affinity_is_evaluated_like_the_scheduler() {
        let n = node();
        // (terms, matches this node)
        let cases: Vec<(Vec<Vec<NodeSelectorRequirement>>, bool)> = vec![
            (vec![vec![req("disktype", "In", &["ssd", "nvme"])]], true),
            (vec![vec![req("disktype", "In", &["hdd"])]], false),
            (vec![vec![req("disktype", "NotIn", &["hdd"])]], true),
            (vec![vec![req("zone", "NotIn", &["a"])]], true),
            (vec![vec![req("disktype", "Exists", &[])]], true),
            (vec![vec![req("gpu", "Exists", &[])]], false),
            (vec![vec![req("gpu", "DoesNotExist", &[])]], true),
            (vec![vec![req("cores", "Gt", &["2"])]], true),
            (vec![vec![req("cores", "Lt", &["2"])]], false),
            (vec![vec![req("disktype", "Gt", &["2"])]], false),
            // ANDed within a term
            (
                vec![vec![
                    req("disktype", "In", &["ssd"]),
                    req("gpu", "Exists", &[]),
                ]],
                false,
            ),
            // ORed across terms
            (
                vec![
                    vec![req("gpu", "Exists", &[])],
                    vec![req("disktype", "In", &["ssd"])],
                ],
                true,
            ),
            (vec![vec![]], false),
            (vec![], false),
        ];
        for (i, (terms, want)) in cases.into_iter().enumerate() {
            let got = n.mismatch(&pod(terms, false));
            assert_eq!(got.is_none(), want, "case {i}: {got:?}");
        }
        let by_name = pod(vec![vec![req("metadata.name", "In", &["edge1"])]], true);
        assert_eq!(n.mismatch(&by_name), None);
        let other = pod(vec![vec![req("metadata.name", "In", &["edge2"])]], true);
        let why = n.mismatch(&other).unwrap();
        assert!(
            why.contains("required nodeAffinity: metadata.name In"),
            "{why}"
        );
    }
}

//! This node's name and labels, and the nodeSelector check (issue 8, fleets).

use std::collections::BTreeMap;

use berth_spec::Object;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl NodeInfo {
    /// Why `obj` does not run here, if its (template's) `nodeSelector` does not match.
    pub fn mismatch(&self, obj: &Object) -> Option<String> {
        let sel = match obj {
            Object::Pod(p) => p.spec.as_ref()?.node_selector.as_ref()?,
            Object::Deployment(d) => d.spec.template.spec.as_ref()?.node_selector.as_ref()?,
            _ => return None,
        };
        let missing: Vec<String> = sel
            .iter()
            .filter(|(k, v)| self.labels.get(*k) != Some(*v))
            .map(|(k, v)| match self.labels.get(k) {
                Some(have) => format!("{k}={v} (node has {have})"),
                None => format!("{k}={v} (node has no such label)"),
            })
            .collect();
        if missing.is_empty() {
            None
        } else {
            Some(format!(
                "not scheduled on this node {:?} (nodeSelector {})",
                self.name,
                missing.join(", ")
            ))
        }
    }
}

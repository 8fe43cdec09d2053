//! Defaults of the replicated workload kinds berth runs besides Deployment:
//! StatefulSet, DaemonSet, ReplicaSet and ReplicationController, the values
//! kube-apiserver fills in.

use k8s_openapi::api::apps::v1::{
    DaemonSetUpdateStrategy, RollingUpdateDaemonSet, RollingUpdateStatefulSetStrategy,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::object::Object;

pub(crate) fn defaults(o: &mut Object) {
    match o {
        Object::StatefulSet(s) => {
            let s = &mut s.spec;
            s.replicas.get_or_insert(1);
            s.revision_history_limit.get_or_insert(10);
            s.pod_management_policy
                .get_or_insert_with(|| "OrderedReady".into());
            let st = s
                .update_strategy
                .get_or_insert_with(StatefulSetUpdateStrategy::default);
            if st.type_.get_or_insert_with(|| "RollingUpdate".into()) == "RollingUpdate" {
                st.rolling_update
                    .get_or_insert_with(RollingUpdateStatefulSetStrategy::default)
                    .partition
                    .get_or_insert(0);
            }
        }
        Object::DaemonSet(d) => {
            let s = &mut d.spec;
            s.revision_history_limit.get_or_insert(10);
            let st = s
                .update_strategy
                .get_or_insert_with(DaemonSetUpdateStrategy::default);
            if st.type_.get_or_insert_with(|| "RollingUpdate".into()) == "RollingUpdate" {
                let ru = st
                    .rolling_update
                    .get_or_insert_with(RollingUpdateDaemonSet::default);
                ru.max_unavailable.get_or_insert(IntOrString::Int(1));
                ru.max_surge.get_or_insert(IntOrString::Int(0));
            }
        }
        Object::ReplicaSet(r) => {
            r.spec.replicas.get_or_insert(1);
        }
        Object::ReplicationController(r) => {
            let s = r.spec.get_or_insert_with(Default::default);
            s.replicas.get_or_insert(1);
            // an empty selector defaults to the template's labels
            if s.selector.as_ref().is_none_or(|m| m.is_empty()) {
                let labels = s
                    .template
                    .as_ref()
                    .and_then(|t| t.metadata.as_ref())
                    .and_then(|m| m.labels.clone());
                if labels.as_ref().is_some_and(|l| !l.is_empty()) {
                    s.selector = labels;
                }
            }
            if r.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
                r.metadata.labels = s
                    .template
                    .as_ref()
                    .and_then(|t| t.metadata.as_ref())
                    .and_then(|m| m.labels.clone());
            }
        }
        _ => {}
    }
}

//! Kubernetes-shaped lists and objects: desired objects (spec from the
//! manifests) merged with the reconciler's observed status.

use std::collections::{BTreeSet, HashMap};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use berth_reconciler::Snapshot;
use berth_spec::{Kind, Sourced};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiState, selector, table, watch};
use crate::sources::View;

/// The resources the API serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Res {
    Pods,
    Deployments,
    Services,
    Volumes,
    ConfigMaps,
    Secrets,
    Events,
    Namespaces,
    Nodes,
    ReplicaSets,
    Endpoints,
    EndpointSlices,
    Pvcs,
    Jobs,
    CronJobs,
    StatefulSets,
    DaemonSets,
    ReplicationControllers,
}

impl Res {
    pub const ALL: [Res; 18] = [
        Res::Pods,
        Res::Deployments,
        Res::Services,
        Res::Volumes,
        Res::ConfigMaps,
        Res::Secrets,
        Res::Events,
        Res::Namespaces,
        Res::Nodes,
        Res::ReplicaSets,
        Res::Endpoints,
        Res::EndpointSlices,
        Res::Pvcs,
        Res::Jobs,
        Res::CronJobs,
        Res::StatefulSets,
        Res::DaemonSets,
        Res::ReplicationControllers,
    ];
    /// The resource of a group/version and plural name.
    pub fn from_path(group_version: &str, plural: &str) -> Option<Res> {
        Res::ALL
            .into_iter()
            .find(|r| r.api_version() == group_version && r.plural() == plural)
    }
    pub fn plural(self) -> &'static str {
        match self {
            Res::Pods => "pods",
            Res::Deployments => "deployments",
            Res::Services => "services",
            Res::Volumes => "volumes",
            Res::ConfigMaps => "configmaps",
            Res::Secrets => "secrets",
            Res::Events => "events",
            Res::Namespaces => "namespaces",
            Res::Nodes => "nodes",
            Res::ReplicaSets => "replicasets",
            Res::Endpoints => "endpoints",
            Res::EndpointSlices => "endpointslices",
            Res::Pvcs => "persistentvolumeclaims",
            Res::Jobs => "jobs",
            Res::CronJobs => "cronjobs",
            Res::StatefulSets => "statefulsets",
            Res::DaemonSets => "daemonsets",
            Res::ReplicationControllers => "replicationcontrollers",
        }
    }
    pub fn api_version(self) -> &'static str {
        match self {
            Res::Deployments | Res::ReplicaSets | Res::StatefulSets | Res::DaemonSets => "apps/v1",
            Res::Volumes => berth_spec::volume::API_VERSION,
            Res::EndpointSlices => "discovery.k8s.io/v1",
            Res::Jobs | Res::CronJobs => "batch/v1",
            _ => "v1",
        }
    }
    pub fn kind(self) -> &'static str {
        match self {
            Res::Pods => "Pod",
            Res::Deployments => "Deployment",
            Res::Services => "Service",
            Res::Volumes => "Volume",
            Res::ConfigMaps => "ConfigMap",
            Res::Secrets => "Secret",
            Res::Events => "Event",
            Res::Namespaces => "Namespace",
            Res::Nodes => "Node",
            Res::ReplicaSets => "ReplicaSet",
            Res::Endpoints => "Endpoints",
            Res::EndpointSlices => "EndpointSlice",
            Res::Pvcs => "PersistentVolumeClaim",
            Res::Jobs => "Job",
            Res::CronJobs => "CronJob",
            Res::StatefulSets => "StatefulSet",
            Res::DaemonSets => "DaemonSet",
            Res::ReplicationControllers => "ReplicationController",
        }
    }
    pub fn namespaced(self) -> bool {
        !matches!(self, Res::Namespaces | Res::Nodes)
    }
    /// Kinds whose objects have a `status` (never served as null).
    pub fn has_status(self) -> bool {
        !matches!(
            self,
            Res::ConfigMaps | Res::Secrets | Res::Events | Res::Endpoints | Res::EndpointSlices
        )
    }
    pub fn of_kind(k: Kind) -> Option<Res> {
        Res::ALL.into_iter().find(|r| r.spec_kind() == Some(k))
    }
    fn spec_kind(self) -> Option<Kind> {
        Some(match self {
            Res::Pods => Kind::Pod,
            Res::Deployments => Kind::Deployment,
            Res::Services => Kind::Service,
            Res::Volumes => Kind::Volume,
            Res::ConfigMaps => Kind::ConfigMap,
            Res::Secrets => Kind::Secret,
            Res::Jobs => Kind::Job,
            Res::CronJobs => Kind::CronJob,
            Res::StatefulSets => Kind::StatefulSet,
            Res::DaemonSets => Kind::DaemonSet,
            Res::ReplicaSets => Kind::ReplicaSet,
            Res::ReplicationControllers => Kind::ReplicationController,
            _ => return None,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub watch: Option<String>,
    pub resource_version: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub allow_watch_bookmarks: Option<String>,
    pub send_initial_events: Option<String>,
}

type P1 = Path<String>;
type P2 = Path<(String, String)>;
type P3 = Path<(String, String, String)>;
type P4 = Path<(String, String, String, String)>;
type P5 = Path<(String, String, String, String, String)>;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/api/v1/{res}",
            get(|s, Path(r): P1, q, h| list(s, core(&r), None, q, h)),
        )
        .route(
            "/api/v1/{res}/{name}",
            get(|s, Path((r, n)): P2, h| one(s, cluster(core(&r)), None, n, None, h)),
        )
        .route(
            "/api/v1/{res}/{name}/{sub}",
            get(|s, Path((r, n, sub)): P3, h| one(s, cluster(core(&r)), None, n, Some(sub), h)),
        )
        .route(
            "/api/v1/namespaces/{ns}/{res}",
            get(|s, Path((ns, r)): P2, q, h| list(s, core(&r), Some(ns), q, h)),
        )
        .route(
            "/api/v1/namespaces/{ns}/{res}/{name}",
            get(|s, Path((ns, r, n)): P3, h| one(s, core(&r), Some(ns), n, None, h)),
        )
        .route(
            "/api/v1/namespaces/{ns}/{res}/{name}/{sub}",
            get(|s, Path((ns, r, n, sub)): P4, h| one(s, core(&r), Some(ns), n, Some(sub), h)),
        )
        .route(
            "/apis/{g}/{v}/{res}",
            get(|s, Path((g, v, r)): P3, q, h| list(s, group(&g, &v, &r), None, q, h)),
        )
        .route(
            "/apis/{g}/{v}/namespaces/{ns}/{res}",
            get(|s, Path((g, v, ns, r)): P4, q, h| list(s, group(&g, &v, &r), Some(ns), q, h)),
        )
        .route(
            "/apis/{g}/{v}/namespaces/{ns}/{res}/{name}",
            get(|s, Path((g, v, ns, r, n)): P5, h| one(s, group(&g, &v, &r), Some(ns), n, None, h)),
        )
        .route(
            "/apis/{g}/{v}/namespaces/{ns}/{res}/{name}/{sub}",
            get(
                |s,
                 Path((g, v, ns, r, n, sub)): Path<(
                    String,
                    String,
                    String,
                    String,
                    String,
                    String,
                )>,
                 h| { one(s, group(&g, &v, &r), Some(ns), n, Some(sub), h) },
            ),
        )
}

fn core(r: &str) -> Result<Res, ApiError> {
    Res::from_path("v1", r).ok_or(ApiError::NoRoute)
}

fn group(g: &str, v: &str, r: &str) -> Result<Res, ApiError> {
    Res::from_path(&format!("{g}/{v}"), r).ok_or(ApiError::NoRoute)
}

/// `/api/v1/{res}/{name}` names cluster-scoped objects only.
fn cluster(r: Result<Res, ApiError>) -> Result<Res, ApiError> {
    r.and_then(|r| {
        if r.namespaced() {
            Err(ApiError::NoRoute)
        } else {
            Ok(r)
        }
    })
}

pub fn wants_table(h: &HeaderMap) -> bool {
    h.get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"))
}

pub fn truthy(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("true" | "1"))
}

async fn list(
    State(st): State<ApiState>,
    res: Result<Res, ApiError>,
    ns: Option<String>,
    Query(q): Query<ListQuery>,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    let res = res?;
    if ns.is_some() && !res.namespaced() {
        return Err(ApiError::NoRoute);
    }
    let filter = Filter::new(ns, None, &q)?;
    if truthy(&q.watch) {
        return watch::stream(st, res, filter, wants_table(&h), &q);
    }
    let model = st.model();
    let items: Vec<&Value> = model
        .list(res)
        .map(|v| &**v)
        .filter(|o| filter.matches(o))
        .collect();
    let rv = model.rv.to_string();
    if wants_table(&h) {
        return Ok(axum::Json(table::table(res, &items, &rv)).into_response());
    }
    Ok(axum::Json(json!({
        "apiVersion": res.api_version(), "kind": format!("{}List", res.kind()),
        "metadata": {"resourceVersion": rv}, "items": items,
    }))
    .into_response())
}

async fn one(
    State(st): State<ApiState>,
    res: Result<Res, ApiError>,
    ns: Option<String>,
    name: String,
    sub: Option<String>,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    let res = res?;
    if res.namespaced() != ns.is_some() {
        return Err(ApiError::NoRoute);
    }
    if let Some(sub) = sub.as_deref()
        && let Some(e) = super::writes::not_offered(sub)
    {
        return Err(e);
    }
    let model = st.model();
    let obj = model
        .get(res, ns.as_deref().unwrap_or(""), &name)
        .ok_or(ApiError::NotFound {
            kind: res.kind(),
            name,
        })?;
    match sub.as_deref() {
        None | Some("status") => {}
        Some("scale")
            if matches!(
                res,
                Res::Deployments
                    | Res::ReplicaSets
                    | Res::StatefulSets
                    | Res::ReplicationControllers
            ) =>
        {
            return Ok(axum::Json(scale(obj)).into_response());
        }
        Some(_) => return Err(ApiError::NoRoute),
    }
    if wants_table(&h) {
        return Ok(axum::Json(table::table(res, &[&**obj], &model.rv.to_string())).into_response());
    }
    Ok(axum::Json(&**obj).into_response())
}

/// The `autoscaling/v1` Scale of a Deployment or ReplicaSet.
fn scale(o: &Value) -> Value {
    let m = &o["metadata"];
    let sel = o["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|l| {
            l.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
            "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"]},
        "spec": {"replicas": o["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": o["status"]["replicas"].as_i64().unwrap_or(0), "selector": sel},
    })
}

/// Namespace, name, label and field selectors.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    ns: Option<String>,
    name: Option<String>,
    labels: selector::Selector,
    fields: Vec<(String, String, bool)>,
}

impl Filter {
    pub fn new(
        ns: Option<String>,
        name: Option<String>,
        q: &ListQuery,
    ) -> Result<Filter, ApiError> {
        let labels = selector::Selector::parse(q.label_selector.as_deref().unwrap_or("")).map_err(
            |reason| ApiError::BadParam {
                param: "labelSelector",
                value: q.label_selector.clone().unwrap_or_default(),
                reason,
            },
        )?;
        let mut fields = Vec::new();
        for term in q
            .field_selector
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter(|t| !t.is_empty())
        {
            let (k, v, eq) = if let Some((k, v)) = term.split_once("!=") {
                (k, v, false)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k, v, true)
            } else {
                return Err(ApiError::BadParam {
                    param: "fieldSelector",
                    value: term.into(),
                    reason: "expected field=value or field!=value".into(),
                });
            };
            fields.push((k.trim().to_string(), v.trim().to_string(), eq));
        }
        Ok(Filter {
            ns,
            name,
            labels,
            fields,
        })
    }

    pub fn matches(&self, o: &Value) -> bool {
        let meta = &o["metadata"];
        if let Some(ns) = &self.ns
            && meta["namespace"].as_str() != Some(ns.as_str())
        {
            return false;
        }
        if let Some(n) = &self.name
            && meta["name"].as_str() != Some(n.as_str())
        {
            return false;
        }
        let labels: HashMap<String, String> = meta["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default();
        if !self.labels.matches(&labels) {
            return false;
        }
        self.fields.iter().all(|(path, want, eq)| {
            let got = path
                .split('.')
                .try_fold(o, |v, seg| v.get(seg))
                .and_then(|v| {
                    v.as_str()
                        .map(String::from)
                        .or_else(|| (!v.is_null()).then(|| v.to_string()))
                });
            (got.as_deref().unwrap_or("") == want) == *eq
        })
    }
}

fn key_of(v: &Value) -> (String, String) {
    let m = &v["metadata"];
    (
        m["namespace"].as_str().unwrap_or("").to_string(),
        m["name"].as_str().unwrap_or("").to_string(),
    )
}

/// The objects of one resource, sorted by namespace and name.
pub fn collect(res: Res, view: &View, snap: &Snapshot) -> Vec<Value> {
    let out = match res {
        Res::Namespaces => namespaces(view, snap),
        _ => {
            let observed: Vec<Value> = match res {
                Res::Pods => snap.pods.iter().map(to_value).collect(),
                Res::Deployments => snap.deployments.iter().map(to_value).collect(),
                Res::Services => snap.services.iter().map(to_value).collect(),
                Res::Volumes => snap.volumes.iter().map(to_value).collect(),
                // whole objects (a CronJob's Jobs have no manifest; a Job
                // past ttlSecondsAfterFinished is no longer shown)
                Res::Jobs => return finish(res, snap.jobs.iter().map(to_value).collect()),
                Res::CronJobs => {
                    return finish(res, snap.cron_jobs.iter().map(to_value).collect());
                }
                Res::StatefulSets => snap.stateful_sets.iter().map(to_value).collect(),
                Res::DaemonSets => snap.daemon_sets.iter().map(to_value).collect(),
                Res::ReplicaSets => snap.replica_sets.iter().map(to_value).collect(),
                Res::ReplicationControllers => {
                    snap.replication_controllers.iter().map(to_value).collect()
                }
                _ => Vec::new(),
            };
            let mut observed: HashMap<(String, String), Value> =
                observed.into_iter().map(|v| (key_of(&v), v)).collect();
            let kind = res.spec_kind();
            let mut out: Vec<Value> = view
                .desired
                .objects
                .iter()
                .filter(|(k, _)| Some(k.kind) == kind)
                .map(|(k, s)| {
                    let mut v = desired_json(s, view.first_seen.get(k));
                    if let Some(obs) = observed.remove(&(k.namespace.clone(), k.name.clone())) {
                        overlay(res, &mut v, obs);
                    }
                    if res == Res::Secrets {
                        redact_secret(&mut v);
                    }
                    v
                })
                .collect();
            out.extend(observed.into_values());
            // (most lists have nothing unscheduled: no key set built for them)
            if let Some(kind) = kind
                && view
                    .unscheduled
                    .iter()
                    .any(|u| u.sourced.object.kind() == kind)
            {
                // a pod that stopped matching the node is still listed
                // (terminating) until it is gone: never twice
                let listed: std::collections::HashSet<(String, String)> =
                    out.iter().map(key_of).collect();
                out.extend(unscheduled(view, kind).filter(|v| !listed.contains(&key_of(v))));
            }
            out
        }
    };
    finish(res, out)
}

/// The message Kubernetes' scheduler gives a Pod no node fits, on one node.
pub const UNSCHEDULABLE: &str =
    "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector";

/// Objects whose nodeSelector or required node affinity does not match this
/// node, listed as a one-node cluster lists them: a Pod stays Pending with
/// `PodScheduled=False` (reason Unschedulable), a Deployment, StatefulSet or
/// ReplicaSet has none of its replicas ready, a DaemonSet has 0 pods desired
/// (with a `NodeMatched=False` condition saying why). Each also gets a
/// `FailedScheduling` event ([`super::events`]). Jobs and CronJobs are
/// listed from the reconciler's objects only (not here).
fn unscheduled(view: &View, kind: berth_spec::Kind) -> impl Iterator<Item = Value> + '_ {
    use berth_spec::Kind;
    view.unscheduled
        .iter()
        .filter(move |u| u.sourced.object.kind() == kind)
        .map(move |u| {
            let first_seen = view.first_seen.get(&u.sourced.object.key());
            let mut v = desired_json(&u.sourced, first_seen);
            let since = first_seen
                .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default();
            let why = format!("{UNSCHEDULABLE} ({})", u.reason);
            let replicas = v["spec"]["replicas"].as_i64().unwrap_or(1);
            v["status"] = match kind {
                Kind::Pod => json!({
                    "phase": "Pending",
                    "qosClass": "BestEffort",
                    "conditions": [{
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": why,
                        "lastTransitionTime": since,
                    }],
                }),
                Kind::DaemonSet => json!({
                    "observedGeneration": 1,
                    "desiredNumberScheduled": 0,
                    "currentNumberScheduled": 0,
                    "numberMisscheduled": 0,
                    "numberReady": 0,
                    "numberAvailable": 0,
                    "updatedNumberScheduled": 0,
                    "conditions": [{
                        "type": "NodeMatched",
                        "status": "False",
                        "reason": "NodeMismatch",
                        "message": u.reason,
                    }],
                }),
                Kind::Deployment => json!({
                    "observedGeneration": 1,
                    "replicas": replicas,
                    "updatedReplicas": replicas,
                    "unavailableReplicas": replicas,
                    "conditions": [{
                        "type": "Available",
                        "status": "False",
                        "reason": "MinimumReplicasUnavailable",
                        "message": format!("Deployment does not have minimum availability: {why}"),
                        "lastTransitionTime": since,
                        "lastUpdateTime": since,
                    }],
                }),
                Kind::StatefulSet | Kind::ReplicaSet | Kind::ReplicationController => json!({
                    "observedGeneration": 1,
                    "replicas": replicas,
                    "readyReplicas": 0,
                    "availableReplicas": 0,
                }),
                _ => json!({}),
            };
            v
        })
}

fn finish(res: Res, mut out: Vec<Value>) -> Vec<Value> {
    for v in &mut out {
        v["apiVersion"] = json!(res.api_version());
        v["kind"] = json!(res.kind());
    }
    out.sort_by_key(key_of);
    out
}

fn to_value<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

fn desired_json(s: &Sourced, first_seen: Option<&jiff::Timestamp>) -> Value {
    let mut v = to_value(&s.object);
    let m = &mut v["metadata"];
    if m["namespace"].is_null() {
        m["namespace"] = json!("default");
    }
    if m["creationTimestamp"].is_null()
        && let Some(t) = first_seen
    {
        m["creationTimestamp"] = json!(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    }
    if !m["annotations"].is_object() {
        m["annotations"] = json!({});
    }
    m["annotations"]["berth.dev/source"] = json!(s.location.to_string());
    v
}

/// Status (and fields the reconciler allocates) from the observed object.
fn overlay(res: Res, v: &mut Value, obs: Value) {
    if let Some(st) = obs.get("status") {
        v["status"] = st.clone();
    }
    if let Some(ts) = obs["metadata"]
        .get("creationTimestamp")
        .filter(|t| !t.is_null())
    {
        v["metadata"]["creationTimestamp"] = ts.clone();
    }
    for f in ["uid", "resourceVersion", "generation"] {
        if let Some(x) = obs["metadata"].get(f) {
            v["metadata"][f] = x.clone();
        }
    }
    if res == Res::Pods {
        // where it runs, and whether it is going away
        if let Some(n) = obs["spec"].get("nodeName").filter(|n| !n.is_null()) {
            v["spec"]["nodeName"] = n.clone();
        }
        for f in ["deletionTimestamp", "ownerReferences"] {
            if let Some(x) = obs["metadata"].get(f).filter(|x| !x.is_null()) {
                v["metadata"][f] = x.clone();
            }
        }
    }
    if res == Res::Services {
        for f in ["clusterIP", "clusterIPs"] {
            if v["spec"][f].is_null()
                && let Some(x) = obs["spec"].get(f)
            {
                v["spec"][f] = x.clone();
            }
        }
        if let (Some(want), Some(got)) = (
            v["spec"]["ports"].as_array_mut(),
            obs["spec"]["ports"].as_array(),
        ) {
            for (w, g) in want.iter_mut().zip(got) {
                if w["nodePort"].is_null() && !g["nodePort"].is_null() {
                    w["nodePort"] = g["nodePort"].clone();
                }
            }
        }
    }
}

/// Secrets never leave the agent: `data`/`stringData` are dropped, the key names kept.
fn redact_secret(v: &mut Value) {
    let mut keys: BTreeSet<String> = BTreeSet::new();
    for f in ["data", "stringData"] {
        if let Some(m) = v.get(f).and_then(Value::as_object) {
            keys.extend(m.keys().cloned());
        }
        if let Some(o) = v.as_object_mut() {
            o.remove(f);
        }
    }
    v["metadata"]["annotations"]["berth.dev/redacted-keys"] =
        json!(keys.into_iter().collect::<Vec<_>>().join(","));
}

fn namespaces(view: &View, snap: &Snapshot) -> Vec<Value> {
    let mut set: BTreeSet<String> = view
        .desired
        .objects
        .keys()
        .map(|k| k.namespace.clone())
        .collect();
    set.insert("default".into());
    for p in &snap.pods {
        set.extend(p.metadata.namespace.clone());
    }
    set.into_iter()
        .map(|n| json!({"metadata": {"name": n}, "spec": {}, "status": {"phase": "Active"}}))
        .collect()
}

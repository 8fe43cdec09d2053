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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Res {
    Pods,
    Deployments,
    Services,
    Volumes,
    ConfigMaps,
    Secrets,
    Events,
    Namespaces,
}

impl Res {
    fn core(s: &str) -> Option<Res> {
        Some(match s {
            "pods" => Res::Pods,
            "services" => Res::Services,
            "configmaps" => Res::ConfigMaps,
            "secrets" => Res::Secrets,
            "events" => Res::Events,
            "namespaces" => Res::Namespaces,
            _ => return None,
        })
    }
    pub fn api_version(self) -> &'static str {
        match self {
            Res::Deployments => "apps/v1",
            Res::Volumes => berth_spec::volume::API_VERSION,
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
        }
    }
    fn spec_kind(self) -> Option<Kind> {
        Some(match self {
            Res::Pods => Kind::Pod,
            Res::Deployments => Kind::Deployment,
            Res::Services => Kind::Service,
            Res::Volumes => Kind::Volume,
            Res::ConfigMaps => Kind::ConfigMap,
            Res::Secrets => Kind::Secret,
            Res::Events | Res::Namespaces => return None,
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
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/api/v1/{res}",
            get(|s, p: Path<String>, q, h| list(s, core(p.0), None, q, h)),
        )
        .route(
            "/api/v1/namespaces/{ns}/{res}",
            get(|s, Path((ns, r)): Path<(String, String)>, q, h| list(s, core(r), Some(ns), q, h)),
        )
        .route(
            "/api/v1/namespaces/{ns}/{res}/{name}",
            get(|s, Path((ns, r, n)): Path<(String, String, String)>, h| {
                one(s, core(r), Some(ns), n, h)
            }),
        )
        .route(
            "/api/v1/namespaces/{name}",
            get(|s, Path(n): Path<String>, h| one(s, Ok(Res::Namespaces), None, n, h)),
        )
        .route(
            "/apis/apps/v1/deployments",
            get(|s, q, h| list(s, Ok(Res::Deployments), None, q, h)),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments",
            get(|s, Path(ns): Path<String>, q, h| list(s, Ok(Res::Deployments), Some(ns), q, h)),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
            get(|s, Path((ns, n)): Path<(String, String)>, h| {
                one(s, Ok(Res::Deployments), Some(ns), n, h)
            }),
        )
        .route(
            "/apis/berth.dev/v1alpha1/volumes",
            get(|s, q, h| list(s, Ok(Res::Volumes), None, q, h)),
        )
        .route(
            "/apis/berth.dev/v1alpha1/namespaces/{ns}/volumes",
            get(|s, Path(ns): Path<String>, q, h| list(s, Ok(Res::Volumes), Some(ns), q, h)),
        )
        .route(
            "/apis/berth.dev/v1alpha1/namespaces/{ns}/volumes/{name}",
            get(|s, Path((ns, n)): Path<(String, String)>, h| {
                one(s, Ok(Res::Volumes), Some(ns), n, h)
            }),
        )
}

fn core(r: String) -> Result<Res, ApiError> {
    Res::core(&r).ok_or(ApiError::NoRoute)
}

pub fn wants_table(h: &HeaderMap) -> bool {
    h.get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"))
}

fn truthy(v: &Option<String>) -> bool {
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
    if ns.is_some() && res == Res::Namespaces {
        return Err(ApiError::NoRoute);
    }
    let filter = Filter::new(ns, None, &q)?;
    if truthy(&q.watch) {
        return Ok(watch::stream(
            st,
            res,
            filter,
            wants_table(&h),
            q.resource_version,
        ));
    }
    let (view, snap) = (st.view.borrow().clone(), st.status.borrow().clone());
    let items: Vec<Value> = collect(res, &view, &snap)
        .into_iter()
        .filter(|o| filter.matches(o))
        .collect();
    let rv = resource_version(&view, &snap);
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
    h: HeaderMap,
) -> Result<Response, ApiError> {
    let res = res?;
    let (view, snap) = (st.view.borrow().clone(), st.status.borrow().clone());
    let filter = Filter::new(ns, Some(name.clone()), &ListQuery::default())?;
    let obj = collect(res, &view, &snap)
        .into_iter()
        .find(|o| filter.matches(o))
        .ok_or(ApiError::NotFound {
            kind: res.kind(),
            name,
        })?;
    if wants_table(&h) {
        return Ok(axum::Json(table::table(
            res,
            std::slice::from_ref(&obj),
            &resource_version(&view, &snap),
        ))
        .into_response());
    }
    Ok(axum::Json(obj).into_response())
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

/// `metadata.resourceVersion` of lists: both sides' change counters.
pub fn resource_version(view: &View, snap: &Snapshot) -> String {
    (view.generation * 1_000_000 + snap.version).to_string()
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
    let mut out = match res {
        Res::Events => events(view, snap),
        Res::Namespaces => namespaces(view, snap),
        _ => {
            let observed: Vec<Value> = match res {
                Res::Pods => snap.pods.iter().map(to_value).collect(),
                Res::Deployments => snap.deployments.iter().map(to_value).collect(),
                Res::Services => snap.services.iter().map(to_value).collect(),
                Res::Volumes => snap.volumes.iter().map(to_value).collect(),
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
            out
        }
    };
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

fn events(view: &View, snap: &Snapshot) -> Vec<Value> {
    let mut out: Vec<Value> = snap
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let kind = e.kind.split('/').next().unwrap_or("");
            let t = |t: std::time::SystemTime| crate::sources::rfc3339(t);
            json!({
                "metadata": {"name": format!("{}.{}", e.name, i), "namespace": e.namespace, "creationTimestamp": t(e.first_time)},
                "involvedObject": {"kind": kind, "namespace": e.namespace, "name": e.name},
                "reason": e.reason, "message": e.message, "type": e.type_,
                "firstTimestamp": t(e.first_time), "lastTimestamp": t(e.last_time), "count": e.count,
                "source": {"component": "berth"},
            })
        })
        .collect();
    // rollouts of the sources' revisions
    let n = out.len();
    out.extend(view.rollout_events.iter().enumerate().map(|(i, e)| {
        let t = crate::sources::rfc3339(e.first_time);
        json!({
            "metadata": {"name": format!("{}.rollout.{}", e.name, n + i), "namespace": e.namespace, "creationTimestamp": t},
            "involvedObject": {"kind": e.kind, "namespace": e.namespace, "name": e.name},
            "reason": e.reason, "message": e.message, "type": e.type_,
            "firstTimestamp": t, "lastTimestamp": t, "count": e.count,
            "source": {"component": "berth"},
        })
    }));
    // objects the operator's policy refused (they never reach the reconciler)
    out.extend(view.refused.iter().map(|r| {
        let k = &r.key;
        json!({
            "metadata": {"name": format!("{}.{}.policy", k.name, k.kind.as_str().to_ascii_lowercase()), "namespace": k.namespace, "creationTimestamp": r.since},
            "involvedObject": {"kind": k.kind.as_str(), "namespace": k.namespace, "name": k.name},
            "reason": "PolicyViolation", "message": r.reasons.join("; "), "type": "Warning",
            "firstTimestamp": r.since, "lastTimestamp": r.since, "count": 1,
            "source": {"component": "berth"},
        })
    }));
    out
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

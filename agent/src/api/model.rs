//! The read model: every object the API serves, built once per change of the
//! sources' view or the reconciler's snapshot, complete (`metadata.uid`,
//! `resourceVersion`, `creationTimestamp`, a `status` that is never null) and
//! cached; handlers only filter and serialise it.
//!
//! Each object carries its own `resourceVersion`: the model's revision at
//! which its content last changed (content compared by a hash that leaves
//! out condition heartbeat times). Watches diff by these versions and resume
//! from one; deleted objects are kept as tombstones (bounded) so a resume
//! replays `DELETED` too. Versions start at the agent's start time in
//! milliseconds, so a version from an earlier run is older than any this run
//! hands out and gets `410 Gone` (the client lists again).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use berth_reconciler::Snapshot;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::objects::{Res, collect};
use super::{derived, events, node};
use crate::sources::View;

/// `(namespace, name)`; namespace is empty for cluster-scoped objects.
pub type Key = (String, String);

/// Deleted objects remembered for watch resumes.
const TOMBSTONES: usize = 4096;

/// One resource's objects, sorted by namespace and name.
pub type Objects = BTreeMap<Key, Arc<Value>>;

#[derive(Debug, Default)]
pub struct Model {
    /// Revision of the whole model: `metadata.resourceVersion` of lists.
    pub rv: u64,
    pub objects: HashMap<Res, Objects>,
    /// Per object: the revision it was created at (for ADDED vs MODIFIED).
    pub created: HashMap<(Res, Key), u64>,
    /// `file:line` of the manifest each desired object comes from.
    pub sources: HashMap<(Res, Key), String>,
}

impl Model {
    pub fn list(&self, res: Res) -> impl Iterator<Item = &Arc<Value>> {
        self.objects.get(&res).into_iter().flat_map(|m| m.values())
    }
    pub fn get(&self, res: Res, ns: &str, name: &str) -> Option<&Arc<Value>> {
        self.objects
            .get(&res)?
            .get(&(ns.to_string(), name.to_string()))
    }
}

struct Version {
    hash: [u8; 32],
    rv: u64,
    created: u64,
}

struct Inner {
    key: Option<(u64, u64)>,
    model: Arc<Model>,
    counter: u64,
    versions: HashMap<(Res, Key), Version>,
    tombstones: VecDeque<(u64, Res, Arc<Value>)>,
    /// Versions before this cannot be resumed from (history dropped).
    oldest: u64,
}

/// The cache shared by all requests of one API.
pub struct Cache {
    inner: Mutex<Inner>,
    node: node::HostFacts,
}

impl Default for Cache {
    fn default() -> Self {
        let base = jiff::Timestamp::now().as_millisecond().max(1) as u64;
        Cache {
            inner: Mutex::new(Inner {
                key: None,
                model: Arc::default(),
                counter: base,
                versions: HashMap::new(),
                tombstones: VecDeque::new(),
                oldest: base,
            }),
            node: node::HostFacts::read(),
        }
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("model::Cache")
    }
}

/// What a watch resuming from a version gets.
pub enum Since {
    /// Events to replay: (type, resource, object), oldest first.
    Events(Vec<(&'static str, Arc<Value>)>),
    /// The version is older than the kept history.
    Gone,
}

/// Inputs that are not part of the view or the snapshot.
pub struct Ctx<'a> {
    pub node_name: &'a str,
    pub node_labels: &'a BTreeMap<String, String>,
    pub started: std::time::SystemTime,
}

impl Cache {
    /// The model for this view and snapshot (built if either changed).
    pub fn model(&self, view: &View, snap: &Snapshot, ctx: &Ctx<'_>) -> Arc<Model> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let key = (view.generation, snap.version);
        if g.key == Some(key) {
            return g.model.clone();
        }
        let built = build(view, snap, ctx, &self.node);
        let model = g.version(built);
        g.key = Some(key);
        g.model = Arc::new(model);
        g.model.clone()
    }

    /// Changes of `res` after version `since`, for a resuming watch.
    pub fn since(&self, model: &Model, res: Res, since: u64) -> Since {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if since < g.oldest {
            return Since::Gone;
        }
        let mut out: Vec<(u64, &'static str, Arc<Value>)> = g
            .tombstones
            .iter()
            .filter(|(rv, r, _)| *r == res && *rv > since)
            .map(|(rv, _, v)| (*rv, "DELETED", v.clone()))
            .collect();
        for (k, v) in model.objects.get(&res).into_iter().flatten() {
            let rv = rv_of(v);
            if rv > since {
                let created = model.created.get(&(res, k.clone())).copied().unwrap_or(0);
                let t = if created > since { "ADDED" } else { "MODIFIED" };
                out.push((rv, t, v.clone()));
            }
        }
        out.sort_by_key(|e| e.0);
        Since::Events(out.into_iter().map(|(_, t, v)| (t, v)).collect())
    }
}

/// `metadata.resourceVersion` of an object of the model.
pub fn rv_of(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

impl Inner {
    /// Give every object its version; remember deletions.
    fn version(&mut self, built: Built) -> Model {
        let next = self.counter + 1;
        let mut changed = false;
        let mut objects: HashMap<Res, Objects> = HashMap::new();
        let mut created = HashMap::new();
        let mut seen: std::collections::HashSet<(Res, Key)> = Default::default();
        for (res, list) in built.objects {
            let mut m = Objects::new();
            for mut v in list {
                let key = key_of(&v);
                let hash = content_hash(&v);
                let id = (res, key.clone());
                let ver = self.versions.entry(id.clone()).or_insert_with(|| {
                    changed = true;
                    Version {
                        hash,
                        rv: next,
                        created: next,
                    }
                });
                if ver.hash != hash {
                    changed = true;
                    ver.hash = hash;
                    ver.rv = next;
                }
                v["metadata"]["resourceVersion"] = json!(ver.rv.to_string());
                created.insert(id.clone(), ver.created);
                seen.insert(id);
                m.insert(key, Arc::new(v));
            }
            objects.insert(res, m);
        }
        // deletions: objects of the last model that are gone
        let gone: Vec<(Res, Key)> = self
            .versions
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for id in gone {
            self.versions.remove(&id);
            changed = true;
            if let Some(old) = self.model.objects.get(&id.0).and_then(|m| m.get(&id.1)) {
                let mut v = (**old).clone();
                v["metadata"]["resourceVersion"] = json!(next.to_string());
                self.tombstones.push_back((next, id.0, Arc::new(v)));
            }
            while self.tombstones.len() > TOMBSTONES {
                if let Some((rv, _, _)) = self.tombstones.pop_front() {
                    self.oldest = rv;
                }
            }
        }
        if changed {
            self.counter = next;
        }
        Model {
            rv: self.counter,
            objects,
            created,
            sources: built.sources,
        }
    }
}

fn key_of(v: &Value) -> Key {
    let m = &v["metadata"];
    (
        m["namespace"].as_str().unwrap_or("").to_string(),
        m["name"].as_str().unwrap_or("").to_string(),
    )
}

/// Hash of an object without its version and without times that move on
/// every rebuild (condition update/heartbeat times).
fn content_hash(v: &Value) -> [u8; 32] {
    let mut c = v.clone();
    if let Some(m) = c["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    if let Some(conds) = c["status"]["conditions"].as_array_mut() {
        for cond in conds {
            if let Some(o) = cond.as_object_mut() {
                o.remove("lastUpdateTime");
                o.remove("lastHeartbeatTime");
                o.remove("lastTransitionTime");
            }
        }
    }
    Sha256::digest(serde_json::to_vec(&c).unwrap_or_default()).into()
}

/// A stable uid for an object berth did not give one (a UUID-shaped hash of
/// its kind, namespace, name and creation time).
pub fn uid(kind: &str, ns: &str, name: &str, created: &str) -> String {
    let h = Sha256::digest(format!("{kind}\0{ns}\0{name}\0{created}"));
    let x = hex::encode(&h[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

struct Built {
    objects: Vec<(Res, Vec<Value>)>,
    sources: HashMap<(Res, Key), String>,
}

/// Resources the model holds, in build order (later ones read earlier ones).
const BASE: [Res; 12] = [
    Res::Pods,
    Res::Deployments,
    Res::StatefulSets,
    Res::DaemonSets,
    Res::ReplicationControllers,
    Res::Services,
    Res::Volumes,
    Res::ConfigMaps,
    Res::Secrets,
    Res::Namespaces,
    Res::Jobs,
    Res::CronJobs,
];

fn build(view: &View, snap: &Snapshot, ctx: &Ctx<'_>, host: &node::HostFacts) -> Built {
    let started = crate::sources::rfc3339(ctx.started);
    let mut by: HashMap<Res, Vec<Value>> = HashMap::new();
    for res in BASE {
        let mut list = collect(res, view, snap);
        for v in &mut list {
            complete(res, v, &started);
        }
        by.insert(res, list);
    }
    let uids: HashMap<(String, String, String), String> = by
        .iter()
        .flat_map(|(res, l)| l.iter().map(move |v| (res.kind(), v)))
        .map(|(kind, v)| {
            let (ns, name) = key_of(v);
            let uid = v["metadata"]["uid"].as_str().unwrap_or("").to_string();
            ((kind.to_string(), ns, name), uid)
        })
        .collect();
    let deployments = by.get(&Res::Deployments).cloned().unwrap_or_default();
    let pods = by.remove(&Res::Pods).unwrap_or_default();
    let rs = derived::replicasets(&deployments, &pods);
    let pods = derived::own_pods(pods, &rs);
    // the manifests' own ReplicaSets beside the Deployments' derived ones
    let mut own_rs = collect(Res::ReplicaSets, view, snap);
    for v in &mut own_rs {
        complete(Res::ReplicaSets, v, &started);
    }
    let pods = owner_uids(pods, &uids, &own_rs);
    let mut rs = rs;
    rs.extend(own_rs);
    let services = by.get(&Res::Services).cloned().unwrap_or_default();
    let volumes = by.get(&Res::Volumes).cloned().unwrap_or_default();
    let mut more: Vec<(Res, Vec<Value>)> = vec![
        (Res::Endpoints, derived::endpoints(&services, &pods)),
        (
            Res::EndpointSlices,
            derived::endpoint_slices(&services, &pods),
        ),
        (Res::Pvcs, derived::pvcs(&volumes, &pods)),
        (Res::Nodes, vec![node::node(ctx, host, &pods, &started)]),
        (Res::Events, events::events(view, snap, &uids)),
    ];
    more.push((Res::ReplicaSets, rs));
    more.push((Res::Pods, pods));
    let mut objects: Vec<(Res, Vec<Value>)> = by.into_iter().collect();
    for (res, mut list) in more {
        for v in &mut list {
            complete(res, v, &started);
        }
        objects.push((res, list));
    }
    let mut sources = HashMap::new();
    for (k, s) in &view.desired.objects {
        if let Some(res) = Res::of_kind(k.kind) {
            sources.insert(
                (res, (k.namespace.clone(), k.name.clone())),
                format!("{}:{}", s.location.file, s.location.line),
            );
        }
    }
    Built { objects, sources }
}

/// Fill what every object must have: apiVersion, kind, namespace (namespaced
/// kinds), creationTimestamp, uid, a non-null status for kinds that have one.
/// The uid of each pod's owner (StatefulSet, DaemonSet, ReplicaSet,
/// ReplicationController) where the reconciler left it empty.
fn owner_uids(
    mut pods: Vec<Value>,
    uids: &HashMap<(String, String, String), String>,
    own_rs: &[Value],
) -> Vec<Value> {
    for p in &mut pods {
        let ns = p["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        for o in p["metadata"]["ownerReferences"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            if o["uid"].as_str().is_some_and(|u| !u.is_empty()) {
                continue;
            }
            let (kind, name) = (
                o["kind"].as_str().unwrap_or("").to_string(),
                o["name"].as_str().unwrap_or("").to_string(),
            );
            let uid = uids
                .get(&(kind.clone(), ns.clone(), name.clone()))
                .cloned()
                .or_else(|| {
                    own_rs
                        .iter()
                        .find(|r| kind == "ReplicaSet" && key_of(r) == (ns.clone(), name.clone()))
                        .and_then(|r| r["metadata"]["uid"].as_str().map(str::to_string))
                });
            if let Some(u) = uid {
                o["uid"] = json!(u);
            }
        }
    }
    pods
}

fn complete(res: Res, v: &mut Value, fallback_time: &str) {
    v["apiVersion"] = json!(res.api_version());
    v["kind"] = json!(res.kind());
    if !v["metadata"].is_object() {
        v["metadata"] = json!({});
    }
    let m = &mut v["metadata"];
    if res.namespaced() && m["namespace"].as_str().is_none_or(str::is_empty) {
        m["namespace"] = json!("default");
    }
    if m["creationTimestamp"].as_str().is_none_or(str::is_empty) {
        m["creationTimestamp"] = json!(fallback_time);
    }
    if m["uid"].as_str().is_none_or(str::is_empty) {
        let u = uid(
            res.kind(),
            m["namespace"].as_str().unwrap_or(""),
            m["name"].as_str().unwrap_or(""),
            m["creationTimestamp"].as_str().unwrap_or(""),
        );
        m["uid"] = json!(u);
    }
    if res.has_status() && !v["status"].is_object() {
        v["status"] = match res {
            Res::Pods => json!({"phase": "Pending"}),
            Res::Services => json!({"loadBalancer": {}}),
            Res::Volumes | Res::Pvcs => json!({"phase": "Pending"}),
            _ => json!({}),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_spec::k8s_openapi::api::core::v1::{Pod, PodStatus};
    use berth_spec::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, phase: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    fn snap(version: u64, pods: Vec<Pod>) -> Snapshot {
        Snapshot {
            version,
            pods,
            ..Default::default()
        }
    }

    #[test]
    fn versions_follow_content_and_resume() {
        let cache = Cache::default();
        let labels = BTreeMap::new();
        let ctx = Ctx {
            node_name: "n1",
            node_labels: &labels,
            started: std::time::SystemTime::UNIX_EPOCH,
        };
        let view = View::default();
        let m1 = cache.model(
            &view,
            &snap(1, vec![pod("a", "Running"), pod("b", "Running")]),
            &ctx,
        );
        let a1 = rv_of(m1.get(Res::Pods, "default", "a").unwrap());
        let node = m1.get(Res::Nodes, "", "n1").unwrap();
        assert!(node["metadata"]["uid"].is_string() && node["status"]["nodeInfo"].is_object());
        // a new snapshot with the same content: no version moves
        let m2 = cache.model(
            &view,
            &snap(2, vec![pod("a", "Running"), pod("b", "Running")]),
            &ctx,
        );
        assert_eq!(m2.rv, m1.rv);
        assert_eq!(rv_of(m2.get(Res::Pods, "default", "a").unwrap()), a1);
        // b changes, a does not; then a goes away
        let m3 = cache.model(
            &view,
            &snap(3, vec![pod("a", "Running"), pod("b", "Failed")]),
            &ctx,
        );
        assert!(m3.rv > m2.rv);
        assert_eq!(rv_of(m3.get(Res::Pods, "default", "a").unwrap()), a1);
        assert_eq!(rv_of(m3.get(Res::Pods, "default", "b").unwrap()), m3.rv);
        let m4 = cache.model(&view, &snap(4, vec![pod("b", "Failed")]), &ctx);
        let Since::Events(evs) = cache.since(&m4, Res::Pods, m2.rv) else {
            panic!("history lost");
        };
        let got: Vec<(&str, &str)> = evs
            .iter()
            .map(|(t, v)| (*t, v["metadata"]["name"].as_str().unwrap()))
            .collect();
        assert_eq!(got, vec![("MODIFIED", "b"), ("DELETED", "a")]);
        let Since::Events(evs) = cache.since(&m4, Res::Pods, m4.rv) else {
            panic!("history lost");
        };
        assert!(evs.is_empty());
        assert!(matches!(cache.since(&m4, Res::Pods, 5), Since::Gone));
        // every object is complete
        for v in m4.list(Res::Pods) {
            assert!(v["metadata"]["creationTimestamp"].is_string());
            assert!(v["status"].is_object());
        }
    }
}

//! Router tests with `oneshot`: no socket.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use berth_reconciler::Snapshot;
use berth_spec::k8s_openapi::api::core::v1::{Pod, PodStatus};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::sources::{Hub, NodeInfo, SourceReport, SourceStatus};

const MANIFESTS: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  containers:\n  - name: c\n    image: x\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: db\n  namespace: data\n  labels: {app: db}\nspec:\n  containers:\n  - name: c\n    image: y\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  password: hunter2\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  selector:\n    matchLabels: {app: d}\n  template:\n    metadata:\n      labels: {app: d}\n    spec:\n      containers:\n      - name: c\n        image: x\n";

struct Fixture {
    state: ApiState,
    status_tx: berth_reconciler::StatusWriter,
    _hub: Arc<Hub>,
    _stop: tokio::sync::watch::Sender<bool>,
}

fn fixture(token: Option<&str>) -> Fixture {
    fixture_of(token, MANIFESTS)
}

fn fixture_of(token: Option<&str>, manifests: &str) -> Fixture {
    let (tx, _rx) = berth_reconciler::desired_channel();
    let hub = Hub::new(tx, NodeInfo::default());
    let h = hub.register();
    let p = berth_spec::parse_str("/m/all.yaml", manifests);
    assert!(!p.has_errors(), "{:?}", p.diagnostics);
    h.publish(SourceReport {
        complete: true,
        objects: p.objects,
        status: SourceStatus {
            kind: "directory",
            location: "/m".into(),
            ..Default::default()
        },
    });
    let (status_tx, status) = berth_reconciler::status_channel();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let state = ApiState {
        view: hub.view(),
        status,
        instance: "bt".into(),
        node: "n".into(),
        token: token.map(Into::into),
        git_sync: Some(Arc::new(Notify::new())),
        webhook_secret: Some("hook".into()),
        shutdown,
        streams: super::limits::StreamLimiter::new(2, 3),
        page: Default::default(),
        model: super::model_cache(),
    };
    Fixture {
        state,
        status_tx,
        _hub: hub,
        _stop: stop,
    }
}

async fn call(
    st: &ApiState,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = router(st.clone())
        .oneshot(b.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let code = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (code, String::from_utf8_lossy(&body).into_owned())
}

async fn json(st: &ApiState, uri: &str) -> Value {
    let (code, body) = call(st, "GET", uri, &[]).await;
    assert_eq!(code, StatusCode::OK, "{uri}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn names(list: &Value) -> Vec<&str> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn lists_objects_selectors_and_404() {
    let f = fixture(None);
    let all = json(&f.state, "/api/v1/pods").await;
    assert_eq!(all["kind"], "PodList");
    assert_eq!(all["apiVersion"], "v1");
    assert!(all["metadata"]["resourceVersion"].is_string());
    assert_eq!(names(&all), ["db", "web"]);
    // status is never null (clients read status.phase): Pending until the reconciler says more
    assert_eq!(all["items"][0]["status"]["phase"], "Pending");
    for f in ["uid", "resourceVersion", "creationTimestamp"] {
        assert!(all["items"][0]["metadata"][f].is_string(), "{f}");
    }
    assert_eq!(
        names(&json(&f.state, "/api/v1/namespaces/default/pods").await),
        ["web"]
    );
    assert_eq!(
        names(&json(&f.state, "/api/v1/pods?labelSelector=app%3Ddb").await),
        ["db"]
    );
    assert_eq!(
        names(&json(&f.state, "/api/v1/pods?labelSelector=app%20in%20(web,x)").await),
        ["web"]
    );
    assert_eq!(
        names(
            &json(
                &f.state,
                "/api/v1/pods?fieldSelector=metadata.namespace%3Ddata"
            )
            .await
        ),
        ["db"]
    );
    let web = json(&f.state, "/api/v1/namespaces/default/pods/web").await;
    assert_eq!(web["kind"], "Pod");
    assert_eq!(
        web["metadata"]["annotations"]["berth.dev/source"],
        "/m/all.yaml:1:1"
    );
    assert!(web["metadata"]["creationTimestamp"].is_string());
    assert_eq!(
        names(&json(&f.state, "/apis/apps/v1/deployments").await),
        ["d"]
    );
    assert_eq!(
        json(&f.state, "/apis/apps/v1/namespaces/default/deployments/d").await["kind"],
        "Deployment"
    );
    let ns = json(&f.state, "/api/v1/namespaces").await;
    assert_eq!(names(&ns), ["data", "default"]);
    let (code, body) = call(&f.state, "GET", "/api/v1/namespaces/default/pods/nope", &[]).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["kind"].as_str(), v["reason"].as_str(), v["code"].as_u64()),
        (Some("Status"), Some("NotFound"), Some(404))
    );
    let (code, _) = call(&f.state, "GET", "/api/v1/widgets", &[]).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn daemon_sets_not_for_this_node_are_listed_with_zero_desired() {
    let ds = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: picky\nspec:\n  selector:\n    matchLabels: {app: p}\n  template:\n    metadata:\n      labels: {app: p}\n    spec:\n      nodeSelector: {disk: ssd}\n      containers:\n      - name: c\n        image: x\n";
    let f = fixture_of(None, ds);
    let list = json(&f.state, "/apis/apps/v1/daemonsets").await;
    assert_eq!(names(&list), ["picky"]);
    let d = json(
        &f.state,
        "/apis/apps/v1/namespaces/default/daemonsets/picky",
    )
    .await;
    assert_eq!(d["status"]["desiredNumberScheduled"], 0, "{d}");
    assert!(d["metadata"]["creationTimestamp"].is_string(), "{d}");
    let c = &d["status"]["conditions"][0];
    assert_eq!(
        (&c["type"], &c["status"]),
        (&json!("NodeMatched"), &json!("False"))
    );
    assert!(
        c["message"]
            .as_str()
            .is_some_and(|m| m.contains("nodeSelector disk=ssd")),
        "{d}"
    );
}

#[tokio::test]
async fn pods_and_deployments_not_for_this_node_are_pending_with_failed_scheduling() {
    let m = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: gpu\nspec:\n  nodeSelector: {gpu: \"yes\"}\n  containers:\n  - name: c\n    image: x\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: big\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: b}\n  template:\n    metadata:\n      labels: {app: b}\n    spec:\n      nodeSelector: {disk: ssd}\n      containers:\n      - name: c\n        image: x\n";
    let f = fixture_of(None, m);
    let p = json(&f.state, "/api/v1/namespaces/default/pods/gpu").await;
    assert_eq!(p["status"]["phase"], "Pending", "{p}");
    let c = &p["status"]["conditions"][0];
    assert_eq!(
        (&c["type"], &c["status"], &c["reason"]),
        (
            &json!("PodScheduled"),
            &json!("False"),
            &json!("Unschedulable")
        ),
        "{p}"
    );
    assert!(
        c["message"].as_str().is_some_and(|m| m.contains("gpu=yes")),
        "{p}"
    );
    assert_eq!(names(&json(&f.state, "/api/v1/pods").await), ["gpu"]);
    let d = json(&f.state, "/apis/apps/v1/namespaces/default/deployments/big").await;
    assert_eq!(d["status"]["unavailableReplicas"], 2, "{d}");
    assert_eq!(d["status"]["conditions"][0]["status"], "False", "{d}");
    let ev = json(&f.state, "/api/v1/namespaces/default/events").await;
    let failed: Vec<(&str, &str)> = ev["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "FailedScheduling")
        .map(|e| {
            (
                e["involvedObject"]["kind"].as_str().unwrap_or(""),
                e["involvedObject"]["name"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(failed.len(), 2, "{ev}");
    assert!(
        failed.contains(&("Pod", "gpu")) && failed.contains(&("Deployment", "big")),
        "{ev}"
    );
}

#[tokio::test]
async fn secrets_never_show_data() {
    let f = fixture(None);
    let (_, body) = call(&f.state, "GET", "/api/v1/secrets", &[]).await;
    assert!(
        !body.contains("hunter2") && !body.contains("aHVudGVyMg"),
        "{body}"
    );
    let s = json(&f.state, "/api/v1/namespaces/default/secrets/s").await;
    assert!(s.get("data").is_none() && s.get("stringData").is_none());
    assert_eq!(
        s["metadata"]["annotations"]["berth.dev/redacted-keys"],
        "password"
    );
}

#[tokio::test]
async fn status_from_the_snapshot_is_merged_into_desired_objects() {
    let f = fixture(None);
    let mut pod = Pod::default();
    pod.metadata.name = Some("web".into());
    pod.metadata.namespace = Some("default".into());
    pod.status = Some(PodStatus {
        phase: Some("Running".into()),
        pod_ip: Some("10.44.0.5".into()),
        ..Default::default()
    });
    let mut replica = Pod::default();
    replica.metadata.name = Some("d-abc".into());
    replica.metadata.namespace = Some("default".into());
    f.status_tx.send_replace(Arc::new(Snapshot {
        version: 3,
        pods: vec![pod, replica],
        ready: true,
        reconcile_passes: 7,
        ..Default::default()
    }));
    let web = json(&f.state, "/api/v1/namespaces/default/pods/web").await;
    assert_eq!(web["status"]["phase"], "Running");
    assert_eq!(
        web["spec"]["containers"][0]["image"], "x",
        "spec from the manifest"
    );
    assert_eq!(
        names(&json(&f.state, "/api/v1/namespaces/default/pods").await),
        ["d-abc", "web"]
    );
    let (_, metrics) = call(&f.state, "GET", "/metrics", &[]).await;
    assert!(
        metrics.contains("berth_reconcile_passes_total 7"),
        "{metrics}"
    );
    assert!(metrics.contains("berth_pods{phase=\"Running\"} 1"));
    assert!(metrics.contains("berth_objects{kind=\"Pod\"} 2"));
    assert!(metrics.contains("berth_parse_errors 0"));
    let (code, body) = call(&f.state, "GET", "/readyz", &[]).await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, "ok"));
}

#[tokio::test]
async fn readyz_waits_for_the_reconciler() {
    let f = fixture(None);
    let (code, body) = call(&f.state, "GET", "/readyz", &[]).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("reconciler"));
}

#[tokio::test]
async fn readyz_and_status_show_agent_conditions() {
    let f = fixture(None);
    let cond = |blocks_ready| berth_reconciler::AgentCondition {
        type_: if blocks_ready {
            "PodWorkersHealthy"
        } else {
            "PodRecordsReadable"
        }
        .into(),
        status: "False".into(),
        reason: "R".into(),
        message: "default/a: boom".into(),
        blocks_ready,
    };
    // a quarantined records file is reported but does not make the agent unready
    f.status_tx.send_replace(Arc::new(Snapshot {
        ready: true,
        conditions: vec![cond(false)],
        ..Default::default()
    }));
    let (code, _) = call(&f.state, "GET", "/readyz", &[]).await;
    assert_eq!(code, StatusCode::OK);
    let st = json(&f.state, "/api/v1/status").await;
    assert_eq!(st["conditions"][0]["type"], "PodRecordsReadable");
    // a failed pod worker does
    f.status_tx.send_replace(Arc::new(Snapshot {
        ready: true,
        conditions: vec![cond(false), cond(true)],
        ..Default::default()
    }));
    let (code, body) = call(&f.state, "GET", "/readyz", &[]).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body.contains("PodWorkersHealthy: default/a: boom"),
        "{body}"
    );
}

#[tokio::test]
async fn tables_and_discovery_for_kubectl() {
    let f = fixture(None);
    let accept = (
        "accept",
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
    );
    let (code, body) = call(&f.state, "GET", "/api/v1/pods", &[accept]).await;
    assert_eq!(code, StatusCode::OK);
    let t: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(t["kind"], "Table");
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(&cols[..5], ["Name", "Ready", "Status", "Restarts", "Age"]);
    assert_eq!(t["rows"][1]["cells"][0], "web");
    assert_eq!(t["rows"][1]["cells"][1], "0/1");
    assert_eq!(t["rows"][1]["object"]["metadata"]["namespace"], "default");
    assert_eq!(json(&f.state, "/api").await["versions"][0], "v1");
    let groups = json(&f.state, "/apis").await;
    let g: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        g,
        [
            "apps",
            "batch",
            "discovery.k8s.io",
            "berth.dev",
            "metrics.k8s.io"
        ]
    );
    assert!(
        json(&f.state, "/api/v1").await["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "pods")
    );
    assert_eq!(
        json(&f.state, "/apis/berth.dev/v1alpha1").await["resources"][0]["name"],
        "volumes"
    );
    assert_eq!(json(&f.state, "/version").await["major"], "1");
    let st = json(&f.state, "/api/v1/status").await;
    assert_eq!(st["instance"], "bt");
    assert_eq!(st["sources"][0]["type"], "directory");
    assert_eq!(st["objects"]["Pod"], 2);
}

#[tokio::test]
async fn writes_are_405_and_the_token_is_checked() {
    let f = fixture(Some("tok"));
    for m in ["POST", "PUT", "PATCH", "DELETE"] {
        let (code, body) = call(&f.state, m, "/api/v1/namespaces/default/pods/web", &[]).await;
        assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED, "{m}");
        assert!(
            body.contains("berth is declarative: change the manifests"),
            "{body}"
        );
    }
    assert_eq!(
        call(&f.state, "GET", "/healthz", &[]).await,
        (StatusCode::OK, "ok".into())
    );
    assert_eq!(
        call(&f.state, "GET", "/api/v1/pods", &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(
            &f.state,
            "GET",
            "/api/v1/pods",
            &[("authorization", "Bearer nope")]
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(
            &f.state,
            "GET",
            "/api/v1/pods",
            &[("authorization", "Bearer tok")]
        )
        .await
        .0,
        StatusCode::OK
    );
    // webhook: the API token or the webhook secret
    assert_eq!(
        call(&f.state, "POST", SYNC_PATH, &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&f.state, "POST", SYNC_PATH, &[("x-berth-token", "hook")])
            .await
            .0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        call(
            &f.state,
            "POST",
            SYNC_PATH,
            &[("authorization", "Bearer tok")]
        )
        .await
        .0,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn watch_streams_added_then_modified() {
    let f = fixture(None);
    let resp = router(f.state.clone())
        .oneshot(
            Request::get("/api/v1/namespaces/default/pods?watch=true")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = resp.into_body();
    let next = |b: &mut Body| {
        let b = std::mem::replace(b, Body::empty());
        async move {
            let mut b = b;
            let frame = tokio::time::timeout(std::time::Duration::from_secs(5), b.frame())
                .await
                .expect("event")
                .unwrap()
                .unwrap();
            let v: Value = serde_json::from_slice(frame.data_ref().unwrap()).unwrap();
            (v, b)
        }
    };
    let (ev, b) = next(&mut body).await;
    body = b;
    assert_eq!(ev["type"], "ADDED");
    assert_eq!(ev["object"]["metadata"]["name"], "web");
    let mut pod = Pod::default();
    pod.metadata.name = Some("web".into());
    pod.metadata.namespace = Some("default".into());
    pod.status = Some(PodStatus {
        phase: Some("Running".into()),
        ..Default::default()
    });
    f.status_tx.send_replace(Arc::new(Snapshot {
        version: 1,
        pods: vec![pod],
        ..Default::default()
    }));
    let (ev, _) = next(&mut body).await;
    assert_eq!(ev["type"], "MODIFIED");
    assert_eq!(ev["object"]["status"]["phase"], "Running");
}

#[tokio::test]
async fn pod_logs_from_cri_files() {
    let f = fixture(None);
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("c.log");
    std::fs::write(&log, "2024-01-01T00:00:00Z stdout F one\n2024-01-01T00:00:01Z stdout P tw\n2024-01-01T00:00:01Z stdout F o\n2024-01-01T00:00:02Z stderr F three\n").unwrap();
    f.status_tx.send_replace(Arc::new(Snapshot {
        logs: vec![("default".into(), "web".into(), "c".into(), log)],
        ..Default::default()
    }));
    let (code, body) = call(
        &f.state,
        "GET",
        "/api/v1/namespaces/default/pods/web/log",
        &[],
    )
    .await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, "one\ntwo\nthree\n"));
    let (_, body) = call(
        &f.state,
        "GET",
        "/api/v1/namespaces/default/pods/web/log?tailLines=1&container=c",
        &[],
    )
    .await;
    assert_eq!(body, "three\n");
    assert_eq!(
        call(
            &f.state,
            "GET",
            "/api/v1/namespaces/default/pods/web/log?container=x",
            &[]
        )
        .await
        .0,
        StatusCode::BAD_REQUEST,
        "a container the pod does not have is a bad request, as in a cluster"
    );
}

/// Issue 14: the auth scheme is case-insensitive (RFC 9110).
#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let f = fixture(Some("tok"));
    for ok in ["bearer tok", "BEARER tok", "Bearer  tok", "bEaReR\ttok"] {
        let (code, body) = call(&f.state, "GET", "/api/v1/pods", &[("authorization", ok)]).await;
        assert_eq!(code, StatusCode::OK, "{ok:?}: {body}");
    }
    for bad in ["bearertok", "Basic tok", "tok", "bearer tokx"] {
        let (code, _) = call(&f.state, "GET", "/api/v1/pods", &[("authorization", bad)]).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{bad:?}");
    }
}

/// Issue 14: watch and follow streams are capped per client (the fixture
/// allows 2 per client, 3 in total); a finished stream frees its slot.
#[tokio::test]
async fn streams_are_capped_per_client() {
    let f = fixture(None);
    let open = |ip: &'static str| {
        let st = f.state.clone();
        async move {
            let mut req = Request::get("/api/v1/pods?watch=true")
                .body(Body::empty())
                .unwrap();
            req.extensions_mut()
                .insert(super::limits::ClientAddr(ip.parse().unwrap()));
            router(st).oneshot(req).await.unwrap()
        }
    };
    let a1 = open("127.0.0.1").await;
    let a2 = open("127.0.0.1").await;
    assert_eq!(a1.status(), StatusCode::OK);
    assert_eq!(a2.status(), StatusCode::OK);
    let a3 = open("127.0.0.1").await;
    assert_eq!(a3.status(), StatusCode::TOO_MANY_REQUESTS);
    let body = a3.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("too many open watch or follow streams"),
        "{body:?}"
    );
    // plain requests are not streams
    assert_eq!(
        call(&f.state, "GET", "/api/v1/pods", &[]).await.0,
        StatusCode::OK
    );
    let b1 = open("127.0.0.2").await;
    assert_eq!(b1.status(), StatusCode::OK);
    assert_eq!(
        open("127.0.0.2").await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "total"
    );
    assert_eq!(f.state.streams.open(), 3);
    drop(a1);
    assert_eq!(f.state.streams.open(), 2);
    assert_eq!(open("127.0.0.1").await.status(), StatusCode::OK);
    drop((a2, b1));
}

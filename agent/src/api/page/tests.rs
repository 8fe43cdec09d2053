//! The status page through the router (`oneshot`, no socket): assets, the
//! token rule, and the live stream.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use berth_reconciler::Snapshot;
use berth_reconciler::traits::Usage;
use berth_spec::k8s_openapi::api::core::v1::{Pod, PodStatus};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::super::{ApiState, limits, router};
use crate::sources::{Hub, NodeInfo, SourceReport, SourceStatus};

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: x\n";

struct Fixture {
    state: ApiState,
    status_tx: berth_reconciler::StatusWriter,
    _hub: Arc<Hub>,
    _stop: tokio::sync::watch::Sender<bool>,
}

fn fixture(token: Option<&str>) -> Fixture {
    let (tx, _rx) = berth_reconciler::desired_channel();
    let hub = Hub::new(tx, NodeInfo::default());
    let p = berth_spec::parse_str("/m/web.yaml", POD);
    assert!(!p.has_errors(), "{:?}", p.diagnostics);
    hub.register().publish(SourceReport {
        complete: true,
        objects: p.objects,
        status: SourceStatus {
            kind: "directory",
            location: "/m".into(),
            revision: Some("abc123".into()),
            ..Default::default()
        },
    });
    let (status_tx, status) = berth_reconciler::status_channel();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let page = super::PageCtx {
        node_labels: Arc::new([("zone".to_string(), "lab".to_string())].into()),
        ..Default::default()
    };
    let state = ApiState {
        view: hub.view(),
        status,
        instance: "bt".into(),
        node: "edge-1".into(),
        token: token.map(Into::into),
        git_sync: None,
        webhook_secret: None,
        shutdown,
        streams: limits::StreamLimiter::new(4, 8),
        page,
        model: crate::api::model_cache(),
    };
    Fixture {
        state,
        status_tx,
        _hub: hub,
        _stop: stop,
    }
}

async fn get(st: &ApiState, uri: &str, auth: Option<&str>) -> axum::response::Response {
    let mut b = Request::builder().uri(uri);
    if let Some(a) = auth {
        b = b.header(header::AUTHORIZATION, a);
    }
    router(st.clone())
        .oneshot(b.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

async fn text(r: axum::response::Response) -> String {
    let b = r.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&b).into_owned()
}

#[tokio::test]
async fn page_and_assets_are_embedded_small_and_confined_to_this_origin() {
    let f = fixture(None);
    let mut total = 0;
    for (uri, ctype) in [
        ("/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ] {
        let r = get(&f.state, uri, None).await;
        assert_eq!(r.status(), StatusCode::OK, "{uri}");
        let h = r.headers();
        assert!(h[header::CONTENT_TYPE].to_str().unwrap().starts_with(ctype));
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        total += text(r).await.len();
    }
    assert!(total < 64 * 1024, "the page weighs {total} bytes");
    let html = text(get(&f.state, "/", None).await).await;
    assert!(html.contains(r#"src="/ui/app.js""#), "{html}");
    assert!(!html.contains("http://") && !html.contains("https://"));
    // read-only like the API
    let r = router(f.state.clone())
        .oneshot(Request::post("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn the_token_rule_holds_for_the_page_and_browsers_can_send_it_as_basic() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let f = fixture(Some("s3cret"));
    for uri in ["/", "/ui/app.js", "/ui/live?watch=true", "/api/v1/pods"] {
        let r = get(&f.state, uri, None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{uri}");
        let challenge = r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(
            challenge.starts_with("Basic realm=\"berth\""),
            "{challenge}"
        );
    }
    let good = format!("Basic {}", b64("anyone:s3cret"));
    let bad = format!("Basic {}", b64("s3cret:wrong"));
    assert_eq!(
        get(&f.state, "/", Some(&good)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get(&f.state, "/api/v1/pods", Some(&good)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get(&f.state, "/", Some("Bearer s3cret")).await.status(),
        StatusCode::OK
    );
    for wrong in [
        bad.as_str(),
        "Basic !!!not-base64",
        "Basic czNjcmV0",
        "Bearer nope",
    ] {
        assert_eq!(
            get(&f.state, "/", Some(wrong)).await.status(),
            StatusCode::UNAUTHORIZED,
            "{wrong}"
        );
    }
}

/// Reads newline-delimited JSON from a streaming body until `until` matches.
async fn read_until(
    body: &mut Body,
    buf: &mut String,
    seen: &mut Vec<Value>,
    until: impl Fn(&Value) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        while let Some(i) = buf.find('\n') {
            let l: String = buf.drain(..=i).collect();
            let v: Value = serde_json::from_str(&l).unwrap();
            let done = until(&v);
            seen.push(v);
            if done {
                return;
            }
        }
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .expect("stream line in time")
            .expect("stream open")
            .unwrap();
        if let Ok(d) = frame.into_data() {
            buf.push_str(&String::from_utf8_lossy(&d));
        }
    }
}

#[tokio::test]
async fn live_stream_sends_everything_then_changes_on_one_connection() {
    let f = fixture(None);
    let r = get(&f.state, "/ui/live?watch=true", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(f.state.streams.open(), 1, "counted as a watch stream");
    let mut body = r.into_body();
    let (mut buf, mut seen) = (String::new(), Vec::new());
    read_until(&mut body, &mut buf, &mut seen, |v| v["type"] == "SYNCED").await;
    assert_eq!(seen[0]["type"], "HELLO");
    let pod = seen
        .iter()
        .find(|v| v["kind"] == "Pod")
        .expect("the pod is sent");
    assert_eq!(
        (&pod["type"], &pod["object"]["metadata"]["name"]),
        (&Value::from("ADDED"), &Value::from("web"))
    );
    let status = seen.iter().find(|v| v["type"] == "STATUS").unwrap();
    assert_eq!(status["object"]["sources"][0]["revision"], "abc123");
    assert_eq!(status["object"]["host"]["name"], "edge-1");
    assert_eq!(status["object"]["host"]["labels"]["zone"], "lab");
    assert!(seen.iter().any(|v| v["type"] == "USAGE"));

    // the reconciler reports the pod running: one MODIFIED, nothing else resent
    let mut p = Pod::default();
    p.metadata.name = Some("web".into());
    p.metadata.namespace = Some("default".into());
    p.status = Some(PodStatus {
        phase: Some("Running".into()),
        ..Default::default()
    });
    f.status_tx.send_replace(Arc::new(Snapshot {
        version: 2,
        pods: vec![p],
        ready: true,
        ..Default::default()
    }));
    seen.clear();
    read_until(&mut body, &mut buf, &mut seen, |v| v["kind"] == "Pod").await;
    let last = seen.last().unwrap();
    assert_eq!(last["type"], "MODIFIED");
    assert_eq!(last["object"]["status"]["phase"], "Running");

    // a usage sample reaches the page too
    f.state.page.usage.record(
        SystemTime::now(),
        vec![(
            ("default".into(), "web".into(), "c".into()),
            Usage {
                cpu_usage_nanos: 5,
                memory_working_set_bytes: 4096,
            },
        )],
    );
    seen.clear();
    read_until(&mut body, &mut buf, &mut seen, |v| v["type"] == "USAGE").await;
    let u = &seen.last().unwrap()["object"]["containers"][0];
    assert_eq!(u["pod"], "web");
    assert_eq!(u["points"][0][2], 4096);
    drop(body);
    assert_eq!(f.state.streams.open(), 0, "released with the connection");
}

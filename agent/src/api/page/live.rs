//! `/ui/live?watch=true`: the status page's single stream (see [`super`]).
//! Like the API's `?watch=true` it diffs the merged objects whenever the
//! sources' view or the reconciler's snapshot changes, but over every kind the
//! page shows, plus the agent status and the usage ring, in one connection.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::super::ApiState;
use super::super::objects::{Res, collect};

/// The kinds the page shows.
const KINDS: [Res; 5] = [
    Res::Pods,
    Res::Deployments,
    Res::Services,
    Res::Volumes,
    Res::Events,
];
/// A line every so often, so a dead connection is noticed by both ends.
const PING: Duration = Duration::from_secs(20);
/// Changes closer together than this go out as one batch.
const COALESCE: Duration = Duration::from_millis(100);

type Key = (&'static str, String, String);

struct Live {
    st: ApiState,
    usage: watch::Receiver<u64>,
    /// The ring's version last sent.
    usage_sent: Option<u64>,
    known: Option<BTreeMap<Key, Value>>,
    status: Option<Value>,
    pending: VecDeque<Bytes>,
}

fn line(v: &Value) -> Bytes {
    let mut l = serde_json::to_vec(v).unwrap_or_default();
    l.push(b'\n');
    Bytes::from(l)
}

fn objects(st: &ApiState) -> BTreeMap<Key, Value> {
    let (view, snap) = (st.view.borrow().clone(), st.status.borrow().clone());
    let mut out = BTreeMap::new();
    for res in KINDS {
        for o in collect(res, &view, &snap) {
            let m = &o["metadata"];
            let key = (
                res.kind(),
                m["namespace"].as_str().unwrap_or("").to_string(),
                m["name"].as_str().unwrap_or("").to_string(),
            );
            out.insert(key, o);
        }
    }
    out
}

async fn refresh(lv: &mut Live) {
    let first = lv.known.is_none();
    if first {
        lv.pending.push_back(line(&json!({"type": "HELLO"})));
    }
    let now = objects(&lv.st);
    let prev = lv.known.take().unwrap_or_default();
    for (k, v) in &now {
        let kind = match prev.get(k) {
            None => "ADDED",
            Some(old) if old != v => "MODIFIED",
            Some(_) => continue,
        };
        lv.pending
            .push_back(line(&json!({"type": kind, "kind": k.0, "object": v})));
    }
    for (k, v) in &prev {
        if !now.contains_key(k) {
            lv.pending
                .push_back(line(&json!({"type": "DELETED", "kind": k.0, "object": v})));
        }
    }
    lv.known = Some(now);
    let status = super::super::status::agent_status(State(lv.st.clone()))
        .await
        .0;
    if lv.status.as_ref() != Some(&status) {
        let mut object = status.clone();
        object["host"] = super::host(&lv.st);
        lv.pending
            .push_back(line(&json!({"type": "STATUS", "object": object})));
        lv.status = Some(status);
    }
    let version = *lv.usage.borrow_and_update();
    if lv.usage_sent != Some(version) {
        lv.usage_sent = Some(version);
        let usage = lv.st.page.usage.to_json();
        lv.pending
            .push_back(line(&json!({"type": "USAGE", "object": usage})));
    }
    if first {
        lv.pending.push_back(line(&json!({"type": "SYNCED"})));
    }
}

pub fn stream(st: ApiState) -> Response {
    let usage = st.page.usage.subscribe();
    let lv = Live {
        st,
        usage,
        usage_sent: None,
        known: None,
        status: None,
        pending: VecDeque::new(),
    };
    let s = futures::stream::unfold(lv, |mut lv| async move {
        loop {
            if let Some(b) = lv.pending.pop_front() {
                return Some((Ok::<_, std::convert::Infallible>(b), lv));
            }
            if lv.known.is_some() {
                let st = &mut lv.st;
                let mut ping = false;
                tokio::select! {
                    r = st.view.changed() => if r.is_err() { return None },
                    r = st.status.changed() => if r.is_err() { return None },
                    r = lv.usage.changed() => if r.is_err() { return None },
                    _ = tokio::time::sleep(PING) => ping = true,
                    _ = crate::sources::stopped(&mut st.shutdown) => return None,
                }
                if ping {
                    return Some((Ok(line(&json!({"type": "PING"}))), lv));
                }
                tokio::select! {
                    _ = tokio::time::sleep(COALESCE) => {}
                    _ = crate::sources::stopped(&mut lv.st.shutdown) => return None,
                }
            }
            // mark before reading, so a change during refresh wakes us again
            lv.st.view.mark_unchanged();
            lv.st.status.mark_unchanged();
            refresh(&mut lv).await;
        }
    });
    let mut r = Body::from_stream(s).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

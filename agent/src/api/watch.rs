//! `?watch=true`: newline-delimited JSON watch events, computed by diffing the
//! merged object list whenever the sources' view or the reconciler's snapshot changes.

use std::collections::{BTreeMap, VecDeque};

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::ApiState;
use super::objects::{Filter, Res, collect, resource_version};
use super::table;

type Key = (String, String);

struct WatchState {
    st: ApiState,
    res: Res,
    filter: Filter,
    table: bool,
    known: Option<BTreeMap<Key, Value>>,
    pending: VecDeque<Bytes>,
    skip_initial: Option<String>,
}

fn snapshot(ws: &WatchState) -> (BTreeMap<Key, Value>, String) {
    let (view, snap) = (ws.st.view.borrow().clone(), ws.st.status.borrow().clone());
    let rv = resource_version(&view, &snap);
    let items = collect(ws.res, &view, &snap)
        .into_iter()
        .filter(|o| ws.filter.matches(o))
        .map(|o| {
            (
                (
                    o["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    o["metadata"]["name"].as_str().unwrap_or("").to_string(),
                ),
                o,
            )
        })
        .collect();
    (items, rv)
}

fn event(ws: &WatchState, kind: &str, obj: &Value, rv: &str) -> Bytes {
    let object = if ws.table {
        table::table(ws.res, std::slice::from_ref(obj), rv)
    } else {
        obj.clone()
    };
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// Diff the current list against what the client has seen; queue events.
fn refresh(ws: &mut WatchState) {
    let (now, rv) = snapshot(ws);
    let prev = match ws.known.take() {
        Some(p) => p,
        // a client that just listed at this resourceVersion already has the objects
        None if ws.skip_initial.as_deref() == Some(rv.as_str()) => now.clone(),
        None => BTreeMap::new(),
    };
    for (k, v) in &now {
        match prev.get(k) {
            None => ws.pending.push_back(event(ws, "ADDED", v, &rv)),
            Some(old) if old != v => ws.pending.push_back(event(ws, "MODIFIED", v, &rv)),
            Some(_) => {}
        }
    }
    for (k, v) in &prev {
        if !now.contains_key(k) {
            ws.pending.push_back(event(ws, "DELETED", v, &rv));
        }
    }
    ws.known = Some(now);
}

pub fn stream(
    st: ApiState,
    res: Res,
    filter: Filter,
    table: bool,
    since: Option<String>,
) -> Response {
    let ws = WatchState {
        st,
        res,
        filter,
        table,
        known: None,
        pending: VecDeque::new(),
        skip_initial: since.filter(|s| !s.is_empty() && s != "0"),
    };
    let s = futures::stream::unfold(ws, |mut ws| async move {
        loop {
            if let Some(b) = ws.pending.pop_front() {
                return Some((Ok::<_, std::convert::Infallible>(b), ws));
            }
            if ws.known.is_some() {
                let st = &mut ws.st;
                tokio::select! {
                    r = st.view.changed() => if r.is_err() { return None },
                    r = st.status.changed() => if r.is_err() { return None },
                    _ = crate::sources::stopped(&mut st.shutdown) => return None,
                }
            }
            // mark before reading, so a change during refresh wakes us again
            ws.st.view.mark_unchanged();
            ws.st.status.mark_unchanged();
            refresh(&mut ws);
        }
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(s),
    )
        .into_response()
}

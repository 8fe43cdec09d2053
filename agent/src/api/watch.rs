//! `?watch=true`: newline-delimited JSON watch events. The stream diffs the
//! read model by object `resourceVersion` whenever the sources' view or the
//! reconciler's snapshot changes; `resourceVersion=N` resumes after N (410
//! `Expired` as an ERROR event when N is older than the kept history),
//! `allowWatchBookmarks` adds BOOKMARK events (and the initial-events-end one
//! with `sendInitialEvents`), `timeoutSeconds` ends the stream.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::model::{Key, Model, Since, rv_of};
use super::objects::{Filter, ListQuery, Res, truthy};
use super::{ApiError, ApiState, table};

/// A watch without `timeoutSeconds` ends after this (clients reconnect), as
/// an API server's request timeout does.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
/// `timeoutSeconds` is capped at this.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// How often a bookmark is sent when the client allows them.
const BOOKMARK_EVERY: Duration = Duration::from_secs(30);

struct WatchState {
    st: ApiState,
    res: Res,
    filter: Filter,
    table: bool,
    bookmarks: bool,
    known: BTreeMap<Key, Arc<Value>>,
    pending: VecDeque<Bytes>,
    deadline: Instant,
    next_bookmark: Instant,
    last_rv: u64,
}

fn line(v: &Value) -> Bytes {
    let mut l = serde_json::to_vec(v).unwrap_or_default();
    l.push(b'\n');
    Bytes::from(l)
}

impl WatchState {
    fn push(&mut self, kind: &str, obj: &Value) {
        let object = if self.table {
            table::table(self.res, &[obj], &rv_of(obj).to_string())
        } else {
            obj.clone()
        };
        self.pending
            .push_back(line(&json!({"type": kind, "object": object})));
    }

    fn bookmark(&mut self, initial_end: bool) {
        let mut meta = json!({"resourceVersion": self.last_rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.res.kind(), "apiVersion": self.res.api_version(), "metadata": meta});
        self.pending
            .push_back(line(&json!({"type": "BOOKMARK", "object": obj})));
    }

    fn current(&self, model: &Model) -> BTreeMap<Key, Arc<Value>> {
        model
            .objects
            .get(&self.res)
            .into_iter()
            .flatten()
            .filter(|(_, v)| self.filter.matches(v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Diff the model against what the client has seen; queue events.
    fn refresh(&mut self) {
        let model = self.st.model();
        let now = self.current(&model);
        let mut evs: Vec<(&'static str, Arc<Value>)> = Vec::new();
        for (k, v) in &now {
            match self.known.get(k) {
                None => evs.push(("ADDED", v.clone())),
                Some(old) if rv_of(old) != rv_of(v) => evs.push(("MODIFIED", v.clone())),
                Some(_) => {}
            }
        }
        for (k, v) in &self.known {
            if !now.contains_key(k) {
                let mut gone = (**v).clone();
                gone["metadata"]["resourceVersion"] = json!(model.rv.to_string());
                evs.push(("DELETED", Arc::new(gone)));
            }
        }
        for (t, v) in evs {
            self.push(t, &v);
        }
        self.known = now;
        self.last_rv = model.rv;
    }
}

pub fn stream(
    st: ApiState,
    res: Res,
    filter: Filter,
    table: bool,
    q: &ListQuery,
) -> Result<Response, ApiError> {
    let timeout = q
        .timeout_seconds
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT)
        .min(MAX_TIMEOUT);
    let since = match q.resource_version.as_deref() {
        None | Some("" | "0") => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| ApiError::BadParam {
            param: "resourceVersion",
            value: v.into(),
            reason: "not a resource version this server handed out".into(),
        })?),
    };
    let bookmarks = truthy(&q.allow_watch_bookmarks);
    let now = Instant::now();
    let mut ws = WatchState {
        st,
        res,
        filter,
        table,
        bookmarks,
        known: BTreeMap::new(),
        pending: VecDeque::new(),
        deadline: now + timeout,
        next_bookmark: now + BOOKMARK_EVERY,
        last_rv: 0,
    };
    // mark before reading, so a change from here on wakes the stream
    ws.st.view.mark_unchanged();
    ws.st.status.mark_unchanged();
    let model = ws.st.model();
    ws.last_rv = model.rv;
    let current = ws.current(&model);
    match since {
        None => {
            for v in current.values() {
                ws.push("ADDED", v);
            }
        }
        Some(n) if n >= model.rv => {}
        Some(n) => match ws.st.model.since(&model, res, n) {
            Since::Gone => {
                let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "reason": "Expired", "code": 410,
                    "message": ApiError::Gone(n).to_string()});
                ws.pending
                    .push_back(line(&json!({"type": "ERROR", "object": status})));
                ws.deadline = now;
            }
            Since::Events(evs) => {
                for (t, v) in evs {
                    if ws.filter.matches(&v) {
                        ws.push(t, &v);
                    }
                }
            }
        },
    }
    if bookmarks && truthy(&q.send_initial_events) {
        ws.bookmark(true);
    }
    ws.known = current;
    let s = futures::stream::unfold(ws, |mut ws| async move {
        loop {
            if let Some(b) = ws.pending.pop_front() {
                return Some((Ok::<_, std::convert::Infallible>(b), ws));
            }
            let now = Instant::now();
            if now >= ws.deadline {
                return None;
            }
            let wake = if ws.bookmarks {
                ws.deadline.min(ws.next_bookmark)
            } else {
                ws.deadline
            };
            let st = &mut ws.st;
            tokio::select! {
                r = st.view.changed() => if r.is_err() { return None },
                r = st.status.changed() => if r.is_err() { return None },
                _ = crate::sources::stopped(&mut st.shutdown) => return None,
                _ = tokio::time::sleep_until(wake) => {
                    if ws.bookmarks && Instant::now() >= ws.next_bookmark {
                        ws.next_bookmark = Instant::now() + BOOKMARK_EVERY;
                        ws.bookmark(false);
                    }
                    continue;
                }
            }
            ws.st.view.mark_unchanged();
            ws.st.status.mark_unchanged();
            ws.refresh();
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(s),
    )
        .into_response())
}

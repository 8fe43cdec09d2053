//! Per-client bounds on long-lived responses (`?watch=true`, log `follow`):
//! each holds a connection and a task for as long as the client wants, so one
//! client may hold at most [`StreamLimiter::per_client`] of them and all
//! clients together at most [`StreamLimiter::total`] (kept well below the
//! connection cap, so streams never take every connection). A client is its
//! IP address ([`ClientAddr`], set by the server; requests without one, as in
//! router tests, share one "unknown" client).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::{ApiError, ApiState};

/// The peer address of a request's connection (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// Counts open streams per client.
#[derive(Debug)]
pub struct StreamLimiter {
    pub per_client: usize,
    pub total: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl StreamLimiter {
    pub fn new(per_client: usize, total: usize) -> Arc<Self> {
        Arc::new(StreamLimiter {
            per_client,
            total,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A permit for one more stream of `client`, if within both limits.
    pub fn try_acquire(self: &Arc<Self>, client: IpAddr) -> Option<StreamPermit> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = open.values().sum();
        let mine = open.entry(client).or_default();
        if *mine >= self.per_client || total >= self.total {
            return None;
        }
        *mine += 1;
        Some(StreamPermit {
            limiter: self.clone(),
            client,
        })
    }

    /// Streams open now (all clients).
    pub fn open(&self) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.values().sum()
    }
}

/// One open stream; released when dropped (with the response body).
#[derive(Debug)]
pub struct StreamPermit {
    limiter: Arc<StreamLimiter>,
    client: IpAddr,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// Whether a request asks for a long-lived response (as the handlers read
/// the query: `watch` or `follow` equal to `true` or `1`).
pub fn is_stream(req: &Request) -> bool {
    let Ok(Query(pairs)) = Query::<Vec<(String, String)>>::try_from_uri(req.uri()) else {
        return false;
    };
    pairs
        .iter()
        .any(|(k, v)| (k == "watch" || k == "follow") && (v == "true" || v == "1"))
}

/// Middleware: refuse a stream beyond the limits with 429; otherwise the
/// permit lives as long as the response body.
pub async fn limit_streams(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    if !is_stream(&req) {
        return next.run(req).await;
    }
    let client = req
        .extensions()
        .get::<ClientAddr>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0);
    let Some(permit) = st.streams.try_acquire(client) else {
        tracing::debug!(%client, "stream refused: too many open streams");
        return ApiError::TooManyStreams {
            limit: st.streams.per_client,
        }
        .into_response();
    };
    next.run(req).await.map(|b| with_guard(b, permit))
}

/// A body that holds `guard` until it is dropped (finished or abandoned).
pub fn with_guard<G: Send + Sync + Unpin + 'static>(body: Body, guard: G) -> Body {
    Body::new(Guarded {
        inner: body,
        _guard: guard,
    })
}

struct Guarded<G> {
    inner: Body,
    _guard: G,
}

impl<G: Unpin> http_body::Body for Guarded<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_per_client_and_in_total() {
        let l = StreamLimiter::new(2, 3);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let p1 = l.try_acquire(a).unwrap();
        let _p2 = l.try_acquire(a).unwrap();
        assert!(l.try_acquire(a).is_none(), "per client");
        let _p3 = l.try_acquire(b).unwrap();
        assert!(l.try_acquire(b).is_none(), "in total");
        drop(p1);
        assert_eq!(l.open(), 2);
        assert!(l.try_acquire(a).is_some());
    }

    #[test]
    fn stream_requests_are_recognised_as_the_handlers_read_them() {
        let req = |q: &str| Request::builder().uri(q).body(Body::empty()).unwrap();
        for yes in [
            "/api/v1/pods?watch=true",
            "/api/v1/pods?watch=1",
            "/api/v1/pods?x=y&watch=%74rue",
            "/api/v1/namespaces/d/pods/p/log?follow=true",
        ] {
            assert!(is_stream(&req(yes)), "{yes}");
        }
        for no in [
            "/api/v1/pods",
            "/api/v1/pods?watch=false",
            "/api/v1/pods?watchx=1",
        ] {
            assert!(!is_stream(&req(no)), "{no}");
        }
    }
}

//! The read-only HTTP API (G15): Kubernetes-shaped, so `curl | jq` habits and
//! `kubectl --server http://127.0.0.1:7070 get pods` work.
//!
//! Endpoints (all GET unless said otherwise):
//! - `/healthz` -> `ok` (never needs the token); `/readyz` -> `ok` once every
//!   source synced, the reconciler finished its first pass, the host probes
//!   (run beside start-up) are done and no agent
//!   condition blocks readiness (a failed pod worker), else 503
//! - `/version`, `/api`, `/api/v1`, `/apis`, `/apis/apps/v1`,
//!   `/apis/berth.dev/v1alpha1`: discovery for kubectl
//! - `/api/v1/status`: agent version, instance, node, sources (type, location,
//!   revision, last sync, last error, file:line diagnostics), object counts,
//!   objects not scheduled on this node, conflicts
//! - `/api/v1/{pods,services,configmaps,secrets,events,namespaces}` and
//!   `/api/v1/namespaces/{ns}/{resource}[/{name}]`,
//!   `/apis/apps/v1[/namespaces/{ns}]/deployments[/{name}]`,
//!   `/apis/berth.dev/v1alpha1[/namespaces/{ns}]/volumes[/{name}]`: lists
//!   (`PodList`, ...) and objects; `?labelSelector=`, `?fieldSelector=`
//!   (metadata.name/namespace), `?watch=true` (JSON watch events), and
//!   `meta.k8s.io/v1` Tables when the Accept header asks for `as=Table`.
//!   Secrets never carry their data (the keys are listed in an annotation).
//! - `/api/v1/namespaces/{ns}/pods/{name}/log?container=&tailLines=&follow=`
//! - `/metrics`: Prometheus text format
//! - `/`: the status page ([`page`]; its assets and stream under `/ui/`)
//! - `POST /api/v1/sources/git/sync`: trigger a Git fetch (webhook); accepts
//!   the API token or the webhook secret (`X-Berth-Token` or `Authorization: Bearer`)
//!
//! Objects are the desired objects (their spec, as read from the manifests)
//! with `status` from the reconciler's snapshot when it has one; pods that
//! exist only in the snapshot (Deployment replicas) are served as observed.
//! Any other method answers 405: berth is declarative.
//!
//! The server ([`serve`]) bounds connections (count, header and write
//! timeouts); [`limits`] bounds watch and follow streams per client (429).

mod derived;
mod discovery;
mod events;
mod host_metrics;
pub mod limits;
mod logs;
pub(crate) mod logs_query;
mod metrics;
mod model;
mod node;
mod objects;
mod openapi;
mod page;
mod podmetrics;
mod printers;
pub use page::PageCtx;
mod selector;
pub mod serve;
mod status;
mod table;
pub mod usage;
mod watch;
mod writes;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_reconciler::StatusReader;
use serde_json::json;
use tokio::sync::Notify;

use crate::sources::ViewRx;

pub const SYNC_PATH: &str = "/api/v1/sources/git/sync";

/// Read handles only (G10), cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub view: ViewRx,
    pub status: StatusReader,
    pub instance: Arc<str>,
    pub node: Arc<str>,
    /// Bearer token required on every route but `/healthz`.
    pub token: Option<Arc<str>>,
    /// Wakes the Git source; `None` without a Git source.
    pub git_sync: Option<Arc<Notify>>,
    pub webhook_secret: Option<Arc<str>>,
    /// Turns true at shutdown: ends watch and follow streams.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Open watch and follow streams per client ([`limits`]).
    pub streams: Arc<limits::StreamLimiter>,
    /// The status page's usage ring and host facts.
    pub page: page::PageCtx,
    /// The read model every object route serialises ([`model`]).
    pub model: Arc<model::Cache>,
}

impl ApiState {
    /// The current read model (rebuilt only when the view or snapshot changed).
    fn model(&self) -> Arc<model::Model> {
        let (view, snap) = (self.view.borrow().clone(), self.status.borrow().clone());
        self.model.model(
            &view,
            &snap,
            &model::Ctx {
                node_name: &self.node,
                node_labels: &self.page.node_labels,
                started: self.page.started,
            },
        )
    }
}

/// A fresh read-model cache for [`ApiState::model`].
pub fn model_cache() -> Arc<model::Cache> {
    Arc::default()
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{kind} {name:?} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("the server could not find the requested resource")]
    NoRoute,
    #[error("berth is declarative: change the manifests (directory or Git), not the API")]
    MethodNotAllowed,
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("invalid {param} {value:?}: {reason}")]
    BadParam {
        param: &'static str,
        value: String,
        reason: String,
    },
    #[error("a container name must be specified for pod {pod}, choose one of: {containers:?}")]
    ContainerRequired {
        pod: String,
        containers: Vec<String>,
    },
    #[error("{0}")]
    NotOffered(String),
    /// A log request a cluster also answers with 400 (a container waiting
    /// to start, no previous run, an unknown container).
    #[error("{0}")]
    Waiting(String),
    #[error("too old resource version: {0}")]
    Gone(u64),
    #[error("no Git source is configured")]
    NoGitSource,
    #[error("too many open watch or follow streams from this client (at most {limit})")]
    TooManyStreams { limit: usize },
    #[error("reading log {path}")]
    Log {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ApiError {
    fn code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute | ApiError::NoGitSource => {
                (StatusCode::NOT_FOUND, "NotFound")
            }
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            ApiError::BadParam { .. }
            | ApiError::ContainerRequired { .. }
            | ApiError::NotOffered(_)
            | ApiError::Waiting(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            ApiError::Gone(_) => (StatusCode::GONE, "Expired"),
            ApiError::TooManyStreams { .. } => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"),
            ApiError::Log { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, reason) = self.code();
        let message = if code == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %crate::sources::git::error_chain(&self), "API request failed");
            "internal error (see the agent's log)".to_string()
        } else {
            self.to_string()
        };
        let body = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
        });
        let mut r = (code, Json(body)).into_response();
        if code == StatusCode::UNAUTHORIZED {
            // lets a browser ask for the token (as the password) on the status page
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, page::challenge());
        }
        r
    }
}

/// The API router; tests drive it with `oneshot`, no socket needed.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/status", get(status::agent_status))
        .route(SYNC_PATH, post(git_sync))
        .merge(discovery::routes())
        .merge(openapi::routes())
        .merge(podmetrics::routes())
        .merge(node::routes())
        .merge(objects::routes())
        .merge(page::routes())
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}/log",
            get(logs::pod_log),
        )
        .fallback(|| async { ApiError::NoRoute })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limits::limit_streams,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// 405 for anything but GET/HEAD (and the sync POST); bearer token check.
async fn guard(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let is_sync = path == SYNC_PATH && req.method() == Method::POST;
    let authorized = st
        .token
        .as_ref()
        .is_none_or(|tok| presented(req.headers()).iter().any(|p| ct_eq(p, tok)));
    if let Some(e) = writes::not_offered_path(path) {
        return e.into_response();
    }
    if !(req.method() == Method::GET || req.method() == Method::HEAD || is_sync) {
        if !authorized {
            return ApiError::MethodNotAllowed.into_response();
        }
        return writes::refuse(&st, req).await;
    }
    if path == "/healthz" || is_sync {
        return next.run(req).await; // the sync handler checks its own secrets
    }
    if !authorized {
        return ApiError::Unauthorized.into_response();
    }
    next.run(req).await
}

/// Tokens presented in `Authorization: Bearer` (the scheme is
/// case-insensitive, RFC 9110), `X-Berth-Token`, or as the password of
/// `Authorization: Basic` (what a browser sends for the status page).
fn presented(h: &HeaderMap) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(v) = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Some((scheme, t)) = v.trim_start().split_once([' ', '\t'])
    {
        if scheme.eq_ignore_ascii_case("bearer") {
            out.push(t.trim().to_string());
        } else if scheme.eq_ignore_ascii_case("basic")
            && let Some(pass) = page::basic_password(t.trim())
        {
            out.push(pass);
        }
    }
    if let Some(v) = h.get("x-berth-token").and_then(|v| v.to_str().ok()) {
        out.push(v.trim().to_string());
    }
    out
}

/// Constant-time comparison (length aside).
fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

async fn git_sync(State(st): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let Some(notify) = &st.git_sync else {
        return Err(ApiError::NoGitSource);
    };
    let secrets: Vec<&Arc<str>> = st.token.iter().chain(st.webhook_secret.iter()).collect();
    if !secrets.is_empty()
        && !presented(&headers)
            .iter()
            .any(|p| secrets.iter().any(|s| ct_eq(p, s)))
    {
        return Err(ApiError::Unauthorized);
    }
    notify.notify_one();
    Ok((StatusCode::ACCEPTED, Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "message": "git fetch triggered"}))).into_response())
}

async fn readyz(State(st): State<ApiState>) -> Response {
    let view = st.view.borrow().clone();
    let snap = st.status.borrow().clone();
    let mut missing = Vec::new();
    if !view.synced {
        missing.push("sources have not all synced yet");
    } else if !view.desired.complete {
        missing.push("a source has not produced a complete set yet");
    }
    if !snap.ready {
        missing.push("the reconciler has not finished its first pass");
    }
    if !st.page.host.probed() {
        missing.push("the host's features are still being probed");
    }
    // e.g. a pod worker that failed and waits to be started again
    let conditions = snap.not_ready_reasons();
    if missing.is_empty() && conditions.is_empty() {
        "ok".into_response()
    } else {
        let mut msg: Vec<&str> = missing;
        msg.extend(conditions.iter().map(String::as_str));
        (StatusCode::SERVICE_UNAVAILABLE, msg.join("; ")).into_response()
    }
}

#[cfg(test)]
mod tests;

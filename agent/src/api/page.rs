//! The status page at `/`: what runs on this box, how healthy it is and what
//! changed, for a person with a browser (a phone included).
//!
//! - `/`, `/ui/app.js`, `/ui/style.css`: the page, embedded in the binary (no
//!   CDN, nothing fetched from elsewhere: the Content-Security-Policy allows
//!   this origin only). Same listener and token rule as the API: with
//!   `--api-token-file`, a browser is asked for the token (HTTP Basic, any
//!   user name) and then sends it with every request of the page.
//! - `/ui/live?watch=true`: one newline-delimited JSON stream with everything
//!   the page shows, so the page holds one connection (plus one while a log is
//!   followed). Each connection starts with `HELLO`, the current objects as
//!   `ADDED`, then `SYNCED`; afterwards `ADDED`/`MODIFIED`/`DELETED` per
//!   object, `STATUS` (agent, node, sources) and `USAGE` (the
//!   [`super::usage`] ring) when they change, and `PING` every 20 s. It reads
//!   the same read model as the API (`objects::collect`, `/api/v1/status`).
//!
//! Logs are read through the API's log endpoint (tail and follow).

mod live;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::ApiState;
use super::usage::UsageRing;

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const STYLE_CSS: &str = include_str!("page/style.css");

/// What the page needs beyond the API's read model: the usage ring and
/// facts about this host fixed at start.
#[derive(Debug, Clone)]
pub struct PageCtx {
    pub usage: Arc<UsageRing>,
    pub node_labels: Arc<BTreeMap<String, String>>,
    /// When this agent process started.
    pub started: SystemTime,
    /// What the host offers, probed at start (degraded mode).
    pub host: Arc<crate::host::HostCell>,
}

impl Default for PageCtx {
    fn default() -> Self {
        PageCtx {
            usage: Arc::default(),
            node_labels: Arc::default(),
            started: SystemTime::now(),
            host: Arc::new(crate::host::HostCell::with(Default::default())),
        }
    }
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/ui/live",
            get(|st: State<ApiState>| async move { live::stream(st.0) }),
        )
}

/// The page may talk to this origin only and never be framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// `WWW-Authenticate` of a 401: a browser asks for a user name (any) and
/// the token as the password.
pub fn challenge() -> HeaderValue {
    HeaderValue::from_static("Basic realm=\"berth\", charset=\"UTF-8\"")
}

/// The password of `Authorization: Basic <base64(user:password)>`.
pub fn basic_password(b64: &str) -> Option<String> {
    use base64::Engine;
    if b64.len() > 4096 {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (_user, pass) = text.split_once(':')?;
    Some(pass.to_string())
}

/// This host as the page shows it: node, kernel, cgroups, uptimes.
pub fn host(st: &ApiState) -> Value {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let kernel = read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string());
    let cgroup = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "v2"
    } else if std::path::Path::new("/sys/fs/cgroup/unified").exists() {
        "v1 (hybrid)"
    } else {
        "v1"
    };
    let host_uptime = read("/proc/uptime")
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map(|s| s as u64);
    json!({
        "name": &*st.node,
        "labels": &*st.page.node_labels,
        "kernel": kernel,
        "arch": std::env::consts::ARCH,
        "cgroup": cgroup,
        "hostUptimeSeconds": host_uptime,
        "agentStarted": crate::sources::rfc3339(st.page.started),
        "agentVersion": env!("CARGO_PKG_VERSION"),
        "instance": &*st.instance,
    })
}

#[cfg(test)]
mod tests;

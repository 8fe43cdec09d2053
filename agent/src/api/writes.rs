//! Every write answers 405 with berth's own explanation: changes go through
//! the manifests (directory or Git), naming the object's source `file:line`
//! when berth knows it. `exec`, `attach` and `port-forward` say plainly that
//! berth does not offer them.

use axum::Json;
use axum::body::to_bytes;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::objects::Res;
use super::{ApiError, ApiState};

/// The most of a write's body read to find the object's name (a create names
/// it only there); larger bodies are answered without it.
const MAX_BODY: usize = 1 << 20;

/// The subresources berth does not serve at all, with why.
pub fn not_offered(sub: &str) -> Option<ApiError> {
    let what = match sub {
        "exec" => "exec",
        "attach" => "attach",
        "portforward" => "port-forward",
        "proxy" => "proxy",
        "ephemeralcontainers" => "ephemeral containers",
        "eviction" | "binding" => {
            return Some(ApiError::NotOffered(format!(
                "berth does not offer {sub}: pods are placed and removed by the manifests (directory or Git)"
            )));
        }
        _ => return None,
    };
    Some(ApiError::NotOffered(format!(
        "berth does not offer {what}: it runs what the manifests say and has no interactive access to containers; read their logs (kubectl logs) or use the host's own tools"
    )))
}

/// `not_offered` for a request path `.../pods/{name}/{sub}`.
pub fn not_offered_path(path: &str) -> Option<ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["api", "v1", "namespaces", _, "pods", _, sub] => not_offered(sub),
        _ => None,
    }
}

/// (resource, namespace, name, subresource) named by an API path.
type Target = (Res, Option<String>, Option<String>, Option<String>);

fn parse(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (gv, rest): (String, &[&str]) = match segs.as_slice() {
        ["api", v, rest @ ..] => (v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return None,
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, r, more @ ..] => (Some(ns.to_string()), {
            let mut v = vec![*r];
            v.extend_from_slice(more);
            v
        }),
        other => (None, other.to_vec()),
    };
    let res = Res::from_path(&gv, rest.first()?).or_else(|| {
        // `/api/v1/namespaces/{name}` itself
        (rest.is_empty() && ns.is_some()).then_some(Res::Namespaces)
    })?;
    Some((
        res,
        ns,
        rest.get(1).map(|s| s.to_string()),
        rest.get(2).map(|s| s.to_string()),
    ))
}

fn verb(m: &Method, sub: Option<&str>) -> &'static str {
    match (m.as_str(), sub) {
        (_, Some("scale")) => "scaling",
        ("POST", _) => "creating",
        ("PUT", _) => "replacing",
        ("PATCH", _) => "patching",
        ("DELETE", _) => "deleting",
        _ => "changing",
    }
}

/// The 405 for a write, with the manifest to change when known.
pub async fn refuse(st: &ApiState, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let parsed = parse(&path);
    let mut name = parsed.as_ref().and_then(|p| p.2.clone());
    if name.is_none() && method == Method::POST {
        // a create names its object in the body
        if let Ok(b) = to_bytes(req.into_body(), MAX_BODY).await
            && let Ok(v) = serde_json::from_slice::<Value>(&b)
        {
            name = v["metadata"]["name"].as_str().map(String::from);
        }
    }
    let Some((res, ns, _, sub)) = parsed else {
        return ApiError::MethodNotAllowed.into_response();
    };
    let ns_s = ns.clone().unwrap_or_default();
    let what = match &name {
        Some(n) if res.namespaced() => format!("{} {ns_s}/{n}", res.kind()),
        Some(n) => format!("{} {n}", res.kind()),
        None => format!("{} objects", res.kind()),
    };
    let source = name.as_ref().and_then(|n| {
        let model = st.model();
        model
            .sources
            .get(&(res, (ns_s.clone(), n.clone())))
            .cloned()
    });
    let derived = matches!(
        res,
        Res::Pods | Res::ReplicaSets | Res::Endpoints | Res::EndpointSlices | Res::Pvcs
    );
    let hint = match &source {
        Some(loc) => format!("edit {loc}"),
        None if derived => {
            "it follows from the manifests' Deployments, Services and Volumes".to_string()
        }
        None => "add or edit its manifest".to_string(),
    };
    let message = format!(
        "berth is declarative: {} {what} through the API is not supported; change the manifests (directory or Git) instead: {hint}",
        verb(&method, sub.as_deref())
    );
    let mut details = json!({"kind": res.plural(), "group": res.api_version().rsplit_once('/').map(|g| g.0).unwrap_or("")});
    if let Some(n) = &name {
        details["name"] = json!(n);
    }
    if let Some(loc) = &source {
        details["causes"] = json!([{"reason": "FieldValueNotSupported", "message": format!("source: {loc}"), "field": "metadata.annotations[berth.dev/source]"}]);
    }
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": "MethodNotAllowed",
        "details": details, "code": 405,
    });
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let p = parse("/apis/apps/v1/namespaces/default/deployments/web/scale").unwrap();
        assert_eq!(p.0, Res::Deployments);
        assert_eq!(p.1.as_deref(), Some("default"));
        assert_eq!(p.2.as_deref(), Some("web"));
        assert_eq!(p.3.as_deref(), Some("scale"));
        let p = parse("/api/v1/namespaces/default/pods").unwrap();
        assert_eq!((p.0, p.2), (Res::Pods, None));
        assert_eq!(parse("/api/v1/nodes/n1").unwrap().0, Res::Nodes);
        assert!(parse("/healthz").is_none());
        assert!(not_offered_path("/api/v1/namespaces/d/pods/p/exec").is_some());
        assert!(not_offered_path("/api/v1/namespaces/d/pods/p/log").is_none());
    }
}

//! `GET .../pods/{name}/log`: container logs from the CRI-format files the
//! runtime writes (`<RFC3339 time> <stdout|stderr> <P|F> <message>`; `P` lines
//! are partial and joined with what follows).

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use super::logs_query::{self, LogQuery};
use super::objects::Res;
use super::{ApiError, ApiState};

/// How often a `follow` stream looks for new lines (only while a client follows).
const FOLLOW_POLL: Duration = Duration::from_millis(250);

fn complete_len(text: &str) -> usize {
    text.rfind('\n').map_or(0, |i| i + 1)
}

fn names(o: &Value, field: &str) -> Vec<String> {
    o["spec"][field]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect()
}

/// Why a container has no log yet, as a cluster says it: a main container
/// behind unfinished init containers is `PodInitializing` (berth's status
/// calls it ContainerCreating), else its status' waiting reason.
fn waiting_reason(pod: &Value, c: &str) -> String {
    let is_init = names(pod, "initContainers").iter().any(|n| n == c);
    let inits_done = pod["status"]["initContainerStatuses"]
        .as_array()
        .is_some_and(|a| {
            a.iter()
                .all(|s| s["state"]["terminated"]["exitCode"].as_i64() == Some(0))
        });
    if !is_init && !names(pod, "initContainers").is_empty() && !inits_done {
        return "PodInitializing".into();
    }
    ["initContainerStatuses", "containerStatuses"]
        .iter()
        .filter_map(|f| pod["status"][*f].as_array())
        .flatten()
        .find(|s| s["name"] == c)
        .and_then(|s| s["state"]["waiting"]["reason"].as_str().map(String::from))
        .unwrap_or_else(|| "ContainerCreating".into())
}

fn find_log(
    st: &ApiState,
    ns: &str,
    pod: &str,
    container: Option<&str>,
) -> Result<(PathBuf, String), ApiError> {
    let model = st.model();
    let Some(obj) = model.get(Res::Pods, ns, pod) else {
        return Err(ApiError::NotFound {
            kind: "Pod",
            name: format!("{ns}/{pod}"),
        });
    };
    let (containers, inits) = (names(obj, "containers"), names(obj, "initContainers"));
    let c = match container {
        Some(c) => c.to_string(),
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return Err(ApiError::ContainerRequired {
                pod: pod.to_string(),
                containers,
            });
        }
    };
    if !containers.contains(&c) && !inits.contains(&c) {
        return Err(ApiError::Waiting(format!(
            "container {c} is not valid for pod {pod}"
        )));
    }
    let snap = st.status.borrow().clone();
    snap.logs
        .iter()
        .find(|l| l.0 == ns && l.1 == pod && l.2 == c)
        .map(|l| (l.3.clone(), c.clone()))
        .ok_or_else(|| {
            ApiError::Waiting(format!(
                "container {c:?} in pod {pod:?} is waiting to start: {}",
                waiting_reason(obj, &c)
            ))
        })
}

/// The previous run's entries of the container whose current log is `current`.
async fn previous(
    current: PathBuf,
    pod: &str,
    c: &str,
) -> Result<Vec<logs_query::Entry>, ApiError> {
    let files = logs_query::previous_files(&current);
    if files.is_empty() {
        return Err(ApiError::Waiting(format!(
            "previous terminated container {c:?} in pod {pod:?} not found"
        )));
    }
    let mut partial = String::new();
    let mut out = Vec::new();
    for f in files {
        let bytes = tokio::fs::read(&f).await.map_err(|source| ApiError::Log {
            path: f.display().to_string(),
            source,
        })?;
        let text = String::from_utf8_lossy(&bytes);
        out.extend(logs_query::parse(&text, &mut partial));
    }
    Ok(out)
}

pub async fn pod_log(
    State(st): State<ApiState>,
    Path((ns, pod)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let opts = q.opts()?;
    let (path, container) = find_log(&st, &ns, &pod, q.container.as_deref())?;
    let plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if q.previous() {
        let entries = previous(path, &pod, &container).await?;
        return Ok((plain, opts.select(entries)).into_response());
    }
    let lerr = |source| ApiError::Log {
        path: path.display().to_string(),
        source,
    };
    // a container that has just started may not have its log file yet:
    // nothing written so far, as kubelet shows it
    let bytes = match tokio::fs::read(&path).await {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        r => r.map_err(lerr)?,
    };
    let text = String::from_utf8_lossy(&bytes);
    let done = complete_len(&text);
    let mut partial = String::new();
    let head = opts.select(logs_query::parse(&text[..done], &mut partial));
    if !q.follow() {
        return Ok((plain, head).into_response());
    }
    let budget = opts.limit.map(|l| l.saturating_sub(head.len()));
    if budget == Some(0) {
        return Ok((plain, head).into_response());
    }
    // follow: poll the file for growth; a shorter file (rotated/truncated) is read from its start
    let offset = done as u64;
    let shutdown = st.shutdown.clone();
    let init = (Some(Bytes::from(head)), path, offset, partial, budget);
    let s = futures::stream::unfold(
        init,
        move |(first, path, mut offset, mut partial, mut budget)| {
            let mut shutdown = shutdown.clone();
            let opts = opts.clone();
            async move {
                if let Some(b) = first {
                    return Some((
                        Ok::<_, std::io::Error>(b),
                        (None, path, offset, partial, budget),
                    ));
                }
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(FOLLOW_POLL) => {}
                        _ = crate::sources::stopped(&mut shutdown) => return None,
                    }
                    let p = path.clone();
                    let read =
                        tokio::task::spawn_blocking(move || -> std::io::Result<(Vec<u8>, u64)> {
                            let mut f = std::fs::File::open(&p)?;
                            let len = f.metadata()?.len();
                            let start = if len < offset { 0 } else { offset };
                            f.seek(SeekFrom::Start(start))?;
                            let mut buf = Vec::new();
                            f.read_to_end(&mut buf)?;
                            Ok((buf, start))
                        })
                        .await;
                    let Ok(Ok((buf, start))) = read else {
                        return None;
                    };
                    let text = String::from_utf8_lossy(&buf);
                    let done = complete_len(&text);
                    if done == 0 {
                        offset = start;
                        continue;
                    }
                    offset = start + done as u64;
                    let entries: Vec<logs_query::Entry> =
                        logs_query::parse(&text[..done], &mut partial)
                            .into_iter()
                            .filter(|e| opts.keep(e))
                            .collect();
                    if entries.is_empty() {
                        continue;
                    }
                    let mut out = opts.render(&entries);
                    if let Some(b) = budget.as_mut() {
                        if *b == 0 {
                            return None;
                        }
                        logs_query::cut(&mut out, *b);
                        *b -= out.len();
                    }
                    return Some((Ok(Bytes::from(out)), (None, path, offset, partial, budget)));
                }
            }
        },
    );
    Ok((plain, Body::from_stream(s)).into_response())
}

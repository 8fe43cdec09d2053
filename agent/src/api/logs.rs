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
use serde::Deserialize;

use super::{ApiError, ApiState};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogQuery {
    container: Option<String>,
    tail_lines: Option<usize>,
    follow: Option<String>,
}

/// How often a `follow` stream looks for new lines (only while a client follows).
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// Messages of complete CRI log lines in `text`; returns them and the bytes consumed.
pub fn parse_cri(text: &str, partial: &mut String) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.split_inclusive('\n') {
        if !line.ends_with('\n') {
            break; // incomplete last line: the caller keeps it
        }
        let line = line.trim_end_matches('\n');
        let mut it = line.splitn(4, ' ');
        match (it.next(), it.next(), it.next(), it.next()) {
            (Some(_ts), Some("stdout" | "stderr"), Some(tag), msg)
                if tag.starts_with('P') || tag.starts_with('F') =>
            {
                partial.push_str(msg.unwrap_or(""));
                if tag.starts_with('F') {
                    out.push(std::mem::take(partial));
                }
            }
            _ => out.push(line.to_string()), // not CRI: pass through
        }
    }
    out
}

fn complete_len(text: &str) -> usize {
    text.rfind('\n').map_or(0, |i| i + 1)
}

fn find_log(
    st: &ApiState,
    ns: &str,
    pod: &str,
    container: Option<&str>,
) -> Result<PathBuf, ApiError> {
    let snap = st.status.borrow().clone();
    let mine: Vec<&(String, String, String, PathBuf)> = snap
        .logs
        .iter()
        .filter(|l| l.0 == ns && l.1 == pod)
        .collect();
    if mine.is_empty() {
        return Err(ApiError::NotFound {
            kind: "Pod",
            name: format!("{ns}/{pod}"),
        });
    }
    match container {
        Some(c) => mine
            .iter()
            .find(|l| l.2 == c)
            .map(|l| l.3.clone())
            .ok_or(ApiError::NotFound {
                kind: "container",
                name: c.to_string(),
            }),
        None if mine.len() == 1 => Ok(mine[0].3.clone()),
        None => Err(ApiError::ContainerRequired {
            pod: pod.to_string(),
            containers: mine.iter().map(|l| l.2.clone()).collect(),
        }),
    }
}

pub async fn pod_log(
    State(st): State<ApiState>,
    Path((ns, pod)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let path = find_log(&st, &ns, &pod, q.container.as_deref())?;
    let lerr = |source| ApiError::Log {
        path: path.display().to_string(),
        source,
    };
    let bytes = tokio::fs::read(&path).await.map_err(lerr)?;
    let text = String::from_utf8_lossy(&bytes);
    let done = complete_len(&text);
    let mut partial = String::new();
    let mut lines = parse_cri(&text[..done], &mut partial);
    if let Some(n) = q.tail_lines {
        lines.drain(..lines.len().saturating_sub(n));
    }
    let mut head = lines.join("\n");
    if !lines.is_empty() {
        head.push('\n');
    }
    let plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if !matches!(q.follow.as_deref(), Some("true" | "1")) {
        return Ok((plain, head).into_response());
    }
    // follow: poll the file for growth; a shorter file (rotated/truncated) is read from its start
    let offset = done as u64;
    let shutdown = st.shutdown.clone();
    let init = (Some(Bytes::from(head)), path, offset, partial);
    let s = futures::stream::unfold(init, move |(first, path, mut offset, mut partial)| {
        let mut shutdown = shutdown.clone();
        async move {
            if let Some(b) = first {
                return Some((Ok::<_, std::io::Error>(b), (None, path, offset, partial)));
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
                let lines = parse_cri(&text[..done], &mut partial);
                if lines.is_empty() {
                    continue;
                }
                let mut out = lines.join("\n");
                out.push('\n');
                return Some((Ok(Bytes::from(out)), (None, path, offset, partial)));
            }
        }
    });
    Ok((plain, Body::from_stream(s)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_lines() {
        let text = "2024-01-01T00:00:00Z stdout F hello world\n2024-01-01T00:00:01Z stderr P part\n2024-01-01T00:00:01Z stderr F ial\nplain line\n";
        let mut p = String::new();
        assert_eq!(
            parse_cri(text, &mut p),
            vec!["hello world", "partial", "plain line"]
        );
        let mut p = String::new();
        assert_eq!(
            parse_cri("2024-01-01T00:00:00Z stdout F \n", &mut p),
            vec![""]
        );
    }
}

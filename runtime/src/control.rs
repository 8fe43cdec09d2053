//! The shim's control socket: the protocol is shared with the supervisor
//! (`berth_supervise::control`); the agent's client is here.

use std::path::Path;
use std::time::Duration;

pub use berth_supervise::control::*;

/// Agent side: one request, one reply line (`None` on any failure: the
/// caller falls back to the files).
pub async fn call(sock: &Path, req: &Request, timeout: Option<Duration>) -> Option<String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let fut = async {
        let mut s = tokio::net::UnixStream::connect(sock).await.ok()?;
        let mut line = serde_json::to_vec(req).ok()?;
        line.push(b'\n');
        s.write_all(&line).await.ok()?;
        let mut r = tokio::io::BufReader::new(s);
        let mut out = String::new();
        r.read_line(&mut out).await.ok()?;
        (!out.is_empty()).then_some(out)
    };
    match timeout {
        Some(t) => tokio::time::timeout(t, fut).await.ok().flatten(),
        None => fut.await,
    }
}

//! Serving the API over TCP so that hostile local clients cannot take the
//! agent down (issue 14: 1,100 half-sent requests used up the agent's file
//! descriptors; the API stopped answering and reconciling stalled).
//!
//! - **Header timeout**: a connection must deliver a complete request head
//!   within [`Limits::header_timeout`], counted from when the server starts
//!   waiting for it: after accepting, and again after each response (so it
//!   is also the keep-alive idle timeout).
//! - **Write timeout**: a response write that makes no progress for
//!   [`Limits::write_timeout`] (a client that stopped reading) closes the
//!   connection.
//! - **Connection cap**: at most [`Limits::max_connections`] at once. At the
//!   cap, a new connection evicts the oldest one that has no request in
//!   progress (half-open or idle), so a flood of half-sent requests cannot
//!   lock out a prompt client; when every connection is busy the new one
//!   gets a short 503 and is closed. The cap sits far below the file
//!   descriptor limit (raised to its hard limit at start), so manifests,
//!   images and containers always have descriptors left.
//! - Long-lived responses are capped per client by [`super::limits`].
//!
//! HTTP/1.1 only (kubectl, curl and Prometheus speak it over plain http).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::time::Sleep;
use tower::ServiceExt;

use super::limits::{ClientAddr, with_guard};

/// Bounds of the HTTP server; [`Limits::default`] is what the agent uses.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub write_timeout: Duration,
    /// How long open connections may finish at shutdown.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Largest request head, in bytes (hyper's buffer).
const MAX_HEAD_BYTES: usize = 64 * 1024;

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 41\r\nconnection: close\r\n\r\ntoo many connections to the berth API\r\n\r\n";

/// The open connections, oldest first.
#[derive(Default)]
struct Registry {
    conns: Mutex<BTreeMap<u64, Conn>>,
}

struct Conn {
    /// Requests in progress (until their response body is done).
    active: Arc<AtomicUsize>,
    /// Dropping it closes the connection.
    _close: oneshot::Sender<()>,
}

impl Registry {
    /// Admit connection `id`, evicting the oldest idle one at the cap;
    /// `None` when every connection is busy.
    fn admit(&self, id: u64, max: usize) -> Option<(Arc<AtomicUsize>, oneshot::Receiver<()>)> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if conns.len() >= max {
            let idle = conns
                .iter()
                .find(|(_, c)| c.active.load(Ordering::Acquire) == 0)
                .map(|(id, _)| *id)?;
            conns.remove(&idle); // drops its sender: that connection closes
        }
        let active = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = oneshot::channel();
        conns.insert(
            id,
            Conn {
                active: active.clone(),
                _close: tx,
            },
        );
        Some((active, rx))
    }

    fn remove(&self, id: u64) {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.remove(&id);
    }

    fn len(&self) -> usize {
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Serve `router` on `listener` until `shutdown` turns true; then open
/// connections get [`Limits::shutdown_grace`] to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let registry = Arc::new(Registry::default());
    let lingering = Arc::new(AtomicUsize::new(0));
    let mut next_id = 0u64;
    let mut refused = 0u64;
    loop {
        let accepted = tokio::select! {
            _ = crate::sources::stopped(&mut shutdown) => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // out of descriptors or memory: back off instead of spinning
                tracing::warn!(error = %e, open = registry.len(), "API accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        next_id += 1;
        let Some((active, close)) = registry.admit(next_id, limits.max_connections) else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(%peer, refused, max = limits.max_connections, "API connection refused: every connection is busy");
            }
            refuse(stream, &lingering);
            continue;
        };
        let conn = Connection {
            id: next_id,
            peer,
            active,
            registry: registry.clone(),
        };
        tokio::spawn(conn.run(stream, router.clone(), limits, close, shutdown.clone()));
    }
    tracing::debug!("API listener closed");
}

/// Refused connections being answered at once, at most.
const MAX_LINGERING: usize = 32;

/// Answer a refused connection with a short 503 and close it; the request
/// is read and discarded for up to a second first, so closing does not
/// reset the connection before the client has read the answer.
fn refuse(mut stream: TcpStream, lingering: &Arc<AtomicUsize>) {
    if lingering.fetch_add(1, Ordering::AcqRel) >= MAX_LINGERING {
        lingering.fetch_sub(1, Ordering::AcqRel);
        return; // dropped: closed at once
    }
    let lingering = lingering.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let answer = async {
            stream.write_all(BUSY).await?;
            stream.shutdown().await?;
            let mut buf = [0u8; 1024];
            while stream.read(&mut buf).await? > 0 {}
            io::Result::Ok(())
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
        lingering.fetch_sub(1, Ordering::AcqRel);
    });
}

struct Connection {
    id: u64,
    peer: SocketAddr,
    active: Arc<AtomicUsize>,
    registry: Arc<Registry>,
}

/// Counts a request as in progress until dropped (with its response body).
struct Active(Arc<AtomicUsize>);

impl Active {
    fn new(n: &Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::AcqRel);
        Active(n.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Connection {
    async fn run(
        self,
        stream: TcpStream,
        router: Router,
        limits: Limits,
        close: oneshot::Receiver<()>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let peer = self.peer;
        let active = self.active.clone();
        let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let guard = Active::new(&active);
            req.extensions_mut().insert(ClientAddr(peer.ip()));
            let router = router.clone();
            async move {
                let resp = router
                    .oneshot(req.map(Body::new))
                    .await
                    .unwrap_or_else(|e: Infallible| match e {});
                Ok::<_, Infallible>(resp.map(|b| with_guard(b, guard)))
            }
        });
        let io = TokioIo::new(WriteTimeout::new(stream, limits.write_timeout));
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(MAX_HEAD_BYTES);
        let conn = http.serve_connection(io, svc);
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "API connection ended");
                }
            }
            _ = close => tracing::debug!(%peer, "API connection evicted (idle at the connection cap)"),
            _ = crate::sources::stopped(&mut shutdown) => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(limits.shutdown_grace, conn).await;
            }
        }
        self.registry.remove(self.id);
    }
}

/// A stream whose writes fail with `TimedOut` when they make no progress for
/// the timeout (the peer stopped reading); reads pass through.
struct WriteTimeout<T> {
    inner: T,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteTimeout<T> {
    fn new(inner: T, timeout: Duration) -> Self {
        WriteTimeout {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// Turn a pending write into a timeout error once it has been pending too long.
    fn watch<R>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let timeout = self.timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client stopped reading the response",
        )))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteTimeout<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, r)
    }
}

#[cfg(test)]
#[path = "serve_tests.rs"]
mod tests;

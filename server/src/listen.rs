//! The accept loop: HTTP/1 on hyper with WebSocket upgrades, in place of
//! `axum::serve`, because `axum::serve` gives hyper no timer and so no
//! header-read timeout (slowloris). hyper's own HTTP/1 connection is used
//! rather than hyper-util's auto builder: the auto builder first waits for
//! the bytes that tell HTTP/1 from HTTP/2, with no timeout, so a connection
//! that sends nothing would never be closed. Here the header timer starts at
//! the accept and runs again whenever a keep-alive connection waits for its
//! next request (a long-poll waiting for data is a request in progress).
//!
//! Each connection gets TCP_NODELAY, its place in the connection count
//! (`limits::Counted`), and a `limits::ConnInfo` on every request. Shutdown: stop accepting, run `on_shutdown` (it disconnects the
//! Socket.IO clients), then ask every connection to finish its request and
//! close, waiting at most `grace` for them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::limits::{Counted, Limits};

/// Serves `router` on `listener` until `shutdown` resolves; then runs
/// `on_shutdown` and waits at most `grace` for open connections.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: Arc<Limits>,
    shutdown: impl Future<Output = ()>,
    on_shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.handshake_timeout())
        // A client may shut its side once it has sent its request (and a
        // refused one is drained to its end first): it still gets the answer.
        .half_close(true)
        .keep_alive(true);
    // Every connection task holds a receiver: `closed()` resolves when all are gone.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Signaling messages are small and latency-bound: without TCP_NODELAY a
        // second small write waits ~40 ms for the peer's delayed ACK (Nagle).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let (info, guard) = limits.accepted(peer);
        let io = TokioIo::new(Counted::new(stream, guard));
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(info);
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
        let conn = http.serve_connection(io, service).with_upgrades();
        let mut stop = stop_rx.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                if e.is_timeout() {
                    limits.header_timeout();
                }
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(stop);
        });
    }
    drop(listener);
    tracing::info!("shutting down: disconnecting clients");
    if tokio::time::timeout(grace, on_shutdown).await.is_err() {
        tracing::warn!("some clients did not take their close frame in time");
    }
    stop_tx.send_replace(true);
    drop(stop_rx);
    if tokio::time::timeout(grace, stop_tx.closed()).await.is_err() {
        tracing::warn!("some connections were still open at exit");
    }
}

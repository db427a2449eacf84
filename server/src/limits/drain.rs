//! Refusals are answered in full even while the client is still sending.
//!
//! A handler that refuses a request (413 for a body over the limit, above
//! all) stops reading its body. hyper would then close the connection with
//! the client's bytes still unread, the kernel would answer them with a
//! reset, and the client would see "connection reset" instead of the answer.
//! So every request body (Engine.IO's aside) is handed back when the handler
//! drops it unfinished, and when the answer is an error status, the rest is
//! read and thrown away before the answer goes out: at most [`DRAIN_BYTES`]
//! within [`DRAIN_TIME`]. Past those bounds the answer goes out anyway and
//! the connection is closed (`Connection: close`).
//!
//! This drains rather than half-closing and lingering (nginx's way): some
//! clients (aiohttp) stop writing and fail the request when they see the
//! server's FIN before they have sent their whole body.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt;
use http_body::{Frame, SizeHint};
use tokio::sync::oneshot;

use super::ENGINE_PATH;

/// The most bytes read and thrown away after a refusal.
pub const DRAIN_BYTES: usize = 8 << 20;

/// The longest a refusal waits for the rest of a body.
pub const DRAIN_TIME: Duration = Duration::from_secs(5);

/// A request body that hands what is left of itself back when dropped early.
struct Returning {
    inner: Option<Body>,
    back: Option<oneshot::Sender<Body>>,
}

impl http_body::Body for Returning {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), http_body::Body::size_hint)
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        if let (Some(inner), Some(back)) = (self.inner.take(), self.back.take())
            && !http_body::Body::is_end_stream(&inner)
        {
            back.send(inner).ok();
        }
    }
}

/// The middleware: drains what the handler left of the body when it refused.
pub async fn drain_refused(req: Request, next: Next) -> Response {
    if req.uri().path().starts_with(ENGINE_PATH) {
        return next.run(req).await;
    }
    let (tx, mut rx) = oneshot::channel();
    let req = req.map(|body| {
        Body::new(Returning {
            inner: Some(body),
            back: Some(tx),
        })
    });
    let mut response = next.run(req).await;
    let status = response.status();
    if (status.is_client_error() || status.is_server_error())
        && let Ok(rest) = rx.try_recv()
        && !drain(rest).await
    {
        close(&mut response);
    }
    response
}

/// Reads and discards `body` within the bounds; false when it did not end.
pub async fn drain(body: Body) -> bool {
    let mut stream = body.into_data_stream();
    let mut left = DRAIN_BYTES;
    let ended = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) if bytes.len() <= left => left -= bytes.len(),
                _ => return false,
            }
        }
        true
    })
    .await;
    ended.unwrap_or(false)
}

/// Marks an answer as the connection's last.
pub fn close(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
}

//! Detaches a Socket.IO request's head from hyper's read buffer.
//!
//! hyper parses a request without copying: the URI and every header value are
//! slices of the connection's read buffer (about 16 KiB). engineioxide keeps the
//! request's `Parts` for the whole life of a session, so each WebSocket
//! connection pinned that whole buffer for hours, the largest single item of a
//! bare connection's memory (see bench/README.md, "Where a connection's bytes
//! go"). Copying the few hundred bytes of the head into their own allocations
//! before the request reaches engineioxide lets hyper's buffer be freed at the
//! upgrade. Other requests pass through untouched.

use axum::extract::{OriginalUri, Request};
use axum::http::{HeaderMap, HeaderValue, Uri};

/// The Engine.IO path prefix (socketioxide's default `req_path`).
const ENGINE_PATH: &str = "/socket.io";

/// A `map_request` middleware: gives a Socket.IO request a head that owns its bytes.
pub async fn own_head(mut req: Request) -> Request {
    if req.uri().path().starts_with(ENGINE_PATH) {
        *req.headers_mut() = owned_headers(req.headers());
        if let Some(uri) = owned_uri(req.uri()) {
            // axum's router put a clone of the URI in the extensions, which
            // engineioxide keeps too: replace both.
            if let Some(original) = req.extensions_mut().get_mut::<OriginalUri>() {
                original.0 = uri.clone();
            }
            *req.uri_mut() = uri;
        }
    }
    req
}

/// A copy of `headers` whose values are fresh allocations, not slices of the read buffer.
fn owned_headers(headers: &HeaderMap) -> HeaderMap {
    let mut owned = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        // `from_bytes` copies; a value hyper accepted is valid again here.
        if let Ok(mut copy) = HeaderValue::from_bytes(value.as_bytes()) {
            copy.set_sensitive(value.is_sensitive());
            owned.append(name.clone(), copy);
        }
    }
    owned
}

/// A copy of `uri` parsed from its own string (None leaves the original in place).
fn owned_uri(uri: &Uri) -> Option<Uri> {
    Uri::try_from(uri.to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[tokio::test]
    async fn socket_io_requests_keep_their_headers_and_uri() {
        let req = Request::builder()
            .uri("/socket.io/?EIO=4&transport=websocket")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("x-a", "1")
            .header("x-a", "2")
            .body(Body::empty())
            .expect("a valid request");
        let before = req.headers().clone();
        let out = own_head(req).await;
        assert_eq!(out.headers(), &before);
        assert_eq!(out.uri(), "/socket.io/?EIO=4&transport=websocket");
        let all: Vec<_> = out.headers().get_all("x-a").iter().collect();
        assert_eq!(all, ["1", "2"]);
    }
}

//! `--cors-origin` for Socket.IO itself: CORS headers only ask a browser to
//! keep a page from reading a response, and a WebSocket upgrade is not
//! subject to CORS at all, so a page on any site could still open a session
//! and join rooms. With an allow-list set, every Engine.IO request (polling or
//! upgrade) whose `Origin` is not on it is refused with 403 before a session
//! exists. Requests without `Origin` come from programs, not browser pages
//! (python-socketio, socket.io-client in Node), and are served as before.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::metrics;

/// The origins a browser page may connect from; empty: any.
#[derive(Clone, Default)]
pub struct AllowedOrigins(pub Arc<Vec<String>>);

impl AllowedOrigins {
    fn allows(&self, origin: &[u8]) -> bool {
        self.0.is_empty() || self.0.iter().any(|o| o.as_bytes() == origin)
    }
}

/// Refuses Engine.IO requests from pages of origins not on the list.
pub async fn guard(State(allowed): State<AllowedOrigins>, req: Request, next: Next) -> Response {
    let refused = req.uri().path().starts_with("/socket.io/")
        && req
            .headers()
            .get(header::ORIGIN)
            .is_some_and(|origin| !allowed.allows(origin.as_bytes()));
    if refused {
        metrics::origin_refused();
        // The body Engine.IO servers answer a forbidden request with.
        let body = r#"{"code":4,"message":"Origin not allowed"}"#;
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
    }
    next.run(req).await
}

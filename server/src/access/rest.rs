//! The REST side of access tokens: an axum middleware on `/api/webrtc/*` that
//! requires `Authorization: Bearer <jwt>`.
//!
//! It runs before the handlers, so a missing or invalid token is a 401 before
//! any 415/413/400; a valid token's [`Grant`] goes into the request's
//! extensions, and the handlers pass it to the core, whose 403s come after
//! the body checks. CORS preflights are answered by the CORS layer outside
//! this one; any other `OPTIONS` passes too.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use signalroom_core::{Error, Grant};

use super::Access;
use crate::http::ApiError;
use crate::hub::now;

/// Lets a request with a valid bearer token through, with its grant attached.
pub async fn require_token(
    State(access): State<Arc<Access>>,
    mut request: Request,
    next: Next,
) -> Response {
    if request.method() == Method::OPTIONS {
        return next.run(request).await;
    }
    let verified = bearer(&request)
        .ok_or_else(|| super::Refusal("no bearer token".into()))
        .and_then(|token| access.verify(token, now()));
    match verified {
        Ok(grant) => {
            request.extensions_mut().insert(grant);
            next.run(request).await
        }
        Err(why) => {
            let mut response = ApiError(Error::Unauthorized { reason: why.0 }).into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The grant of a request, when tokens are on.
pub type MaybeGrant = Option<axum::Extension<Grant>>;

//! The REST API: the whole route table, short handlers, one error type.
//!
//! A POST body is checked in the protocol's order: 415 for a content type
//! other than JSON, then 413 for a body over the limit, then 400 for what is
//! in it. The limit is enforced here rather than by a tower layer so that the
//! order holds and the 413 carries the protocol's JSON body.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use signalroom_core::Error;

use crate::hub::{Hub, now};
use crate::metrics;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct Api {
    /// Rooms and sockets.
    pub hub: Arc<Hub>,
    /// The REST body limit in bytes.
    pub max_body_bytes: usize,
}

/// The REST routes (the demo page and Socket.IO are layered on by the caller).
pub fn routes(api: Api) -> Router {
    Router::new()
        .route("/api/webrtc/rooms", get(list_rooms))
        .route("/api/webrtc/rooms/{room_name}", get(get_room))
        .route("/api/webrtc/rooms/{room_name}/join", post(join_room))
        .route(
            "/api/webrtc/rooms/{room_name}/peers/{peer_id}",
            delete(remove_peer),
        )
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .with_state(api)
}

/// A protocol error as an HTTP answer: its status and `{error, code}`.
pub struct ApiError(pub Error);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        metrics::error(self.0.code());
        let status = StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        (status, Json(self.0.body(None))).into_response()
    }
}

/// The path's parameters, percent-decoded; a bad one is answered like any
/// other bad field (`{error, code}`, 400), not with axum's plain text.
struct Params<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(params)) => Ok(Params(params)),
            Err(rejection) => Err(ApiError(path_error(&rejection))),
        }
    }
}

fn path_error(rejection: &PathRejection) -> Error {
    use axum::extract::path::ErrorKind;
    let field = match rejection {
        PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
            ErrorKind::InvalidUtf8InPathParam { key } if key == "peer_id" => "peer_id",
            _ => "room_name",
        },
        _ => "room_name",
    };
    Error::NotUtf8 { field }
}

async fn list_rooms(State(api): State<Api>) -> Response {
    let rooms = api.hub.lock().registry.rooms();
    Json(rooms).into_response()
}

async fn get_room(
    State(api): State<Api>,
    Params(room_name): Params<String>,
) -> Result<Response, ApiError> {
    let room = api.hub.lock().registry.room(&room_name).map_err(ApiError)?;
    Ok(Json(room).into_response())
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

async fn join_room(
    State(api): State<Api>,
    Params(room_name): Params<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if !is_json(&headers) {
        return Err(ApiError(Error::UnsupportedMediaType));
    }
    let too_large = ApiError(Error::BodyTooLarge {
        max: api.max_body_bytes,
    });
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > api.max_body_bytes) {
        return Err(too_large);
    }
    let bytes = to_bytes(body, api.max_body_bytes)
        .await
        .map_err(|_| too_large)?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError(Error::InvalidJson {
            detail: e.to_string(),
        })
    })?;
    let (result, closing) = {
        let mut inner = api.hub.lock();
        let (result, deliveries) = inner.registry.http_join(&room_name, &value, now());
        (result, inner.deliver(&deliveries))
    };
    closing.close();
    api.hub.leases_changed.notify_one();
    match result {
        Ok(joined) => Ok(Json(joined).into_response()),
        Err(rejection) => Err(ApiError(rejection.error)),
    }
}

async fn remove_peer(
    State(api): State<Api>,
    Params((room_name, peer_id)): Params<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let closing = {
        let mut inner = api.hub.lock();
        let deliveries = inner
            .registry
            .http_leave(&room_name, &peer_id)
            .map_err(ApiError)?;
        inner.deliver(&deliveries)
    };
    closing.close();
    Ok(StatusCode::NO_CONTENT)
}

async fn healthz(State(api): State<Api>) -> Response {
    if api.hub.health.is_ok() {
        Json(json!({"status": "ok"})).into_response()
    } else {
        let body = json!({"status": "unavailable", "code": "unavailable"});
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

async fn render_metrics(State(api): State<Api>) -> Response {
    let (connections, rooms, peers) = {
        let inner = api.hub.lock();
        (
            inner.socket_count(),
            inner.registry.room_count(),
            inner.registry.peer_count(),
        )
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(connections, rooms, peers),
    )
        .into_response()
}

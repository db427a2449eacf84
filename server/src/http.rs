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
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{Value, json};
use signalroom_core::access::check;
use signalroom_core::protocol::{HttpJoinSuccess, RoomInfo};
use signalroom_core::{Error, ErrorBody, Grant};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::Access;
use crate::access::rest::{MaybeGrant, require_token};
use crate::hub::{Hub, now};
use crate::metrics;
use crate::openapi::{ApiDoc, Health, JoinBody};

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct Api {
    /// Rooms and sockets.
    pub hub: Arc<Hub>,
    /// The REST body limit in bytes.
    pub max_body_bytes: usize,
}

/// The REST routes (the demo page and Socket.IO are layered on by the caller).
/// With `access`, every `/api/webrtc/*` route needs a bearer token. Each route
/// is registered with its OpenAPI description (see [`crate::openapi`]).
pub fn routes(api: Api, access: Option<Arc<Access>>) -> Router {
    let (router, doc) = documented_routes(api, access);
    let doc = Arc::new(doc);
    router.route(
        "/api/openapi.json",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { Json(doc.as_ref().clone()) }
        }),
    )
}

/// The routes and the OpenAPI document, built by the same calls.
fn documented_routes(api: Api, access: Option<Arc<Access>>) -> (Router, utoipa::openapi::OpenApi) {
    let mut webrtc = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_rooms))
        .routes(routes!(get_room))
        .routes(routes!(join_room))
        .routes(routes!(remove_peer));
    if let Some(access) = access {
        webrtc = webrtc.route_layer(from_fn_with_state(access, require_token));
    }
    webrtc
        .routes(routes!(healthz))
        .routes(routes!(render_metrics))
        .with_state(api)
        .split_for_parts()
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

/// The request's grant, when tokens are on.
fn grant(g: &MaybeGrant) -> Option<&Grant> {
    g.as_ref().map(|axum::Extension(g)| g)
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

/// Every room, keyed by name (403 for a token bound to one room).
#[utoipa::path(get, path = "/api/webrtc/rooms", tag = "rooms", security(("bearer" = [])),
    responses(
        (status = 200, description = "Every room, keyed by its name", body = std::collections::BTreeMap<String, RoomInfo>),
        (status = 401, description = "`unauthorized`: missing or invalid token", body = ErrorBody),
        (status = 403, description = "`forbidden`: the token is bound to one room", body = ErrorBody),
    ))]
async fn list_rooms(State(api): State<Api>, g: MaybeGrant) -> Result<Response, ApiError> {
    check(grant(&g), Grant::allows_listing).map_err(ApiError)?;
    #[cfg(feature = "cluster")]
    if let Some(cluster) = api.hub.cluster.get() {
        return cluster.rooms().await.map(json_text).map_err(ApiError);
    }
    let rooms = api.hub.lock().registry.rooms();
    Ok(Json(rooms).into_response())
}

/// One room.
#[utoipa::path(get, path = "/api/webrtc/rooms/{room_name}", tag = "rooms", security(("bearer" = [])),
    params(("room_name" = String, Path, description = "The room's name, URL-encoded")),
    responses(
        (status = 200, description = "The room", body = RoomInfo),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: the token is for another room", body = ErrorBody),
        (status = 404, description = "`room_not_found`", body = ErrorBody),
    ))]
async fn get_room(
    State(api): State<Api>,
    g: MaybeGrant,
    Params(room_name): Params<String>,
) -> Result<Response, ApiError> {
    check(grant(&g), |g| g.allows_room(&room_name)).map_err(ApiError)?;
    #[cfg(feature = "cluster")]
    if let Some(cluster) = api.hub.cluster.get() {
        return cluster
            .room(&room_name)
            .await
            .map(json_text)
            .map_err(ApiError);
    }
    let room = api.hub.lock().registry.room(&room_name).map_err(ApiError)?;
    Ok(Json(room).into_response())
}

/// A JSON body already serialized (cluster listings, read from Redis as text).
#[cfg(feature = "cluster")]
fn json_text(text: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// A room owner's answer to a forwarded REST request (cluster mode).
#[cfg(feature = "cluster")]
fn forwarded(status: u16, body: &serde_json::value::RawValue) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status == StatusCode::NO_CONTENT {
        return status.into_response();
    }
    if let Ok(e) = serde_json::from_str::<ErrorCoded>(body.get()) {
        metrics::error(e.code);
    }
    (status, json_text(body.get().to_owned())).into_response()
}

/// The code of an error body.
#[cfg(feature = "cluster")]
#[derive(serde::Deserialize)]
struct ErrorCoded {
    code: signalroom_core::ErrorCode,
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Joins (or renews) an HTTP peer, which holds a lease.
#[utoipa::path(post, path = "/api/webrtc/rooms/{room_name}/join", tag = "rooms", security(("bearer" = [])),
    params(("room_name" = String, Path, description = "The room to join")),
    request_body(content = JoinBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Joined or renewed", body = HttpJoinSuccess),
        (status = 400, description = "`invalid_json`, `invalid_payload`, `missing_fields`, `invalid_field`, `room_mismatch`", body = ErrorBody),
        (status = 401, description = "`unauthorized` (checked first)", body = ErrorBody),
        (status = 403, description = "`forbidden`: the token's room or sub (checked after 415/413/400)", body = ErrorBody),
        (status = 409, description = "`room_full`, `peer_id_taken`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
    ))]
async fn join_room(
    State(api): State<Api>,
    g: MaybeGrant,
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
    #[cfg(feature = "cluster")]
    if let Some(cluster) = api.hub.cluster.get() {
        let kind = signalroom_core::cluster::wire::CommandKind::HttpJoin { body: value };
        let (status, body) = cluster
            .http(room_name, kind, grant(&g).cloned())
            .await
            .map_err(ApiError)?;
        return Ok(forwarded(status, &body));
    }
    let (result, closing) = {
        let mut inner = api.hub.lock();
        let (result, deliveries) =
            inner
                .registry
                .http_join_granted(&room_name, &value, grant(&g), now());
        (result, inner.deliver(&deliveries))
    };
    closing.close();
    api.hub.leases_changed.notify_one();
    match result {
        Ok(joined) => Ok(Json(joined).into_response()),
        Err(rejection) => Err(ApiError(rejection.error)),
    }
}

/// Removes an HTTP peer (socket peers cannot be removed this way).
#[utoipa::path(delete, path = "/api/webrtc/rooms/{room_name}/peers/{peer_id}", tag = "rooms", security(("bearer" = [])),
    params(
        ("room_name" = String, Path, description = "The room"),
        ("peer_id" = String, Path, description = "The HTTP peer"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: the token's room or sub", body = ErrorBody),
        (status = 404, description = "`peer_not_found`", body = ErrorBody),
    ))]
async fn remove_peer(
    State(api): State<Api>,
    g: MaybeGrant,
    Params((room_name, peer_id)): Params<(String, String)>,
) -> Result<Response, ApiError> {
    #[cfg(feature = "cluster")]
    if let Some(cluster) = api.hub.cluster.get() {
        let kind = signalroom_core::cluster::wire::CommandKind::HttpLeave { peer_id };
        let (status, body) = cluster
            .http(room_name, kind, grant(&g).cloned())
            .await
            .map_err(ApiError)?;
        return Ok(forwarded(status, &body));
    }
    let closing = {
        let mut inner = api.hub.lock();
        let deliveries = inner
            .registry
            .http_leave_granted(&room_name, &peer_id, grant(&g))
            .map_err(ApiError)?;
        inner.deliver(&deliveries)
    };
    closing.close();
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Liveness; in cluster mode also whether Redis answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses(
        (status = 200, description = "`{\"status\":\"ok\"}`", body = Health),
        (status = 503, description = "cluster mode only, while Redis does not answer: `{\"status\":\"unavailable\",\"code\":\"unavailable\"}`"),
    ))]
async fn healthz(State(api): State<Api>) -> Response {
    if api.hub.health.is_ok() {
        Json(json!({"status": "ok"})).into_response()
    } else {
        let body = json!({"status": "unavailable", "code": "unavailable"});
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
async fn render_metrics(State(api): State<Api>) -> Response {
    let (connections, rooms, peers) = {
        let inner = api.hub.lock();
        (
            inner.socket_count(),
            inner.registry.room_count(),
            inner.registry.peer_count(),
        )
    };
    // In cluster mode the local registry is empty: the rooms this node owns.
    #[cfg(feature = "cluster")]
    let (rooms, peers) = api.hub.cluster.get().map_or((rooms, peers), |c| c.owned());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(connections, rooms, peers),
    )
        .into_response()
}

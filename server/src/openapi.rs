//! The OpenAPI document served at `GET /api/openapi.json`.
//!
//! Generated from the code, never written by hand: each REST handler carries a
//! `#[utoipa::path]` with its method, path, body, answers and error codes, and
//! [`crate::http::routes`] registers the handlers through utoipa-axum's
//! `OpenApiRouter`, which adds a route to the router and to this document in one
//! call. So a route cannot exist without its description, nor the reverse.
//! The answer types are the core's own (`RoomInfo`, `HttpJoinSuccess`,
//! `ErrorBody`), derived with its `openapi` feature.

use serde::Deserialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// The document's frame: title, tags and the bearer scheme; the paths are
/// added by the router as the routes are registered.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "signalroom REST API",
        description = "Rooms, HTTP peers and health of a signalroom server (docs/protocol.md). \
            With --auth-secret every /api/webrtc/* route needs `Authorization: Bearer <jwt>`: \
            401 `unauthorized` (with `WWW-Authenticate: Bearer`) before 415/413/400, \
            403 `forbidden` after them."
    ),
    tags(
        (name = "rooms", description = "Rooms and their members"),
        (name = "operations", description = "Health and metrics (never need a token)")
    ),
    modifiers(&BearerScheme)
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme the `/api/webrtc/*` operations refer to.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The body of `POST /api/webrtc/rooms/{room_name}/join` (checked like `join_room`).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // described, not read: the handler checks the raw JSON in the core's order
pub struct JoinBody {
    /// The HTTP peer's id (at most 128 bytes, no control characters).
    pub peer_id: String,
    /// The display name (at most 64 characters).
    pub username: String,
    /// Optional; must equal the path's room when present (`null` counts as absent).
    pub room_name: Option<String>,
}

/// `GET /healthz`'s answer.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // described only; the handler answers with `json!`
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

//! Every error signalroom reports, defined once: a stable `code`, the exact
//! human text, and the HTTP status the REST API answers with.
//!
//! The texts are part of the contract (the original guide's clients match on
//! some of them), so each lives in exactly one `#[error]` attribute below.

use serde::{Deserialize, Serialize};

/// The stable, machine-readable error codes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The payload is not what the event takes.
    InvalidPayload,
    /// Required join fields are absent, `null` or blank.
    MissingFields,
    /// A field has the wrong type, length or characters.
    InvalidField,
    /// The room is at capacity.
    RoomFull,
    /// Another member of the room holds that peer id.
    PeerIdTaken,
    /// The connection is in no room.
    NotInRoom,
    /// No such peer (with a connection) in the room.
    PeerNotFound,
    /// A `signal`'s data is over the limit.
    PayloadTooLarge,
    /// No such room.
    RoomNotFound,
    /// A REST body is not JSON.
    InvalidJson,
    /// A REST body names another room than its path.
    RoomMismatch,
    /// A REST body is not `application/json`.
    UnsupportedMediaType,
    /// A missing or invalid access token.
    Unauthorized,
    /// The access token does not allow this room or peer_id.
    Forbidden,
    /// The access token expired before the join.
    TokenExpired,
    /// Too many events or requests in too short a time.
    RateLimited,
    /// The server holds as many connections as it may.
    ServerFull,
    /// The client's address holds as many connections as it may.
    TooManyConnections,
    /// A cluster node cannot reach what the request needs (Redis, the room's owner).
    Unavailable,
}

impl ErrorCode {
    /// The code on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidPayload => "invalid_payload",
            Self::MissingFields => "missing_fields",
            Self::InvalidField => "invalid_field",
            Self::RoomFull => "room_full",
            Self::PeerIdTaken => "peer_id_taken",
            Self::NotInRoom => "not_in_room",
            Self::PeerNotFound => "peer_not_found",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RoomNotFound => "room_not_found",
            Self::InvalidJson => "invalid_json",
            Self::RoomMismatch => "room_mismatch",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::TokenExpired => "token_expired",
            Self::RateLimited => "rate_limited",
            Self::ServerFull => "server_full",
            Self::TooManyConnections => "too_many_connections",
            Self::Unavailable => "unavailable",
        }
    }

    /// Every code, for metrics that list them all.
    pub const ALL: [ErrorCode; 19] = [
        Self::InvalidPayload,
        Self::MissingFields,
        Self::InvalidField,
        Self::RoomFull,
        Self::PeerIdTaken,
        Self::NotInRoom,
        Self::PeerNotFound,
        Self::PayloadTooLarge,
        Self::RoomNotFound,
        Self::InvalidJson,
        Self::RoomMismatch,
        Self::UnsupportedMediaType,
        Self::Unauthorized,
        Self::Forbidden,
        Self::TokenExpired,
        Self::RateLimited,
        Self::ServerFull,
        Self::TooManyConnections,
        Self::Unavailable,
    ];
}

/// A join field, named as on the wire.
pub type Field = &'static str;

/// Every failure signalroom reports to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A `join_room` payload (or REST body) that is not a JSON object.
    #[error("Invalid payload: expected an object")]
    NotAnObject,
    /// Some of room_name, peer_id, username are absent, null or blank (always this text).
    #[error("Missing required fields: room_name, peer_id, username")]
    MissingFields {
        /// The missing ones, in protocol order.
        missing: Vec<Field>,
    },
    /// A join field that is not a string.
    #[error("Field {field} must be a string")]
    NotAString {
        /// The field.
        field: Field,
    },
    /// A join field over its length limit.
    #[error("Field {field} is too long (max {max})")]
    TooLong {
        /// The field.
        field: Field,
        /// Its limit (bytes for ids, characters for the username).
        max: usize,
    },
    /// A join field with a control character.
    #[error("Field {field} contains control characters")]
    ControlCharacters {
        /// The field.
        field: Field,
    },
    /// A field given in a URL path whose percent-encoding is not UTF-8 (`%ff`).
    #[error("Field {field} is not valid UTF-8")]
    NotUtf8 {
        /// The field.
        field: Field,
    },
    /// The room is at capacity.
    #[error("Room {room_name} is full (max {max} peers)")]
    RoomFull {
        /// The room.
        room_name: String,
        /// Its capacity.
        max: usize,
    },
    /// Someone else in the room holds the peer id.
    #[error("Peer ID {peer_id} is already in room {room_name}")]
    PeerIdTaken {
        /// The contested id.
        peer_id: String,
        /// The room.
        room_name: String,
    },
    /// The connection is in no room.
    #[error("Not in any room")]
    NotInRoom,
    /// A `signal` payload of the wrong shape.
    #[error("Invalid payload: {reason}")]
    InvalidSignal {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A payload that carries binary attachments, which no event takes.
    #[error("Invalid payload: binary attachments are not accepted")]
    BinaryAttachments,
    /// A `signal` whose data is over the limit.
    #[error("Signal data is too large (max {max} bytes)")]
    SignalTooLarge {
        /// The limit in bytes.
        max: usize,
    },
    /// A REST body over the limit.
    #[error("Request body is too large (max {max} bytes)")]
    BodyTooLarge {
        /// The limit in bytes.
        max: usize,
    },
    /// No such peer with a connection in the room (for `signal`), or no such HTTP peer (REST).
    #[error("Peer {peer_id} not found in room {room_name}")]
    PeerNotFound {
        /// The peer asked for.
        peer_id: String,
        /// The room.
        room_name: String,
    },
    /// No such room.
    #[error("Room {room_name} not found")]
    RoomNotFound {
        /// The room asked for.
        room_name: String,
    },
    /// A REST body that is not valid JSON.
    #[error("Invalid JSON body: {detail}")]
    InvalidJson {
        /// The parser's words.
        detail: String,
    },
    /// A REST body whose `room_name` differs from the path's.
    #[error("Body room_name {body} does not match the room in the path {path}")]
    RoomMismatch {
        /// The body's room_name, as JSON.
        body: String,
        /// The path's room name.
        path: String,
    },
    /// A REST body that is not `application/json`.
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    /// A missing, malformed, badly signed, expired or not yet valid access token.
    #[error("Unauthorized: {reason}")]
    Unauthorized {
        /// Why, in words.
        reason: String,
    },
    /// A join (socket) after the access token's `exp`.
    #[error("Token expired")]
    TokenExpired,
    /// The access token is for another room.
    #[error("Token does not allow room {room_name}")]
    ForbiddenRoom {
        /// The room asked for.
        room_name: String,
    },
    /// The access token is for another peer_id.
    #[error("Token does not allow peer_id {peer_id}")]
    ForbiddenPeer {
        /// The peer_id asked for.
        peer_id: String,
    },
    /// The access token is for one room and may not list them all.
    #[error("Token does not allow listing every room")]
    ForbiddenListing,
    /// A connection or address over its event or request rate.
    #[error("Too many requests, slow down")]
    RateLimited,
    /// A new connection while the server is at `--max-connections`.
    #[error("Server is full, try again later")]
    ServerFull,
    /// A new connection from an address at `--max-connections-per-ip`.
    #[error("Too many connections from your address")]
    TooManyConnections,
    /// In a cluster: Redis or the room's owner did not answer in time; nothing changed.
    #[error("Service unavailable, try again")]
    Unavailable,
}

impl Error {
    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotAnObject | Self::InvalidSignal { .. } | Self::BinaryAttachments => {
                ErrorCode::InvalidPayload
            }
            Self::MissingFields { .. } => ErrorCode::MissingFields,
            Self::NotAString { .. }
            | Self::TooLong { .. }
            | Self::ControlCharacters { .. }
            | Self::NotUtf8 { .. } => ErrorCode::InvalidField,
            Self::RoomFull { .. } => ErrorCode::RoomFull,
            Self::PeerIdTaken { .. } => ErrorCode::PeerIdTaken,
            Self::NotInRoom => ErrorCode::NotInRoom,
            Self::SignalTooLarge { .. } | Self::BodyTooLarge { .. } => ErrorCode::PayloadTooLarge,
            Self::PeerNotFound { .. } => ErrorCode::PeerNotFound,
            Self::RoomNotFound { .. } => ErrorCode::RoomNotFound,
            Self::InvalidJson { .. } => ErrorCode::InvalidJson,
            Self::RoomMismatch { .. } => ErrorCode::RoomMismatch,
            Self::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            Self::Unauthorized { .. } => ErrorCode::Unauthorized,
            Self::TokenExpired => ErrorCode::TokenExpired,
            Self::ForbiddenRoom { .. } | Self::ForbiddenPeer { .. } | Self::ForbiddenListing => {
                ErrorCode::Forbidden
            }
            Self::RateLimited => ErrorCode::RateLimited,
            Self::ServerFull => ErrorCode::ServerFull,
            Self::TooManyConnections => ErrorCode::TooManyConnections,
            Self::Unavailable => ErrorCode::Unavailable,
        }
    }

    /// The HTTP status the REST API answers this error with.
    pub fn http_status(&self) -> u16 {
        match self.code() {
            ErrorCode::RoomFull | ErrorCode::PeerIdTaken => 409,
            ErrorCode::PeerNotFound | ErrorCode::RoomNotFound => 404,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::Unauthorized | ErrorCode::TokenExpired => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::RateLimited => 429,
            ErrorCode::ServerFull | ErrorCode::TooManyConnections | ErrorCode::Unavailable => 503,
            _ => 400,
        }
    }

    /// The error as a payload, with `room_name` when the request named a valid one.
    pub fn body(&self, room_name: Option<&str>) -> ErrorBody {
        ErrorBody {
            error: self.to_string(),
            code: self.code(),
            room_name: room_name.map(str::to_owned),
            missing: match self {
                Self::MissingFields { missing } => Some(missing.clone()),
                _ => None,
            },
        }
    }
}

/// An error as sent: `{error, code, room_name?, missing?}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorBody {
    /// The human text.
    pub error: String,
    /// The stable code.
    pub code: ErrorCode,
    /// The room the request named, when it named a valid one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_name: Option<String>,
    /// For `missing_fields`: which fields, in protocol order.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<String>>))]
    pub missing: Option<Vec<Field>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_match_the_original_guide() {
        let missing = Error::MissingFields {
            missing: vec!["peer_id"],
        };
        assert_eq!(
            missing.to_string(),
            "Missing required fields: room_name, peer_id, username"
        );
        let full = Error::RoomFull {
            room_name: "a".into(),
            max: 100,
        };
        assert_eq!(full.to_string(), "Room a is full (max 100 peers)");
        assert_eq!(Error::NotInRoom.to_string(), "Not in any room");
    }

    #[test]
    fn codes_serialize_as_their_wire_names() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).expect("a code serializes");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn body_carries_missing_only_for_missing_fields() {
        let body = Error::MissingFields {
            missing: vec!["room_name", "username"],
        }
        .body(None);
        let json = serde_json::to_value(&body).expect("serializes");
        assert_eq!(
            json["missing"],
            serde_json::json!(["room_name", "username"])
        );
        assert!(json.get("room_name").is_none());
        let body = Error::NotInRoom.body(Some("r"));
        let json = serde_json::to_value(&body).expect("serializes");
        assert!(json.get("missing").is_none());
        assert_eq!(json["room_name"], "r");
    }

    #[test]
    fn http_statuses_follow_the_codes() {
        assert_eq!(Error::UnsupportedMediaType.http_status(), 415);
        assert_eq!(Error::BodyTooLarge { max: 1 }.http_status(), 413);
        assert_eq!(
            Error::PeerIdTaken {
                peer_id: "p".into(),
                room_name: "r".into()
            }
            .http_status(),
            409
        );
        assert_eq!(Error::NotAnObject.http_status(), 400);
        assert_eq!(Error::RateLimited.http_status(), 429);
        assert_eq!(Error::ServerFull.http_status(), 503);
        assert_eq!(Error::TooManyConnections.http_status(), 503);
    }

    #[test]
    fn unavailable_is_a_503_with_the_contract_text() {
        let e = Error::Unavailable;
        assert_eq!(e.to_string(), "Service unavailable, try again");
        assert_eq!(e.code().as_str(), "unavailable");
        assert_eq!(e.http_status(), 503);
        let json = serde_json::to_value(e.body(Some("r"))).expect("serializes");
        assert_eq!(json["code"], "unavailable");
        assert_eq!(json["room_name"], "r");
    }

    #[test]
    fn limit_texts_match_the_contract() {
        assert_eq!(
            Error::RateLimited.to_string(),
            "Too many requests, slow down"
        );
        assert_eq!(Error::RateLimited.code().as_str(), "rate_limited");
        assert_eq!(Error::ServerFull.code().as_str(), "server_full");
        assert_eq!(
            Error::TooManyConnections.code().as_str(),
            "too_many_connections"
        );
    }
}

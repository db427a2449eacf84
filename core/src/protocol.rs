//! The wire types: every payload the server sends, as plain serde values.
//!
//! Names and shapes follow the signalroom protocol (`docs/protocol.md`). The
//! server serializes these once per delivery; the browser library deserializes
//! the same types, so both ends agree by construction.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::ErrorBody;

/// One member of a room, as every peer list shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// The id the peer chose; unique within its room.
    pub peer_id: String,
    /// The display name.
    pub username: String,
    /// When the peer joined (RFC 3339, UTC, `Z` suffix).
    pub joined_at: String,
}

/// How a connection wants to hear about changes of its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateMode {
    /// `peer_list_updated` with the whole list after every change (the original guide's behaviour).
    #[default]
    Full,
    /// `peer_joined` / `peer_left` after every change; the full list only on join.
    Delta,
}

/// An ICE server handed to clients in `join_room_success` (an `RTCIceServer`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// One URL or a list of URLs (`stun:...`, `turn:...`).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub urls: serde_json::Value,
    /// TURN user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// `join_room_success`: the joiner's view of the room it just joined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinSuccess {
    /// The room joined.
    pub room_name: String,
    /// The joiner's peer id.
    pub peer_id: String,
    /// Every member, oldest first, the joiner included.
    pub peers: Vec<Peer>,
    /// `peers.len()`.
    pub total_peers: usize,
    /// The room's capacity.
    pub max_peers: usize,
    /// The room's version after this join.
    pub version: u64,
    /// ICE servers the server recommends.
    pub ice_servers: Vec<IceServer>,
}

/// `peer_list_updated` and `peer_list`: a room's whole list at one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerList {
    /// The room.
    pub room_name: String,
    /// Every member, oldest first.
    pub peers: Vec<Peer>,
    /// `peers.len()`.
    pub total_peers: usize,
    /// The room's version.
    pub version: u64,
}

/// `peer_joined` (delta mode): a peer arrived, or renamed itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerJoined {
    /// The room.
    pub room_name: String,
    /// The new or renamed peer.
    pub peer: Peer,
    /// Members after the change.
    pub total_peers: usize,
    /// The room's version after the change.
    pub version: u64,
}

/// `peer_left` (delta mode): a peer is gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerLeft {
    /// The room.
    pub room_name: String,
    /// The peer that left.
    pub peer_id: String,
    /// Members after the change.
    pub total_peers: usize,
    /// The room's version after the change.
    pub version: u64,
}

/// `leave_room_success`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveSuccess {
    /// The room left.
    pub room_name: String,
    /// The leaver's peer id in it.
    pub peer_id: String,
}

/// `signal` as delivered: relayed `data` from peer `from`.
#[derive(Debug, Clone, Serialize)]
pub struct SignalDelivery {
    /// The room both peers are in.
    pub room_name: String,
    /// The sender's peer id.
    pub from: String,
    /// The sender's data, byte for byte.
    pub data: Box<RawValue>,
}

/// The ack of a relayed `signal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalAck {
    /// The peer the signal went to.
    pub to: String,
}

/// A room as the REST API lists it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomInfo {
    /// The room's name.
    pub name: String,
    /// Members now.
    pub peer_count: usize,
    /// Capacity.
    pub max_peers: usize,
    /// When the room was created (RFC 3339).
    pub created_at: String,
    /// The room's version.
    pub version: u64,
    /// Every member, oldest first.
    pub peers: Vec<Peer>,
}

/// The answer to `POST /api/webrtc/rooms/{room}/join`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpJoinSuccess {
    /// The room joined.
    pub room_name: String,
    /// The HTTP peer's id.
    pub peer_id: String,
    /// Every member, oldest first.
    pub peers: Vec<Peer>,
    /// `peers.len()`.
    pub total_peers: usize,
    /// The room's version now.
    pub version: u64,
    /// When the lease runs out unless renewed (RFC 3339).
    pub expires_at: String,
    /// ICE servers the server recommends (with TURN credentials when TURN is on).
    pub ice_servers: Vec<IceServer>,
}

/// Every event name the server emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventName {
    /// `join_room_success`
    JoinRoomSuccess,
    /// `join_room_error`
    JoinRoomError,
    /// `peer_list_updated`
    PeerListUpdated,
    /// `peer_joined`
    PeerJoined,
    /// `peer_left`
    PeerLeft,
    /// `leave_room_success`
    LeaveRoomSuccess,
    /// `leave_room_error`
    LeaveRoomError,
    /// `peer_list`
    PeerList,
    /// `get_peers_error`
    GetPeersError,
    /// `signal`
    Signal,
    /// `signal_error`
    SignalError,
}

impl EventName {
    /// The name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::JoinRoomSuccess => "join_room_success",
            Self::JoinRoomError => "join_room_error",
            Self::PeerListUpdated => "peer_list_updated",
            Self::PeerJoined => "peer_joined",
            Self::PeerLeft => "peer_left",
            Self::LeaveRoomSuccess => "leave_room_success",
            Self::LeaveRoomError => "leave_room_error",
            Self::PeerList => "peer_list",
            Self::GetPeersError => "get_peers_error",
            Self::Signal => "signal",
            Self::SignalError => "signal_error",
        }
    }
}

/// Any payload the server emits over Socket.IO.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Payload {
    /// `join_room_success`
    JoinSuccess(JoinSuccess),
    /// `peer_list_updated`, `peer_list`
    PeerList(PeerList),
    /// `peer_joined`
    PeerJoined(PeerJoined),
    /// `peer_left`
    PeerLeft(PeerLeft),
    /// `leave_room_success`
    LeaveSuccess(LeaveSuccess),
    /// `signal`
    Signal(SignalDelivery),
    /// the ack of a relayed `signal`
    SignalAck(SignalAck),
    /// every `*_error`
    Error(ErrorBody),
}

/// One event with its payload.
#[derive(Debug, Clone)]
pub struct Event {
    /// The event name.
    pub name: EventName,
    /// Its payload.
    pub payload: Payload,
}

impl Event {
    /// Pairs a name with a payload.
    pub fn new(name: EventName, payload: Payload) -> Self {
        Self { name, payload }
    }
}

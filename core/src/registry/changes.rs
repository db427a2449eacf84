//! What happened to the rooms, as plain records: the registry appends one
//! [`RoomChange`] per change of a list (and one when a room starts or
//! finishes), and the adapter drains them after each command with
//! [`Registry::take_changes`](super::Registry::take_changes).
//!
//! Clients learn of changes through deliveries; these records are for
//! everything else that must agree with them exactly: metrics (a join counted
//! once, never for a renewal), webhooks (`room_started`, `peer_left` with its
//! reason, ...) and, later, other nodes of a cluster. Deriving those from the
//! deliveries or from the requests would be a guess; here the registry says
//! what it did.

use serde::Serialize;

use crate::protocol::Peer;

/// Why a peer left its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// `leave_room`, or a rejoin of the same room with another peer_id.
    Left,
    /// Its connection closed.
    Disconnected,
    /// It joined another room.
    Moved,
    /// Its HTTP lease ran out.
    Expired,
    /// A REST `DELETE` removed it.
    Deleted,
    /// It could not keep up (its queue was full) and was disconnected.
    Dropped,
}

impl LeaveReason {
    /// The reason on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Left => "left",
            Self::Disconnected => "disconnected",
            Self::Moved => "moved",
            Self::Expired => "expired",
            Self::Deleted => "deleted",
            Self::Dropped => "dropped",
        }
    }
}

/// The kind of a [`RoomChange`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// The room was created (by the join that follows as `PeerJoined`).
    RoomStarted,
    /// A peer joined (socket or REST).
    PeerJoined(Peer),
    /// A peer's username changed by a rejoin.
    PeerUpdated(Peer),
    /// A peer left.
    PeerLeft {
        /// Who.
        peer_id: String,
        /// Why.
        reason: LeaveReason,
    },
    /// The room's last peer left (after that `PeerLeft`); the room is gone.
    RoomFinished,
}

/// One change, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomChange {
    /// The room.
    pub room_name: String,
    /// The room's version after the change (`RoomStarted`: 1, `RoomFinished`:
    /// the version of the `PeerLeft` before it).
    pub version: u64,
    /// What happened.
    pub kind: ChangeKind,
}

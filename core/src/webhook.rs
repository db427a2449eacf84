//! Webhook payloads: what the server POSTs to `--webhook-url` for each room
//! change. They are built from the registry's own [`RoomChange`] records, so
//! a webhook says exactly what happened (a join is never a renewal, a leave
//! carries its real reason) and in the order it happened.
//!
//! The body is `{id, event, at, room_name, version, ...}` with the event's
//! extra fields: `peer` for `peer_joined` / `peer_updated`, `peer_id` and
//! `reason` for `peer_left`, nothing more for `room_started` / `room_finished`.

use serde::Serialize;

use crate::protocol::Peer;
use crate::registry::{ChangeKind, LeaveReason, RoomChange};
use crate::time::Timestamp;

/// One webhook delivery's body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookEvent<'a> {
    /// Unique per delivery (the `X-Signalroom-Delivery` header repeats it).
    pub id: &'a str,
    /// `room_started`, `peer_joined`, `peer_updated`, `peer_left` or `room_finished`.
    pub event: &'static str,
    /// When the change happened (RFC 3339, UTC).
    pub at: String,
    /// The room.
    pub room_name: &'a str,
    /// The room's version after the change.
    pub version: u64,
    /// The peer that joined or was renamed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<&'a Peer>,
    /// The peer that left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<&'a str>,
    /// Why it left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<LeaveReason>,
}

impl ChangeKind {
    /// The webhook event name of this kind of change.
    pub const fn event_name(&self) -> &'static str {
        match self {
            Self::RoomStarted => "room_started",
            Self::PeerJoined(_) => "peer_joined",
            Self::PeerUpdated(_) => "peer_updated",
            Self::PeerLeft { .. } => "peer_left",
            Self::RoomFinished => "room_finished",
        }
    }
}

impl<'a> WebhookEvent<'a> {
    /// The webhook for `change`, which happened at `at`, delivered as `id`.
    pub fn new(change: &'a RoomChange, id: &'a str, at: Timestamp) -> Self {
        let (peer, peer_id, reason) = match &change.kind {
            ChangeKind::PeerJoined(p) | ChangeKind::PeerUpdated(p) => (Some(p), None, None),
            ChangeKind::PeerLeft { peer_id, reason } => {
                (None, Some(peer_id.as_str()), Some(*reason))
            }
            ChangeKind::RoomStarted | ChangeKind::RoomFinished => (None, None, None),
        };
        Self {
            id,
            event: change.kind.event_name(),
            at: at.to_rfc3339(),
            room_name: &change.room_name,
            version: change.version,
            peer,
            peer_id,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(change: &RoomChange) -> serde_json::Value {
        serde_json::to_value(WebhookEvent::new(change, "d-1", Timestamp(0))).expect("serializes")
    }

    #[test]
    fn each_kind_carries_its_fields_only() {
        let peer = Peer {
            peer_id: "p".into(),
            username: "P".into(),
            joined_at: "1970-01-01T00:00:00.000Z".into(),
        };
        let change = |version, kind| RoomChange {
            room_name: "r".into(),
            version,
            kind,
        };
        let common = |event: &str, version: u64| json!({"id": "d-1", "event": event, "at": "1970-01-01T00:00:00.000Z", "room_name": "r", "version": version});
        assert_eq!(
            body(&change(1, ChangeKind::RoomStarted)),
            common("room_started", 1)
        );
        let mut joined = common("peer_joined", 1);
        joined["peer"] = serde_json::to_value(&peer).expect("serializes");
        assert_eq!(
            body(&change(1, ChangeKind::PeerJoined(peer.clone()))),
            joined
        );
        let mut updated = common("peer_updated", 2);
        updated["peer"] = serde_json::to_value(&peer).expect("serializes");
        assert_eq!(body(&change(2, ChangeKind::PeerUpdated(peer))), updated);
        let mut left = common("peer_left", 3);
        left["peer_id"] = json!("p");
        left["reason"] = json!("expired");
        let kind = ChangeKind::PeerLeft {
            peer_id: "p".into(),
            reason: LeaveReason::Expired,
        };
        assert_eq!(body(&change(3, kind)), left);
        assert_eq!(
            body(&change(3, ChangeKind::RoomFinished)),
            common("room_finished", 3)
        );
    }
}

//! The messages nodes of a cluster exchange through Redis streams.
//!
//! A home node forwards its clients' commands for a room to the room's owner
//! as a [`Command`]; the owner answers each node with one [`Batch`] per change
//! (or per answer that changes nothing): the requester's reply if that node
//! holds the requester, then the events for that node's sockets
//! (`docs/cluster.md`, "Messages"). Payloads travel as JSON text, encoded
//! once by the owner and copied verbatim into each packet by the home node,
//! as a single node does today. Plain serde types, so both ends agree by
//! construction and a node of another version fails to parse rather than
//! misread.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::Slot;
use crate::access::Grant;
use crate::protocol::{Peer, UpdateMode};

/// A command for a room's owner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Command {
    /// The room it is for.
    pub room: String,
    /// The node that sent it, where the answer goes.
    pub home: String,
    /// The home node's number for this request, echoed in the answer.
    pub req: u64,
    /// After this instant (ms, Redis's clock) the owner must not apply it:
    /// the home node has answered `unavailable` by then.
    pub deadline: u64,
    /// What to do.
    pub kind: CommandKind,
    /// The claims of the access token the request came with (the socket's,
    /// or the REST request's bearer token), checked by the owner exactly as
    /// one node checks them; absent when tokens are off (or for a command
    /// that needs none: only joins and REST requests carry one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Grant>,
}

impl Command {
    /// Whether its home node answers it `unavailable` at its deadline (a
    /// socket's event, a REST request), so that it must not take effect
    /// afterwards; departures and restores are applied however late.
    pub fn expires(&self) -> bool {
        matches!(
            self.kind,
            CommandKind::Event { .. }
                | CommandKind::HttpJoin { .. }
                | CommandKind::HttpLeave { .. }
        )
    }
}

/// What a [`Command`] asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
// Externally tagged: serde buffers internally tagged enums, and a buffered
// `RawValue` cannot be read back.
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    /// A socket's event (`join_room`, `leave_room`, `get_peers`, `signal`), as
    /// the registry's `handle` takes it.
    Event {
        /// The socket on the home node.
        sid: String,
        /// The event's wire name.
        event: String,
        /// Its first argument as JSON text, if any.
        payload: Option<Box<RawValue>>,
        /// Whether it carried binary attachments.
        binary: bool,
    },
    /// A socket closed.
    Disconnect {
        /// The socket on the home node.
        sid: String,
    },
    /// A socket dropped by its home node because it could not keep up (its
    /// queue was full): it leaves with the reason `dropped`.
    Dropped {
        /// The socket on the home node.
        sid: String,
    },
    /// A socket joined another room (its owner elsewhere): leave this one, reason `moved`.
    MovedOut {
        /// The socket on the home node.
        sid: String,
    },
    /// `POST /api/webrtc/rooms/{room}/join` with this body.
    HttpJoin {
        /// The request body.
        body: serde_json::Value,
    },
    /// `DELETE /api/webrtc/rooms/{room}/peers/{peer_id}`.
    HttpLeave {
        /// The HTTP peer to remove.
        peer_id: String,
    },
    /// Changes nothing: sent by a node that found the room without an owner
    /// (its owner died), so that a node claims it, imports its last snapshot
    /// and removes the members of dead nodes.
    Takeover,
    /// Put back a member the cluster lost (the registry's `restore`).
    Restore {
        /// The socket on the home node.
        sid: String,
        /// The peer as it was listed.
        peer: Peer,
        /// How it hears of changes.
        mode: UpdateMode,
        /// The last version its node delivered in that room.
        floor: u64,
    },
}

/// Everything one node's sockets get from one step of a room's owner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Batch {
    /// The room.
    pub room: String,
    /// The owner's fencing epoch when it committed this.
    pub epoch: u64,
    /// Where it goes in the room's sequence: a change, or an answer taken at a
    /// version; `None` for what is not ordered by version (a `signal`, an error).
    pub slot: Option<Slot>,
    /// The answer to a request from this node, first.
    pub reply: Option<BatchReply>,
    /// Then these events, in order.
    pub events: Vec<BatchEvent>,
}

impl Batch {
    /// Whether this is only a relayed `signal` (its events, and the sender's
    /// ack or `signal_error`): outside the room's sequence, nothing read or
    /// changed, so it needs no fencing and may be delivered before its
    /// step's commit.
    pub fn is_signal(&self) -> bool {
        let reply_is_signal = match &self.reply {
            None => true,
            Some(BatchReply::Socket { event, .. }) => event == "signal" || event == "signal_error",
            Some(BatchReply::Relay { .. }) => true,
            Some(_) => false,
        };
        self.slot.is_none() && reply_is_signal && self.events.iter().all(|e| e.event == "signal")
    }
}

/// The answer to one [`Command`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchReply {
    /// To a socket: emitted as `event` when `emit`, and the ack payload.
    Socket {
        /// The request it answers.
        req: u64,
        /// The socket.
        sid: String,
        /// The event's wire name.
        event: String,
        /// Its payload as JSON text.
        payload: Box<RawValue>,
        /// Whether the event is emitted (a relayed `signal` is only acked).
        emit: bool,
    },
    /// To a REST request: the status and JSON body to answer with.
    Http {
        /// The request it answers.
        req: u64,
        /// The HTTP status.
        status: u16,
        /// The body as JSON text.
        body: Box<RawValue>,
    },
    /// The room is not this node's to serve any more: route the request again.
    Moved {
        /// The request it answers.
        req: u64,
    },
    /// The answer to a `restore`: whether the member is in the room again
    /// (refused: its node disconnects the socket, and its client joins again).
    Restored {
        /// The request it answers.
        req: u64,
        /// The socket.
        sid: String,
        /// Whether the member is listed again.
        ok: bool,
    },
    /// To the target's node of a `signal` whose sender is on another node:
    /// once the signal (this batch's event) is queued for its target, answer
    /// the sender `sid` on node `home` with `ack`; if the target cannot take
    /// it, with `peer_not_found` (a batch sent to `home`'s inbox). So a
    /// signal's ack means, across nodes too, that it was queued for its target.
    Relay {
        /// The sender's node.
        home: String,
        /// The sender's request.
        req: u64,
        /// The sender.
        sid: String,
        /// The ack (`{to}`).
        ack: Box<RawValue>,
    },
}

/// One event for some of the receiving node's sockets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchEvent {
    /// Socket ids on the receiving node.
    pub to: Vec<String>,
    /// The event's wire name.
    pub event: String,
    /// Its payload as JSON text.
    pub payload: Box<RawValue>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(v: serde_json::Value) -> Box<RawValue> {
        RawValue::from_string(v.to_string()).expect("json")
    }

    #[test]
    fn only_a_relayed_signal_and_its_answer_is_a_signal_batch() {
        let signal = |event: &str, slot: Option<Slot>, reply: Option<BatchReply>| Batch {
            room: "r".into(),
            epoch: 1,
            slot,
            reply,
            events: vec![BatchEvent {
                to: vec!["t".into()],
                event: event.into(),
                payload: raw(json!({})),
            }],
        };
        let answer = |event: &str| {
            Some(BatchReply::Socket {
                req: 1,
                sid: "s".into(),
                event: event.into(),
                payload: raw(json!({})),
                emit: false,
            })
        };
        assert!(signal("signal", None, None).is_signal());
        assert!(signal("signal", None, answer("signal")).is_signal());
        assert!(signal("signal", None, answer("signal_error")).is_signal());
        // A change, an ordered answer, another event or another answer is not.
        assert!(!signal("signal", Some(Slot::Change(2)), None).is_signal());
        assert!(!signal("signal", Some(Slot::After(2)), answer("signal")).is_signal());
        assert!(!signal("peer_list_updated", None, None).is_signal());
        assert!(!signal("signal", None, answer("peer_list")).is_signal());
        assert!(!signal("signal", None, Some(BatchReply::Moved { req: 1 })).is_signal());
    }

    #[test]
    fn a_command_round_trips_with_its_payload_verbatim() {
        let text = r#"{"room_name":"r","peer_id":"p","username":"u"}"#;
        let cmd = Command {
            room: "r".into(),
            home: "n1".into(),
            req: 7,
            deadline: 1_700_000_001_500,
            kind: CommandKind::Event {
                sid: "abc".into(),
                event: "join_room".into(),
                payload: Some(RawValue::from_string(text.into()).expect("json")),
                binary: false,
            },
            grant: None,
        };
        let wire = serde_json::to_string(&cmd).expect("serializes");
        assert!(!wire.contains("grant"), "no grant, no field: {wire}");
        assert!(wire.contains(r#""kind":{"event":{"sid":"abc""#), "{wire}");
        let back: Command = serde_json::from_str(&wire).expect("parses");
        let CommandKind::Event { payload, .. } = back.kind else {
            panic!("an event");
        };
        assert_eq!(payload.expect("a payload").get(), text);
        assert_eq!((back.req, back.deadline), (7, 1_700_000_001_500));
    }

    #[test]
    fn a_command_carries_its_grant_and_one_without_still_parses() {
        let old = r#"{"room":"r","home":"n1","req":1,"deadline":5,"kind":{"http_leave":{"peer_id":"h"}}}"#;
        let cmd: Command = serde_json::from_str(old).expect("a message without a grant parses");
        assert_eq!(cmd.grant, None);
        let grant = Grant {
            exp: 1_700_000_100,
            nbf: None,
            room: Some("r".into()),
            sub: Some("h".into()),
        };
        let with = Command {
            grant: Some(grant.clone()),
            ..cmd
        };
        let wire = serde_json::to_string(&with).expect("serializes");
        assert!(
            wire.contains(r#""grant":{"exp":1700000100,"room":"r","sub":"h"}"#),
            "{wire}"
        );
        let back: Command = serde_json::from_str(&wire).expect("parses");
        assert_eq!(back.grant, Some(grant));
    }

    #[test]
    fn a_batch_round_trips() {
        let batch = Batch {
            room: "r".into(),
            epoch: 3,
            slot: Some(Slot::Change(5)),
            reply: Some(BatchReply::Socket {
                req: 7,
                sid: "abc".into(),
                event: "join_room_success".into(),
                payload: raw(json!({"version": 5})),
                emit: true,
            }),
            events: vec![BatchEvent {
                to: vec!["abc".into(), "def".into()],
                event: "peer_list_updated".into(),
                payload: raw(json!({"version": 5})),
            }],
        };
        let text = serde_json::to_string(&batch).expect("serializes");
        let wire: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(wire["slot"], json!({"change": 5}));
        assert_eq!(wire["reply"]["socket"]["req"], 7);
        let back: Batch = serde_json::from_str(&text).expect("parses");
        assert_eq!(back.slot, Some(Slot::Change(5)));
        assert_eq!(back.events[0].to, ["abc", "def"]);
        assert!(serde_json::from_str::<Batch>(r#"{"room":"r"}"#).is_err());
    }
}

//! The owner side of a cluster room: one room's registry, commands in, one
//! batch per node out.
//!
//! The node that owns a room runs the ordinary [`Registry`] for it, keyed by
//! [`ConnId`], and turns each [`Command`] it is sent into what must be
//! committed (the room's new snapshot and listing, or its deletion) and what
//! each node must be told, as a [`Batch`] per node (`docs/cluster.md`). That
//! step is pure, so it is here: the adapter only moves the result through
//! Redis. Every node that held or holds a socket member of the room gets a
//! batch for each change, even one with no event for its sockets, so its
//! resequencer never waits for a version that was not meant for it; a command
//! that moves the room by several versions (a rejoin under another peer id,
//! a dead node's members) sends empty batches for the versions in between and
//! every event in the last one. A request past its deadline is not applied
//! (its home node has answered `unavailable`); a departure always is. If the commit fails, the
//! adapter puts the room back with [`Owner::rollback`].

use std::collections::{BTreeMap, VecDeque};

use serde_json::value::{RawValue, to_raw_value};

use super::wire::{Batch, BatchEvent, BatchReply, Command, CommandKind};
use super::{ConnId, Slot, split_by_node};
use crate::protocol::{EventName, Payload, RoomInfo};
use crate::registry::{ClientEvent, Config, Delivery, Registry, Reply, RoomChange};
use crate::registry::{HolderSnapshot, RoomSnapshot, SnapshotError};
use crate::time::Timestamp;

/// What a step asks to be written to shared storage with its batches.
#[derive(Debug, Clone, PartialEq)]
pub enum Commit {
    /// The room did not change: nothing to write (the batches still go out).
    Unchanged,
    /// The room changed: its new snapshot and listing.
    Changed {
        /// The room's whole state.
        snapshot: RoomSnapshot<ConnId>,
        /// What REST listings show.
        info: RoomInfo,
    },
    /// The room's last member left: the room is gone.
    Deleted,
}

/// The result of one command at the owner.
#[derive(Debug)]
pub struct Step {
    /// What to commit.
    pub commit: Commit,
    /// One batch per node, in the order to send them (per node, in version order).
    pub batches: Vec<(String, Batch)>,
    /// The room before the step, for [`Owner::rollback`].
    pub before: Option<RoomSnapshot<ConnId>>,
    /// The room's changes, oldest first (the registry's records): once the
    /// step is committed, what its webhooks say (`crate::webhook`) and what
    /// the owner counts in its metrics, exactly as one node's registry
    /// records them, so each change is told and counted once in the cluster;
    /// none for a step that is not committed.
    pub changes: Vec<RoomChange>,
    /// The earliest deadline of the requests it applied (ms, Redis's
    /// clock): their home nodes answer them `unavailable` then, so the step
    /// must not take effect after it. `None` when it applied none: only
    /// departures and restores (applied however late), or requests dropped
    /// as already past their deadline, which change nothing and so must not
    /// hold back the rest of a group.
    pub deadline: Option<u64>,
}

impl Step {
    fn nothing(before: Option<RoomSnapshot<ConnId>>) -> Self {
        Self {
            commit: Commit::Unchanged,
            batches: Vec::new(),
            before,
            changes: Vec::new(),
            deadline: None,
        }
    }

    /// This step followed by `next`, as one commit: the room before this
    /// one (a failed commit rolls both back), what the later of the two
    /// writes (the room's latest state; this one's when `next` changed
    /// nothing), the batches and changes of both, this one's first, so
    /// every node hears them (and every webhook receiver) in the order they
    /// were decided, and the earlier of their deadlines.
    pub fn then(mut self, next: Step) -> Step {
        if next.commit != Commit::Unchanged {
            self.commit = next.commit;
        }
        self.batches.extend(next.batches);
        self.changes.extend(next.changes);
        self.deadline = match (self.deadline, next.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self
    }
}

/// The answer to the command a step applied.
enum Answer {
    /// To a socket on the command's home node.
    Socket(String, Reply),
    /// To a REST request on the command's home node: status and JSON body.
    Http(u16, Box<RawValue>),
    /// To a `restore` from the command's home node: the socket, and whether it is back.
    Restored(String, bool),
}

/// One owned room.
#[derive(Debug)]
pub struct Owner {
    room: String,
    epoch: u64,
    registry: Registry<ConnId>,
}

impl Owner {
    /// The owner of `room` under fencing `epoch`, starting from `snapshot`
    /// (the last committed state) when the room exists.
    pub fn new(
        room: impl Into<String>,
        epoch: u64,
        config: Config,
        snapshot: Option<RoomSnapshot<ConnId>>,
    ) -> Result<Self, SnapshotError> {
        let mut registry = Registry::new(config);
        if let Some(s) = snapshot {
            registry.import_room(s)?;
        }
        Ok(Self {
            room: room.into(),
            epoch,
            registry,
        })
    }

    /// The room's name.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// The room's version (0 when it does not exist).
    pub fn version(&self) -> u64 {
        self.registry
            .export_room(&self.room)
            .map_or(0, |s| s.version)
    }

    /// The room's snapshot and listing, to write again where they were lost
    /// (Redis restarted empty); `None` when the room does not exist.
    pub fn state(&self) -> Option<(RoomSnapshot<ConnId>, RoomInfo)> {
        let snapshot = self.registry.export_room(&self.room)?;
        let info = self.registry.room(&self.room).ok()?;
        Some((snapshot, info))
    }

    /// The fencing epoch changed (the room was claimed again).
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// How many peers the room has (0 when it does not exist).
    pub fn peer_count(&self) -> usize {
        self.registry.peer_count()
    }

    /// Whether the room has no member (it does not exist).
    pub fn is_empty(&self) -> bool {
        self.registry.room_count() == 0
    }

    /// The nodes that hold socket members: whose liveness the owner watches.
    pub fn member_nodes(&self) -> Vec<String> {
        self.registry
            .member_nodes()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// Puts the room back as it was before a step whose commit failed.
    pub fn rollback(&mut self, before: Option<RoomSnapshot<ConnId>>) {
        self.registry.forget_room(&self.room);
        if let Some(s) = before
            && let Err(e) = self.registry.import_room(s)
        {
            // The snapshot came out of this registry, so it imports.
            debug_assert!(false, "a room's own snapshot does not import: {e}");
        }
        self.registry.take_changes();
    }

    /// The answer to a command this owner cannot serve (the room is not its
    /// own any more): route it again.
    pub fn moved(command: &Command, epoch: u64) -> Batch {
        Batch {
            room: command.room.clone(),
            epoch,
            slot: None,
            reply: Some(BatchReply::Moved { req: command.req }),
            events: Vec::new(),
        }
    }

    /// Applies one command at `now` (ms, the deadline's clock).
    pub fn apply(&mut self, command: Command, now: Timestamp) -> Step {
        let before = self.registry.export_room(&self.room);
        // A request past its deadline was answered `unavailable` at home; a
        // departure cannot be refused, so it is applied however late, and so
        // is a `restore` (its socket's later departure follows it here).
        if command.expires() && command.deadline < now.0 {
            return Step::nothing(before);
        }
        let deadline = command.expires().then_some(command.deadline);
        let home = command.home.clone();
        let mut reply = None;
        let mut read = false;
        let deliveries = match command.kind {
            CommandKind::Event {
                sid,
                event,
                payload,
                binary,
            } => {
                let Some(event) = ClientEvent::from_name(&event) else {
                    return Step::nothing(before);
                };
                let conn = ConnId::new(home.clone(), sid.clone());
                self.registry.connect(&conn);
                if let Some(grant) = command.grant {
                    // The socket's token, judged here as one node judges it.
                    self.registry.grant(&conn, grant);
                }
                let o = self
                    .registry
                    .handle(&conn, event, payload.as_deref(), binary, now);
                read = matches!(event, ClientEvent::GetPeers | ClientEvent::JoinRoom);
                reply = o.reply.map(|r| Answer::Socket(sid, r));
                if self.registry.membership(&conn).is_none() {
                    // Not a member (a refused join, a leave): nothing to keep open.
                    self.registry.disconnect(&conn);
                }
                o.deliveries
            }
            CommandKind::Disconnect { sid } => self.registry.disconnect(&ConnId::new(&home, sid)),
            CommandKind::Dropped { sid } => self.registry.drop_connection(&ConnId::new(&home, sid)),
            CommandKind::MovedOut { sid } => {
                let conn = ConnId::new(&home, sid);
                let d = self.registry.moved_out(&conn, &self.room);
                // The connection lives on, in another room owned elsewhere.
                self.registry.disconnect(&conn);
                d
            }
            CommandKind::HttpJoin { body } => {
                let (result, deliveries) =
                    self.registry
                        .http_join_granted(&self.room, &body, command.grant.as_ref(), now);
                reply = Some(match result {
                    Ok(joined) => http_answer(200, &joined),
                    Err(r) => http_answer(r.error.http_status(), &r.error.body(None)),
                });
                deliveries
            }
            CommandKind::HttpLeave { peer_id } => {
                match self
                    .registry
                    .http_leave_granted(&self.room, &peer_id, command.grant.as_ref())
                {
                    Ok(deliveries) => {
                        reply = Some(http_answer(204, &serde_json::Value::Null));
                        deliveries
                    }
                    Err(e) => {
                        reply = Some(http_answer(e.http_status(), &e.body(None)));
                        Vec::new()
                    }
                }
            }
            CommandKind::Restore {
                sid,
                peer,
                mode,
                floor,
            } => {
                let conn = ConnId::new(home.clone(), sid.clone());
                self.registry.connect(&conn);
                let restored = self
                    .registry
                    .restore(&conn, &self.room, peer, mode, floor, now);
                if self.registry.membership(&conn).is_none() {
                    self.registry.disconnect(&conn);
                }
                reply = Some(Answer::Restored(sid, restored.is_ok()));
                restored.unwrap_or_default()
            }
            CommandKind::Takeover => Vec::new(),
        };
        let changes = self.registry.take_changes();
        let after = self.registry.export_room(&self.room);
        let mut step = self.step(command.req, &home, reply, read, deliveries, before, after);
        step.changes = changes;
        step.deadline = deadline;
        step
    }

    /// Applies the commands at the front of `commands` in order, as one
    /// step to commit once ([`Step::then`]), at `now`: at most `max` of them
    /// (at least one if there is any), and none after one that leaves the
    /// room empty (that commit lets the room go; the rest are for whoever
    /// owns it next). What was not applied stays in `commands`.
    pub fn apply_group(
        &mut self,
        commands: &mut VecDeque<Command>,
        max: usize,
        now: Timestamp,
    ) -> Step {
        let mut step = Step::nothing(self.registry.export_room(&self.room));
        for _ in 0..max.max(1) {
            let Some(command) = commands.pop_front() else {
                break;
            };
            step = step.then(self.apply(command, now));
            if self.is_empty() {
                break;
            }
        }
        step
    }

    /// When the next HTTP peer's lease runs out (ms, the wall clock).
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.registry.next_expiry()
    }

    /// Removes the HTTP peers whose lease ran out at or before `now`: one version each.
    pub fn expire(&mut self, now: Timestamp) -> Step {
        let before = self.registry.export_room(&self.room);
        let deliveries = self.registry.expire(now);
        let changes = self.registry.take_changes();
        let after = self.registry.export_room(&self.room);
        let step = self.step(0, "", None, false, deliveries, before, after);
        Step { changes, ..step }
    }

    /// Drops every socket member held by `node` (it died): one version each.
    pub fn remove_node(&mut self, node: &str) -> Step {
        let before = self.registry.export_room(&self.room);
        let deliveries = self.registry.remove_node(node);
        let changes = self.registry.take_changes();
        let after = self.registry.export_room(&self.room);
        let step = self.step(0, node, None, false, deliveries, before, after);
        Step { changes, ..step }
    }

    /// Disconnects every socket member held by `node` (it is stopping, its
    /// sockets closed): one version each, reason `disconnected`, told to the
    /// members that remain.
    pub fn disconnect_node(&mut self, node: &str) -> Step {
        let before = self.registry.export_room(&self.room);
        let doomed: Vec<ConnId> = before
            .iter()
            .flat_map(|s| &s.members)
            .filter_map(|m| match &m.holder {
                HolderSnapshot::Socket { conn, .. } if conn.node == node => Some(conn.clone()),
                _ => None,
            })
            .collect();
        let mut deliveries = Vec::new();
        for conn in &doomed {
            deliveries.extend(self.registry.disconnect(conn));
        }
        for d in &mut deliveries {
            d.to.retain(|c| !doomed.contains(c));
        }
        deliveries.retain(|d| !d.to.is_empty());
        let changes = self.registry.take_changes();
        let after = self.registry.export_room(&self.room);
        let step = self.step(0, node, None, false, deliveries, before, after);
        Step { changes, ..step }
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &self,
        req: u64,
        home: &str,
        reply: Option<Answer>,
        read: bool,
        deliveries: Vec<Delivery<ConnId>>,
        before: Option<RoomSnapshot<ConnId>>,
        after: Option<RoomSnapshot<ConnId>>,
    ) -> Step {
        let v0 = before.as_ref().map_or(0, |s| s.version);
        let v1 = after.as_ref().map_or(0, |s| s.version);
        let changed = before != after;
        let commit = match (&after, changed) {
            (_, false) => Commit::Unchanged,
            (None, true) => Commit::Deleted,
            (Some(s), true) => match self.registry.room(&self.room) {
                Ok(info) => Commit::Changed {
                    snapshot: s.clone(),
                    info,
                },
                Err(_) => Commit::Deleted,
            },
        };
        let is_error = match &reply {
            Some(Answer::Socket(_, r)) => matches!(r.event.payload, Payload::Error(_)),
            _ => true,
        };
        // A deleted room has nobody left to order anything for.
        let slot = if after.is_none() {
            None
        } else if v1 > v0 {
            Some(Slot::Change(v1))
        } else if read && !is_error {
            Some(Slot::After(v1))
        } else {
            None
        };
        let mut nodes: Vec<String> = Vec::new();
        for s in [&before, &after].into_iter().flatten() {
            for m in &s.members {
                if let HolderSnapshot::Socket { conn, .. } = &m.holder {
                    nodes.push(conn.node.clone());
                }
            }
        }
        let split = split_by_node(&deliveries);
        nodes.extend(split.keys().map(|n| (*n).to_owned()));
        // A signal's ack for a sender on another node than its target's is
        // given by the target's node, once it queued it (`BatchReply::Relay`).
        let relay_to = match &reply {
            Some(Answer::Socket(_, r))
                if r.event.name == EventName::Signal && !r.emit && split.len() == 1 =>
            {
                split
                    .keys()
                    .next()
                    .filter(|n| **n != home)
                    .map(|n| (*n).to_owned())
            }
            _ => None,
        };
        let to_home =
            relay_to.is_none() && matches!(reply, Some(Answer::Socket(..) | Answer::Restored(..)));
        if to_home {
            nodes.push(home.to_owned());
        }
        nodes.sort_unstable();
        nodes.dedup();
        if !matches!(slot, Some(Slot::Change(_))) {
            // Not a change: only the nodes with something to hear.
            nodes.retain(|n| split.contains_key(n.as_str()) || (to_home && n == home));
        }
        let mut batches = Vec::new();
        for node in nodes {
            if let Some(Slot::Change(v)) = slot {
                for skipped in (v0 + 1)..v {
                    batches.push((node.clone(), self.batch(Some(Slot::Change(skipped)))));
                }
            }
            let mut batch = self.batch(slot);
            if node == home
                && let Some(Answer::Socket(sid, r)) = &reply
                && let Some(payload) = encode(&r.event.payload)
            {
                batch.reply = Some(BatchReply::Socket {
                    req,
                    sid: sid.clone(),
                    event: r.event.name.as_str().to_owned(),
                    payload,
                    emit: r.emit,
                });
            }
            if relay_to.as_deref() == Some(node.as_str())
                && let Some(Answer::Socket(sid, r)) = &reply
                && let Some(ack) = encode(&r.event.payload)
            {
                batch.reply = Some(BatchReply::Relay {
                    home: home.to_owned(),
                    req,
                    sid: sid.clone(),
                    ack,
                });
            }
            if node == home
                && let Some(Answer::Restored(sid, ok)) = &reply
            {
                batch.reply = Some(BatchReply::Restored {
                    req,
                    sid: sid.clone(),
                    ok: *ok,
                });
            }
            for d in split.get(node.as_str()).into_iter().flatten() {
                if let Some(payload) = encode(&d.event.payload) {
                    batch.events.push(BatchEvent {
                        to: d.to.iter().map(|s| (*s).to_owned()).collect(),
                        event: d.event.name.as_str().to_owned(),
                        payload,
                    });
                }
            }
            batches.push((node, batch));
        }
        // A REST answer is not ordered with the room's events: a batch of its
        // own, outside the sequence (the home node may hold no member).
        if let Some(Answer::Http(status, body)) = reply {
            let mut batch = self.batch(None);
            batch.reply = Some(BatchReply::Http { req, status, body });
            batches.push((home.to_owned(), batch));
        }
        Step {
            commit,
            batches,
            before,
            changes: Vec::new(),
            deadline: None,
        }
    }

    fn batch(&self, slot: Option<Slot>) -> Batch {
        Batch {
            room: self.room.clone(),
            epoch: self.epoch,
            slot,
            reply: None,
            events: Vec::new(),
        }
    }
}

/// A REST answer: its status and JSON body (`null` if the body cannot be written).
fn http_answer(status: u16, body: &impl serde::Serialize) -> Answer {
    // `Box<RawValue>`'s default is `null`.
    Answer::Http(status, to_raw_value(body).unwrap_or_default())
}

fn encode(payload: &Payload) -> Option<Box<RawValue>> {
    to_raw_value(payload).ok()
}

/// What a read-back says of a commit whose answer was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBack {
    /// Redis holds what the commit wrote: its change stands (its batches went
    /// out with it).
    Stands,
    /// It does not, and the commit can no longer take effect: undo the step.
    Undone,
    /// It does not yet, but the script may still run (it is not past its
    /// deadline): read again.
    Wait,
}

/// Judges one read-back of a room after a commit whose answer was lost:
/// `wrote` is the snapshot the commit wrote (`None`: it deleted the room),
/// `found` what Redis holds, read at `now` by Redis's clock (ms), and
/// `deadline` the step's ([`Step::deadline`]; the commit script refuses to
/// run past it). A script still queued in Redis, possibly on a connection the
/// client has given up, may run after the read: only a read past the
/// deadline proves it never will. A step without a deadline (departures,
/// restores) is judged on what was found.
pub fn read_back(
    wrote: Option<&str>,
    found: Option<&str>,
    now: u64,
    deadline: Option<u64>,
) -> ReadBack {
    if found == wrote {
        ReadBack::Stands
    } else if deadline.is_some_and(|d| now <= d) {
        ReadBack::Wait
    } else {
        ReadBack::Undone
    }
}

/// Every owned room's batches, grouped by node in order: what one commit sends.
pub fn by_node(batches: Vec<(String, Batch)>) -> BTreeMap<String, Vec<Batch>> {
    let mut out: BTreeMap<String, Vec<Batch>> = BTreeMap::new();
    for (node, b) in batches {
        out.entry(node).or_default().push(b);
    }
    out
}

#[cfg(test)]
mod tests;

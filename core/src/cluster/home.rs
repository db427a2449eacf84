//! The home side of a cluster node: its own sockets, whose rooms live elsewhere.
//!
//! A node forwards each socket's requests to the owner of the room they are
//! for and hands the owners' batches back to its sockets (`docs/cluster.md`).
//! What it must decide is pure logic, so it is here: which room a request is
//! for (a valid `join_room` names it, anything else goes to the socket's
//! current room); one request in flight per socket, the rest queued behind it,
//! so a socket's events are handled in the order it sent them; a request no
//! room can answer (an invalid join, `leave_room` while in no room) answered
//! by a private empty [`Registry`], so the error rules stay the registry's;
//! the socket's current room, taken from the replies it gets, which also
//! filters events (no event of a room after `leave_room_success` or after the
//! join that moved it elsewhere); a `moved_out` for the old room after such a
//! join; batches put in version order per room by a [`Resequencer`]; a join
//! that succeeded after the adapter answered it `unavailable` undone (the
//! owner is told the socket left).
//! Deadlines and `unavailable` answers are the adapter's (it owns the clock of
//! Redis and the timers); so is finding a room's owner.

use std::collections::{HashMap, VecDeque};

use serde_json::value::RawValue;

use super::Resequencer;
use super::wire::{Batch, BatchReply, Command, CommandKind};
use crate::access::Grant;
use crate::error::Error;
use crate::protocol::{JoinSuccess, Peer, SignalAck, UpdateMode};
use crate::registry::{ClientEvent, Config, Registry, Reply};
use crate::time::Timestamp;
use crate::validate::parse_join_text;

/// How many times a request is routed again after a `moved` answer before it
/// is answered `unavailable` (`docs/cluster.md`, "Messages").
pub const MAX_MOVES: u32 = 3;

/// What the adapter must do, in order.
#[derive(Debug)]
pub enum Action {
    /// Send this command to the owner of `command.room`.
    Send(Command),
    /// Answer a socket's request here: emit the event when `reply.emit`, and ack.
    Answer {
        /// The socket.
        sid: String,
        /// The answer.
        reply: Reply,
    },
    /// An owner's answer to a socket's request: emit `event` when `emit`, and ack.
    Reply {
        /// The socket.
        sid: String,
        /// The event's wire name.
        event: String,
        /// Its payload as JSON text.
        payload: Box<RawValue>,
        /// Whether the event is emitted.
        emit: bool,
    },
    /// An event for some of this node's sockets.
    Emit {
        /// The sockets.
        to: Vec<String>,
        /// The event's wire name.
        event: String,
        /// Its payload as JSON text.
        payload: Box<RawValue>,
    },
    /// A `signal` between two sockets of this node, acked only once it is
    /// queued for its target (as on one node): queue `signal` (the event
    /// `signal`) for `to`; when `to` cannot take it, drop `to` and answer
    /// `sid` with `refused` (emitted as `signal_error`, and acked), otherwise
    /// ack `sid` with `ack`.
    Relay {
        /// The sender.
        sid: String,
        /// The target.
        to: String,
        /// The `signal` event's payload for the target.
        signal: Box<RawValue>,
        /// The sender's ack when it was queued (`{to}`).
        ack: Box<RawValue>,
        /// The sender's answer when it was not (`peer_not_found`).
        refused: Box<RawValue>,
    },
    /// A `signal` from a socket of node `home` to a socket here: queue
    /// `signal` for `to`, then send `home` the sender's answer: `acked` when
    /// `to` took it; `refused` when it could not (and drop `to`).
    RelayFor {
        /// The target.
        to: String,
        /// The `signal` event's payload for the target.
        signal: Box<RawValue>,
        /// The sender's node.
        home: String,
        /// The answer when it was queued: the ack `{to}`.
        acked: Batch,
        /// The answer when it was not: `peer_not_found`.
        refused: Batch,
    },
    /// Send `batch` to the inbox of node `node` (the answer to a relayed
    /// signal whose target is no longer here).
    Forward {
        /// The node.
        node: String,
        /// What it gets.
        batch: Batch,
    },
    /// Disconnect this socket: its room lost it and refused to take it back
    /// (`restore`), so its client joins again.
    Disconnect {
        /// The socket.
        sid: String,
    },
    /// An owner's answer to a REST request made through this node.
    Http {
        /// The request it answers.
        req: u64,
        /// The HTTP status.
        status: u16,
        /// The body as JSON text.
        body: Box<RawValue>,
    },
}

#[derive(Debug)]
struct Queued {
    event: ClientEvent,
    payload: Option<Box<RawValue>>,
    binary: bool,
    /// Refused before it was looked at: answered with this error in its turn.
    refused: Option<Error>,
}

#[derive(Debug, Default)]
struct Local {
    /// The room the socket is in, as its replies said.
    room: Option<String>,
    /// The request in flight.
    busy: Option<u64>,
    /// Requests waiting for it.
    queue: VecDeque<Queued>,
    /// The claims of the token it connected with: its joins carry them to
    /// the room's owner, which judges them.
    grant: Option<Grant>,
    /// Who it is in its room, as its join's answer said, and how it hears of
    /// changes: what a `restore` puts back.
    member: Option<(Peer, UpdateMode)>,
}

/// A `restore` sent and not answered yet.
#[derive(Debug)]
struct Restoring {
    sid: String,
    room: String,
    /// Past this (ms, the deadline's clock) it counts as lost.
    deadline: u64,
}

/// A node's sockets, their requests in flight, and their rooms' sequences.
#[derive(Debug)]
pub struct Home {
    node: String,
    sockets: HashMap<String, Local>,
    /// Requests sent and not answered yet, by number.
    pending: HashMap<u64, Command>,
    next_req: u64,
    /// Per socket, the room of its last join answered `unavailable` here: the
    /// owner may have applied it after all, its answer lost with Redis's data.
    doubtful: HashMap<String, String>,
    /// How many times each pending request was answered `moved`.
    moves: HashMap<u64, u32>,
    /// `restore` commands sent and not answered yet, by number.
    restoring: HashMap<u64, Restoring>,
    /// Answers what no room can; always empty.
    answers: Registry<String>,
    sequence: Resequencer<String, Batch>,
}

impl Home {
    /// The home side of node `node`. `config` is the cluster's registry
    /// settings; a room gap is resynced after `max_held` batches or `max_wait_ms`.
    pub fn new(node: impl Into<String>, config: Config, max_held: usize, max_wait_ms: u64) -> Self {
        Self {
            node: node.into(),
            sockets: HashMap::new(),
            pending: HashMap::new(),
            restoring: HashMap::new(),
            moves: HashMap::new(),
            doubtful: HashMap::new(),
            next_req: 1,
            answers: Registry::new(config),
            sequence: Resequencer::new(max_held, max_wait_ms),
        }
    }

    /// A socket connected.
    pub fn connect(&mut self, sid: &str) {
        self.sockets.entry(sid.to_owned()).or_default();
    }

    /// Records the claims of the access token a connected socket presented:
    /// every later `join_room` of it carries them to the room's owner.
    pub fn grant(&mut self, sid: &str, grant: Grant) {
        if let Some(local) = self.sockets.get_mut(sid) {
            local.grant = Some(grant);
        }
    }

    /// The room a socket is in, as far as this node knows.
    pub fn room_of(&self, sid: &str) -> Option<&str> {
        self.sockets.get(sid)?.room.as_deref()
    }

    /// The room sequences, for the adapter's gap timer and resyncs.
    pub fn sequence(&mut self) -> &mut Resequencer<String, Batch> {
        &mut self.sequence
    }

    /// A socket's event. `deadline` (ms on Redis's clock) is stamped on the
    /// command it becomes if it starts now (otherwise the call that lets it
    /// start gives the deadline).
    pub fn event(
        &mut self,
        sid: &str,
        event: ClientEvent,
        payload: Option<Box<RawValue>>,
        binary: bool,
        deadline: u64,
    ) -> Vec<Action> {
        let q = Queued {
            event,
            payload,
            binary,
            refused: None,
        };
        self.enqueue(sid, q, deadline)
    }

    /// An event of socket `sid` refused before it was looked at (`error`:
    /// the event rate's `rate_limited`): answered here, but in its turn,
    /// after the answers to the socket's earlier requests, so that a socket's
    /// events are answered in the order it sent them.
    pub fn refused(
        &mut self,
        sid: &str,
        event: ClientEvent,
        error: Error,
        deadline: u64,
    ) -> Vec<Action> {
        let q = Queued {
            event,
            payload: None,
            binary: false,
            refused: Some(error),
        };
        self.enqueue(sid, q, deadline)
    }

    /// Queues `q` behind socket `sid`'s other requests and starts what may start.
    fn enqueue(&mut self, sid: &str, q: Queued, deadline: u64) -> Vec<Action> {
        let Some(local) = self.sockets.get_mut(sid) else {
            return Vec::new();
        };
        local.queue.push_back(q);
        let mut out = Vec::new();
        self.start(sid, deadline, &mut out);
        out
    }

    /// Starts the socket's next requests until one is in flight.
    fn start(&mut self, sid: &str, deadline: u64, out: &mut Vec<Action>) {
        loop {
            let Some(local) = self.sockets.get_mut(sid) else {
                return;
            };
            if local.busy.is_some() {
                return;
            }
            let Some(q) = local.queue.pop_front() else {
                return;
            };
            if let Some(error) = &q.refused {
                out.push(Action::Answer {
                    sid: sid.to_owned(),
                    reply: Reply::refused(q.event, error),
                });
                continue;
            }
            let target = match q.event {
                ClientEvent::JoinRoom if !q.binary => parse_join_text(q.payload.as_deref())
                    .ok()
                    .map(|r| r.room_name),
                ClientEvent::JoinRoom => None,
                _ => local.room.clone(),
            };
            let Some(room) = target else {
                let id = sid.to_owned();
                self.answers.connect(&id);
                let o =
                    self.answers
                        .handle(&id, q.event, q.payload.as_deref(), q.binary, Timestamp(0));
                self.answers.disconnect(&id);
                self.answers.take_changes();
                if let Some(reply) = o.reply {
                    out.push(Action::Answer { sid: id, reply });
                }
                continue;
            };
            // Only a join is judged against the token (as on one node).
            let grant = (q.event == ClientEvent::JoinRoom)
                .then(|| local.grant.clone())
                .flatten();
            let kind = CommandKind::Event {
                sid: sid.to_owned(),
                event: q.event.as_str().to_owned(),
                payload: q.payload,
                binary: q.binary,
            };
            let mut command = self.command(room, deadline, kind);
            command.grant = grant;
            if let Some(local) = self.sockets.get_mut(sid) {
                local.busy = Some(command.req);
            }
            self.pending.insert(command.req, command.clone());
            out.push(Action::Send(command));
            return;
        }
    }

    /// Answers request `req` `unavailable` here (its room moved too often)
    /// and lets the socket's next request start.
    fn unavailable(&mut self, req: u64, deadline: u64, out: &mut Vec<Action>) {
        let Some(command) = self.pending.get(&req) else {
            return;
        };
        let CommandKind::Event { sid, event, .. } = &command.kind else {
            return;
        };
        let Some(event) = ClientEvent::from_name(event) else {
            return;
        };
        let room = (event == ClientEvent::JoinRoom).then_some(command.room.as_str());
        let body = crate::Error::Unavailable.body(room);
        let reply = Reply {
            event: crate::protocol::Event::new(
                event.error_event(),
                crate::protocol::Payload::Error(body),
            ),
            emit: true,
        };
        out.push(Action::Answer {
            sid: sid.clone(),
            reply,
        });
        out.extend(self.give_up(req, deadline));
    }

    /// A request got no answer in time and the adapter answered it
    /// `unavailable`: the socket's next request may start.
    pub fn give_up(&mut self, req: u64, deadline: u64) -> Vec<Action> {
        let mut out = Vec::new();
        self.moves.remove(&req);
        let Some(command) = self.pending.remove(&req) else {
            return out;
        };
        if let CommandKind::Event { sid, event, .. } = &command.kind
            && event == ClientEvent::JoinRoom.as_str()
            && self.sockets.contains_key(sid)
        {
            self.doubtful.insert(sid.clone(), command.room.clone());
        }
        if let CommandKind::Event { sid, .. } = &command.kind
            && let Some(local) = self.sockets.get_mut(sid)
            && local.busy == Some(req)
        {
            local.busy = None;
            let sid = sid.clone();
            self.start(&sid, deadline, &mut out);
        }
        out
    }

    /// A batch from a room's owner. `deadline` is for the requests it lets start.
    pub fn receive(&mut self, batch: Batch, now: Timestamp, deadline: u64) -> Vec<Action> {
        let mut out = Vec::new();
        let mut resynced = Vec::new();
        if let (Some(super::Slot::Change(v)), Some(BatchReply::Restored { req, ok: true, .. })) =
            (batch.slot, &batch.reply)
            && self.restoring.contains_key(req)
        {
            // This node's member is back in a room that went on without it
            // (or was made again for it): its sequence goes on from here.
            let r = self.sequence.resync(&batch.room, v.saturating_sub(1), now);
            resynced = r.ready;
        }
        for batch in resynced {
            self.apply(batch, true, deadline, &mut out);
        }
        let (ready, stale) = match batch.slot {
            // A room no socket here is in or joining is not sequenced: its batch
            // (sent before the owner heard that the last one left) has no one to
            // reach, and starting a sequence at its version would take a room of
            // that name created later (versions from 1 again) for stale.
            Some(_) if !self.follows(&batch.room) => (Vec::new(), vec![batch]),
            Some(slot) => {
                let room = batch.room.clone();
                let r = self.sequence.offer(&room, slot, batch, now);
                (r.ready, r.stale)
            }
            None => (vec![batch], Vec::new()),
        };
        for batch in ready {
            self.apply(batch, true, deadline, &mut out);
        }
        // Too late for their events, but a request still wants its answer.
        for batch in stale {
            self.apply(batch, false, deadline, &mut out);
        }
        out
    }

    fn apply(&mut self, mut batch: Batch, events: bool, deadline: u64, out: &mut Vec<Action>) {
        match batch.reply.take() {
            Some(BatchReply::Socket {
                req,
                sid,
                event,
                payload,
                emit,
            }) => {
                let answered_late = !self.pending.contains_key(&req);
                if answered_late {
                    // The adapter answered `unavailable` already; a join that took
                    // effect after all is undone, unless the socket is in that
                    // room anyway (a later join) or gone (its disconnect went there).
                    if event == "join_room_success"
                        && self
                            .sockets
                            .get(&sid)
                            .is_some_and(|l| l.room.as_deref() != Some(batch.room.as_str()))
                    {
                        let kind = CommandKind::Disconnect { sid: sid.clone() };
                        out.push(Action::Send(self.command(
                            batch.room.clone(),
                            deadline,
                            kind,
                        )));
                    }
                } else if let Some(command) = self.pending.remove(&req)
                    && let Some(local) = self.sockets.get_mut(&sid)
                {
                    self.moves.remove(&req);
                    let mut left = None;
                    let mut moved_from = None;
                    match event.as_str() {
                        "join_room_success" => {
                            local.member = member_of(&command, &payload);
                            left = local.room.replace(batch.room.clone());
                            if let Some(old) = left.as_ref().filter(|old| **old != batch.room) {
                                moved_from = Some(old.clone());
                            }
                        }
                        "leave_room_success" => {
                            local.member = None;
                            left = local.room.take();
                        }
                        _ => {}
                    }
                    local.busy = None;
                    let relay = (events && !emit && event == "signal")
                        .then(|| self.relay(&sid, &payload, &mut batch))
                        .flatten();
                    out.push(relay.unwrap_or(Action::Reply {
                        sid: sid.clone(),
                        event,
                        payload,
                        emit,
                    }));
                    if let Some(old) = moved_from {
                        let kind = CommandKind::MovedOut { sid: sid.clone() };
                        out.push(Action::Send(self.command(old, deadline, kind)));
                    }
                    if let Some(old) = left {
                        self.release(&old);
                    }
                    self.start(&sid, deadline, out);
                }
            }
            Some(BatchReply::Relay {
                home,
                req,
                sid,
                ack,
            }) => {
                let (room, epoch) = (batch.room.clone(), batch.epoch);
                let answer = |event: &str, payload: Box<RawValue>, emit: bool| Batch {
                    room: room.clone(),
                    epoch,
                    slot: None,
                    reply: Some(BatchReply::Socket {
                        req,
                        sid: sid.clone(),
                        event: event.to_owned(),
                        payload,
                        emit,
                    }),
                    events: Vec::new(),
                };
                if let Some(refused) = refused_signal(&ack, &room) {
                    let refused = answer("signal_error", refused, true);
                    match self.take_signal(&mut batch) {
                        Some((to, signal)) => out.push(Action::RelayFor {
                            to,
                            signal,
                            home,
                            acked: answer("signal", ack, false),
                            refused,
                        }),
                        None => out.push(Action::Forward {
                            node: home,
                            batch: refused,
                        }),
                    }
                }
            }
            Some(BatchReply::Http { req, status, body }) => {
                out.push(Action::Http { req, status, body });
            }
            Some(BatchReply::Moved { req }) => {
                let moves = self.moves.entry(req).or_default();
                *moves += 1;
                if *moves > MAX_MOVES {
                    self.moves.remove(&req);
                    self.unavailable(req, deadline, out);
                } else if let Some(command) = self.pending.get(&req) {
                    out.push(Action::Send(command.clone()));
                }
            }
            Some(BatchReply::Restored { req, sid, ok }) => {
                let ours = self
                    .restoring
                    .remove(&req)
                    .is_some_and(|r| r.room == batch.room && r.sid == sid);
                if ours && !ok && self.room_of(&sid) == Some(batch.room.as_str()) {
                    out.push(Action::Disconnect { sid });
                }
            }
            None => {}
        }
        if !events {
            return;
        }
        for e in batch.events {
            let to: Vec<String> =
                e.to.into_iter()
                    .filter(|s| self.room_of(s) == Some(batch.room.as_str()))
                    .collect();
            if !to.is_empty() {
                out.push(Action::Emit {
                    to,
                    event: e.event,
                    payload: e.payload,
                });
            }
        }
    }

    /// The [`Action::Relay`] for a signal ack whose signal is in the same
    /// batch, for a socket of this node in the room (both on this node): the
    /// signal is taken out of `batch`'s events. `None` when the target is on
    /// another node (the owner's ack then says it was relayed there).
    fn relay(&self, sid: &str, ack: &RawValue, batch: &mut Batch) -> Option<Action> {
        let refused = refused_signal(ack, &batch.room)?;
        let (to, signal) = self.take_signal(batch)?;
        Some(Action::Relay {
            sid: sid.to_owned(),
            to,
            signal,
            ack: ack.to_owned(),
            refused,
        })
    }

    /// Takes the `signal` for one socket of this node in `batch`'s room out
    /// of its events: the target and the payload.
    fn take_signal(&self, batch: &mut Batch) -> Option<(String, Box<RawValue>)> {
        let at = batch.events.iter().position(|e| {
            e.event == "signal"
                && e.to.len() == 1
                && self.room_of(&e.to[0]) == Some(batch.room.as_str())
        })?;
        let event = batch.events.remove(at);
        Some((event.to.into_iter().next()?, event.payload))
    }

    /// A socket closed: its room's owner, and the owner of a room it was
    /// joining, are told (the registry's disconnect is a no-op where it is
    /// not a member).
    pub fn disconnect(&mut self, sid: &str, deadline: u64) -> Vec<Action> {
        self.close(sid, deadline, |sid| CommandKind::Disconnect { sid })
    }

    /// Socket `sid` is dropped by this node because it could not keep up:
    /// as [`Home::disconnect`], but it leaves its room with the reason
    /// `dropped`, as on one node.
    pub fn dropped(&mut self, sid: &str, deadline: u64) -> Vec<Action> {
        self.close(sid, deadline, |sid| CommandKind::Dropped { sid })
    }

    fn close(
        &mut self,
        sid: &str,
        deadline: u64,
        departure: fn(String) -> CommandKind,
    ) -> Vec<Action> {
        let Some(local) = self.sockets.remove(sid) else {
            return Vec::new();
        };
        let mut rooms: Vec<String> = local.room.into_iter().collect();
        if let Some(room) = self.doubtful.remove(sid)
            && !rooms.contains(&room)
        {
            rooms.push(room);
        }
        if let Some(req) = local.busy
            && let Some(command) = self.pending.remove(&req)
            && !rooms.contains(&command.room)
        {
            rooms.push(command.room);
        }
        let mut out = Vec::new();
        for room in rooms {
            let kind = departure(sid.to_owned());
            out.push(Action::Send(self.command(room.clone(), deadline, kind)));
            self.release(&room);
        }
        out
    }

    /// Gives up waiting for versions that stayed missing past the gap limits
    /// at `now` (they can only have been lost with Redis's data): each such
    /// room's sequence goes on from its first held batch, which is released
    /// with what follows it. Full-mode members get the whole list with the
    /// next change; delta members see the version jump and ask for the list.
    /// `deadline` is for the requests this lets start.
    pub fn skip_gaps(&mut self, now: Timestamp, deadline: u64) -> Vec<Action> {
        let mut out = Vec::new();
        for gap in self.sequence.gaps(now) {
            let Some(first) = self.sequence.first_held(&gap.key) else {
                continue;
            };
            let r = self.sequence.resync(&gap.key, first.saturating_sub(1), now);
            for batch in r.ready {
                self.apply(batch, true, deadline, &mut out);
            }
            for batch in r.stale {
                self.apply(batch, false, deadline, &mut out);
            }
        }
        out
    }

    /// This node's socket members that may be checked against their rooms'
    /// listings, as `(sid, room, peer_id)`: in a room, with no request in
    /// flight or queued (its answer may still move it) and no `restore`
    /// outstanding. A `restore` past its deadline at `now` counts as lost.
    pub fn members(&mut self, now: u64) -> Vec<(String, String, String)> {
        self.restoring.retain(|_, r| r.deadline >= now);
        let restoring: Vec<&str> = self.restoring.values().map(|r| r.sid.as_str()).collect();
        let mut out: Vec<(String, String, String)> = self
            .sockets
            .iter()
            .filter(|(sid, l)| {
                l.busy.is_none() && l.queue.is_empty() && !restoring.contains(&sid.as_str())
            })
            .filter_map(|(sid, l)| {
                let room = l.room.clone()?;
                let (peer, _) = l.member.as_ref()?;
                Some((sid.clone(), room, peer.peer_id.clone()))
            })
            .collect();
        out.sort();
        out
    }

    /// The joins answered `unavailable` here that the owner may have applied
    /// after all, as `(sid, room)`: to check against the rooms' listings once
    /// Redis lost its data (their answers may have been lost with it).
    pub fn doubtful(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .doubtful
            .iter()
            .map(|(sid, room)| (sid.clone(), room.clone()))
            .collect();
        out.sort();
        out
    }

    /// A doubtful join of `sid` into `room` was checked: `listed` if the room
    /// lists the socket. Listed while the socket is not in that room here, it
    /// is undone (the owner is told the socket left).
    pub fn checked(
        &mut self,
        sid: &str,
        room: &str,
        listed: bool,
        deadline: u64,
    ) -> Option<Action> {
        if self.doubtful.get(sid).is_none_or(|r| r != room) {
            return None;
        }
        self.doubtful.remove(sid);
        if !listed || self.room_of(sid) == Some(room) {
            return None;
        }
        let kind = CommandKind::Disconnect {
            sid: sid.to_owned(),
        };
        Some(Action::Send(self.command(room.to_owned(), deadline, kind)))
    }

    /// Whether a `restore` is outstanding.
    pub fn restoring(&self) -> bool {
        !self.restoring.is_empty()
    }

    /// Asks the owner of socket `sid`'s room to put it back (its room lost
    /// it: Redis restarted empty after the room's owner died), above the last
    /// version this node delivered in that room. `None` if the socket is in
    /// no room or its membership is unknown.
    pub fn restore(&mut self, sid: &str, deadline: u64) -> Option<Action> {
        let local = self.sockets.get(sid)?;
        let room = local.room.clone()?;
        let (peer, mode) = local.member.clone()?;
        let floor = self
            .sequence
            .expected(&room)
            .map_or(0, |v| v.saturating_sub(1));
        let kind = CommandKind::Restore {
            sid: sid.to_owned(),
            peer,
            mode,
            floor,
        };
        let command = self.command(room.clone(), deadline, kind);
        self.restoring.insert(
            command.req,
            Restoring {
                sid: sid.to_owned(),
                room,
                deadline,
            },
        );
        Some(Action::Send(command))
    }

    /// A command for `room`'s owner, with the next request number.
    fn command(&mut self, room: String, deadline: u64, kind: CommandKind) -> Command {
        let req = self.next_req;
        self.next_req += 1;
        Command {
            room,
            home: self.node.clone(),
            req,
            deadline,
            kind,
            grant: None,
        }
    }

    /// Whether a socket here is in `room` or has a request in flight for it.
    fn follows(&self, room: &str) -> bool {
        self.sockets
            .values()
            .any(|l| l.room.as_deref() == Some(room))
            || self.pending.values().any(|c| c.room == room)
    }

    /// Stops sequencing a room once no socket here is in it or joining it: a
    /// room of that name created later starts its versions again at 1.
    fn release(&mut self, room: &str) {
        if !self.follows(room) {
            self.sequence.forget(&room.to_owned());
        }
    }
}

/// Who a socket is in the room its join answered, and how it hears of
/// changes: its peer from the answer's list, its mode from the request.
fn member_of(join: &Command, answer: &RawValue) -> Option<(Peer, UpdateMode)> {
    let CommandKind::Event { payload, .. } = &join.kind else {
        return None;
    };
    let mode = parse_join_text(payload.as_deref()).ok()?.updates;
    let success: JoinSuccess = serde_json::from_str(answer.get()).ok()?;
    let peer = success
        .peers
        .into_iter()
        .find(|p| p.peer_id == success.peer_id)?;
    Some((peer, mode))
}

/// The sender's answer to a signal (whose ack is `ack`, `{to}`) that its
/// target could not take, as the registry answers a signal to a peer no
/// longer in the room.
fn refused_signal(ack: &RawValue, room: &str) -> Option<Box<RawValue>> {
    let to = serde_json::from_str::<SignalAck>(ack.get()).ok()?.to;
    let body = Error::PeerNotFound {
        peer_id: to,
        room_name: room.to_owned(),
    }
    .body(None);
    serde_json::value::to_raw_value(&body).ok()
}

#[cfg(test)]
mod tests;

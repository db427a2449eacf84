//! The room registry: who is in which room, and what everyone must be told.
//!
//! A plain state machine in the str0m style. Every command takes the caller's
//! connection id (any `C` the adapter likes) and, where time matters, `now`;
//! it returns an [`Outcome`]: the reply to the requester and the deliveries to
//! others, in the order they must be sent. Nothing here does I/O, reads a
//! clock or locks: the server owns sockets, timers and the one lock around it.
//!
//! Connections are opened with [`Registry::connect`] and closed with
//! [`Registry::disconnect`]; a closed connection's commands change nothing.
//! (Transports may hand over a dead connection's last queued packets after
//! its close was handled; without this rule a `join_room` among them would
//! leave a ghost peer that no disconnect ever removes.)
//!
//! Invariants (property-tested in `tests`): no empty room exists; no room is
//! over capacity; a connection is in at most one room, and only while open;
//! peer ids are unique per room; a room's version grows by exactly one per
//! change of its list, and each change is announced to every member exactly
//! once and recorded once as a [`RoomChange`].

mod changes;

pub use changes::{ChangeKind, LeaveReason, RoomChange};

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::Hash;

use serde_json::Value;
use serde_json::value::RawValue;

use crate::access::{Grant, Turn, check};
use crate::error::{Error, ErrorBody};
use crate::protocol::{
    Event, EventName, HttpJoinSuccess, IceServer, JoinSuccess, LeaveSuccess, Payload, Peer,
    PeerJoined, PeerLeft, PeerList, RoomInfo, SignalAck, SignalDelivery, UpdateMode,
};
use crate::time::Timestamp;
use crate::validate::{
    JoinRequest, Rejection, compact_json_len, parse_http_join, parse_join_text, parse_signal,
};

/// The registry's limits and settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Peers per room (sockets and HTTP peers together).
    pub max_peers: usize,
    /// The most bytes a `signal`'s data may take, serialized as compact JSON.
    pub max_signal_bytes: usize,
    /// How long an HTTP peer's lease lasts, in milliseconds.
    pub http_peer_ttl_ms: u64,
    /// ICE servers handed to every joiner.
    pub ice_servers: Vec<IceServer>,
    /// TURN credentials minted for every joiner, after `ice_servers`.
    pub turn: Option<Turn>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_peers: 100,
            max_signal_bytes: 64 * 1024,
            http_peer_ttl_ms: 60_000,
            ice_servers: Vec::new(),
            turn: None,
        }
    }
}

/// The events a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientEvent {
    /// `join_room`
    JoinRoom,
    /// `leave_room`
    LeaveRoom,
    /// `get_peers`
    GetPeers,
    /// `signal`
    Signal,
}

impl ClientEvent {
    /// The event of that wire name; `None` for events signalroom ignores.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "join_room" => Some(Self::JoinRoom),
            "leave_room" => Some(Self::LeaveRoom),
            "get_peers" => Some(Self::GetPeers),
            "signal" => Some(Self::Signal),
            _ => None,
        }
    }

    /// The event its failures are reported with.
    pub fn error_event(self) -> EventName {
        match self {
            Self::JoinRoom => EventName::JoinRoomError,
            Self::LeaveRoom => EventName::LeaveRoomError,
            Self::GetPeers => EventName::GetPeersError,
            Self::Signal => EventName::SignalError,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JoinRoom => "join_room",
            Self::LeaveRoom => "leave_room",
            Self::GetPeers => "get_peers",
            Self::Signal => "signal",
        }
    }
}

/// The answer to the requester: emitted as an event when `emit` is set, and
/// always the acknowledgement payload when the client asked for one.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The event and payload.
    pub event: Event,
    /// Whether the event is emitted (a relayed `signal` is only acked).
    pub emit: bool,
}

impl Reply {
    fn emitted(name: EventName, payload: Payload) -> Self {
        Self {
            event: Event::new(name, payload),
            emit: true,
        }
    }

    fn error(name: EventName, body: ErrorBody) -> Self {
        Self::emitted(name, Payload::Error(body))
    }

    /// `event`'s `*_error` for a request refused before its payload was read
    /// (a rate limit), so with no `room_name`.
    pub fn refused(event: ClientEvent, error: &Error) -> Self {
        Self::error(event.error_event(), error.body(None))
    }

    /// The error this reply reports, if it is one.
    pub fn error_body(&self) -> Option<&ErrorBody> {
        match &self.event.payload {
            Payload::Error(body) => Some(body),
            _ => None,
        }
    }
}

/// One event for a set of connections.
#[derive(Debug, Clone)]
pub struct Delivery<C> {
    /// The recipients.
    pub to: Vec<C>,
    /// What they get.
    pub event: Event,
}

/// What a command produced: send `reply` (if any) first, then `deliveries` in order.
#[derive(Debug, Clone)]
pub struct Outcome<C> {
    /// The answer to the requester.
    pub reply: Option<Reply>,
    /// Events for others (and, after the reply, for the requester), in order.
    pub deliveries: Vec<Delivery<C>>,
}

impl<C> Outcome<C> {
    /// Nothing to send: the command came from a closed connection.
    fn nothing() -> Self {
        Self {
            reply: None,
            deliveries: Vec::new(),
        }
    }

    fn reply(reply: Reply, deliveries: Vec<Delivery<C>>) -> Self {
        Self {
            reply: Some(reply),
            deliveries,
        }
    }
}

/// Who holds a room entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Holder<C> {
    /// A Socket.IO connection.
    Socket { conn: C, mode: UpdateMode },
    /// A peer joined over REST, until its lease runs out.
    Http { expires_at: Timestamp },
}

#[derive(Debug, Clone)]
struct Member<C> {
    peer: Peer,
    holder: Holder<C>,
}

#[derive(Debug, Clone)]
struct Room<C> {
    name: String,
    created_at: String,
    version: u64,
    /// Oldest first.
    members: Vec<Member<C>>,
}

/// What changed in a room, for announcing it.
enum Change<'a> {
    Joined(&'a Peer),
    Left(&'a str),
}

impl<C: Clone + PartialEq> Room<C> {
    fn peers(&self) -> Vec<Peer> {
        self.members.iter().map(|m| m.peer.clone()).collect()
    }

    fn position(&self, peer_id: &str) -> Option<usize> {
        self.members.iter().position(|m| m.peer.peer_id == peer_id)
    }

    fn list(&self) -> PeerList {
        PeerList {
            room_name: self.name.clone(),
            peers: self.peers(),
            total_peers: self.members.len(),
            version: self.version,
        }
    }

    fn info(&self, max_peers: usize) -> RoomInfo {
        RoomInfo {
            name: self.name.clone(),
            peer_count: self.members.len(),
            max_peers,
            created_at: self.created_at.clone(),
            version: self.version,
            peers: self.peers(),
        }
    }

    /// Gives entry `i` a new username and announces it.
    fn rename(&mut self, i: usize, username: &str, quiet: Option<&C>) -> Vec<Delivery<C>> {
        self.members[i].peer.username = username.to_owned();
        let peer = self.members[i].peer.clone();
        self.announce(Change::Joined(&peer), quiet)
    }

    /// Counts one change and tells every connected member of it; a delta
    /// member `quiet` (the one that caused it and hears of it in its reply) is skipped.
    fn announce(&mut self, change: Change<'_>, quiet: Option<&C>) -> Vec<Delivery<C>> {
        self.version += 1;
        let mut full = Vec::new();
        let mut delta = Vec::new();
        for m in &self.members {
            if let Holder::Socket { conn, mode } = &m.holder {
                match mode {
                    UpdateMode::Full => full.push(conn.clone()),
                    UpdateMode::Delta if Some(conn) != quiet => delta.push(conn.clone()),
                    UpdateMode::Delta => {}
                }
            }
        }
        let mut out = Vec::with_capacity(2);
        if !full.is_empty() {
            out.push(Delivery {
                to: full,
                event: Event::new(EventName::PeerListUpdated, Payload::PeerList(self.list())),
            });
        }
        if !delta.is_empty() {
            let total_peers = self.members.len();
            let event = match change {
                Change::Joined(peer) => Event::new(
                    EventName::PeerJoined,
                    Payload::PeerJoined(PeerJoined {
                        room_name: self.name.clone(),
                        peer: peer.clone(),
                        total_peers,
                        version: self.version,
                    }),
                ),
                Change::Left(peer_id) => Event::new(
                    EventName::PeerLeft,
                    Payload::PeerLeft(PeerLeft {
                        room_name: self.name.clone(),
                        peer_id: peer_id.to_owned(),
                        total_peers,
                        version: self.version,
                    }),
                ),
            };
            out.push(Delivery { to: delta, event });
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Session {
    room_name: String,
    peer_id: String,
}

/// Every room, every connection's place, and every HTTP peer's lease.
#[derive(Debug, Clone)]
pub struct Registry<C> {
    config: Config,
    rooms: BTreeMap<String, Room<C>>,
    sessions: HashMap<C, Session>,
    /// (expiry, room, peer_id) of every HTTP peer.
    leases: BTreeSet<(Timestamp, String, String)>,
    /// The access-token claims of connections that presented one.
    grants: HashMap<C, Grant>,
    /// Connections that are open: only these may join.
    open: HashSet<C>,
    /// Changes not yet taken by [`Registry::take_changes`].
    changes: Vec<RoomChange>,
}

impl<C: Clone + Eq + Hash> Registry<C> {
    /// An empty registry.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            rooms: BTreeMap::new(),
            sessions: HashMap::new(),
            leases: BTreeSet::new(),
            grants: HashMap::new(),
            open: HashSet::new(),
            changes: Vec::new(),
        }
    }

    /// Records the claims of the token `conn` connected with: every later
    /// join of `conn` is checked against them. Forgotten when it closes.
    pub fn grant(&mut self, conn: &C, grant: Grant) {
        self.grants.insert(conn.clone(), grant);
    }

    /// The claims recorded for `conn` by [`Registry::grant`], if any (a
    /// cluster node carries them to the owners of the rooms it joins).
    pub fn grant_of(&self, conn: &C) -> Option<&Grant> {
        self.grants.get(conn)
    }

    /// A connection opened: from now on its commands are handled.
    pub fn connect(&mut self, conn: &C) {
        self.open.insert(conn.clone());
    }

    /// Whether `conn` is open (connected and not yet disconnected or dropped).
    pub fn is_open(&self, conn: &C) -> bool {
        self.open.contains(conn)
    }

    /// The changes made since the last call, oldest first. The adapter drains
    /// them after every command (they accumulate otherwise).
    pub fn take_changes(&mut self) -> Vec<RoomChange> {
        std::mem::take(&mut self.changes)
    }

    /// The settings it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Handles one client event. `payload` is the event's first argument as the
    /// client's JSON text (`None` when it sent none); `binary` says the packet
    /// carried binary attachments.
    pub fn handle(
        &mut self,
        conn: &C,
        event: ClientEvent,
        payload: Option<&RawValue>,
        binary: bool,
        now: Timestamp,
    ) -> Outcome<C> {
        if !self.is_open(conn) {
            return Outcome::nothing();
        }
        match event {
            ClientEvent::JoinRoom => {
                let request = parse_join_text(payload);
                let request = match request {
                    // Binary attachments are refused, naming the room when the
                    // text part named a valid one, as every join error does.
                    _ if binary => Err(Rejection {
                        error: Error::BinaryAttachments,
                        room_name: match request {
                            Ok(r) => Some(r.room_name),
                            Err(r) => r.room_name,
                        },
                    }),
                    request => request,
                };
                match request {
                    Ok(request) => self.join(conn, request, now),
                    Err(r) => Outcome::reply(
                        Reply::error(
                            EventName::JoinRoomError,
                            r.error.body(r.room_name.as_deref()),
                        ),
                        Vec::new(),
                    ),
                }
            }
            ClientEvent::LeaveRoom => self.leave(conn),
            ClientEvent::GetPeers => self.get_peers(conn),
            ClientEvent::Signal => {
                let parsed = if binary {
                    Err(Error::BinaryAttachments)
                } else {
                    parse_signal(payload)
                };
                match parsed.and_then(|s| self.signal(conn, &s.to, s.data)) {
                    Ok(outcome) => outcome,
                    Err(e) => Outcome::reply(
                        Reply::error(EventName::SignalError, e.body(None)),
                        Vec::new(),
                    ),
                }
            }
        }
    }

    /// Joins `conn` to a room, leaving any other room first. A closed
    /// connection gets nothing.
    pub fn join(&mut self, conn: &C, req: JoinRequest, now: Timestamp) -> Outcome<C> {
        if !self.is_open(conn) {
            return Outcome::nothing();
        }
        let granted = check(self.grants.get(conn), |g| {
            g.allows_join(&req.room_name, &req.peer_id, now)
        });
        if let Err(error) = granted.and_then(|()| self.check_join(conn, &req)) {
            let body = error.body(Some(&req.room_name));
            return Outcome::reply(Reply::error(EventName::JoinRoomError, body), Vec::new());
        }
        let mut deliveries = Vec::new();
        match self.sessions.get(conn).cloned() {
            Some(s) if s.room_name == req.room_name && s.peer_id == req.peer_id => {
                let room = self
                    .rooms
                    .get_mut(&req.room_name)
                    .expect("a session's room exists");
                let i = room
                    .position(&req.peer_id)
                    .expect("a session's entry exists");
                room.members[i].holder = Holder::Socket {
                    conn: conn.clone(),
                    mode: req.updates,
                };
                deliveries = self.rename(&req.room_name, i, &req.username, Some(conn));
                let reply = self.join_success(&req, now);
                return Outcome::reply(reply, deliveries);
            }
            Some(s) => {
                let reason = if s.room_name == req.room_name {
                    LeaveReason::Left
                } else {
                    LeaveReason::Moved
                };
                deliveries = self.remove_conn(conn, reason);
            }
            None => {}
        }
        let holder = Holder::Socket {
            conn: conn.clone(),
            mode: req.updates,
        };
        deliveries.extend(self.admit(&req, holder, now, Some(conn)));
        self.sessions.insert(
            conn.clone(),
            Session {
                room_name: req.room_name.clone(),
                peer_id: req.peer_id.clone(),
            },
        );
        let reply = self.join_success(&req, now);
        Outcome::reply(reply, deliveries)
    }

    /// Adds a new entry at the end of its room (creating the room at version
    /// 0 if needed) and announces it.
    fn admit(
        &mut self,
        req: &JoinRequest,
        holder: Holder<C>,
        now: Timestamp,
        quiet: Option<&C>,
    ) -> Vec<Delivery<C>> {
        let room = self
            .rooms
            .entry(req.room_name.clone())
            .or_insert_with(|| Room {
                name: req.room_name.clone(),
                created_at: now.to_rfc3339(),
                version: 0,
                members: Vec::new(),
            });
        if room.members.is_empty() {
            self.changes.push(RoomChange {
                room_name: req.room_name.clone(),
                version: 1,
                kind: ChangeKind::RoomStarted,
            });
        }
        let peer = Peer {
            peer_id: req.peer_id.clone(),
            username: req.username.clone(),
            joined_at: now.to_rfc3339(),
        };
        room.members.push(Member {
            peer: peer.clone(),
            holder,
        });
        let deliveries = room.announce(Change::Joined(&peer), quiet);
        self.changes.push(RoomChange {
            room_name: req.room_name.clone(),
            version: room.version,
            kind: ChangeKind::PeerJoined(peer),
        });
        deliveries
    }

    /// Gives entry `i` of a room a new username, announces and records it;
    /// nothing if unchanged.
    fn rename(
        &mut self,
        room_name: &str,
        i: usize,
        username: &str,
        quiet: Option<&C>,
    ) -> Vec<Delivery<C>> {
        let Some(room) = self.rooms.get_mut(room_name) else {
            return Vec::new();
        };
        if room.members[i].peer.username == username {
            return Vec::new();
        }
        let deliveries = room.rename(i, username, quiet);
        self.changes.push(RoomChange {
            room_name: room.name.clone(),
            version: room.version,
            kind: ChangeKind::PeerUpdated(room.members[i].peer.clone()),
        });
        deliveries
    }

    fn check_join(&self, conn: &C, req: &JoinRequest) -> Result<(), Error> {
        let Some(room) = self.rooms.get(&req.room_name) else {
            return Ok(());
        };
        let session = self.sessions.get(conn);
        let member_here = session.is_some_and(|s| s.room_name == req.room_name);
        if !member_here && room.members.len() >= self.config.max_peers {
            return Err(Error::RoomFull {
                room_name: req.room_name.clone(),
                max: self.config.max_peers,
            });
        }
        if let Some(i) = room.position(&req.peer_id) {
            let mine =
                matches!(&room.members[i].holder, Holder::Socket { conn: c, .. } if c == conn);
            if !mine {
                return Err(Error::PeerIdTaken {
                    peer_id: req.peer_id.clone(),
                    room_name: req.room_name.clone(),
                });
            }
        }
        Ok(())
    }

    /// The ICE servers for `peer_id` joining at `now`: the configured list,
    /// then its own TURN credentials when TURN is on.
    fn ice_servers(&self, peer_id: &str, now: Timestamp) -> Vec<IceServer> {
        let mut servers = self.config.ice_servers.clone();
        if let Some(turn) = &self.config.turn {
            servers.push(turn.ice_server(peer_id, now));
        }
        servers
    }

    fn join_success(&self, req: &JoinRequest, now: Timestamp) -> Reply {
        let room = &self.rooms[&req.room_name];
        Reply::emitted(
            EventName::JoinRoomSuccess,
            Payload::JoinSuccess(JoinSuccess {
                room_name: room.name.clone(),
                peer_id: req.peer_id.clone(),
                peers: room.peers(),
                total_peers: room.members.len(),
                max_peers: self.config.max_peers,
                version: room.version,
                ice_servers: self.ice_servers(&req.peer_id, now),
            }),
        )
    }

    /// Takes `conn` out of its room: `leave_room`.
    pub fn leave(&mut self, conn: &C) -> Outcome<C> {
        let Some(session) = self.sessions.get(conn).cloned() else {
            let body = Error::NotInRoom.body(None);
            return Outcome::reply(Reply::error(EventName::LeaveRoomError, body), Vec::new());
        };
        let deliveries = self.remove_conn(conn, LeaveReason::Left);
        let reply = Reply::emitted(
            EventName::LeaveRoomSuccess,
            Payload::LeaveSuccess(LeaveSuccess {
                room_name: session.room_name,
                peer_id: session.peer_id,
            }),
        );
        Outcome::reply(reply, deliveries)
    }

    /// A connection is gone: it is closed, and removed from its room as
    /// `leave_room` would, telling only the others.
    pub fn disconnect(&mut self, conn: &C) -> Vec<Delivery<C>> {
        self.close(conn, LeaveReason::Disconnected)
    }

    /// A connection that cannot keep up (its queue is full) is dropped: closed
    /// at once, like [`Registry::disconnect`], with the reason `dropped`.
    pub fn drop_connection(&mut self, conn: &C) -> Vec<Delivery<C>> {
        self.close(conn, LeaveReason::Dropped)
    }

    fn close(&mut self, conn: &C, reason: LeaveReason) -> Vec<Delivery<C>> {
        self.open.remove(conn);
        self.grants.remove(conn);
        let deliveries = self.remove_conn(conn, reason);
        if self.open.is_empty() {
            // Deletion markers would make maps that are refilled and emptied over
            // and over grow to twice their peak; emptied ones give their tables back.
            self.open.shrink_to_fit();
            self.grants.shrink_to_fit();
            self.sessions.shrink_to_fit();
        }
        deliveries
    }

    fn remove_conn(&mut self, conn: &C, reason: LeaveReason) -> Vec<Delivery<C>> {
        let Some(session) = self.sessions.remove(conn) else {
            return Vec::new();
        };
        self.remove_member(&session.room_name, &session.peer_id, reason)
    }

    /// Removes an entry, announces and records it; deletes the room when it empties.
    fn remove_member(
        &mut self,
        room_name: &str,
        peer_id: &str,
        reason: LeaveReason,
    ) -> Vec<Delivery<C>> {
        let Some(room) = self.rooms.get_mut(room_name) else {
            return Vec::new();
        };
        let Some(i) = room.position(peer_id) else {
            return Vec::new();
        };
        let member = room.members.remove(i);
        if let Holder::Http { expires_at } = member.holder {
            self.leases
                .remove(&(expires_at, room_name.to_owned(), peer_id.to_owned()));
        }
        let left = |version| RoomChange {
            room_name: room_name.to_owned(),
            version,
            kind: ChangeKind::PeerLeft {
                peer_id: peer_id.to_owned(),
                reason,
            },
        };
        if room.members.is_empty() {
            // Nobody is left to tell, but the change still counts.
            let version = room.version + 1;
            self.rooms.remove(room_name);
            self.changes.push(left(version));
            self.changes.push(RoomChange {
                room_name: room_name.to_owned(),
                version,
                kind: ChangeKind::RoomFinished,
            });
            return Vec::new();
        }
        let deliveries = room.announce(Change::Left(peer_id), None);
        self.changes.push(left(room.version));
        deliveries
    }

    /// `get_peers`: the caller's room as it is now.
    pub fn get_peers(&self, conn: &C) -> Outcome<C> {
        let reply = match self.sessions.get(conn) {
            Some(s) => Reply::emitted(
                EventName::PeerList,
                Payload::PeerList(self.rooms[&s.room_name].list()),
            ),
            None => Reply::error(EventName::GetPeersError, Error::NotInRoom.body(None)),
        };
        Outcome::reply(reply, Vec::new())
    }

    /// Relays `data` from `conn` to the peer `to` of its room.
    pub fn signal(&self, conn: &C, to: &str, data: &RawValue) -> Result<Outcome<C>, Error> {
        let session = self.sessions.get(conn).ok_or(Error::NotInRoom)?;
        if compact_json_len(data) > self.config.max_signal_bytes {
            return Err(Error::SignalTooLarge {
                max: self.config.max_signal_bytes,
            });
        }
        let room = &self.rooms[&session.room_name];
        let target = room
            .position(to)
            .map(|i| &room.members[i].holder)
            .and_then(|h| match h {
                Holder::Socket { conn, .. } => Some(conn.clone()),
                Holder::Http { .. } => None,
            })
            .ok_or_else(|| Error::PeerNotFound {
                peer_id: to.to_owned(),
                room_name: room.name.clone(),
            })?;
        let delivery = Delivery {
            to: vec![target],
            event: Event::new(
                EventName::Signal,
                Payload::Signal(SignalDelivery {
                    room_name: room.name.clone(),
                    from: session.peer_id.clone(),
                    data: data.to_owned(),
                }),
            ),
        };
        let ack = Reply {
            event: Event::new(
                EventName::Signal,
                Payload::SignalAck(SignalAck { to: to.to_owned() }),
            ),
            emit: false,
        };
        Ok(Outcome::reply(ack, vec![delivery]))
    }

    /// `POST /api/webrtc/rooms/{room}/join`: joins or renews an HTTP peer.
    pub fn http_join(
        &mut self,
        path_room: &str,
        body: &Value,
        now: Timestamp,
    ) -> (Result<HttpJoinSuccess, Rejection>, Vec<Delivery<C>>) {
        self.http_join_granted(path_room, body, None, now)
    }

    /// [`Self::http_join`] for a request that carried an access token:
    /// checked against `grant` after the body, before capacity.
    pub fn http_join_granted(
        &mut self,
        path_room: &str,
        body: &Value,
        grant: Option<&Grant>,
        now: Timestamp,
    ) -> (Result<HttpJoinSuccess, Rejection>, Vec<Delivery<C>>) {
        let req = match parse_http_join(path_room, body) {
            Ok(req) => req,
            Err(r) => return (Err(r), Vec::new()),
        };
        let reject = |error| {
            Err(Rejection {
                error,
                room_name: Some(req.room_name.clone()),
            })
        };
        if let Err(error) = check(grant, |g| g.allows_join(&req.room_name, &req.peer_id, now)) {
            return (reject(error), Vec::new());
        }
        let expires_at = now.plus_ms(self.config.http_peer_ttl_ms);
        let existing = self.rooms.get(&req.room_name).and_then(|room| {
            room.position(&req.peer_id)
                .map(|i| room.members[i].holder.clone())
        });
        let deliveries = match existing {
            Some(Holder::Http { expires_at: old }) => {
                let room = self.rooms.get_mut(&req.room_name).expect("checked above");
                let i = room.position(&req.peer_id).expect("checked above");
                room.members[i].holder = Holder::Http { expires_at };
                self.leases
                    .remove(&(old, req.room_name.clone(), req.peer_id.clone()));
                self.rename(&req.room_name, i, &req.username, None)
            }
            holder => {
                let count = self
                    .rooms
                    .get(&req.room_name)
                    .map_or(0, |r| r.members.len());
                if count >= self.config.max_peers {
                    return (
                        reject(Error::RoomFull {
                            room_name: req.room_name.clone(),
                            max: self.config.max_peers,
                        }),
                        Vec::new(),
                    );
                }
                if holder.is_some() {
                    return (
                        reject(Error::PeerIdTaken {
                            peer_id: req.peer_id.clone(),
                            room_name: req.room_name.clone(),
                        }),
                        Vec::new(),
                    );
                }
                self.admit(&req, Holder::Http { expires_at }, now, None)
            }
        };
        self.leases
            .insert((expires_at, req.room_name.clone(), req.peer_id.clone()));
        let room = &self.rooms[&req.room_name];
        let reply = HttpJoinSuccess {
            room_name: room.name.clone(),
            peer_id: req.peer_id.clone(),
            peers: room.peers(),
            total_peers: room.members.len(),
            version: room.version,
            expires_at: expires_at.to_rfc3339(),
            ice_servers: self.ice_servers(&req.peer_id, now),
        };
        (Ok(reply), deliveries)
    }

    /// `DELETE /api/webrtc/rooms/{room}/peers/{peer_id}`: removes an HTTP peer.
    pub fn http_leave(
        &mut self,
        room_name: &str,
        peer_id: &str,
    ) -> Result<Vec<Delivery<C>>, Error> {
        self.http_leave_granted(room_name, peer_id, None)
    }

    /// [`Self::http_leave`] for a request that carried an access token:
    /// `forbidden` outside its room or `sub`, before `peer_not_found`.
    pub fn http_leave_granted(
        &mut self,
        room_name: &str,
        peer_id: &str,
        grant: Option<&Grant>,
    ) -> Result<Vec<Delivery<C>>, Error> {
        check(grant, |g| g.allows_delete(room_name, peer_id))?;
        let is_http = self.rooms.get(room_name).is_some_and(|room| {
            room.position(peer_id)
                .is_some_and(|i| matches!(room.members[i].holder, Holder::Http { .. }))
        });
        if !is_http {
            return Err(Error::PeerNotFound {
                peer_id: peer_id.to_owned(),
                room_name: room_name.to_owned(),
            });
        }
        Ok(self.remove_member(room_name, peer_id, LeaveReason::Deleted))
    }

    /// Removes every HTTP peer whose lease ran out at or before `now`.
    pub fn expire(&mut self, now: Timestamp) -> Vec<Delivery<C>> {
        let mut deliveries = Vec::new();
        while let Some((at, room, peer)) = self.leases.first().cloned() {
            if at > now {
                break;
            }
            self.leases.pop_first();
            deliveries.extend(self.remove_member(&room, &peer, LeaveReason::Expired));
        }
        deliveries
    }

    /// When the next lease runs out, for the caller's timer.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.leases.first().map(|(at, _, _)| *at)
    }

    /// Every room, keyed by name.
    pub fn rooms(&self) -> BTreeMap<String, RoomInfo> {
        self.rooms
            .iter()
            .map(|(name, room)| (name.clone(), room.info(self.config.max_peers)))
            .collect()
    }

    /// One room.
    pub fn room(&self, name: &str) -> Result<RoomInfo, Error> {
        self.rooms
            .get(name)
            .map(|room| room.info(self.config.max_peers))
            .ok_or_else(|| Error::RoomNotFound {
                room_name: name.to_owned(),
            })
    }

    /// How many rooms exist.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// How many peers (sockets and HTTP) are in rooms.
    pub fn peer_count(&self) -> usize {
        self.rooms.values().map(|r| r.members.len()).sum()
    }

    /// The room and peer id of a connection, if it is in a room.
    pub fn membership(&self, conn: &C) -> Option<(&str, &str)> {
        self.sessions
            .get(conn)
            .map(|s| (s.room_name.as_str(), s.peer_id.as_str()))
    }
}

#[cfg(any(test, feature = "invariants"))]
#[doc(hidden)]
pub mod invariants;
mod restore;
mod snapshot;
pub use restore::RestoreError;
pub use snapshot::{HolderSnapshot, MemberSnapshot, RoomSnapshot, SnapshotError};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod access_tests;

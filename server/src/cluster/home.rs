//! The home side of a node: its own sockets, whose rooms are owned anywhere.
//!
//! Every decision is the core's [`Home`]: which room a request is for, one
//! request in flight per socket with the rest queued behind it, the socket's
//! current room, batches put in version order and filtered to the sockets in
//! their room. This module carries its [`Action`]s out: commands go, in the
//! order they were decided, to the sender task ([`super::sender`]); answers
//! and events are emitted to the local sockets, each packet encoded once and
//! shared by its recipients; a recipient whose queue is full is disconnected
//! (its departure then reaches its room's owner). A `signal` is acked only
//! once it is queued for its target, as on one node: here when sender and
//! target are both here (`Action::Relay`); for a sender on another node, this
//! node (the target's) sends the answer to the sender's node
//! (`Action::RelayFor`, through [`super::sender::forward`]). A request
//! with no answer within [`ANSWER_TIMEOUT`] is answered `unavailable` here and
//! the socket's next request may start. All of it runs under one lock, so the
//! order decided is the order emitted. REST joins and removals of HTTP peers
//! are sent to the room's owner the same way and wait for its answer.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::value::RawValue;
use signalroom_core::cluster::wire::{Batch, Command, CommandKind};
use signalroom_core::cluster::{Action, Home};
use signalroom_core::protocol::{Event, Payload};
use signalroom_core::{ClientEvent, Config, Error, Grant, Reply};
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::{SendError, SocketError};
use tokio::sync::{mpsc, oneshot};

use super::clock::now;
use crate::hub::encode;
use crate::metrics;

/// How long a socket's request waits for its owner's answer before it is
/// answered `unavailable` (the contract's 2 s).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a command stays valid at the owner after it was sent: past it the
/// home node may have answered `unavailable`, so the owner must not apply it.
pub const COMMAND_TTL_MS: u64 = 1_500;
/// A room's sequence reports a gap after this many held batches...
const MAX_HELD: usize = 256;
/// ... or after waiting this long for a missing one, ms.
const MAX_WAIT_MS: u64 = 1_000;

/// The request in flight of one socket, to answer it if its owner does not.
struct InFlight {
    req: u64,
    event: ClientEvent,
    /// The room a join named, for its error's `room_name`.
    room: Option<String>,
}

struct State {
    home: Home,
    sockets: HashMap<String, SocketRef>,
    /// Each socket's acks, in the order of its events (answers come in that order).
    acks: HashMap<String, VecDeque<AckSender>>,
    inflight: HashMap<String, InFlight>,
    /// REST requests made through this node, waiting for their owner's answer.
    http: HashMap<u64, oneshot::Sender<(u16, Box<RawValue>)>>,
    /// The last REST request's number (its own range, above the sockets').
    last_http: u64,
}

/// Where REST request numbers start, far above the home side's own.
const HTTP_REQ_BASE: u64 = 1 << 62;

/// This node's sockets and the requests they have in flight.
pub struct Sockets {
    node: String,
    /// Commands handed to the sender and not yet routed.
    unsent: Arc<std::sync::atomic::AtomicUsize>,
    state: Mutex<State>,
    outbox: mpsc::UnboundedSender<Command>,
    /// Answers to relayed signals, for the senders' nodes ([`super::sender::forward`]).
    forwards: mpsc::UnboundedSender<(String, Batch)>,
}

/// The receiving ends of a [`Sockets`]' channels: its commands, for
/// [`super::sender::send_commands`], and its answers for other nodes, for
/// [`super::sender::forward`].
pub struct Outgoing {
    /// Commands to route.
    pub commands: mpsc::UnboundedReceiver<Command>,
    /// Batches for other nodes' inboxes: `(node, batch)`.
    pub forwards: mpsc::UnboundedReceiver<(String, Batch)>,
}

/// A deadline for a command sent now, ms on the wall clock.
fn deadline() -> u64 {
    now().0 + COMMAND_TTL_MS
}

impl Sockets {
    /// The home side of node `node`; returns it with the receiving ends of
    /// its channels.
    pub fn new(node: &str, config: Config) -> (Arc<Self>, Outgoing) {
        let (outbox, commands) = mpsc::unbounded_channel();
        let (forwards, forwarded) = mpsc::unbounded_channel();
        let state = State {
            home: Home::new(node, config, MAX_HELD, MAX_WAIT_MS),
            sockets: HashMap::new(),
            acks: HashMap::new(),
            inflight: HashMap::new(),
            http: HashMap::new(),
            last_http: HTTP_REQ_BASE,
        };
        let sockets = Arc::new(Self {
            node: node.to_owned(),
            unsent: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            state: Mutex::new(state),
            outbox,
            forwards,
        });
        let outgoing = Outgoing {
            commands,
            forwards: forwarded,
        };
        (sockets, outgoing)
    }

    /// Where commands go to be routed, in order (also for the takeover sweep).
    pub fn outbox(&self) -> mpsc::UnboundedSender<Command> {
        self.outbox.clone()
    }

    /// Queues `batch` for node `node`'s inbox.
    fn forward(&self, node: String, batch: Batch) {
        if self.forwards.send((node, batch)).is_err() {
            tracing::error!("the answer forwarder has stopped");
        }
    }

    /// How many commands of this node's sockets wait to be routed (shared with the sender).
    pub fn unsent(&self) -> Arc<std::sync::atomic::AtomicUsize> {
        self.unsent.clone()
    }

    /// Queues a command for the sender, counted until it is routed.
    fn send(&self, command: Command) {
        self.unsent
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.outbox.send(command).is_err() {
            self.unsent
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            tracing::error!("the command sender has stopped");
        }
    }

    /// Waits (at most `limit`) until every command of this node's sockets is
    /// routed: a stopping node's departures reach their owners first.
    pub async fn flush(&self, limit: Duration) {
        let end = tokio::time::Instant::now() + limit;
        while self.unsent.load(std::sync::atomic::Ordering::SeqCst) > 0
            && tokio::time::Instant::now() < end
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A REST request for `room` (an HTTP peer's join or removal), sent to
    /// the room's owner: its status and JSON body, or `unavailable` when no
    /// answer came within [`ANSWER_TIMEOUT`].
    pub async fn http(
        &self,
        room: String,
        kind: CommandKind,
        grant: Option<Grant>,
    ) -> Result<(u16, Box<RawValue>), Error> {
        let (tx, rx) = oneshot::channel();
        let req = {
            let mut st = self.lock();
            st.last_http += 1;
            let req = st.last_http;
            st.http.insert(req, tx);
            let command = Command {
                room,
                home: self.node.clone(),
                req,
                deadline: deadline(),
                kind,
                grant,
            };
            self.send(command);
            req
        };
        match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            _ => {
                self.lock().http.remove(&req);
                tracing::warn!(req, "no answer from the room's owner in time: unavailable");
                Err(Error::Unavailable)
            }
        }
    }

    /// A socket connected, with the claims of its access token when it presented one.
    pub fn connect(&self, socket: SocketRef, grant: Option<Grant>) {
        let sid = socket.id.to_string();
        let mut st = self.lock();
        st.home.connect(&sid);
        if let Some(grant) = grant {
            st.home.grant(&sid, grant);
        }
        st.sockets.insert(sid, socket);
    }

    /// A socket's event, in the order the socket sent it.
    pub fn event(
        self: &Arc<Self>,
        socket: &SocketRef,
        ack: AckSender,
        event: ClientEvent,
        payload: Option<&RawValue>,
        binary: bool,
    ) {
        let sid = socket.id.to_string();
        let payload = payload.map(|p| p.to_owned());
        let closing = {
            let mut st = self.lock();
            if !st.sockets.contains_key(&sid) {
                return;
            }
            st.acks.entry(sid.clone()).or_default().push_back(ack);
            let actions = st.home.event(&sid, event, payload, binary, deadline());
            self.perform(&mut st, actions)
        };
        self.close(closing);
    }

    /// An event of `socket` refused before it was looked at (the event
    /// rate): answered `error` here, after its earlier requests' answers.
    pub fn refused(
        self: &Arc<Self>,
        socket: &SocketRef,
        ack: AckSender,
        event: ClientEvent,
        error: Error,
    ) {
        let sid = socket.id.to_string();
        let closing = {
            let mut st = self.lock();
            if !st.sockets.contains_key(&sid) {
                return;
            }
            st.acks.entry(sid.clone()).or_default().push_back(ack);
            let actions = st.home.refused(&sid, event, error, deadline());
            self.perform(&mut st, actions)
        };
        self.close(closing);
    }

    /// A socket closed: the owners of its rooms are told.
    pub fn disconnect(self: &Arc<Self>, sid: &str) {
        let closing = {
            let mut st = self.lock();
            st.sockets.remove(sid);
            st.acks.remove(sid);
            st.inflight.remove(sid);
            let actions = st.home.disconnect(sid, deadline());
            self.perform(&mut st, actions)
        };
        self.close(closing);
    }

    /// A batch from a room's owner.
    pub fn receive(self: &Arc<Self>, batch: Batch) {
        let closing = {
            let mut st = self.lock();
            let actions = st.home.receive(batch, now(), deadline());
            self.perform(&mut st, actions)
        };
        self.close(closing);
    }

    /// This node's socket members to check against their rooms' listings:
    /// `(sid, room, peer_id)` (see [`Home::members`]).
    pub fn members(&self) -> Vec<(String, String, String)> {
        self.lock().home.members(now().0)
    }

    /// Gives up on room versions that stayed missing too long (lost with
    /// Redis's data): see [`Home::skip_gaps`].
    pub fn skip_gaps(self: &Arc<Self>) {
        let closing = {
            let mut st = self.lock();
            let actions = st.home.skip_gaps(now(), deadline());
            if !actions.is_empty() {
                tracing::warn!("room versions lost with Redis's data: skipped");
            }
            self.perform(&mut st, actions)
        };
        self.close(closing);
    }

    /// Joins answered `unavailable` here that the owner may have applied
    /// (see [`Home::doubtful`]).
    pub fn doubtful(&self) -> Vec<(String, String)> {
        self.lock().home.doubtful()
    }

    /// A doubtful join was checked against its room's snapshot: undone if
    /// listed (see [`Home::checked`]).
    pub fn checked(self: &Arc<Self>, sid: &str, room: &str, listed: bool) {
        let closing = {
            let mut st = self.lock();
            let actions: Vec<Action> = st
                .home
                .checked(sid, room, listed, deadline())
                .into_iter()
                .collect();
            if !actions.is_empty() {
                tracing::warn!(%sid, %room, "a join answered unavailable took effect: undone");
            }
            self.perform(&mut st, actions)
        };
        self.close(closing);
    }

    /// Whether a `restore` sent by this node is still unanswered.
    pub fn restoring(&self) -> bool {
        self.lock().home.restoring()
    }

    /// Sends a `restore` for socket `sid` to its room's owner (its room lost it).
    pub fn restore(self: &Arc<Self>, sid: &str) {
        let closing = {
            let mut st = self.lock();
            let actions: Vec<Action> = st.home.restore(sid, deadline()).into_iter().collect();
            self.perform(&mut st, actions)
        };
        self.close(closing);
    }

    /// Batches from a room's owner, in order, under one lock.
    pub fn receive_all(self: &Arc<Self>, batches: Vec<Batch>) {
        let closing = {
            let mut st = self.lock();
            let mut closing = Vec::new();
            for batch in batches {
                let actions = st.home.receive(batch, now(), deadline());
                closing.extend(self.perform(&mut st, actions));
            }
            closing
        };
        self.close(closing);
    }

    /// `req` of socket `sid` could not be routed (its room has no owner
    /// and none may be claimed yet): answer it `unavailable` now.
    pub fn unrouted(self: &Arc<Self>, sid: &str, req: u64) {
        self.timed_out(sid, req);
    }

    /// `req` of socket `sid` got no answer in time: answer it `unavailable`.
    fn timed_out(self: &Arc<Self>, sid: &str, req: u64) {
        let closing = {
            let mut st = self.lock();
            if st.inflight.get(sid).is_none_or(|f| f.req != req) {
                return;
            }
            let Some(f) = st.inflight.remove(sid) else {
                return;
            };
            tracing::warn!(
                sid,
                req,
                "no answer from the room's owner in time: unavailable"
            );
            let body = Error::Unavailable.body(f.room.as_deref());
            let reply = Reply {
                event: Event::new(f.event.error_event(), Payload::Error(body)),
                emit: true,
            };
            let mut full = Vec::new();
            answer_local(&mut st, sid, &reply, &mut full);
            let actions = st.home.give_up(req, deadline());
            let mut more = self.perform(&mut st, actions);
            more.extend(closing_of(&st, full));
            more
        };
        self.close(closing);
    }

    /// Drops sockets that could not take an event: each leaves its room now
    /// (its owner is told at once, not when its transport has closed, which
    /// a client that stopped reading delays indefinitely), then its transport
    /// is closed and its client reconnects.
    fn close(self: &Arc<Self>, sockets: Vec<SocketRef>) {
        for socket in sockets {
            let sid = socket.id.to_string();
            let closing = {
                let mut st = self.lock();
                if st.sockets.remove(&sid).is_none() {
                    continue; // dropped already, or gone
                }
                st.acks.remove(&sid);
                st.inflight.remove(&sid);
                let actions = st.home.dropped(&sid, deadline());
                self.perform(&mut st, actions)
            };
            metrics::dropped(1);
            tracing::warn!(%sid, "dropping a connection that cannot keep up");
            socket.disconnect().ok();
            self.close(closing);
        }
    }

    /// Carries out the core's actions, in order. Returns the sockets to close.
    fn perform(self: &Arc<Self>, st: &mut State, actions: Vec<Action>) -> Vec<SocketRef> {
        let mut full: Vec<String> = Vec::new();
        for action in actions {
            match action {
                Action::Send(command) => {
                    if let CommandKind::Event { sid, event, .. } = &command.kind
                        && st.inflight.get(sid).is_none_or(|f| f.req != command.req)
                        && let Some(event) = ClientEvent::from_name(event)
                    {
                        let room = (event == ClientEvent::JoinRoom).then(|| command.room.clone());
                        st.inflight.insert(
                            sid.clone(),
                            InFlight {
                                req: command.req,
                                event,
                                room,
                            },
                        );
                        let me = self.clone();
                        let (sid, req) = (sid.clone(), command.req);
                        tokio::spawn(async move {
                            tokio::time::sleep(ANSWER_TIMEOUT).await;
                            me.timed_out(&sid, req);
                        });
                    }
                    self.send(command);
                }
                Action::Answer { sid, reply } => {
                    // Its request in flight, if any, is answered now (moved too often).
                    st.inflight.remove(&sid);
                    answer_local(st, &sid, &reply, &mut full);
                }
                Action::Reply {
                    sid,
                    event,
                    payload,
                    emit,
                } => reply(st, sid, &event, &payload, emit, &mut full),
                Action::Relay {
                    sid,
                    to,
                    signal,
                    ack,
                    refused,
                } => {
                    if relay(st, &to, &signal, &mut full) {
                        reply(st, sid, "signal", &ack, false, &mut full);
                    } else {
                        reply(st, sid, "signal_error", &refused, true, &mut full);
                    }
                }
                Action::RelayFor {
                    to,
                    signal,
                    home,
                    acked,
                    refused,
                } => {
                    let answer = if relay(st, &to, &signal, &mut full) {
                        acked
                    } else {
                        refused
                    };
                    self.forward(home, answer);
                }
                Action::Forward { node, batch } => self.forward(node, batch),
                Action::Emit { to, event, payload } => emit(st, &to, &event, &payload, &mut full),
                Action::Disconnect { sid } => {
                    if let Some(socket) = st.sockets.get(&sid).cloned() {
                        tracing::warn!(%sid, "its room cannot take it back: disconnected, its client joins again");
                        // Not under the lock: its disconnect handler takes it.
                        tokio::spawn(async move {
                            socket.disconnect().ok();
                        });
                    }
                }
                Action::Http { req, status, body } => {
                    if let Some(tx) = st.http.remove(&req) {
                        tx.send((status, body)).ok();
                    }
                }
            }
        }
        closing_of(st, full)
    }
}

/// An owner's answer to socket `sid`'s request in flight: emitted as `event`
/// when `emit`, and acked with `payload`.
fn reply(
    st: &mut State,
    sid: String,
    event: &str,
    payload: &RawValue,
    emit: bool,
    full: &mut Vec<String>,
) {
    st.inflight.remove(&sid);
    if let Some(code) = error_code(event, payload) {
        metrics::error(code);
    }
    let ack = st.acks.get_mut(&sid).and_then(VecDeque::pop_front);
    if let Some(socket) = st.sockets.get(&sid) {
        let emitted = if emit {
            socket.emit(event, payload)
        } else {
            Ok(())
        };
        let acked = ack.map_or(Ok(()), |a| a.send(payload));
        if is_full(&emitted) || is_full(&acked) {
            full.push(sid);
        }
    }
}

/// The sockets among `full` still connected here, to disconnect once the lock is released.
fn closing_of(st: &State, full: Vec<String>) -> Vec<SocketRef> {
    full.into_iter()
        .filter_map(|sid| st.sockets.get(&sid).cloned())
        .collect()
}

fn is_full(r: &Result<(), SendError>) -> bool {
    matches!(r, Err(SendError::Socket(SocketError::InternalChannelFull)))
}

/// The code of an owner's error answer, for the error counter.
fn error_code(event: &str, payload: &RawValue) -> Option<signalroom_core::ErrorCode> {
    if !event.ends_with("_error") {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Coded {
        code: signalroom_core::ErrorCode,
    }
    serde_json::from_str::<Coded>(payload.get())
        .ok()
        .map(|c| c.code)
}

/// Answers a socket's request here (emitted when the reply says so, and acked).
fn answer_local(st: &mut State, sid: &str, reply: &Reply, full: &mut Vec<String>) {
    if let Some(body) = reply.error_body() {
        metrics::error(body.code);
    }
    let ack = st.acks.get_mut(sid).and_then(VecDeque::pop_front);
    let (Some(socket), Some(raw)) = (st.sockets.get(sid), encode(&reply.event.payload)) else {
        return;
    };
    let emitted = if reply.emit {
        socket.emit(reply.event.name.as_str(), &raw)
    } else {
        Ok(())
    };
    let acked = ack.map_or(Ok(()), |a| a.send(&raw));
    if is_full(&emitted) || is_full(&acked) {
        full.push(sid.to_owned());
    }
}

/// Queues a relayed `signal` for local socket `to`: `false` when its queue
/// was full (it is then in `full`, to be dropped).
fn relay(st: &State, to: &str, signal: &RawValue, full: &mut Vec<String>) -> bool {
    let missed = full.len();
    emit(st, &[to.to_owned()], "signal", signal, full);
    full.len() == missed
}

/// Emits one event to some local sockets, encoded once.
fn emit(st: &State, to: &[String], event: &str, payload: &RawValue, full: &mut Vec<String>) {
    let mut recipients = to.iter().filter_map(|sid| st.sockets.get(sid));
    let Some(first) = recipients.next() else {
        return;
    };
    let packet = match first.encode_emit(event, payload) {
        Ok(packet) => packet,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a packet");
            return;
        }
    };
    for socket in std::iter::once(first).chain(recipients) {
        match socket.emit_encoded(packet.clone()) {
            Ok(()) if event == "signal" => metrics::signal_relayed(),
            Ok(()) => {}
            Err(SocketError::InternalChannelFull) => full.push(socket.id.to_string()),
            Err(SocketError::Closed) => {}
        }
    }
}

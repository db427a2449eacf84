//! The browser side's room membership: which room the app wants to be in (or none),
//! what the server holds for this connection, and which commands make the two agree.
//!
//! The app asks with `join` and `leave`; the connection comes and goes. A command sent
//! into a dying connection, or buffered across a reconnect by socket.io-client, reaches
//! a server that no longer knows the client, and an automatic rejoin made later can
//! undo what the app asked. So [`Membership`] owns every such decision, and its caller
//! (the web-client) only emits what it is told to, when it is told to:
//!
//! - Room commands go out only while connected. A request made while disconnected
//!   waits, and is sent, in order, when the connection is back.
//! - A request pending when the connection drops settles at once: a `join` rejects with
//!   [`ClientError::Disconnected`] and changes nothing; a `leave` resolves, because the
//!   disconnect took the peer out of its room, which is what it asked (and the client
//!   does not rejoin). This is the one place that decides what a pending `leave` means.
//! - A request that is rejected changes nothing: the app's intent stays what it was,
//!   and when the server's state may have moved anyway (a timeout), the membership sends
//!   what brings it back.
//! - After a reconnect the server holds nothing; when the app's intent is a room (and
//!   `auto_rejoin` is on) the membership joins it again, retrying with a growing delay
//!   while the server still holds the peer_id for the dead connection. A rejoin refused
//!   for another reason ends the intent: the client reports it and shows no room.
//! - `leave` with nothing to undo (disconnected, or a rejoin still waiting) resolves
//!   at once without a round trip.
//!
//! Like the rest of the core it is sans-I/O: no clock, no sockets, no JavaScript. Each
//! input returns the [`Action`]s to perform, in order. The join payload of an app
//! request is opaque (`J`): the web-client passes its JavaScript object through, so the
//! server, not this module, validates it.

use std::collections::VecDeque;

/// Identifies one request of the app (one `join` or `leave` promise).
pub type RequestId = u64;

/// Identifies one command sent to the server: its acknowledgement comes back with it.
pub type Ticket = u64;

/// A membership as the server holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The room.
    pub room: String,
    /// This client's peer_id in it.
    pub peer_id: String,
    /// Its username.
    pub username: String,
}

/// A command to emit to the server, with an acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<J> {
    /// `join_room` with the app's own payload.
    Join(J),
    /// `join_room` that restores this membership (after a reconnect or a lost answer).
    Rejoin(Identity),
    /// `leave_room`.
    Leave,
}

/// What the server's acknowledgement of a command said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `join_room_success`: the membership as the server now holds it.
    Joined(Identity),
    /// `leave_room_success`.
    Left,
    /// An error answer with this `code`.
    Refused(String),
    /// No answer within the acknowledgement timeout (the connection is still up).
    TimedOut,
}

/// Errors the client reports on its own, without a server answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientError {
    /// The connection was lost before the server answered.
    Disconnected,
    /// The client was closed.
    Closed,
    /// No answer in time (or no connection in time for a waiting request).
    Timeout,
    /// `leave` outside any room.
    NotInRoom,
    /// A `signal` while disconnected: it was not sent.
    NotConnected,
    /// The server refused the connection's access token.
    Unauthorized,
}

impl ClientError {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Disconnected | Self::NotConnected => "disconnected",
            Self::Closed => "closed",
            Self::Timeout => "timeout",
            Self::NotInRoom => crate::ErrorCode::NotInRoom.as_str(),
            Self::Unauthorized => crate::ErrorCode::Unauthorized.as_str(),
        }
    }

    /// The human text.
    pub fn message(self) -> &'static str {
        match self {
            Self::Disconnected => "The connection to the server was lost before it answered",
            Self::Closed => "The client is closed",
            Self::Timeout => "The server did not answer in time",
            // The server's text for the same case (crate::Error::NotInRoom).
            Self::NotInRoom => "Not in any room",
            Self::NotConnected => "Not connected to the server: the signal was not sent",
            Self::Unauthorized => "The server refused the access token",
        }
    }
}

/// One thing the caller must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<J> {
    /// Emit `command` now, with an acknowledgement; pass it to [`Membership::answered`]
    /// with `ticket`.
    Send {
        /// Hand back with the answer.
        ticket: Ticket,
        /// What to emit.
        command: Command<J>,
    },
    /// The server confirmed a join: take the room's list from the answer being handled.
    Joined,
    /// The client is in no room any more: clear the room's list and tell listeners.
    Left,
    /// Resolve the request (a join with the answer being handled; a leave with nothing).
    Resolve(RequestId),
    /// Reject the request with the server's error answer being handled.
    RejectWithAnswer(RequestId),
    /// Reject the request with the client's own error.
    Reject(RequestId, ClientError),
    /// A rejoin was refused for good: report the error answer being handled.
    ReportAnswer,
    /// Call [`Membership::retry_due`] after this many milliseconds.
    StartTimer(u32),
    /// Cancel the timer started last.
    StopTimer,
}

/// What the server holds for the current connection, as far as its answers tell.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Held {
    Nothing,
    Room(Identity),
    /// An answer was lost: the next command's answer tells again.
    Unknown,
}

/// A command sent on the current connection and not answered yet.
#[derive(Debug, Clone)]
struct Flight {
    ticket: Ticket,
    kind: FlightKind,
}

#[derive(Debug, Clone, Copy)]
enum FlightKind {
    /// The app's join.
    Join(RequestId),
    /// The app's leave.
    Leave(RequestId),
    /// The membership's own rejoin.
    Rejoin,
    /// The membership's own leave.
    Withdraw,
}

/// An app request that waits for a connection.
#[derive(Debug, Clone)]
enum Waiting<J> {
    Join(RequestId, J),
    Leave(RequestId),
}

/// The delay before the `attempt`-th retry of a rejoin (0-based): 250 ms, doubling, at
/// most 5 s.
pub fn retry_delay_ms(attempt: u32) -> u32 {
    (250u32 << attempt.min(5)).min(5_000)
}

/// The client's room membership. See the module documentation.
#[derive(Debug, Clone)]
pub struct Membership<J> {
    auto_rejoin: bool,
    connected: bool,
    closed: bool,
    held: Held,
    /// The app's intent, not counting requests still pending.
    wanted: Option<Identity>,
    /// Whether the caller shows a room's list (after `Joined`, until `Left`).
    listed: bool,
    in_flight: VecDeque<Flight>,
    waiting: VecDeque<Waiting<J>>,
    timer_armed: bool,
    attempt: u32,
    next_ticket: Ticket,
    next_request: RequestId,
}

impl<J: Clone> Membership<J> {
    /// A disconnected client in no room; `auto_rejoin` as the client's option.
    pub fn new(auto_rejoin: bool) -> Self {
        Membership {
            auto_rejoin,
            connected: false,
            closed: false,
            held: Held::Nothing,
            wanted: None,
            listed: false,
            in_flight: VecDeque::new(),
            waiting: VecDeque::new(),
            timer_armed: false,
            attempt: 0,
            next_ticket: 0,
            next_request: 0,
        }
    }

    /// The room the app wants to be in, once its pending requests are settled.
    pub fn intent(&self) -> Option<&Identity> {
        self.wanted.as_ref()
    }

    /// Whether the connection is up (room commands and signals may be sent).
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Whether nothing is pending: no request waiting, no command unanswered, no retry due.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.in_flight.is_empty() && !self.timer_armed
    }

    /// The app's `join` with its payload.
    pub fn join(&mut self, payload: J) -> (RequestId, Vec<Action<J>>) {
        let id = self.request_id();
        let mut out = Vec::new();
        if self.closed {
            out.push(Action::Reject(id, ClientError::Closed));
        } else if self.connected {
            let ticket = self.fly(FlightKind::Join(id));
            out.push(Action::Send {
                ticket,
                command: Command::Join(payload),
            });
        } else {
            self.waiting.push_back(Waiting::Join(id, payload));
        }
        (id, out)
    }

    /// The app's `leave`.
    pub fn leave(&mut self) -> (RequestId, Vec<Action<J>>) {
        let id = self.request_id();
        let mut out = Vec::new();
        // Nothing sent or to be sent can put the server's side in a room (so the
        // intent is all there is to undo).
        let nothing_to_undo = self.waiting.is_empty()
            && (!self.connected || (self.in_flight.is_empty() && self.held == Held::Nothing));
        if self.closed {
            out.push(Action::Reject(id, ClientError::Closed));
        } else if nothing_to_undo {
            if self.wanted.is_some() {
                self.wanted = None;
                self.stop_timer(&mut out);
                self.unlist(&mut out);
                out.push(Action::Resolve(id));
            } else {
                out.push(Action::Reject(id, ClientError::NotInRoom));
            }
        } else if self.connected {
            let ticket = self.fly(FlightKind::Leave(id));
            out.push(Action::Send {
                ticket,
                command: Command::Leave,
            });
        } else {
            self.waiting.push_back(Waiting::Leave(id));
        }
        (id, out)
    }

    /// A request made while disconnected waited too long for the connection: it is
    /// rejected with [`ClientError::Timeout`]. Requests already sent are left alone
    /// (their acknowledgement has its own timeout).
    pub fn give_up(&mut self, request: RequestId) -> Vec<Action<J>> {
        let before = self.waiting.len();
        self.waiting.retain(|w| match w {
            Waiting::Join(id, _) | Waiting::Leave(id) => *id != request,
        });
        if self.waiting.len() < before {
            vec![Action::Reject(request, ClientError::Timeout)]
        } else {
            Vec::new()
        }
    }

    /// The connection is up (first connect or reconnect): the server holds nothing yet.
    pub fn connected(&mut self) -> Vec<Action<J>> {
        let mut out = Vec::new();
        if self.closed {
            return out;
        }
        self.connected = true;
        self.held = Held::Nothing;
        self.attempt = 0;
        while let Some(w) = self.waiting.pop_front() {
            let (kind, command) = match w {
                Waiting::Join(id, payload) => (FlightKind::Join(id), Command::Join(payload)),
                Waiting::Leave(id) => (FlightKind::Leave(id), Command::Leave),
            };
            let ticket = self.fly(kind);
            out.push(Action::Send { ticket, command });
        }
        self.reconcile(&mut out);
        out
    }

    /// The server refused to connect (its access token): no connection will come
    /// until the app asks again. Joins waiting for it are rejected with
    /// [`ClientError::Unauthorized`], leaves resolve (nothing is held), and the
    /// intent ends, as for a refused rejoin.
    pub fn refused(&mut self) -> Vec<Action<J>> {
        let mut out = Vec::new();
        self.stop_timer(&mut out);
        self.wanted = None;
        self.unlist(&mut out);
        for waiting in std::mem::take(&mut self.waiting) {
            out.push(match waiting {
                Waiting::Join(id, _) => Action::Reject(id, ClientError::Unauthorized),
                Waiting::Leave(id) => Action::Resolve(id),
            });
        }
        out
    }

    /// The connection is gone: settle what was pending on it.
    pub fn disconnected(&mut self) -> Vec<Action<J>> {
        let mut out = Vec::new();
        self.connected = false;
        self.held = Held::Nothing;
        self.stop_timer(&mut out);
        let mut resolved = Vec::new();
        for flight in std::mem::take(&mut self.in_flight) {
            match flight.kind {
                FlightKind::Join(id) => {
                    resolved.push(Action::Reject(id, ClientError::Disconnected))
                }
                FlightKind::Leave(id) => {
                    self.wanted = None;
                    resolved.push(Action::Resolve(id));
                }
                FlightKind::Rejoin | FlightKind::Withdraw => {}
            }
        }
        if !self.auto_rejoin {
            self.wanted = None;
        }
        if self.wanted.is_none() {
            self.unlist(&mut out);
        }
        out.extend(resolved);
        out
    }

    /// The acknowledgement of the command sent with `ticket`. Answers to commands of an
    /// earlier connection are ignored.
    pub fn answered(&mut self, ticket: Ticket, answer: Answer) -> Vec<Action<J>> {
        let mut out = Vec::new();
        let Some(at) = self.in_flight.iter().position(|f| f.ticket == ticket) else {
            return out;
        };
        let Some(flight) = self.in_flight.remove(at) else {
            return out;
        };
        match (flight.kind, answer) {
            (FlightKind::Join(id), Answer::Joined(identity)) => {
                self.held = Held::Room(identity.clone());
                self.wanted = Some(identity);
                self.attempt = 0;
                self.listed = true;
                out.push(Action::Joined);
                out.push(Action::Resolve(id));
            }
            (FlightKind::Join(id), Answer::Refused(_)) => {
                // A refused join changes nothing on the server, nor the intent.
                out.push(Action::RejectWithAnswer(id));
            }
            (FlightKind::Join(id), _) => {
                self.held = Held::Unknown;
                out.push(Action::Reject(id, ClientError::Timeout));
            }
            (FlightKind::Leave(id), Answer::Left) => {
                self.held = Held::Nothing;
                self.wanted = None;
                self.unlist(&mut out);
                out.push(Action::Resolve(id));
            }
            (FlightKind::Leave(id), Answer::Refused(code)) if is_not_in_room(&code) => {
                // Out already: what the app asked, if its settled requests put it in a
                // room (a lost answer); a mistake if they did not.
                let in_room = self.wanted.is_some();
                self.held = Held::Nothing;
                self.wanted = None;
                self.unlist(&mut out);
                out.push(if in_room {
                    Action::Resolve(id)
                } else {
                    Action::RejectWithAnswer(id)
                });
            }
            (FlightKind::Leave(id), Answer::Refused(_)) => {
                out.push(Action::RejectWithAnswer(id));
            }
            (FlightKind::Leave(id), _) => {
                self.held = Held::Unknown;
                out.push(Action::Reject(id, ClientError::Timeout));
            }
            (FlightKind::Rejoin, Answer::Joined(identity)) => {
                self.held = Held::Room(identity.clone());
                self.wanted = Some(identity);
                self.attempt = 0;
                self.listed = true;
                out.push(Action::Joined);
            }
            (FlightKind::Rejoin, Answer::Refused(code)) if is_peer_id_taken(&code) => {
                // The server still holds the peer_id for the dead connection.
                self.start_timer(&mut out);
            }
            (FlightKind::Rejoin, Answer::Refused(_)) => {
                self.wanted = None;
                out.push(Action::ReportAnswer);
                self.unlist(&mut out);
            }
            (FlightKind::Rejoin, _) => {
                self.held = Held::Unknown;
                self.start_timer(&mut out);
            }
            (FlightKind::Withdraw, Answer::Left) => self.held = Held::Nothing,
            (FlightKind::Withdraw, Answer::Refused(code)) if is_not_in_room(&code) => {
                self.held = Held::Nothing;
            }
            (FlightKind::Withdraw, _) => {
                self.held = Held::Unknown;
                self.start_timer(&mut out);
            }
        }
        self.reconcile(&mut out);
        out
    }

    /// The timer of [`Action::StartTimer`] fired.
    pub fn retry_due(&mut self) -> Vec<Action<J>> {
        let mut out = Vec::new();
        if self.timer_armed {
            self.timer_armed = false;
            self.reconcile(&mut out);
        }
        out
    }

    /// The client is closed: every pending request is rejected and nothing more is sent.
    pub fn close(&mut self) -> Vec<Action<J>> {
        let mut out = Vec::new();
        self.closed = true;
        self.connected = false;
        self.wanted = None;
        self.stop_timer(&mut out);
        self.unlist(&mut out);
        for flight in std::mem::take(&mut self.in_flight) {
            if let FlightKind::Join(id) | FlightKind::Leave(id) = flight.kind {
                out.push(Action::Reject(id, ClientError::Closed));
            }
        }
        for w in std::mem::take(&mut self.waiting) {
            let (Waiting::Join(id, _) | Waiting::Leave(id)) = w;
            out.push(Action::Reject(id, ClientError::Closed));
        }
        out
    }

    /// When nothing is pending, sends what makes the server hold the app's intent.
    fn reconcile(&mut self, out: &mut Vec<Action<J>>) {
        if !self.connected || self.closed || self.timer_armed || !self.in_flight.is_empty() {
            return;
        }
        let (kind, command) = match (&self.wanted, &self.held) {
            (Some(want), Held::Room(have)) if want == have => return,
            (Some(want), _) => (FlightKind::Rejoin, Command::Rejoin(want.clone())),
            (None, Held::Nothing) => return,
            (None, _) => (FlightKind::Withdraw, Command::Leave),
        };
        let ticket = self.fly(kind);
        out.push(Action::Send { ticket, command });
    }

    fn fly(&mut self, kind: FlightKind) -> Ticket {
        self.next_ticket += 1;
        self.in_flight.push_back(Flight {
            ticket: self.next_ticket,
            kind,
        });
        self.next_ticket
    }

    fn request_id(&mut self) -> RequestId {
        self.next_request += 1;
        self.next_request
    }

    fn start_timer(&mut self, out: &mut Vec<Action<J>>) {
        self.timer_armed = true;
        out.push(Action::StartTimer(retry_delay_ms(self.attempt)));
        self.attempt = self.attempt.saturating_add(1);
    }

    fn stop_timer(&mut self, out: &mut Vec<Action<J>>) {
        if self.timer_armed {
            self.timer_armed = false;
            out.push(Action::StopTimer);
        }
    }

    fn unlist(&mut self, out: &mut Vec<Action<J>>) {
        if self.listed {
            self.listed = false;
            out.push(Action::Left);
        }
    }
}

fn is_not_in_room(code: &str) -> bool {
    code == crate::ErrorCode::NotInRoom.as_str()
}

fn is_peer_id_taken(code: &str) -> bool {
    code == crate::ErrorCode::PeerIdTaken.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(room: &str) -> Identity {
        Identity {
            room: room.into(),
            peer_id: "me".into(),
            username: "Me".into(),
        }
    }

    fn sent(actions: &[Action<Identity>]) -> Vec<(Ticket, Command<Identity>)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { ticket, command } => Some((*ticket, command.clone())),
                _ => None,
            })
            .collect()
    }

    /// A connected client in room `a`.
    fn in_room(room: &str, auto_rejoin: bool) -> Membership<Identity> {
        let mut m = Membership::new(auto_rejoin);
        m.connected();
        let (_, out) = m.join(id(room));
        let (ticket, _) = sent(&out)[0].clone();
        m.answered(ticket, Answer::Joined(id(room)));
        m
    }

    #[test]
    fn requests_made_before_the_first_connect_wait_for_it() {
        let mut m = Membership::new(true);
        let (_, out) = m.join(id("a"));
        assert!(out.is_empty(), "nothing goes out without a connection");
        let out = m.connected();
        assert_eq!(sent(&out), [(1, Command::Join(id("a")))]);
    }

    #[test]
    fn leave_while_disconnected_resolves_at_once_and_the_client_does_not_rejoin() {
        let mut m = in_room("a", true);
        m.disconnected();
        let (req, out) = m.leave();
        assert_eq!(out, [Action::Left, Action::Resolve(req)]);
        assert_eq!(m.intent(), None);
        assert!(sent(&m.connected()).is_empty(), "no leave_room, no rejoin");
    }

    #[test]
    fn join_while_disconnected_is_sent_on_reconnect_instead_of_the_rejoin() {
        let mut m = in_room("a", true);
        m.disconnected();
        let (req, out) = m.join(id("b"));
        assert!(out.is_empty());
        let out = m.connected();
        let s = sent(&out);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].1, Command::Join(id("b")));
        let out = m.answered(s[0].0, Answer::Joined(id("b")));
        assert_eq!(out, [Action::Joined, Action::Resolve(req)]);
        assert_eq!(m.intent(), Some(&id("b")));
    }

    #[test]
    fn after_a_reconnect_the_room_is_joined_again() {
        let mut m = in_room("a", true);
        assert_eq!(
            m.disconnected(),
            [],
            "the list stays while the client rejoins"
        );
        let out = m.connected();
        assert_eq!(sent(&out)[0].1, Command::Rejoin(id("a")));
    }

    #[test]
    fn without_auto_rejoin_a_disconnect_ends_the_room() {
        let mut m = in_room("a", false);
        assert_eq!(m.disconnected(), [Action::Left]);
        assert_eq!(m.intent(), None);
        assert!(sent(&m.connected()).is_empty());
        let (req, out) = m.leave();
        assert_eq!(out, [Action::Reject(req, ClientError::NotInRoom)]);
    }

    #[test]
    fn a_rejoin_refused_for_good_ends_the_room_and_is_reported() {
        let mut m = in_room("a", true);
        m.disconnected();
        let (ticket, _) = sent(&m.connected())[0].clone();
        let out = m.answered(ticket, Answer::Refused("room_full".into()));
        assert_eq!(out, [Action::ReportAnswer, Action::Left]);
        assert_eq!(m.intent(), None);
    }

    #[test]
    fn a_rejoin_refused_while_the_peer_id_is_held_is_retried_later() {
        let mut m = in_room("a", true);
        m.disconnected();
        let (ticket, _) = sent(&m.connected())[0].clone();
        let out = m.answered(ticket, Answer::Refused("peer_id_taken".into()));
        assert_eq!(out, [Action::StartTimer(250)]);
        let out = m.retry_due();
        assert_eq!(sent(&out)[0].1, Command::Rejoin(id("a")));
        // leave() while the retry waits: nothing to undo on the server.
        let mut m = in_room("a", true);
        m.disconnected();
        let (ticket, _) = sent(&m.connected())[0].clone();
        m.answered(ticket, Answer::Refused("peer_id_taken".into()));
        let (req, out) = m.leave();
        assert_eq!(out, [Action::StopTimer, Action::Left, Action::Resolve(req)]);
    }

    #[test]
    fn requests_pending_at_a_disconnect_settle_at_once() {
        let mut m = in_room("a", true);
        let (join, _) = m.join(id("b"));
        let (leave, _) = m.leave();
        let out = m.disconnected();
        assert_eq!(
            out,
            [
                Action::Left,
                Action::Reject(join, ClientError::Disconnected),
                Action::Resolve(leave)
            ]
        );
        assert!(sent(&m.connected()).is_empty(), "the pending leave wins");
        // A pending join alone: rejected, the old room is joined again.
        let mut m = in_room("a", true);
        let (join, _) = m.join(id("b"));
        assert_eq!(
            m.disconnected(),
            [Action::Reject(join, ClientError::Disconnected)]
        );
        assert_eq!(sent(&m.connected())[0].1, Command::Rejoin(id("a")));
    }

    #[test]
    fn a_timed_out_join_is_undone() {
        let mut m = in_room("a", true);
        let (req, out) = m.join(id("b"));
        let (ticket, _) = sent(&out)[0].clone();
        let out = m.answered(ticket, Answer::TimedOut);
        assert_eq!(out[0], Action::Reject(req, ClientError::Timeout));
        assert_eq!(sent(&out)[0].1, Command::Rejoin(id("a")));
    }

    #[test]
    fn answers_from_an_earlier_connection_are_ignored() {
        let mut m = in_room("a", true);
        let (_, out) = m.join(id("b"));
        let (ticket, _) = sent(&out)[0].clone();
        m.disconnected();
        assert_eq!(m.answered(ticket, Answer::TimedOut), []);
    }

    #[test]
    fn a_waiting_request_can_be_given_up_and_close_rejects_the_rest() {
        let mut m = Membership::new(true);
        let (first, _) = m.join(id("a"));
        let (second, _) = m.join(id("b"));
        assert_eq!(
            m.give_up(first),
            [Action::Reject(first, ClientError::Timeout)]
        );
        assert_eq!(m.give_up(first), []);
        assert_eq!(m.close(), [Action::Reject(second, ClientError::Closed)]);
        let (third, out) = m.join(id("c"));
        assert_eq!(out, [Action::Reject(third, ClientError::Closed)]);
        assert!(m.connected().is_empty());
    }

    #[test]
    fn retry_delays_grow_to_five_seconds() {
        let delays: Vec<u32> = (0..8).map(retry_delay_ms).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
    }
}

#[cfg(test)]
mod properties {
    //! Random interleavings of the app's joins and leaves, disconnects, reconnects,
    //! lost answers and timers, against a simulated server that keeps a dead
    //! connection's membership (its peer_id taken) until its ping timeout. After the
    //! network settles, the server holds exactly what the app's settled requests say.
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    const ROOMS: [&str; 3] = ["r0", "r1", "full"];

    #[derive(Debug, Clone)]
    enum Step {
        Join(usize, usize),
        Leave,
        Disconnect(bool),
        Reconnect,
        ServerHandles,
        AnswerArrives,
        TimeOut,
        GhostsExpire,
        TimerFires,
        GiveUp(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0..ROOMS.len(), 0..2usize).prop_map(|(r, p)| Step::Join(r, p)),
            2 => Just(Step::Leave),
            2 => any::<bool>().prop_map(Step::Disconnect),
            2 => Just(Step::Reconnect),
            4 => Just(Step::ServerHandles),
            4 => Just(Step::AnswerArrives),
            1 => Just(Step::TimeOut),
            1 => Just(Step::GhostsExpire),
            2 => Just(Step::TimerFires),
            1 => (0..8usize).prop_map(Step::GiveUp),
        ]
    }

    fn ident(room: usize, peer: usize) -> Identity {
        Identity {
            room: ROOMS[room].into(),
            peer_id: format!("p{peer}"),
            username: "U".into(),
        }
    }

    /// The world: the simulated server and wire, and what the app has seen.
    struct World {
        m: Membership<Identity>,
        auto_rejoin: bool,
        connected: bool,
        /// The live connection's membership on the server.
        current: Option<Identity>,
        /// Memberships of dead connections the server has not dropped yet.
        ghosts: Vec<Identity>,
        /// Commands on their way to the server.
        to_server: VecDeque<(Ticket, Command<Identity>)>,
        /// Answers on their way back.
        to_client: VecDeque<(Ticket, Answer)>,
        /// Tickets whose acknowledgement timed out: their answers are dropped.
        timed_out: Vec<Ticket>,
        /// Tickets the client still waits for, oldest first.
        awaited: VecDeque<Ticket>,
        timer: bool,
        /// The room the app is shown.
        listed: Option<String>,
        /// Every request: its join target (None for a leave) and how it settled.
        requests: Vec<(RequestId, Option<Identity>, Option<bool>)>,
        /// What the app's settled requests say it wants.
        expected: Option<Identity>,
    }

    impl World {
        fn new(auto_rejoin: bool) -> World {
            World {
                m: Membership::new(auto_rejoin),
                auto_rejoin,
                connected: false,
                current: None,
                ghosts: Vec::new(),
                to_server: VecDeque::new(),
                to_client: VecDeque::new(),
                timed_out: Vec::new(),
                awaited: VecDeque::new(),
                timer: false,
                listed: None,
                requests: Vec::new(),
                expected: None,
            }
        }

        fn serve(&mut self, command: &Command<Identity>) -> Answer {
            match command {
                Command::Join(who) | Command::Rejoin(who) => {
                    if who.room == "full" {
                        Answer::Refused("room_full".into())
                    } else if self.ghosts.contains(who) {
                        Answer::Refused("peer_id_taken".into())
                    } else {
                        self.current = Some(who.clone());
                        Answer::Joined(who.clone())
                    }
                }
                Command::Leave => match self.current.take() {
                    Some(_) => Answer::Left,
                    None => Answer::Refused("not_in_room".into()),
                },
            }
        }

        fn settle(&mut self, id: RequestId, ok: bool) -> Result<(), TestCaseError> {
            let r = self.requests.iter_mut().find(|r| r.0 == id);
            let r = r.ok_or_else(|| TestCaseError::fail("an unknown request"))?;
            prop_assert!(r.2.is_none(), "request {} settled twice", id);
            r.2 = Some(ok);
            if ok {
                self.expected = r.1.clone();
            }
            Ok(())
        }

        fn apply(
            &mut self,
            actions: Vec<Action<Identity>>,
            answer: Option<&Answer>,
        ) -> Result<(), TestCaseError> {
            for action in actions {
                match action {
                    Action::Send { ticket, command } => {
                        prop_assert!(self.connected, "a command sent while disconnected");
                        self.to_server.push_back((ticket, command));
                        self.awaited.push_back(ticket);
                    }
                    Action::Joined => match answer {
                        Some(Answer::Joined(who)) => self.listed = Some(who.room.clone()),
                        other => prop_assert!(false, "Joined on {:?}", other),
                    },
                    Action::Left => {
                        prop_assert!(self.listed.is_some(), "Left without a room");
                        self.listed = None;
                    }
                    Action::Resolve(id) => self.settle(id, true)?,
                    Action::RejectWithAnswer(id) => {
                        prop_assert!(matches!(answer, Some(Answer::Refused(_))));
                        self.settle(id, false)?;
                    }
                    Action::Reject(id, _) => self.settle(id, false)?,
                    Action::ReportAnswer => {
                        prop_assert!(matches!(answer, Some(Answer::Refused(_))));
                        // A rejoin refused for good: the app is told, and is in no room.
                        self.expected = None;
                    }
                    Action::StartTimer(_) => {
                        prop_assert!(!self.timer, "a second timer");
                        self.timer = true;
                    }
                    Action::StopTimer => {
                        prop_assert!(self.timer, "no timer to stop");
                        self.timer = false;
                    }
                }
            }
            Ok(())
        }

        fn run(&mut self, step: &Step) -> Result<(), TestCaseError> {
            match *step {
                Step::Join(room, peer) => {
                    let who = ident(room, peer);
                    let (id, out) = self.m.join(who.clone());
                    self.requests.push((id, Some(who), None));
                    self.apply(out, None)?;
                }
                Step::Leave => {
                    let (id, out) = self.m.leave();
                    self.requests.push((id, None, None));
                    self.apply(out, None)?;
                }
                Step::Disconnect(served) if self.connected => {
                    // The server may have handled what was on its way before the
                    // connection died; its answers are lost either way.
                    while served && let Some((_, command)) = self.to_server.pop_front() {
                        self.serve(&command);
                    }
                    self.to_server.clear();
                    self.to_client.clear();
                    self.awaited.clear();
                    self.ghosts.extend(self.current.take());
                    self.connected = false;
                    let out = self.m.disconnected();
                    self.apply(out, None)?;
                    if !self.auto_rejoin {
                        self.expected = None;
                    }
                }
                Step::Reconnect if !self.connected => {
                    self.connected = true;
                    let out = self.m.connected();
                    self.apply(out, None)?;
                }
                Step::ServerHandles => {
                    if let Some((ticket, command)) = self.to_server.pop_front() {
                        let answer = self.serve(&command);
                        self.to_client.push_back((ticket, answer));
                    }
                }
                Step::AnswerArrives => {
                    if let Some((ticket, answer)) = self.to_client.pop_front()
                        && !self.timed_out.contains(&ticket)
                    {
                        self.awaited.retain(|t| *t != ticket);
                        let out = self.m.answered(ticket, answer.clone());
                        self.apply(out, Some(&answer))?;
                    }
                }
                Step::TimeOut => {
                    if let Some(ticket) = self.awaited.pop_front() {
                        self.timed_out.push(ticket);
                        let out = self.m.answered(ticket, Answer::TimedOut);
                        self.apply(out, Some(&Answer::TimedOut))?;
                    }
                }
                Step::GhostsExpire => self.ghosts.clear(),
                Step::TimerFires if self.timer => {
                    self.timer = false;
                    let out = self.m.retry_due();
                    self.apply(out, None)?;
                }
                Step::GiveUp(k) => {
                    if let Some(&(id, _, _)) = self.requests.get(k) {
                        let out = self.m.give_up(id);
                        self.apply(out, None)?;
                    }
                }
                _ => {}
            }
            Ok(())
        }

        /// The network heals: reconnect, ghosts expire, everything is delivered.
        fn quiesce(&mut self) -> Result<(), TestCaseError> {
            for _ in 0..1_000 {
                let step = if !self.connected {
                    Step::Reconnect
                } else if !self.ghosts.is_empty() {
                    Step::GhostsExpire
                } else if !self.to_server.is_empty() {
                    Step::ServerHandles
                } else if !self.to_client.is_empty() {
                    Step::AnswerArrives
                } else if self.timer {
                    Step::TimerFires
                } else {
                    return Ok(());
                };
                self.run(&step)?;
            }
            Err(TestCaseError::fail("the client never settled"))
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn intent_and_server_converge(
            auto_rejoin in any::<bool>(),
            steps in proptest::collection::vec(step(), 0..40),
        ) {
            let mut w = World::new(auto_rejoin);
            for s in &steps {
                w.run(s)?;
            }
            w.quiesce()?;
            prop_assert!(w.m.is_idle());
            prop_assert!(
                w.requests.iter().all(|r| r.2.is_some()),
                "every request settles: {:?}", w.requests
            );
            prop_assert_eq!(&w.current, &w.expected, "the server holds what the app asked");
            prop_assert_eq!(w.m.intent(), w.expected.as_ref());
            prop_assert_eq!(w.listed, w.expected.map(|e| e.room), "the app is shown that room");
        }
    }
}

#[cfg(test)]
mod refused_tests {
    use super::*;

    fn id(room: &str) -> Identity {
        Identity {
            room: room.into(),
            peer_id: "me".into(),
            username: "Me".into(),
        }
    }

    #[test]
    fn a_refused_token_rejects_waiting_joins_and_a_later_connect_sends_nothing_old() {
        let mut m = Membership::new(true);
        let (req, out) = m.join(id("a"));
        assert!(out.is_empty());
        assert_eq!(
            m.refused(),
            [Action::Reject(req, ClientError::Unauthorized)]
        );
        assert_eq!(ClientError::Unauthorized.code(), "unauthorized");
        assert!(m.is_idle());
        assert!(
            m.connected().is_empty(),
            "the refused join is not sent later"
        );
    }

    #[test]
    fn a_refused_reconnect_ends_the_intent_and_shows_no_room() {
        let mut m = Membership::new(true);
        m.connected();
        let (_, out) = m.join(id("a"));
        let Action::Send { ticket, .. } = out[0].clone() else {
            panic!("sent")
        };
        m.answered(ticket, Answer::Joined(id("a")));
        m.disconnected();
        assert_eq!(m.intent(), Some(&id("a")));
        assert_eq!(m.refused(), [Action::Left]);
        assert_eq!(m.intent(), None);
        assert!(m.connected().is_empty(), "no rejoin after the refusal");
    }
}

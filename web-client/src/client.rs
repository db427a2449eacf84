//! `SignalroomClient`: one socket.io-client connection, the room it is in, and the
//! listeners of web-client/README.md.
//!
//! The room's list is kept by `signalroom_core::tracker::PeerTracker`, and which room
//! the client is in (or joins again after a reconnect, or leaves) is decided by
//! `signalroom_core::membership::Membership`; this file only turns socket events and
//! app calls into their inputs and their outputs into JavaScript calls. Room commands
//! are emitted only when the membership says so, never into socket.io-client's send
//! buffer, which would deliver them to the next connection ahead of the rejoin.
//! State lives in one `RefCell`; every call out to JavaScript (listeners, promise
//! settlement, meshes) happens after the borrow is released, so a listener may call
//! back into the client.

use crate::js::{self, Socket, call_all, error, get, get_str, get_u64, object};
use js_sys::{Array, Function, Object, Promise};
use signalroom_core::membership::{
    Action, Answer, ClientError, Command, Identity, Membership, RequestId, Ticket,
};
use signalroom_core::tracker::{Delta, PeerDiff, PeerTracker, RoomMember};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use wasm_bindgen::prelude::*;

/// How long a request waits for the server's acknowledgement.
const ACK_TIMEOUT_MS: u32 = 10_000;
/// Signals kept for listeners that do not exist yet.
const HELD_SIGNALS: usize = 256;
/// The marker field of the signals a `PeerMesh` exchanges with its counterpart.
pub(crate) const MESH_MARK: &str = "signalroom_mesh";

/// A peer as received: the JavaScript object is handed back to the app unchanged.
#[derive(Clone)]
pub(crate) struct JsPeer {
    id: String,
    name: String,
    obj: JsValue,
}

impl JsPeer {
    fn from_js(obj: JsValue) -> Option<JsPeer> {
        Some(JsPeer {
            id: get_str(&obj, "peer_id")?,
            name: get_str(&obj, "username").unwrap_or_default(),
            obj,
        })
    }

    fn list(value: &JsValue) -> Vec<JsPeer> {
        if !Array::is_array(value) {
            return Vec::new();
        }
        Array::from(value)
            .iter()
            .filter_map(JsPeer::from_js)
            .collect()
    }
}

impl RoomMember for JsPeer {
    fn peer_id(&self) -> &str {
        &self.id
    }
    fn username(&self) -> &str {
        &self.name
    }
}

fn js_list(peers: &[JsPeer]) -> JsValue {
    peers
        .iter()
        .map(|p| p.obj.clone())
        .collect::<Array>()
        .into()
}

/// A `PeerMesh` attached to a client, told about list changes and its signals.
pub(crate) trait MeshHook {
    /// The room's list changed (or the client left): reconcile the connections.
    fn peers_changed(self: Rc<Self>);
    /// A signal marked for meshes arrived from `from`.
    fn mesh_signal(self: Rc<Self>, from: &str, data: JsValue);
}

/// The shared state of one client.
pub(crate) struct ClientState {
    pub(crate) socket: Socket,
    pub(crate) tracker: PeerTracker<JsPeer>,
    /// The last `join_room_success` payload (its `ice_servers` feed PeerMesh).
    pub(crate) join_answer: JsValue,
    /// Which room the app wants and what to send for it (join payloads are JS objects).
    membership: Membership<JsValue>,
    /// The app's `join` / `leave` promises that are not settled yet.
    requests: Vec<Pending>,
    /// The membership's retry timer.
    retry_timer: Option<JsValue>,
    pub(crate) closed: bool,
    /// The server refused the token: no connecting until the next `join()`.
    pub(crate) refused: bool,
    on_peers: Vec<Function>,
    on_signal: Vec<Function>,
    on_error: Vec<Function>,
    on_connection: Vec<Function>,
    held_signals: VecDeque<(String, JsValue)>,
    held_mesh_signals: VecDeque<(String, JsValue)>,
    meshes: Vec<Weak<dyn MeshHook>>,
}

pub(crate) type Shared = Rc<RefCell<ClientState>>;

/// One `join` / `leave` promise waiting to be settled.
struct Pending {
    id: RequestId,
    resolve: Function,
    reject: Function,
    /// A join resolves with the server's answer, a leave with nothing.
    is_join: bool,
    /// Gives the request up if it is still waiting for a connection.
    give_up_timer: JsValue,
}

/// The JavaScript class `SignalroomClient` (web-client/README.md).
#[wasm_bindgen]
pub struct SignalroomClient {
    pub(crate) shared: Shared,
}

#[wasm_bindgen]
impl SignalroomClient {
    /// Connects to the signalroom server at `url` (options: `autoRejoin`, `transports`,
    /// and any other socket.io-client option).
    #[wasm_bindgen(constructor)]
    pub fn new(
        url: &str,
        #[wasm_bindgen(unchecked_optional_param_type = "ClientOptions")] options: Option<Object>,
    ) -> Result<SignalroomClient, JsValue> {
        let options: JsValue = options.map(JsValue::from).unwrap_or(JsValue::UNDEFINED);
        let auto_rejoin = get(&options, "autoRejoin") != JsValue::FALSE;
        let io_options = Object::new();
        let _ = js_sys::Reflect::set(&io_options, &"forceNew".into(), &JsValue::TRUE);
        if options.is_object() {
            Object::assign(&io_options, &Object::from(options.clone()));
        }
        if let Some(auth) = crate::auth::auth_option(&get(&options, "token")) {
            let _ = js_sys::Reflect::set(&io_options, &"auth".into(), &auth);
        }
        let socket = js::io(url, &io_options)
            .map_err(|_| error("invalid_url", "Cannot connect to that URL"))?;
        let shared: Shared = Rc::new(RefCell::new(ClientState {
            socket: socket.clone(),
            tracker: PeerTracker::new(),
            join_answer: JsValue::UNDEFINED,
            membership: Membership::new(auto_rejoin),
            requests: Vec::new(),
            retry_timer: None,
            closed: false,
            refused: false,
            on_peers: Vec::new(),
            on_signal: Vec::new(),
            on_error: Vec::new(),
            on_connection: Vec::new(),
            held_signals: VecDeque::new(),
            held_mesh_signals: VecDeque::new(),
            meshes: Vec::new(),
        }));
        listen(&shared, &socket);
        Ok(SignalroomClient { shared })
    }

    /// Joins `room_name` as `peer_id` / `username`; settles from the server's ack. While
    /// disconnected the request waits for the connection (docs: web-client/README.md).
    #[wasm_bindgen(unchecked_return_type = "Promise<JoinResult>")]
    pub fn join(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] room_name: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] peer_id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] username: JsValue,
    ) -> Promise {
        crate::auth::reconnect_if_refused(&self.shared);
        let payload = join_payload(&room_name, &peer_id, &username);
        request(&self.shared, true, move |m| m.join(payload))
    }

    /// Leaves the room; settles from the server's ack, or at once when there is nothing
    /// to undo on the server (disconnected, or a rejoin still waiting).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn leave(&self) -> Promise {
        request(&self.shared, false, |m| m.leave())
    }

    /// Relays `data` to the peer `to` of the same room through the server.
    pub fn signal(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] to: JsValue,
        data: JsValue,
    ) {
        send_signal(&self.shared, &to, &data);
    }

    /// Adds a listener for every change of the room's list.
    #[wasm_bindgen(js_name = onPeers)]
    pub fn on_peers(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(e: PeersEvent) => void")] cb: Function,
    ) {
        if let Ok(mut s) = self.shared.try_borrow_mut() {
            s.on_peers.push(cb);
        }
    }

    /// Adds a listener for the app's signals; the first one gets the signals held so far.
    #[wasm_bindgen(js_name = onSignal)]
    pub fn on_signal(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(from: string, data: any) => void")] cb: Function,
    ) {
        let held: Vec<(String, JsValue)> = match self.shared.try_borrow_mut() {
            Ok(mut s) => {
                s.on_signal.push(cb.clone());
                s.held_signals.drain(..).collect()
            }
            Err(_) => return,
        };
        for (from, data) in held {
            let _ = cb.call2(&JsValue::NULL, &JsValue::from_str(&from), &data);
        }
    }

    /// Adds a listener for errors not tied to a pending promise.
    #[wasm_bindgen(js_name = onError)]
    pub fn on_error(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(e: SignalroomError) => void")] cb: Function,
    ) {
        if let Ok(mut s) = self.shared.try_borrow_mut() {
            s.on_error.push(cb);
        }
    }

    /// Adds a listener for the connection's state.
    #[wasm_bindgen(js_name = onConnectionChange)]
    pub fn on_connection_change(
        &self,
        #[wasm_bindgen(
            unchecked_param_type = "(state: \"connecting\" | \"connected\" | \"disconnected\") => void"
        )]
        cb: Function,
    ) {
        if let Ok(mut s) = self.shared.try_borrow_mut() {
            s.on_connection.push(cb);
        }
    }

    /// The current list, self included, in join order.
    #[wasm_bindgen(getter, unchecked_return_type = "Peer[]")]
    pub fn peers(&self) -> JsValue {
        match self.shared.try_borrow() {
            Ok(s) => js_list(s.tracker.peers()),
            Err(_) => Array::new().into(),
        }
    }

    /// The room this client is in.
    #[wasm_bindgen(getter, js_name = roomName)]
    pub fn room_name(&self) -> Option<String> {
        self.shared
            .try_borrow()
            .ok()?
            .tracker
            .room()
            .map(str::to_owned)
    }

    /// This client's peer_id in its room.
    #[wasm_bindgen(getter, js_name = peerId)]
    pub fn peer_id(&self) -> Option<String> {
        self.shared
            .try_borrow()
            .ok()?
            .tracker
            .self_id()
            .map(str::to_owned)
    }

    /// Leaves, disconnects and drops every listener; pending requests reject with
    /// `closed`.
    pub fn close(&self) {
        let (socket, actions) = {
            let Ok(mut s) = self.shared.try_borrow_mut() else {
                return;
            };
            s.closed = true;
            s.on_peers.clear();
            s.on_signal.clear();
            s.on_error.clear();
            s.on_connection.clear();
            s.held_signals.clear();
            s.held_mesh_signals.clear();
            (s.socket.clone(), s.membership.close())
        };
        perform(&self.shared, actions, None);
        socket.disconnect();
    }
}

fn join_payload(room: &JsValue, peer_id: &JsValue, username: &JsValue) -> JsValue {
    object(&[
        ("room_name", room),
        ("peer_id", peer_id),
        ("username", username),
        ("updates", &JsValue::from_str("delta")),
    ])
}

/// A promise for one app request: `ask` hands it to the membership, whose actions
/// (sending it now, or settling it at once) are then performed.
fn request(
    shared: &Shared,
    is_join: bool,
    ask: impl FnOnce(&mut Membership<JsValue>) -> (RequestId, Vec<Action<JsValue>>),
) -> Promise {
    let mut ask = Some(ask);
    Promise::new(&mut |resolve: Function, reject: Function| {
        let Some(ask) = ask.take() else { return };
        let actions = {
            let Ok(mut s) = shared.try_borrow_mut() else {
                let e = ClientError::Closed;
                let _ = reject.call1(&JsValue::NULL, &error(e.code(), e.message()));
                return;
            };
            let (id, actions) = ask(&mut s.membership);
            let weak = Rc::downgrade(shared);
            let give_up = Closure::once_into_js(move || {
                if let Some(shared) = weak.upgrade() {
                    let actions = match shared.try_borrow_mut() {
                        Ok(mut s) => s.membership.give_up(id),
                        Err(_) => return,
                    };
                    perform(&shared, actions, None);
                }
            });
            s.requests.push(Pending {
                id,
                resolve,
                reject,
                is_join,
                give_up_timer: js::set_timeout(&give_up, ACK_TIMEOUT_MS),
            });
            actions
        };
        perform(shared, actions, None);
    })
}

/// Does what the membership asked, in order. `answer` is the server's answer being
/// handled, if any. Called with the state not borrowed.
fn perform(shared: &Shared, actions: Vec<Action<JsValue>>, answer: Option<&JsValue>) {
    let answer = answer.cloned().unwrap_or(JsValue::UNDEFINED);
    for action in actions {
        match action {
            Action::Send { ticket, command } => send(shared, ticket, command),
            Action::Joined => joined(shared, &answer),
            Action::Left => left(shared),
            Action::Resolve(id) => {
                if let Some(p) = settled(shared, id) {
                    let value = if p.is_join {
                        answer.clone()
                    } else {
                        JsValue::UNDEFINED
                    };
                    let _ = p.resolve.call1(&JsValue::NULL, &value);
                }
            }
            Action::RejectWithAnswer(id) => {
                if let Some(p) = settled(shared, id) {
                    let _ = p.reject.call1(&JsValue::NULL, &answer);
                }
            }
            Action::Reject(id, e) => {
                if let Some(p) = settled(shared, id) {
                    let _ = p
                        .reject
                        .call1(&JsValue::NULL, &error(e.code(), e.message()));
                }
            }
            Action::ReportAnswer => report(shared, &answer),
            Action::StartTimer(ms) => {
                let weak = Rc::downgrade(shared);
                let f = Closure::once_into_js(move || {
                    if let Some(shared) = weak.upgrade() {
                        let actions = match shared.try_borrow_mut() {
                            Ok(mut s) => {
                                s.retry_timer = None;
                                s.membership.retry_due()
                            }
                            Err(_) => return,
                        };
                        perform(&shared, actions, None);
                    }
                });
                if let Ok(mut s) = shared.try_borrow_mut() {
                    s.retry_timer = Some(js::set_timeout(&f, ms));
                }
            }
            Action::StopTimer => {
                if let Ok(mut s) = shared.try_borrow_mut()
                    && let Some(t) = s.retry_timer.take()
                {
                    js::clear_timeout(&t);
                }
            }
        }
    }
}

/// Takes the settled request out of the pending ones.
fn settled(shared: &Shared, id: RequestId) -> Option<Pending> {
    let mut s = shared.try_borrow_mut().ok()?;
    let at = s.requests.iter().position(|p| p.id == id)?;
    let p = s.requests.remove(at);
    js::clear_timeout(&p.give_up_timer);
    Some(p)
}

/// Emits a room command with an acknowledgement that goes back to the membership.
fn send(shared: &Shared, ticket: Ticket, command: Command<JsValue>) {
    let Ok(socket) = shared.try_borrow().map(|s| s.socket.clone()) else {
        return;
    };
    let (event, payload, is_join) = match command {
        Command::Join(payload) => ("join_room", payload, true),
        Command::Rejoin(id) => (
            "join_room",
            join_payload(
                &JsValue::from_str(&id.room),
                &JsValue::from_str(&id.peer_id),
                &JsValue::from_str(&id.username),
            ),
            true,
        ),
        Command::Leave => ("leave_room", Object::new().into(), false),
    };
    let weak = Rc::downgrade(shared);
    let ack = Closure::once_into_js(move |err: JsValue, answer: JsValue| {
        let Some(shared) = weak.upgrade() else { return };
        let parsed = if !err.is_null() && !err.is_undefined() {
            // socket.io-client's timeout (a disconnect reaches the membership first, so
            // this ticket is already forgotten when the error says "disconnected").
            Answer::TimedOut
        } else if get(&answer, "error").is_string() {
            Answer::Refused(get_str(&answer, "code").unwrap_or_default())
        } else if is_join {
            match identity(&answer) {
                Some(id) => Answer::Joined(id),
                None => Answer::Refused("invalid_payload".into()),
            }
        } else {
            Answer::Left
        };
        let actions = match shared.try_borrow_mut() {
            Ok(mut s) => s.membership.answered(ticket, parsed),
            Err(_) => return,
        };
        perform(&shared, actions, Some(&answer));
    });
    socket
        .timeout(ACK_TIMEOUT_MS)
        .emit_with_ack(event, &payload, &ack);
}

/// The membership a `join_room_success` answer describes.
fn identity(answer: &JsValue) -> Option<Identity> {
    let room = get_str(answer, "room_name")?;
    let peer_id = get_str(answer, "peer_id")?;
    let username = JsPeer::list(&get(answer, "peers"))
        .into_iter()
        .find(|p| p.id == peer_id)
        .map(|p| p.name)
        .unwrap_or_default();
    Some(Identity {
        room,
        peer_id,
        username,
    })
}

/// A successful `join_room` answer (the user's or an automatic rejoin's).
fn joined(shared: &Shared, answer: &JsValue) {
    let (Some(room), Some(peer_id)) = (get_str(answer, "room_name"), get_str(answer, "peer_id"))
    else {
        return;
    };
    let peers = JsPeer::list(&get(answer, "peers"));
    let version = get_u64(answer, "version").unwrap_or(0);
    let (diff, emit) = {
        let Ok(mut s) = shared.try_borrow_mut() else {
            return;
        };
        s.join_answer = answer.clone();
        let diff = s.tracker.joined(&room, &peer_id, peers, version);
        (diff, snapshot(&mut s))
    };
    emit.peers(Some(diff));
}

/// The client is in no room any more (it left, or lost the room): everyone is removed.
fn left(shared: &Shared) {
    let (diff, emit) = {
        let Ok(mut s) = shared.try_borrow_mut() else {
            return;
        };
        let room = s.tracker.room().map(str::to_owned);
        let diff = s.tracker.left();
        let mut emit = snapshot(&mut s);
        emit.room = room;
        (diff, emit)
    };
    emit.peers(Some(diff));
}

/// What to tell listeners after a change, taken while the state is borrowed and
/// delivered after it is released.
struct Emit {
    room: Option<String>,
    peers: JsValue,
    version: u64,
    on_peers: Vec<Function>,
    meshes: Vec<Rc<dyn MeshHook>>,
}

impl Emit {
    fn peers(self, diff: Option<PeerDiff<JsPeer>>) {
        let Some(diff) = diff else { return };
        if !self.on_peers.is_empty() {
            let total = Array::from(&self.peers).length();
            let event = object(&[
                (
                    "room_name",
                    &self.room.map(JsValue::from).unwrap_or(JsValue::UNDEFINED),
                ),
                ("peers", &self.peers),
                ("added", &js_list(&diff.added)),
                ("removed", &js_list(&diff.removed)),
                ("total_peers", &JsValue::from(total)),
                ("version", &JsValue::from(self.version as f64)),
            ]);
            call_all(&self.on_peers, &[&event]);
        }
        for m in self.meshes {
            m.peers_changed();
        }
    }
}

fn snapshot(s: &mut ClientState) -> Emit {
    Emit {
        room: s.tracker.room().map(str::to_owned),
        peers: js_list(s.tracker.peers()),
        version: s.tracker.version(),
        on_peers: s.on_peers.clone(),
        meshes: live_meshes(s),
    }
}

fn live_meshes(s: &mut ClientState) -> Vec<Rc<dyn MeshHook>> {
    s.meshes.retain(|m| m.strong_count() > 0);
    s.meshes.iter().filter_map(Weak::upgrade).collect()
}

/// Adds a socket listener that reaches the client's state while it lives.
fn on_event(shared: &Shared, socket: &Socket, event: &str, handler: fn(&Shared, JsValue)) {
    let weak = Rc::downgrade(shared);
    let f = Closure::<dyn FnMut(JsValue)>::new(move |payload: JsValue| {
        if let Some(shared) = weak.upgrade() {
            handler(&shared, payload);
        }
    });
    socket.on(event, &f.into_js_value());
}

fn listen(shared: &Shared, socket: &Socket) {
    on_event(shared, socket, "connect", |shared, _| connected(shared));
    on_event(shared, socket, "connect_error", |shared, err| {
        if crate::auth::is_refusal(&err) {
            refused(shared);
        }
    });
    on_event(shared, socket, "disconnect", |shared, reason| {
        let (reconnect, actions) = match shared.try_borrow_mut() {
            Ok(mut s) => {
                // Whatever socket.io-client still buffers (sent while its ping had
                // expired) would reach the next connection; the membership decides
                // what is sent there.
                let buffered = s.socket.send_buffer();
                if Array::is_array(&buffered) {
                    buffered.set_length(0);
                }
                // socket.io-client does not reconnect by itself after the server closed
                // the connection, which is what a server does when it shuts down for a
                // restart: reconnect anyway, so that autoRejoin can work.
                let reconnect =
                    (!s.closed && reason == "io server disconnect").then(|| s.socket.clone());
                (reconnect, s.membership.disconnected())
            }
            Err(_) => return,
        };
        connection_state(shared, "disconnected");
        perform(shared, actions, None);
        if let Some(socket) = reconnect {
            socket.connect();
        }
    });
    on_event(
        shared,
        &socket.manager(),
        "reconnect_attempt",
        |shared, _| connection_state(shared, "connecting"),
    );
    on_event(shared, socket, "peer_joined", |shared, m| {
        if let Some(peer) = JsPeer::from_js(get(&m, "peer")) {
            delta(shared, &m, Delta::Joined(peer));
        }
    });
    on_event(shared, socket, "peer_left", |shared, m| {
        if let Some(id) = get_str(&m, "peer_id") {
            delta(shared, &m, Delta::Left(id));
        }
    });
    on_event(shared, socket, "peer_list_updated", full_list);
    on_event(shared, socket, "peer_list", full_list);
    on_event(shared, socket, "get_peers_error", |shared, e| {
        if let Ok(mut s) = shared.try_borrow_mut() {
            s.tracker.full_list_failed();
        }
        report(shared, &e);
    });
    on_event(shared, socket, "signal_error", |shared, e| {
        report(shared, &e)
    });
    on_event(shared, socket, "signal", incoming_signal);
}

fn connection_state(shared: &Shared, state: &str) {
    let listeners = match shared.try_borrow() {
        Ok(s) => s.on_connection.clone(),
        Err(_) => return,
    };
    call_all(&listeners, &[&JsValue::from_str(state)]);
}

pub(crate) fn report(shared: &Shared, e: &JsValue) {
    let listeners = match shared.try_borrow() {
        Ok(s) => s.on_error.clone(),
        Err(_) => return,
    };
    call_all(&listeners, &[e]);
}

/// The server refused the access token: socket.io-client stops there, the
/// membership settles what waited for the connection, onError is told.
fn refused(shared: &Shared) {
    let actions = match shared.try_borrow_mut() {
        Ok(mut s) => {
            s.refused = true;
            s.membership.refused()
        }
        Err(_) => return,
    };
    connection_state(shared, "disconnected");
    perform(shared, actions, None);
    let e = ClientError::Unauthorized;
    report(shared, &error(e.code(), e.message()));
}

fn connected(shared: &Shared) {
    let actions = match shared.try_borrow_mut() {
        Ok(mut s) => s.membership.connected(),
        Err(_) => return,
    };
    connection_state(shared, "connected");
    perform(shared, actions, None);
}

fn delta(shared: &Shared, m: &JsValue, d: Delta<JsPeer>) {
    let (Some(room), Some(version)) = (get_str(m, "room_name"), get_u64(m, "version")) else {
        return;
    };
    let (outcome, emit, socket) = {
        let Ok(mut s) = shared.try_borrow_mut() else {
            return;
        };
        let outcome = s.tracker.delta(&room, version, d);
        (outcome, snapshot(&mut s), s.socket.clone())
    };
    if outcome.request_full_list {
        socket.emit("get_peers", &Object::new());
    }
    emit.peers(outcome.change);
}

fn full_list(shared: &Shared, m: JsValue) {
    let Some(room) = get_str(&m, "room_name") else {
        return;
    };
    let peers = JsPeer::list(&get(&m, "peers"));
    let (outcome, emit, socket) = {
        let Ok(mut s) = shared.try_borrow_mut() else {
            return;
        };
        // A server without versions: every list is news.
        let version = get_u64(&m, "version").unwrap_or(s.tracker.version() + 1);
        let outcome = s.tracker.full_list(&room, peers, version);
        (outcome, snapshot(&mut s), s.socket.clone())
    };
    if outcome.request_full_list {
        socket.emit("get_peers", &Object::new());
    }
    emit.peers(outcome.change);
}

fn incoming_signal(shared: &Shared, m: JsValue) {
    let Some(from) = get_str(&m, "from") else {
        return;
    };
    let data = get(&m, "data");
    let for_mesh = !get(&data, MESH_MARK).is_undefined();
    let (listeners, mesh) = {
        let Ok(mut s) = shared.try_borrow_mut() else {
            return;
        };
        if for_mesh {
            match live_meshes(&mut s).into_iter().next() {
                Some(mesh) => (Vec::new(), Some(mesh)),
                None => {
                    hold(&mut s.held_mesh_signals, from, data);
                    return;
                }
            }
        } else if s.on_signal.is_empty() {
            hold(&mut s.held_signals, from, data);
            return;
        } else {
            (s.on_signal.clone(), None)
        }
    };
    match mesh {
        Some(mesh) => mesh.mesh_signal(&from, data),
        None => call_all(&listeners, &[&JsValue::from_str(&from), &data]),
    }
}

fn hold(queue: &mut VecDeque<(String, JsValue)>, from: String, data: JsValue) {
    if queue.len() == HELD_SIGNALS {
        queue.pop_front();
    }
    queue.push_back((from, data));
}

/// Emits a `signal` to `to`; errors come back as `signal_error` (to onError). While
/// disconnected the signal is dropped and onError gets `disconnected` (buffered, it
/// would reach the next connection before its rejoin, and be refused there).
pub(crate) fn send_signal(shared: &Shared, to: &JsValue, data: &JsValue) {
    let socket: Socket = match shared.try_borrow() {
        Ok(s) if s.closed => return,
        Ok(s) if s.membership.is_connected() => s.socket.clone(),
        Ok(_) => {
            let e = ClientError::NotConnected;
            report(shared, &error(e.code(), e.message()));
            return;
        }
        Err(_) => return,
    };
    socket.emit("signal", &object(&[("to", to), ("data", data)]));
}

/// Attaches a mesh and hands it the mesh signals held so far.
pub(crate) fn attach_mesh(shared: &Shared, mesh: Weak<dyn MeshHook>) {
    let held: Vec<(String, JsValue)> = {
        let Ok(mut s) = shared.try_borrow_mut() else {
            return;
        };
        s.meshes.push(mesh.clone());
        s.held_mesh_signals.drain(..).collect()
    };
    if let Some(mesh) = mesh.upgrade() {
        mesh.clone().peers_changed();
        for (from, data) in held {
            mesh.clone().mesh_signal(&from, data);
        }
    }
}

/// Detaches a closed mesh: its signals go to the next mesh (or are held for it).
pub(crate) fn detach_mesh(shared: &Shared, mesh: &Weak<dyn MeshHook>) {
    if let Ok(mut s) = shared.try_borrow_mut() {
        s.meshes
            .retain(|m| !std::ptr::addr_eq(m.as_ptr(), mesh.as_ptr()));
    }
}

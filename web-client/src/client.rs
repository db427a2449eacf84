//! `SignalroomClient`: one socket.io-client connection, the room it is in, and the
//! listeners of web-client/README.md.
//!
//! The room's list is kept by `signalroom_core::tracker::PeerTracker`; this file only
//! turns socket events into tracker inputs and tracker outputs into JavaScript calls.
//! State lives in one `RefCell`; every call out to JavaScript (listeners, promise
//! settlement, meshes) happens after the borrow is released, so a listener may call
//! back into the client.

use crate::js::{self, Socket, call_all, error, get, get_str, get_u64, object};
use js_sys::{Array, Function, Object, Promise};
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

/// What an automatic rejoin sends again.
#[derive(Clone, PartialEq)]
struct Identity {
    room: String,
    peer_id: String,
    username: String,
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
    auto_rejoin: bool,
    identity: Option<Identity>,
    ever_connected: bool,
    rejoin_attempt: u32,
    rejoin_timer: Option<JsValue>,
    closed: bool,
    /// The server refused the token: no reconnecting until the next `join()`.
    refused: bool,
    /// Rejecters of joins sent while not connected: a refused token rejects them.
    awaiting_connect: Vec<Function>,
    on_peers: Vec<Function>,
    on_signal: Vec<Function>,
    on_error: Vec<Function>,
    on_connection: Vec<Function>,
    held_signals: VecDeque<(String, JsValue)>,
    held_mesh_signals: VecDeque<(String, JsValue)>,
    meshes: Vec<Weak<dyn MeshHook>>,
}

pub(crate) type Shared = Rc<RefCell<ClientState>>;

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
            auto_rejoin,
            identity: None,
            ever_connected: false,
            rejoin_attempt: 0,
            rejoin_timer: None,
            closed: false,
            refused: false,
            awaiting_connect: Vec::new(),
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

    /// Joins `room_name` as `peer_id` / `username`; settles from the server's ack.
    #[wasm_bindgen(unchecked_return_type = "Promise<JoinResult>")]
    pub fn join(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] room_name: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] peer_id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] username: JsValue,
    ) -> Promise {
        reconnect_if_refused(&self.shared);
        let weak = Rc::downgrade(&self.shared);
        let payload = join_payload(&room_name, &peer_id, &username);
        Promise::new(&mut |resolve: Function, reject: Function| {
            let weak = weak.clone();
            if let Ok(mut s) = self.shared.try_borrow_mut()
                && !s.socket.connected()
            {
                s.awaiting_connect.push(reject.clone());
            }
            request(
                &self.shared,
                "join_room",
                &payload,
                move |result| match result {
                    Ok(answer) => {
                        if let Some(shared) = weak.upgrade() {
                            joined(&shared, &answer);
                        }
                        let _ = resolve.call1(&JsValue::NULL, &answer);
                    }
                    Err(e) => {
                        let _ = reject.call1(&JsValue::NULL, &e);
                    }
                },
            );
        })
    }

    /// Leaves the room; settles from the server's ack.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn leave(&self) -> Promise {
        let weak = Rc::downgrade(&self.shared);
        Promise::new(&mut |resolve: Function, reject: Function| {
            let weak = weak.clone();
            request(
                &self.shared,
                "leave_room",
                &Object::new(),
                move |result| match result {
                    Ok(_) => {
                        if let Some(shared) = weak.upgrade() {
                            left(&shared);
                        }
                        let _ = resolve.call0(&JsValue::NULL);
                    }
                    Err(e) => {
                        let _ = reject.call1(&JsValue::NULL, &e);
                    }
                },
            );
        })
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

    /// Leaves, disconnects and drops every listener.
    pub fn close(&self) {
        let (socket, meshes) = {
            let Ok(mut s) = self.shared.try_borrow_mut() else {
                return;
            };
            s.closed = true;
            s.identity = None;
            if let Some(t) = s.rejoin_timer.take() {
                js::clear_timeout(&t);
            }
            s.on_peers.clear();
            s.on_signal.clear();
            s.on_error.clear();
            s.on_connection.clear();
            s.held_signals.clear();
            s.held_mesh_signals.clear();
            s.tracker.left();
            (s.socket.clone(), live_meshes(&mut s))
        };
        socket.disconnect();
        for m in meshes {
            m.peers_changed();
        }
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

/// Emits `event` with an ack and calls `done` with the answer, or the error: the
/// server's `{error, code, ...}` payload, or a timeout.
fn request(
    shared: &Shared,
    event: &str,
    payload: &JsValue,
    done: impl FnOnce(Result<JsValue, JsValue>) + 'static,
) {
    let socket: Socket = match shared.try_borrow() {
        Ok(s) if !s.closed => s.socket.clone(),
        _ => {
            done(Err(error("closed", "The client is closed")));
            return;
        }
    };
    let ack = Closure::once_into_js(move |err: JsValue, answer: JsValue| {
        if !err.is_null() && !err.is_undefined() {
            done(Err(error("timeout", "The server did not answer in time")));
        } else if get(&answer, "error").is_string() {
            done(Err(answer));
        } else {
            done(Ok(answer));
        }
    });
    socket
        .timeout(ACK_TIMEOUT_MS)
        .emit_with_ack(event, payload, &ack);
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
        let username = peers
            .iter()
            .find(|p| p.id == peer_id)
            .map(|p| p.name.clone())
            .unwrap_or_default();
        s.identity = Some(Identity {
            room: room.clone(),
            peer_id: peer_id.clone(),
            username,
        });
        s.rejoin_attempt = 0;
        s.join_answer = answer.clone();
        let diff = s.tracker.joined(&room, &peer_id, peers, version);
        (diff, snapshot(&mut s))
    };
    emit.peers(Some(diff));
}

/// A successful `leave_room` answer.
fn left(shared: &Shared) {
    let (diff, emit) = {
        let Ok(mut s) = shared.try_borrow_mut() else {
            return;
        };
        let room = s.tracker.room().map(str::to_owned);
        s.identity = None;
        if let Some(t) = s.rejoin_timer.take() {
            js::clear_timeout(&t);
        }
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
        if !crate::auth::is_refusal(&err) {
            return;
        }
        let waiting = match shared.try_borrow_mut() {
            Ok(mut s) => {
                s.refused = true;
                // What was queued for this connection is not sent on a later one.
                let _ = js_sys::Reflect::set(&s.socket, &"sendBuffer".into(), &Array::new());
                std::mem::take(&mut s.awaiting_connect)
            }
            Err(_) => return,
        };
        let refusal = error("unauthorized", "The server refused the access token");
        connection_state(shared, "disconnected");
        call_all(&waiting, &[&refusal]);
        report(shared, &refusal);
    });
    on_event(shared, socket, "disconnect", |shared, reason| {
        let reconnect = match shared.try_borrow_mut() {
            Ok(mut s) => {
                if let Some(t) = s.rejoin_timer.take() {
                    js::clear_timeout(&t);
                }
                // socket.io-client does not reconnect by itself after the server closed
                // the connection, which is what a server does when it shuts down for a
                // restart: reconnect anyway, so that autoRejoin can work.
                (!s.closed && reason == "io server disconnect").then(|| s.socket.clone())
            }
            Err(_) => None,
        };
        connection_state(shared, "disconnected");
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

/// After a refused token, `join()` connects again (calling a token function anew).
fn reconnect_if_refused(shared: &Shared) {
    let socket = match shared.try_borrow_mut() {
        Ok(mut s) if s.refused && !s.closed => {
            s.refused = false;
            s.socket.clone()
        }
        _ => return,
    };
    connection_state(shared, "connecting");
    socket.connect();
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

fn connected(shared: &Shared) {
    let rejoin = match shared.try_borrow_mut() {
        Ok(mut s) => {
            s.awaiting_connect.clear();
            let again = s.ever_connected;
            s.ever_connected = true;
            s.rejoin_attempt = 0;
            again && s.auto_rejoin && s.identity.is_some()
        }
        Err(_) => return,
    };
    connection_state(shared, "connected");
    if rejoin {
        rejoin_now(shared);
    }
}

/// Joins the same room again with the same peer_id and username. While the server
/// still holds the peer_id for the dead connection (until its ping timeout), the
/// answer is `peer_id_taken`: retry with a growing delay.
fn rejoin_now(shared: &Shared) {
    let Some(id) = shared.try_borrow().ok().and_then(|s| s.identity.clone()) else {
        return;
    };
    let payload = join_payload(
        &JsValue::from_str(&id.room),
        &JsValue::from_str(&id.peer_id),
        &JsValue::from_str(&id.username),
    );
    let weak = Rc::downgrade(shared);
    request(shared, "join_room", &payload, move |result| {
        let Some(shared) = weak.upgrade() else { return };
        let current = shared.try_borrow().ok().and_then(|s| s.identity.clone());
        if current.as_ref() != Some(&id) {
            return; // the app joined elsewhere or left meanwhile
        }
        match result {
            Ok(answer) => joined(&shared, &answer),
            Err(e)
                if get_str(&e, "code").as_deref() == Some("peer_id_taken")
                    || get_str(&e, "code").as_deref() == Some("timeout") =>
            {
                schedule_rejoin(&shared)
            }
            Err(e) => {
                if let Ok(mut s) = shared.try_borrow_mut() {
                    s.identity = None;
                }
                report(&shared, &e);
            }
        }
    });
}

fn schedule_rejoin(shared: &Shared) {
    let Ok(mut s) = shared.try_borrow_mut() else {
        return;
    };
    let delay = (250u32 << s.rejoin_attempt.min(5)).min(5_000);
    s.rejoin_attempt += 1;
    let weak = Rc::downgrade(shared);
    let f = Closure::once_into_js(move || {
        if let Some(shared) = weak.upgrade() {
            if let Ok(mut s) = shared.try_borrow_mut() {
                s.rejoin_timer = None;
            }
            rejoin_now(&shared);
        }
    });
    s.rejoin_timer = Some(js::set_timeout(&f, delay));
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

/// Emits a `signal` to `to`; errors come back as `signal_error` (to onError).
pub(crate) fn send_signal(shared: &Shared, to: &JsValue, data: &JsValue) {
    let socket: Socket = match shared.try_borrow() {
        Ok(s) if !s.closed => s.socket.clone(),
        _ => return,
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

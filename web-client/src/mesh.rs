//! `PeerMesh`: one `RTCPeerConnection` per other peer of the client's room.
//!
//! Which connections exist follows `PeerTracker::link_plan`; who opens the data
//! channel and makes the first offer, and who is polite later, follows
//! `tracker::role`. Both rules live in `signalroom-core`; this file runs the W3C
//! perfect-negotiation pattern around them. Incoming signals of one peer are handled
//! one at a time, in arrival order, by a single task per connection, and ICE
//! candidates wait until a remote description is set.
//!
//! Every mesh signal carries the sender's session id for the pair (a timestamp). When
//! one side starts a new connection while the other still holds an old one (after a
//! server restart the two rejoin at different moments, so only one of them sees the
//! other leave), the larger session wins: the holder drops its old connection and
//! negotiates afresh; signals of an older session are dropped.

use crate::client::{
    MESH_MARK, MeshHook, Shared, SignalroomClient, attach_mesh, detach_mesh, report, send_signal,
};
use crate::js::{DataChannel, PeerConnection, call_all, error, get, get_str, object};
use js_sys::{Array, Function, Object};
use signalroom_core::tracker::{Role, role};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, spawn_local};

#[wasm_bindgen]
extern "C" {
    type MediaStream;
    #[wasm_bindgen(method, js_name = getTracks)]
    fn get_tracks(this: &MediaStream) -> Array;
}

/// One connection to one other peer, and its perfect-negotiation flags.
struct Link {
    peer_id: String,
    /// Tells this connection apart from an earlier one to the same peer.
    serial: u32,
    /// This side's session id for the pair, sent with every signal: ms since the epoch,
    /// so a newer connection (also from a reloaded page) has a larger one.
    session: f64,
    /// The other side's session, from its first signal to this connection.
    remote_session: Option<f64>,
    role: Role,
    pc: PeerConnection,
    channel: Option<DataChannel>,
    channel_announced: bool,
    making_offer: bool,
    ignore_offer: bool,
    answer_pending: bool,
    /// A remote description was set at least once: the first offer was exchanged.
    negotiated: bool,
    /// The waiting side needed a negotiation before the first offer came.
    deferred: bool,
    /// Candidates that came before any remote description.
    candidates: Vec<JsValue>,
    inbox: VecDeque<JsValue>,
    busy: bool,
}

struct MeshState {
    ice_servers: JsValue,
    label: String,
    links: Vec<Link>,
    streams: Vec<JsValue>,
    on_channel: Vec<Function>,
    on_track: Vec<Function>,
    on_state: Vec<Function>,
    closed: bool,
    serials: u32,
    last_session: f64,
}

struct MeshCore {
    client: Shared,
    state: RefCell<MeshState>,
}

/// The JavaScript class `PeerMesh` (web-client/README.md).
#[wasm_bindgen]
pub struct PeerMesh {
    core: Rc<MeshCore>,
}

#[wasm_bindgen]
impl PeerMesh {
    /// A mesh over `client`'s room (options: `iceServers`, `dataChannel`).
    #[wasm_bindgen(constructor)]
    pub fn new(
        client: &SignalroomClient,
        #[wasm_bindgen(unchecked_optional_param_type = "MeshOptions")] options: Option<Object>,
    ) -> PeerMesh {
        let options: JsValue = options.map(JsValue::from).unwrap_or(JsValue::UNDEFINED);
        let core = Rc::new(MeshCore {
            client: client.shared.clone(),
            state: RefCell::new(MeshState {
                ice_servers: get(&options, "iceServers"),
                label: get_str(&options, "dataChannel").unwrap_or_else(|| "data".into()),
                links: Vec::new(),
                streams: Vec::new(),
                on_channel: Vec::new(),
                on_track: Vec::new(),
                on_state: Vec::new(),
                closed: false,
                serials: 0,
                last_session: 0.0,
            }),
        });
        let weak: Weak<MeshCore> = Rc::downgrade(&core);
        attach_mesh(&core.client, weak);
        PeerMesh { core }
    }

    /// Adds a listener for data channels that open.
    #[wasm_bindgen(js_name = onChannel)]
    pub fn on_channel(
        &self,
        #[wasm_bindgen(
            unchecked_param_type = "(peer_id: string, channel: RTCDataChannel) => void"
        )]
        cb: Function,
    ) {
        if let Ok(mut s) = self.core.state.try_borrow_mut() {
            s.on_channel.push(cb);
        }
    }

    /// Adds a listener for remote tracks.
    #[wasm_bindgen(js_name = onTrack)]
    pub fn on_track(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(peer_id: string, ev: RTCTrackEvent) => void")]
        cb: Function,
    ) {
        if let Ok(mut s) = self.core.state.try_borrow_mut() {
            s.on_track.push(cb);
        }
    }

    /// Adds a listener for the connection state of each peer.
    #[wasm_bindgen(js_name = onState)]
    pub fn on_state(
        &self,
        #[wasm_bindgen(
            unchecked_param_type = "(peer_id: string, state: RTCPeerConnectionState) => void"
        )]
        cb: Function,
    ) {
        if let Ok(mut s) = self.core.state.try_borrow_mut() {
            s.on_state.push(cb);
        }
    }

    /// Sends the stream's tracks to every current and future peer.
    #[wasm_bindgen(js_name = addStream)]
    pub fn add_stream(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MediaStream")] stream: JsValue,
    ) {
        let Ok(mut s) = self.core.state.try_borrow_mut() else {
            return;
        };
        for link in &s.links {
            add_tracks(&link.pc, &stream);
        }
        s.streams.push(stream);
    }

    /// Sends `data` on the data channel to `peer_id`; false when it is not open.
    pub fn send(&self, peer_id: &str, data: &str) -> bool {
        let Ok(s) = self.core.state.try_borrow() else {
            return false;
        };
        s.links
            .iter()
            .find(|l| l.peer_id == peer_id)
            .and_then(open_channel)
            .is_some_and(|c| c.send(data).is_ok())
    }

    /// Sends `data` on every open data channel; returns how many took it.
    pub fn broadcast(&self, data: &str) -> u32 {
        let Ok(s) = self.core.state.try_borrow() else {
            return 0;
        };
        s.links
            .iter()
            .filter_map(open_channel)
            .filter(|c| c.send(data).is_ok())
            .count() as u32
    }

    /// The peers whose data channel is open.
    #[wasm_bindgen(js_name = connectedPeers, unchecked_return_type = "string[]")]
    pub fn connected_peers(&self) -> Array {
        let Ok(s) = self.core.state.try_borrow() else {
            return Array::new();
        };
        s.links
            .iter()
            .filter(|l| open_channel(l).is_some())
            .map(|l| JsValue::from_str(&l.peer_id))
            .collect()
    }

    /// Closes every connection, drops every listener and detaches from the client, so
    /// that a new `PeerMesh` gets the mesh signals.
    pub fn close(&self) {
        let weak: Weak<dyn MeshHook> = Rc::downgrade(&self.core) as Weak<MeshCore>;
        detach_mesh(&self.core.client, &weak);
        let closed = {
            let Ok(mut s) = self.core.state.try_borrow_mut() else {
                return;
            };
            s.closed = true;
            s.on_channel.clear();
            s.on_track.clear();
            s.on_state.clear();
            s.streams.clear();
            std::mem::take(&mut s.links)
        };
        for link in closed {
            shut(&link);
        }
    }
}

fn open_channel(link: &Link) -> Option<&DataChannel> {
    link.channel.as_ref().filter(|c| c.ready_state() == "open")
}

fn add_tracks(pc: &PeerConnection, stream: &JsValue) {
    for track in stream.unchecked_ref::<MediaStream>().get_tracks().iter() {
        let _ = pc.add_track(&track, stream);
    }
}

fn shut(link: &Link) {
    if let Some(c) = &link.channel {
        c.close();
    }
    link.pc.close();
}

impl MeshHook for MeshCore {
    fn peers_changed(self: Rc<Self>) {
        let core = self;
        let plan = {
            let Ok(s) = core.state.try_borrow() else {
                return;
            };
            if s.closed {
                return;
            }
            let Ok(c) = core.client.try_borrow() else {
                return;
            };
            c.tracker
                .link_plan(s.links.iter().map(|l| l.peer_id.as_str()))
        };
        let (closed, listeners) = {
            let Ok(mut s) = core.state.try_borrow_mut() else {
                return;
            };
            let (gone, kept) = std::mem::take(&mut s.links)
                .into_iter()
                .partition(|l| plan.close.contains(&l.peer_id));
            s.links = kept;
            (gone, s.on_state.clone())
        };
        for link in closed {
            shut(&link);
            call_all(
                &listeners,
                &[
                    &JsValue::from_str(&link.peer_id),
                    &JsValue::from_str("closed"),
                ],
            );
        }
        for spec in plan.open {
            open_link(&core, &spec.peer_id, spec.role);
        }
    }

    fn mesh_signal(self: Rc<Self>, from: &str, data: JsValue) {
        let core = self;
        let session = get(&data, "session").as_f64().unwrap_or(0.0);
        // What the other side's session says about the connection this side holds.
        let (exists, stale, replaced) = {
            let Ok(mut s) = core.state.try_borrow_mut() else {
                return;
            };
            if s.closed {
                return;
            }
            match s.links.iter().position(|l| l.peer_id == from) {
                None => (false, false, None),
                Some(i) => match s.links[i].remote_session {
                    Some(r) if session < r => (true, true, None),
                    // The other side started over (its page reloaded, or it closed the
                    // connection while this side was away): so does this side.
                    Some(r) if session > r => (false, false, Some(s.links.remove(i))),
                    _ => (true, false, None),
                },
            }
        };
        if stale {
            return;
        }
        if let Some(old) = replaced {
            shut(&old);
            let listeners = core
                .state
                .try_borrow()
                .map(|s| s.on_state.clone())
                .unwrap_or_default();
            call_all(
                &listeners,
                &[&JsValue::from_str(from), &JsValue::from_str("closed")],
            );
        }
        if !exists {
            let me = match core.client.try_borrow() {
                Ok(c) => c.tracker.self_id().map(str::to_owned),
                Err(_) => return,
            };
            let Some(me) = me else { return };
            open_link(&core, from, role(&me, from));
        }
        let start = {
            let Ok(mut s) = core.state.try_borrow_mut() else {
                return;
            };
            let Some(link) = s.links.iter_mut().find(|l| l.peer_id == from) else {
                return;
            };
            link.remote_session.get_or_insert(session);
            link.inbox.push_back(data);
            let start = !link.busy;
            link.busy = true;
            start.then_some(link.serial)
        };
        if let Some(serial) = start {
            spawn_local(drain(Rc::downgrade(&core), from.to_owned(), serial));
        }
    }
}

/// Runs `f` on the link to `peer` with `serial`, if it still exists.
fn with_link<R>(
    core: &Weak<MeshCore>,
    peer: &str,
    serial: u32,
    f: impl FnOnce(&mut Link) -> R,
) -> Option<R> {
    let core = core.upgrade()?;
    let mut s = core.state.try_borrow_mut().ok()?;
    let link = s
        .links
        .iter_mut()
        .find(|l| l.peer_id == peer && l.serial == serial)?;
    Some(f(link))
}

fn open_link(core: &Rc<MeshCore>, peer: &str, role: Role) {
    let ice = {
        let Ok(s) = core.state.try_borrow() else {
            return;
        };
        if s.closed || s.links.iter().any(|l| l.peer_id == peer) {
            return;
        }
        if Array::is_array(&s.ice_servers) {
            s.ice_servers.clone()
        } else {
            match core.client.try_borrow() {
                Ok(c) => get(&c.join_answer, "ice_servers"),
                Err(_) => return,
            }
        }
    };
    let config = if Array::is_array(&ice) {
        object(&[("iceServers", &ice)])
    } else {
        object(&[])
    };
    let pc = match PeerConnection::new(&config) {
        Ok(pc) => pc,
        Err(_) => {
            report(
                &core.client,
                &error(
                    "peer_connection_failed",
                    "Cannot create an RTCPeerConnection",
                ),
            );
            return;
        }
    };
    let (serial, session, label, streams) = {
        let Ok(mut s) = core.state.try_borrow_mut() else {
            return;
        };
        s.serials += 1;
        s.last_session = js_sys::Date::now().max(s.last_session + 1.0);
        (
            s.serials,
            s.last_session,
            s.label.clone(),
            s.streams.clone(),
        )
    };
    let weak = Rc::downgrade(core);
    let on = |event: &str, handler: fn(&Weak<MeshCore>, &str, u32, JsValue)| {
        let (weak, peer) = (weak.clone(), peer.to_owned());
        let f = Closure::<dyn FnMut(JsValue)>::new(move |ev: JsValue| {
            handler(&weak, &peer, serial, ev)
        });
        pc.listen(event, &f.into_js_value());
    };
    on("icecandidate", |core, peer, serial, ev| {
        let candidate = get(&ev, "candidate");
        if candidate.is_object() {
            send_mesh(core, peer, serial, "candidate", &candidate);
        }
    });
    on("negotiationneeded", |core, peer, serial, _| {
        spawn_local(negotiate(core.clone(), peer.to_owned(), serial));
    });
    on("connectionstatechange", |core, peer, serial, _| {
        let Some(state) = with_link(core, peer, serial, |l| {
            let state = l.pc.connection_state();
            if state == "failed" && l.role.makes_first_offer() {
                l.pc.restart_ice();
            }
            state
        }) else {
            return;
        };
        let listeners = core
            .upgrade()
            .and_then(|c| c.state.try_borrow().ok().map(|s| s.on_state.clone()))
            .unwrap_or_default();
        call_all(
            &listeners,
            &[&JsValue::from_str(peer), &JsValue::from_str(&state)],
        );
    });
    on("track", |core, peer, _, ev| {
        let listeners = core
            .upgrade()
            .and_then(|c| c.state.try_borrow().ok().map(|s| s.on_track.clone()))
            .unwrap_or_default();
        call_all(&listeners, &[&JsValue::from_str(peer), &ev]);
    });
    on("datachannel", |core, peer, serial, ev| {
        let channel: DataChannel = get(&ev, "channel").unchecked_into();
        wire_channel(core, peer, serial, channel);
    });
    for stream in &streams {
        add_tracks(&pc, stream);
    }
    let channel = if role.makes_first_offer() {
        pc.create_data_channel(&label).ok()
    } else {
        None
    };
    {
        let Ok(mut s) = core.state.try_borrow_mut() else {
            return;
        };
        s.links.push(Link {
            peer_id: peer.to_owned(),
            serial,
            session,
            remote_session: None,
            role,
            pc,
            channel: None,
            channel_announced: false,
            making_offer: false,
            ignore_offer: false,
            answer_pending: false,
            negotiated: false,
            deferred: false,
            candidates: Vec::new(),
            inbox: VecDeque::new(),
            busy: false,
        });
    }
    if let Some(channel) = channel {
        wire_channel(&weak, peer, serial, channel);
    } else {
        // The waiting side says hello, so that an initiator still holding a connection
        // from before (it never saw this side leave) starts a fresh one.
        send_mesh(&weak, peer, serial, "hello", &JsValue::TRUE);
    }
}

/// Keeps `channel` as the link's data channel and tells `onChannel` once it is open.
fn wire_channel(core: &Weak<MeshCore>, peer: &str, serial: u32, channel: DataChannel) {
    let Some(label) = core
        .upgrade()
        .and_then(|c| c.state.try_borrow().ok().map(|s| s.label.clone()))
    else {
        return;
    };
    if channel.label() != label {
        return;
    }
    let stored = with_link(core, peer, serial, |l| l.channel = Some(channel.clone()));
    if stored.is_none() {
        return;
    }
    let (weak, id) = (core.clone(), peer.to_owned());
    let f = Closure::<dyn FnMut(JsValue)>::new(move |_: JsValue| announce(&weak, &id, serial));
    channel.listen("open", &f.into_js_value());
    if channel.ready_state() == "open" {
        announce(core, peer, serial);
    }
}

fn announce(core: &Weak<MeshCore>, peer: &str, serial: u32) {
    let Some(Some(channel)) = with_link(core, peer, serial, |l| {
        if l.channel_announced {
            return None;
        }
        l.channel_announced = true;
        l.channel.clone()
    }) else {
        return;
    };
    let listeners = core
        .upgrade()
        .and_then(|c| c.state.try_borrow().ok().map(|s| s.on_channel.clone()))
        .unwrap_or_default();
    call_all(&listeners, &[&JsValue::from_str(peer), &channel]);
}

/// Sends the other side of this connection a signal marked for its PeerMesh.
fn send_mesh(core: &Weak<MeshCore>, to: &str, serial: u32, key: &str, value: &JsValue) {
    let Some(session) = with_link(core, to, serial, |l| l.session) else {
        return;
    };
    let Some(core) = core.upgrade() else { return };
    let data = object(&[
        (MESH_MARK, &JsValue::TRUE),
        ("session", &JsValue::from_f64(session)),
        (key, value),
    ]);
    send_signal(&core.client, &JsValue::from_str(to), &data);
}

/// `negotiationneeded`: make an offer, unless this is the waiting side before the
/// first offer came (then it negotiates right after answering it).
async fn negotiate(core: Weak<MeshCore>, peer: String, serial: u32) {
    let Some(Some(pc)) = with_link(&core, &peer, serial, |l| {
        if !l.role.makes_first_offer() && !l.negotiated {
            l.deferred = true;
            return None;
        }
        l.making_offer = true;
        Some(l.pc.clone())
    }) else {
        return;
    };
    if JsFuture::from(pc.set_local_description()).await.is_ok() {
        send_mesh(&core, &peer, serial, "description", &pc.local_description());
    }
    with_link(&core, &peer, serial, |l| l.making_offer = false);
}

/// Handles the link's inbox, one message at a time, until it is empty.
async fn drain(core: Weak<MeshCore>, peer: String, serial: u32) {
    loop {
        let next = with_link(&core, &peer, serial, |l| {
            let next = l.inbox.pop_front();
            l.busy = next.is_some();
            next
        });
        match next.flatten() {
            Some(msg) => handle(&core, &peer, serial, msg).await,
            None => return,
        }
    }
}

async fn handle(core: &Weak<MeshCore>, peer: &str, serial: u32, msg: JsValue) {
    let description = get(&msg, "description");
    if description.is_object() {
        let kind = get_str(&description, "type").unwrap_or_default();
        let Some(Some(pc)) = with_link(core, peer, serial, |l| {
            let ready = !l.making_offer && (l.pc.signaling_state() == "stable" || l.answer_pending);
            let collision = kind == "offer" && !ready;
            l.ignore_offer = !l.role.is_polite() && collision;
            if l.ignore_offer {
                return None;
            }
            l.answer_pending = kind == "answer";
            Some(l.pc.clone())
        }) else {
            return;
        };
        let ok = JsFuture::from(pc.set_remote_description(&description))
            .await
            .is_ok();
        let queued = with_link(core, peer, serial, |l| {
            l.answer_pending = false;
            l.negotiated |= ok;
            if ok {
                std::mem::take(&mut l.candidates)
            } else {
                Vec::new()
            }
        })
        .unwrap_or_default();
        for candidate in queued {
            let _ = JsFuture::from(pc.add_ice_candidate(&candidate)).await;
        }
        if !ok {
            return;
        }
        if kind == "offer" && JsFuture::from(pc.set_local_description()).await.is_ok() {
            send_mesh(core, peer, serial, "description", &pc.local_description());
        }
        let deferred = with_link(core, peer, serial, |l| {
            let run = l.deferred && l.pc.signaling_state() == "stable";
            l.deferred &= !run;
            run
        });
        if deferred == Some(true) {
            negotiate(core.clone(), peer.to_owned(), serial).await;
        }
    } else {
        let candidate = get(&msg, "candidate");
        if !candidate.is_object() {
            return;
        }
        let Some(Some(pc)) = with_link(core, peer, serial, |l| {
            if l.pc.remote_description().is_null() {
                l.candidates.push(candidate.clone());
                None
            } else {
                Some(l.pc.clone())
            }
        }) else {
            return;
        };
        // A candidate of an offer this side ignored fails; that is expected.
        let _ = JsFuture::from(pc.add_ice_candidate(&candidate)).await;
    }
}

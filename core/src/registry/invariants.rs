//! The registry's invariants as one checker, shared by the property tests
//! (`tests`) and the fuzz targets (`fuzz/`), so they are written once.
//!
//! A [`Witness`] plays every connection: it builds each connection's view of
//! its room only from what the registry told it (join replies and
//! deliveries), then [`Witness::check`] compares those views and the
//! registry's own state against the invariants listed in `registry.rs`. Any
//! breach panics with a message naming it; that is what a fuzzer reports.
//! Hidden from the docs: a test aid, not part of the API.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;

use super::{Delivery, Holder, Outcome, Registry};
use crate::protocol::{Event, Payload, Peer};

/// What one connection believes about its room, built only from what it was sent.
#[derive(Debug, Clone, Default)]
struct View {
    room: Option<String>,
    version: u64,
    /// The joiner's first list may repeat its join's version once.
    fresh: bool,
    peers: Vec<Peer>,
}

impl View {
    fn apply(&mut self, conn: &impl Debug, ev: &Event) {
        let (room, version) = match &ev.payload {
            Payload::PeerList(l) => (&l.room_name, l.version),
            Payload::PeerJoined(j) => (&j.room_name, j.version),
            Payload::PeerLeft(l) => (&l.room_name, l.version),
            _ => return,
        };
        assert_eq!(
            self.room.as_ref(),
            Some(room),
            "conn {conn:?} told of a room it is not in"
        );
        let repeat = self.fresh && version == self.version;
        assert!(
            repeat || version == self.version + 1,
            "conn {conn:?}: version {version} after {}",
            self.version
        );
        self.fresh = false;
        self.version = version;
        match &ev.payload {
            Payload::PeerList(l) => self.peers = l.peers.clone(),
            Payload::PeerJoined(j) => {
                match self.peers.iter_mut().find(|p| p.peer_id == j.peer.peer_id) {
                    Some(p) => *p = j.peer.clone(),
                    None => self.peers.push(j.peer.clone()),
                }
            }
            Payload::PeerLeft(l) => self.peers.retain(|p| p.peer_id != l.peer_id),
            _ => {}
        }
    }
}

/// Every connection's view of its room, fed with what the registry said.
#[derive(Debug, Clone)]
pub struct Witness<C> {
    views: HashMap<C, View>,
}

impl<C> Default for Witness<C> {
    fn default() -> Self {
        Self {
            views: HashMap::new(),
        }
    }
}

impl<C: Clone + Eq + Hash + Debug> Witness<C> {
    /// Feeds the outcome of a command `conn` sent: its reply, then the deliveries.
    pub fn outcome(&mut self, conn: &C, o: &Outcome<C>) {
        if let Some(reply) = &o.reply {
            match &reply.event.payload {
                Payload::JoinSuccess(j) => {
                    self.views.insert(
                        conn.clone(),
                        View {
                            room: Some(j.room_name.clone()),
                            version: j.version,
                            fresh: true,
                            peers: j.peers.clone(),
                        },
                    );
                }
                Payload::LeaveSuccess(_) => {
                    self.views.insert(conn.clone(), View::default());
                }
                _ => {}
            }
        }
        self.deliveries(&o.deliveries);
    }

    /// `conn` is gone: it forgets its room.
    pub fn disconnected(&mut self, conn: &C) {
        self.views.insert(conn.clone(), View::default());
    }

    /// Feeds deliveries not caused by a connection (REST, expiry, disconnects).
    pub fn deliveries(&mut self, deliveries: &[Delivery<C>]) {
        for d in deliveries {
            for (i, c) in d.to.iter().enumerate() {
                assert!(
                    !d.to[..i].contains(c),
                    "a delivery names connection {c:?} twice"
                );
                self.views.entry(c.clone()).or_default().apply(c, &d.event);
            }
        }
    }

    /// Panics unless the registry and every view satisfy the invariants:
    /// no empty room; no room over capacity; peer ids unique per room; a
    /// connection in at most one room, matching its session; and every
    /// member's view equal to its room (so each change reached it once, in
    /// version order, with nothing missed).
    pub fn check(&self, r: &Registry<C>) {
        let max = r.config.max_peers;
        let mut seen_conns: HashMap<&C, &String> = HashMap::new();
        for (name, room) in &r.rooms {
            assert!(!room.members.is_empty(), "empty room {name} listed");
            assert!(room.members.len() <= max, "room {name} over capacity");
            let mut ids: Vec<_> = room.members.iter().map(|m| &m.peer.peer_id).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(
                ids.len(),
                room.members.len(),
                "duplicate peer ids in {name}"
            );
            for m in &room.members {
                if let Holder::Socket { conn, .. } = &m.holder {
                    assert!(
                        seen_conns.insert(conn, name).is_none(),
                        "conn {conn:?} in two rooms"
                    );
                    assert!(r.is_open(conn), "closed conn {conn:?} holds an entry");
                    let s = &r.sessions[conn];
                    assert_eq!((&s.room_name, &s.peer_id), (name, &m.peer.peer_id));
                    let view = self.views.get(conn).cloned().unwrap_or_default();
                    assert_eq!(view.room.as_ref(), Some(name));
                    assert_eq!(view.version, room.version, "conn {conn:?} missed a change");
                    assert_eq!(view.peers, room.peers(), "conn {conn:?} sees another list");
                }
            }
        }
        assert_eq!(
            seen_conns.len(),
            r.sessions.len(),
            "a session without an entry"
        );
        let listed: usize = r.rooms().values().map(|i| i.peer_count).sum();
        assert_eq!(listed, r.peer_count());
        if let Some((at, _, _)) = r.leases.first() {
            assert_eq!(r.next_expiry(), Some(*at));
        }
        let http_peers = r
            .rooms
            .values()
            .flat_map(|room| &room.members)
            .filter(|m| matches!(m.holder, Holder::Http { .. }))
            .count();
        assert_eq!(http_peers, r.leases.len(), "a lease without its HTTP peer");
    }
}

//! Putting back a member that a cluster lost while its connection lived on.
//!
//! When Redis comes back empty after an outage during which a room's owner
//! died, the room is gone from the cluster although some of its members are
//! still connected to other nodes. Their nodes know who they were (peer,
//! mode) and the last version they delivered, and send `restore`
//! (`docs/cluster.md`, "Redis returns, even empty"). The member goes back in
//! its place by join time, keeping its `joined_at`; a room created for it
//! starts above that version (`floor`), so nobody ever receives an older list
//! after a newer one. Everyone is told as of a join, except a delta member
//! being restored: it never saw itself leave, and hears of the next change
//! with a version gap, after which it asks for the list.

use std::hash::Hash;

use super::{Change, Delivery, Holder, Member, Registry, Room, Session};
use crate::protocol::{Peer, UpdateMode};
use crate::registry::{ChangeKind, RoomChange};
use crate::time::Timestamp;

/// Why a member could not be put back; nothing changed then, and its node
/// disconnects it so that its client joins again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The connection is not open here.
    #[error("the connection is closed")]
    Closed,
    /// The connection is in another room.
    #[error("the connection is in another room")]
    Elsewhere,
    /// Someone else holds the peer id now.
    #[error("peer id {0} is taken")]
    PeerIdTaken(String),
    /// The room filled up meanwhile.
    #[error("room {0} is full")]
    RoomFull(String),
}

impl<C: Clone + Eq + Hash> Registry<C> {
    /// Puts `peer`, held by `conn` in `mode`, back into `room_name`, at its
    /// place by `joined_at`; creates the room (at `now`) if needed. The room's
    /// version becomes at least `floor` before the change is counted. Doing it
    /// again is a no-op.
    pub fn restore(
        &mut self,
        conn: &C,
        room_name: &str,
        peer: Peer,
        mode: UpdateMode,
        floor: u64,
        now: Timestamp,
    ) -> Result<Vec<Delivery<C>>, RestoreError> {
        if !self.is_open(conn) {
            return Err(RestoreError::Closed);
        }
        if let Some(s) = self.sessions.get(conn) {
            if s.room_name == room_name && s.peer_id == peer.peer_id {
                return Ok(Vec::new());
            }
            return Err(RestoreError::Elsewhere);
        }
        if let Some(room) = self.rooms.get(room_name) {
            if room.position(&peer.peer_id).is_some() {
                return Err(RestoreError::PeerIdTaken(peer.peer_id));
            }
            if room.members.len() >= self.config.max_peers {
                return Err(RestoreError::RoomFull(room_name.to_owned()));
            }
        }
        let room = self
            .rooms
            .entry(room_name.to_owned())
            .or_insert_with(|| Room {
                name: room_name.to_owned(),
                created_at: now.to_rfc3339(),
                version: 0,
                members: Vec::new(),
            });
        let started = room.members.is_empty();
        room.version = room.version.max(floor);
        let at = room
            .members
            .iter()
            .position(|m| m.peer.joined_at > peer.joined_at)
            .unwrap_or(room.members.len());
        room.members.insert(
            at,
            Member {
                peer: peer.clone(),
                holder: Holder::Socket {
                    conn: conn.clone(),
                    mode,
                },
            },
        );
        let deliveries = room.announce(Change::Joined(&peer), Some(conn));
        let version = room.version;
        if started {
            self.changes.push(RoomChange {
                room_name: room_name.to_owned(),
                version,
                kind: ChangeKind::RoomStarted,
            });
        }
        self.changes.push(RoomChange {
            room_name: room_name.to_owned(),
            version,
            kind: ChangeKind::PeerJoined(peer.clone()),
        });
        self.sessions.insert(
            conn.clone(),
            Session {
                room_name: room_name.to_owned(),
                peer_id: peer.peer_id,
            },
        );
        Ok(deliveries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Payload;
    use crate::registry::{ClientEvent, Config};
    use serde_json::json;
    use serde_json::value::RawValue;

    const T0: Timestamp = Timestamp(1_700_000_000_000);

    fn reg() -> Registry<u32> {
        Registry::new(Config {
            max_peers: 3,
            ..Config::default()
        })
    }

    fn join(r: &mut Registry<u32>, conn: u32, peer: &str, mode: &str, at: Timestamp) {
        r.connect(&conn);
        let p = json!({"room_name": "room", "peer_id": peer, "username": peer, "updates": mode});
        let p = RawValue::from_string(p.to_string()).expect("json");
        let o = r.handle(&conn, ClientEvent::JoinRoom, Some(&p), false, at);
        assert!(o.reply.and_then(|r| r.error_body().cloned()).is_none());
    }

    fn peer(id: &str, at: Timestamp) -> Peer {
        Peer {
            peer_id: id.into(),
            username: id.into(),
            joined_at: at.to_rfc3339(),
        }
    }

    fn ids(r: &Registry<u32>) -> Vec<String> {
        let room = r.room("room").expect("exists");
        room.peers.into_iter().map(|p| p.peer_id).collect()
    }

    #[test]
    fn a_lost_room_comes_back_above_the_floor_with_the_original_join_time() {
        let mut r = reg();
        r.connect(&1);
        let p = peer("a", T0);
        let d = r
            .restore(
                &1,
                "room",
                p.clone(),
                UpdateMode::Full,
                7,
                T0.plus_ms(60_000),
            )
            .expect("restored");
        let room = r.room("room").expect("exists");
        assert_eq!(room.version, 8);
        assert_eq!(room.peers.as_slice(), std::slice::from_ref(&p));
        assert_eq!(room.created_at, T0.plus_ms(60_000).to_rfc3339());
        assert_eq!(r.membership(&1), Some(("room", "a")));
        // A full-mode member hears of it (its own list comes back).
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].to, [1]);
        let kinds: Vec<(u64, ChangeKind)> = r
            .take_changes()
            .into_iter()
            .map(|c| (c.version, c.kind))
            .collect();
        assert_eq!(
            kinds,
            [(8, ChangeKind::RoomStarted), (8, ChangeKind::PeerJoined(p))]
        );
    }

    #[test]
    fn a_member_goes_back_in_its_place_by_join_time_and_everyone_is_told() {
        let mut r = reg();
        join(&mut r, 1, "a", "full", T0);
        join(&mut r, 2, "c", "delta", T0.plus_ms(20));
        r.take_changes();
        r.connect(&3);
        let d = r
            .restore(
                &3,
                "room",
                peer("b", T0.plus_ms(10)),
                UpdateMode::Delta,
                1,
                T0,
            )
            .expect("restored");
        assert_eq!(ids(&r), ["a", "b", "c"]);
        assert_eq!(r.room("room").expect("exists").version, 3);
        let told: Vec<(&str, Vec<u32>)> = d
            .iter()
            .map(|d| (d.event.name.as_str(), d.to.clone()))
            .collect();
        // The restored delta member (3) is not told of itself.
        assert_eq!(
            told,
            [("peer_list_updated", vec![1]), ("peer_joined", vec![2])]
        );
        let Payload::PeerJoined(j) = &d[1].event.payload else {
            panic!("a peer_joined");
        };
        assert_eq!(
            (j.peer.peer_id.as_str(), j.version, j.total_peers),
            ("b", 3, 3)
        );
        // Again: nothing more.
        let again = r.restore(
            &3,
            "room",
            peer("b", T0.plus_ms(10)),
            UpdateMode::Delta,
            1,
            T0,
        );
        assert_eq!(again.map(|d| d.len()), Ok(0));
        assert_eq!(r.room("room").expect("exists").version, 3);
    }

    #[test]
    fn the_floor_never_lowers_a_version() {
        let mut r = reg();
        join(&mut r, 1, "a", "full", T0);
        join(&mut r, 2, "b", "full", T0);
        r.connect(&3);
        r.restore(&3, "room", peer("c", T0), UpdateMode::Full, 0, T0)
            .expect("restored");
        assert_eq!(r.room("room").expect("exists").version, 3);
    }

    #[test]
    fn a_member_that_cannot_go_back_changes_nothing() {
        let mut r = reg();
        join(&mut r, 1, "a", "full", T0);
        join(&mut r, 2, "b", "full", T0);
        r.connect(&4);
        let p = json!({"room_name": "other", "peer_id": "x", "username": "x"});
        let p = RawValue::from_string(p.to_string()).expect("json");
        r.handle(&4, ClientEvent::JoinRoom, Some(&p), false, T0);
        r.take_changes();
        let before = r.rooms();
        assert_eq!(
            r.restore(&3, "room", peer("c", T0), UpdateMode::Full, 0, T0)
                .err(),
            Some(RestoreError::Closed)
        );
        r.connect(&3);
        assert_eq!(
            r.restore(&3, "room", peer("a", T0), UpdateMode::Full, 0, T0)
                .err(),
            Some(RestoreError::PeerIdTaken("a".into()))
        );
        assert_eq!(
            r.restore(&4, "room", peer("c", T0), UpdateMode::Full, 0, T0)
                .err(),
            Some(RestoreError::Elsewhere)
        );
        assert_eq!(r.rooms(), before);
        assert!(r.take_changes().is_empty());
        join(&mut r, 5, "d", "full", T0);
        r.take_changes();
        let before_full = r.rooms();
        assert_eq!(
            r.restore(&3, "room", peer("c", T0), UpdateMode::Full, 0, T0)
                .err(),
            Some(RestoreError::RoomFull("room".into()))
        );
        assert_eq!(r.rooms(), before_full);
        assert_eq!(r.membership(&3), None);
        assert!(r.take_changes().is_empty());
    }
}

//! Room snapshots: one room's whole state as a plain value, out and back in.
//!
//! A cluster keeps each room in one owner's registry and commits a snapshot of
//! it to shared storage after every change; when the owner is gone, another
//! node imports the last snapshot and carries on at the next version (see
//! `docs/cluster.md`). So a snapshot must round-trip exactly: members in list
//! order, the version, each socket's connection and update mode, each HTTP
//! peer's lease. It lives beside the registry (a child module) because it reads
//! and rebuilds the registry's private state; everything else in the registry
//! stays unaware of it. Removing a whole set of connections (a dead node's),
//! and a connection that moved to a room owned elsewhere, are here too: the
//! other things a cluster does to a room from outside.

use serde::{Deserialize, Serialize};

use super::{Delivery, Holder, LeaveReason, Member, Registry, Room, Session};
use crate::protocol::{Peer, UpdateMode};
use crate::time::Timestamp;

use std::collections::HashSet;
use std::hash::Hash;

/// One room as a value: what an owner commits and a new owner imports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSnapshot<C> {
    /// The room's name.
    pub name: String,
    /// When it was created (RFC 3339, as listings show it).
    pub created_at: String,
    /// Its version: the number of changes since it was created.
    pub version: u64,
    /// Its members, oldest first.
    pub members: Vec<MemberSnapshot<C>>,
}

/// One entry of a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSnapshot<C> {
    /// The peer as lists show it.
    pub peer: Peer,
    /// Who holds the entry.
    pub holder: HolderSnapshot<C>,
}

/// Who holds an entry: a connection, or a REST lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum HolderSnapshot<C> {
    /// A Socket.IO connection and how it hears of changes.
    Socket {
        /// The connection.
        conn: C,
        /// Full lists or deltas.
        mode: UpdateMode,
    },
    /// An HTTP peer until its lease runs out.
    Http {
        /// The lease's end, milliseconds since the Unix epoch.
        expires_at: u64,
    },
}

/// Why a snapshot was refused; the registry is unchanged then.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// A room has at least one member and a version of at least 1.
    #[error("room {0} has no members or version 0")]
    Empty(String),
    /// Peer ids are unique within a room.
    #[error("room {room} lists peer {peer_id} twice")]
    DuplicatePeer {
        /// The room.
        room: String,
        /// The repeated peer id.
        peer_id: String,
    },
    /// A connection holds one entry in at most one room.
    #[error("room {room} holds a connection that is already in a room")]
    ConnectionTaken {
        /// The room being imported.
        room: String,
    },
}

impl<C: Clone + Eq + Hash> Registry<C> {
    /// The room `name` as a snapshot, or `None` if it does not exist.
    pub fn export_room(&self, name: &str) -> Option<RoomSnapshot<C>> {
        let room = self.rooms.get(name)?;
        let members = room
            .members
            .iter()
            .map(|m| MemberSnapshot {
                peer: m.peer.clone(),
                holder: match &m.holder {
                    Holder::Socket { conn, mode } => HolderSnapshot::Socket {
                        conn: conn.clone(),
                        mode: *mode,
                    },
                    Holder::Http { expires_at } => HolderSnapshot::Http {
                        expires_at: expires_at.0,
                    },
                },
            })
            .collect();
        Some(RoomSnapshot {
            name: room.name.clone(),
            created_at: room.created_at.clone(),
            version: room.version,
            members,
        })
    }

    /// Makes the room exactly what `snapshot` says, replacing any room of that
    /// name, without announcing or recording anything (the members already
    /// heard of every change up to its version). Its socket members count as
    /// open. Refused, changing nothing, when the snapshot is inconsistent or
    /// one of its connections is in another room here.
    pub fn import_room(&mut self, snapshot: RoomSnapshot<C>) -> Result<(), SnapshotError> {
        let name = snapshot.name.clone();
        if snapshot.members.is_empty() || snapshot.version == 0 {
            return Err(SnapshotError::Empty(name));
        }
        let mut conns: Vec<&C> = Vec::new();
        for (i, m) in snapshot.members.iter().enumerate() {
            let id = &m.peer.peer_id;
            if snapshot.members[..i].iter().any(|o| &o.peer.peer_id == id) {
                return Err(SnapshotError::DuplicatePeer {
                    room: name,
                    peer_id: id.clone(),
                });
            }
            if let HolderSnapshot::Socket { conn, .. } = &m.holder {
                let elsewhere = self.sessions.get(conn).is_some_and(|s| s.room_name != name);
                if elsewhere || conns.contains(&conn) {
                    return Err(SnapshotError::ConnectionTaken { room: name });
                }
                conns.push(conn);
            }
        }
        self.forget_room(&name);
        let mut members = Vec::with_capacity(snapshot.members.len());
        for m in snapshot.members {
            let holder = match m.holder {
                HolderSnapshot::Socket { conn, mode } => {
                    // A member is open by the registry's invariant; its node
                    // says when it closes.
                    self.open.insert(conn.clone());
                    self.sessions.insert(
                        conn.clone(),
                        Session {
                            room_name: name.clone(),
                            peer_id: m.peer.peer_id.clone(),
                        },
                    );
                    Holder::Socket { conn, mode }
                }
                HolderSnapshot::Http { expires_at } => {
                    let at = Timestamp(expires_at);
                    self.leases
                        .insert((at, name.clone(), m.peer.peer_id.clone()));
                    Holder::Http { expires_at: at }
                }
            };
            members.push(Member {
                peer: m.peer,
                holder,
            });
        }
        self.rooms.insert(
            name.clone(),
            Room {
                name,
                created_at: snapshot.created_at,
                version: snapshot.version,
                members,
            },
        );
        Ok(())
    }

    /// Drops the room `name` with its memberships and leases, announcing
    /// nothing (a node that lost the room's ownership stops serving it). Its
    /// connections are closed here: another registry serves them now.
    /// Returns what it held.
    pub fn forget_room(&mut self, name: &str) -> Option<RoomSnapshot<C>> {
        let snapshot = self.export_room(name)?;
        let room = self.rooms.remove(name)?;
        for m in room.members {
            match m.holder {
                Holder::Socket { conn, .. } => {
                    self.sessions.remove(&conn);
                    self.open.remove(&conn);
                }
                Holder::Http { expires_at } => {
                    self.leases
                        .remove(&(expires_at, name.to_owned(), m.peer.peer_id));
                }
            }
        }
        Some(snapshot)
    }

    /// The names of every room, in order.
    pub fn room_names(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(String::as_str)
    }

    /// Every connection that holds an entry, room by room (by name), each in list order.
    pub fn member_conns(&self) -> impl Iterator<Item = &C> {
        self.rooms.values().flat_map(|room| {
            room.members.iter().filter_map(|m| match &m.holder {
                Holder::Socket { conn, .. } => Some(conn),
                Holder::Http { .. } => None,
            })
        })
    }

    /// `conn` joined a room that another node owns: it leaves `room_name`
    /// here with the reason `moved`, the others are told, and it stays open.
    /// Nothing happens unless it is still in that room (a registry that holds
    /// both rooms has moved it already, in its own `join`).
    pub fn moved_out(&mut self, conn: &C, room_name: &str) -> Vec<Delivery<C>> {
        if self
            .sessions
            .get(conn)
            .is_none_or(|s| s.room_name != room_name)
        {
            return Vec::new();
        }
        self.remove_conn(conn, LeaveReason::Moved)
    }

    /// Drops every socket member whose connection matches `gone` (a dead
    /// node's), as [`Registry::drop_connection`] does: closed, and one change
    /// (reason `dropped`) and one version per peer, room by room and in list
    /// order, announced to the members that remain (never to the removed ones,
    /// which have nobody left to tell).
    pub fn remove_conns(&mut self, mut gone: impl FnMut(&C) -> bool) -> Vec<Delivery<C>> {
        let doomed: Vec<C> = self.member_conns().filter(|c| gone(c)).cloned().collect();
        let removed: HashSet<&C> = doomed.iter().collect();
        let mut deliveries = Vec::new();
        for conn in &doomed {
            deliveries.extend(self.drop_connection(conn));
        }
        for d in &mut deliveries {
            d.to.retain(|c| !removed.contains(c));
        }
        deliveries.retain(|d| !d.to.is_empty());
        deliveries
    }
}

#[cfg(test)]
mod tests;

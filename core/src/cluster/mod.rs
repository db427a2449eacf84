//! What a cluster of signalroom nodes needs beyond one node's rules, still
//! with no I/O.
//!
//! In a cluster each room is owned by one node, which runs the ordinary
//! [`Registry`](crate::Registry) for it; other nodes forward their clients'
//! commands to the owner and deliver its events (`docs/cluster.md`). That
//! needs connection ids that say which node holds a socket ([`ConnId`]), a
//! way to drop a dead node's members ([`Registry::remove_node`](crate::Registry::remove_node)),
//! and, on each receiving node, a [`Resequencer`] that hands a room's batches
//! to the sockets in version order whichever path they came by; and the
//! messages nodes exchange ([`wire`]). Room snapshots (export, import, restore)
//! live beside the registry, in `registry/snapshot.rs` and `registry/restore.rs`.

mod conn;
mod home;
mod owner;
mod resequencer;
mod settings;
pub mod wire;

pub use conn::{ConnId, NodeIdError, split_by_node, validate_node_id};
pub use home::{Action, Home};
pub use owner::{Commit, Owner, ReadBack, Step, by_node, read_back};
pub use resequencer::{Gap, Released, Resequencer, Slot};
pub use settings::{SETTINGS_FRESH_MS, disagreeing};

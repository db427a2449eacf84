//! # signalroom-core
//!
//! Every rule of signalroom, with no I/O: the wire types ([`protocol`]), the
//! errors with their stable codes ([`error`]), the checks on what clients send
//! ([`validate`]) and the room registry ([`registry`]) that the server drives,
//! plus the peer tracker and the room membership ([`membership`]) that the
//! browser library drives.
//!
//! Modelled on str0m's sans-I/O design: no threads, no async, no clock and no
//! randomness. Time comes in as a [`time::Timestamp`] argument; results come
//! out as values saying which event goes to whom. The adapters (`server`,
//! `web-client`) only move bytes, so everything here is tested natively and
//! the same code compiles for `wasm32-unknown-unknown`.

pub mod access;
pub mod error;
pub mod membership;
pub mod protocol;
pub mod rate;
pub mod registry;
pub mod time;
pub mod tracker;
pub mod validate;
pub mod webhook;

pub use access::{Grant, Turn};
pub use error::{Error, ErrorBody, ErrorCode};
pub use rate::{EventRate, EventRateConfig, Verdict};
pub use registry::{
    ChangeKind, ClientEvent, Config, Delivery, LeaveReason, Outcome, Registry, Reply, RoomChange,
};
pub use time::Timestamp;

//! The one shared state: the core registry plus the live sockets, behind one lock.
//!
//! Why one `std::sync::Mutex` and emitting while holding it: the protocol
//! promises every member a room's changes in version order. Each command runs
//! the registry and queues its events on the recipients' sockets under the
//! same lock, so the queue order is the version order. Queuing never blocks
//! (socketioxide's `emit` only pushes to a bounded channel) and nothing here
//! awaits, so the lock is held for microseconds.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use serde_json::value::{RawValue, to_raw_value};
use signalroom_core::protocol::Payload;
use signalroom_core::{Delivery, Registry, Reply, Timestamp};
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::socket::Sid;
use socketioxide::{BroadcastError, SendError, SocketError, SocketIo};
use tokio::sync::Notify;

use crate::health::Health;
use crate::metrics;

/// The registry and the sockets it addresses.
pub struct Inner {
    /// Rooms and memberships.
    pub registry: Registry<Sid>,
    sockets: HashMap<Sid, SocketRef>,
    io: Option<SocketIo>,
}

/// Shared server state, cloned into every handler as an `Arc`.
pub struct Hub {
    inner: Mutex<Inner>,
    /// Woken whenever a lease may have moved earlier, so the expiry timer re-arms.
    pub leases_changed: Notify,
    /// What `/healthz` answers.
    pub health: Health,
}

/// The current wall-clock time for the registry.
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
}

impl Hub {
    /// A hub around an empty registry.
    pub fn new(config: signalroom_core::Config) -> Self {
        Self {
            inner: Mutex::new(Inner {
                registry: Registry::new(config),
                sockets: HashMap::new(),
                io: None,
            }),
            leases_changed: Notify::new(),
            health: Health::default(),
        }
    }

    /// Drops connections that fell behind (their queue was full): they leave
    /// their rooms now, as a dead connection would, and the others are told;
    /// then each is asked to disconnect. socketioxide refuses that while the
    /// queue is full, so the heartbeat, which cannot queue its ping either,
    /// closes the transport; the client reconnects and rejoins with a fresh list.
    /// Call without holding the lock.
    pub fn drop_slow(&self, mut slow: Vec<SocketRef>) {
        let mut dropped = Vec::new();
        while let Some(socket) = slow.pop() {
            if dropped.iter().any(|s: &SocketRef| s.id == socket.id) {
                continue;
            }
            let mut inner = self.lock();
            if inner.registry.membership(&socket.id).is_some() {
                metrics::left();
            }
            let deliveries = inner.registry.disconnect(&socket.id);
            slow.extend(inner.deliver(&deliveries));
            drop(inner);
            dropped.push(socket);
        }
        for socket in dropped {
            socket.disconnect().ok();
        }
    }

    /// Takes the lock. A poisoned lock (a panic elsewhere) still guards
    /// consistent data: the registry's commands are all-or-nothing.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    /// Gives the hub the Socket.IO handle it broadcasts through.
    pub fn set_io(&mut self, io: SocketIo) {
        self.io = Some(io);
    }

    /// Registers a connected socket so deliveries can reach it. Each socket
    /// joins an adapter room named by its id, so one broadcast can address
    /// any set of sockets.
    pub fn add_socket(&mut self, socket: SocketRef) {
        socket.join(socket.id);
        self.sockets.insert(socket.id, socket);
    }

    /// Forgets a socket (after the registry dropped it).
    pub fn remove_socket(&mut self, sid: &Sid) {
        self.sockets.remove(sid);
    }

    /// How many sockets are connected.
    pub fn socket_count(&self) -> usize {
        self.sockets.len()
    }

    /// Emits `reply` to `socket` (if it is emitted) and acks with it.
    pub fn answer(&self, socket: &SocketRef, ack: AckSender, reply: &Reply) -> Vec<SocketRef> {
        let mut slow = Vec::new();
        if let Some(body) = reply.error_body() {
            metrics::error(body.code);
        }
        let Some(raw) = encode(&reply.event.payload) else {
            return slow;
        };
        let emitted = if reply.emit {
            socket.emit(reply.event.name.as_str(), &raw)
        } else {
            Ok(())
        };
        let acked = ack.send(&raw);
        if is_full(&emitted) || is_full(&acked) {
            metrics::dropped(1);
            slow.push(socket.clone());
        }
        slow
    }

    /// Emits every delivery, in order. Returns the sockets whose queues were
    /// full: the caller disconnects them once the lock is released (a client
    /// that cannot keep up would otherwise silently miss changes).
    pub fn deliver(&self, deliveries: &[Delivery<Sid>]) -> Vec<SocketRef> {
        let mut slow = Vec::new();
        for d in deliveries {
            let Some(raw) = encode(&d.event.payload) else {
                continue;
            };
            if matches!(d.event.payload, Payload::Signal(_)) {
                metrics::signal_relayed();
            }
            if d.to.len() > 1
                && let Some(io) = &self.io
            {
                self.broadcast(io, d, &raw);
                continue;
            }
            for sid in &d.to {
                let Some(socket) = self.sockets.get(sid) else {
                    continue;
                };
                let sent = socket.emit(d.event.name.as_str(), &raw);
                if is_full(&sent) {
                    metrics::dropped(1);
                    tracing::warn!(%sid, "dropping a connection that cannot keep up");
                    slow.push(socket.clone());
                }
            }
        }
        slow
    }
}

impl Inner {
    /// One packet, encoded once and shared by every recipient's queue: a
    /// full list to a room of P costs one encoding, not P copies.
    ///
    /// The local adapter's broadcast completes synchronously (its future is
    /// ready at once), so it is queued here, under the lock, in order.
    fn broadcast(&self, io: &SocketIo, d: &Delivery<Sid>, raw: &RawValue) {
        let rooms: Vec<Cow<'static, str>> =
            d.to.iter().map(|sid| Cow::Owned(sid.to_string())).collect();
        match io.to(rooms).emit(d.event.name.as_str(), raw).now_or_never() {
            Some(Ok(())) => {}
            Some(Err(BroadcastError::Socket(errors))) => {
                // Closed sockets are leaving anyway. A full queue
                // (--max-queued-packets) means a recipient far behind: its
                // heartbeat cannot queue a ping, so it is closed, reconnects
                // and rejoins with a fresh list.
                let full = errors
                    .iter()
                    .filter(|e| matches!(e, SocketError::InternalChannelFull))
                    .count();
                if full > 0 {
                    metrics::dropped(full);
                    tracing::warn!(
                        full,
                        event = d.event.name.as_str(),
                        "recipients' queues are full"
                    );
                }
            }
            Some(Err(e)) => tracing::error!(error = %e, "broadcast failed"),
            None => tracing::error!("broadcast did not complete synchronously"),
        }
    }
}

/// Whether a send failed because the socket's queue is full (not merely closed).
fn is_full<T>(result: &Result<T, SendError>) -> bool {
    matches!(
        result,
        Err(SendError::Socket(SocketError::InternalChannelFull))
    )
}

/// Serializes a payload once, to be copied verbatim into every packet.
fn encode(payload: &Payload) -> Option<Box<RawValue>> {
    match to_raw_value(payload) {
        Ok(raw) => Some(raw),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize a payload");
            None
        }
    }
}

//! The one place that drives the core: the registry plus the live sockets,
//! behind one lock, and the sending of every outcome.
//!
//! Why one `std::sync::Mutex` and queueing while holding it: the protocol
//! promises every member a room's changes in version order. Each command runs
//! the registry and queues its events on the recipients' sockets under the
//! same lock, so the queue order is the version order. Queueing never blocks
//! (it only pushes to a bounded channel) and nothing here awaits, so the lock
//! is held for microseconds.
//!
//! A recipient whose queue is full (`--max-queued-packets`) cannot take an
//! event, so it would see a gap: it is dropped at once, under the same lock,
//! before any later change can reach it. The registry records it as `dropped`
//! and tells the others; its transport is closed after the lock is released
//! ([`Closing`]). Each packet is encoded once and shared by every recipient
//! (see PATCHES.md, `encode_emit`/`emit_encoded`), and each send reports its
//! own socket's failure, so the dropped ones are known exactly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::value::{RawValue, to_raw_value};
use signalroom_core::protocol::Payload;
use signalroom_core::{ClientEvent, Delivery, Registry, Reply, Timestamp};
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::socket::Sid;
use socketioxide::{SendError, SocketError};
use tokio::sync::Notify;

use crate::health::Health;
use crate::metrics;
use crate::webhooks::Webhooks;

/// The registry and the sockets it addresses.
pub struct Inner {
    /// Rooms and memberships.
    pub registry: Registry<Sid>,
    sockets: HashMap<Sid, SocketRef>,
    /// Where room changes are POSTed (`--webhook-url`), if anywhere.
    webhooks: Option<Arc<Webhooks>>,
}

/// Shared server state, cloned into every handler as an `Arc`.
pub struct Hub {
    inner: Mutex<Inner>,
    /// Woken whenever a lease may have moved earlier, so the expiry timer re-arms.
    pub leases_changed: Notify,
    /// What `/healthz` answers.
    pub health: Health,
    /// In cluster mode (`--redis-url`), the cluster that serves rooms instead
    /// of this registry.
    #[cfg(feature = "cluster")]
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

/// Connections dropped under the lock, to be closed once it is released.
#[must_use = "dropped connections must be closed"]
#[derive(Default)]
pub struct Closing(Vec<SocketRef>);

impl Closing {
    /// Closes each connection's transport. socketioxide cannot queue a
    /// DISCONNECT on a full queue; the patched `disconnect` then closes the
    /// engine.io transport directly (PATCHES.md), so the client sees its
    /// connection end and reconnects.
    pub fn close(self) {
        for socket in self.0 {
            if socket.disconnect().is_err() {
                tracing::debug!("closed the transport of a connection whose queue was full");
            }
        }
    }
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
    /// A hub around an empty registry, telling `webhooks` of every change.
    pub fn new(config: signalroom_core::Config, webhooks: Option<Arc<Webhooks>>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                registry: Registry::new(config),
                sockets: HashMap::new(),
                webhooks,
            }),
            leases_changed: Notify::new(),
            health: Health::default(),
            #[cfg(feature = "cluster")]
            cluster: std::sync::OnceLock::new(),
        }
    }

    /// Takes the lock. A poisoned lock (a panic elsewhere) still guards
    /// consistent data: the registry's commands are all-or-nothing.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    /// Where room changes are POSTed, if anywhere (a cluster's owners send theirs there too).
    #[cfg(feature = "cluster")]
    pub fn webhooks(&self) -> Option<Arc<Webhooks>> {
        self.webhooks.clone()
    }

    /// Registers a connected socket: the registry opens it and deliveries can reach it.
    pub fn add_socket(&mut self, socket: SocketRef) {
        self.registry.connect(&socket.id);
        self.sockets.insert(socket.id, socket);
    }

    /// A connection closed: it leaves its room and is forgotten.
    pub fn remove_socket(&mut self, sid: &Sid) -> Closing {
        let deliveries = self.registry.disconnect(sid);
        self.sockets.remove(sid);
        if self.sockets.is_empty() {
            // Deletion markers would make a map that is refilled and emptied over and
            // over grow to twice its peak; an emptied one gives its table back.
            self.sockets.shrink_to_fit();
        }
        self.deliver(&deliveries)
    }

    /// How many sockets are connected.
    pub fn socket_count(&self) -> usize {
        self.sockets.len()
    }

    /// Runs one client event through the registry and sends what it says:
    /// the reply to `socket` (emitted and acked), then the deliveries.
    ///
    /// A relayed `signal` is acked only once it is queued for its target.
    /// When the target cannot take it, the target is dropped, and the
    /// registry, asked again, answers the sender that the peer is gone.
    pub fn handle(
        &mut self,
        socket: &SocketRef,
        ack: AckSender,
        event: ClientEvent,
        payload: Option<&RawValue>,
        binary: bool,
    ) -> Closing {
        let now = now();
        let outcome = self
            .registry
            .handle(&socket.id, event, payload, binary, now);
        let Some(mut reply) = outcome.reply else {
            return self.deliver(&outcome.deliveries);
        };
        if reply.emit {
            let mut full: Vec<Sid> = self.answer(socket, ack, &reply).into_iter().collect();
            full.extend(self.send(&outcome.deliveries));
            return self.drop_all(full);
        }
        let missed = self.send(&outcome.deliveries);
        let mut closing = Closing::default();
        if !missed.is_empty() {
            closing = self.drop_all(missed);
            if let Some(again) = self
                .registry
                .handle(&socket.id, event, payload, binary, now)
                .reply
            {
                reply = again;
            }
        }
        let full = self.answer(socket, ack, &reply).into_iter().collect();
        closing.0.extend(self.drop_all(full).0);
        closing
    }

    /// Answers `socket` with `reply` alone (a request refused before the
    /// registry saw it, as by the event rate).
    pub fn refuse(&mut self, socket: &SocketRef, ack: AckSender, reply: &Reply) -> Closing {
        let full = self.answer(socket, ack, reply).into_iter().collect();
        self.drop_all(full)
    }

    /// Sends deliveries that no client is waiting on (a lease ran out, a REST
    /// change, a disconnect), dropping recipients that cannot take them.
    pub fn deliver(&mut self, deliveries: &[Delivery<Sid>]) -> Closing {
        let full = self.send(deliveries);
        self.drop_all(full)
    }

    /// Emits `reply` to `socket` (if it is emitted) and acks with it.
    /// Returns the socket if its queue was full.
    fn answer(&self, socket: &SocketRef, ack: AckSender, reply: &Reply) -> Option<Sid> {
        if let Some(body) = reply.error_body() {
            metrics::error(body.code);
        }
        let raw = encode(&reply.event.payload)?;
        let emitted = if reply.emit {
            socket.emit(reply.event.name.as_str(), &raw)
        } else {
            Ok(())
        };
        let acked = ack.send(&raw);
        let full = |r: &Result<(), SendError>| {
            matches!(r, Err(SendError::Socket(SocketError::InternalChannelFull)))
        };
        (full(&emitted) || full(&acked)).then_some(socket.id)
    }

    /// Queues every delivery, in order, each packet encoded once. Returns the
    /// recipients whose queues were full (closed sockets are leaving anyway).
    fn send(&self, deliveries: &[Delivery<Sid>]) -> Vec<Sid> {
        let mut full = Vec::new();
        for d in deliveries {
            let mut recipients = d.to.iter().filter_map(|sid| self.sockets.get(sid));
            let Some(first) = recipients.next() else {
                continue;
            };
            let Some(raw) = encode(&d.event.payload) else {
                continue;
            };
            let packet = match first.encode_emit(d.event.name.as_str(), &raw) {
                Ok(packet) => packet,
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode a packet");
                    continue;
                }
            };
            let is_signal = matches!(d.event.payload, Payload::Signal(_));
            for socket in std::iter::once(first).chain(recipients) {
                match socket.emit_encoded(packet.clone()) {
                    Ok(()) if is_signal => metrics::signal_relayed(),
                    Ok(()) => {}
                    Err(SocketError::InternalChannelFull) => full.push(socket.id),
                    Err(SocketError::Closed) => {}
                }
            }
        }
        full
    }

    /// Drops every connection in `full` that is still open, delivering what
    /// each departure causes (which may fill more queues), and counts what
    /// changed. Returns the sockets to close.
    fn drop_all(&mut self, mut full: Vec<Sid>) -> Closing {
        let mut closing = Closing::default();
        while let Some(sid) = full.pop() {
            if !self.registry.is_open(&sid) {
                continue;
            }
            metrics::dropped(1);
            tracing::warn!(%sid, "dropping a connection that cannot keep up");
            let deliveries = self.registry.drop_connection(&sid);
            if let Some(socket) = self.sockets.get(&sid) {
                closing.0.push(socket.clone());
            }
            full.extend(self.send(&deliveries));
        }
        self.record_changes();
        closing
    }

    /// Takes the registry's changes: counted (joins and leaves are what
    /// really happened, never a renewal, an identical rejoin or a rename) and
    /// handed to the webhooks, in order.
    pub fn record_changes(&mut self) {
        let changes = self.registry.take_changes();
        if changes.is_empty() {
            return;
        }
        metrics::changes(&changes);
        if let Some(webhooks) = &self.webhooks {
            webhooks.send(&changes, now());
        }
    }
}

/// Serializes a payload once, to be copied verbatim into every packet.
pub(crate) fn encode(payload: &Payload) -> Option<Box<RawValue>> {
    match to_raw_value(payload) {
        Ok(raw) => Some(raw),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize a payload");
            None
        }
    }
}

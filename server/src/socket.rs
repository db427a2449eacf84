//! The Socket.IO adapter: bytes in, registry commands, events out.
//!
//! socketioxide spawns every async handler as its own task, so two events of
//! one connection could run out of order. Its extractors, though, run inline
//! in the connection's receive path, in arrival order. So the whole work of an
//! event happens in the [`Handled`] extractor, and the handler body is empty:
//! per-connection order holds by construction, with no task per event.
//!
//! Handlers are registered in a connect *middleware*, which socketioxide
//! awaits before it confirms the connection, so no event can arrive before
//! its handler exists.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use serde_json::value::RawValue;
use signalroom_core::{ClientEvent, Error, Reply, Verdict};
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::{AckSender, SocketRef, State};
use socketioxide::handler::{FromDisconnectParts, FromMessage, FromMessageParts, Value};
use socketioxide::socket::{DisconnectReason, Socket};

use crate::hub::Hub;
use crate::limits::Limits;

/// Registers the event handlers of a new connection.
pub async fn register(
    socket: SocketRef,
    State(hub): State<Arc<Hub>>,
    State(limits): State<Arc<Limits>>,
) -> Result<(), Infallible> {
    limits.socket_connected(&socket);
    socket.on_fallback(async |_: Handled| {});
    socket.on_disconnect(async |_: Departed| {});
    #[cfg(feature = "cluster")]
    if let Some(cluster) = hub.cluster.get() {
        // The token was checked by the middleware before this one, which
        // recorded its claims in the local registry.
        let grant = hub.lock().registry.grant_of(&socket.id).cloned();
        cluster.connect(socket.clone(), grant);
    }
    hub.lock().add_socket(socket);
    Ok(())
}

/// The connect handler proper: everything happened in [`register`].
pub async fn on_connect() {}

/// An event, already handled by the time the (empty) handler runs.
pub struct Handled;

impl FromMessage<LocalAdapter> for Handled {
    type Error = Infallible;

    fn from_message(
        s: Arc<Socket<LocalAdapter>>,
        mut v: Value,
        ack_id: Option<i64>,
    ) -> Result<Self, Infallible> {
        let Ok(State(hub)) = State::<Arc<Hub>>::from_message_parts(&s, &mut v, &ack_id) else {
            tracing::error!("hub state missing");
            return Ok(Handled);
        };
        let ack = match AckSender::from_message_parts(&s, &mut v, &ack_id) {
            Ok(ack) => ack,
            Err(never) => match never {},
        };
        // Every event counts towards the rate, unknown ones too.
        let verdict = match State::<Arc<Limits>>::from_message_parts(&s, &mut v, &ack_id) {
            Ok(State(limits)) => limits.event(&s),
            Err(_) => Verdict::Allow,
        };
        let Some(cmd) = decode(&v) else {
            // Unknown events and unreadable packets are ignored, as the
            // protocol says (a flooder is still cut off).
            if verdict == Verdict::Disconnect {
                s.clone().disconnect().ok();
            }
            return Ok(Handled);
        };
        let event = cmd.event;
        let socket = SocketRef::from(s.clone());
        if verdict != Verdict::Allow {
            // Refused without looking at the payload: nothing changes.
            #[cfg(feature = "cluster")]
            if let Some(cluster) = hub.cluster.get() {
                // Answered in its turn, after the socket's requests still with their owners.
                cluster.refused(&socket, ack, event, Error::RateLimited);
                if verdict == Verdict::Disconnect {
                    socket.disconnect().ok();
                }
                return Ok(Handled);
            }
            let reply = Reply::refused(event, &Error::RateLimited);
            // The lock is released before closing: a socket whose DISCONNECT
            // can be queued runs its disconnect handler at once, which locks the hub.
            let closing = hub.lock().refuse(&socket, ack, &reply);
            closing.close();
            if verdict == Verdict::Disconnect {
                socket.disconnect().ok();
            }
            return Ok(Handled);
        }
        #[cfg(feature = "cluster")]
        if let Some(cluster) = hub.cluster.get() {
            cluster.event(&socket, ack, event, cmd.payload(), cmd.binary);
            return Ok(Handled);
        }
        let closing = hub
            .lock()
            .handle(&socket, ack, event, cmd.payload(), cmd.binary);
        closing.close();
        Ok(Handled)
    }
}

/// A closed connection, already removed from its room.
pub struct Departed;

impl FromDisconnectParts<LocalAdapter> for Departed {
    type Error = Infallible;

    fn from_disconnect_parts(
        s: &Arc<Socket<LocalAdapter>>,
        _: DisconnectReason,
    ) -> Result<Self, Infallible> {
        let Ok(State(hub)) =
            State::<Arc<Hub>>::from_disconnect_parts(s, DisconnectReason::TransportClose)
        else {
            return Ok(Departed);
        };
        if let Ok(State(limits)) =
            State::<Arc<Limits>>::from_disconnect_parts(s, DisconnectReason::TransportClose)
        {
            limits.socket_gone(s.id);
        }
        #[cfg(feature = "cluster")]
        if let Some(cluster) = hub.cluster.get() {
            cluster.disconnect(&s.id.to_string());
        }
        let closing = hub.lock().remove_socket(&s.id);
        closing.close();
        Ok(Departed)
    }
}

/// A client event read from a Socket.IO packet's value, as the registry takes it.
/// Shared by the live path ([`Handled`]) and the fuzz entry point (`crate::fuzzing`).
pub(crate) struct Command<'a> {
    /// The event.
    pub event: ClientEvent,
    /// The event's arguments, its name first.
    args: Vec<&'a RawValue>,
    /// The packet carried binary attachments.
    pub binary: bool,
}

impl<'a> Command<'a> {
    /// The event's first argument, if any.
    pub fn payload(&self) -> Option<&'a RawValue> {
        self.args.get(1).copied()
    }
}

/// Reads a packet's value: `None` for events signalroom ignores or a value
/// that is not a JSON array led by a name.
pub(crate) fn decode(v: &Value) -> Option<Command<'_>> {
    let Value::Str(text, bins) = v else {
        return None;
    };
    let binary = bins.as_ref().is_some_and(|b: &VecDeque<_>| !b.is_empty());
    let args = serde_json::from_str::<Vec<&RawValue>>(text.as_str()).ok()?;
    let event = args
        .first()
        .and_then(|name| serde_json::from_str::<&str>(name.get()).ok())
        .and_then(ClientEvent::from_name)?;
    Some(Command {
        event,
        args,
        binary,
    })
}

//! The Socket.IO side of access tokens: a connect middleware that reads the
//! handshake's auth payload `{token}` before any session exists.
//!
//! A refused token answers CONNECT_ERROR with the message `unauthorized`
//! (socketioxide sends the error's `Display` as the message); the socket never
//! enters the namespace, so no handler runs and no room changes. An accepted
//! token's claims go to the registry, which checks every later join of that
//! connection against them.

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use socketioxide::extract::{SocketRef, State, TryData};

use super::Access;
use crate::hub::{Hub, now};
use crate::metrics;

/// The handshake auth payload socket.io-client sends as `io(url, {auth: {token}})`.
#[derive(Debug, Deserialize)]
pub struct Credentials {
    token: String,
}

/// The connect error: its `Display` is the CONNECT_ERROR message.
#[derive(Debug)]
pub struct Unauthorized;

impl fmt::Display for Unauthorized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unauthorized")
    }
}

/// Refuses a connection without a valid token; records the grant of one with.
pub async fn authenticate(
    socket: SocketRef,
    TryData(credentials): TryData<Credentials>,
    State(access): State<Arc<Access>>,
    State(hub): State<Arc<Hub>>,
) -> Result<(), Unauthorized> {
    let now = now();
    let grant = credentials
        .map_err(|_| super::Refusal("no token in the handshake auth".into()))
        .and_then(|c| access.verify(&c.token, now));
    match grant {
        Ok(grant) => {
            hub.lock().registry.grant(&socket.id, grant);
            Ok(())
        }
        Err(why) => {
            tracing::debug!(sid = %socket.id, reason = %why.0, "connection refused");
            metrics::error(signalroom_core::ErrorCode::Unauthorized);
            Err(Unauthorized)
        }
    }
}

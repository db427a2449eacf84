//! This node's inbox: the one Redis stream every other node writes to it.
//!
//! Commands for rooms this node owns (field `c`, one; `cs`, a node's list) and owners' batches for this
//! node's sockets (field `b`, one; `bs`, a commit's list) arrive in `sr:in:{node}`, in the order they were
//! appended; one reader, on a connection of its own (a blocking `XREAD` holds
//! its connection), hands each to its room's owner task or to the home side,
//! in that order. It starts at Redis's clock when the node starts, so a node
//! restarted under the same id does not replay its predecessor's messages.
//! A message that does not parse is logged and skipped: it cannot come from a
//! node of this version.

use std::sync::Arc;
use std::time::Duration;

use signalroom_core::cluster::wire::{Batch, Command};

use super::home::Sockets;
use super::owners::Owners;
use super::redis::Redis;
use super::scripts::inbox_key;

/// How long one `XREAD` waits for a message (under the call timeout).
const BLOCK_MS: u64 = 500;
/// The most messages one read takes. Each may carry a group commit's
/// batches (up to 64, each with a peer list) or a node's routed commands,
/// so this stays small enough for one read to arrive well within the call
/// timeout.
const COUNT: u64 = 128;

/// One stream's reply to `XREAD`: the key, then (id, flat field/value list) entries.
type StreamReply = Vec<(String, Vec<(String, Vec<String>)>)>;

/// Reads the inbox for ever, dispatching every message.
pub async fn read(node: String, redis: Redis, owners: Arc<Owners>, sockets: Arc<Sockets>) {
    let key = inbox_key(&node);
    let mut last = start_id(&redis).await;
    loop {
        let mut xread = redis::cmd("XREAD");
        xread
            .arg("COUNT")
            .arg(COUNT)
            .arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS")
            .arg(&key)
            .arg(&last);
        let reply: Option<StreamReply> = match redis.call("XREAD inbox", &xread).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the inbox");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        for (_, entries) in reply.into_iter().flatten() {
            for (id, fields) in entries {
                last = id;
                dispatch(&fields, &owners, &sockets);
            }
        }
    }
}

/// Redis's clock now, as a stream id: where this node's reading starts.
async fn start_id(redis: &Redis) -> String {
    loop {
        match redis.call::<(u64, u64)>("TIME", &redis::cmd("TIME")).await {
            Ok((secs, micros)) => return format!("{}-0", secs * 1000 + micros / 1000),
            Err(e) => {
                tracing::debug!(error = %e, "waiting for Redis to start reading the inbox");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

fn dispatch(fields: &[String], owners: &Arc<Owners>, sockets: &Arc<Sockets>) {
    for pair in fields.chunks(2) {
        let [field, value] = pair else { continue };
        match field.as_str() {
            "c" => match serde_json::from_str::<Command>(value) {
                Ok(command) => owners.dispatch(command),
                Err(e) => tracing::warn!(error = %e, "unreadable command in the inbox"),
            },
            // One home node's routed commands, in order.
            "cs" => match serde_json::from_str::<Vec<Command>>(value) {
                Ok(commands) => commands.into_iter().for_each(|c| owners.dispatch(c)),
                Err(e) => tracing::warn!(error = %e, "unreadable commands in the inbox"),
            },
            "b" => match serde_json::from_str::<Batch>(value) {
                Ok(batch) => sockets.receive(batch),
                Err(e) => tracing::warn!(error = %e, "unreadable batch in the inbox"),
            },
            // One commit's batches for this node, in order.
            "bs" => match serde_json::from_str::<Vec<Batch>>(value) {
                Ok(batches) => sockets.receive_all(batches),
                Err(e) => tracing::warn!(error = %e, "unreadable batches in the inbox"),
            },
            _ => tracing::warn!(field, "unknown message in the inbox"),
        }
    }
}

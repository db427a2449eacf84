//! The sender: one task per node that routes its commands to their rooms'
//! owners, in the order the home side decided them ([`super::home`]).
//! Everything queued is taken at once: commands for rooms whose owner task
//! runs on this node go to it directly, the rest to Redis in one `route_many`
//! script call (one round trip, one inbox message per owner node), which
//! claims a room for this node when nobody owns it. A departure is never lost:
//! it is routed again until Redis takes it. While Redis heals (it lost its
//! data moments ago) no room is claimed, and a request for a room nobody owns
//! is answered `unavailable` at once rather than creating an empty copy of a
//! room whose owner is about to write it back. The same module sends this
//! node's answers to relayed signals to their senders' nodes ([`forward`]).

use std::sync::Arc;
use std::time::Duration;

use ::metrics::counter;
use signalroom_core::cluster::by_node;
use signalroom_core::cluster::wire::{Batch, Command, CommandKind};
use tokio::sync::mpsc;

use super::clock::now;
use super::home::Sockets;
use super::node::Boot;
use super::owners::Owners;
use super::redis::Redis;
use super::scripts::Scripts;

/// The most commands the sender routes in one Redis call.
const ROUTE_MAX: usize = 256;

/// Routes each command to its room's owner, in order, so a socket's commands
/// (and a disconnect after them) reach the owner in the order they were
/// decided: everything queued is taken at once; the commands for rooms this
/// node's own owner tasks serve go to them directly, the others to Redis in
/// one `route_many` call (one round trip, one inbox message per owner node).
/// A command that cannot be routed is lost; its request is answered
/// `unavailable` by its timer.
pub async fn send_commands(
    node: String,
    redis: Redis,
    scripts: Arc<Scripts>,
    mut rx: mpsc::UnboundedReceiver<Command>,
    boot: Arc<Boot>,
    owners: Arc<Owners>,
    sockets: std::sync::Weak<Sockets>,
) {
    let Some(unsent) = sockets.upgrade().map(|s| s.unsent()) else {
        return;
    };
    let unrouted = |command: &Command| {
        if let CommandKind::Event { sid, .. } = &command.kind
            && let Some(sockets) = sockets.upgrade()
        {
            sockets.unrouted(sid, command.req);
        }
    };
    while let Some(command) = rx.recv().await {
        let mut commands = vec![command];
        while commands.len() < ROUTE_MAX {
            match rx.try_recv() {
                Ok(command) => commands.push(command),
                Err(_) => break,
            }
        }
        let n = commands.len();
        route(&node, &redis, &scripts, &owners, commands, &boot, &unrouted).await;
        // The sweep's commands are not counted: never below zero.
        unsent
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |u| Some(u.saturating_sub(n)),
            )
            .ok();
    }
}

/// How long the sender waits before routing again a command for a room that
/// no node owns and this node may not claim yet, ms.
const CLAIM_RETRY_MS: u64 = 100;

/// Routes commands to their rooms' owners, in order. A room whose task runs
/// here gets its commands directly (decided once per room for the whole
/// call, so a room's commands keep their order); the rest go through Redis
/// in one call, which claims a room for this node when nobody owns it (those
/// then go to this node's owner tasks, in order). While this node may not
/// claim rooms (Redis lost its data moments ago, and the room's owner may
/// not have written it back yet), a request for a room nobody owns is
/// answered `unavailable` at once (`unrouted`): a room claimed here then
/// would be an empty copy of the one its owner is about to write back.
/// Before the node has first heard from Redis, such a request is tried again
/// until its deadline. A departure is tried again until it is routed,
/// whatever fails.
async fn route(
    node: &str,
    redis: &Redis,
    scripts: &Scripts,
    owners: &Arc<Owners>,
    commands: Vec<Command>,
    boot: &Boot,
    unrouted: &(dyn Fn(&Command) + Sync),
) {
    let mut local: Vec<&str> = Vec::new();
    let mut remote: Vec<&str> = Vec::new();
    let mut pending = Vec::with_capacity(commands.len());
    let mut direct = Vec::new();
    for command in &commands {
        let room = command.room.as_str();
        let here = if local.contains(&room) {
            true
        } else if remote.contains(&room) {
            false
        } else if owners.serves(room) {
            local.push(room);
            true
        } else {
            remote.push(room);
            false
        };
        if here {
            direct.push(command);
        } else {
            pending.push(command);
        }
    }
    for command in direct {
        owners.dispatch(command.clone());
    }
    let mut pending: Vec<(&Command, String)> = pending
        .into_iter()
        .filter_map(|command| match serde_json::to_string(command) {
            Ok(text) => Some((command, text)),
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize a command");
                None
            }
        })
        .collect();
    while !pending.is_empty() {
        let trusted = boot.trusted();
        let args: Vec<(&str, String)> = pending
            .iter()
            .map(|(c, text)| (c.room.as_str(), text.clone()))
            .collect();
        let wait = match scripts
            .route_many(redis, node, &args, trusted.as_deref())
            .await
        {
            Ok(routed) => {
                let mut again = Vec::new();
                for ((command, text), owner) in pending.into_iter().zip(routed) {
                    match owner {
                        Some(owner) if owner == node => owners.dispatch(command.clone()),
                        Some(_) => {
                            counter!("signalroom_cluster_commands_forwarded_total").increment(1);
                        }
                        None if is_departure(command) => again.push((command, text)),
                        None if boot.healing() => {
                            tracing::warn!(room = %command.room, "no owner, and no claim while Redis heals: unavailable");
                            unrouted(command);
                        }
                        // Not yet heard from Redis which data it holds (the
                        // node is starting): tried again until its deadline.
                        None if now().0 + CLAIM_RETRY_MS <= command.deadline => {
                            again.push((command, text));
                        }
                        None => {
                            tracing::warn!(room = %command.room, "no owner and no claim yet: a command dropped");
                        }
                    }
                }
                pending = again;
                CLAIM_RETRY_MS
            }
            Err(e) => {
                // A departure cannot be refused or answered `unavailable`: it
                // waits for Redis (everything else fails meanwhile anyway).
                pending.retain(|(command, _)| is_departure(command));
                if pending.is_empty() {
                    tracing::warn!(error = %e, "cannot route commands");
                } else {
                    tracing::warn!(error = %e, departures = pending.len(), "cannot route a departure yet");
                }
                DEPARTURE_RETRY_MS
            }
        };
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }
}

/// How long the sender waits before routing a departure again, ms.
const DEPARTURE_RETRY_MS: u64 = 200;

/// A socket's departure from a room (disconnected, or moved to another room).
pub fn is_departure(command: &Command) -> bool {
    matches!(
        command.kind,
        CommandKind::Disconnect { .. } | CommandKind::Dropped { .. } | CommandKind::MovedOut { .. }
    )
}

/// Sends the batches this node's sockets owe other nodes (the answers to
/// signals relayed to them, [`super::home::Outgoing::forwards`]) to those
/// nodes' inboxes: everything queued at once, one message per node, in
/// order. One that cannot be sent is lost: its sender's request is answered
/// `unavailable` by its home node's timer.
pub async fn forward(
    redis: Redis,
    scripts: Arc<Scripts>,
    mut rx: mpsc::UnboundedReceiver<(String, Batch)>,
) {
    while let Some(first) = rx.recv().await {
        let mut queued = vec![first];
        while queued.len() < ROUTE_MAX {
            match rx.try_recv() {
                Ok(next) => queued.push(next),
                Err(_) => break,
            }
        }
        for (node, batches) in by_node(queued) {
            let text = match serde_json::to_string(&batches) {
                Ok(text) => text,
                Err(e) => {
                    tracing::error!(error = %e, "cannot serialize batches");
                    continue;
                }
            };
            if let Err(e) = scripts.deliver(&redis, &node, &text).await {
                tracing::warn!(error = %e, %node, "cannot send answers to a node");
            }
        }
    }
}

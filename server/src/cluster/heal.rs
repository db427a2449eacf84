//! The restore pass: this node's members that their room lost are put back.
//!
//! When Redis comes back empty, the owners that lived through the outage
//! write their rooms back from memory ([`super::owners`]); a room whose owner
//! died meanwhile is gone although some of its members are still connected
//! here. The reverse can happen too: a join answered `unavailable` here whose
//! success was lost with Redis's data; such a member is undone. So after this
//! node sees Redis lose its data ([`Boot::losses`]), once
//! it may claim rooms again, it checks every [`PASS_EVERY`] that each of its
//! socket members is in its room's snapshot (`sr:snap:{room}`); one that is
//! not is sent to the room's (new) owner as a `restore` command, which the
//! owner decides with the registry's `restore` (`docs/cluster.md`, "Redis
//! returns, even empty"). A refused one is disconnected by the home side, and
//! its client joins again. The passes stop once one finds nothing off and no
//! `restore` is outstanding.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use signalroom_core::cluster::ConnId;
use signalroom_core::registry::{HolderSnapshot, RoomSnapshot};

use super::home::Sockets;
use super::node::Boot;
use super::redis::{Redis, RedisDown};
use super::scripts::snap_key;

/// How often a node checks its members while anything is off.
pub const PASS_EVERY: Duration = Duration::from_secs(2);

/// How often a node looks whether a pass is due.
const WATCH_EVERY: Duration = Duration::from_millis(250);
/// How often a node looks for room versions that stayed missing.
const GAPS_EVERY: Duration = Duration::from_millis(250);

/// Every [`GAPS_EVERY`], lets the rooms whose missing versions are overdue go
/// on without them (they were lost with Redis's data: a node's inbox is one
/// stream and owners commit in order, so nothing else makes a gap).
pub async fn skip_gaps(sockets: Arc<Sockets>) {
    let mut tick = tokio::time::interval(GAPS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sockets.skip_gaps();
    }
}

/// Runs the restore passes for node `node` for ever.
pub async fn run(node: String, redis: Redis, sockets: Arc<Sockets>, boot: Arc<Boot>) {
    // Checked often, so the first pass starts as soon as this node may claim
    // rooms again; the passes after it come every PASS_EVERY.
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = boot.losses();
    let mut off = false;
    let mut last: Option<tokio::time::Instant> = None;
    loop {
        tick.tick().await;
        let losses = boot.losses();
        if losses != seen {
            seen = losses;
            off = true;
            last = None;
        }
        // Until this node may claim rooms, the surviving owners are still
        // writing theirs back.
        if !off || boot.trusted().is_none() || last.is_some_and(|at| at.elapsed() < PASS_EVERY) {
            continue;
        }
        last = Some(tokio::time::Instant::now());
        match pass(&node, &redis, &sockets).await {
            Ok(0) if !sockets.restoring() => {
                tracing::info!("every member of this node is listed again");
                off = false;
            }
            Ok(0) => {}
            Ok(n) => tracing::warn!(members = n, "members their rooms lost: restoring them"),
            Err(e) => tracing::debug!(error = %e, "cannot check this node's members yet"),
        }
    }
}

/// One check of every local member against its room's snapshot; sends a
/// `restore` for each one missing. Also checks the joins answered
/// `unavailable` here: one the room lists after all is undone. How many
/// restores were sent.
async fn pass(node: &str, redis: &Redis, sockets: &Arc<Sockets>) -> Result<usize, RedisDown> {
    let mut rooms: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (sid, room, peer_id) in sockets.members() {
        rooms.entry(room).or_default().push((sid, peer_id));
    }
    let doubtful = sockets.doubtful();
    for (_, room) in &doubtful {
        rooms.entry(room.clone()).or_default();
    }
    if rooms.is_empty() {
        return Ok(0);
    }
    let mut mget = redis::cmd("MGET");
    for room in rooms.keys() {
        mget.arg(snap_key(room));
    }
    let snaps: Vec<Option<String>> = redis.call("MGET snapshots", &mget).await?;
    let mut sent = 0;
    let mut held_here: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for ((room, members), snap) in rooms.into_iter().zip(snaps) {
        let listed: HashSet<(String, String)> = snap
            .and_then(|s| serde_json::from_str::<RoomSnapshot<ConnId>>(&s).ok())
            .map(|s| {
                s.members
                    .into_iter()
                    .filter_map(|m| match m.holder {
                        HolderSnapshot::Socket { conn, .. } if conn.node == node => {
                            Some((conn.sid, m.peer.peer_id))
                        }
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        held_here.insert(
            room.clone(),
            listed.iter().map(|(sid, _)| sid.clone()).collect(),
        );
        for (sid, peer_id) in members {
            if !listed.contains(&(sid.clone(), peer_id)) {
                tracing::info!(%room, %sid, "a member its room lost: restoring it");
                sockets.restore(&sid);
                sent += 1;
            }
        }
    }
    for (sid, room) in doubtful {
        let listed = held_here.get(&room).is_some_and(|l| l.contains(&sid));
        sockets.checked(&sid, &room, listed);
    }
    Ok(sent)
}

//! The rooms this node owns: one task per room, running the core's [`Owner`].
//!
//! A command for a room arrives in this node's inbox because the `route`
//! script found (or made) this node its owner. The first command for a room
//! with no task here starts one, which reads the lease and the last snapshot
//! from Redis: if the lease is this node's, it imports the snapshot (a room
//! taken over, or re-created) and serves; otherwise it answers `moved` and the
//! home node routes again. The task applies commands one at a time: the core
//! decides the step, then one `commit` script writes the snapshot and listing
//! and appends every node's batch to its inbox, fenced by the lease's token;
//! nothing is told before that commit succeeds, and a commit that fails puts
//! the room back as it was (the home node answers `unavailable`). The lease is
//! renewed every second, and with it the owner checks that the nodes holding
//! members are alive and removes the members of dead ones; the HTTP peers'
//! leases run out here too. A lease lost, a fenced commit or an empty room
//! (let go in its last commit) ends the task, and the commands still queued
//! for it are answered `moved`. [`sweep`] finds rooms whose owner died.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use metrics::gauge;
use signalroom_core::Config;
use signalroom_core::cluster::ConnId;
use signalroom_core::cluster::wire::CommandKind;
use signalroom_core::cluster::wire::{Batch, Command};
use signalroom_core::cluster::{Commit, Owner, Step};
use signalroom_core::registry::RoomSnapshot;
use tokio::sync::{mpsc, watch};

use super::redis::Redis;
use super::scripts::{self, Committed, Scripts, Write};
use crate::hub::now;

/// How long an owner waits before expiring HTTP peers again after a failed commit.
const EXPIRY_RETRY: Duration = Duration::from_millis(200);

/// How often an owner renews its room's lease.
pub const RENEW_EVERY: Duration = Duration::from_secs(1);

/// The owned rooms' task inboxes.
pub struct Owners {
    node: String,
    redis: Redis,
    scripts: Arc<Scripts>,
    config: Config,
    /// Where commands go to be routed again (the home side's sender).
    outbox: mpsc::UnboundedSender<Command>,
    /// Each room's task: its number (to tell a task from its successor) and inbox.
    tasks: Mutex<HashMap<String, (u64, mpsc::UnboundedSender<Command>)>>,
    next_task: std::sync::atomic::AtomicU64,
    /// Set when the node stops: every task gives its lease up and ends.
    stopping: watch::Sender<bool>,
    /// The rooms this node owns (claimed, not yet given up) and their peers.
    peers: Mutex<HashMap<String, usize>>,
}

impl Owners {
    /// No rooms owned yet.
    pub fn new(
        node: String,
        redis: Redis,
        scripts: Arc<Scripts>,
        config: Config,
        outbox: mpsc::UnboundedSender<Command>,
    ) -> Arc<Self> {
        gauge!("signalroom_cluster_rooms_owned").set(0.0);
        Arc::new(Self {
            node,
            redis,
            scripts,
            config,
            outbox,
            tasks: Mutex::new(HashMap::new()),
            next_task: std::sync::atomic::AtomicU64::new(1),
            stopping: watch::channel(false).0,
            peers: Mutex::new(HashMap::new()),
        })
    }

    /// How many rooms this node owns, and how many peers they hold.
    pub fn owned(&self) -> (usize, usize) {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        (peers.len(), peers.values().sum())
    }

    /// Records how many peers an owned room holds (`None`: not owned any more).
    fn count(&self, room: &str, peers: Option<usize>) {
        let mut map = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        match peers {
            Some(n) => map.insert(room.to_owned(), n),
            None => map.remove(room),
        };
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, (u64, mpsc::UnboundedSender<Command>)>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The node is stopping: every owned room's lease is given up (the other
    /// nodes' sweeps take the rooms over within a second). Waits at most
    /// `limit` for the tasks to end.
    pub async fn stop(&self, limit: Duration) {
        self.stopping.send_replace(true);
        let end = tokio::time::Instant::now() + limit;
        while !self.lock().is_empty() && tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Hands a command to its room's task, starting one if there is none.
    pub fn dispatch(self: &Arc<Self>, command: Command) {
        if *self.stopping.borrow() {
            return;
        }
        let mut tasks = self.lock();
        let command = match tasks.get(&command.room) {
            Some((_, tx)) => match tx.send(command) {
                Ok(()) => return,
                Err(mpsc::error::SendError(command)) => command,
            },
            None => command,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let room = command.room.clone();
        if tx.send(command).is_err() {
            return;
        }
        let id = self
            .next_task
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tasks.insert(room.clone(), (id, tx));
        tokio::spawn(self.clone().run(room, id, rx));
    }

    /// One room's task, from claiming to giving it up.
    async fn run(self: Arc<Self>, room: String, id: u64, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut stopping = self.stopping.subscribe();
        // A stop that came before the subscription counts too.
        if *stopping.borrow() {
            stopping.mark_changed();
        }
        let Some((mut token, mut owner)) = self.start(&room).await else {
            self.give_up(&room, id, rx, 0).await;
            return;
        };
        gauge!("signalroom_cluster_rooms_owned").increment(1.0);
        self.count(&room, Some(owner.peer_count()));
        tracing::debug!(%room, %token, "owning a room");
        let mut renew = tokio::time::interval(RENEW_EVERY);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // After Redis lost its data, nodes need a heartbeat to register
        // again: no member is judged dead before then.
        let mut trust_liveness_after = tokio::time::Instant::now();
        loop {
            let expiry = owner.next_expiry();
            let expired = async {
                match expiry {
                    Some(at) => {
                        let ms = at.0.saturating_sub(now().0);
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                Ok(()) = stopping.changed() => {
                    if let Err(e) = self.scripts.release(&self.redis, &room, &token).await {
                        tracing::warn!(error = %e, %room, "cannot release a room's lease");
                    }
                    break;
                }
                () = expired => {
                    let step = owner.expire(now());
                    if !self.commit(&room, &token, &mut owner, step).await {
                        break;
                    }
                    if owner.next_expiry().is_some_and(|at| at <= now()) {
                        // The commit failed and put the leases back: not in a tight loop.
                        tokio::time::sleep(EXPIRY_RETRY).await;
                    }
                }
                command = rx.recv() => {
                    let Some(command) = command else { break };
                    if !self.step(&room, &token, &mut owner, command).await {
                        break;
                    }
                }
                _ = renew.tick() => {
                    match self.scripts.renew(&self.redis, &room, &token).await {
                        Ok(true) => {}
                        Ok(false) => match self.reclaim(&room, &token, &mut owner).await {
                            Some(again) if again == token => continue,
                            Some(again) => {
                                tracing::warn!(%room, token = %again, "Redis lost this room: claimed and written again");
                                token = again;
                                trust_liveness_after = tokio::time::Instant::now() + super::node::NODE_TTL;
                                continue;
                            }
                            None => {
                                tracing::warn!(%room, "lost the lease of a room");
                                break;
                            }
                        },
                        Err(e) => {
                            tracing::warn!(error = %e, %room, "cannot renew a room's lease");
                            continue;
                        }
                    }
                    if tokio::time::Instant::now() >= trust_liveness_after
                        && !self.remove_dead(&room, &token, &mut owner).await
                    {
                        break;
                    }
                    if owner.is_empty() {
                        // An empty room whose release failed: try again.
                        let nothing = Step {
                            commit: Commit::Unchanged,
                            batches: Vec::new(),
                            before: None,
                            changes: Vec::new(),
                        };
                        if !self.commit(&room, &token, &mut owner, nothing).await {
                            break;
                        }
                    }
                }
            }
        }
        gauge!("signalroom_cluster_rooms_owned").decrement(1.0);
        self.count(&room, None);
        self.give_up(&room, id, rx, epoch_of(&token)).await;
    }

    /// The lease is not ours any more: if nobody holds it (Redis restarted
    /// empty), claims the room again and writes its state back. The new
    /// token; the old one if Redis did not answer (tried again on the next
    /// tick); `None` if another node holds the room.
    async fn reclaim(&self, room: &str, token: &str, owner: &mut Owner) -> Option<String> {
        let (snapshot, info) = owner.state()?;
        let snapshot = serde_json::to_string(&snapshot).ok()?;
        let info = serde_json::to_string(&info).ok()?;
        match self
            .scripts
            .reclaim(&self.redis, room, &self.node, &snapshot, &info)
            .await
        {
            Ok(Some(token)) => {
                owner.set_epoch(epoch_of(&token));
                Some(token)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, %room, "cannot claim a room again");
                Some(token.to_owned())
            }
        }
    }

    /// Reads the lease and the snapshot: the owner of `room` if the lease is ours.
    async fn start(&self, room: &str) -> Option<(String, Owner)> {
        let mut mget = redis::cmd("MGET");
        mget.arg(scripts::owner_key(room))
            .arg(scripts::snap_key(room));
        let (lease, snap): (Option<String>, Option<String>) =
            match self.redis.call("MGET lease", &mget).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, %room, "cannot read a room's lease");
                    return None;
                }
            };
        let token = lease?;
        if token.rsplit_once(':').map(|(n, _)| n) != Some(self.node.as_str()) {
            return None;
        }
        let snapshot = match snap.map(|s| serde_json::from_str::<RoomSnapshot<ConnId>>(&s)) {
            None => None,
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                tracing::error!(error = %e, %room, "unreadable room snapshot; starting empty");
                None
            }
        };
        match Owner::new(room, epoch_of(&token), self.config.clone(), snapshot) {
            Ok(owner) => Some((token, owner)),
            Err(e) => {
                tracing::error!(error = %e, %room, "room snapshot refused; starting empty");
                let owner = Owner::new(room, epoch_of(&token), self.config.clone(), None).ok()?;
                Some((token, owner))
            }
        }
    }

    /// Applies one command and commits it. `false` when the room is no longer ours.
    async fn step(&self, room: &str, token: &str, owner: &mut Owner, command: Command) -> bool {
        let step = owner.apply(command, now());
        self.commit(room, token, owner, step).await
    }

    /// Removes the members of nodes whose registration ran out (they died):
    /// one version each, each node's removal its own commit. `false` when the
    /// room is no longer ours.
    async fn remove_dead(&self, room: &str, token: &str, owner: &mut Owner) -> bool {
        let others: Vec<String> = owner
            .member_nodes()
            .into_iter()
            .filter(|n| *n != self.node)
            .collect();
        if others.is_empty() {
            return true;
        }
        let mut mget = redis::cmd("MGET");
        for n in &others {
            mget.arg(scripts::node_key(n));
        }
        let alive: Vec<Option<String>> = match self.redis.call("MGET nodes", &mget).await {
            Ok(alive) => alive,
            Err(e) => {
                tracing::warn!(error = %e, "cannot check which nodes are alive");
                return true;
            }
        };
        for (node, record) in others.iter().zip(alive) {
            if record.is_some() {
                continue;
            }
            tracing::warn!(%room, %node, "a node holding members died: removing its peers");
            let step = owner.remove_node(node);
            if !self.commit(room, token, owner, step).await {
                return false;
            }
        }
        true
    }

    /// Commits one step: what it writes and every node's batches, fenced by
    /// `token`. An empty room is let go (its snapshot, listing and lease
    /// deleted), whatever the step. `false` when the room is no longer ours.
    async fn commit(&self, room: &str, token: &str, owner: &mut Owner, step: Step) -> bool {
        let deleted = owner.is_empty();
        if !deleted && step.batches.is_empty() && step.commit == Commit::Unchanged {
            return true;
        }
        let mut batches = Vec::with_capacity(step.batches.len());
        for (node, batch) in &step.batches {
            match serde_json::to_string(batch) {
                Ok(text) => batches.push((node.clone(), text)),
                Err(e) => tracing::error!(error = %e, "cannot serialize a batch"),
            }
        }
        let texts = match &step.commit {
            Commit::Changed { snapshot, info } => {
                match (serde_json::to_string(snapshot), serde_json::to_string(info)) {
                    (Ok(s), Ok(i)) => Some((s, i)),
                    _ => {
                        tracing::error!(%room, "cannot serialize a room");
                        owner.rollback(step.before);
                        return true;
                    }
                }
            }
            _ => None,
        };
        let write = match (&step.commit, &texts) {
            _ if deleted => Write::Delete,
            (Commit::Changed { .. }, Some((snapshot, info))) => Write::Set { snapshot, info },
            _ => Write::Keep,
        };
        match self
            .scripts
            .commit(&self.redis, room, token, write, &batches)
            .await
        {
            Ok(Committed::Ok) => {
                // Counted once in the cluster: by the owner that committed it.
                crate::metrics::changes(&step.changes);
                self.count(room, Some(owner.peer_count()));
                !deleted
            }
            Ok(Committed::Fenced) => {
                tracing::warn!(%room, "fenced: the room has another owner");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, %room, "commit failed; the room is unchanged");
                owner.rollback(step.before);
                true
            }
        }
    }

    /// Stops serving `room`: every request still queued is answered `moved`
    /// (its home node routes it again), every departure routed again from here.
    async fn give_up(
        &self,
        room: &str,
        id: u64,
        mut rx: mpsc::UnboundedReceiver<Command>,
        epoch: u64,
    ) {
        {
            let mut tasks = self.lock();
            if tasks.get(room).is_some_and(|(task, _)| *task == id) {
                tasks.remove(room);
            }
        }
        rx.close();
        let stopping = *self.stopping.borrow();
        while let Ok(command) = rx.try_recv() {
            if super::home::is_departure(&command) && !stopping {
                // Nobody waits for an answer to a departure: route it again here.
                self.outbox.send(command).ok();
            } else {
                self.moved(&command, epoch).await;
            }
        }
    }

    /// Tells a command's home node to route it again.
    async fn moved(&self, command: &Command, epoch: u64) {
        let batch: Batch = Owner::moved(command, epoch);
        let Ok(text) = serde_json::to_string(&batch) else {
            return;
        };
        let mut xadd = redis::cmd("XADD");
        xadd.arg(scripts::inbox_key(&command.home))
            .arg("MAXLEN")
            .arg("~")
            .arg(scripts::INBOX_MAXLEN)
            .arg("*")
            .arg("b")
            .arg(text);
        if let Err(e) = self.redis.call::<String>("XADD moved", &xadd).await {
            tracing::warn!(error = %e, "cannot answer moved");
        }
    }
}

/// How often a node looks for rooms whose owner died.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// The most orphaned rooms one sweep claims.
const SWEEP_MAX: usize = 100;

/// Every [`SWEEP_EVERY`], finds rooms whose owner died (their lease ran out,
/// their snapshot is left) and sends each a `takeover` command through
/// `outbox`: routing it claims the room for this node unless another node
/// claimed it first; the new owner imports the snapshot and its first lease
/// check removes the dead node's members.
pub async fn sweep(
    node: String,
    redis: Redis,
    scripts: Arc<Scripts>,
    outbox: mpsc::UnboundedSender<Command>,
) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let rooms = match scripts.orphans(&redis, SWEEP_MAX).await {
            Ok(rooms) => rooms,
            Err(e) => {
                tracing::debug!(error = %e, "cannot look for orphaned rooms");
                continue;
            }
        };
        for room in rooms {
            tracing::info!(%room, "taking over a room whose owner died");
            let command = Command {
                room,
                home: node.clone(),
                req: 0,
                deadline: now().0 + super::home::COMMAND_TTL_MS,
                kind: CommandKind::Takeover,
            };
            if outbox.send(command).is_err() {
                return;
            }
        }
    }
}

/// The epoch in a lease token `"{node}:{epoch}"`.
fn epoch_of(token: &str) -> u64 {
    token
        .rsplit_once(':')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0)
}

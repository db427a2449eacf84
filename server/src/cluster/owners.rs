//! The rooms this node owns: one task per room, running the core's [`Owner`].
//!
//! A command for a room arrives in this node's inbox because the `route_many`
//! script found (or made) this node its owner, or straight from this node's
//! sender when a task here serves the room. The first command for a room
//! with no task here starts one, which reads the lease and the last snapshot
//! from Redis: if the lease is this node's, it imports the snapshot (a room
//! taken over, or re-created) and serves; otherwise it answers `moved` and the
//! home node routes again. The task takes every command waiting (up to
//! [`GROUP_MAX`]) and the core applies them in order as one step (group
//! commit); then one `commit` script writes the last snapshot and listing and
//! appends every other node's batches to its inbox (one message per node),
//! fenced by the lease's token; this node's own batches are handed to its
//! sockets in-process after that commit succeeded. Nothing is told before the
//! commit succeeds, and a commit that fails puts the room back as it was
//! before the whole group (the home node answers `unavailable`). The lease is
//! renewed every second, and with it the owner checks that the nodes holding
//! members are alive and removes the members of dead ones; the HTTP peers'
//! leases run out here too. A lease lost, a fenced commit or an empty room
//! (let go in its last commit) ends the task, and the commands still queued
//! for it are answered `moved`. [`sweep`] finds rooms whose owner died.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use metrics::gauge;
use signalroom_core::cluster::ConnId;
use signalroom_core::cluster::wire::CommandKind;
use signalroom_core::cluster::wire::{Batch, Command};
use signalroom_core::cluster::{Commit, Owner, ReadBack, Step, read_back};
use signalroom_core::registry::RoomSnapshot;
use signalroom_core::{Config, RoomChange};
use tokio::sync::{mpsc, watch};

use super::clock::now;
use super::home::Sockets;
use super::redis::Redis;
use super::scripts::{self, Committed, Scripts, Write};
use crate::webhooks::Webhooks;

/// How long an owner waits before expiring HTTP peers again after a failed commit.
const EXPIRY_RETRY: Duration = Duration::from_millis(200);

/// How many times an owner reads a room back after a commit whose answer was lost.
const READ_BACK_TRIES: u32 = 10;
/// How long it waits between those reads.
const READ_BACK_RETRY: Duration = Duration::from_millis(200);

/// How often an owner renews its room's lease.
pub const RENEW_EVERY: Duration = Duration::from_secs(1);

/// The most commands an owner applies before one commit (group commit).
const GROUP_MAX: usize = 64;

/// The owned rooms' task inboxes.
pub struct Owners {
    node: String,
    redis: Redis,
    scripts: Arc<Scripts>,
    config: Config,
    /// Where commands go to be routed again (the home side's sender).
    outbox: mpsc::UnboundedSender<Command>,
    /// This node's sockets: batches for them skip the inbox.
    sockets: Arc<Sockets>,
    /// Each room's task: its number (to tell a task from its successor) and inbox.
    tasks: Mutex<HashMap<String, (u64, mpsc::UnboundedSender<Command>)>>,
    next_task: std::sync::atomic::AtomicU64,
    /// Set when the node stops: every task gives its lease up and ends.
    stopping: watch::Sender<bool>,
    /// Where this node POSTs the changes of the rooms it owns (`--webhook-url`).
    webhooks: Option<Arc<Webhooks>>,
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
        webhooks: Option<Arc<Webhooks>>,
        sockets: Arc<Sockets>,
    ) -> Arc<Self> {
        gauge!("signalroom_cluster_rooms_owned").set(0.0);
        Arc::new(Self {
            node,
            redis,
            scripts,
            config,
            outbox,
            sockets,
            tasks: Mutex::new(HashMap::new()),
            next_task: std::sync::atomic::AtomicU64::new(1),
            stopping: watch::channel(false).0,
            webhooks,
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

    /// Whether a task of this node serves `room` (or is starting to): its
    /// commands may be handed to it directly; one that finds the room is not
    /// its own answers them `moved`.
    pub fn serves(&self, room: &str) -> bool {
        !*self.stopping.borrow() && self.lock().contains_key(room)
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
        // Commands taken from `rx` and not applied when the task ends.
        let mut left = VecDeque::new();
        let Some((mut token, mut owner)) = self.start(&room).await else {
            self.give_up(&room, id, left, rx, 0).await;
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
                    // This node's sockets are closed: they leave as
                    // disconnected, committed while the room is still ours.
                    let step = owner.disconnect_node(&self.node);
                    if !self.commit(&room, &token, &mut owner, step).await {
                        break;
                    }
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
                    // Group commit: every command already waiting, applied
                    // in order, committed once.
                    left.push_back(command);
                    while left.len() < GROUP_MAX {
                        match rx.try_recv() {
                            Ok(command) => left.push_back(command),
                            Err(_) => break,
                        }
                    }
                    if !self.step(&room, &token, &mut owner, &mut left).await {
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
                            deadline: None,
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
        self.give_up(&room, id, left, rx, epoch_of(&token)).await;
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
            .reclaim(
                &self.redis,
                room,
                &self.node,
                &snapshot,
                &info,
                epoch_of(token),
            )
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

    /// Applies `commands` in order and commits them, as few commits as the
    /// core's groups allow (one, unless the room empties on the way).
    /// `false` when the room is no longer ours: what was not applied is
    /// left in `commands`.
    async fn step(
        &self,
        room: &str,
        token: &str,
        owner: &mut Owner,
        commands: &mut VecDeque<Command>,
    ) -> bool {
        while !commands.is_empty() {
            // Kept to answer `moved` if the commit is fenced: then nothing of
            // the group took effect, and the room's new owner must get it.
            let group: Vec<Command> = commands.iter().take(GROUP_MAX).cloned().collect();
            let waiting = commands.len();
            let step = owner.apply_group(commands, GROUP_MAX, now());
            let applied = waiting - commands.len();
            // It must not take effect after its first deadline (that of the
            // requests it applied: `Step::deadline`).
            match self.try_commit(room, token, owner, step).await {
                Some(true) => {}
                Some(false) => return false,
                None => {
                    for command in group.into_iter().take(applied).rev() {
                        commands.push_front(command);
                    }
                    return false;
                }
            }
        }
        true
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
        self.try_commit(room, token, owner, step)
            .await
            .unwrap_or(false)
    }

    /// [`Owners::commit`], undoing a step that reaches Redis past its
    /// [`Step::deadline`] (Redis's clock: nothing is written), telling a
    /// fenced commit (`None`: nothing was written or told, the room has
    /// another owner) from a room let go, or fenced after this node's
    /// signals went out (`Some(false)`).
    async fn try_commit(
        &self,
        room: &str,
        token: &str,
        owner: &mut Owner,
        step: Step,
    ) -> Option<bool> {
        let deleted = owner.is_empty();
        if !deleted && step.batches.is_empty() && step.commit == Commit::Unchanged {
            return Some(true);
        }
        // Each other node's batches in one inbox message (a JSON array, in
        // order); this node's are delivered here once the commit succeeded.
        let mut batches: Vec<(String, String)> = Vec::new();
        let mut mine = Vec::new();
        for (node, batch) in step.batches {
            if node == self.node {
                mine.push(batch);
                continue;
            }
            let text = match serde_json::to_string(&batch) {
                Ok(text) => text,
                Err(e) => {
                    tracing::error!(error = %e, "cannot serialize a batch");
                    continue;
                }
            };
            match batches.iter_mut().find(|(n, _)| *n == node) {
                Some((_, list)) => {
                    list.push(',');
                    list.push_str(&text);
                }
                None => batches.push((node, format!("[{text}"))),
            }
        }
        for (_, list) in &mut batches {
            list.push(']');
        }
        // Signals alone (no change, no read): nothing to write and no
        // version to fence, so this node's share is delivered at once; with
        // nothing for other nodes, nothing touches Redis (the design's "when
        // sender, owner and target share a node").
        let early = !deleted
            && step.commit == Commit::Unchanged
            && !mine.is_empty()
            && mine.iter().all(Batch::is_signal);
        if early {
            self.sockets.receive_all(std::mem::take(&mut mine));
            if batches.is_empty() {
                return Some(true);
            }
        }
        let texts = match &step.commit {
            Commit::Changed { snapshot, info } => {
                match (serde_json::to_string(snapshot), serde_json::to_string(info)) {
                    (Ok(s), Ok(i)) => Some((s, i)),
                    _ => {
                        tracing::error!(%room, "cannot serialize a room");
                        owner.rollback(step.before);
                        return Some(true);
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
            .commit_by(&self.redis, room, token, write, &batches, step.deadline)
            .await
        {
            Ok(Committed::Ok) => {
                self.committed(room, owner, &step.changes);
                if !mine.is_empty() {
                    self.sockets.receive_all(mine);
                }
                Some(!deleted)
            }
            Ok(Committed::Fenced) => {
                tracing::warn!(%room, "fenced: the room has another owner");
                // Signals already delivered here must not be sent again:
                // then the group is not handed to the new owner.
                if early { Some(false) } else { None }
            }
            Ok(Committed::Late) => {
                tracing::warn!(%room, "a command reached Redis past its deadline: undone");
                owner.rollback(step.before);
                Some(true)
            }
            Ok(Committed::Lost) => {
                // Redis lost its data: the room is still ours in memory, and
                // the next renewal writes it back (a new epoch).
                tracing::warn!(%room, "Redis lost this room: the step is undone, the room claimed again next");
                owner.rollback(step.before);
                Some(true)
            }
            Err(e) => {
                tracing::warn!(error = %e, %room, "commit failed; reading the room back");
                let wrote = match (&step.commit, &texts) {
                    _ if deleted => Some(None),
                    (Commit::Changed { .. }, Some((snapshot, _))) => Some(Some(snapshot.as_str())),
                    _ => None,
                };
                // Nothing to write (a signal): nothing to undo either.
                if let Some(wrote) = wrote
                    && self.read_back(room, wrote, step.deadline).await
                {
                    tracing::warn!(%room, "the commit went through after all: the change stands");
                    self.committed(room, owner, &step.changes);
                    // Its batches went out to the other nodes: this node's too.
                    if !mine.is_empty() {
                        self.sockets.receive_all(mine);
                    }
                } else {
                    owner.rollback(step.before);
                }
                Some(true)
            }
        }
    }

    /// A committed step's changes, told and counted. Committed once, by the
    /// room's one owner: its webhooks go from here, and from no other node,
    /// and the cluster counts each change once, here.
    fn committed(&self, room: &str, owner: &Owner, changes: &[RoomChange]) {
        crate::metrics::changes(changes);
        self.count(room, Some(owner.peer_count()));
        if let Some(webhooks) = &self.webhooks
            && !changes.is_empty()
        {
            webhooks.send(changes, now());
        }
    }

    /// After a commit whose answer was lost: whether `sr:snap:{room}` is what
    /// it wrote (`None`: deleted), so its change stands (its batches went out
    /// with it). Read with Redis's clock and judged by the core
    /// ([`read_back`]): until the step's deadline has passed, a script still
    /// queued in Redis (the connection manager may have dropped the
    /// connection it went out on) could yet run, so a read that does not find
    /// it is repeated; past it, the script would answer `late`. Tried every
    /// [`READ_BACK_RETRY`], at most [`READ_BACK_TRIES`] times (the room is
    /// not served meanwhile); `false` when that gave no answer: the change is
    /// undone, as it was before this read.
    async fn read_back(&self, room: &str, wrote: Option<&str>, deadline: Option<u64>) -> bool {
        for _ in 0..READ_BACK_TRIES {
            match self.scripts.read_back(&self.redis, room).await {
                Ok((now, found)) => match read_back(wrote, found.as_deref(), now, deadline) {
                    ReadBack::Stands => return true,
                    ReadBack::Undone => return false,
                    ReadBack::Wait => {
                        tracing::debug!(%room, "the lost commit may still run: reading again");
                    }
                },
                Err(e) => tracing::debug!(error = %e, %room, "cannot read a room back yet"),
            }
            tokio::time::sleep(READ_BACK_RETRY).await;
        }
        false
    }

    /// Stops serving `room`: every request still queued is answered `moved`
    /// (its home node routes it again), every departure routed again from here.
    async fn give_up(
        &self,
        room: &str,
        id: u64,
        left: VecDeque<Command>,
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
        let queued = std::iter::from_fn(|| rx.try_recv().ok());
        for command in left.into_iter().chain(queued) {
            if super::sender::is_departure(&command) && !stopping {
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
                grant: None,
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

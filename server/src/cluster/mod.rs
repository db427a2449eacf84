//! Cluster mode (`--redis-url`): several nodes sharing rooms through Redis.
//!
//! The design is in `docs/cluster.md`: each room owned by one node through a
//! Redis lease with a fencing epoch, other nodes forwarding their clients'
//! commands to the owner and delivering its events in version order, nodes
//! registered with a short TTL so a dead node's peers can be removed. This
//! module is the `cluster` cargo feature (on by default). What runs: the Redis connection ([`redis`]) and the node's registration
//! ([`node`]); the fencing scripts ([`scripts`]); the inbox reader ([`inbox`]);
//! one task per owned room ([`owners`]); the home side that routes each local
//! socket's requests and emits the owners' answers in version order
//! ([`home`]); REST listings from `sr:rooms` ([`rest`]); a dead node's peers
//! removed by the owners of their rooms, and a dead owner's rooms taken over
//! ([`owners`]); HTTP peers joined and removed through any node, their leases
//! run by the owner; access tokens (checked where a client connects, their
//! claims judged by the room's owner) and webhooks (sent by the room's owner
//! after each commit); members a room lost put back after Redis came back
//! empty ([`heal`]); Redis's clock for deadlines ([`clock`]). "Building it"
//! in the design says where the code is simpler than the design.

mod clock;
mod heal;
mod home;
mod inbox;
mod node;
mod owners;
mod redis;
mod rest;
mod scripts;
mod sender;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use metrics::counter;
use serde_json::value::RawValue;
use signalroom_core::cluster::wire::CommandKind;
use signalroom_core::{ClientEvent, Config, Error, Grant};
use socketioxide::extract::{AckSender, SocketRef};
use tokio::task::JoinHandle;

pub use node::Node;

use crate::health::Health;
use crate::webhooks::Webhooks;
use home::Sockets;
use owners::Owners;
use scripts::Scripts;

/// The longest each step of leaving the cluster may take.
const STOP_STEP: std::time::Duration = std::time::Duration::from_secs(1);

/// A node of a cluster: its registration, its sockets, the rooms it owns.
pub struct Cluster {
    node: Arc<Node>,
    redis: redis::Redis,
    sockets: Arc<Sockets>,
    owners: Arc<Owners>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Cluster {
    /// Joins the cluster at `url` as node `id` (random when `None`), serving
    /// on `addr`, with the rooms' settings `config`. `health` follows Redis.
    /// The rooms this node owns POST their changes to `webhooks`.
    pub fn start(
        url: &str,
        id: Option<String>,
        addr: SocketAddr,
        health: Health,
        config: Config,
        webhooks: Option<Arc<Webhooks>>,
    ) -> anyhow::Result<Arc<Self>> {
        let node = Node::start(url, id, addr, health, settings_digest(&config))?;
        let redis = node.redis().clone();
        let scripts = Arc::new(Scripts::new());
        let (sockets, outgoing) = Sockets::new(node.id(), config.clone());
        let owners = Owners::new(
            node.id().to_owned(),
            redis.clone(),
            scripts.clone(),
            config,
            sockets.outbox(),
            webhooks,
            sockets.clone(),
        );
        // A blocking XREAD holds its connection: the inbox gets its own.
        let inbox_redis = redis::Redis::open(url)?;
        counter!("signalroom_cluster_commands_forwarded_total").absolute(0);
        let tasks = vec![
            tokio::spawn(sender::send_commands(
                node.id().to_owned(),
                redis.clone(),
                scripts.clone(),
                outgoing.commands,
                node.boot(),
                owners.clone(),
                Arc::downgrade(&sockets),
            )),
            tokio::spawn(sender::forward(
                redis.clone(),
                scripts.clone(),
                outgoing.forwards,
            )),
            tokio::spawn(owners::sweep(
                node.id().to_owned(),
                redis.clone(),
                scripts.clone(),
                sockets.outbox(),
            )),
            tokio::spawn(heal::run(
                node.id().to_owned(),
                redis.clone(),
                sockets.clone(),
                node.boot(),
            )),
            tokio::spawn(heal::skip_gaps(sockets.clone())),
            tokio::spawn(inbox::read(
                node.id().to_owned(),
                inbox_redis,
                owners.clone(),
                sockets.clone(),
            )),
        ];
        Ok(Arc::new(Self {
            node,
            redis,
            sockets,
            owners,
            tasks: Mutex::new(tasks),
        }))
    }

    /// The node's id.
    pub fn id(&self) -> &str {
        self.node.id()
    }

    /// A socket connected to this node, with the claims of its access token
    /// (checked here) when it presented one: its joins carry them to the
    /// rooms' owners, which judge them.
    pub fn connect(&self, socket: SocketRef, grant: Option<Grant>) {
        self.sockets.connect(socket, grant);
    }

    /// A socket's event, in the order it sent them.
    pub fn event(
        &self,
        socket: &SocketRef,
        ack: AckSender,
        event: ClientEvent,
        payload: Option<&RawValue>,
        binary: bool,
    ) {
        self.sockets.event(socket, ack, event, payload, binary);
    }

    /// An event of `socket` refused before it was looked at (the event
    /// rate), answered in its turn after the socket's earlier requests.
    pub fn refused(&self, socket: &SocketRef, ack: AckSender, event: ClientEvent, error: Error) {
        self.sockets.refused(socket, ack, event, error);
    }

    /// A socket closed.
    pub fn disconnect(&self, sid: &str) {
        self.sockets.disconnect(sid);
    }

    /// A REST join (`HttpJoin`) or removal (`HttpLeave`) of an HTTP peer of
    /// `room`, answered by the room's owner (which judges `grant`, the bearer
    /// token's claims): status and JSON body.
    pub async fn http(
        &self,
        room: String,
        kind: CommandKind,
        grant: Option<Grant>,
    ) -> Result<(u16, Box<RawValue>), Error> {
        self.sockets.http(room, kind, grant).await
    }

    /// The rooms this node owns and their peers, for `/metrics`: every room
    /// is counted by one node, so the nodes' figures add up to the cluster's.
    pub fn owned(&self) -> (usize, usize) {
        self.owners.owned()
    }

    /// `GET /api/webrtc/rooms` as JSON text.
    pub async fn rooms(&self) -> Result<String, Error> {
        rest::rooms(&self.redis).await
    }

    /// `GET /api/webrtc/rooms/{room}` as JSON text.
    pub async fn room(&self, name: &str) -> Result<String, Error> {
        rest::room(&self.redis, name).await
    }

    /// Leaves the cluster: routes the departures of this node's sockets
    /// (they are closed by now), gives up the leases of the rooms it owns
    /// (the other nodes take them over within a second and remove whatever
    /// members of this node remain, as for a dead node), stops reading and
    /// routing, and removes the node's registration.
    pub async fn stop(&self) {
        self.sockets.flush(STOP_STEP).await;
        self.owners.stop(STOP_STEP).await;
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            task.abort();
        }
        self.node.stop().await;
    }
}

/// A digest of the rooms' settings (the TURN secret among them, so only a
/// digest is published): nodes that publish different ones disagree.
fn settings_digest(config: &Config) -> String {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(format!("{config:?}").as_bytes());
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

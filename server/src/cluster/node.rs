//! This node's registration in the cluster, and its view of Redis's health.
//!
//! A node says it is alive by keeping `sr:node:{id}` in Redis with a short
//! expiry ([`NODE_TTL`]), refreshed every [`HEARTBEAT`]: when the process dies
//! the key runs out within a few seconds, which is how the others will know to
//! remove its peers (`docs/cluster.md`, "A node dies"). The same heartbeat is
//! the health probe: a failed or late refresh marks the node unhealthy
//! (`/healthz` 503, `signalroom_redis_up` 0) until one succeeds again, and
//! refreshing re-creates the key when Redis comes back empty. A node that stops
//! cleanly deletes its key at once. The heartbeat also reads `sr:boot`, which
//! tells when Redis lost its data ([`Boot`]), and publishes a digest of this
//! node's room settings in `sr:settings`, warning when the nodes' differ
//! (judged by `signalroom_core::cluster::disagreeing`).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics::gauge;
use serde_json::json;
use tokio::task::JoinHandle;

use signalroom_core::cluster::disagreeing;

use super::redis::Redis;
use crate::health::Health;
use crate::hub::now;

/// How often the node refreshes its registration (and probes Redis).
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a registration outlives the node's last refresh.
pub const NODE_TTL: Duration = Duration::from_secs(3);

/// How long after Redis lost its data (a new `sr:boot`) this node claims no
/// room it did not own: the owners write their rooms back first.
pub const FRESH_REDIS: Duration = Duration::from_secs(2);

/// Which life of Redis's data this node trusts to claim rooms in.
///
/// The first node to find `sr:boot` absent sets it to a random id; a node
/// that sees an id other than the one it knew learns that Redis lost its data
/// (restarted empty). Owners then claim their rooms again from memory within
/// a second ([`super::owners`]); until [`FRESH_REDIS`] has passed, this node
/// claims no other room, so that a command cannot create an empty copy of a
/// room whose owner is about to write it back.
#[derive(Default)]
pub struct Boot {
    /// The id, and from when it may be claimed under.
    known: std::sync::Mutex<Option<(String, tokio::time::Instant)>>,
    /// How many times this node saw the id change (Redis lost its data).
    losses: std::sync::atomic::AtomicU64,
}

impl Boot {
    /// The id rooms may be claimed under now, if any.
    pub fn trusted(&self) -> Option<String> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known
            .as_ref()
            .filter(|(_, from)| tokio::time::Instant::now() >= *from)
            .map(|(id, _)| id.clone())
    }

    /// Whether Redis lost its data moments ago and rooms may not be claimed
    /// yet (before the first id is known, rooms may not be claimed either,
    /// but nothing is healing).
    pub fn healing(&self) -> bool {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known
            .as_ref()
            .is_some_and(|(_, from)| tokio::time::Instant::now() < *from)
    }

    /// How many times this node saw Redis lose its data: a change starts the
    /// restore passes ([`super::heal`]).
    pub fn losses(&self) -> u64 {
        self.losses.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Redis says the id is `id`.
    fn seen(&self, id: String) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        match known.as_ref() {
            Some((old, _)) if *old == id => {}
            Some(_) => {
                tracing::warn!("Redis lost its data: claiming only this node's rooms for 2 s");
                *known = Some((id, tokio::time::Instant::now() + FRESH_REDIS));
                self.losses
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            // The first id this node sees: trusted at once.
            None => *known = Some((id, tokio::time::Instant::now())),
        }
    }
}

/// After how long without a refresh a settings digest is deleted, ms.
const SETTINGS_FORGOTTEN_MS: u64 = 60_000;

/// KEYS: `sr:settings` (digest -> when last published, Redis ms). ARGV: this
/// node's digest, how old an entry is deleted. Publishes the digest; returns
/// Redis's time and every entry.
const SETTINGS: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('HSET', KEYS[1], ARGV[1], now)
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local at = tonumber(all[i + 1])
  if now - at > tonumber(ARGV[2]) then
    redis.call('HDEL', KEYS[1], all[i])
  else
    table.insert(out, {all[i], at})
  end
end
return {now, out}
";

/// Sets `sr:boot` to ARGV[1] if it is absent; returns its value.
const BOOT: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
";

/// A running node: its id, its Redis handle, its heartbeat.
pub struct Node {
    id: String,
    key: String,
    redis: Redis,
    boot: Arc<Boot>,
    heartbeat: JoinHandle<()>,
}

impl Node {
    /// Registers this node in the Redis at `url` as `{id}.{8 random hex
    /// digits}` (`id` random when `None`) and starts its heartbeat, which drives `health`. Fails only on
    /// a malformed URL: an unreachable Redis makes the node unhealthy, not absent.
    pub fn start(
        url: &str,
        id: Option<String>,
        addr: SocketAddr,
        health: Health,
        settings: String,
    ) -> anyhow::Result<Arc<Self>> {
        let redis = Redis::open(url)?;
        // Each run is a node of its own: a node restarted under the same
        // name (a crash, then its supervisor) must not pass for its
        // predecessor, whose registration may still be alive for a moment
        // and whose peers must leave as a dead node's do.
        let name = id.unwrap_or_else(random_id);
        let id = format!("{name}.{}", &random_id()[..8]);
        let key = format!("sr:node:{id}");
        let record =
            json!({"node": id, "addr": addr.to_string(), "started_at": now().0}).to_string();
        tracing::info!(node = %id, "joining the cluster");
        // Unhealthy until Redis has answered once.
        health.set_ok(false);
        gauge!("signalroom_redis_up").set(0.0);
        let boot = Arc::new(Boot::default());
        gauge!("signalroom_cluster_settings_differ").set(0.0);
        let heartbeat = tokio::spawn(beat(
            redis.clone(),
            key.clone(),
            record,
            health,
            boot.clone(),
            settings,
        ));
        Ok(Arc::new(Self {
            id,
            key,
            redis,
            boot,
            heartbeat,
        }))
    }

    /// The node's id in the cluster: its name and this run's suffix.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Which life of Redis's data this node may claim rooms in.
    pub fn boot(&self) -> Arc<Boot> {
        self.boot.clone()
    }

    /// The node's Redis handle.
    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// Stops the heartbeat and removes the registration (best effort: if
    /// Redis is down, the key runs out by itself).
    pub async fn stop(&self) {
        self.heartbeat.abort();
        let mut del = redis::cmd("DEL");
        del.arg(&self.key);
        if let Err(e) = self.redis.call::<i64>("DEL node", &del).await {
            tracing::warn!(error = %e, "cannot remove this node's registration");
        }
    }
}

/// Refreshes the registration every [`HEARTBEAT`], and reports health.
async fn beat(
    redis: Redis,
    key: String,
    record: String,
    health: Health,
    boot: Arc<Boot>,
    settings: String,
) {
    let boot_script = redis::Script::new(BOOT);
    let settings_script = redis::Script::new(SETTINGS);
    let mut differ = false;
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ttl_ms = u64::try_from(NODE_TTL.as_millis()).unwrap_or(u64::MAX);
    let mut set = redis::cmd("SET");
    set.arg(&key).arg(&record).arg("PX").arg(ttl_ms);
    loop {
        tick.tick().await;
        let ok = match redis.call::<()>("SET node", &set).await {
            Ok(()) => true,
            Err(e) => {
                if health.is_ok() {
                    tracing::error!(error = %e, "Redis unreachable: this node is unhealthy");
                }
                false
            }
        };
        if ok && let Err(e) = super::clock::measure(&redis).await {
            tracing::debug!(error = %e, "cannot read Redis's clock");
        }
        if ok {
            // A new id each time: one this node set before Redis lost its data
            // must not come back and hide the loss.
            let mut inv = boot_script.key("sr:boot");
            inv.arg(random_id());
            match redis.invoke::<String>("boot", &inv).await {
                Ok(id) => boot.seen(id),
                Err(e) => tracing::debug!(error = %e, "cannot read sr:boot"),
            }
        }
        if ok {
            let mut inv = settings_script.key("sr:settings");
            inv.arg(&settings).arg(SETTINGS_FORGOTTEN_MS);
            match redis
                .invoke::<(u64, Vec<(String, u64)>)>("settings", &inv)
                .await
            {
                Ok((now, published)) => {
                    let apart = disagreeing(&published, now);
                    if apart.is_some() != differ {
                        differ = apart.is_some();
                        gauge!("signalroom_cluster_settings_differ")
                            .set(f64::from(u8::from(differ)));
                        match apart {
                            Some(digests) => tracing::error!(
                                mine = %settings, ?digests,
                                "the nodes run different room settings (--max-peers, --max-signal-bytes, --http-peer-ttl, ICE servers, TURN): each room follows its owner's; give every node the same"
                            ),
                            None => tracing::info!("the nodes run the same room settings again"),
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot publish this node's settings"),
            }
        }
        if ok && !health.is_ok() {
            tracing::info!("Redis answers again: this node is healthy");
        }
        health.set_ok(ok);
        gauge!("signalroom_redis_up").set(if ok { 1.0 } else { 0.0 });
    }
}

/// 16 hex digits from the standard library's per-process random hash keys.
fn random_id() -> String {
    format!("{:016x}", RandomState::new().hash_one(std::process::id()))
}

//! The Lua scripts that fence room ownership, and the key names they use.
//!
//! Redis runs each script atomically, so a check and the writes it guards
//! cannot interleave with another node's: **route_many** sends commands to
//! their rooms' owners, claiming a room for the sender (a fresh fencing epoch
//! from `sr:epoch`) when nobody owns it; **commit** writes a room's snapshot and
//! listing and appends every node's batches to its inbox, only while the
//! caller's token `"{node}:{epoch}"` is still the room's owner key, and all
//! or nothing (a failed check writes nothing); **renew** extends a lease the
//! caller still holds, **reclaim** takes it again with the room's state
//! when Redis lost it, and **release** gives it up (a node stopping);
//! **orphans** lists rooms whose lease ran out with nobody holding it (their
//! owner died or stopped). None of them knows a room rule: those stay in the
//! core's registry, run by the owner (`docs/cluster.md`, "Redis keys").

use redis::Script;

use super::redis::{Redis, RedisDown};

/// How long a room's lease outlives its owner's last renewal, ms.
pub const LEASE_MS: u64 = 5_000;
/// The approximate length each inbox stream is trimmed to. A batch carries
/// whole peer lists (about 10 KB for 100 peers), so this bounds an inbox that
/// nobody reads at about 100 MB; a live reader is never that far behind.
pub const INBOX_MAXLEN: u64 = 10_000;
/// How long an inbox outlives its last message: a dead node's goes away.
pub const INBOX_TTL_MS: u64 = 60_000;

/// The owner key (lease and fencing token) of a room.
pub fn owner_key(room: &str) -> String {
    format!("sr:owner:{room}")
}

/// The last committed snapshot of a room.
pub fn snap_key(room: &str) -> String {
    format!("sr:snap:{room}")
}

// `sr:leases` (a sorted set: each owned room's lease expiry on Redis's clock,
// ms), scanned for rooms whose owner died, is named in the scripts alone.

/// The listing of every room, what REST answers with.
pub const ROOMS_KEY: &str = "sr:rooms";

/// A node's registration key.
pub fn node_key(node: &str) -> String {
    format!("sr:node:{node}")
}

/// A node's inbox stream.
pub fn inbox_key(node: &str) -> String {
    format!("sr:in:{node}")
}

/// No KEYS (the owner keys are named from the rooms). ARGV: this node, lease
/// ms, inbox maxlen, inbox ttl ms, the `sr:boot` id this node may claim rooms
/// under, then (room, command) pairs. Routes every command in order to its
/// room's owner (`sr:owner:{room}`), claiming an unowned room for this node
/// (a fresh epoch from `sr:epoch`, `sr:leases` updated) when `sr:boot`
/// allows; the commands for each other node go to its inbox as one message
/// (`cs`, a JSON array, in order), those for this node are not written (the
/// caller hands them to its own owner tasks). Returns each command's owner
/// node, or `''` when nobody owns its room and this node may not claim it.
const ROUTE_MANY: &str = r"
local out = {}
local inboxes = {}
local order = {}
local boot = nil
for i = 6, #ARGV, 2 do
  local room = ARGV[i]
  local key = 'sr:owner:' .. room
  local owner = redis.call('GET', key)
  if not owner then
    if boot == nil then
      boot = redis.call('GET', 'sr:boot')
    end
    if boot == ARGV[5] then
      local epoch = redis.call('INCR', 'sr:epoch')
      owner = ARGV[1] .. ':' .. epoch
      redis.call('SET', key, owner, 'PX', ARGV[2])
      local t = redis.call('TIME')
      redis.call('ZADD', 'sr:leases', t[1] * 1000 + math.floor(t[2] / 1000) + ARGV[2], room)
    end
  end
  local node = ''
  if owner then
    node = string.match(owner, '^(.*):%d+$')
    if node ~= ARGV[1] then
      if not inboxes[node] then
        inboxes[node] = {}
        table.insert(order, node)
      end
      table.insert(inboxes[node], ARGV[i + 1])
    end
  end
  table.insert(out, node)
end
for _, node in ipairs(order) do
  redis.call('XADD', 'sr:in:' .. node, 'MAXLEN', '~', ARGV[3], '*', 'cs', '[' .. table.concat(inboxes[node], ',') .. ']')
  redis.call('PEXPIRE', 'sr:in:' .. node, ARGV[4])
end
return out
";

/// KEYS: a node's inbox. ARGV: inbox maxlen, inbox ttl ms, a JSON array of
/// batches (one inbox message, `bs`).
const DELIVER: &str = r"
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'bs', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

/// KEYS: snapshot key. Redis's `TIME` in ms, and the snapshot (nil if none).
const READ_BACK: &str = r"
local t = redis.call('TIME')
return {t[1] * 1000 + math.floor(t[2] / 1000), redis.call('GET', KEYS[1])}
";

/// KEYS: owner key, snapshot key, rooms hash. ARGV: token, mode (`keep`,
/// `set`, `del`), room, snapshot, info, inbox maxlen, inbox ttl ms, the
/// command's deadline on Redis's clock (ms; 0 for none), then (node, JSON
/// array of batches) pairs, each one inbox message (`bs`).
const COMMIT: &str = r"
local owner = redis.call('GET', KEYS[1])
if not owner then
  return 'lost'
end
if owner ~= ARGV[1] then
  return 'fenced'
end
if tonumber(ARGV[8]) > 0 then
  local t = redis.call('TIME')
  if t[1] * 1000 + math.floor(t[2] / 1000) > tonumber(ARGV[8]) then
    return 'late'
  end
end
if ARGV[2] == 'set' then
  redis.call('SET', KEYS[2], ARGV[4])
  redis.call('HSET', KEYS[3], ARGV[3], ARGV[5])
elseif ARGV[2] == 'del' then
  redis.call('DEL', KEYS[2])
  redis.call('HDEL', KEYS[3], ARGV[3])
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', 'sr:leases', ARGV[3])
end
for i = 9, #ARGV, 2 do
  redis.call('XADD', 'sr:in:' .. ARGV[i], 'MAXLEN', '~', ARGV[6], '*', 'bs', ARGV[i + 1])
  redis.call('PEXPIRE', 'sr:in:' .. ARGV[i], ARGV[7])
end
return 'ok'
";

/// KEYS: owner key. ARGV: token, lease ms, room. Returns 1 if renewed, 0 if lost.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  local t = redis.call('TIME')
  redis.call('ZADD', 'sr:leases', t[1] * 1000 + math.floor(t[2] / 1000) + ARGV[2], ARGV[3])
  return 1
end
return 0
";

/// KEYS: owner key. ARGV: token, room. Gives the lease up if `token` still
/// holds it, and marks the room due at once for the other nodes' sweeps.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('ZADD', 'sr:leases', 0, ARGV[2])
  return 1
end
return 0
";

/// KEYS: owner key, snapshot key, rooms hash. ARGV: this node, lease ms,
/// room, snapshot, info, the caller's last epoch. When nobody holds the room
/// (Redis lost its data), claims it under a new epoch above the last one
/// (a fresh `sr:epoch` starts again at 0) and writes its snapshot and listing
/// again; returns the new epoch, or 0 if someone holds it.
const RECLAIM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
if tonumber(redis.call('GET', 'sr:epoch') or '0') < tonumber(ARGV[6]) then
  redis.call('SET', 'sr:epoch', ARGV[6])
end
local epoch = redis.call('INCR', 'sr:epoch')
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. epoch, 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[4])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[5])
local t = redis.call('TIME')
redis.call('ZADD', 'sr:leases', t[1] * 1000 + math.floor(t[2] / 1000) + ARGV[2], ARGV[3])
return epoch
";

/// No KEYS. ARGV: the most rooms to return. Returns the rooms whose lease ran
/// out with nobody holding it and a snapshot left (their owner died);
/// forgets leases of rooms with neither.
const ORPHANS: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local due = redis.call('ZRANGEBYSCORE', 'sr:leases', '-inf', now, 'LIMIT', 0, ARGV[1])
local out = {}
for _, room in ipairs(due) do
  if redis.call('EXISTS', 'sr:owner:' .. room) == 0 then
    if redis.call('EXISTS', 'sr:snap:' .. room) == 1 then
      table.insert(out, room)
    else
      redis.call('ZREM', 'sr:leases', room)
    end
  end
end
return out
";

/// What a commit writes besides the batches.
pub enum Write<'a> {
    /// Nothing (the room did not change).
    Keep,
    /// The room's snapshot and its listing, both JSON.
    Set {
        /// `RoomSnapshot` JSON.
        snapshot: &'a str,
        /// `RoomInfo` JSON.
        info: &'a str,
    },
    /// The room is gone: snapshot, listing and lease removed.
    Delete,
}

/// How a commit ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Committed {
    /// Written, and the batches are in their inboxes.
    Ok,
    /// The room is not the caller's any more; nothing was written.
    Fenced,
    /// Nobody holds the room (Redis lost its data): nothing was written; the
    /// owner claims it again from memory ([`Scripts::reclaim`]).
    Lost,
    /// Redis's clock is past the command's deadline (its home node has
    /// answered `unavailable`): nothing was written.
    Late,
}

/// The three scripts, loaded once per node.
pub struct Scripts {
    deliver: Script,
    read_back: Script,
    route_many: Script,
    commit: Script,
    renew: Script,
    orphans: Script,
    release: Script,
    reclaim: Script,
}

impl Scripts {
    /// Prepares the scripts (Redis loads them on first use).
    pub fn new() -> Self {
        Self {
            deliver: Script::new(DELIVER),
            read_back: Script::new(READ_BACK),
            route_many: Script::new(ROUTE_MANY),
            commit: Script::new(COMMIT),
            renew: Script::new(RENEW),
            orphans: Script::new(ORPHANS),
            release: Script::new(RELEASE),
            reclaim: Script::new(RECLAIM),
        }
    }

    /// Routes `commands` ((room, command JSON) pairs) in order in one call,
    /// as [`ROUTE_MANY`] says: each one's owner node, `None` where nobody
    /// owns the room and this node may not claim it now (nothing was sent
    /// for it). Those owned by `node` itself are not sent: the caller hands
    /// them to its own owner tasks, in this order.
    pub async fn route_many(
        &self,
        redis: &Redis,
        node: &str,
        commands: &[(&str, String)],
        boot: Option<&str>,
    ) -> Result<Vec<Option<String>>, RedisDown> {
        let mut inv = self.route_many.prepare_invoke();
        inv.arg(node)
            .arg(LEASE_MS)
            .arg(INBOX_MAXLEN)
            .arg(INBOX_TTL_MS)
            .arg(boot.unwrap_or(""));
        for (room, command) in commands {
            inv.arg(*room).arg(command);
        }
        let owners: Vec<String> = redis.invoke("route_many", &inv).await?;
        Ok(owners
            .into_iter()
            .map(|o| Some(o).filter(|o| !o.is_empty()))
            .collect())
    }

    /// Commits one step of `room` under `token`: `write`, then each
    /// (node, JSON array of batches) appended to that node's inbox as one
    /// message, in order. With a `deadline` (ms, Redis's clock), a command
    /// past it by Redis's `TIME` writes nothing ([`Committed::Late`]).
    pub async fn commit_by(
        &self,
        redis: &Redis,
        room: &str,
        token: &str,
        write: Write<'_>,
        batches: &[(String, String)],
        deadline: Option<u64>,
    ) -> Result<Committed, RedisDown> {
        let mut inv = self.commit.key(owner_key(room));
        inv.key(snap_key(room)).key(ROOMS_KEY).arg(token);
        match write {
            Write::Keep => inv.arg("keep").arg(room).arg("").arg(""),
            Write::Set { snapshot, info } => inv.arg("set").arg(room).arg(snapshot).arg(info),
            Write::Delete => inv.arg("del").arg(room).arg("").arg(""),
        };
        inv.arg(INBOX_MAXLEN)
            .arg(INBOX_TTL_MS)
            .arg(deadline.unwrap_or(0));
        for (node, batch) in batches {
            inv.arg(node).arg(batch);
        }
        let answer: String = redis.invoke("commit", &inv).await?;
        Ok(match answer.as_str() {
            "ok" => Committed::Ok,
            "lost" => Committed::Lost,
            "late" => Committed::Late,
            _ => Committed::Fenced,
        })
    }

    /// Appends `batches` (a JSON array) to `node`'s inbox as one message.
    pub async fn deliver(&self, redis: &Redis, node: &str, batches: &str) -> Result<(), RedisDown> {
        let mut inv = self.deliver.key(inbox_key(node));
        inv.arg(INBOX_MAXLEN).arg(INBOX_TTL_MS).arg(batches);
        let _: i64 = redis.invoke("deliver", &inv).await?;
        Ok(())
    }

    /// Redis's clock (ms) and `room`'s snapshot (`None`: no such room), read
    /// together: what [`signalroom_core::cluster::read_back`] judges.
    pub async fn read_back(
        &self,
        redis: &Redis,
        room: &str,
    ) -> Result<(u64, Option<String>), RedisDown> {
        let inv = self.read_back.key(snap_key(room));
        redis.invoke("read back", &inv).await
    }

    /// Extends `room`'s lease if `token` still holds it; `false` if it is lost.
    pub async fn renew(&self, redis: &Redis, room: &str, token: &str) -> Result<bool, RedisDown> {
        let mut inv = self.renew.key(owner_key(room));
        inv.arg(token).arg(LEASE_MS).arg(room);
        let renewed: i64 = redis.invoke("renew", &inv).await?;
        Ok(renewed == 1)
    }

    /// Claims `room` again for `node` if nobody holds it (Redis restarted
    /// empty), writing its snapshot and listing back. The new token, or
    /// `None` if another node holds the room.
    pub async fn reclaim(
        &self,
        redis: &Redis,
        room: &str,
        node: &str,
        snapshot: &str,
        info: &str,
        last_epoch: u64,
    ) -> Result<Option<String>, RedisDown> {
        let mut inv = self.reclaim.key(owner_key(room));
        inv.key(snap_key(room))
            .key(ROOMS_KEY)
            .arg(node)
            .arg(LEASE_MS)
            .arg(room)
            .arg(snapshot)
            .arg(info)
            .arg(last_epoch);
        let epoch: u64 = redis.invoke("reclaim", &inv).await?;
        Ok((epoch > 0).then(|| format!("{node}:{epoch}")))
    }

    /// Gives `room`'s lease up (a node stopping) if `token` still holds it.
    pub async fn release(&self, redis: &Redis, room: &str, token: &str) -> Result<(), RedisDown> {
        let mut inv = self.release.key(owner_key(room));
        inv.arg(token).arg(room);
        redis.invoke::<i64>("release", &inv).await.map(|_| ())
    }

    /// Up to `max` rooms whose owner died (lease run out, snapshot left).
    pub async fn orphans(&self, redis: &Redis, max: usize) -> Result<Vec<String>, RedisDown> {
        let mut inv = self.orphans.prepare_invoke();
        inv.arg(max);
        redis.invoke("orphans", &inv).await
    }
}

//! The Lua scripts that fence room ownership, and the key names they use.
//!
//! Redis runs each script atomically, so a check and the writes it guards
//! cannot interleave with another node's: **route** sends a command to its
//! room's owner, claiming the room for the sender (a fresh fencing epoch from
//! `sr:epoch`) when nobody owns it; **commit** writes a room's snapshot and
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

/// KEYS: owner key. ARGV: this node, lease ms, inbox maxlen, the command, the
/// room, inbox ttl ms, the `sr:boot` id this node may claim rooms under.
/// Returns `{owner node, 1 if this call claimed the room}`, or `{'', 0}` when
/// nobody owns the room and this node may not claim it (Redis lost its data
/// moments ago, or this node has not read `sr:boot` yet): nothing was sent.
const ROUTE: &str = r"
local owner = redis.call('GET', KEYS[1])
local claimed = 0
if not owner then
  if redis.call('GET', 'sr:boot') ~= ARGV[7] then
    return {'', 0}
  end
  local epoch = redis.call('INCR', 'sr:epoch')
  owner = ARGV[1] .. ':' .. epoch
  redis.call('SET', KEYS[1], owner, 'PX', ARGV[2])
  local t = redis.call('TIME')
  redis.call('ZADD', 'sr:leases', t[1] * 1000 + math.floor(t[2] / 1000) + ARGV[2], ARGV[5])
  claimed = 1
end
local node = string.match(owner, '^(.*):%d+$')
redis.call('XADD', 'sr:in:' .. node, 'MAXLEN', '~', ARGV[3], '*', 'c', ARGV[4])
redis.call('PEXPIRE', 'sr:in:' .. node, ARGV[6])
return {node, claimed}
";

/// KEYS: owner key, snapshot key, rooms hash. ARGV: token, mode (`keep`,
/// `set`, `del`), room, snapshot, info, inbox maxlen, inbox ttl ms, the
/// command's deadline on Redis's clock (ms; 0 for none), then (node, batch)
/// pairs.
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
  redis.call('XADD', 'sr:in:' .. ARGV[i], 'MAXLEN', '~', ARGV[6], '*', 'b', ARGV[i + 1])
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
    route: Script,
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
            route: Script::new(ROUTE),
            commit: Script::new(COMMIT),
            renew: Script::new(RENEW),
            orphans: Script::new(ORPHANS),
            release: Script::new(RELEASE),
            reclaim: Script::new(RECLAIM),
        }
    }

    /// Sends `command` (JSON) to `room`'s owner, claiming the room for `node`
    /// when nobody owns it and `boot` (the `sr:boot` id this node trusts) is
    /// current. Returns the owner's node id, or `None` when nothing was sent
    /// (nobody owns the room and this node may not claim it now).
    pub async fn route(
        &self,
        redis: &Redis,
        room: &str,
        node: &str,
        command: &str,
        boot: Option<&str>,
    ) -> Result<Option<String>, RedisDown> {
        let mut inv = self.route.key(owner_key(room));
        inv.arg(node)
            .arg(LEASE_MS)
            .arg(INBOX_MAXLEN)
            .arg(command)
            .arg(room)
            .arg(INBOX_TTL_MS)
            .arg(boot.unwrap_or(""));
        let (owner, _claimed): (String, i64) = redis.invoke("route", &inv).await?;
        Ok(Some(owner).filter(|o| !o.is_empty()))
    }

    /// Commits one step of `room` under `token`: `write`, then each
    /// (node, batch JSON) appended to that node's inbox, in order. With a
    /// `deadline` (ms, Redis's clock), a command past it by Redis's `TIME`
    /// writes nothing ([`Committed::Late`]).
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

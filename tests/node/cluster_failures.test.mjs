// Cluster mode when things fail (docs/cluster.md "Failures", the contract's "Cluster"):
// a node killed with SIGKILL has its peers removed within 10 s, each its own version, told
// to the members on other nodes, whether it held members or owned the room; a node stopped
// with SIGTERM leaves the same way and its rooms go on; after Redis restarts empty the
// owners write their rooms back and a departure that could not be sent meanwhile is applied;
// while Redis
// hangs, a join answers `unavailable` and changes nothing, and works again once Redis answers.
//
// Every test starts its own private Redis and nodes (some are killed). The nodes are the server
// binary given by env SIGNALROOM_CLUSTER_BIN; without it these are skipped.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getJson, uniq, ids, withTimeout, startServer, connect } from '../lib/server.mjs';
import { startCluster, CLUSTER_SKIP, CLUSTER_BIN } from '../lib/cluster.mjs';

const skip = CLUSTER_SKIP;
/** The contract's bound for a dead node's peers to be removed. */
const DEAD_NODE_MS = 10000;

/** Kills a node's process outright and waits for it to be gone. */
async function kill(node) {
  node.proc.kill('SIGKILL');
  await node.exited;
}

test('a killed node\'s peers leave within 10 s, each its own version', { skip }, async () => {
  const { nodes, on, cleanup } = await startCluster(3);
  try {
    const room = uniq('dead');
    const a = await on(0); // the first joiner's node owns the room
    const d = await on(1);
    const [b, c] = [await on(2), await on(2)];
    await a.join(room, 'a');
    await d.join(room, 'd', 'd', { updates: 'delta' });
    await b.join(room, 'b');
    await c.join(room, 'c');
    await a.next('peer_list_updated', (p) => p.version === 4);
    await d.next('peer_joined', (p) => p.version === 4);
    await kill(nodes[2]);
    const first = await d.next('peer_left', (p) => p.version === 5, DEAD_NODE_MS);
    const second = await d.next('peer_left', (p) => p.version === 6, DEAD_NODE_MS);
    assert.deepEqual([first.peer_id, second.peer_id], ['b', 'c']);
    assert.equal(second.total_peers, 2);
    await a.next('peer_list_updated', (p) => p.version === 5, DEAD_NODE_MS);
    const last = await a.next('peer_list_updated', (p) => p.version === 6, DEAD_NODE_MS);
    assert.deepEqual(ids(last.peers), ['a', 'd']);
  } finally {
    await cleanup();
  }
});

test('a node killed and restarted at once under the same --node-id: its old peers still leave within 10 s', { skip }, async () => {
  const { redis, nodes, on, cleanup } = await startCluster(2);
  let again;
  try {
    const room = uniq('reborn');
    const a = await on(0); // n1 owns the room
    const b = await on(1);
    await a.join(room, 'a');
    await b.join(room, 'b');
    await a.next('peer_list_updated', (p) => p.version === 2);
    await kill(nodes[1]);
    // Its supervisor starts it again right away, with the same name, while the dead
    // run's registration (3 s) is still there.
    again = await startServer(['--redis-url', redis.url, '--node-id', 'n2'], { bin: CLUSTER_BIN, single: true });
    // The new run registers on its first heartbeat, which may come just after its
    // listening line; the dead run's registration lives on for at least 2 s.
    let registered;
    await withTimeout((async () => {
      while ((registered = await redis.command('KEYS', 'sr:node:n2.*')).length !== 2) {
        await new Promise((resolve) => { setTimeout(resolve, 20); });
      }
    })(), 1500, 'both runs registered').catch((e) => {
      throw new Error(`${e.message}: ${registered}`);
    });
    // b's peer leaves as a dead node's does, and the new run serves the room.
    const left = await a.next('peer_list_updated', (p) => p.version === 3, DEAD_NODE_MS);
    assert.deepEqual(ids(left.peers), ['a']);
    const c = await connect(again.url);
    try {
      const joined = await c.join(room, 'b');
      assert.deepEqual(ids(joined.success.peers), ['a', 'b']);
      assert.equal(joined.success.version, 4);
    } finally {
      c.close();
    }
  } finally {
    await again?.stop();
    await cleanup();
  }
});

test('a killed owner\'s room is taken over: its peers leave within 10 s and the room goes on', { skip }, async () => {
  const { nodes, on, cleanup } = await startCluster(3);
  try {
    const room = uniq('owner');
    const a = await on(0); // n1 owns the room
    const b = await on(1);
    const c = await on(2);
    await a.join(room, 'a');
    await b.join(room, 'b');
    await c.join(room, 'c');
    await b.next('peer_list_updated', (p) => p.version === 3);
    await kill(nodes[0]);
    const seenByB = await b.next('peer_list_updated', (p) => p.version === 4, DEAD_NODE_MS);
    assert.deepEqual(ids(seenByB.peers), ['b', 'c']);
    assert.deepEqual(ids((await c.next('peer_list_updated', (p) => p.version === 4)).peers), ['b', 'c']);
    // The new owner carries on from the snapshot: the next change is version 5.
    const e = await on(1);
    const joined = await e.join(room, 'e');
    assert.equal(joined.success.version, 5);
    assert.deepEqual(ids(joined.success.peers), ['b', 'c', 'e']);
    assert.equal((await c.next('peer_list_updated', (p) => p.version === 5)).total_peers, 3);
  } finally {
    await cleanup();
  }
});

test('nodes that stop (SIGTERM): their peers leave, the rooms go on elsewhere', { skip }, async () => {
  const { nodes, on, cleanup } = await startCluster(3);
  try {
    const room = uniq('term');
    const a = await on(0); // n1 owns the room
    const b = await on(1);
    const c = await on(2);
    await a.join(room, 'a');
    await b.join(room, 'b');
    await c.join(room, 'c');
    await b.next('peer_list_updated', (p) => p.version === 3);
    // A member's node stops: its client is disconnected and leaves.
    const cGone = c.disconnectedEvent();
    assert.deepEqual(await nodes[2].stop(), { code: 0, signal: null });
    await cGone;
    assert.deepEqual(ids((await b.next('peer_list_updated', (p) => p.version === 4, DEAD_NODE_MS)).peers), ['a', 'b']);
    // The owner's node stops: another node takes the room over and a leaves.
    assert.deepEqual(await nodes[0].stop(), { code: 0, signal: null });
    assert.deepEqual(ids((await b.next('peer_list_updated', (p) => p.version === 5, DEAD_NODE_MS)).peers), ['b']);
    const e = await on(1);
    const joined = await e.join(room, 'e');
    assert.equal(joined.success.version, 6);
    assert.deepEqual(ids(joined.success.peers), ['b', 'e']);
  } finally {
    await cleanup();
  }
});

test('while Redis hangs a join answers unavailable and changes nothing', { skip }, async () => {
  const { redis, nodes, on, cleanup } = await startCluster(2);
  try {
    const room = uniq('frozen');
    const a = await on(0);
    await a.join(room, 'a');
    const b = await on(1);
    redis.freeze();
    let reply;
    try {
      reply = await b.ack('join_room', { room_name: room, peer_id: 'b', username: 'b' });
      const event = await b.next('join_room_error');
      assert.deepEqual(event, reply);
    } finally {
      redis.thaw();
    }
    assert.equal(reply.code, 'unavailable');
    assert.equal(reply.error, 'Service unavailable, try again');
    assert.equal(reply.room_name, room);
    // Nothing was half-applied: a heard of no join, and b can join now, as version 2.
    const joined = await b.join(room, 'b');
    assert.equal(joined.success.version, 2);
    assert.deepEqual(ids(joined.success.peers), ['a', 'b']);
    assert.equal((await a.next('peer_list_updated')).version, 2);
    assert.deepEqual(a.pending(), []);
    assert.equal(nodes.length, 2);
  } finally {
    await cleanup();
  }
});

test('Redis restarted empty: the rooms are listed again within 10 s and go on', { skip }, async () => {
  const { redis, nodes, on, cleanup } = await startCluster(2);
  try {
    const room = uniq('empty');
    const a = await on(0); // n1 owns the room
    const b = await on(1);
    await a.join(room, 'a');
    await b.join(room, 'b');
    await a.next('peer_list_updated', (p) => p.version === 2);
    await redis.restart();
    assert.equal(await redis.command('EXISTS', `sr:owner:${room}`), 0);
    // Listed again, from the owner's memory, on every node (polled: nothing announces it).
    await listedEverywhere(nodes, room, 'a,b', 10000, 'the room listed again on every node');
    // The room goes on where it was, for members on both nodes.
    const c = await on(1);
    const joined = await c.join(room, 'c');
    assert.equal(joined.success.version, 3);
    assert.deepEqual(ids(joined.success.peers), ['a', 'b', 'c']);
    assert.equal((await a.next('peer_list_updated', (p) => p.version === 3)).total_peers, 3);
    assert.equal((await b.next('peer_list_updated', (p) => p.version === 3)).total_peers, 3);
  } finally {
    await cleanup();
  }
});

test('Redis restarted empty: no node claims a room before its owner writes it back', { skip }, async () => {
  const { redis, nodes, on, cleanup } = await startCluster(2);
  try {
    const room = uniq('early');
    const a = await on(0); // n1 owns the room
    const b = await on(1);
    await a.join(room, 'a');
    await b.join(room, 'b');
    await a.next('peer_list_updated', (p) => p.version === 2);
    // The owner cannot write the room back while it is stopped.
    nodes[0].proc.kill('SIGSTOP');
    let reply;
    try {
      await redis.restart();
      // n2 is back on the empty Redis (it registers and reads the new sr:boot in one beat).
      await withTimeout((async () => {
        while ((await redis.command('KEYS', 'sr:node:n2.*')).length !== 1) {
          await new Promise((resolve) => { setTimeout(resolve, 50); });
        }
      })(), 5000, 'n2 registered again');
      const c = await on(1);
      reply = await c.ack('join_room', { room_name: room, peer_id: 'c', username: 'c' });
      assert.equal(await redis.command('GET', `sr:owner:${room}`), null, 'n2 claimed the room');
    } finally {
      nodes[0].proc.kill('SIGCONT');
    }
    // Not an empty copy of the room: refused while Redis heals.
    assert.equal(reply.code, 'unavailable', JSON.stringify(reply));
    // The owner writes the room back (awaited: nothing announces it) and it goes on.
    await withTimeout((async () => {
      while (await redis.command('EXISTS', `sr:owner:${room}`) !== 1) {
        await new Promise((resolve) => { setTimeout(resolve, 50); });
      }
    })(), 5000, 'n1 claimed its room again');
    const d = await on(1);
    const joined = await d.join(room, 'd');
    assert.deepEqual(ids(joined.success.peers), ['a', 'b', 'd']);
    assert.equal(joined.success.version, 3);
    assert.equal((await a.next('peer_list_updated', (p) => p.version === 3)).total_peers, 3);
  } finally {
    await cleanup();
  }
});

test('a disconnect while Redis is down is applied when it returns', { skip }, async () => {
  const { redis, nodes, on, cleanup } = await startCluster(2);
  try {
    const room = uniq('gone');
    const a = await on(0); // n1 owns the room
    const b = await on(1);
    await a.join(room, 'a');
    await b.join(room, 'b');
    await a.next('peer_list_updated', (p) => p.version === 2);
    await redis.kill();
    b.close();
    // n2 has tried to send b's departure and failed (its log says so).
    await withTimeout((async () => {
      while (!nodes[1].output.join('').includes('cannot route a departure yet')) {
        await new Promise((resolve) => { setTimeout(resolve, 50); });
      }
    })(), 5000, 'n2 tried to route the departure');
    await redis.restart();
    const update = await a.next('peer_list_updated', (p) => p.version === 3, DEAD_NODE_MS);
    assert.deepEqual(ids(update.peers), ['a']);
  } finally {
    await cleanup();
  }
});

/** Polls `GET /api/webrtc/rooms/{room}` on every node until it lists `expected` (nothing announces it). */
async function listedEverywhere(nodes, room, expected, ms, what) {
  await withTimeout((async () => {
    for (;;) {
      const listed = await Promise.all(nodes.map((n) => getJson(n.url, `/api/webrtc/rooms/${room}`)));
      if (listed.every((r) => r.status === 200 && ids(r.body.peers).join() === expected)) return;
      await new Promise((resolve) => { setTimeout(resolve, 100); });
    }
  })(), ms, what);
}

/** The versions of every `peer_list_updated` of `room` a client got so far, in order (consumed). */
function versionsSeen(client, room) {
  return client.drain('peer_list_updated')
    .filter((e) => e.payload.room_name === room)
    .map((e) => e.payload.version);
}

test('Redis restarted empty after the owner died: the members elsewhere are restored within 10 s', { skip }, async () => {
  const { redis, nodes, on, cleanup } = await startCluster(3);
  try {
    const room = uniq('restore');
    const a = await on(0); // n1 owns the room
    const b = await on(1);
    const c = await on(2);
    await a.join(room, 'a');
    await b.join(room, 'b');
    await c.join(room, 'c');
    await b.next('peer_list_updated', (p) => p.version === 3);
    const before = [...versionsSeen(b, room), ...versionsSeen(c, room)];
    assert.ok(before.every((v) => v <= 3), JSON.stringify(before));
    // The owner dies while Redis is down: nobody writes the room back.
    await redis.kill();
    await kill(nodes[0]);
    await redis.restart();
    const alive = nodes.slice(1);
    await listedEverywhere(alive, room, 'b,c', 10000, 'b and c listed again');
    // They still reach each other.
    assert.deepEqual(await b.ack('signal', { to: 'c', data: 'offer' }), { to: 'c' });
    assert.equal((await c.next('signal')).data, 'offer');
    assert.deepEqual(await c.ack('signal', { to: 'b', data: 'answer' }), { to: 'b' });
    assert.equal((await b.next('signal')).data, 'answer');
    // The room goes on above every version they saw, in order, for both.
    const d = await on(1);
    const joined = await d.join(room, 'd');
    assert.deepEqual(ids(joined.success.peers), ['b', 'c', 'd']);
    const v = joined.success.version;
    assert.ok(v > 4, `version ${v}`);
    assert.deepEqual(ids((await b.next('peer_list_updated', (p) => p.version === v)).peers), ['b', 'c', 'd']);
    assert.deepEqual(ids((await c.next('peer_list_updated', (p) => p.version === v)).peers), ['b', 'c', 'd']);
    for (const [name, client] of [['b', b], ['c', c]]) {
      const seen = versionsSeen(client, room);
      assert.ok(seen.every((x, i) => x > 3 && (i === 0 || x > seen[i - 1])), `${name} saw ${JSON.stringify(seen)}`);
    }
  } finally {
    await cleanup();
  }
});

test('Redis restarted empty while joins and signals are in flight: each is answered, none half-applied, the room heals', { skip }, async () => {
  const { redis, nodes, on, cleanup } = await startCluster(3);
  try {
    const room = uniq('inflight');
    const a = await on(0); // n1 owns the room
    const b = await on(1);
    await a.join(room, 'a');
    await b.join(room, 'b');
    const joiners = await Promise.all([...Array(12).keys()].map((i) => on(i % 3)));
    const joinOf = (i) => joiners[i].ack('join_room', { room_name: room, peer_id: `j${i}`, username: `j${i}` });
    const signal = (i) => a.ack('signal', { to: 'b', data: { i } });
    // Half of them sent just before Redis dies, half while it restarts.
    const answers = [];
    const signals = [];
    for (let i = 0; i < 6; i += 1) {
      answers.push(joinOf(i));
      signals.push(signal(i));
    }
    const restarted = redis.restart();
    for (let i = 6; i < 12; i += 1) {
      answers.push(joinOf(i));
      signals.push(signal(i));
    }
    await restarted;
    // Every request is answered, with success or `unavailable`.
    const joined = await withTimeout(Promise.all(answers), 5000, 'every join answered');
    const relayed = await withTimeout(Promise.all(signals), 5000, 'every signal answered');
    for (const r of relayed) {
      assert.ok(r.to === 'b' || r.code === 'unavailable', JSON.stringify(r));
    }
    const ok = [];
    joined.forEach((r, i) => {
      if (r.code === undefined) ok.push(`j${i}`);
      else assert.equal(r.code, 'unavailable', JSON.stringify(r));
    });
    // Listed exactly: the members before, and every join answered with success.
    const expected = ['a', 'b', ...ok].sort().join();
    let seen;
    await withTimeout((async () => {
      for (;;) {
        const listed = await Promise.all(nodes.map((n) => getJson(n.url, `/api/webrtc/rooms/${room}`)));
        seen = listed.map((r) => (r.status === 200 ? ids(r.body.peers).sort().join() : r.status));
        if (seen.every((x) => x === expected)) return;
        await new Promise((resolve) => { setTimeout(resolve, 100); });
      }
    })(), 10000, `the room listed as ${expected} on every node`).catch((e) => {
      throw new Error(`${e.message}; listed: ${JSON.stringify(seen)}`);
    });
    // The room goes on: a new member is seen by a and b.
    const z = await on(2);
    const last = await z.join(room, 'z');
    assert.deepEqual(ids(last.success.peers).sort(), [...expected.split(','), 'z'].sort());
    const v = last.success.version;
    await a.next('peer_list_updated', (p) => p.version === v);
    await b.next('peer_list_updated', (p) => p.version === v);
  } finally {
    await cleanup();
  }
});

test('an owner stopped with SIGTERM commits its own peers\' departures before it lets its rooms go', { skip }, async () => {
  const { redis, nodes, on, cleanup } = await startCluster(3);
  try {
    const room = uniq('handover');
    const a = await on(0); // n1 owns the room
    const b = await on(1);
    const c = await on(2);
    await a.join(room, 'a');
    await b.join(room, 'b', 'b', { updates: 'delta' });
    await c.join(room, 'c');
    await b.next('peer_joined', (p) => p.version === 3);
    // Nobody else can take the room over meanwhile: what is listed when n1 is gone is its own doing.
    nodes[1].proc.kill('SIGSTOP');
    nodes[2].proc.kill('SIGSTOP');
    let info;
    try {
      assert.deepEqual(await nodes[0].stop(), { code: 0, signal: null });
      info = JSON.parse(await redis.command('HGET', 'sr:rooms', room));
    } finally {
      nodes[1].proc.kill('SIGCONT');
      nodes[2].proc.kill('SIGCONT');
    }
    assert.deepEqual(ids(info.peers), ['b', 'c']);
    assert.equal(info.version, 4);
    const left = await b.next('peer_left', (p) => p.peer_id === 'a', DEAD_NODE_MS);
    assert.deepEqual(left, { room_name: room, peer_id: 'a', total_peers: 2, version: 4 });
    assert.deepEqual(ids((await c.next('peer_list_updated', (p) => p.version === 4, DEAD_NODE_MS)).peers), ['b', 'c']);
    // The room goes on with another owner.
    const e = await on(1);
    const joined = await e.join(room, 'e');
    assert.equal(joined.success.version, 5);
    assert.deepEqual(ids(joined.success.peers), ['b', 'c', 'e']);
  } finally {
    await cleanup();
  }
});

test('a commit that reaches Redis past its deadline (Redis hung) writes nothing', { skip }, async () => {
  const { redis, nodes, on, cleanup } = await startCluster(2);
  try {
    const room = uniq('late');
    const a = await on(0); // n1 owns the room
    await a.join(room, 'a');
    const joiners = await Promise.all([...Array(24).keys()].map((i) => on(i % 2)));
    // Redis hangs before the burst: n1 applies the joins sent to it directly
    // and its commit waits in Redis; n2's wait to be routed. Every join is
    // answered `unavailable` (2 s); then Redis wakes and runs the pending
    // scripts, past their deadlines: they must write nothing.
    redis.freeze();
    let joined;
    try {
      const answers = joiners.map((c, i) => c.ack('join_room', { room_name: room, peer_id: `j${i}`, username: `j${i}` }));
      joined = await withTimeout(Promise.all(answers), 5000, 'every join answered');
    } finally {
      redis.thaw();
    }
    for (const r of joined) assert.equal(r.code, 'unavailable', JSON.stringify(r));
    await listedEverywhere(nodes, room, 'a', 3000, 'the room listed as a');
    // And it goes on in order: the next join is the next version for a.
    const z = await on(1);
    const last = await z.join(room, 'z');
    assert.equal(last.success.version, 2);
    await a.next('peer_list_updated', (p) => p.version === 2);
  } finally {
    await cleanup();
  }
});

test('a commit whose answer is lost is read back: the change it made stands', { skip }, async () => {
  const { redis, nodes, on, cleanup } = await startCluster(2);
  try {
    const room = uniq('readback');
    const a = await on(0); // n1 owns the room
    await a.join(room, 'a');
    const b = await on(0);
    // Redis hangs: n1 applies b's join and its commit script waits in Redis;
    // the call gives up after 1 s (its connection may be dropped with it).
    redis.freeze();
    let answer;
    try {
      answer = b.ack('join_room', { room_name: room, peer_id: 'b', username: 'b' });
      await withTimeout((async () => {
        while (!nodes[0].output.join('').includes('commit failed')) {
          await new Promise((resolve) => { setTimeout(resolve, 20); });
        }
      })(), 3000, 'n1\'s commit timed out');
    } finally {
      // Before the join's 2 s deadline: the script runs, so the join took
      // effect, and n1's read-back (until that deadline) finds it.
      redis.thaw();
    }
    const reply = await answer;
    assert.equal(reply.version, 2, JSON.stringify(reply));
    assert.deepEqual(ids(reply.peers), ['a', 'b']);
    assert.ok(nodes[0].output.join('').includes('the commit went through after all'), 'n1 read the room back and kept the change');
    // n1 kept it: the room goes on from there.
    const c = await on(1);
    const joined = await c.join(room, 'c');
    assert.equal(joined.success.version, 3);
    assert.deepEqual(ids(joined.success.peers), ['a', 'b', 'c']);
    assert.deepEqual(ids((await getJson(nodes[0].url, `/api/webrtc/rooms/${room}`)).body.peers), ['a', 'b', 'c']);
  } finally {
    await cleanup();
  }
});

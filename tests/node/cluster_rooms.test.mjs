// Cluster mode (docs/cluster.md, the contract's "Cluster"): three signalroom nodes on one
// private Redis share rooms. Clients on every node see one room with identical lists and
// versions in order; `signal` crosses nodes; capacity and peer_id uniqueness are decided
// once for the whole cluster; leaves and disconnects reach members on other nodes; every
// node lists the rooms identically over REST; HTTP peers join and leave through any node,
// and their leases run out at the room's owner.
//
// The nodes are the server binary given by env SIGNALROOM_CLUSTER_BIN
// (`cargo xtask test` sets it); without it these tests are skipped.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { getJson, postJson, uniq, ids, request, parseMetrics, withTimeout, PollingSession } from '../lib/server.mjs';
import { startCluster, CLUSTER_SKIP } from '../lib/cluster.mjs';

const skip = CLUSTER_SKIP;

/** The HTTP peers' lease, seconds. */
const HTTP_TTL_S = 3;

let cluster;

before(async () => {
  if (!skip) cluster = await startCluster(3, ['--max-peers', '4', '--http-peer-ttl', String(HTTP_TTL_S)]);
});

after(async () => { await cluster?.cleanup(); });

/** A client connected to node `i` (0, 1, 2). */
const on = (i) => cluster.on(i);

/** Every peer_list_updated of `room` received so far by `c`, consumed. */
function updates(c, room) {
  return c.drain('peer_list_updated').map((e) => e.payload).filter((p) => p.room_name === room);
}

test('a room spans three nodes: every member sees the same lists, versions in order', { skip }, async () => {
  const room = uniq('span');
  const [a, b, c] = await Promise.all([on(0), on(1), on(2)]);
  const ja = await a.join(room, 'a');
  assert.equal(ja.success.version, 1);
  const jb = await b.join(room, 'b');
  assert.equal(jb.success.version, 2);
  const jc = await c.join(room, 'c');
  assert.equal(jc.success.version, 3);
  assert.deepEqual(ids(jc.success.peers), ['a', 'b', 'c']);
  // a and b hear of the later joins, in order, with the same lists as the joiner.
  assert.deepEqual((await a.next('peer_list_updated', (p) => p.version === 3)).peers.map((p) => p.peer_id), ['a', 'b', 'c']);
  await b.next('peer_list_updated', (p) => p.version === 3);
  const seenByA = [ja.update.version, ...updates(a, room).map((p) => p.version), 3];
  assert.deepEqual(seenByA, [1, 2, 3]);
  // get_peers answers the same list at the same version on every node.
  const lists = await Promise.all([a, b, c].map(async (x) => {
    await x.ack('get_peers', {});
    return x.next('peer_list');
  }));
  for (const l of lists) {
    assert.equal(l.version, 3);
    assert.deepEqual(ids(l.peers), ['a', 'b', 'c']);
  }
});

test('concurrent joins from every node: each member gets every version once, in order', { skip }, async () => {
  const room = uniq('race');
  const members = await Promise.all([on(0), on(1), on(2), on(0)]);
  const joined = await Promise.all(members.map((m, i) => m.join(room, `p${i}`)));
  const versions = joined.map((j) => j.success.version).sort();
  assert.deepEqual(versions, [1, 2, 3, 4]);
  // Everyone ends at version 4 with the same list; each saw strictly successive versions.
  const finals = await Promise.all(members.map(async (m, i) => {
    const seen = [joined[i].update.version];
    while (seen.at(-1) < 4) seen.push((await m.next('peer_list_updated', (p) => p.room_name === room)).version);
    for (let k = 1; k < seen.length; k += 1) assert.equal(seen[k], seen[k - 1] + 1, `member ${i} saw ${seen}`);
    await m.ack('get_peers', {});
    return m.next('peer_list');
  }));
  for (const f of finals) assert.deepEqual(ids(f.peers), ids(finals[0].peers));
  // The room is full (--max-peers 4) on every node.
  const late = await on(1);
  const reply = await late.ack('join_room', { room_name: room, peer_id: 'late', username: 'late' });
  assert.equal(reply.code, 'room_full');
  assert.equal(reply.room_name, room);
});

test('while every node churns, full and delta observers get every version once, in order', { skip }, async () => {
  const room = uniq('churn');
  const full1 = await on(0);
  const delta = await on(1);
  const full3 = await on(2);
  await full1.join(room, 'o1');
  await delta.join(room, 'o2', 'o2', { updates: 'delta' });
  await full3.join(room, 'o3');
  await full1.next('peer_list_updated', (p) => p.version === 3);
  await delta.next('peer_joined', (p) => p.version === 3);
  full1.drain('peer_list_updated');
  // One place is left (--max-peers 4): churners on every node race for it.
  const churners = await Promise.all([on(0), on(1), on(2), on(0), on(1), on(2)]);
  await Promise.all(churners.map(async (c, i) => {
    for (let k = 0; k < 4; k += 1) {
      const r = await c.ack('join_room', { room_name: room, peer_id: `c${i}`, username: `c${i}` });
      if (r.code === undefined) await c.ack('leave_room', {});
      else assert.equal(r.code, 'room_full');
    }
  }));
  await full1.ack('get_peers', {});
  const final = await full1.next('peer_list');
  assert.deepEqual(ids(final.peers), ['o1', 'o2', 'o3']);
  const seen = async (c, events, first) => {
    const versions = [first];
    while (versions.at(-1) < final.version) {
      const e = await c.nextAny(events, (p) => p.room_name === room);
      versions.push(e.payload.version);
    }
    return versions;
  };
  const sequences = await Promise.all([
    seen(full1, ['peer_list_updated'], 3),
    seen(delta, ['peer_joined', 'peer_left'], 3),
    seen(full3, ['peer_list_updated'], 3),
  ]);
  for (const v of sequences) {
    assert.deepEqual(v, [...Array(final.version - 2).keys()].map((k) => k + 3));
  }
});

test('two nodes racing for one peer_id: exactly one wins', { skip }, async () => {
  for (let round = 0; round < 3; round += 1) {
    const room = uniq('taken');
    const [x, y] = await Promise.all([on(0), on(2)]);
    const replies = await Promise.all([x, y].map((c) => c.ack('join_room', { room_name: room, peer_id: 'same', username: 'u' })));
    const codes = replies.map((r) => r.code ?? 'ok').sort();
    assert.deepEqual(codes, ['ok', 'peer_id_taken'], JSON.stringify(replies));
    x.close();
    y.close();
  }
});

test('signal crosses nodes; an absent peer is peer_not_found', { skip }, async () => {
  const room = uniq('sig');
  const [a, b] = await Promise.all([on(0), on(2)]);
  await a.join(room, 'alice');
  await b.join(room, 'bob');
  for (let i = 0; i < 20; i += 1) a.emit('signal', { to: 'bob', data: { seq: i } });
  assert.deepEqual(await a.ack('signal', { to: 'bob', data: { seq: 20 } }), { to: 'bob' });
  const seqs = [];
  for (let i = 0; i <= 20; i += 1) {
    const s = await b.next('signal');
    assert.equal(s.from, 'alice');
    assert.equal(s.room_name, room);
    seqs.push(s.data.seq);
  }
  assert.deepEqual(seqs, [...Array(21).keys()]);
  const back = await b.ack('signal', { to: 'alice', data: 'answer' });
  assert.deepEqual(back, { to: 'alice' });
  assert.equal((await a.next('signal')).data, 'answer');
  const missing = await a.ack('signal', { to: 'nobody', data: 1 });
  assert.equal(missing.code, 'peer_not_found');
});

test('sender, owner and target on one node, a member on another: signals and changes in order, once each', { skip }, async () => {
  // n1 owns the room and holds a and b: a's signals to b and the room's changes
  // reach b in-process, those for c through Redis; both must see the same order.
  const room = uniq('local');
  const [a, b, c] = await Promise.all([on(0), on(0), on(1)]);
  await a.join(room, 'a');
  await b.join(room, 'b');
  await c.join(room, 'c');
  await b.next('peer_list_updated', (p) => p.version === 3);
  b.drain();
  c.drain();
  const N = 40;
  for (let i = 0; i < N; i += 1) {
    a.emit('signal', { to: 'b', data: { i } });
    a.emit('signal', { to: 'c', data: { i } });
  }
  // A change in the middle of the burst: a leaves (v4) and joins again (v5).
  a.emit('leave_room', {});
  a.emit('join_room', { room_name: room, peer_id: 'a', username: 'a' });
  for (let i = N; i < 2 * N; i += 1) {
    a.emit('signal', { to: 'b', data: { i } });
    a.emit('signal', { to: 'c', data: { i } });
  }
  for (const x of [b, c]) {
    // A socket's events arrive in order: once the last signal is here, so is all before it.
    const last = await x.nextAny(['signal'], (p) => p.data.i === 2 * N - 1);
    const seen = [...x.drain(), last].map((e) => (e.event === 'signal'
      ? `s${e.payload.data.i}`
      : `${e.event}:${e.payload.version}:${ids(e.payload.peers).join('')}`));
    const expected = [
      ...[...Array(N).keys()].map((i) => `s${i}`),
      'peer_list_updated:4:bc',
      'peer_list_updated:5:bca',
      ...[...Array(N).keys()].map((i) => `s${N + i}`),
    ];
    assert.deepEqual(seen, expected);
  }
  assert.equal((await a.next('join_room_success')).version, 5);
});

test('sender, owner and target on one node: nothing of the room goes through an inbox', { skip }, async () => {
  const room = uniq('alone');
  const [a, b] = await Promise.all([on(0), on(0)]);
  await a.join(room, 'a'); // n1 claims the room
  await b.join(room, 'b');
  for (let i = 0; i < 10; i += 1) a.emit('signal', { to: 'b', data: { i } });
  assert.equal((await b.next('signal', (p) => p.data.i === 9)).from, 'a');
  await a.barrier();
  // Commands went straight to n1's owner task, its batches straight to the sockets.
  for (const inbox of await cluster.redis.command('KEYS', 'sr:in:*')) {
    const entries = await cluster.redis.command('XRANGE', inbox, '-', '+');
    const about = entries.filter(([, fields]) => fields.some((f) => String(f).includes(room)));
    assert.deepEqual(about, [], inbox);
  }
  // The changes were committed all the same: every node lists the room.
  const listed = await getJson(cluster.nodes[2].url, `/api/webrtc/rooms/${room}`);
  assert.deepEqual(ids(listed.body.peers), ['a', 'b']);
});

test('leave and disconnect reach members on other nodes', { skip }, async () => {
  const room = uniq('bye');
  const [a, b, c] = await Promise.all([on(0), on(1), on(2)]);
  await a.join(room, 'a');
  await b.join(room, 'b', 'b', { updates: 'delta' });
  await c.join(room, 'c');
  await a.next('peer_list_updated', (p) => p.version === 3);
  await b.next('peer_joined', (p) => p.version === 3);
  const left = await c.ack('leave_room', {});
  assert.equal(left.peer_id, 'c');
  const afterLeave = await a.next('peer_list_updated', (p) => p.version === 4);
  assert.deepEqual(ids(afterLeave.peers), ['a', 'b']);
  const pl = await b.next('peer_left', (p) => p.version === 4);
  assert.equal(pl.peer_id, 'c');
  a.close();
  const gone = await b.next('peer_left', (p) => p.version === 5);
  assert.equal(gone.peer_id, 'a');
  assert.equal(gone.total_peers, 1);
  // c left: it hears nothing of the room any more.
  await c.ack('get_peers', {});
  assert.equal((await c.next('get_peers_error')).code, 'not_in_room');
  assert.deepEqual(c.pending().filter((e) => e === 'peer_list_updated'), []);
});

test('a member joining a room owned by another node leaves its old room there', { skip }, async () => {
  const [roomA, roomB] = [uniq('moveA'), uniq('moveB')];
  const x = await on(0);
  const y = await on(1);
  const o = await on(2);
  await x.join(roomA, 'x'); // n1 owns A
  await y.join(roomB, 'y'); // n2 owns B
  await o.join(roomA, 'o');
  await x.next('peer_list_updated', (p) => p.room_name === roomA && p.version === 2);
  const moved = await x.join(roomB, 'x');
  assert.deepEqual(ids(moved.success.peers), ['y', 'x']);
  const left = await o.next('peer_list_updated', (p) => p.version === 3);
  assert.deepEqual(ids(left.peers), ['o']);
  // x hears nothing more of A.
  await o.ack('leave_room', {});
  await x.barrier();
  assert.deepEqual(x.drain('peer_list_updated').filter((e) => e.payload.room_name === roomA), []);
  const a = await getJson(cluster.nodes[2].url, `/api/webrtc/rooms/${roomA}`);
  assert.equal(a.status, 404);
});

test('every node lists the rooms identically over REST', { skip }, async () => {
  const room = uniq('rest');
  const [a, b] = await Promise.all([on(0), on(1)]);
  await a.join(room, 'a');
  await b.join(room, 'b');
  const bodies = await Promise.all(cluster.nodes.map((n) => request(n.url, '/api/webrtc/rooms')));
  for (const r of bodies) assert.equal(r.status, 200);
  assert.equal(bodies[1].text, bodies[0].text);
  assert.equal(bodies[2].text, bodies[0].text);
  const info = bodies[0].json[room];
  assert.equal(info.peer_count, 2);
  assert.equal(info.version, 2);
  assert.deepEqual(ids(info.peers), ['a', 'b']);
  const one = await Promise.all(cluster.nodes.map((n) => request(n.url, `/api/webrtc/rooms/${room}`)));
  for (const r of one) assert.equal(r.text, one[0].text);
  assert.deepEqual(one[2].json, info);
  const missing = await getJson(cluster.nodes[2].url, `/api/webrtc/rooms/${uniq('none')}`);
  assert.equal(missing.status, 404);
  // n1 owns the room (a joined first, through it); n2 forwarded b's join to it.
  const metric = async (node, name) => {
    const text = (await request(node.url, '/metrics')).text;
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    assert.ok(line, `${name} in /metrics`);
    return Number(line.split(' ')[1]);
  };
  assert.ok(await metric(cluster.nodes[0], 'signalroom_cluster_rooms_owned') >= 1);
  assert.ok(await metric(cluster.nodes[1], 'signalroom_cluster_commands_forwarded_total') >= 1);
});

test('/metrics: a room, its peers, its joins and leaves are counted by its owner alone', { skip }, async () => {
  const room = uniq('counted');
  const read = () => Promise.all(cluster.nodes.map(async (n) => parseMetrics((await request(n.url, '/metrics')).text)));
  const before = await read();
  const delta = (now, name) => now.map((m, i) => (m.get(name) ?? 0) - (before[i].get(name) ?? 0));
  // The owner counts once its commit returned, which may be just after the members heard of
  // it: polled (bounded) until the owner's figures are there, then all compared.
  const settled = (name, want) => withTimeout((async () => {
    for (;;) {
      const now = await read();
      if (delta(now, name)[2] === want[2]) return now;
      await new Promise((resolve) => { setTimeout(resolve, 20); });
    }
  })(), 5000, `${name} on the owner`);
  const c = await on(2);
  await c.join(room, 'c'); // n3 owns the room
  const a = await on(0);
  await a.join(room, 'a');
  const b = await on(1);
  await b.join(room, 'b');
  let now = await settled('signalroom_joins_total', [0, 0, 3]);
  assert.deepEqual(delta(now, 'signalroom_joins_total'), [0, 0, 3]);
  assert.deepEqual(delta(now, 'signalroom_rooms'), [0, 0, 1]);
  assert.deepEqual(delta(now, 'signalroom_peers'), [0, 0, 3]);
  // Connections are each node's own.
  assert.deepEqual(delta(now, 'signalroom_connections'), [1, 1, 1]);
  b.close();
  await c.next('peer_list_updated', (p) => p.room_name === room && p.version === 4);
  now = await settled('signalroom_leaves_total', [0, 0, 1]);
  assert.deepEqual(delta(now, 'signalroom_leaves_total'), [0, 0, 1]);
  assert.deepEqual(delta(now, 'signalroom_peers'), [0, 0, 2]);
  assert.deepEqual(delta(now, 'signalroom_rooms'), [0, 0, 1]);
});

test('HTTP peers join and leave through any node; every member hears of it', { skip }, async () => {
  const room = uniq('http');
  const a = await on(0);
  await a.join(room, 'a');
  const joined = await postJson(cluster.nodes[2].url, `/api/webrtc/rooms/${room}/join`, { room_name: room, peer_id: 'h', username: 'H' });
  assert.equal(joined.status, 200, joined.text);
  assert.equal(joined.json.peer_id, 'h');
  assert.deepEqual(ids((await a.next('peer_list_updated', (p) => p.version === 2)).peers), ['a', 'h']);
  const listed = await getJson(cluster.nodes[1].url, `/api/webrtc/rooms/${room}`);
  assert.deepEqual(ids(listed.body.peers), ['a', 'h']);
  const taken = await postJson(cluster.nodes[1].url, `/api/webrtc/rooms/${room}/join`, { room_name: room, peer_id: 'a', username: 'x' });
  assert.equal(taken.status, 409);
  assert.equal(taken.json.code, 'peer_id_taken');
  const removed = await request(cluster.nodes[1].url, `/api/webrtc/rooms/${room}/peers/h`, { method: 'DELETE' });
  assert.equal(removed.status, 204);
  const update = await a.next('peer_list_updated', (p) => p.version === 3);
  assert.deepEqual(ids(update.peers), ['a']);
  const again = await request(cluster.nodes[0].url, `/api/webrtc/rooms/${room}/peers/h`, { method: 'DELETE' });
  assert.equal(again.status, 404);
  assert.equal(again.json.code, 'peer_not_found');
});

test('an HTTP peer joined through one node expires at the room\'s owner', { skip }, async () => {
  const room = uniq('lease');
  const a = await on(1);
  await a.join(room, 'a');
  const joined = await postJson(cluster.nodes[0].url, `/api/webrtc/rooms/${room}/join`, { room_name: room, peer_id: 'h', username: 'H' });
  assert.equal(joined.status, 200, joined.text);
  await a.next('peer_list_updated', (p) => p.version === 2);
  const expired = await a.next('peer_list_updated', (p) => p.version === 3, (HTTP_TTL_S + 3) * 1000);
  assert.deepEqual(ids(expired.peers), ['a']);
  const listed = await getJson(cluster.nodes[2].url, `/api/webrtc/rooms/${room}`);
  assert.deepEqual(ids(listed.body.peers), ['a']);
});

test('a signal to a peer on another node is acked once queued for it; one it cannot take is refused and the peer dropped', { skip }, async () => {
  const small = await startCluster(2, ['--max-queued-packets', '4']);
  try {
    const room = uniq('relay-full');
    const q = await small.on(0);
    await q.join(room, 'Q'); // n1 owns the room
    // P is on n2, over long-polling, and stops polling once it has joined.
    const p = await new PollingSession(small.nodes[1].url).open();
    await p.emit('join_room', { room_name: room, peer_id: 'P', username: 'P' });
    for (let i = 0; ; i++) {
      assert.ok(i < 10, 'P never got its join answer');
      const packets = await p.get();
      if (Array.isArray(packets) && packets.some((x) => x.startsWith('42["join_room_success"'))) break;
    }
    await q.next('peer_list_updated', (u) => ids(u.peers).includes('P'));
    // Q signals P until one is refused (bounded): each ack says it was queued for P.
    const acks = [];
    for (let i = 0; i < 10; i++) {
      const a = await q.ack('signal', { to: 'P', data: i });
      acks.push(a);
      if (a.code) break;
    }
    assert.equal(acks.at(-1).code, 'peer_not_found', `acks: ${JSON.stringify(acks)}`);
    const queued = acks.filter((a) => a.to === 'P').length;
    assert.ok(queued >= 1 && queued <= 4, `acks: ${JSON.stringify(acks)}`);
    assert.equal((await q.next('signal_error')).code, 'peer_not_found');
    // P was dropped: it leaves the room for Q, with its own version.
    const left = await q.next('peer_list_updated', (u) => !ids(u.peers).includes('P'));
    assert.deepEqual(ids(left.peers), ['Q']);
  } finally {
    await small.cleanup();
  }
});

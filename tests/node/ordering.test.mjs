// Ordering guarantees (docs/protocol.md "Ordering guarantees"): one connection's events are handled
// in the order sent; every member gets a room's updates in version order without gaps.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, uniq, ids, rooms, withTimeout, postJson, request } from '../lib/server.mjs';

let srv;
const clients = [];
const client = async (opts) => { const c = await connect(srv.url, opts); clients.push(c); return c; };

before(async () => { srv = await startServer([]); });
after(async () => { clients.forEach((c) => c.close()); await srv?.stop(); });

test('1,000 join_room/leave_room fired without waiting are answered in the order sent; the final state matches the last event', async () => {
  const N = 1000;
  const base = uniq('ord');
  const roomOf = (i) => `${base}-${i % 3}`;
  const observer = await client();
  const { success: obsJoin } = await observer.join(roomOf(1), 'observer');
  const a = await client();
  // even i: leave_room, odd i: join_room (a room among three, a username per event); the first
  // leave finds no room, the last event (i = 999) is a join
  const acks = [];
  const sent = [];
  for (let i = 0; i < N; i += 1) {
    if (i % 2 === 0) {
      sent.push({ kind: 'leave', room: i === 0 ? null : roomOf(i - 1) });
      acks.push(a.sock.timeout(60000).emitWithAck('leave_room', {}).then((ack) => ({ i, ack })));
    } else {
      sent.push({ kind: 'join', room: roomOf(i), username: `u${i}` });
      acks.push(a.sock.timeout(60000).emitWithAck('join_room', { room_name: roomOf(i), peer_id: 'mover', username: `u${i}` }).then((ack) => ({ i, ack })));
    }
  }
  const order = [];
  acks.forEach((p) => p.then(({ i }) => order.push(i)));
  const results = await withTimeout(Promise.all(acks), 60000, '1,000 acks');
  assert.deepEqual(order, Array.from({ length: N }, (_, i) => i), 'acks arrive in the order sent');
  for (const { i, ack } of results) {
    const s = sent[i];
    if (s.kind === 'join') {
      assert.equal(ack.room_name, s.room, `ack ${i}`);
      assert.equal(ack.peer_id, 'mover');
      assert.equal(ack.peers.find((p) => p.peer_id === 'mover')?.username, s.username, `ack ${i}`);
    } else if (s.room === null) {
      assert.deepEqual(ack, { error: 'Not in any room', code: 'not_in_room' });
    } else {
      assert.deepEqual(ack, { room_name: s.room, peer_id: 'mover' }, `ack ${i}`);
    }
  }
  // the events (not only the acks) come in the same order
  const events = a.drain().filter((e) => ['join_room_success', 'leave_room_success', 'leave_room_error'].includes(e.event));
  assert.equal(events.length, N);
  events.forEach((e, i) => {
    if (sent[i].kind === 'join') {
      assert.equal(e.event, 'join_room_success', `event ${i}`);
      assert.equal(e.payload.room_name, sent[i].room, `event ${i}`);
    } else {
      assert.equal(e.event, i === 0 ? 'leave_room_error' : 'leave_room_success', `event ${i}`);
    }
  });
  // final state: the mover is in the room of the last join, with the last username
  const listing = await rooms(srv.url);
  const last = sent[N - 1];
  assert.deepEqual(listing[last.room].peers.map((p) => [p.peer_id, p.username]), [['mover', last.username]]);
  assert.deepEqual(ids(listing[roomOf(1)].peers), ['observer']);
  assert.equal(last.room, roomOf(0));
  assert.equal(listing[roomOf(2)], undefined, 'a room emptied by the last leave is deleted');
  // the observer saw every change of its room, in version order, without gaps
  const joinsToObs = sent.filter((s) => s.kind === 'join' && s.room === roomOf(1)).length;
  const changes = joinsToObs * 2; // each join into its room is followed by a leave (the last join is elsewhere)
  let v = obsJoin.version;
  for (let k = 0; k < changes; k += 1) {
    const u = await observer.next('peer_list_updated');
    v += 1;
    assert.equal(u.version, v, `update ${k}`);
    assert.deepEqual(ids(u.peers), k % 2 === 0 ? ['observer', 'mover'] : ['observer']);
  }
  await observer.barrier();
  assert.deepEqual(observer.pending(), []);
});

test('updates reach every member of a busy room (full and delta) in version order without gaps, with Socket.IO and REST churn', async () => {
  const room = uniq('busy');
  const members = [];
  for (let i = 0; i < 3; i += 1) { const c = await client(); await c.join(room, `m${i}`); members.push(c); }
  const delta = await client();
  await delta.join(room, 'delta', 'delta', { updates: 'delta' });
  const start = (await delta.ack('get_peers', {})).version;
  const isChurn = (d) => d.version > start; // members may still be receiving the members' own joins
  // 3 socket churners join/rename/leave and one REST churner posts/deletes, all without waiting
  const churners = [await client(), await client(), await client()];
  const K = 30;
  const done = churners.map((c, j) => {
    const p = [];
    for (let k = 0; k < K; k += 1) {
      p.push(c.ack('join_room', { room_name: room, peer_id: `c${j}`, username: `c${j}-${k}` }));
      p.push(c.ack('leave_room', {}));
    }
    return Promise.all(p);
  });
  const rest = (async () => {
    const path = `/api/webrtc/rooms/${encodeURIComponent(room)}`;
    for (let k = 0; k < K; k += 1) {
      assert.equal((await postJson(srv.url, `${path}/join`, { peer_id: 'http', username: `h${k}` })).status, 200);
      assert.equal((await request(srv.url, `${path}/peers/http`, { method: 'DELETE' })).status, 204);
    }
  })();
  await Promise.all([...done, rest]);
  const total = (churners.length + 1) * K * 2;
  const expected = Array.from({ length: total }, (_, k) => start + k + 1);
  for (const m of members) {
    const versions = [];
    for (let k = 0; k < total; k += 1) versions.push((await m.next('peer_list_updated', isChurn)).version);
    assert.deepEqual(versions, expected);
  }
  const deltaVersions = [];
  for (let k = 0; k < total; k += 1) deltaVersions.push((await delta.nextAny(['peer_joined', 'peer_left'], isChurn)).payload.version);
  assert.deepEqual(deltaVersions, expected);
  assert.deepEqual(ids((await rooms(srv.url))[room].peers), ['m0', 'm1', 'm2', 'delta']);
});

test('over long-polling too, 300 requests fired without waiting are answered in the order sent', async () => {
  const N = 300;
  const base = uniq('ord-poll');
  const a = await client({ transports: ['polling'] });
  const order = [];
  const acks = [];
  for (let i = 0; i < N; i += 1) {
    const p = i % 2 === 0
      ? a.sock.timeout(60000).emitWithAck('join_room', { room_name: `${base}-${i % 4}`, peer_id: 'mover', username: `u${i}` })
      : a.sock.timeout(60000).emitWithAck('leave_room', {});
    acks.push(p.then((ack) => { order.push(i); return ack; }));
  }
  const results = await withTimeout(Promise.all(acks), 60000, 'acks over polling');
  assert.deepEqual(order, Array.from({ length: N }, (_, i) => i));
  results.forEach((ack, i) => {
    if (i % 2 === 0) assert.equal(ack.room_name, `${base}-${i % 4}`, `ack ${i}`);
    else assert.deepEqual(ack, { room_name: `${base}-${(i - 1) % 4}`, peer_id: 'mover' }, `ack ${i}`);
  });
  const listing = await rooms(srv.url);
  assert.deepEqual(Object.keys(listing).filter((r) => r.startsWith(base)), [], 'the last request was a leave');
});

// Room membership over Socket.IO: moves, same-room rejoin, versions, get_peers, leave_room,
// disconnect (docs/protocol.md "join_room", "get_peers", "leave_room", "disconnect", "Ordering guarantees").
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startServer, connect, uniq, ids, rooms, request, postJson, once, withTimeout, TIMEOUT_MS } from '../lib/server.mjs';

let srv;
const clients = [];
const client = async (opts) => { const c = await connect(srv.url, opts); clients.push(c); return c; };

before(async () => { srv = await startServer([]); });
after(async () => { clients.forEach((c) => c.close()); await srv?.stop(); });

test('defaults: max_peers is 100 and ice_servers is an empty list', async () => {
  const a = await client();
  const { success } = await a.join(uniq('defaults'), 'a');
  assert.equal(success.max_peers, 100);
  assert.deepEqual(success.ice_servers, []);
});

test('default capacity: the 100th peer joins, the 101st gets room_full (max 100 peers)', async () => {
  const room = uniq('hundred');
  for (let i = 0; i < 99; i += 1) {
    const res = await postJson(srv.url, `/api/webrtc/rooms/${room}/join`, { peer_id: `h${i}`, username: `H${i}` });
    assert.equal(res.status, 200);
  }
  const a = await client();
  const { success } = await a.join(room, 'last');
  assert.equal(success.total_peers, 100);
  assert.equal(success.peers[99].peer_id, 'last');
  const b = await client();
  assert.deepEqual(await b.ack('join_room', { room_name: room, peer_id: 'one-too-many', username: 'X' }),
    { error: `Room ${room} is full (max 100 peers)`, code: 'room_full', room_name: room });
  const http = await postJson(srv.url, `/api/webrtc/rooms/${room}/join`, { peer_id: 'h-extra', username: 'X' });
  assert.equal(http.status, 409);
  assert.equal(http.json.code, 'room_full');
});

test('a join while in another room moves the connection: the old room is told, the mover gets only the new room', async () => {
  const [r1, r2] = [uniq('from'), uniq('to')];
  const [a, b] = [await client(), await client()];
  await a.join(r1, 'a');
  const { update: before } = await b.join(r1, 'b');
  await a.next('peer_list_updated');
  const ack = await a.ack('join_room', { room_name: r2, peer_id: 'a', username: 'A' });
  assert.equal(ack.room_name, r2);
  assert.deepEqual(ids(ack.peers), ['a']);
  assert.equal(ack.version, 1);
  const left = await b.next('peer_list_updated');
  assert.equal(left.room_name, r1);
  assert.deepEqual(ids(left.peers), ['b']);
  assert.equal(left.version, before.version + 1);
  await a.barrier();
  const got = a.drain().map((e) => `${e.event}:${e.payload.room_name}`);
  assert.deepEqual(got, [`join_room_success:${r2}`, `peer_list_updated:${r2}`], 'the mover hears nothing more of its old room');
  const listing = await rooms(srv.url);
  assert.deepEqual(ids(listing[r1].peers), ['b']);
  assert.deepEqual(ids(listing[r2].peers), ['a']);
});

test('a move that empties the old room deletes it', async () => {
  const [r1, r2] = [uniq('emptied'), uniq('dest')];
  const a = await client();
  await a.join(r1, 'a');
  await a.join(r2, 'a');
  const listing = await rooms(srv.url);
  assert.equal(listing[r1], undefined);
  assert.equal((await request(srv.url, `/api/webrtc/rooms/${r1}`)).status, 404);
});

test('same-room rejoin with identical peer_id and username succeeds again without a broadcast', async () => {
  const room = uniq('same');
  const [a, b] = [await client(), await client()];
  await a.join(room, 'a', 'A');
  const { success: bJoin } = await b.join(room, 'b', 'B');
  await a.next('peer_list_updated');
  const ack = await a.ack('join_room', { room_name: room, peer_id: 'a', username: 'A' });
  assert.deepEqual(await a.next('join_room_success'), ack);
  assert.deepEqual(ids(ack.peers), ['a', 'b']);
  assert.equal(ack.version, bJoin.version, 'no change, no new version');
  await a.barrier();
  assert.deepEqual(a.pending(), [], 'no peer_list_updated to the rejoiner');
  // sentinel: the next change is the only update b sees, with the next version
  const c = await client();
  await c.join(room, 'c');
  const next = await b.next('peer_list_updated');
  assert.deepEqual(ids(next.peers), ['a', 'b', 'c']);
  assert.equal(next.version, bJoin.version + 1);
});

test('same-room rejoin with a new username updates the entry in place and broadcasts once', async () => {
  const room = uniq('rename');
  const [a, b, c] = [await client(), await client(), await client()];
  const { success: aJoin } = await a.join(room, 'a', 'Alice');
  await b.join(room, 'b', 'Bob');
  const { success: cJoin } = await c.join(room, 'c', 'Carol');
  const ack = await a.ack('join_room', { room_name: room, peer_id: 'a', username: 'Alicia' });
  assert.deepEqual(ids(ack.peers), ['a', 'b', 'c'], 'the renamed peer keeps its place');
  assert.deepEqual(ack.peers.map((p) => p.username), ['Alicia', 'Bob', 'Carol']);
  assert.equal(ack.peers[0].joined_at, aJoin.peers[0].joined_at, 'joined_at is kept');
  assert.equal(ack.version, cJoin.version + 1);
  // b may still be receiving the earlier joins' updates: skip those
  const upd = await b.next('peer_list_updated', (d) => d.version >= ack.version);
  assert.deepEqual(upd.peers, ack.peers);
  assert.equal(upd.version, ack.version);
  assert.deepEqual(await a.next('peer_list_updated', (d) => d.version === ack.version), upd, 'the renamer gets the broadcast too');
  // exactly one: the next change follows with the next version
  await c.ack('leave_room', {});
  assert.equal((await b.next('peer_list_updated', (d) => d.version > ack.version)).version, ack.version + 1);
});

test('same-room rejoin with another peer_id is a leave followed by a join', async () => {
  const room = uniq('newid');
  const [a, b] = [await client(), await client()];
  await a.join(room, 'old', 'A');
  const { success: bJoin } = await b.join(room, 'b', 'B');
  await a.next('peer_list_updated');
  const ack = await a.ack('join_room', { room_name: room, peer_id: 'new', username: 'A' });
  assert.equal(ack.peer_id, 'new');
  assert.deepEqual(ids(ack.peers), ['b', 'new'], 'the new id joins at the end');
  assert.equal(ack.version, bJoin.version + 2);
  const leave = await b.next('peer_list_updated');
  assert.deepEqual(ids(leave.peers), ['b']);
  assert.equal(leave.version, bJoin.version + 1);
  const join = await b.next('peer_list_updated');
  assert.deepEqual(ids(join.peers), ['b', 'new']);
  assert.equal(join.version, bJoin.version + 2);
  assert.equal((await a.next('join_room_success')).peer_id, 'new');
  assert.equal((await a.next('peer_list_updated')).version, ack.version);
  await a.barrier();
  assert.deepEqual(a.pending(), [], 'the rejoiner does not hear its own leave');
  const listing = await rooms(srv.url);
  assert.deepEqual(ids(listing[room].peers), ['b', 'new']);
});

test('same-room rejoin with another peer_id when alone: the room empties, is deleted and created again at version 1', async () => {
  const room = uniq('alone-newid');
  const a = await client();
  await a.join(room, 'first');
  await a.join(room, 'first', 'renamed'); // version 2
  const ack = await a.ack('join_room', { room_name: room, peer_id: 'second', username: 'S' });
  assert.deepEqual(ids(ack.peers), ['second']);
  assert.equal(ack.version, 1);
  assert.equal((await rooms(srv.url))[room].version, 1);
});

test('versions: 1 on creation, then +1 per change, in every payload and the REST room', async () => {
  const room = uniq('versions');
  const [a, b, c] = [await client(), await client(), await client()];
  const { success: s1, update: u1 } = await a.join(room, 'a');
  assert.equal(s1.version, 1);
  assert.equal(u1.version, 1);
  const { success: s2 } = await b.join(room, 'b');
  assert.equal(s2.version, 2);
  const { success: s3 } = await c.join(room, 'c');
  assert.equal(s3.version, 3);
  await b.ack('leave_room', {});
  const got = [];
  for (let i = 0; i < 3; i += 1) got.push((await a.next('peer_list_updated')).version);
  assert.deepEqual(got, [2, 3, 4]);
  assert.equal((await rooms(srv.url))[room].version, 4);
  assert.equal((await a.ack('get_peers', {})).version, 4);
});

test('versions: a room deleted and created again starts at 1', async () => {
  const room = uniq('restart');
  const [a, b] = [await client(), await client()];
  await a.join(room, 'a');
  await b.join(room, 'b');
  await b.ack('leave_room', {});
  await a.ack('leave_room', {});
  assert.equal((await request(srv.url, `/api/webrtc/rooms/${room}`)).status, 404);
  const { success, update } = await b.join(room, 'b');
  assert.equal(success.version, 1);
  assert.equal(update.version, 1);
});

test('exactly one peer_list_updated per change, every member in increasing version order without gaps', async () => {
  const room = uniq('one-per-change');
  const observer = await client();
  const { success } = await observer.join(room, 'obs');
  const actors = [await client(), await client(), await client()];
  // 3 joins, 1 rename, 1 identical rejoin (no change), 1 leave, 1 disconnect, 1 join = 7 changes
  for (const [i, c] of actors.entries()) await c.join(room, `p${i}`);
  await actors[0].ack('join_room', { room_name: room, peer_id: 'p0', username: 'renamed' });
  await actors[1].ack('join_room', { room_name: room, peer_id: 'p1', username: 'p1' });
  await actors[1].ack('leave_room', {});
  actors[2].close();
  const updates = [];
  const collect = async (n) => { for (let i = 0; i < n; i += 1) updates.push(await observer.next('peer_list_updated')); };
  await collect(6); // 3 joins, rename, leave, disconnect: the disconnect has been noticed
  const late = await client();
  await late.join(room, 'late');
  await collect(1);
  await observer.barrier();
  assert.deepEqual(observer.pending(), [], 'no other update');
  assert.equal(success.version, 1);
  assert.deepEqual(updates.map((u) => u.version), [2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual(updates.map((u) => ids(u.peers)), [
    ['obs'],
    ['obs', 'p0'],
    ['obs', 'p0', 'p1'],
    ['obs', 'p0', 'p1', 'p2'],
    ['obs', 'p0', 'p1', 'p2'],
    ['obs', 'p0', 'p2'],
    ['obs', 'p0'],
    ['obs', 'p0', 'late'],
  ].slice(1));
  assert.equal(updates[3].peers[1].username, 'renamed');
});

test('get_peers answers peer_list for the caller\'s room; the ack equals the event', async () => {
  const room = uniq('getpeers');
  const [a, b] = [await client(), await client()];
  await a.join(room, 'a');
  const { success } = await b.join(room, 'b');
  const ack = await a.ack('get_peers', {});
  assert.deepEqual(await a.next('peer_list'), ack);
  assert.deepEqual(Object.keys(ack).sort(), ['peers', 'room_name', 'total_peers', 'version']);
  assert.deepEqual(ack, { room_name: room, peers: success.peers, total_peers: 2, version: success.version });
});

test('get_peers_error not_in_room; the ack equals the event', async () => {
  const a = await client();
  const ack = await a.ack('get_peers', {});
  assert.deepEqual(await a.next('get_peers_error'), ack);
  assert.equal(ack.code, 'not_in_room');
  assert.equal(typeof ack.error, 'string');
});

test('get_peers ignores its payload, binary attachments included', async () => {
  const room = uniq('getpeers-payload');
  const a = await client();
  await a.join(room, 'a');
  for (const payload of [undefined, null, 'x', 5, [1], { room_name: 'other' }, { blob: Buffer.from([9, 9]) }]) {
    const ack = payload === undefined ? await a.ack('get_peers') : await a.ack('get_peers', payload);
    assert.equal(ack.room_name, room, `payload ${JSON.stringify(payload)}`);
    assert.deepEqual(ids(ack.peers), ['a']);
  }
});

test('leave_room: leave_room_success {room_name, peer_id} to the leaver, then peer_list_updated to the rest', async () => {
  const room = uniq('leave');
  const [a, b] = [await client(), await client()];
  await a.join(room, 'a');
  const { success } = await b.join(room, 'b');
  await a.next('peer_list_updated');
  const ack = await b.ack('leave_room', {});
  assert.deepEqual(ack, { room_name: room, peer_id: 'b' });
  assert.deepEqual(await b.next('leave_room_success'), ack);
  const upd = await a.next('peer_list_updated');
  assert.deepEqual(upd, { room_name: room, peers: success.peers.slice(0, 1), total_peers: 1, version: success.version + 1 });
  await b.barrier();
  assert.deepEqual(b.pending(), [], 'the leaver gets no peer_list_updated');
  assert.deepEqual(ids((await rooms(srv.url))[room].peers), ['a']);
});

test('leave_room of the last peer deletes the room', async () => {
  const room = uniq('leave-last');
  const a = await client();
  await a.join(room, 'a');
  await a.ack('leave_room', {});
  assert.equal((await rooms(srv.url))[room], undefined);
  assert.equal((await request(srv.url, `/api/webrtc/rooms/${room}`)).status, 404);
});

test('leave_room_error: {error: "Not in any room", code: "not_in_room"}; the ack equals the event', async () => {
  const a = await client();
  const ack = await a.ack('leave_room', {});
  assert.deepEqual(ack, { error: 'Not in any room', code: 'not_in_room' });
  assert.deepEqual(await a.next('leave_room_error'), ack);
  await a.join(uniq('then-leave-twice'), 'a');
  await a.ack('leave_room', {});
  assert.deepEqual(await a.ack('leave_room', {}), { error: 'Not in any room', code: 'not_in_room' });
});

test('leave_room ignores its payload, binary attachments included', async () => {
  for (const payload of [undefined, null, 'x', 7, [], { room_name: 'elsewhere' }, { blob: Buffer.from([1]) }]) {
    const room = uniq('leave-payload');
    const a = await client();
    await a.join(room, 'a');
    const ack = payload === undefined ? await a.ack('leave_room') : await a.ack('leave_room', payload);
    assert.deepEqual(ack, { room_name: room, peer_id: 'a' }, `payload ${JSON.stringify(payload)}`);
    a.close();
  }
});

test('disconnect removes the peer: the others get peer_list_updated and the listing drops it', async () => {
  const room = uniq('disc');
  const [a, b] = [await client(), await client()];
  await a.join(room, 'a');
  const { success } = await b.join(room, 'b');
  await a.next('peer_list_updated');
  b.close();
  const upd = await a.next('peer_list_updated');
  assert.deepEqual(ids(upd.peers), ['a']);
  assert.equal(upd.version, success.version + 1);
  assert.deepEqual(ids((await rooms(srv.url))[room].peers), ['a']);
});

test('disconnect of the last peer deletes the room', async () => {
  const room = uniq('disc-last');
  const a = await client();
  await a.join(room, 'a');
  const watcher = await client();
  await watcher.join(uniq('watch'), 'w');
  a.close();
  // no member is left to be told: poll the listing (bounded by the timeout) until the server noticed
  await withTimeout((async () => { while ((await rooms(srv.url))[room]) await watcher.barrier(); })(), TIMEOUT_MS, 'room deleted');
  assert.equal((await rooms(srv.url))[room], undefined);
});

test('long-polling clients join and get events like WebSocket clients', async () => {
  const room = uniq('polling');
  const a = await client({ transports: ['polling'] });
  const b = await client({ transports: ['polling', 'websocket'] });
  await a.join(room, 'a');
  const { success } = await b.join(room, 'b');
  assert.deepEqual(ids(success.peers), ['a', 'b']);
  assert.deepEqual(ids((await a.next('peer_list_updated')).peers), ['a', 'b']);
  b.close();
  assert.deepEqual(ids((await a.next('peer_list_updated')).peers), ['a']);
});

test('a peer whose connection stops answering pings is removed once the server notices', async () => {
  const hb = await startServer(['--ping-interval', '0.2', '--ping-timeout', '0.3']);
  try {
    const room = uniq('heartbeat');
    const a = await connect(hb.url);
    clients.push(a);
    await a.join(room, 'a');
    // a raw Engine.IO/Socket.IO client that never answers the server's pings
    const ws = new WebSocket(`${hb.url.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`);
    const frames = [];
    let notify = () => {};
    ws.on('message', (data) => { frames.push(String(data)); notify(); });
    const frame = (pred) => withTimeout(new Promise((resolve) => {
      const check = () => { const f = frames.find(pred); if (f) resolve(f); };
      notify = check;
      check();
    }), TIMEOUT_MS, 'raw frame');
    await frame((f) => f.startsWith('0{'));
    ws.send('40');
    await frame((f) => f.startsWith('40'));
    ws.send(`42${JSON.stringify(['join_room', { room_name: room, peer_id: 'silent', username: 'S' }])}`);
    await frame((f) => f.startsWith('42["join_room_success"'));
    assert.deepEqual(ids((await a.next('peer_list_updated')).peers), ['a', 'silent']);
    const closed = once(ws, 'close', 10000);
    const upd = await a.next('peer_list_updated', () => true, 10000);
    assert.deepEqual(ids(upd.peers), ['a']);
    await closed;
    assert.deepEqual(ids((await rooms(hb.url))[room].peers), ['a']);
    a.close();
  } finally {
    const { code } = await hb.stop();
    assert.equal(code, 0);
  }
});

// Delta updates (docs/protocol.md "Delta updates"): peer_joined / peer_left instead of peer_list_updated.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, uniq, ids, postJson, request } from '../lib/server.mjs';

let srv;
const clients = [];
const client = async () => { const c = await connect(srv.url); clients.push(c); return c; };
const DELTA = { updates: 'delta' };

before(async () => { srv = await startServer([]); });
after(async () => { clients.forEach((c) => c.close()); await srv?.stop(); });

test('a delta joiner gets the full list in join_room_success and nothing else for its own arrival', async () => {
  const room = uniq('delta-own');
  const a = await client();
  await a.join(room, 'a');
  const d = await client();
  const ack = await d.ack('join_room', { room_name: room, peer_id: 'd', username: 'D', ...DELTA });
  assert.deepEqual(await d.next('join_room_success'), ack);
  assert.deepEqual(ids(ack.peers), ['a', 'd']);
  assert.equal(ack.total_peers, 2);
  assert.equal(ack.version, 2);
  await d.barrier();
  assert.deepEqual(d.pending(), [], 'no peer_joined and no peer_list_updated for itself');
  assert.deepEqual(ids((await a.next('peer_list_updated')).peers), ['a', 'd'], 'full clients still get lists');
});

test('peer_joined {room_name, peer, total_peers, version} for a later join', async () => {
  const room = uniq('delta-join');
  const d = await client();
  const { success } = await d.join(room, 'd', 'D', DELTA);
  const b = await client();
  const { success: bJoin } = await b.join(room, 'b', 'Bob');
  const ev = await d.next('peer_joined');
  assert.deepEqual(Object.keys(ev).sort(), ['peer', 'room_name', 'total_peers', 'version']);
  assert.deepEqual(ev, { room_name: room, peer: bJoin.peers[1], total_peers: 2, version: success.version + 1 });
  await d.barrier();
  assert.deepEqual(d.pending(), [], 'no peer_list_updated to a delta client');
});

test('peer_left {room_name, peer_id, total_peers, version} for a leave, a move and a disconnect', async () => {
  const room = uniq('delta-left');
  const d = await client();
  await d.join(room, 'd', 'D', DELTA);
  const [b, c, e] = [await client(), await client(), await client()];
  await b.join(room, 'b');
  await c.join(room, 'c');
  const { success } = await e.join(room, 'e');
  for (let i = 0; i < 3; i += 1) await d.next('peer_joined');
  await b.ack('leave_room', {});
  const left1 = await d.next('peer_left');
  assert.deepEqual(Object.keys(left1).sort(), ['peer_id', 'room_name', 'total_peers', 'version']);
  assert.deepEqual(left1, { room_name: room, peer_id: 'b', total_peers: 3, version: success.version + 1 });
  await c.join(uniq('elsewhere'), 'c');
  assert.deepEqual(await d.next('peer_left'), { room_name: room, peer_id: 'c', total_peers: 2, version: success.version + 2 });
  e.close();
  assert.deepEqual(await d.next('peer_left'), { room_name: room, peer_id: 'e', total_peers: 1, version: success.version + 3 });
});

test('a username change on rejoin reaches delta clients as peer_joined with the same peer_id', async () => {
  const room = uniq('delta-rename');
  const d = await client();
  await d.join(room, 'd', 'D', DELTA);
  const b = await client();
  await b.join(room, 'b', 'Bob');
  const joined = await d.next('peer_joined');
  const ack = await b.ack('join_room', { room_name: room, peer_id: 'b', username: 'Robert' });
  const renamed = await d.next('peer_joined');
  assert.equal(renamed.peer.peer_id, 'b');
  assert.equal(renamed.peer.username, 'Robert');
  assert.equal(renamed.peer.joined_at, joined.peer.joined_at);
  assert.equal(renamed.total_peers, 2);
  assert.equal(renamed.version, joined.version + 1);
  assert.equal(ack.version, renamed.version);
});

test('a delta client that renames itself gets join_room_success with the new list and no peer_joined for itself', async () => {
  const room = uniq('delta-self-rename');
  const d = await client();
  const { success } = await d.join(room, 'd', 'D', DELTA);
  const other = await client();
  await other.join(room, 'o', 'O', DELTA);
  await d.next('peer_joined');
  const ack = await d.ack('join_room', { room_name: room, peer_id: 'd', username: 'Dee', ...DELTA });
  assert.deepEqual(await d.next('join_room_success'), ack);
  assert.deepEqual(ack.peers.map((p) => p.username), ['Dee', 'O']);
  assert.equal(ack.version, success.version + 2);
  await d.barrier();
  assert.deepEqual(d.pending(), [], 'no peer_joined for itself');
  const seen = await other.next('peer_joined');
  assert.equal(seen.peer.username, 'Dee');
  assert.equal(seen.version, ack.version);
});

test('full and delta clients share a room: each gets its own kind, with the same versions', async () => {
  const room = uniq('mixed');
  const full = await client();
  await full.join(room, 'full');
  const delta = await client();
  const { success } = await delta.join(room, 'delta', 'Delta', DELTA);
  await full.next('peer_list_updated');
  const x = await client();
  await x.join(room, 'x');
  await x.ack('join_room', { room_name: room, peer_id: 'x', username: 'X2' });
  await x.ack('leave_room', {});
  const fullVersions = [];
  for (let i = 0; i < 3; i += 1) fullVersions.push((await full.next('peer_list_updated')).version);
  const deltaEvents = [];
  for (let i = 0; i < 3; i += 1) deltaEvents.push(await delta.nextAny(['peer_joined', 'peer_left', 'peer_list_updated']));
  assert.deepEqual(deltaEvents.map((e) => e.event), ['peer_joined', 'peer_joined', 'peer_left']);
  const v = success.version;
  assert.deepEqual(deltaEvents.map((e) => e.payload.version), [v + 1, v + 2, v + 3]);
  assert.deepEqual(fullVersions, [v + 1, v + 2, v + 3]);
});

test('an identical rejoin with another updates value switches full -> delta without a broadcast', async () => {
  const room = uniq('switch-to-delta');
  const [a, b] = [await client(), await client()];
  await a.join(room, 'a', 'A');
  const { success } = await b.join(room, 'b', 'B');
  await a.next('peer_list_updated');
  const ack = await a.ack('join_room', { room_name: room, peer_id: 'a', username: 'A', ...DELTA });
  assert.equal(ack.version, success.version, 'no change');
  await a.barrier();
  assert.deepEqual(a.drain().map((e) => e.event), ['join_room_success']);
  const c = await client();
  await c.join(room, 'c');
  const ev = await a.nextAny(['peer_joined', 'peer_list_updated']);
  assert.equal(ev.event, 'peer_joined');
  assert.equal(ev.payload.version, success.version + 1);
  const bNext = await b.next('peer_list_updated');
  assert.equal(bNext.version, success.version + 1, 'b saw no broadcast for the switch');
});

test('an identical rejoin without updates switches delta -> full without a broadcast', async () => {
  const room = uniq('switch-to-full');
  const a = await client();
  const { success } = await a.join(room, 'a', 'A', DELTA);
  const ack = await a.ack('join_room', { room_name: room, peer_id: 'a', username: 'A' });
  assert.equal(ack.version, success.version);
  await a.barrier();
  assert.deepEqual(a.drain().map((e) => e.event), ['join_room_success']);
  const c = await client();
  await c.join(room, 'c');
  const ev = await a.nextAny(['peer_joined', 'peer_list_updated']);
  assert.equal(ev.event, 'peer_list_updated');
  assert.equal(ev.payload.version, success.version + 1);
});

for (const value of ['full', 'DELTA', 'deltas', 1, true, null, ['delta'], { mode: 'delta' }]) {
  test(`updates: ${JSON.stringify(value)} means full lists`, async () => {
    const room = uniq('not-delta');
    const a = await client();
    a.emit('join_room', { room_name: room, peer_id: 'a', username: 'A', updates: value });
    await a.next('join_room_success');
    assert.deepEqual(ids((await a.next('peer_list_updated')).peers), ['a']);
    const b = await client();
    await b.join(room, 'b');
    const ev = await a.nextAny(['peer_joined', 'peer_list_updated']);
    assert.equal(ev.event, 'peer_list_updated');
  });
}

test('HTTP peers reach delta clients as peer_joined (POST) and peer_left (DELETE)', async () => {
  const room = uniq('delta-http');
  const d = await client();
  const { success } = await d.join(room, 'd', 'D', DELTA);
  const res = await postJson(srv.url, `/api/webrtc/rooms/${encodeURIComponent(room)}/join`, { peer_id: 'bot', username: 'Bot' });
  assert.equal(res.status, 200);
  const joined = await d.next('peer_joined');
  assert.equal(joined.peer.peer_id, 'bot');
  assert.deepEqual(joined.peer, res.json.peers[1]);
  assert.equal(joined.version, success.version + 1);
  const del = await request(srv.url, `/api/webrtc/rooms/${encodeURIComponent(room)}/peers/bot`, { method: 'DELETE' });
  assert.equal(del.status, 204);
  assert.deepEqual(await d.next('peer_left'), { room_name: room, peer_id: 'bot', total_peers: 1, version: success.version + 2 });
});

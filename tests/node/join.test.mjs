// join_room success: the payloads, their order, acks, and the peer objects (docs/protocol.md "join_room").
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, uniq, ids, rooms, RFC3339_Z } from '../lib/server.mjs';

const ICE = [
  { urls: 'stun:stun.example.org:3478' },
  { urls: ['turn:turn.example.org:3478?transport=udp', 'turns:turn.example.org:5349'], username: 'u', credential: 'secret' },
];

let srv;
const clients = [];
const client = async () => { const c = await connect(srv.url); clients.push(c); return c; };

before(async () => { srv = await startServer(['--max-peers', '5', '--ice-servers', JSON.stringify(ICE)]); });
after(async () => { clients.forEach((c) => c.close()); await srv?.stop(); });

test('join_room_success carries exactly room_name, peer_id, peers, total_peers, max_peers, version, ice_servers', async () => {
  const room = uniq('success');
  const a = await client();
  const { success } = await a.join(room, 'alice', 'Alice');
  assert.deepEqual(Object.keys(success).sort(), ['ice_servers', 'max_peers', 'peer_id', 'peers', 'room_name', 'total_peers', 'version']);
  assert.equal(success.room_name, room);
  assert.equal(success.peer_id, 'alice');
  assert.equal(success.total_peers, 1);
  assert.equal(success.max_peers, 5, 'max_peers is the configured --max-peers');
  assert.equal(success.version, 1, 'the join that creates a room makes version 1');
  assert.deepEqual(success.ice_servers, ICE, 'ice_servers is the configured --ice-servers list');
  assert.equal(success.peers.length, 1);
  assert.equal(success.peers[0].peer_id, 'alice');
  assert.equal(success.peers[0].username, 'Alice');
});

test('peer objects are exactly {peer_id, username, joined_at} with an RFC 3339 UTC Z timestamp', async () => {
  const room = uniq('peerobj');
  const a = await client();
  const { success, update } = await a.join(room, 'p-1', 'Alice');
  for (const peer of [...success.peers, ...update.peers]) {
    assert.deepEqual(Object.keys(peer).sort(), ['joined_at', 'peer_id', 'username']);
    assert.match(peer.joined_at, RFC3339_Z);
    assert.ok(!Number.isNaN(Date.parse(peer.joined_at)));
  }
});

test('peers are ordered by join time, oldest first, and include the receiving peer', async () => {
  const room = uniq('order');
  const [a, b, c] = [await client(), await client(), await client()];
  await a.join(room, 'zed', 'Zed');
  await b.join(room, 'amy', 'Amy');
  const { success, update } = await c.join(room, 'mid', 'Mid');
  assert.deepEqual(ids(success.peers), ['zed', 'amy', 'mid']);
  assert.equal(success.total_peers, 3);
  assert.deepEqual(ids(update.peers), ['zed', 'amy', 'mid']);
  const times = success.peers.map((p) => Date.parse(p.joined_at));
  assert.deepEqual([...times].sort((x, y) => x - y), times, 'joined_at is non-decreasing along the list');
  const listing = (await rooms(srv.url))[room];
  assert.deepEqual(ids(listing.peers), ['zed', 'amy', 'mid']);
});

test('the joiner gets join_room_success first, then peer_list_updated; every member gets peer_list_updated', async () => {
  const room = uniq('seq');
  const a = await client();
  await a.join(room, 'a');
  const b = await client();
  b.emit('join_room', { room_name: room, peer_id: 'b', username: 'B' });
  const first = await b.nextAny(['join_room_success', 'peer_list_updated', 'join_room_error']);
  assert.equal(first.event, 'join_room_success');
  const bUpdate = await b.next('peer_list_updated');
  const aUpdate = await a.next('peer_list_updated');
  assert.deepEqual(aUpdate, bUpdate, 'every member receives the same peer_list_updated');
  assert.deepEqual(Object.keys(aUpdate).sort(), ['peers', 'room_name', 'total_peers', 'version']);
  assert.equal(aUpdate.room_name, room);
  assert.deepEqual(ids(aUpdate.peers), ['a', 'b']);
  assert.equal(aUpdate.total_peers, 2);
  assert.equal(aUpdate.version, first.payload.version, "the joiner's first peer_list_updated carries its own join's version");
  assert.deepEqual(aUpdate.peers, first.payload.peers);
});

test('join_room ack equals the join_room_success event', async () => {
  const room = uniq('ack');
  const a = await client();
  const ack = await a.ack('join_room', { room_name: room, peer_id: 'a', username: 'A' });
  const event = await a.next('join_room_success');
  assert.deepEqual(ack, event);
  assert.equal(ack.room_name, room);
});

test('join_room ack equals the join_room_error event', async () => {
  const a = await client();
  const ack = await a.ack('join_room', { room_name: 'x' });
  const event = await a.next('join_room_error');
  assert.deepEqual(ack, event);
  assert.equal(ack.code, 'missing_fields');
});

test('a join without an ack callback is answered by the event alone', async () => {
  const room = uniq('noack');
  const a = await client();
  const { success } = await a.join(room, 'solo');
  assert.equal(success.total_peers, 1);
});

test('total_peers equals the length of peers in every payload', async () => {
  const room = uniq('total');
  const cs = [await client(), await client(), await client()];
  for (const [i, c] of cs.entries()) {
    const { success, update } = await c.join(room, `p${i}`);
    assert.equal(success.total_peers, success.peers.length);
    assert.equal(update.total_peers, update.peers.length);
    assert.equal(success.total_peers, i + 1);
  }
});

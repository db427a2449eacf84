// HTTP peer leases with a short --http-peer-ttl: expiry is broadcast like a leave, re-POST renews.
// Every wait is on an event (or bounded by the harness timeout), never a sleep.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, uniq, ids, rooms, request, postJson, withTimeout, RFC3339_Z, TIMEOUT_MS } from '../lib/server.mjs';

const TTL = 0.75; // seconds (fractions allowed)
let srv;
const clients = [];
const client = async () => { const c = await connect(srv.url); clients.push(c); return c; };
const joinPath = (room) => `/api/webrtc/rooms/${encodeURIComponent(room)}/join`;

before(async () => { srv = await startServer(['--http-peer-ttl', String(TTL)]); });
after(async () => { clients.forEach((c) => c.close()); await srv?.stop(); });

test('an HTTP peer whose lease runs out is removed and the room is told', async () => {
  const room = uniq('expire');
  const a = await client();
  const { success } = await a.join(room, 'a');
  const res = await postJson(srv.url, joinPath(room), { peer_id: 'bot', username: 'Bot' });
  assert.equal(res.status, 200);
  assert.match(res.json.expires_at, RFC3339_Z);
  assert.deepEqual(ids((await a.next('peer_list_updated')).peers), ['a', 'bot']);
  const expired = await a.next('peer_list_updated');
  assert.deepEqual(expired, { room_name: room, peers: success.peers, total_peers: 1, version: success.version + 2 });
  assert.deepEqual(ids((await rooms(srv.url))[room].peers), ['a']);
  const del = await request(srv.url, `/api/webrtc/rooms/${encodeURIComponent(room)}/peers/bot`, { method: 'DELETE' });
  assert.equal(del.status, 404, 'an expired peer is gone');
});

test('expiry reaches delta clients as peer_left', async () => {
  const room = uniq('expire-delta');
  const d = await client();
  const { success } = await d.join(room, 'd', 'D', { updates: 'delta' });
  await postJson(srv.url, joinPath(room), { peer_id: 'bot', username: 'Bot' });
  assert.equal((await d.next('peer_joined')).peer.peer_id, 'bot');
  assert.deepEqual(await d.next('peer_left'), { room_name: room, peer_id: 'bot', total_peers: 1, version: success.version + 2 });
});

test('re-POST renews the lease: a peer renewed all along outlives one posted after it', async () => {
  const room = uniq('renew');
  const a = await client();
  await a.join(room, 'a');
  const first = await postJson(srv.url, joinPath(room), { peer_id: 'renewed', username: 'R' });
  const second = await postJson(srv.url, joinPath(room), { peer_id: 'once', username: 'O' });
  assert.equal(first.status, 200);
  assert.equal(second.status, 200);
  await a.next('peer_list_updated');
  await a.next('peer_list_updated');
  // renew "renewed" (posted first) until the first expiry is broadcast; without renewal it would
  // be the first to go
  let expiry = null;
  const watch = a.next('peer_list_updated', () => true, TIMEOUT_MS).then((u) => { expiry = u; });
  let last = first;
  while (expiry === null) {
    const again = await postJson(srv.url, joinPath(room), { peer_id: 'renewed', username: 'R' });
    assert.equal(again.status, 200);
    // a renewal is no change (the version moves only when "once" expires meanwhile)
    assert.ok([second.json.version, second.json.version + 1].includes(again.json.version));
    assert.ok(Date.parse(again.json.expires_at) >= Date.parse(last.json.expires_at), 'expires_at moves forward');
    last = again;
    await Promise.race([watch, new Promise((resolve) => setImmediate(resolve))]);
  }
  await watch;
  assert.deepEqual(ids(expiry.peers), ['a', 'renewed'], 'the renewed peer is still there when the other expires');
  assert.ok(Date.parse(last.json.expires_at) > Date.parse(first.json.expires_at), 'the renewed lease ends later than the first one');
  // stop renewing: it expires in turn
  const gone = await a.next('peer_list_updated');
  assert.deepEqual(ids(gone.peers), ['a']);
});

test('a room whose only peers were HTTP peers is deleted when their leases run out', async () => {
  const room = uniq('expire-room');
  assert.equal((await postJson(srv.url, joinPath(room), { peer_id: 'h', username: 'H' })).status, 200);
  assert.ok((await rooms(srv.url))[room]);
  // nobody is in the room to be told: follow the listing, bounded by the harness timeout
  await withTimeout((async () => {
    while ((await rooms(srv.url))[room]) await new Promise((resolve) => setImmediate(resolve));
  })(), TIMEOUT_MS, 'room deleted after lease expiry');
  assert.equal((await request(srv.url, `/api/webrtc/rooms/${encodeURIComponent(room)}`)).status, 404);
});

test('an expired HTTP peer that posts again joins anew (a change, broadcast)', async () => {
  const room = uniq('rejoin-after-expiry');
  const a = await client();
  const { success } = await a.join(room, 'a');
  await postJson(srv.url, joinPath(room), { peer_id: 'bot', username: 'Bot' });
  await a.next('peer_list_updated'); // joined
  assert.deepEqual(ids((await a.next('peer_list_updated')).peers), ['a']); // expired
  const again = await postJson(srv.url, joinPath(room), { peer_id: 'bot', username: 'Bot' });
  assert.equal(again.status, 200);
  assert.equal(again.json.version, success.version + 3);
  const upd = await a.next('peer_list_updated');
  assert.deepEqual(ids(upd.peers), ['a', 'bot']);
  assert.equal(upd.version, success.version + 3);
});

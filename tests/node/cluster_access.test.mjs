// Access tokens, TURN credentials and webhooks in cluster mode (docs/cluster.md, the
// protocol's "Access tokens", "TURN credentials", "Webhooks" and "Cluster"): three nodes on
// one private Redis, every node with the same --auth-secret, --turn-secret/--turn-urls and
// --webhook-url. A token is checked where its client connects; a join (socket or REST) is
// judged by the room's owner, in the single node's order; join answers carry TURN
// credentials whichever node owns the room; each committed change reaches the webhook
// receiver once (not once per node), in version order, and after an owner dies the new
// owner sends only its own changes.
//
// The nodes are a build with `--features cluster`, given by env SIGNALROOM_CLUSTER_BIN
// (`cargo xtask test` sets it); without it these tests are skipped.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { startServer, connect, uniq, ids, request, postJson } from '../lib/server.mjs';
import { startRedis } from '../lib/redis.mjs';
import { startReceiver } from '../lib/webhooks.mjs';
import { sign, nowSecs } from '../lib/jwt.mjs';

const BIN = process.env.SIGNALROOM_CLUSTER_BIN;
const skip = BIN ? false : 'SIGNALROOM_CLUSTER_BIN (the server binary for the nodes) is not set';

const SECRET = 'cluster-secret-1234567890';
const TURN_SECRET = 'cluster-turn-secret';
const TURN_URLS = ['turn:127.0.0.1:3478', 'turns:127.0.0.1:5349'];
const TURN_TTL = 600;
const STUN = { urls: 'stun:stun.invalid:3478' };
const MAX_PEERS = 3;

let redis;
let nodes = [];
let hooks;
const clients = [];

before(async () => {
  if (skip) return;
  redis = await startRedis();
  hooks = await startReceiver();
  nodes = await Promise.all(['n1', 'n2', 'n3'].map((id) => startServer([
    '--redis-url', redis.url, '--node-id', id, '--max-peers', String(MAX_PEERS),
    '--auth-secret', SECRET,
    '--turn-secret', TURN_SECRET, '--turn-urls', TURN_URLS.join(','), '--turn-ttl', String(TURN_TTL),
    '--ice-servers', JSON.stringify([STUN]),
    '--webhook-url', hooks.url,
  ], { bin: BIN })));
});

after(async () => {
  for (const c of clients) c.close();
  await Promise.all(nodes.map((n) => n.stop()));
  if (redis) await redis.stop();
  hooks?.close();
});

/** A client connected to node `i` (0, 1, 2) with `token` (unrestricted by default). */
async function on(i, token = sign(SECRET)) {
  const c = await connect(nodes[i].url, { auth: { token } });
  clients.push(c);
  return c;
}

const bearer = (token) => ({ authorization: `Bearer ${token}` });

/** The room's listing through node `i`, with an unrestricted token (undefined: no such room). */
async function listed(i, room) {
  const res = await request(nodes[i].url, `/api/webrtc/rooms/${encodeURIComponent(room)}`, { headers: bearer(sign(SECRET)) });
  if (res.status === 404) return undefined;
  assert.equal(res.status, 200, res.text);
  return res.json;
}

/** The answer to a join_room: the error body, or the success. */
async function tryJoin(c, room_name, peer_id) {
  c.emit('join_room', { room_name, peer_id, username: peer_id });
  const r = await c.nextAny(['join_room_success', 'join_room_error']);
  return r.payload;
}

function assertError(res, status, code) {
  assert.equal(res.status, status, `status (body ${res.text})`);
  assert.equal(res.json?.code, code, `code (body ${res.text})`);
}

const hmacSha1 = (secret, text) => createHmac('sha1', secret).update(text).digest('base64');

/** The static entry, then TURN credentials for `peerId` made with the shared secret. */
function assertTurn(iceServers, peerId) {
  assert.equal(iceServers.length, 2, JSON.stringify(iceServers));
  assert.deepEqual(iceServers[0], STUN);
  const entry = iceServers[1];
  assert.deepEqual(entry.urls, TURN_URLS);
  const [expiry, ...rest] = entry.username.split(':');
  assert.equal(rest.join(':'), peerId);
  assert.ok(Math.abs(Number(expiry) - (nowSecs() + TURN_TTL)) <= 2, `expiry ${expiry} is now + ttl`);
  assert.equal(entry.credential, hmacSha1(TURN_SECRET, entry.username));
  assert.ok(!JSON.stringify(iceServers).includes(TURN_SECRET), 'the secret is never sent');
}

test('a remote owner judges a token\'s room and sub in the single node\'s order', { skip }, async () => {
  const room = uniq('order');
  // n1 owns the room: its first member joined there.
  const f0 = await on(0);
  await f0.join(room, 'f0');
  const f1 = await on(2);
  await f1.join(room, 'f1');
  // Through n2: fields first (answered there), then the token's room, then its sub.
  const c = await on(1, sign(SECRET, { room: 'another', sub: 'me' }));
  c.emit('join_room', { room_name: room, peer_id: '', username: 'x' });
  assert.equal((await c.next('join_room_error')).code, 'missing_fields');
  assert.deepEqual(await tryJoin(c, room, 'f0'),
    { error: `Token does not allow room ${room}`, code: 'forbidden', room_name: room });
  const d = await on(1, sign(SECRET, { room, sub: 'me' }));
  assert.deepEqual(await tryJoin(d, room, 'not-me'),
    { error: 'Token does not allow peer_id not-me', code: 'forbidden', room_name: room });
  // Allowed by the token: then peer_id uniqueness and capacity, at the owner.
  const e = await on(1, sign(SECRET, { room, sub: 'f0' }));
  assert.equal((await tryJoin(e, room, 'f0')).code, 'peer_id_taken');
  const f2 = await on(2);
  await f2.join(room, 'f2');
  const g = await on(1, sign(SECRET, { room, sub: 'me' }));
  assert.equal((await tryJoin(g, room, 'f0')).code, 'forbidden', 'forbidden before room_full');
  assert.equal((await tryJoin(g, room, 'me')).code, 'room_full');
  assert.deepEqual(ids((await listed(1, room)).peers), ['f0', 'f1', 'f2']);
  // A token for a room no one owns yet: refused, and the room is not created.
  const other = uniq('none');
  assert.equal((await tryJoin(c, other, 'me')).code, 'forbidden');
  assert.equal(await listed(2, other), undefined);
  // A token that allows it joins through a non-owner node.
  const ok = uniq('ok');
  const o = await on(0);
  await o.join(ok, 'owner-side');
  const h = await on(2, sign(SECRET, { room: ok, sub: 'me' }));
  const { success } = await h.join(ok, 'me');
  assert.deepEqual(ids(success.peers), ['owner-side', 'me']);
});

test('a join after the token expired is token_expired at the remote owner; the membership stays', { skip }, async () => {
  const room = uniq('exp');
  const owner = await on(0);
  await owner.join(room, 'watcher');
  const exp = nowSecs() + 2;
  const c = await on(1, sign(SECRET, { exp }));
  await c.join(room, 'early');
  // Wait for the clock to pass exp (the rule itself is about time).
  await new Promise((r) => setTimeout(r, exp * 1000 - Date.now() + 50));
  c.emit('join_room', { room_name: room, peer_id: 42, username: 'x' });
  assert.equal((await c.next('join_room_error')).code, 'invalid_field', 'field checks first');
  assert.deepEqual(await tryJoin(c, room, 'again'), { error: 'Token expired', code: 'token_expired', room_name: room });
  assert.deepEqual(ids((await listed(2, room)).peers), ['watcher', 'early']);
  await owner.ack('signal', { to: 'early', data: 1 });
  assert.equal((await c.next('signal')).from, 'watcher');
});

test('REST with a bearer token through non-owner nodes: joins and deletes judged by the owner, listings by the node', { skip }, async () => {
  const room = uniq('rest');
  const owner = await on(0);
  await owner.join(room, 'o');
  const path = `/api/webrtc/rooms/${room}`;
  // 401 on the node itself, before anything is forwarded.
  assertError(await postJson(nodes[1].url, `${path}/join`, { peer_id: 'h', username: 'H' }), 401, 'unauthorized');
  // The owner judges the token's room and sub, after the body checks.
  const mine = bearer(sign(SECRET, { room, sub: 'h' }));
  assertError(await postJson(nodes[1].url, `${path}/join`, { peer_id: '', username: 'H' }, mine), 400, 'missing_fields');
  const wrongRoom = await postJson(nodes[1].url, `${path}/join`, { peer_id: 'h', username: 'H' }, bearer(sign(SECRET, { room: 'x', sub: 'h' })));
  assertError(wrongRoom, 403, 'forbidden');
  assert.equal(wrongRoom.json.error, `Token does not allow room ${room}`);
  const wrongSub = await postJson(nodes[2].url, `${path}/join`, { peer_id: 'h2', username: 'H' }, mine);
  assertError(wrongSub, 403, 'forbidden');
  assert.equal(wrongSub.json.error, 'Token does not allow peer_id h2');
  const expired = bearer(sign(SECRET, { exp: nowSecs() - 1 }));
  assertError(await postJson(nodes[2].url, `${path}/join`, { peer_id: 'h', username: 'H' }, expired), 401, 'unauthorized');
  const joined = await postJson(nodes[1].url, `${path}/join`, { peer_id: 'h', username: 'H' }, mine);
  assert.equal(joined.status, 200, joined.text);
  assert.deepEqual(ids(joined.json.peers), ['o', 'h']);
  assertTurn(joined.json.ice_servers, 'h');
  await owner.next('peer_list_updated', (p) => p.room_name === room && p.version === 2);
  // Listings: a room token sees its room only, on any node.
  const roomToken = bearer(sign(SECRET, { room }));
  for (const n of nodes) {
    assertError(await request(n.url, '/api/webrtc/rooms', { headers: roomToken }), 403, 'forbidden');
    assertError(await request(n.url, `/api/webrtc/rooms/${uniq('other')}`, { headers: roomToken }), 403, 'forbidden');
    const seen = await request(n.url, path, { headers: roomToken });
    assert.equal(seen.status, 200, seen.text);
    assert.deepEqual(ids(seen.json.peers), ['o', 'h']);
  }
  // DELETE: the token's room, then its sub, before peer_not_found.
  const del = (i, token, peer = 'h') => request(nodes[i].url, `${path}/peers/${peer}`, { method: 'DELETE', headers: bearer(token) });
  assertError(await del(2, sign(SECRET, { room: 'x' })), 403, 'forbidden');
  assertError(await del(2, sign(SECRET, { room, sub: 'someone' })), 403, 'forbidden');
  assertError(await del(1, sign(SECRET, { room, sub: 'ghost' }), 'ghost'), 404, 'peer_not_found');
  assert.equal((await del(2, sign(SECRET, { room, sub: 'h' }))).status, 204);
  assert.deepEqual(ids((await listed(1, room)).peers), ['o']);
});

test('join answers carry TURN credentials whichever node owns the room', { skip }, async () => {
  const room = uniq('turn');
  const owner = await on(2);
  const own = await owner.join(room, 'first');
  assertTurn(own.success.ice_servers, 'first');
  for (const i of [0, 1]) {
    const c = await on(i);
    const { success } = await c.join(room, `p${i}:with:colons`);
    assertTurn(success.ice_servers, `p${i}:with:colons`);
  }
  const rest = await postJson(nodes[0].url, `/api/webrtc/rooms/${uniq('turn-rest')}/join`, { peer_id: 'bot', username: 'Bot' }, bearer(sign(SECRET)));
  assert.equal(rest.status, 200, rest.text);
  assertTurn(rest.json.ice_servers, 'bot');
});

/** "event room vN extra" of a webhook body, the room's unique suffix removed. */
const summary = (b) => {
  const extra = b.peer ? b.peer.peer_id : b.peer_id ? `${b.peer_id}:${b.reason}` : '';
  return `${b.event} v${b.version} ${extra}`.trim();
};

test('webhooks: each change of a room spanning three nodes is delivered once, in version order', { skip }, async () => {
  const room = uniq('hooks');
  const path = `/api/webrtc/rooms/${room}`;
  const a = await on(0);
  const b = await on(1);
  const c = await on(2);
  await a.join(room, 'a');
  await b.join(room, 'b');
  await c.join(room, 'c');
  const seen = (v) => a.next('peer_list_updated', (p) => p.room_name === room && p.version === v);
  await seen(3);
  await b.ack('leave_room', {});
  await seen(4);
  c.close();
  await seen(5);
  assert.equal((await postJson(nodes[2].url, `${path}/join`, { peer_id: 'h', username: 'H' }, bearer(sign(SECRET)))).status, 200);
  await seen(6);
  assert.equal((await request(nodes[1].url, `${path}/peers/h`, { method: 'DELETE', headers: bearer(sign(SECRET)) })).status, 204);
  await seen(7);
  await a.ack('leave_room', {});
  await hooks.until((d) => d.body.room_name === room && d.body.event === 'room_finished', 'room_finished');
  // Each node's deliveries to one URL go out one at a time, in order: once a room that
  // node owns has finished at the receiver, whatever it queued before has arrived.
  await Promise.all(nodes.map(async (_, i) => {
    const flush = uniq(`flush${i}`);
    const f = await on(i);
    await f.join(flush, 'f');
    await f.ack('leave_room', {});
    await hooks.until((d) => d.body.room_name === flush && d.body.event === 'room_finished', `room_finished of ${flush}`);
  }));
  const mine = hooks.got.filter((d) => d.body.room_name === room);
  assert.deepEqual(mine.map((d) => summary(d.body)), [
    'room_started v1',
    'peer_joined v1 a',
    'peer_joined v2 b',
    'peer_joined v3 c',
    'peer_left v4 b:left',
    'peer_left v5 c:disconnected',
    'peer_joined v6 h',
    'peer_left v7 h:deleted',
    'peer_left v8 a:left',
    'room_finished v8',
  ]);
  const deliveries = new Set(mine.map((d) => d.headers['x-signalroom-delivery']));
  assert.equal(deliveries.size, mine.length, 'one delivery id per change');
  for (const d of mine) assert.equal(d.body.id, d.headers['x-signalroom-delivery']);
});

test('webhooks after an owner dies: the new owner sends its own changes once, none of the old ones again', { skip }, async () => {
  const own = await startRedis();
  const receiver2 = await startReceiver();
  const three = await Promise.all(['k1', 'k2', 'k3'].map((id) => startServer(
    ['--redis-url', own.url, '--node-id', id, '--webhook-url', receiver2.url], { bin: BIN },
  )));
  const mine = [];
  const at = async (i) => {
    const c = await connect(three[i].url);
    mine.push(c);
    return c;
  };
  try {
    const room = uniq('takeover');
    const a = await at(0); // k1 owns the room
    const b = await at(1);
    const c = await at(2);
    await a.join(room, 'a');
    await b.join(room, 'b');
    await c.join(room, 'c');
    const delivered = (event, version) => receiver2.until(
      (d) => d.body.room_name === room && d.body.event === event && d.body.version === version,
      `${event} v${version}`,
    );
    await delivered('peer_joined', 3);
    three[0].proc.kill('SIGKILL');
    await three[0].exited;
    // The new owner (k2 or k3) takes the room over and removes a (reason dropped).
    await b.next('peer_list_updated', (p) => p.room_name === room && p.version === 4, 12_000);
    const e = await at(1);
    await e.join(room, 'e');
    await b.ack('leave_room', {});
    await c.ack('leave_room', {});
    await e.ack('leave_room', {});
    await delivered('room_finished', 8);
    // Flush the living nodes' senders (see the test above).
    await Promise.all([1, 2].map(async (i) => {
      const flush = uniq(`flush${i}`);
      const f = await at(i);
      await f.join(flush, 'f');
      await f.ack('leave_room', {});
      await receiver2.until((d) => d.body.room_name === flush && d.body.event === 'room_finished', `room_finished of ${flush}`);
    }));
    assert.deepEqual(receiver2.got.filter((d) => d.body.room_name === room).map((d) => summary(d.body)), [
      'room_started v1',
      'peer_joined v1 a',
      'peer_joined v2 b',
      'peer_joined v3 c',
      'peer_left v4 a:dropped',
      'peer_joined v5 e',
      'peer_left v6 b:left',
      'peer_left v7 c:left',
      'peer_left v8 e:left',
      'room_finished v8',
    ]);
  } finally {
    for (const c of mine) c.close();
    await Promise.all(three.map((n) => n.stop()));
    await own.stop();
    receiver2.close();
  }
});

// REST API (docs/protocol.md "REST API"): every route and status, the 415/413/400 order, room_mismatch,
// renewal by re-POST, DELETE, and HTTP peers seen by Socket.IO members.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, uniq, ids, rooms, request, postJson, RFC3339_Z } from '../lib/server.mjs';

const MAX_PEERS = 3;
const MAX_BODY = 1024;
let srv;
const clients = [];
const client = async () => { const c = await connect(srv.url); clients.push(c); return c; };
const enc = encodeURIComponent;
const joinPath = (room) => `/api/webrtc/rooms/${enc(room)}/join`;
const MISSING = 'Missing required fields: room_name, peer_id, username';

before(async () => { srv = await startServer(['--max-peers', String(MAX_PEERS), '--max-body-bytes', String(MAX_BODY)]); });
after(async () => { clients.forEach((c) => c.close()); await srv?.stop(); });

/** Asserts an error answer: status, JSON body with `code` and a non-empty `error`. */
function assertError(res, status, code, error) {
  assert.equal(res.status, status, `status (body ${res.text})`);
  assert.match(String(res.headers['content-type']), /^application\/json/);
  assert.equal(res.json?.code, code, `code (body ${res.text})`);
  assert.equal(typeof res.json.error, 'string');
  assert.ok(res.json.error.length > 0);
  if (error !== undefined) assert.equal(res.json.error, error);
}

test('GET /api/webrtc/rooms with no rooms is an empty object', async () => {
  const res = await request(srv.url, '/api/webrtc/rooms');
  assert.equal(res.status, 200);
  assert.match(String(res.headers['content-type']), /^application\/json/);
  assert.deepEqual(res.json, {});
});

test('GET /api/webrtc/rooms is an object keyed by room name, each a room object', async () => {
  const [r1, r2] = [uniq('list-a'), 'list room ü/?#%'];
  const [a, b] = [await client(), await client()];
  const { success } = await a.join(r1, 'a', 'Alice');
  await b.join(r2, 'b', 'Bob');
  const listing = await rooms(srv.url);
  for (const [name, room] of Object.entries(listing)) {
    assert.equal(room.name, name);
    assert.deepEqual(Object.keys(room).sort(), ['created_at', 'max_peers', 'name', 'peer_count', 'peers', 'version']);
  }
  const room = listing[r1];
  assert.equal(room.peer_count, 1);
  assert.equal(room.max_peers, MAX_PEERS);
  assert.match(room.created_at, RFC3339_Z);
  assert.equal(room.version, 1);
  assert.deepEqual(room.peers, success.peers);
  assert.deepEqual(ids(listing[r2].peers), ['b']);
});

test('GET /api/webrtc/rooms/{room_name} answers the room object (URL-encoded names)', async () => {
  const room = `get one ${uniq('ü')}/#?`;
  const a = await client();
  const { success } = await a.join(room, 'a');
  const res = await request(srv.url, `/api/webrtc/rooms/${enc(room)}`);
  assert.equal(res.status, 200);
  assert.equal(res.json.name, room);
  assert.equal(res.json.peer_count, 1);
  assert.equal(res.json.version, success.version);
  assert.deepEqual(res.json.peers, success.peers);
  assert.deepEqual(res.json, (await rooms(srv.url))[room]);
});

test('GET /api/webrtc/rooms/{room_name} of an unknown room: 404 room_not_found', async () => {
  assertError(await request(srv.url, `/api/webrtc/rooms/${uniq('nope')}`), 404, 'room_not_found');
});

test('POST join: 200 {room_name, peer_id, peers, total_peers, version, expires_at}, creating the room at version 1', async () => {
  const room = uniq('post-new');
  const res = await postJson(srv.url, joinPath(room), { peer_id: 'bot', username: 'Bot' });
  assert.equal(res.status, 200);
  assert.deepEqual(Object.keys(res.json).sort(), ['expires_at', 'ice_servers', 'peer_id', 'peers', 'room_name', 'total_peers', 'version']);
  assert.deepEqual(res.json.ice_servers, [], 'REST join answers carry ice_servers always (PROTOCOL.md v1.1)');
  assert.equal(res.json.room_name, room);
  assert.equal(res.json.peer_id, 'bot');
  assert.equal(res.json.total_peers, 1);
  assert.equal(res.json.version, 1);
  assert.match(res.json.expires_at, RFC3339_Z);
  assert.deepEqual(Object.keys(res.json.peers[0]).sort(), ['joined_at', 'peer_id', 'username']);
  assert.equal(res.json.peers[0].username, 'Bot');
  const listed = (await rooms(srv.url))[room];
  assert.deepEqual(listed.peers, res.json.peers);
  assert.equal(listed.version, 1);
});

test('POST join is a change broadcast to the room\'s Socket.IO members, and listed to later joiners', async () => {
  const room = uniq('post-bcast');
  const a = await client();
  const { success } = await a.join(room, 'a');
  const res = await postJson(srv.url, joinPath(room), { peer_id: 'bot', username: 'Bot' });
  assert.equal(res.status, 200);
  assert.equal(res.json.version, success.version + 1);
  const upd = await a.next('peer_list_updated');
  assert.deepEqual(upd, { room_name: room, peers: res.json.peers, total_peers: 2, version: success.version + 1 });
  const b = await client();
  const { success: bJoin } = await b.join(room, 'b');
  assert.deepEqual(ids(bJoin.peers), ['a', 'bot', 'b']);
});

test('POST join with a body room_name equal to the path, or null, is accepted', async () => {
  const room = uniq('post-same');
  const same = await postJson(srv.url, joinPath(room), { room_name: room, peer_id: 'p1', username: 'One' });
  assert.equal(same.status, 200);
  const nul = await postJson(srv.url, joinPath(room), { room_name: null, peer_id: 'p2', username: 'Two' });
  assert.equal(nul.status, 200, nul.text);
  assert.deepEqual(ids(nul.json.peers), ['p1', 'p2']);
});

test('POST join 400 room_mismatch: the body room_name differs from the path', async () => {
  const room = uniq('post-mismatch');
  const res = await postJson(srv.url, joinPath(room), { room_name: 'another-room', peer_id: 'p', username: 'U' });
  assertError(res, 400, 'room_mismatch');
  assert.equal((await rooms(srv.url))[room], undefined);
  assert.equal((await rooms(srv.url))['another-room'], undefined);
});

test('POST join 400 invalid_json', async () => {
  for (const body of ['{', '{"peer_id": "p", "username": }', 'not json', '', '{"a":1} trailing']) {
    assertError(await postJson(srv.url, joinPath(uniq('bad-json')), body), 400, 'invalid_json');
  }
});

test('POST join 400 invalid_payload: the body is not an object', async () => {
  for (const body of ['[]', '"text"', '42', 'null', 'true', '[{"peer_id":"p","username":"u"}]']) {
    assertError(await postJson(srv.url, joinPath(uniq('bad-payload')), body), 400, 'invalid_payload', 'Invalid payload: expected an object');
  }
});

test('POST join 400 missing_fields, with the join_room text', async () => {
  const room = uniq('post-missing');
  for (const body of [{}, { peer_id: 'p' }, { username: 'u' }, { peer_id: '  ', username: 'u' }, { peer_id: 'p', username: null }]) {
    assertError(await postJson(srv.url, joinPath(room), body), 400, 'missing_fields', MISSING);
  }
  const res = await postJson(srv.url, joinPath(room), { username: '\u3000' });
  assert.deepEqual(res.json.missing, ['peer_id', 'username']);
  assert.equal((await rooms(srv.url))[room], undefined);
});

test('POST join 400 invalid_field: body fields checked like join_room', async () => {
  const room = uniq('post-invalid');
  const cases = [
    [{ peer_id: 5, username: 'u' }, 'Field peer_id must be a string'],
    [{ peer_id: 'p', username: ['u'] }, 'Field username must be a string'],
    [{ peer_id: 'p'.repeat(129), username: 'u' }, 'Field peer_id is too long (max 128)'],
    [{ peer_id: 'p', username: 'u'.repeat(65) }, 'Field username is too long (max 64)'],
    [{ peer_id: 'p\u0000', username: 'u' }, 'Field peer_id contains control characters'],
    [{ peer_id: 'p', username: 'a\u009fb' }, 'Field username contains control characters'],
  ];
  for (const [body, error] of cases) assertError(await postJson(srv.url, joinPath(room), body), 400, 'invalid_field', error);
  // a non-string body room_name: docs/protocol.md allows reading it as invalid_field or room_mismatch
  const numeric = await postJson(srv.url, joinPath(room), { room_name: 5, peer_id: 'p', username: 'u' });
  assert.equal(numeric.status, 400);
  assert.ok(['invalid_field', 'room_mismatch'].includes(numeric.json.code), numeric.text);
  assert.equal((await rooms(srv.url))[room], undefined);
});

test('POST join 400 missing_fields: a path room name of white space only', async () => {
  const res = await postJson(srv.url, joinPath(' \u3000 '), { peer_id: 'p', username: 'u' });
  assertError(res, 400, 'missing_fields', MISSING);
  assert.deepEqual(res.json.missing, ['room_name']);
});

test('POST join 400 invalid_field: the path room name checked like join_room', async () => {
  assertError(await postJson(srv.url, joinPath('r'.repeat(129)), { peer_id: 'p', username: 'u' }), 400, 'invalid_field', 'Field room_name is too long (max 128)');
  assertError(await postJson(srv.url, joinPath('a\u0001b'), { peer_id: 'p', username: 'u' }), 400, 'invalid_field', 'Field room_name contains control characters');
  const ok = await postJson(srv.url, joinPath('é'.repeat(64)), { peer_id: 'p', username: 'u' });
  assert.equal(ok.status, 200, '128 UTF-8 bytes is at the limit');
  assert.equal(ok.json.room_name, 'é'.repeat(64));
});

test('a path whose percent-encoding is not UTF-8 is a JSON 400 invalid_field, on every route', async () => {
  const cases = [
    ['POST', '/api/webrtc/rooms/%ff/join', 'room_name'],
    ['GET', '/api/webrtc/rooms/%ff', 'room_name'],
    ['DELETE', '/api/webrtc/rooms/%ff/peers/p', 'room_name'],
    ['DELETE', `/api/webrtc/rooms/${uniq('utf8')}/peers/%C3%28`, 'peer_id'],
  ];
  for (const [method, path, field] of cases) {
    const body = method === 'POST' ? JSON.stringify({ peer_id: 'p', username: 'u' }) : undefined;
    const res = await request(srv.url, path, { method, body, headers: body ? { 'content-type': 'application/json' } : {} });
    assert.equal(res.status, 400, `${method} ${path}`);
    assert.match(String(res.headers['content-type']), /^application\/json/, `${method} ${path}`);
    assert.deepEqual(res.json, { error: `Field ${field} is not valid UTF-8`, code: 'invalid_field' }, `${method} ${path}`);
  }
});

test('POST join 409 room_full: HTTP and socket peers count towards capacity', async () => {
  const room = uniq('post-full');
  const a = await client();
  await a.join(room, 'a');
  for (const p of ['h1', 'h2']) assert.equal((await postJson(srv.url, joinPath(room), { peer_id: p, username: p })).status, 200);
  assertError(await postJson(srv.url, joinPath(room), { peer_id: 'h3', username: 'h3' }), 409, 'room_full', `Room ${room} is full (max ${MAX_PEERS} peers)`);
  const outsider = await client();
  assert.equal((await outsider.ack('join_room', { room_name: room, peer_id: 'x', username: 'x' })).code, 'room_full');
  // a renewal of a member of a full room is not refused
  assert.equal((await postJson(srv.url, joinPath(room), { peer_id: 'h1', username: 'h1' })).status, 200);
});

test('POST join 409 peer_id_taken: a Socket.IO peer holds the id', async () => {
  const room = uniq('post-taken');
  const a = await client();
  await a.join(room, 'taken');
  assertError(await postJson(srv.url, joinPath(room), { peer_id: 'taken', username: 'Bot' }), 409, 'peer_id_taken', `Peer ID taken is already in room ${room}`);
  assert.deepEqual((await rooms(srv.url))[room].peers.map((p) => p.username), ['taken']);
});

test('POST join 413 payload_too_large: a body over --max-body-bytes', async () => {
  const room = uniq('post-big');
  const body = JSON.stringify({ peer_id: 'p', username: 'u', pad: 'x'.repeat(MAX_BODY) });
  assertError(await postJson(srv.url, joinPath(room), body), 413, 'payload_too_large');
  const fits = JSON.stringify({ peer_id: 'p', username: 'u', pad: 'x'.repeat(MAX_BODY - 60) });
  assert.ok(Buffer.byteLength(fits) <= MAX_BODY);
  assert.equal((await postJson(srv.url, joinPath(room), fits)).status, 200, 'a body under the limit is accepted');
});

test('POST join 415 unsupported_media_type: content type other than application/json', async () => {
  const room = uniq('post-type');
  const body = JSON.stringify({ peer_id: 'p', username: 'u' });
  for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/jsonx', undefined]) {
    const headers = type === undefined ? {} : { 'content-type': type };
    assertError(await request(srv.url, joinPath(room), { method: 'POST', body, headers }), 415, 'unsupported_media_type');
  }
  assert.equal((await rooms(srv.url))[room], undefined);
  const ok = await request(srv.url, joinPath(room), { method: 'POST', body, headers: { 'content-type': 'application/json; charset=utf-8' } });
  assert.equal(ok.status, 200, 'parameters such as charset are allowed');
});

test('POST join with a Content-Length body (not chunked): 200 under the limit, 413 over it', async () => {
  const room = uniq('post-length');
  const ok = JSON.stringify({ peer_id: 'p', username: 'u' });
  const res = await request(srv.url, joinPath(room), { method: 'POST', body: ok, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(ok) } });
  assert.equal(res.status, 200, res.text);
  const big = JSON.stringify({ peer_id: 'q', username: 'u', pad: 'x'.repeat(MAX_BODY) });
  const res2 = await request(srv.url, joinPath(room), { method: 'POST', body: big, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(big) } });
  assertError(res2, 413, 'payload_too_large');
  assert.deepEqual(ids((await rooms(srv.url))[room].peers), ['p']);
});

test('POST checks in order 415, 413, 400', async () => {
  const room = uniq('post-order');
  const bigBad = '{' + 'x'.repeat(MAX_BODY + 10);
  assertError(await request(srv.url, joinPath(room), { method: 'POST', body: bigBad, headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type');
  assertError(await postJson(srv.url, joinPath(room), bigBad), 413, 'payload_too_large');
  assertError(await request(srv.url, joinPath(room), { method: 'POST', body: '{', headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type');
  assertError(await postJson(srv.url, joinPath(room), JSON.stringify({ room_name: 'other', peer_id: 'p', username: 'u', pad: 'x'.repeat(MAX_BODY) })), 413, 'payload_too_large');
});

test('POST the same join again renews: 200, same version, no broadcast', async () => {
  const room = uniq('renew');
  const a = await client();
  await a.join(room, 'a');
  const first = await postJson(srv.url, joinPath(room), { peer_id: 'bot', username: 'Bot' });
  await a.next('peer_list_updated');
  const again = await postJson(srv.url, joinPath(room), { peer_id: 'bot', username: 'Bot' });
  assert.equal(again.status, 200);
  assert.equal(again.json.version, first.json.version);
  assert.deepEqual(again.json.peers, first.json.peers);
  assert.ok(Date.parse(again.json.expires_at) >= Date.parse(first.json.expires_at), 'the lease does not shrink');
  // sentinel: the next update a sees is the next change
  const b = await client();
  await b.join(room, 'b');
  const upd = await a.next('peer_list_updated');
  assert.deepEqual(ids(upd.peers), ['a', 'bot', 'b']);
  assert.equal(upd.version, first.json.version + 1);
});

test('POST the same peer_id with another username renews, updates in place and broadcasts', async () => {
  const room = uniq('renew-rename');
  const a = await client();
  await a.join(room, 'a');
  const first = await postJson(srv.url, joinPath(room), { peer_id: 'bot', username: 'Bot' });
  await a.next('peer_list_updated');
  const b = await client();
  await b.join(room, 'b');
  await a.next('peer_list_updated');
  const renamed = await postJson(srv.url, joinPath(room), { peer_id: 'bot', username: 'Robot' });
  assert.equal(renamed.status, 200);
  assert.equal(renamed.json.version, first.json.version + 2);
  assert.deepEqual(renamed.json.peers.map((p) => p.username), ['a', 'Robot', 'b']);
  assert.equal(renamed.json.peers[1].joined_at, first.json.peers[1].joined_at);
  const upd = await a.next('peer_list_updated');
  assert.deepEqual(upd.peers, renamed.json.peers);
  assert.equal(upd.version, renamed.json.version);
});

test('DELETE an HTTP peer: 204, broadcast; the emptied room is deleted', async () => {
  const room = uniq('delete');
  const a = await client();
  const { success } = await a.join(room, 'a');
  await postJson(srv.url, joinPath(room), { peer_id: 'bot', username: 'Bot' });
  await a.next('peer_list_updated');
  const del = await request(srv.url, `/api/webrtc/rooms/${enc(room)}/peers/bot`, { method: 'DELETE' });
  assert.equal(del.status, 204);
  assert.equal(del.text, '');
  const upd = await a.next('peer_list_updated');
  assert.deepEqual(ids(upd.peers), ['a']);
  assert.equal(upd.version, success.version + 2);
  const solo = uniq('delete-solo');
  await postJson(srv.url, joinPath(solo), { peer_id: 'only', username: 'Only' });
  assert.equal((await request(srv.url, `/api/webrtc/rooms/${enc(solo)}/peers/only`, { method: 'DELETE' })).status, 204);
  assert.equal((await request(srv.url, `/api/webrtc/rooms/${enc(solo)}`)).status, 404);
});

test('DELETE 404 peer_not_found: no such HTTP peer, unknown room, or a Socket.IO peer', async () => {
  const room = uniq('delete-404');
  const a = await client();
  await a.join(room, 'sock');
  assertError(await request(srv.url, `/api/webrtc/rooms/${enc(room)}/peers/ghost`, { method: 'DELETE' }), 404, 'peer_not_found');
  assertError(await request(srv.url, `/api/webrtc/rooms/${uniq('no-room')}/peers/ghost`, { method: 'DELETE' }), 404, 'peer_not_found');
  assertError(await request(srv.url, `/api/webrtc/rooms/${enc(room)}/peers/sock`, { method: 'DELETE' }), 404, 'peer_not_found');
  assert.deepEqual(ids((await rooms(srv.url))[room].peers), ['sock'], 'socket peers cannot be removed this way');
  await postJson(srv.url, joinPath(room), { peer_id: 'bot', username: 'Bot' });
  assert.equal((await request(srv.url, `/api/webrtc/rooms/${enc(room)}/peers/bot`, { method: 'DELETE' })).status, 204);
  assertError(await request(srv.url, `/api/webrtc/rooms/${enc(room)}/peers/bot`, { method: 'DELETE' }), 404, 'peer_not_found');
});

test('a Socket.IO client cannot take over an HTTP peer\'s id, and leaving sockets leave HTTP peers in place', async () => {
  const room = uniq('mixed-rest');
  await postJson(srv.url, joinPath(room), { peer_id: 'bot', username: 'Bot' });
  const a = await client();
  assert.equal((await a.ack('join_room', { room_name: room, peer_id: 'bot', username: 'x' })).code, 'peer_id_taken');
  await a.join(room, 'a');
  await a.ack('leave_room', {});
  assert.deepEqual(ids((await rooms(srv.url))[room].peers), ['bot']);
});

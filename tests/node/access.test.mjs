// Access tokens (docs/protocol.md "Access tokens"): every bad token refused at the Socket.IO
// handshake with CONNECT_ERROR `unauthorized`; the join_room check order (fields, token_expired,
// room, sub, capacity); REST 401 before 415/413/400 and 403 after; open routes; the `token`
// subcommand; --auth-secret-file and SIGNALROOM_AUTH_SECRET.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { io } from 'socket.io-client';
import { startServer, connect, uniq, ids, request, postJson, withTimeout, RawSocket, TIMEOUT_MS, BIN } from '../lib/server.mjs';
import { sign, badTokens, verify, nowSecs } from '../lib/jwt.mjs';

const SECRET = 'test-secret-\u00e9-1234567890';
const MAX_PEERS = 2;
let srv;
const clients = [];
const client = async (token, opts = {}) => {
  const c = await connect(srv.url, { auth: { token }, ...opts });
  clients.push(c);
  return c;
};
const bearer = (token) => ({ authorization: `Bearer ${token}` });
const enc = encodeURIComponent;

before(async () => { srv = await startServer(['--auth-secret', SECRET, '--max-peers', String(MAX_PEERS), '--max-body-bytes', '1024']); });
after(async () => { clients.forEach((c) => c.close()); await srv?.stop(); });

/** Connects with `auth`; resolves with the connect_error, fails if the connection is accepted. */
function refused(url, auth, transports = ['websocket']) {
  const sock = io(url, { transports, forceNew: true, reconnection: false, timeout: TIMEOUT_MS, ...(auth === undefined ? {} : { auth }) });
  return withTimeout(new Promise((resolve, reject) => {
    sock.once('connect', () => reject(new Error('the connection was accepted')));
    sock.once('connect_error', (err) => resolve({ err, id: sock.id, active: sock.active }));
  }), TIMEOUT_MS, 'connect_error').finally(() => sock.disconnect());
}

/** The room listing, as an unrestricted token sees it. */
async function listing() {
  const res = await request(srv.url, '/api/webrtc/rooms', { headers: bearer(sign(SECRET)) });
  assert.equal(res.status, 200, res.text);
  return res.json;
}

test('a connection without a token is refused with CONNECT_ERROR unauthorized', async () => {
  const { err, id } = await refused(srv.url, undefined);
  assert.equal(err.message, 'unauthorized');
  assert.equal(id, undefined, 'no session');
  const { err: err2 } = await refused(srv.url, {});
  assert.equal(err2.message, 'unauthorized');
  const { err: err3 } = await refused(srv.url, { token: 42 });
  assert.equal(err3.message, 'unauthorized');
});

for (const [name, token] of Object.entries(badTokens(SECRET))) {
  test(`a token with ${name} is refused at the handshake (websocket and polling)`, async () => {
    for (const transports of [['websocket'], ['polling']]) {
      const { err, id } = await refused(srv.url, { token }, transports);
      assert.equal(err.message, 'unauthorized', `${transports}`);
      assert.equal(id, undefined);
    }
  });
}

test('the CONNECT_ERROR on the wire is {"message":"unauthorized"}, and nothing changes', async () => {
  const before = await listing();
  const raw = new RawSocket(srv.url);
  try {
    const open = await raw.frame((f) => f.startsWith('0{'));
    assert.notEqual(open, 'closed');
    raw.send(`40${JSON.stringify({ token: badTokens(SECRET)['wrong signature'] })}`);
    const reply = await raw.frame((f) => f.startsWith('44') || f.startsWith('40'));
    assert.equal(reply, '44{"message":"unauthorized"}');
    // The refused socket cannot act: a join sent anyway is not handled.
    raw.emit('join_room', { room_name: uniq('raw'), peer_id: 'x', username: 'x' }, 1);
  } finally { raw.close(); }
  const c = await client(sign(SECRET));
  await c.barrier();
  assert.deepEqual(await listing(), before);
});

test('a valid token connects, joins and exchanges signals as without tokens', async () => {
  const room = uniq('ok');
  const [a, b] = [await client(sign(SECRET)), await client(sign(SECRET, { room, sub: 'b' }))];
  await a.join(room, 'a');
  const { success } = await b.join(room, 'b');
  assert.deepEqual(ids(success.peers), ['a', 'b']);
  const ack = await b.ack('signal', { to: 'a', data: { hi: 1 } });
  assert.deepEqual(ack, { to: 'a' });
  assert.deepEqual((await a.next('signal')).data, { hi: 1 });
});

test('join_room: a token for another room is forbidden, and the room is checked before the sub', async () => {
  const room = uniq('mine');
  const c = await client(sign(SECRET, { room, sub: 'me' }));
  c.emit('join_room', { room_name: 'elsewhere', peer_id: 'not-me', username: 'x' });
  const err = await c.next('join_room_error');
  assert.deepEqual(err, { error: 'Token does not allow room elsewhere', code: 'forbidden', room_name: 'elsewhere' });
  c.emit('join_room', { room_name: room, peer_id: 'not-me', username: 'x' });
  assert.deepEqual(await c.next('join_room_error'), { error: 'Token does not allow peer_id not-me', code: 'forbidden', room_name: room });
  assert.equal((await listing())[room], undefined, 'no room was created');
  const { success } = await c.join(room, 'me');
  assert.deepEqual(ids(success.peers), ['me']);
});

test('join_room: the ack carries the forbidden error too, and a refused join keeps the current room', async () => {
  const room = uniq('keep');
  const c = await client(sign(SECRET, { room }));
  await c.join(room, 'p');
  const ack = await c.ack('join_room', { room_name: 'other', peer_id: 'p', username: 'p' });
  assert.equal(ack.code, 'forbidden');
  assert.deepEqual(ids((await listing())[room].peers), ['p']);
});

test('join_room: field checks come before the token, forbidden before room_full and peer_id_taken', async () => {
  const room = uniq('order');
  const filler = [await client(sign(SECRET)), await client(sign(SECRET))];
  await filler[0].join(room, 'f0');
  await filler[1].join(room, 'f1');
  const c = await client(sign(SECRET, { room: 'another', sub: 'me' }));
  c.emit('join_room', { room_name: room, peer_id: '', username: 'x' });
  assert.equal((await c.next('join_room_error')).code, 'missing_fields');
  c.emit('join_room', { room_name: room, peer_id: 'f0', username: 'x' });
  assert.equal((await c.next('join_room_error')).code, 'forbidden', 'forbidden before room_full/peer_id_taken');
  const d = await client(sign(SECRET, { room, sub: 'me' }));
  d.emit('join_room', { room_name: room, peer_id: 'me', username: 'x' });
  assert.equal((await d.next('join_room_error')).code, 'room_full', 'allowed by the token, then capacity');
});

test('join_room after the token expired: token_expired after the field checks; the membership stays', async () => {
  const room = uniq('exp');
  const exp = nowSecs() + 2;
  const c = await client(sign(SECRET, { exp }));
  await c.join(room, 'early');
  const other = await client(sign(SECRET));
  await other.join(room, 'watcher');
  // Wait for the clock to pass exp (the rule itself is about time).
  await new Promise((r) => setTimeout(r, exp * 1000 - Date.now() + 50));
  c.emit('join_room', { room_name: room, peer_id: 42, username: 'x' });
  assert.equal((await c.next('join_room_error')).code, 'invalid_field', 'field checks first');
  c.emit('join_room', { room_name: 'x', peer_id: 'y', username: 'z' });
  assert.deepEqual(await c.next('join_room_error'), { error: 'Token expired', code: 'token_expired', room_name: 'x' });
  // Still a member: listed, reachable, and get_peers still answers.
  assert.deepEqual(ids((await listing())[room].peers), ['early', 'watcher']);
  const list = await c.ack('get_peers', {});
  assert.deepEqual(ids(list.peers), ['early', 'watcher']);
  await other.ack('signal', { to: 'early', data: 1 });
  assert.equal((await c.next('signal')).from, 'watcher');
  c.emit('leave_room', {});
  assert.equal((await c.next('leave_room_success')).room_name, room);
});

// ---------------------------------------------------------------- REST

function assertError(res, status, code) {
  assert.equal(res.status, status, `status (body ${res.text})`);
  assert.equal(res.json?.code, code, `code (body ${res.text})`);
  assert.ok(typeof res.json.error === 'string' && res.json.error.length > 0);
}

function assert401(res) {
  assertError(res, 401, 'unauthorized');
  assert.equal(res.headers['www-authenticate'], 'Bearer');
}

test('REST: every route answers 401 unauthorized with WWW-Authenticate: Bearer without a valid token', async () => {
  const room = uniq('rest401');
  const tokens = [undefined, 'garbage', ...Object.values(badTokens(SECRET))];
  for (const token of tokens) {
    const headers = token === undefined ? {} : bearer(token);
    assert401(await request(srv.url, '/api/webrtc/rooms', { headers }));
    assert401(await request(srv.url, `/api/webrtc/rooms/${room}`, { headers }));
    assert401(await postJson(srv.url, `/api/webrtc/rooms/${room}/join`, { peer_id: 'h', username: 'H' }, headers));
    assert401(await request(srv.url, `/api/webrtc/rooms/${room}/peers/h`, { method: 'DELETE', headers }));
  }
  // Other schemes are not a bearer token.
  assert401(await request(srv.url, '/api/webrtc/rooms', { headers: { authorization: `Basic ${sign(SECRET)}` } }));
  assert.equal((await listing())[room], undefined);
});

test('REST: 401 comes before 415, 413 and 400', async () => {
  const p = `/api/webrtc/rooms/${uniq('order')}/join`;
  assert401(await request(srv.url, p, { method: 'POST', body: 'x', headers: { 'content-type': 'text/plain' } }));
  assert401(await postJson(srv.url, p, 'x'.repeat(4096)));
  assert401(await postJson(srv.url, p, '{not json'));
  assert401(await postJson(srv.url, p, { peer_id: '' }));
  const ok = bearer(sign(SECRET));
  assertError(await request(srv.url, p, { method: 'POST', body: 'x', headers: { 'content-type': 'text/plain', ...ok } }), 415, 'unsupported_media_type');
  assertError(await postJson(srv.url, p, 'x'.repeat(4096), ok), 413, 'payload_too_large');
  assertError(await postJson(srv.url, p, '{not json', ok), 400, 'invalid_json');
});

test('REST: 403 forbidden comes after 415, 413 and 400', async () => {
  const token = bearer(sign(SECRET, { room: 'only-this', sub: 'me' }));
  const p = `/api/webrtc/rooms/${uniq('other')}/join`;
  assertError(await request(srv.url, p, { method: 'POST', body: 'x', headers: { 'content-type': 'text/plain', ...token } }), 415, 'unsupported_media_type');
  assertError(await postJson(srv.url, p, 'x'.repeat(4096), token), 413, 'payload_too_large');
  assertError(await postJson(srv.url, p, '{not json', token), 400, 'invalid_json');
  assertError(await postJson(srv.url, p, { peer_id: '', username: 'x' }, token), 400, 'missing_fields');
  assertError(await postJson(srv.url, p, { peer_id: 'me', username: 'x', room_name: 'nope' }, token), 400, 'room_mismatch');
  assertError(await postJson(srv.url, p, { peer_id: 'me', username: 'x' }, token), 403, 'forbidden');
});

test('REST: a room token sees and joins only its room; 403 on the listing and on other rooms', async () => {
  const room = uniq('scoped');
  const other = uniq('scoped-other');
  const admin = bearer(sign(SECRET));
  assert.equal((await postJson(srv.url, `/api/webrtc/rooms/${other}/join`, { peer_id: 'x', username: 'X' }, admin)).status, 200);
  const scoped = bearer(sign(SECRET, { room }));
  assertError(await request(srv.url, '/api/webrtc/rooms', { headers: scoped }), 403, 'forbidden');
  assertError(await request(srv.url, `/api/webrtc/rooms/${other}`, { headers: scoped }), 403, 'forbidden');
  assertError(await request(srv.url, `/api/webrtc/rooms/${room}`, { headers: scoped }), 404, 'room_not_found');
  assertError(await postJson(srv.url, `/api/webrtc/rooms/${other}/join`, { peer_id: 'y', username: 'Y' }, scoped), 403, 'forbidden');
  assertError(await request(srv.url, `/api/webrtc/rooms/${other}/peers/x`, { method: 'DELETE', headers: scoped }), 403, 'forbidden');
  const joined = await postJson(srv.url, `/api/webrtc/rooms/${room}/join`, { peer_id: 'y', username: 'Y' }, scoped);
  assert.equal(joined.status, 200, joined.text);
  const got = await request(srv.url, `/api/webrtc/rooms/${enc(room)}`, { headers: scoped });
  assert.equal(got.status, 200);
  assert.deepEqual(ids(got.json.peers), ['y']);
  assert.deepEqual(ids((await listing())[other].peers), ['x'], 'the other room is unchanged');
});

test('REST: sub restricts joins and DELETEs to that peer_id', async () => {
  const room = uniq('sub');
  const admin = bearer(sign(SECRET));
  assert.equal((await postJson(srv.url, `/api/webrtc/rooms/${room}/join`, { peer_id: 'other', username: 'O' }, admin)).status, 200);
  const me = bearer(sign(SECRET, { sub: 'me' }));
  assertError(await postJson(srv.url, `/api/webrtc/rooms/${room}/join`, { peer_id: 'not-me', username: 'N' }, me), 403, 'forbidden');
  assertError(await request(srv.url, `/api/webrtc/rooms/${room}/peers/other`, { method: 'DELETE', headers: me }), 403, 'forbidden');
  assertError(await request(srv.url, `/api/webrtc/rooms/${room}/peers/me`, { method: 'DELETE', headers: me }), 404, 'peer_not_found');
  assert.equal((await postJson(srv.url, `/api/webrtc/rooms/${room}/join`, { peer_id: 'me', username: 'M' }, me)).status, 200);
  assert.equal((await request(srv.url, `/api/webrtc/rooms/${room}/peers/me`, { method: 'DELETE', headers: me })).status, 204);
  // A sub-only token may still list rooms.
  assert.equal((await request(srv.url, '/api/webrtc/rooms', { headers: me })).status, 200);
  assert.deepEqual(ids((await listing())[room].peers), ['other']);
});

test('REST: a CORS preflight needs no token; /healthz, /metrics and the demo page stay open', async () => {
  const pre = await request(srv.url, '/api/webrtc/rooms/r/join', {
    method: 'OPTIONS',
    headers: { origin: 'http://example.test', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
  });
  assert.ok(pre.status >= 200 && pre.status < 300, `preflight status ${pre.status}`);
  assert.ok(pre.headers['access-control-allow-origin']);
  assert.equal((await request(srv.url, '/healthz')).status, 200);
  const metrics = await request(srv.url, '/metrics');
  assert.equal(metrics.status, 200);
  assert.match(metrics.text, /signalroom_errors_total\{code="unauthorized"\} [1-9]/);
  const page = await request(srv.url, '/');
  assert.equal(page.status, 200);
  assert.match(page.text, /<html/i);
});

// ---------------------------------------------------------------- the binary

const run = (args, env = {}) => spawnSync(BIN, args, { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 10000 });

test('`signalroom token` prints an HS256 token with room, sub and exp, which the server accepts', async () => {
  const room = uniq('cli');
  const out = run(['token', '--room', room, '--peer-id', 'cli-peer', '--ttl', '3600'], { SIGNALROOM_AUTH_SECRET: SECRET });
  assert.equal(out.status, 0, out.stderr);
  const token = out.stdout.trim();
  const { header, claims, valid } = verify(token, SECRET);
  assert.ok(valid, 'signed with the secret');
  assert.equal(header.alg, 'HS256');
  assert.equal(claims.room, room);
  assert.equal(claims.sub, 'cli-peer');
  assert.ok(Math.abs(claims.exp - (nowSecs() + 3600)) <= 5, `exp ${claims.exp}`);
  const c = await client(token);
  const { success } = await c.join(room, 'cli-peer');
  assert.equal(success.room_name, room);
  // The flag works as well as the environment; without any secret it is refused.
  const flag = run(['token', '--auth-secret', SECRET]);
  assert.equal(flag.status, 0, flag.stderr);
  assert.ok(verify(flag.stdout.trim(), SECRET).valid);
  const none = run(['token'], { SIGNALROOM_AUTH_SECRET: '' });
  assert.equal(none.status, 2);
  assert.match(none.stderr, /auth-secret/);
});

test('bad token and TURN flags are refused with one line and exit 2', () => {
  for (const args of [['--auth-secret', ''], ['--auth-secret-file', '/nonexistent/secret'], ['--turn-secret', 's'],
    ['--turn-urls', 'turn:x'], ['--turn-ttl', '0', '--turn-secret', 's', '--turn-urls', 'turn:x'], ['token', '--ttl', '0', '--auth-secret', 's']]) {
    const out = run(args);
    assert.equal(out.status, 2, `${args.join(' ')}: ${out.stderr}`);
  }
});

test('--auth-secret-file (trailing newline ignored) and SIGNALROOM_AUTH_SECRET turn tokens on', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'signalroom-secret-'));
  const file = path.join(dir, 'secret');
  writeFileSync(file, 'file-secret\n');
  const servers = [];
  try {
    servers.push(await startServer(['--auth-secret-file', file]));
    servers.push(await startServer([], { env: { SIGNALROOM_AUTH_SECRET: 'file-secret' } }));
    for (const s of servers) {
      assert.equal((await refused(s.url, { token: sign('file-secret\n') })).err.message, 'unauthorized');
      const ok = await connect(s.url, { auth: { token: sign('file-secret') } });
      ok.close();
      assert401(await request(s.url, '/api/webrtc/rooms'));
      assert.equal((await request(s.url, '/api/webrtc/rooms', { headers: bearer(sign('file-secret')) })).status, 200);
    }
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
});

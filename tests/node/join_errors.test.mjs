// join_room_error: every row of docs/protocol.md's table, in the table's order, with exact texts,
// codes, `missing` and the `room_name` rule; and a refused join changes nothing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, uniq, ids, rooms, postJson } from '../lib/server.mjs';

const MAX = 2;
let srv;
const clients = [];
const client = async () => { const c = await connect(srv.url); clients.push(c); return c; };

before(async () => { srv = await startServer(['--max-peers', String(MAX)]); });
after(async () => { clients.forEach((c) => c.close()); await srv?.stop(); });

const INVALID_PAYLOAD = { error: 'Invalid payload: expected an object', code: 'invalid_payload' };
const MISSING = 'Missing required fields: room_name, peer_id, username';
const missing = (list, room_name) => ({ error: MISSING, code: 'missing_fields', missing: list, ...(room_name === undefined ? {} : { room_name }) });
const field = (error, room_name) => ({ error, code: 'invalid_field', ...(room_name === undefined ? {} : { room_name }) });

/** Emits join_room with an ack; the ack and the join_room_error event must both equal `expected`. */
async function expectError(c, args, expected) {
  const ack = c.ack('join_room', ...args);
  const event = c.next('join_room_error');
  const [a, e] = await Promise.all([ack, event]);
  assert.deepEqual(e, expected, 'join_room_error event');
  assert.deepEqual(a, e, 'the ack equals the join_room_error event');
  assert.deepEqual(c.pending(), [], 'a refused join sends nothing else');
}

const errorRows = [
  // row 1: payload not a JSON object
  ['invalid_payload: no payload at all', [], INVALID_PAYLOAD],
  ['invalid_payload: payload is null', [null], INVALID_PAYLOAD],
  ['invalid_payload: payload is a string', ['my-room'], INVALID_PAYLOAD],
  ['invalid_payload: payload is a number', [42], INVALID_PAYLOAD],
  ['invalid_payload: payload is a boolean', [true], INVALID_PAYLOAD],
  ['invalid_payload: payload is an array', [[{ room_name: 'r', peer_id: 'p', username: 'u' }]], INVALID_PAYLOAD],
  // row 2: absent, null or empty after trimming (Unicode white space); always the same text, `missing` in order
  ['missing_fields: empty object lists all three', [{}], missing(['room_name', 'peer_id', 'username'])],
  ['missing_fields: absent username, room_name echoed', [{ room_name: 'mf-room', peer_id: 'p' }], missing(['username'], 'mf-room')],
  ['missing_fields: null room_name is missing and not echoed', [{ room_name: null, peer_id: 'p', username: 'u' }], missing(['room_name'])],
  ['missing_fields: empty strings', [{ room_name: 'mf-room', peer_id: '', username: '' }], missing(['peer_id', 'username'], 'mf-room')],
  ['missing_fields: white space only, ASCII and Unicode (tab, NBSP, em space, ideographic space, NEL)',
    [{ room_name: ' \t\r\n ', peer_id: '\u00a0\u2003', username: '\u3000\u0085' }], missing(['room_name', 'peer_id', 'username'])],
  ['missing_fields: checked over all fields before types (missing peer_id beats non-string username)',
    [{ room_name: 'mf-room', peer_id: '   ', username: 5 }], missing(['peer_id'], 'mf-room')],
  ['missing_fields: checked before types (non-string room_name, missing peer_id)',
    [{ room_name: 7, peer_id: null, username: 'u' }], missing(['peer_id'])],
  // row 3: not a string
  ['invalid_field: room_name not a string', [{ room_name: 5, peer_id: 'p', username: 'u' }], field('Field room_name must be a string')],
  ['invalid_field: peer_id 0 is not a string (not missing)', [{ room_name: 'if-room', peer_id: 0, username: 'u' }], field('Field peer_id must be a string', 'if-room')],
  ['invalid_field: peer_id false is not a string (not missing)', [{ room_name: 'if-room', peer_id: false, username: 'u' }], field('Field peer_id must be a string', 'if-room')],
  ['invalid_field: username an object', [{ room_name: 'if-room', peer_id: 'p', username: { first: 'A' } }], field('Field username must be a string', 'if-room')],
  ['invalid_field: username an array', [{ room_name: 'if-room', peer_id: 'p', username: ['A'] }], field('Field username must be a string', 'if-room')],
  ['invalid_field: the first non-string field in order room_name, peer_id, username',
    [{ room_name: 'if-room', peer_id: 1, username: 2 }], field('Field peer_id must be a string', 'if-room')],
  // row 4: too long
  ['invalid_field: room_name over 128 bytes', [{ room_name: 'r'.repeat(129), peer_id: 'p', username: 'u' }], field('Field room_name is too long (max 128)')],
  ['invalid_field: room_name over 128 UTF-8 bytes though 65 characters', [{ room_name: 'é'.repeat(65), peer_id: 'p', username: 'u' }], field('Field room_name is too long (max 128)')],
  ['invalid_field: peer_id over 128 bytes', [{ room_name: 'tl-room', peer_id: 'p'.repeat(129), username: 'u' }], field('Field peer_id is too long (max 128)', 'tl-room')],
  ['invalid_field: peer_id over 128 UTF-8 bytes (43 three-byte characters)', [{ room_name: 'tl-room', peer_id: '€'.repeat(43), username: 'u' }], field('Field peer_id is too long (max 128)', 'tl-room')],
  ['invalid_field: username over 64 characters', [{ room_name: 'tl-room', peer_id: 'p', username: 'u'.repeat(65) }], field('Field username is too long (max 64)', 'tl-room')],
  ['invalid_field: username over 64 Unicode scalar values (65 emoji)', [{ room_name: 'tl-room', peer_id: 'p', username: '😀'.repeat(65) }], field('Field username is too long (max 64)', 'tl-room')],
  ['invalid_field: type row before length row (long room_name, non-string peer_id)',
    [{ room_name: 'r'.repeat(200), peer_id: 7, username: 'u' }], null /* room_name not asserted */],
  // row 5: control characters
  ['invalid_field: NUL in room_name', [{ room_name: 'a\u0000b', peer_id: 'p', username: 'u' }], field('Field room_name contains control characters')],
  ['invalid_field: U+001F in peer_id', [{ room_name: 'cc-room', peer_id: 'p\u001f', username: 'u' }], field('Field peer_id contains control characters', 'cc-room')],
  ['invalid_field: tab inside username', [{ room_name: 'cc-room', peer_id: 'p', username: 'a\tb' }], field('Field username contains control characters', 'cc-room')],
  ['invalid_field: DEL (U+007F) in username', [{ room_name: 'cc-room', peer_id: 'p', username: 'a\u007f' }], field('Field username contains control characters', 'cc-room')],
  ['invalid_field: C1 control U+0085 inside username', [{ room_name: 'cc-room', peer_id: 'p', username: 'a\u0085b' }], field('Field username contains control characters', 'cc-room')],
  ['invalid_field: C1 control U+009F in username', [{ room_name: 'cc-room', peer_id: 'p', username: '\u009fa' }], field('Field username contains control characters', 'cc-room')],
  ['invalid_field: length row before control row (control char in room_name, long peer_id)',
    [{ room_name: 'a\u0001', peer_id: 'p'.repeat(129), username: 'u' }], field('Field peer_id is too long (max 128)')],
];

for (const [name, args, expected] of errorRows) {
  test(`join_room_error ${name}`, async () => {
    const c = await client();
    if (expected === null) {
      const ack = await c.ack('join_room', ...args);
      assert.equal(ack.error, 'Field peer_id must be a string');
      assert.equal(ack.code, 'invalid_field');
      assert.deepEqual(await c.next('join_room_error'), ack);
    } else {
      await expectError(c, args, expected);
    }
    assert.deepEqual((await c.ack('leave_room', {})).code, 'not_in_room', 'the refused connection is in no room');
  });
}

test('join_room_error invalid_payload: a payload with a binary attachment', async () => {
  const c = await client();
  const ack = await c.ack('join_room', { room_name: 'bin-room', peer_id: 'p', username: 'u', avatar: Buffer.from([1, 2, 3]) });
  const event = await c.next('join_room_error');
  assert.deepEqual(ack, event);
  assert.equal(ack.code, 'invalid_payload');
  assert.equal(typeof ack.error, 'string');
  assert.equal((await rooms(srv.url))['bin-room'], undefined);
});

test('fields at the limits are accepted: 128-byte room_name and peer_id, 64-emoji username, inner NBSP/ZWSP', async () => {
  const c = await client();
  const room = 'é'.repeat(64); // 128 UTF-8 bytes
  const peer = 'p'.repeat(128);
  const username = '😀'.repeat(64); // 64 scalar values, 128 UTF-16 units
  const { success } = await c.join(room, peer, username);
  assert.equal(success.peers[0].username, username);
  const d = await client();
  const { success: s2 } = await d.join(uniq('inner'), 'p', 'a\u00a0b\u200bc');
  assert.equal(s2.peers[0].username, 'a\u00a0b\u200bc');
});

test('join_room_error room_full: exact text, code and room_name', async () => {
  const room = uniq('full');
  const [a, b, c] = [await client(), await client(), await client()];
  await a.join(room, 'a');
  await b.join(room, 'b');
  await expectError(c, [{ room_name: room, peer_id: 'c', username: 'C' }],
    { error: `Room ${room} is full (max ${MAX} peers)`, code: 'room_full', room_name: room });
});

test('join_room_error peer_id_taken: exact text, code and room_name', async () => {
  const room = uniq('taken');
  const [a, b] = [await client(), await client()];
  await a.join(room, 'dup', 'First');
  await expectError(b, [{ room_name: room, peer_id: 'dup', username: 'Second' }],
    { error: `Peer ID dup is already in room ${room}`, code: 'peer_id_taken', room_name: room });
});

test('join_room_error peer_id_taken: the peer_id is held by an HTTP peer', async () => {
  const room = uniq('taken-http');
  const res = await postJson(srv.url, `/api/webrtc/rooms/${room}/join`, { peer_id: 'bot', username: 'Bot' });
  assert.equal(res.status, 200);
  const a = await client();
  await expectError(a, [{ room_name: room, peer_id: 'bot', username: 'Impostor' }],
    { error: `Peer ID bot is already in room ${room}`, code: 'peer_id_taken', room_name: room });
});

test('join_room_error room_full comes before peer_id_taken', async () => {
  const room = uniq('full-first');
  const [a, b, c] = [await client(), await client(), await client()];
  await a.join(room, 'a');
  await b.join(room, 'b');
  await expectError(c, [{ room_name: room, peer_id: 'a', username: 'A2' }],
    { error: `Room ${room} is full (max ${MAX} peers)`, code: 'room_full', room_name: room });
});

test('HTTP peers count towards capacity', async () => {
  const room = uniq('full-http');
  const a = await client();
  await a.join(room, 'a');
  assert.equal((await postJson(srv.url, `/api/webrtc/rooms/${room}/join`, { peer_id: 'h', username: 'H' })).status, 200);
  const c = await client();
  await expectError(c, [{ room_name: room, peer_id: 'c', username: 'C' }],
    { error: `Room ${room} is full (max ${MAX} peers)`, code: 'room_full', room_name: room });
});

test('a member of a full room may join it again (rename) without room_full', async () => {
  const room = uniq('full-member');
  const [a, b] = [await client(), await client()];
  await a.join(room, 'a', 'A');
  await b.join(room, 'b', 'B');
  const ack = await a.ack('join_room', { room_name: room, peer_id: 'a', username: 'A renamed' });
  assert.equal(ack.room_name, room);
  assert.deepEqual(ack.peers.map((p) => p.username), ['A renamed', 'B']);
});

test('a refused join changes nothing: the connection stays in its room and nobody is told', async () => {
  const home = uniq('home');
  const full = uniq('elsewhere');
  const [a, b] = [await client(), await client()];
  const { success: homeJoin } = await a.join(home, 'a');
  const { update: homeUpdate } = await b.join(home, 'b');
  await a.next('peer_list_updated'); // b's arrival
  const [x, y] = [await client(), await client()];
  await x.join(full, 'x');
  const { update: fullUpdate } = await y.join(full, 'y');
  await x.next('peer_list_updated'); // y's arrival
  // refused for every kind of reason: capacity, a taken id, and bad payloads
  assert.equal((await a.ack('join_room', { room_name: full, peer_id: 'a', username: 'A' })).code, 'room_full');
  assert.equal((await a.ack('join_room', { room_name: home, peer_id: 'b', username: 'A' })).code, 'peer_id_taken');
  assert.equal((await a.ack('join_room', 'nope')).code, 'invalid_payload');
  assert.equal((await a.ack('join_room', { room_name: uniq('other'), peer_id: 'a' })).code, 'missing_fields');
  assert.equal((await a.ack('join_room', { room_name: uniq('other'), peer_id: 'a', username: 'x\u0000' })).code, 'invalid_field');
  const peers = await a.ack('get_peers', {});
  assert.equal(peers.room_name, home);
  assert.deepEqual(ids(peers.peers), ['a', 'b']);
  assert.equal(peers.version, homeUpdate.version, 'no change of the home room');
  const listing = await rooms(srv.url);
  assert.deepEqual(ids(listing[home].peers), ['a', 'b']);
  assert.deepEqual(ids(listing[full].peers), ['x', 'y']);
  // a sentinel change proves b was sent no update in between
  b.drain();
  assert.equal((await b.ack('leave_room', {})).room_name, home);
  const next = await a.next('peer_list_updated');
  assert.deepEqual(ids(next.peers), ['a']);
  assert.equal(next.version, homeUpdate.version + 1);
  assert.equal(homeJoin.version, 1);
  // and the full room's members were not told either
  await y.ack('leave_room', {});
  const xNext = await x.next('peer_list_updated');
  assert.deepEqual(ids(xNext.peers), ['x']);
  assert.equal(xNext.version, fullUpdate.version + 1);
});

test('a member of a full room may rejoin it under another peer_id (a leave, then a join)', async () => {
  const room = uniq('full-newid');
  const [a, b] = [await client(), await client()];
  await a.join(room, 'a');
  await b.join(room, 'b');
  const ack = await a.ack('join_room', { room_name: room, peer_id: 'a2', username: 'A2' });
  assert.deepEqual(ids(ack.peers), ['b', 'a2']);
});

test('concurrent joins under one peer_id: exactly one connection gets it', async () => {
  const room = uniq('race-id');
  const cs = [];
  for (let i = 0; i < 8; i += 1) cs.push(await client());
  const acks = await Promise.all(cs.map((c, i) => c.ack('join_room', { room_name: room, peer_id: 'contested', username: `U${i}` })));
  const won = acks.filter((a) => a.peer_id === 'contested');
  assert.equal(won.length, 1, JSON.stringify(acks));
  assert.ok(acks.filter((a) => a !== won[0]).every((a) => a.code === 'peer_id_taken'));
  const listed = (await rooms(srv.url))[room].peers;
  assert.deepEqual(listed.map((p) => [p.peer_id, p.username]), [['contested', won[0].peers[0].username]]);
});

test('concurrent joins into a room of capacity 2: exactly two get in', async () => {
  const room = uniq('race-full');
  const cs = [];
  for (let i = 0; i < 8; i += 1) cs.push(await client());
  const acks = await Promise.all(cs.map((c, i) => c.ack('join_room', { room_name: room, peer_id: `p${i}`, username: `U${i}` })));
  assert.equal(acks.filter((a) => a.peers).length, MAX, JSON.stringify(acks));
  assert.equal(acks.filter((a) => a.code === 'room_full').length, 8 - MAX);
  assert.equal((await rooms(srv.url))[room].peer_count, MAX);
});

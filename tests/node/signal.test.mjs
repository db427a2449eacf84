// The `signal` relay (docs/protocol.md "signal"): delivery, order, isolation between rooms, every
// signal_error code in the documented check order. Default limits (64 KiB signal data).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, uniq, postJson } from '../lib/server.mjs';

let srv;
const clients = [];
const client = async () => { const c = await connect(srv.url); clients.push(c); return c; };

before(async () => { srv = await startServer([]); });
after(async () => { clients.forEach((c) => c.close()); await srv?.stop(); });

/** Two connections in one fresh room: a (peer "alice") and b (peer "bob"). */
async function pair(room = uniq('sig')) {
  const [a, b] = [await client(), await client()];
  await a.join(room, 'alice', 'Alice');
  await b.join(room, 'bob', 'Bob');
  await a.next('peer_list_updated', (d) => d.peers.some((p) => p.peer_id === 'bob'));
  return { room, a, b };
}

/** Sends a signal with an ack; the ack and the signal_error event must equal each other; returns it. */
async function signalError(c, ...args) {
  const [ack, event] = await Promise.all([c.ack('signal', ...args), c.next('signal_error')]);
  assert.deepEqual(ack, event, 'the ack equals the signal_error event');
  assert.deepEqual(Object.keys(ack).sort(), ['code', 'error']);
  assert.equal(typeof ack.error, 'string');
  assert.ok(ack.error.length > 0);
  return ack;
}

const offer = { type: 'offer', sdp: 'v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n' };

test('signal reaches the peer as {room_name, from, data}; the sender gets nothing back', async () => {
  const { room, a, b } = await pair();
  a.emit('signal', { to: 'bob', data: offer });
  const got = await b.next('signal');
  assert.deepEqual(got, { room_name: room, from: 'alice', data: offer });
  await a.barrier();
  assert.deepEqual(a.pending(), [], 'nothing is emitted back to the sender');
});

test('signal with an ack is acked with {to}', async () => {
  const { a, b } = await pair();
  const ack = await a.ack('signal', { to: 'bob', data: { candidate: 'candidate:1 1 udp 2122260223 127.0.0.1 54321 typ host', sdpMid: '0', sdpMLineIndex: 0 } });
  assert.deepEqual(ack, { to: 'bob' });
  assert.equal((await b.next('signal')).data.sdpMid, '0');
  await a.barrier();
  assert.deepEqual(a.pending(), []);
});

test('signal data may be any JSON value', async () => {
  const { a, b } = await pair();
  const values = ['hello', 0, -1.5, true, false, [1, 'two', { three: 3 }], { nested: { deep: ['ü', '😀', '\u0000'] } }, ''];
  for (const data of values) {
    assert.deepEqual(await a.ack('signal', { to: 'bob', data }), { to: 'bob' });
    assert.deepEqual((await b.next('signal')).data, data);
  }
});

test('200 signals from A to B arrive in the order A sent them', async () => {
  const { a, b } = await pair();
  const N = 200;
  for (let i = 0; i < N; i += 1) a.emit('signal', { to: 'bob', data: { seq: i } });
  const seqs = [];
  for (let i = 0; i < N; i += 1) seqs.push((await b.next('signal')).data.seq);
  assert.deepEqual(seqs, Array.from({ length: N }, (_, i) => i));
});

test('signals in both directions at once each keep their order', async () => {
  const { a, b } = await pair();
  const N = 100;
  for (let i = 0; i < N; i += 1) { a.emit('signal', { to: 'bob', data: i }); b.emit('signal', { to: 'alice', data: i }); }
  const [toB, toA] = [[], []];
  for (let i = 0; i < N; i += 1) { toB.push((await b.next('signal')).data); toA.push((await a.next('signal')).data); }
  const expected = Array.from({ length: N }, (_, i) => i);
  assert.deepEqual(toB, expected);
  assert.deepEqual(toA, expected);
});

test('signals stay within one room: a peer with the same peer_id in another room never gets them', async () => {
  const { a, b } = await pair();
  const { a: twinA, b: twinB } = await pair(); // another room with its own "alice" and "bob"
  assert.deepEqual(await a.ack('signal', { to: 'bob', data: 'for room 1' }), { to: 'bob' });
  assert.equal((await b.next('signal')).data, 'for room 1');
  await twinB.barrier();
  await twinA.barrier();
  assert.deepEqual(twinB.pending(), [], 'the other room\'s bob got nothing');
  assert.deepEqual(twinA.pending(), []);
});

test('signal_error peer_not_found: the peer is in another room only', async () => {
  const { a } = await pair();
  const other = await client();
  await other.join(uniq('other-room'), 'carol');
  const err = await signalError(a, { to: 'carol', data: 'x' });
  assert.equal(err.code, 'peer_not_found');
  await other.barrier();
  assert.deepEqual(other.pending(), []);
});

test('signal_error peer_not_found: no such peer', async () => {
  const { a } = await pair();
  assert.equal((await signalError(a, { to: 'nobody', data: {} })).code, 'peer_not_found');
});

test('signal_error peer_not_found: an HTTP peer has no connection', async () => {
  const { room, a } = await pair();
  const res = await postJson(srv.url, `/api/webrtc/rooms/${encodeURIComponent(room)}/join`, { peer_id: 'http-bot', username: 'Bot' });
  assert.equal(res.status, 200);
  assert.equal((await signalError(a, { to: 'http-bot', data: offer })).code, 'peer_not_found');
});

test('signal_error peer_not_found: the peer has left the room', async () => {
  const { a, b } = await pair();
  await b.ack('leave_room', {});
  assert.equal((await signalError(a, { to: 'bob', data: 1 })).code, 'peer_not_found');
});

test('signal_error not_in_room: the sender is in no room', async () => {
  const { b } = await pair();
  const loner = await client();
  assert.equal((await signalError(loner, { to: 'bob', data: offer })).code, 'not_in_room');
  await b.barrier();
  assert.deepEqual(b.pending(), []);
});

const invalid = [
  ['no payload', []],
  ['payload null', [null]],
  ['payload a string', ['bob']],
  ['payload a number', [3]],
  ['payload an array', [[{ to: 'bob', data: 1 }]]],
  ['to missing', [{ data: offer }]],
  ['to empty', [{ to: '', data: offer }]],
  ['to not a string', [{ to: 5, data: offer }]],
  ['to null', [{ to: null, data: offer }]],
  ['data missing', [{ to: 'bob' }]],
  ['a binary attachment', [{ to: 'bob', data: Buffer.from([1, 2, 3]) }]],
];
for (const [name, args] of invalid) {
  test(`signal_error invalid_payload: ${name}`, async () => {
    const { a, b } = await pair();
    assert.equal((await signalError(a, ...args)).code, 'invalid_payload');
    await b.barrier();
    assert.deepEqual(b.pending(), [], 'nothing was relayed');
  });
}

test('signal data of exactly 64 KiB serialized is relayed (UTF-8 bytes of compact JSON)', async () => {
  const { a, b } = await pair();
  const cases = [
    'x'.repeat(65534), // "..." = 65536 bytes
    'é'.repeat(32767), // 2-byte characters: 65534 + 2 quotes
    { k: 'x'.repeat(65536 - 8) }, // {"k":"..."} compact
  ];
  for (const data of cases) {
    assert.equal(Buffer.byteLength(JSON.stringify(data)), 65536);
    assert.deepEqual(await a.ack('signal', { to: 'bob', data }), { to: 'bob' });
    assert.deepEqual((await b.next('signal')).data, data);
  }
});

test('signal_error payload_too_large: data over 64 KiB serialized', async () => {
  const { a, b } = await pair();
  const cases = ['x'.repeat(65535), 'é'.repeat(32768), { k: 'x'.repeat(65536 - 7) }, Array.from({ length: 20000 }, () => 1234)];
  for (const data of cases) {
    assert.ok(Buffer.byteLength(JSON.stringify(data)) > 65536);
    assert.equal((await signalError(a, { to: 'bob', data })).code, 'payload_too_large');
  }
  await b.barrier();
  assert.deepEqual(b.pending(), [], 'nothing was relayed');
});

test('signal checks in order: invalid_payload before not_in_room', async () => {
  const loner = await client();
  assert.equal((await signalError(loner, { data: 1 })).code, 'invalid_payload');
  assert.equal((await signalError(loner, 'junk')).code, 'invalid_payload');
});

test('signal checks in order: not_in_room before payload_too_large', async () => {
  const loner = await client();
  assert.equal((await signalError(loner, { to: 'bob', data: 'x'.repeat(70000) })).code, 'not_in_room');
});

test('signal checks in order: payload_too_large before peer_not_found', async () => {
  const { a } = await pair();
  assert.equal((await signalError(a, { to: 'nobody', data: 'x'.repeat(70000) })).code, 'payload_too_large');
});

test('the connection stays usable after every signal_error', async () => {
  const { a, b } = await pair();
  await signalError(a, 'junk');
  await signalError(a, { to: 'nobody', data: 1 });
  await signalError(a, { to: 'bob', data: 'x'.repeat(70000) });
  assert.deepEqual(await a.ack('signal', { to: 'bob', data: 'still here' }), { to: 'bob' });
  assert.equal((await b.next('signal')).data, 'still here');
});

test('--max-signal-bytes sets the signal limit', async () => {
  const s = await startServer(['--max-signal-bytes', '100']);
  try {
    const [a, b] = [await connect(s.url), await connect(s.url)];
    await a.join('tiny', 'alice');
    await b.join('tiny', 'bob');
    assert.deepEqual(await a.ack('signal', { to: 'bob', data: 'x'.repeat(98) }), { to: 'bob' }); // 100 bytes
    assert.equal((await b.next('signal')).data.length, 98);
    const err = await a.ack('signal', { to: 'bob', data: 'x'.repeat(99) });
    assert.equal(err.code, 'payload_too_large');
    a.close();
    b.close();
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
});

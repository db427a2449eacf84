// Bad input (docs/protocol.md "Anything else a client sends"): unknown events, binary attachments,
// a message over --max-message-bytes, malformed Socket.IO / Engine.IO packets over a raw
// WebSocket and bad polling requests. After each, a fresh client is served correctly and the
// REST listing is right.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, uniq, ids, rooms, request, RawSocket, TIMEOUT_MS } from '../lib/server.mjs';

const MAX_MESSAGE = 8192;
let srv;
const clients = [];
const client = async (opts) => { const c = await connect(srv.url, opts); clients.push(c); return c; };

before(async () => { srv = await startServer(['--max-message-bytes', String(MAX_MESSAGE)]); });
after(async () => { clients.forEach((c) => c.close()); await srv?.stop(); });

/** A fresh client joins a fresh room and the listing shows it: the server is still healthy. */
async function freshClientIsServed() {
  const room = uniq('fresh');
  const c = await client();
  const { success } = await c.join(room, 'fresh', 'Fresh');
  assert.deepEqual(ids(success.peers), ['fresh']);
  assert.equal(success.version, 1);
  assert.deepEqual(ids((await rooms(srv.url))[room].peers), ['fresh']);
  c.close();
}

test('unknown events are ignored: no reply, and the connection stays usable', async () => {
  const room = uniq('unknown');
  const a = await client();
  await a.join(room, 'a');
  for (const name of ['hello', 'JOIN_ROOM', 'join_room_success', 'peer_list_updated', 'join-room', '', 'x'.repeat(200)]) {
    a.emit(name, { room_name: 'zzz', peer_id: 'p', username: 'u' });
  }
  a.sock.emit('no_such_event', { any: 1 }, () => assert.fail('an unknown event must not be acked'));
  await a.barrier();
  assert.deepEqual(a.pending(), [], 'no reply to unknown events');
  assert.deepEqual(ids((await rooms(srv.url))[room].peers), ['a']);
  const ack = await a.ack('join_room', { room_name: room, peer_id: 'a', username: 'a' });
  assert.equal(ack.room_name, room);
  await freshClientIsServed();
});

test('non-object payloads, wrong types, control characters and over-long fields leave the connection usable', async () => {
  const room = uniq('bad-payloads');
  const a = await client();
  const bad = ['x', 1, null, [], { room_name: 1, peer_id: 'p', username: 'u' }, { room_name: room, peer_id: 'p\u0000', username: 'u' },
    { room_name: room, peer_id: 'p', username: 'u'.repeat(65) }, { room_name: 'r'.repeat(129), peer_id: 'p', username: 'u' }];
  for (const payload of bad) assert.equal(typeof (await a.ack('join_room', payload)).code, 'string');
  assert.equal(a.drain('join_room_error').length, bad.length);
  const { success } = await a.join(room, 'a');
  assert.deepEqual(ids(success.peers), ['a']);
  assert.deepEqual(ids((await rooms(srv.url))[room].peers), ['a']);
  await freshClientIsServed();
});

test('binary attachments: join_room and signal answer invalid_payload, the connection stays usable', async () => {
  const room = uniq('binary');
  const a = await client();
  const jr = await a.ack('join_room', { room_name: room, peer_id: 'a', username: 'A', blob: new Uint8Array([1, 2]) });
  assert.equal(jr.code, 'invalid_payload');
  assert.equal(jr.room_name, room, 'a valid room_name is named, as in every join error');
  assert.equal((await a.next('join_room_error')).code, 'invalid_payload');
  // an invalid room_name is not echoed
  const bad = await a.ack('join_room', { room_name: 'x\u0001', peer_id: 'a', username: 'A', blob: new Uint8Array([1]) });
  assert.equal(bad.code, 'invalid_payload');
  assert.equal(bad.room_name, undefined);
  a.drain('join_room_error');
  await a.join(room, 'a');
  const sig = await a.ack('signal', { to: 'a', data: Buffer.alloc(16) });
  assert.equal(sig.code, 'invalid_payload');
  assert.equal((await a.next('signal_error')).code, 'invalid_payload');
  // several attachments in one packet
  assert.equal((await a.ack('join_room', { room_name: room, peer_id: 'b', username: 'B', x: Buffer.from([1]), y: Buffer.from([2]) })).code, 'invalid_payload');
  assert.deepEqual(ids((await a.ack('get_peers', {})).peers), ['a']);
  await freshClientIsServed();
});

for (const transport of ['websocket', 'polling']) {
  test(`a message over --max-message-bytes closes that connection only (${transport})`, async () => {
    const room = uniq(`too-big-${transport}`);
    const stay = await client();
    await stay.join(room, 'stay');
    const big = await client({ transports: [transport] });
    await big.join(room, 'big');
    assert.deepEqual(ids((await stay.next('peer_list_updated')).peers), ['stay', 'big']);
    const gone = big.disconnectedEvent();
    big.emit('join_room', { room_name: room, peer_id: 'big', username: 'B', padding: 'x'.repeat(MAX_MESSAGE + 100) });
    await gone;
    const upd = await stay.next('peer_list_updated');
    assert.deepEqual(ids(upd.peers), ['stay'], 'the closed connection\'s peer is removed');
    assert.deepEqual(ids((await stay.ack('get_peers', {})).peers), ['stay'], 'the other connection is untouched');
    assert.deepEqual(ids((await rooms(srv.url))[room].peers), ['stay']);
    await freshClientIsServed();
  });
}

test('a message just under --max-message-bytes is handled normally', async () => {
  const a = await client();
  const ack = await a.ack('join_room', { room_name: uniq('under'), peer_id: 'a', username: 'A', padding: 'x'.repeat(MAX_MESSAGE - 400) });
  assert.equal(ack.peer_id, 'a');
  assert.ok(a.sock.connected);
});

// Raw frames after a valid handshake and join. Each must leave the server serving: either the
// bad connection is closed (and its peer removed), or it stays usable (and its peer stays).
const frames = [
  ['an empty text frame', ''],
  ['a bare "4" (message without a Socket.IO type)', '4'],
  ['an EVENT without data', '42'],
  ['an EVENT with truncated JSON', '42["join_room",{"room_name":"x"'],
  ['an EVENT with an unclosed array', '42['],
  ['an EVENT whose data is an object', '42{}'],
  ['an EVENT whose data is an empty array', '42[]'],
  ['an EVENT whose name is a number', '42[5,{}]'],
  ['an EVENT whose name is null', '42[null]'],
  ['an EVENT whose data is a string', '42"join_room"'],
  ['an EVENT with a non-numeric ack id', '42abc["get_peers",{}]'],
  ['an EVENT with an ack id over 64 bits', '4299999999999999999999999["get_peers",{}]', [], 'peer_list'],
  ['an EVENT with a lone surrogate escape', '42["join_room",{"room_name":"\\ud800","peer_id":"p","username":"u"}]', [], 'join_room_error'],
  ['an EVENT with an out-of-range number', '42["join_room",{"room_name":1e400,"peer_id":"p","username":"u"}]', [], 'join_room_error'],
  ['an EVENT nested 3000 levels deep', `42["join_room",${'['.repeat(3000)}${']'.repeat(3000)}]`, [], 'join_room_error'],
  ['an unknown Socket.IO packet type', '49["join_room",{}]'],
  ['a non-digit Socket.IO packet type', '4x["join_room"]'],
  ['an ACK without id', '43'],
  ['an ACK for an id never used', '4317[{}]'],
  ['a CONNECT_ERROR sent by the client', '44{"message":"x"}'],
  ['a duplicate CONNECT', '40'],
  ['a CONNECT to an unknown namespace', '40/nope,'],
  ['an EVENT for a namespace not connected', '42/nope,["join_room",{}]'],
  ['a BINARY_EVENT whose attachment never comes', '451-["join_room",{"_placeholder":true,"num":0}]'],
  ['a BINARY_EVENT announcing a huge attachment count', '45999999999-["join_room",{"_placeholder":true,"num":0}]'],
  ['a BINARY_EVENT without the dash', '451["join_room",{}]'],
  ['a BINARY_EVENT with a placeholder out of range', '451-["join_room",{"_placeholder":true,"num":7}]', [Buffer.from([1, 2, 3])], 'join_room_error'],
  ['a binary frame without a BINARY_EVENT', null, [Buffer.from([0xde, 0xad, 0xbe, 0xef])]],
  ['a text frame of invalid UTF-8', Buffer.from([0x34, 0x32, 0xff, 0xfe, 0xfd])],
  ['an unknown Engine.IO packet type', '9'],
  ['an Engine.IO NOOP', '6'],
  ['an Engine.IO UPGRADE out of place', '5'],
  ['an unsolicited Engine.IO PONG', '3'],
  ['an Engine.IO PING from the client', '2'],
  ['an Engine.IO packet type that is not a digit', 'z'],
];

// The fourth column: an event the server must answer with when it keeps the connection (a
// payload is never dropped silently).
for (const [name, frame, attachments = [], answer] of frames) {
  test(`malformed packet: ${name}`, async (t) => {
    const room = uniq('raw');
    const observer = await client();
    await observer.join(room, 'observer');
    const raw = await new RawSocket(srv.url).handshake();
    raw.emit('join_room', { room_name: room, peer_id: 'raw', username: 'Raw' });
    assert.notEqual(await raw.frame((f) => f.startsWith('42["join_room_success"')), 'closed');
    assert.deepEqual(ids((await observer.next('peer_list_updated')).peers), ['observer', 'raw']);

    if (frame !== null) {
      if (Buffer.isBuffer(frame)) raw.send(frame, { binary: false });
      else raw.send(frame);
    }
    for (const a of attachments) raw.send(a, { binary: true });

    // probe: an acked get_peers; the answer is its ack, or the connection is closed
    const mark = raw.frames.length;
    if (!raw.closed) raw.send('42900["get_peers",{}]');
    const outcome = await raw.frame((f) => f.startsWith('43900') || f === '41' || f.startsWith('1'), { from: mark, what: 'probe answer or close' });
    if (outcome === 'closed' || outcome === '41' || outcome.startsWith('1')) {
      t.diagnostic(`${name}: connection closed`);
      const upd = await observer.next('peer_list_updated');
      assert.deepEqual(ids(upd.peers), ['observer'], 'the closed connection\'s peer is removed');
      assert.deepEqual(ids((await rooms(srv.url))[room].peers), ['observer']);
    } else {
      t.diagnostic(`${name}: connection kept`);
      if (answer) {
        const answered = raw.frames.slice(mark).some((f) => typeof f === 'string' && f.startsWith(`42["${answer}"`));
        assert.ok(answered, `expected a ${answer} before the probe's answer, got ${JSON.stringify(raw.frames.slice(mark))}`);
      }
      const ack = JSON.parse(outcome.slice(5))[0];
      assert.equal(ack.room_name, room);
      assert.deepEqual(ids(ack.peers), ['observer', 'raw']);
      assert.deepEqual(ids((await rooms(srv.url))[room].peers), ['observer', 'raw']);
      await observer.barrier();
      assert.deepEqual(observer.pending(), [], 'nothing changed in the room');
    }
    raw.close();
    await freshClientIsServed();
  });
}

test('malformed polling requests are refused and the server keeps serving', async () => {
  const attempts = [
    ['GET', '/socket.io/'],
    ['GET', '/socket.io/?EIO=3&transport=polling'],
    ['GET', '/socket.io/?EIO=4&transport=carrier-pigeon'],
    ['GET', '/socket.io/?EIO=4&transport=polling&sid=does-not-exist'],
    ['POST', '/socket.io/?EIO=4&transport=polling&sid=does-not-exist', '40'],
    ['POST', '/socket.io/?EIO=4&transport=polling', '40'],
  ];
  for (const [method, path, body] of attempts) {
    const res = await request(srv.url, path, { method, body, headers: body ? { 'content-type': 'text/plain;charset=UTF-8' } : {} });
    assert.ok(res.status >= 400 && res.status < 500, `${method} ${path}: ${res.status}`);
  }
  // a polling session that sends garbage
  const open = await request(srv.url, '/socket.io/?EIO=4&transport=polling');
  assert.equal(open.status, 200);
  const sid = JSON.parse(open.text.slice(1)).sid;
  for (const body of ['42[', '4x', '\u001e\u001e', 'b' + 'A'.repeat(10), '40\u001e42["join_room"']) {
    await request(srv.url, `/socket.io/?EIO=4&transport=polling&sid=${sid}`, { method: 'POST', body, headers: { 'content-type': 'text/plain;charset=UTF-8' } });
  }
  await freshClientIsServed();
  void TIMEOUT_MS;
});

test('the server is still healthy after all of the above', async () => {
  const res = await request(srv.url, '/healthz');
  assert.equal(res.status, 200);
  await freshClientIsServed();
});

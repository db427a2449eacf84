// --max-events-per-second / --event-burst (docs/protocol.md "Abuse limits"): past the burst an
// event gets its *_error with code rate_limited and no room_name, and changes nothing; every
// client event counts, unknown ones too; a connection still flooding at 10x the rate after
// 5 s is disconnected. The defaults never refuse a peer meshing with a full room.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, uniq, ids, request, withTimeout, metric } from '../lib/server.mjs';

let srv;
let defaults;
const clients = [];
const client = async (url, opts) => { const c = await connect(url, opts); clients.push(c); return c; };
before(async () => {
  srv = await startServer(['--max-events-per-second', '10', '--event-burst', '20']);
  defaults = await startServer([]);
});
after(async () => { clients.forEach((c) => c.close()); await srv?.stop(); await defaults?.stop(); });

function refusals(url, kind) {
  return metric(url, `signalroom_limit_refusals_total{kind="${kind}"}`, { missing: 0 });
}

const LIMITED = { error: 'Too many requests, slow down', code: 'rate_limited' };

for (const transport of ['websocket', 'polling']) {
  test(`past the burst a join is refused with rate_limited and changes nothing (${transport})`, async () => {
    const room = uniq(`limited-${transport}`);
    const before = await refusals(srv.url, 'rate_limited');
    const a = await client(srv.url, { transports: [transport] });
    // Unknown events use up the bucket too (20, refilled at 10/s; 200 take far under 18 s).
    for (let i = 0; i < 200; i++) a.emit('no_such_event', i);
    const ack = await a.ack('join_room', { room_name: room, peer_id: 'a', username: 'A' });
    assert.deepEqual(ack, LIMITED, 'no room_name: the payload is not looked at');
    assert.deepEqual((await a.next('join_room_error')).code, 'rate_limited');
    assert.equal((await request(srv.url, `/api/webrtc/rooms/${room}`)).status, 404, 'nothing changed');
    assert.ok(await refusals(srv.url, 'rate_limited') >= before + 1);
    assert.ok(a.sock.connected, 'refused, not disconnected');
  });
}

test('an event refused by the rate is answered after the answer to the socket\'s earlier request', async () => {
  // In cluster mode the join waits for its room's owner; the refusal waits behind it.
  const room = uniq('in-turn');
  const a = await client(srv.url);
  a.sock.emit('join_room', { room_name: room, peer_id: 'a', username: 'A' });
  for (let i = 0; i < 200; i++) a.emit('no_such_event', i);
  a.sock.emit('get_peers', {});
  const first = await a.nextAny(['join_room_success', 'get_peers_error']);
  assert.equal(first.event, 'join_room_success');
  assert.deepEqual(await a.next('get_peers_error'), LIMITED);
});

test('each event kind answers its own *_error; a relayed signal is refused too', async () => {
  const room = uniq('kinds');
  const a = await client(srv.url);
  const b = await client(srv.url);
  await a.join(room, 'a');
  await b.join(room, 'b');
  for (let i = 0; i < 200; i++) a.emit('no_such_event', i);
  assert.deepEqual(await a.ack('signal', { to: 'b', data: 'x' }), LIMITED);
  assert.deepEqual(await a.ack('get_peers', {}), LIMITED);
  assert.deepEqual(await a.ack('leave_room', {}), LIMITED);
  assert.deepEqual(ids((await b.ack('get_peers', {})).peers), ['a', 'b'], 'a is still in the room');
  assert.deepEqual(b.pending().filter((e) => e === 'signal'), [], 'the refused signal was not relayed');
});

test('a connection still flooding at 10x the rate after 5 s is disconnected; others are not', async () => {
  const before = await refusals(srv.url, 'flood_disconnect');
  const calm = await client(srv.url);
  const flood = await client(srv.url);
  const gone = new Promise((resolve) => flood.sock.once('disconnect', resolve));
  // 20 events every 10 ms: about 2,000 a second, 200 times the rate.
  const timer = setInterval(() => { for (let i = 0; i < 20; i++) flood.emit('x', i); }, 10);
  try {
    await withTimeout(gone, 15000, 'the flooder is disconnected');
  } finally {
    clearInterval(timer);
  }
  assert.ok(await refusals(srv.url, 'flood_disconnect') > before);
  assert.ok(calm.sock.connected);
  assert.equal((await calm.ack('get_peers', {})).code, 'not_in_room');
});

test('defaults: a peer sending 1,500 signals at once (a mesh of 100 and more) is never refused', async () => {
  const room = uniq('mesh');
  const a = await client(defaults.url);
  const b = await client(defaults.url);
  await a.join(room, 'a');
  await b.join(room, 'b');
  const acks = [];
  for (let i = 0; i < 1500; i++) acks.push(a.ack('signal', { to: 'b', data: { candidate: i } }));
  const answers = await Promise.all(acks);
  assert.deepEqual(answers.filter((x) => x.to !== 'b'), [], 'every signal relayed');
  assert.equal(await refusals(defaults.url, 'rate_limited'), 0);
});

// Webhooks (docs/protocol.md "Webhooks"): every room change POSTed to --webhook-url, in the
// order it happened, with its reason, signed with --webhook-secret; retried on 5xx (not on
// 400); and a receiver that never answers does not slow signaling.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import {
  startServer, connect, uniq, ids, request, postJson, metric, PollingSession, RFC3339_Z,
  TEST_CLUSTER,
} from '../lib/server.mjs';
import { startReceiver } from '../lib/webhooks.mjs';

const servers = [];
const clients = [];
const receivers = [];
after(async () => {
  clients.forEach((c) => c.close());
  await Promise.all(servers.map((s) => s.stop()));
  receivers.forEach((r) => r.close());
});
const server = async (flags) => { const s = await startServer(flags); servers.push(s); return s; };
const client = async (url, opts) => { const c = await connect(url, opts); clients.push(c); return c; };

/** A receiver (tests/lib/webhooks.mjs), closed when the file's tests end. */
async function receiver(answer) {
  const r = await startReceiver(answer);
  receivers.push(r);
  return r;
}

const summary = (d) => {
  const b = d.body;
  const extra = b.peer ? b.peer.peer_id : b.peer_id ? `${b.peer_id}:${b.reason}` : '';
  return `${b.event} ${b.room_name.replace(/-\d+-\d+$/, '')} v${b.version} ${extra}`.trim();
};

test('every room change is delivered in order with its reason, signed, with one id per delivery', async () => {
  const hooks = await receiver();
  const secret = 's3cret';
  const srv = await server(['--webhook-url', hooks.url, '--webhook-secret', secret, '--http-peer-ttl', '0.5', '--max-queued-packets', '4']);
  const [x, y, z] = [uniq('hx'), uniq('hy'), uniq('hz')];
  const a = await client(srv.url);
  const b = await client(srv.url);
  const o = await client(srv.url);
  await a.join(x, 'a', 'A');
  await a.ack('join_room', { room_name: x, peer_id: 'a', username: 'Alice' });
  assert.equal((await postJson(srv.url, `/api/webrtc/rooms/${x}/join`, { peer_id: 'h', username: 'H' })).status, 200);
  await b.join(x, 'b');
  await b.join(y, 'b');
  await a.ack('join_room', { room_name: x, peer_id: 'a2', username: 'Alice' });
  assert.equal((await request(srv.url, `/api/webrtc/rooms/${x}/peers/h`, { method: 'DELETE' })).status, 204);
  assert.equal((await postJson(srv.url, `/api/webrtc/rooms/${x}/join`, { peer_id: 'h2', username: 'H2' })).status, 200);
  await a.next('peer_list_updated', (d) => d.version === 10, 10_000); // h2's lease ran out
  await a.ack('leave_room', {});
  b.close();
  await hooks.count(17);
  // A slow consumer is dropped: P (polling) stops reading while Q signals it.
  const p = await new PollingSession(srv.url).open();
  await p.emit('join_room', { room_name: z, peer_id: 'p', username: 'P' });
  for (let i = 0; i < 5; i++) {
    const packets = await p.get();
    if (packets.some((m) => m.startsWith('42["peer_list_updated"'))) break;
  }
  await o.join(z, 'q');
  let refused;
  for (let i = 0; i < 10 && !refused; i++) refused = (await o.ack('signal', { to: 'p', data: i })).code;
  assert.equal(refused, 'peer_not_found');
  await o.ack('leave_room', {});
  const got = await hooks.count(23);

  // A move is one step on one node (leave, then join). In a cluster the two
  // rooms have their own owners: the join of the new room is committed first,
  // then the leave of the old one (docs/cluster.md, "Moving rooms").
  const move = ['peer_left hx v5 b:moved', 'room_started hy v1', 'peer_joined hy v1 b'];
  if (TEST_CLUSTER) move.push(move.shift());
  assert.deepEqual(got.map(summary), [
    'room_started hx v1',
    'peer_joined hx v1 a',
    'peer_updated hx v2 a',
    'peer_joined hx v3 h',
    'peer_joined hx v4 b',
    ...move,
    'peer_left hx v6 a:left',
    'peer_joined hx v7 a2',
    'peer_left hx v8 h:deleted',
    'peer_joined hx v9 h2',
    'peer_left hx v10 h2:expired',
    'peer_left hx v11 a2:left',
    'room_finished hx v11',
    'peer_left hy v2 b:disconnected',
    'room_finished hy v2',
    'room_started hz v1',
    'peer_joined hz v1 p',
    'peer_joined hz v2 q',
    'peer_left hz v3 p:dropped',
    'peer_left hz v4 q:left',
    'room_finished hz v4',
  ]);
  const seen = new Set();
  for (const d of got) {
    assert.equal(d.headers['content-type'], 'application/json');
    assert.equal(d.headers['x-signalroom-event'], d.body.event);
    assert.equal(d.headers['x-signalroom-delivery'], d.body.id);
    const want = 'sha256=' + createHmac('sha256', secret).update(d.raw).digest('hex');
    assert.equal(d.headers['x-signalroom-signature'], want, 'HMAC-SHA256 of the raw body');
    assert.match(d.body.at, RFC3339_Z);
    assert.ok(!seen.has(d.body.id), 'ids are unique');
    seen.add(d.body.id);
  }
  assert.equal(got[1].body.peer.username, 'A');
  assert.equal(got[2].body.peer.username, 'Alice');
  assert.equal(await metric(srv.url, 'signalroom_webhooks_delivered_total'), 23);
});

test('a 5xx is retried with backoff, in order; a 400 is not retried', async () => {
  // The first event (room_started) fails twice with 500; the second (peer_joined) is refused with 400.
  const hooks = await receiver((d, attempt) => {
    if (d.body.event === 'room_started') return attempt <= 2 ? 500 : 200;
    if (d.body.event === 'peer_joined') return 400;
    return 200;
  });
  const srv = await server(['--webhook-url', hooks.url]);
  const a = await client(srv.url);
  await a.join(uniq('retry'), 'a');
  await a.ack('leave_room', {});
  const got = await hooks.count(6);
  assert.deepEqual(got.map((d) => d.body.event), [
    'room_started', 'room_started', 'room_started', 'peer_joined', 'peer_left', 'room_finished',
  ]);
  assert.equal(new Set(got.slice(0, 3).map((d) => d.body.id)).size, 1, 'retries repeat the delivery id');
  assert.equal(await metric(srv.url, 'signalroom_webhooks_retried_total'), 2);
  assert.equal(await metric(srv.url, 'signalroom_webhooks_delivered_total'), 3);
  assert.equal(await metric(srv.url, 'signalroom_webhooks_dropped_total{reason="rejected"}'), 1);
});

test('a receiver that never answers does not slow signaling (join ack p99 under 100 ms)', async () => {
  const hooks = await receiver(() => null);
  const srv = await server(['--webhook-url', hooks.url]);
  const a = await client(srv.url);
  const latencies = [];
  for (let i = 0; i < 200; i++) {
    const t = process.hrtime.bigint();
    const ok = await a.ack('join_room', { room_name: uniq('hang'), peer_id: 'a', username: 'A' });
    latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
    assert.ok(ok.room_name, JSON.stringify(ok));
  }
  latencies.sort((p, q) => p - q);
  const p99 = latencies[Math.floor(latencies.length * 0.99)];
  console.log(`# joins with a hanging webhook receiver: p50 ${latencies[100].toFixed(2)} ms, p99 ${p99.toFixed(2)} ms`);
  assert.ok(p99 < 100, `p99 ${p99.toFixed(1)} ms`);
  assert.ok(hooks.got.length >= 1, 'the first delivery is waiting on the receiver');
  assert.equal(await metric(srv.url, 'signalroom_webhooks_delivered_total'), 0);
  assert.deepEqual(ids((await a.ack('get_peers', {})).peers), ['a']);
});

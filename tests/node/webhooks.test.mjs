// Webhooks (docs/protocol.md "Webhooks"): every room change POSTed to each --webhook-url, in
// order, with its reason, signed; retried on 500 (same delivery id), not retried on 400; a
// receiver that never answers does not slow joins.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createHmac } from 'node:crypto';
import { startServer, connect, uniq, postJson, request, withTimeout } from '../lib/server.mjs';

const SECRET = 'webhook-secret';

/** An HTTP receiver; `answer(req, n)` picks the status of the n-th request (default 200). */
async function receiver(answer = () => 200) {
  const got = [];
  const waiters = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const entry = { headers: req.headers, raw, body: JSON.parse(raw) };
      const status = answer(entry, got.length);
      got.push(entry);
      for (const w of [...waiters]) w();
      if (status === null) return; // never answers
      res.writeHead(status).end();
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}/hook`;
  /** Resolves once `pred(got)` holds. */
  const until = (pred, ms = 10000, what = 'webhook requests') => withTimeout(new Promise((resolve) => {
    const check = () => { if (pred(got)) { waiters.splice(waiters.indexOf(check), 1); resolve(got); } };
    waiters.push(check);
    check();
  }), ms, what);
  return { url, got, until, close: () => { server.closeAllConnections(); server.close(); } };
}

const summary = (e) => [e.body.event, e.body.room_name, e.body.version, e.body.peer?.peer_id ?? e.body.peer_id ?? null, e.body.reason ?? null];

let hook;
let srv;
const clients = [];
before(async () => {
  hook = await receiver();
  srv = await startServer(['--webhook-url', hook.url, '--webhook-secret', SECRET, '--http-peer-ttl', '0.5']);
});
after(async () => { clients.forEach((c) => c.close()); await srv?.stop(); hook?.close(); });

test('every event and reason, in order, signed, with its headers', async () => {
  const [r1, r2] = [uniq('wh'), uniq('wh2')];
  const a = await connect(srv.url); const b = await connect(srv.url);
  clients.push(a, b);
  await a.join(r1, 'a', 'A');                                        // room_started, peer_joined a
  await b.join(r1, 'b', 'B');                                        // peer_joined b
  await b.join(r1, 'b', 'Bee');                                      // peer_updated b
  assert.equal((await postJson(srv.url, `/api/webrtc/rooms/${r1}/join`, { peer_id: 'h', username: 'H' })).status, 200);
  assert.equal((await request(srv.url, `/api/webrtc/rooms/${r1}/peers/h`, { method: 'DELETE' })).status, 204); // left deleted
  await b.join(r1, 'b2', 'B');                                       // left b (same room, other id), joined b2
  await b.join(r2, 'b', 'B');                                        // moved b2; room_started r2; joined b
  assert.equal((await postJson(srv.url, `/api/webrtc/rooms/${r1}/join`, { peer_id: 'x', username: 'X' })).status, 200);
  await a.ack('leave_room', {});                                     // left a (x remains)
  const expected = [
    ['room_started', r1, 1, null, null], ['peer_joined', r1, 1, 'a', null], ['peer_joined', r1, 2, 'b', null],
    ['peer_updated', r1, 3, 'b', null], ['peer_joined', r1, 4, 'h', null], ['peer_left', r1, 5, 'h', 'deleted'],
    ['peer_left', r1, 6, 'b', 'left'], ['peer_joined', r1, 7, 'b2', null], ['peer_left', r1, 8, 'b2', 'moved'],
    ['room_started', r2, 1, null, null], ['peer_joined', r2, 1, 'b', null], ['peer_joined', r1, 9, 'x', null],
    ['peer_left', r1, 10, 'a', 'left'],
    // the lease of x runs out (0.5 s): expired, and the room finishes
    ['peer_left', r1, 11, 'x', 'expired'], ['room_finished', r1, 11, null, null],
    // b's connection closes
    ['peer_left', r2, 2, 'b', 'disconnected'], ['room_finished', r2, 2, null, null],
  ];
  await hook.until((got) => got.filter((e) => e.body.room_name === r1).length >= 13, 10000, 'expiry events');
  b.close();
  const mine = (got) => got.filter((e) => [r1, r2].includes(e.body.room_name));
  await hook.until((got) => mine(got).length >= expected.length);
  const events = mine(hook.got);
  assert.deepEqual(events.map(summary), expected);
  const ids = new Set();
  for (const e of events) {
    assert.equal(e.headers['content-type'], 'application/json');
    assert.equal(e.headers['x-signalroom-event'], e.body.event);
    assert.equal(e.headers['x-signalroom-delivery'], e.body.id);
    const sig = 'sha256=' + createHmac('sha256', SECRET).update(e.raw).digest('hex');
    assert.equal(e.headers['x-signalroom-signature'], sig);
    assert.match(e.body.at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    ids.add(e.body.id);
  }
  assert.equal(ids.size, events.length, 'unique ids');
  const joined = events.find((e) => e.body.event === 'peer_joined');
  assert.deepEqual(Object.keys(joined.body.peer).sort(), ['joined_at', 'peer_id', 'username']);
});

test('a 500 is retried with the same delivery id; a 400 is not; order is kept', async () => {
  let failures = 2;
  const flaky = await receiver((e) => {
    if (e.body.event === 'room_started' && failures > 0) { failures -= 1; return 500; }
    if (e.body.event === 'peer_updated') return 400;
    return 200;
  });
  const own = await startServer(['--webhook-url', flaky.url]);
  try {
    const c = await connect(own.url);
    clients.push(c);
    const room = uniq('retry');
    await c.join(room, 'p', 'P');
    await c.join(room, 'p', 'Renamed');
    await c.ack('leave_room', {});
    await flaky.until((got) => got.some((e) => e.body.event === 'room_finished'), 15000);
    const seen = flaky.got.map((e) => [e.body.event, e.headers['x-signalroom-signature'] ?? null]);
    assert.deepEqual(seen.map(([e]) => e), ['room_started', 'room_started', 'room_started', 'peer_joined', 'peer_updated', 'peer_left', 'room_finished']);
    assert.equal(seen[0][1], null, 'unsigned without --webhook-secret');
    assert.equal(flaky.got[0].body.id, flaky.got[2].body.id, 'a retry is the same delivery');
    // The server counts a delivery once the receiver's answer arrives (bounded wait).
    let metrics = '';
    for (let i = 0; i < 50 && !/signalroom_webhook_delivered_total 4/.test(metrics); i += 1) {
      metrics = (await request(own.url, '/metrics')).text;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(metrics, /signalroom_webhook_retried_total 2/);
    assert.match(metrics, /signalroom_webhook_delivered_total 4/);
    assert.match(metrics, /signalroom_webhook_dropped_total\{reason="rejected"\} 1/);
  } finally { await own.stop(); flaky.close(); }
});

test('a receiver that never answers does not slow joins (p99 under 100 ms)', async () => {
  const dead = await receiver(() => null);
  const own = await startServer(['--webhook-url', dead.url]);
  try {
    const c = await connect(own.url);
    clients.push(c);
    const times = [];
    for (let i = 0; i < 200; i += 1) {
      const t0 = performance.now();
      const reply = await c.ack('join_room', { room_name: uniq('dead'), peer_id: 'p', username: 'P' });
      times.push(performance.now() - t0);
      assert.equal(reply.room_name !== undefined, true);
    }
    times.sort((x, y) => x - y);
    const p99 = times[Math.floor(times.length * 0.99) - 1];
    assert.ok(p99 < 100, `join p99 ${p99.toFixed(1)} ms`);
    assert.equal(dead.got.length, 1, 'one delivery in flight at a time per URL');
  } finally { await own.stop(); dead.close(); }
});

test('bad webhook flags are refused with exit 2', async () => {
  const { spawnSync } = await import('node:child_process');
  const { BIN } = await import('../lib/server.mjs');
  for (const url of ['not a url', 'ftp://x/y', 'https://example.test/hook']) {
    const out = spawnSync(BIN, ['--webhook-url', url], { encoding: 'utf8', timeout: 10000 });
    assert.equal(out.status, 2, `${url}: ${out.stderr}`);
  }
});

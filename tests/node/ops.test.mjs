// Operations: /healthz, /metrics, GET /, CORS, configuration through flags and environment,
// graceful shutdown on SIGTERM.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startServer, connect, uniq, request, postJson, once, rooms, parseMetrics } from '../lib/server.mjs';

let srv;
const clients = [];
const client = async (url = srv.url, opts) => { const c = await connect(url, opts); clients.push(c); return c; };

before(async () => { srv = await startServer([]); });
after(async () => { clients.forEach((c) => c.close()); await srv?.stop(); });

/** Parses Prometheus text into a map "name{labels}" -> number. */

test('GET /healthz answers 200 {"status":"ok"}', async () => {
  const res = await request(srv.url, '/healthz');
  assert.equal(res.status, 200);
  assert.match(String(res.headers['content-type']), /^application\/json/);
  assert.deepEqual(res.json, { status: 'ok' });
});

test('GET / serves the demo page', async () => {
  const res = await request(srv.url, '/');
  assert.equal(res.status, 200);
  assert.match(String(res.headers['content-type']), /^text\/html/);
  assert.match(res.text, /<html/i);
});

test('--www-dir: GET / serves that directory', async () => {
  const { mkdtemp, writeFile } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const dir = await mkdtemp(`${tmpdir()}/signalroom-www-`);
  await writeFile(`${dir}/index.html`, '<!doctype html><html><body>custom page</body></html>');
  const s = await startServer(['--www-dir', dir]);
  try {
    const res = await request(s.url, '/');
    assert.equal(res.status, 200);
    assert.match(res.text, /custom page/);
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
});

test('the Engine.IO handshake advertises the WebSocket upgrade and the default heartbeat (25 s / 20 s)', async () => {
  const res = await request(srv.url, '/socket.io/?EIO=4&transport=polling');
  assert.equal(res.status, 200);
  assert.equal(res.text[0], '0');
  const open = JSON.parse(res.text.slice(1));
  assert.deepEqual(open.upgrades, ['websocket']);
  assert.equal(open.pingInterval, 25000);
  assert.equal(open.pingTimeout, 20000);
  assert.equal(typeof open.sid, 'string');
});

test('--ping-interval and --ping-timeout set the advertised heartbeat (fractions of seconds allowed)', async () => {
  const s = await startServer(['--ping-interval', '1.5', '--ping-timeout', '0.25']);
  try {
    const open = JSON.parse((await request(s.url, '/socket.io/?EIO=4&transport=polling')).text.slice(1));
    assert.equal(open.pingInterval, 1500);
    assert.equal(open.pingTimeout, 250);
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
});

test('an unknown route answers 404', async () => {
  assert.equal((await request(srv.url, '/api/webrtc/nothing-here')).status, 404);
});

test('GET /metrics: Prometheus text with connections, rooms, peers, joins, leaves, errors by code, signals relayed', async () => {
  const m = await startServer([]);
  try {
    const room = uniq('metrics');
    const [a, b, c] = [await client(m.url), await client(m.url), await client(m.url)];
    await a.join(room, 'a');
    await b.join(room, 'b');
    await b.ack('leave_room', {});
    await b.join(room, 'b');
    assert.equal((await c.ack('join_room', {})).code, 'missing_fields');
    assert.equal((await c.ack('leave_room', {})).code, 'not_in_room');
    assert.deepEqual(await a.ack('signal', { to: 'b', data: 'hi' }), { to: 'b' });
    await b.next('signal');
    assert.equal((await a.ack('signal', { to: 'zz', data: 'hi' })).code, 'peer_not_found');
    const res = await request(m.url, '/metrics');
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain/);
    const metrics = parseMetrics(res.text);
    const get = (name) => {
      assert.ok(metrics.has(name), `${name} in /metrics:\n${res.text}`);
      return metrics.get(name);
    };
    assert.equal(get('signalroom_connections'), 3);
    assert.equal(get('signalroom_rooms'), 1);
    assert.equal(get('signalroom_peers'), 2);
    assert.ok(get('signalroom_joins_total') >= 3);
    assert.ok(get('signalroom_leaves_total') >= 1);
    assert.ok(get('signalroom_errors_total{code="missing_fields"}') >= 1);
    assert.ok(get('signalroom_errors_total{code="not_in_room"}') >= 1);
    assert.ok(get('signalroom_errors_total{code="peer_not_found"}') >= 1);
    assert.equal(get('signalroom_signals_relayed_total'), 1);
    // gauges follow the state down again
    a.close();
    await b.next('peer_list_updated'); // a's disconnect has been handled
    const later = parseMetrics((await request(m.url, '/metrics')).text);
    assert.equal(later.get('signalroom_connections'), 2);
    assert.equal(later.get('signalroom_peers'), 1);
    assert.equal(later.get('signalroom_rooms'), 1);
  } finally {
    assert.equal((await m.stop()).code, 0);
  }
});

test('the join, leave and relay counters equal what really happened (renewals, renames and failed relays are not counted)', async () => {
  const m = await startServer(['--http-peer-ttl', '0.5']);
  try {
    const x = uniq('count-x');
    const y = uniq('count-y');
    const counts = async () => {
      const t = parseMetrics((await request(m.url, '/metrics')).text);
      return [t.get('signalroom_joins_total'), t.get('signalroom_leaves_total'), t.get('signalroom_signals_relayed_total')];
    };
    const [a, b, c, o] = [await client(m.url), await client(m.url), await client(m.url), await client(m.url)];
    await o.join(x, 'o'); // joins 1
    await a.join(x, 'a'); // 2
    await b.join(x, 'b'); // 3
    await a.ack('join_room', { room_name: x, peer_id: 'a', username: 'Alice' }); // a rename: no join
    await a.ack('join_room', { room_name: x, peer_id: 'a', username: 'Alice' }); // identical: nothing
    const rest = (username) => postJson(m.url, `/api/webrtc/rooms/${encodeURIComponent(x)}/join`, { peer_id: 'h', username });
    assert.equal((await rest('H')).status, 200); // 4
    assert.equal((await rest('H')).status, 200); // a renewal: nothing
    assert.equal((await rest('H2')).status, 200); // a rename: nothing
    await b.join(y, 'b'); // b moves: leaves 1, joins 5
    await c.join(x, 'c'); // 6
    await a.ack('join_room', { room_name: x, peer_id: 'a2', username: 'Alice' }); // new peer_id: leaves 2, joins 7
    assert.deepEqual(await a.ack('signal', { to: 'c', data: 1 }), { to: 'c' }); // relayed 1
    assert.deepEqual(await a.ack('signal', { to: 'c', data: 2 }), { to: 'c' }); // relayed 2
    assert.equal((await a.ack('signal', { to: 'h', data: 3 })).code, 'peer_not_found'); // not relayed
    assert.equal((await a.ack('signal', { to: 'nobody', data: 4 })).code, 'peer_not_found');
    // o's lists are unique in this sequence, so each wait below matches one change only.
    const listed = (...want) => (d) => JSON.stringify(d.peers.map((p) => p.peer_id)) === JSON.stringify(want);
    await o.next('peer_list_updated', listed('o', 'c', 'a2'), 10000); // lease expiry: leaves 3
    await c.ack('leave_room', {}); // leaves 4
    await o.next('peer_list_updated', listed('o', 'a2'));
    a.close(); // leaves 5
    await o.next('peer_list_updated', listed('o'));
    assert.deepEqual(await counts(), [7, 5, 2]);
  } finally {
    assert.equal((await m.stop()).code, 0);
  }
});

test('CORS: any origin is allowed by default, on REST and on Socket.IO polling', async () => {
  const origin = 'chrome-extension://abcdefghijklmnop';
  const res = await request(srv.url, '/api/webrtc/rooms', { headers: { origin } });
  assert.ok(['*', origin].includes(res.headers['access-control-allow-origin']), JSON.stringify(res.headers));
  const pre = await request(srv.url, `/api/webrtc/rooms/${uniq('cors')}/join`, {
    method: 'OPTIONS',
    headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
  });
  assert.ok(pre.status >= 200 && pre.status < 300, `preflight ${pre.status}`);
  assert.ok(['*', 'https://app.example'].includes(pre.headers['access-control-allow-origin']));
  assert.match(String(pre.headers['access-control-allow-methods']), /POST|\*/i);
  const post = await postJson(srv.url, `/api/webrtc/rooms/${uniq('cors')}/join`, { peer_id: 'p', username: 'u' }, { origin: 'https://app.example' });
  assert.equal(post.status, 200);
  assert.ok(['*', 'https://app.example'].includes(post.headers['access-control-allow-origin']));
  const sio = await request(srv.url, '/socket.io/?EIO=4&transport=polling', { headers: { origin: 'https://app.example' } });
  assert.equal(sio.status, 200);
  assert.ok(['*', 'https://app.example'].includes(sio.headers['access-control-allow-origin']), JSON.stringify(sio.headers));
});

test('CORS: --cors-origin restricts the allowed origins', async () => {
  const s = await startServer(['--cors-origin', 'https://allowed.example', '--cors-origin', 'https://also.example']);
  try {
    for (const ok of ['https://allowed.example', 'https://also.example']) {
      const res = await request(s.url, '/api/webrtc/rooms', { headers: { origin: ok } });
      assert.equal(res.headers['access-control-allow-origin'], ok);
    }
    const denied = await request(s.url, '/api/webrtc/rooms', { headers: { origin: 'https://evil.example' } });
    assert.equal(denied.headers['access-control-allow-origin'], undefined);
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
});

test('CORS: --cors-origin also refuses Socket.IO sessions (WebSocket and polling) from other origins', async () => {
  const s = await startServer(['--cors-origin', 'http://good.example']);
  const wsUrl = `${s.url.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`;
  /** Resolves with the HTTP status the WebSocket upgrade got (101 when it opened). */
  const upgrade = (origin) => new Promise((resolve) => {
    const ws = new WebSocket(wsUrl, origin ? { origin } : {});
    ws.on('open', () => { ws.close(); resolve(101); });
    ws.on('unexpected-response', (_, res) => { res.resume(); resolve(res.statusCode); });
    ws.on('error', () => {});
  });
  try {
    assert.equal(await upgrade('http://evil.example'), 403);
    assert.equal(await upgrade('http://good.example'), 101);
    assert.equal(await upgrade(undefined), 101, 'programs send no Origin and are served');
    const evil = await request(s.url, '/socket.io/?EIO=4&transport=polling', { headers: { origin: 'http://evil.example' } });
    assert.equal(evil.status, 403);
    const good = await request(s.url, '/socket.io/?EIO=4&transport=polling', { headers: { origin: 'http://good.example' } });
    assert.equal(good.status, 200);
    // socket.io-client in Node (no Origin) joins a room as before; nothing was joined by the refused ones.
    const room = uniq('origin');
    const c = await client(s.url);
    await c.join(room, 'node');
    assert.deepEqual(Object.keys(await rooms(s.url)), [room]);
    c.close();
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
});

test('configuration through SIGNALROOM_* environment variables', async () => {
  const s = await startServer([], { env: { SIGNALROOM_MAX_PEERS: '7', SIGNALROOM_ICE_SERVERS: '[{"urls":"stun:env.example"}]' } });
  try {
    const a = await client(s.url);
    const { success } = await a.join(uniq('env'), 'a');
    assert.equal(success.max_peers, 7);
    assert.deepEqual(success.ice_servers, [{ urls: 'stun:env.example' }]);
    a.close();
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
});

test('SIGTERM: connected clients are disconnected and the process exits 0', async () => {
  const s = await startServer([]);
  const a = await client(s.url);
  const p = await client(s.url, { transports: ['polling'] });
  await a.join(uniq('term'), 'a');
  const gone = [once(a.sock, 'disconnect', 10000), once(p.sock, 'disconnect', 10000)];
  const { code, signal } = await s.stop();
  assert.equal(signal, null);
  assert.equal(code, 0);
  await Promise.all(gone);
});

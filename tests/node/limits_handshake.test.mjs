// --handshake-timeout (docs/protocol.md "Abuse limits"): a TCP connection that sends nothing,
// one that sends its headers too slowly, a keep-alive connection idle between requests, a new
// Engine.IO session that never polls, and a WebSocket upgrade that never completes are all
// closed. A long-poll waiting for data is not idle, and a well-behaved client is never cut.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import WebSocket from 'ws';
import { startServer, connect, uniq, ids, request, withTimeout, TIMEOUT_MS, metric } from '../lib/server.mjs';

let srv;
const clients = [];
// 1 s of handshake; pings every 3 s, so a long-poll waits longer than the timeout; a dead
// session would be noticed by the heartbeat only after 23 s, well past every bound here.
before(async () => { srv = await startServer(['--handshake-timeout', '1', '--ping-interval', '3', '--ping-timeout', '20']); });
after(async () => { clients.forEach((c) => c.close()); await srv?.stop(); });

/** A raw TCP connection; resolves `closed` when the server closes it. */
function tcp() {
  const sock = net.connect(srv.port, '127.0.0.1');
  const received = [];
  sock.on('data', (d) => received.push(d));
  sock.on('error', () => {});
  const closed = new Promise((resolve) => sock.once('close', resolve));
  const opened = new Promise((resolve) => sock.once('connect', resolve));
  return { sock, received, closed, opened };
}

function refusals(kind) {
  return metric(srv.url, `signalroom_limit_refusals_total{kind="${kind}"}`, { missing: 0 });
}

/** Polls `check` every 100 ms until it resolves truthy; fails after `ms`. Bounded. */
async function until(check, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) assert.fail(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A plain request on a fresh connection (no keep-alive pool). */
function fresh(path, { method = 'GET', body } = {}) {
  return withTimeout(new Promise((resolve, reject) => {
    const req = http.request(`${srv.url}${path}`, { method, agent: false, headers: { connection: 'close', 'content-type': 'text/plain;charset=UTF-8' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  }), TIMEOUT_MS, `${method} ${path}`);
}

test('a TCP connection that sends nothing is closed', async () => {
  const before = await refusals('handshake_timeout');
  const c = tcp();
  await c.opened;
  await withTimeout(c.closed, TIMEOUT_MS, 'server closes the idle connection');
  assert.equal(Buffer.concat(c.received).length, 0);
  assert.ok(await refusals('handshake_timeout') > before, 'counted as a handshake_timeout refusal');
});

test('headers sent too slowly: the connection is closed before the request is served', async () => {
  const c = tcp();
  await c.opened;
  c.sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
  await withTimeout(c.closed, TIMEOUT_MS, 'server closes the slow connection');
  assert.ok(!Buffer.concat(c.received).toString().includes('"ok"'), 'the request was never served');
});

test('a keep-alive connection idle between requests is closed', async () => {
  const c = tcp();
  await c.opened;
  c.sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  await until(() => Buffer.concat(c.received).toString().includes('{"status":"ok"}'), TIMEOUT_MS, 'first response');
  await withTimeout(c.closed, TIMEOUT_MS, 'server closes the idle keep-alive connection');
});

test('a polling session that never polls (nor connects) is closed', async () => {
  const open = await fresh('/socket.io/?EIO=4&transport=polling');
  assert.equal(open.status, 200);
  const sid = JSON.parse(open.text.slice(1)).sid;
  // Stay silent past the timeout (1 s); then even a CONNECT finds the session gone (400).
  // (Were it still there, the CONNECT would succeed and the never-polled sweep would close
  // it a little later; with the timeout off it lives until the 23 s heartbeat.)
  await new Promise((r) => setTimeout(r, 2000));
  await until(async () => (await fresh(`/socket.io/?EIO=4&transport=polling&sid=${sid}`, { method: 'POST', body: '40' })).status === 400,
    8000, 'the silent session is closed');
});

test('a session that connects and joins over POST but never polls is closed, and leaves its room', async () => {
  const room = uniq('never-polls');
  const open = await fresh('/socket.io/?EIO=4&transport=polling');
  const sid = JSON.parse(open.text.slice(1)).sid;
  const url = `/socket.io/?EIO=4&transport=polling&sid=${sid}`;
  assert.equal((await fresh(url, { method: 'POST', body: '40' })).status, 200);
  const join = `42${JSON.stringify(['join_room', { room_name: room, peer_id: 'lazy', username: 'Lazy' }])}`;
  assert.equal((await fresh(url, { method: 'POST', body: join })).status, 200);
  await until(async () => (await fresh(`/api/webrtc/rooms/${room}`)).status === 200, TIMEOUT_MS, 'the join is seen');
  const before = await refusals('handshake_timeout');
  await until(async () => (await fresh(`/api/webrtc/rooms/${room}`)).status === 404, 8000, 'the session is closed and its room emptied');
  assert.ok(await refusals('handshake_timeout') > before);
});

test('a WebSocket upgrade that never completes is closed, and so is its session', async () => {
  const open = await fresh('/socket.io/?EIO=4&transport=polling');
  const sid = JSON.parse(open.text.slice(1)).sid;
  const url = `/socket.io/?EIO=4&transport=polling&sid=${sid}`;
  assert.equal((await fresh(url, { method: 'POST', body: '40' })).status, 200);
  assert.match((await fresh(url)).text, /40\{"sid"/); // the first poll: CONNECT's answer
  const ws = new WebSocket(`${srv.url.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket&sid=${sid}`);
  ws.on('error', () => {});
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  // No "2probe", no "5": the upgrade never completes.
  await withTimeout(new Promise((resolve) => ws.once('close', resolve)), 8000, 'server closes the stalled upgrade');
  const after = await fresh(url);
  assert.equal(after.status, 400, 'the session is gone');
});

test('well-behaved clients stay: a long-poll longer than the timeout, and a WebSocket', async () => {
  const room = uniq('patient');
  const p = await connect(srv.url, { transports: ['polling'] });
  const w = await connect(srv.url);
  clients.push(p, w);
  await p.join(room, 'p');
  await w.join(room, 'w');
  // Absence of a disconnect can only be shown by waiting: several timeouts and a ping interval.
  await new Promise((r) => setTimeout(r, 3500));
  assert.ok(p.sock.connected && w.sock.connected);
  assert.deepEqual(ids((await p.ack('get_peers', {})).peers), ['p', 'w']);
  assert.deepEqual(ids((await w.ack('get_peers', {})).peers), ['p', 'w']);
});

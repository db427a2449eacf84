// --max-connections / --max-connections-per-ip / --trusted-proxy (docs/protocol.md "Abuse
// limits"): a new session past the cap gets 503 server_full (past the per-IP cap:
// too_many_connections) before any Engine.IO session exists; requests of existing sessions
// are never refused. Behind a trusted proxy the client is the first X-Forwarded-For address.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawn } from 'node:child_process';
import { io } from 'socket.io-client';
import { startServer, connect, uniq, ids, withTimeout, TIMEOUT_MS, Client, BIN, REPO } from '../lib/server.mjs';

const servers = [];
const clients = [];
after(async () => { clients.forEach((c) => c.close()); await Promise.all(servers.map((s) => s.stop())); });

async function server(flags) { const s = await startServer(flags); servers.push(s); return s; }
async function client(url, opts = {}) { const c = await connect(url, opts); clients.push(c); return c; }

/** A polling handshake on its own connection, from `xff` when given. Resolves {status, json}. */
function handshake(url, xff) {
  const headers = { connection: 'close' };
  if (xff) headers['x-forwarded-for'] = xff;
  return withTimeout(new Promise((resolve, reject) => {
    const req = http.request(`${url}/socket.io/?EIO=4&transport=polling`, { agent: false, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => {
        let json;
        try { json = JSON.parse(res.statusCode === 200 ? text.slice(1) : text); } catch { json = undefined; }
        resolve({ status: res.statusCode, json });
      });
    });
    req.on('error', reject);
    req.end();
  }), TIMEOUT_MS, 'handshake');
}

/** Polls until a handshake is admitted again; bounded. */
async function admittedAgain(url) {
  const deadline = Date.now() + 8000;
  for (;;) {
    const r = await handshake(url);
    if (r.status === 200) return r;
    if (Date.now() > deadline) assert.fail(`still refused: ${JSON.stringify(r.json)}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

test('past --max-connections a new session gets 503 server_full; existing sessions keep working', async () => {
  const s = await server(['--max-connections', '3']);
  const room = uniq('full');
  const ws = await client(s.url);
  // Its polls and POSTs reuse two kept-alive connections: a new TCP connection counts
  // until its first request names the session, so a fresh one per poll could fill the
  // cap for a moment and refuse the next handshake.
  const poll = await client(s.url, { transports: ['polling'], agent: new http.Agent({ keepAlive: true, maxSockets: 2 }) });
  // The third starts on polling (so the server is full) and then upgrades: never refused.
  const upgrader = new Client(s.url, { transports: ['polling', 'websocket'] });
  clients.push(upgrader);
  const upgraded = new Promise((resolve) => upgrader.sock.io.on('open', () => upgrader.sock.io.engine.once('upgrade', resolve)));
  await upgrader.connected();
  await withTimeout(upgraded, TIMEOUT_MS, 'the upgrade of a session at the cap');
  assert.equal(upgrader.sock.io.engine.transport.name, 'websocket');
  const refused = await handshake(s.url);
  assert.equal(refused.status, 503);
  assert.equal(refused.json.code, 'server_full');
  assert.equal(typeof refused.json.error, 'string');
  // socket.io-client sees the refusal as a connect error.
  const late = io(s.url, { transports: ['websocket'], reconnection: false, forceNew: true });
  await withTimeout(new Promise((resolve) => late.once('connect_error', resolve)), TIMEOUT_MS, 'connect_error');
  late.close();
  // The polling session's polls and POSTs are never refused, nor its upgrade.
  await poll.join(room, 'poll');
  await ws.join(room, 'ws');
  await upgrader.join(room, 'upgrader');
  assert.deepEqual(ids((await poll.ack('get_peers', {})).peers), ['poll', 'ws', 'upgrader']);
  // A place frees when a client leaves.
  ws.close();
  await admittedAgain(s.url);
});

test('--max-connections-per-ip counts each address; X-Forwarded-For only from a trusted proxy', async () => {
  const trusted = await server(['--max-connections-per-ip', '2', '--trusted-proxy', '10.9.9.9,127.0.0.1']);
  const from = (ip) => ({ extraHeaders: { 'x-forwarded-for': `${ip}, 127.0.0.1` } });
  await client(trusted.url, from('203.0.113.1'));
  await client(trusted.url, from('203.0.113.1'));
  const refused = await handshake(trusted.url, '203.0.113.1');
  assert.equal(refused.status, 503);
  assert.equal(refused.json.code, 'too_many_connections');
  assert.equal((await handshake(trusted.url, '203.0.113.2')).status, 200, 'another address is admitted');

  // Without --trusted-proxy the header is ignored: every client is 127.0.0.1.
  const plain = await server(['--max-connections-per-ip', '2']);
  await client(plain.url, from('203.0.113.1'));
  await client(plain.url, from('203.0.113.2'));
  const r = await handshake(plain.url, '203.0.113.3');
  assert.equal(r.status, 503);
  assert.equal(r.json.code, 'too_many_connections');
});

test('defaults: a hundred clients from one address are all admitted', async () => {
  const s = await server([]);
  const many = await Promise.all(Array.from({ length: 100 }, () => client(s.url)));
  assert.equal(many.filter((c) => c.sock.connected).length, 100);
  many.forEach((c) => c.close());
});

test('--max-connections never exceeds what the open-file limit allows', async () => {
  // 128 open files: a 5 % (at least 64) reserve leaves 64 places, whatever the flag says.
  const proc = spawn('prlimit', ['--nofile=128:128', BIN, '--host', '127.0.0.1', '--port', '0', '--max-connections', '50000'],
    { cwd: REPO, stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, RUST_LOG: 'error' } });
  try {
    const port = await withTimeout(new Promise((resolve) => {
      proc.stdout.setEncoding('utf8');
      proc.stdout.on('data', (t) => { const m = /127\.0\.0\.1:(\d+)/.exec(t); if (m) resolve(Number(m[1])); });
    }), TIMEOUT_MS, 'listening line');
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 5000;
    let cap;
    // The gauge is set when the sweep starts, just after the listening line.
    while (cap === undefined && Date.now() < deadline) {
      const text = await new Promise((resolve, reject) => {
        http.get(`${url}/metrics`, { agent: false }, (res) => { let t = ''; res.on('data', (c) => { t += c; }); res.on('end', () => resolve(t)); }).on('error', reject);
      });
      const m = /^signalroom_max_connections (\d+)$/m.exec(text);
      if (m) cap = Number(m[1]);
      else await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(cap, 64);
  } finally {
    proc.kill('SIGTERM');
  }
});

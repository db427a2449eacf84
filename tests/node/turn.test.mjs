// TURN credentials (docs/protocol.md "TURN credentials"): the entry after the static
// --ice-servers in join_room_success and in REST join answers, its HMAC checked here with
// node:crypto, and a real coturn (Debian's `turnserver`, --use-auth-secret) that allocates a
// relay with the minted credentials and refuses tampered ones (`turnutils_uclient`).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import net from 'node:net';
import dgram from 'node:dgram';
import { startServer, connect, uniq, postJson } from '../lib/server.mjs';

const TURN_SECRET = 'turn-secret-for-tests';
const TTL = 600;
const STUN = { urls: 'stun:stun.invalid:3478' };
let srv;
let plain;
let turn;
let turnPort;
const clients = [];

const hmacSha1 = (secret, text) => createHmac('sha1', secret).update(text).digest('base64');
const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

/** A port free for both TCP and UDP on 127.0.0.1 (TURN listens on both). */
async function freePort() {
  for (let i = 0; i < 20; i += 1) {
    const port = await new Promise((resolve, reject) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
      s.on('error', reject);
    });
    const udpFree = await new Promise((resolve) => {
      const u = dgram.createSocket('udp4');
      u.once('error', () => resolve(false));
      u.bind(port, '127.0.0.1', () => u.close(() => resolve(true)));
    });
    if (udpFree) return port;
  }
  throw new Error('no free port');
}

/** Starts coturn on 127.0.0.1 with the TURN REST API secret; resolves once it listens. */
async function startTurn(port) {
  const proc = spawn('turnserver', ['-n', '--listening-ip=127.0.0.1', '--relay-ip=127.0.0.1', `--listening-port=${port}`,
    '--use-auth-secret', `--static-auth-secret=${TURN_SECRET}`, '--realm=signalroom.test', '--no-tls', '--no-dtls',
    '--no-cli', '--log-file=stdout', '--simple-log', '--allow-loopback-peers', '--no-software-attribute',
    `--pidfile=/tmp/signalroom-turn-${process.pid}.pid`], { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  proc.stdout.on('data', (c) => log.push(String(c)));
  proc.stderr.on('data', (c) => log.push(String(c)));
  let exited = false;
  proc.once('exit', () => { exited = true; });
  // Ready once its TCP listener accepts (bounded: 100 tries, 100 ms apart).
  for (let i = 0; ; i += 1) {
    if (exited) throw new Error(`turnserver exited: ${log.join('')}`);
    const up = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (up) break;
    if (i === 100) throw new Error(`turnserver did not listen: ${log.join('')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { proc, log, stop: () => { proc.kill('SIGTERM'); } };
}

/** Runs turnutils_uclient against coturn over TCP: one allocation, two messages through the relay. */
function allocate(username, credential) {
  return spawnSync('turnutils_uclient', ['-t', '-p', String(turnPort), '-u', username, '-w', credential, '-y', '-n', '2', '-m', '1', '-l', '100', '127.0.0.1'],
    { encoding: 'utf8', timeout: 30000 });
}

before(async () => {
  assert.ok(has('turnserver') && has('turnutils_uclient'), 'Debian package coturn is needed (cargo xtask test installs it)');
  turnPort = await freePort();
  turn = await startTurn(turnPort);
  const urls = `turn:127.0.0.1:${turnPort},turn:127.0.0.1:${turnPort}?transport=tcp`;
  srv = await startServer(['--turn-secret', TURN_SECRET, '--turn-urls', urls, '--turn-ttl', String(TTL), '--ice-servers', JSON.stringify([STUN])]);
  plain = await startServer(['--ice-servers', JSON.stringify([STUN])]);
});
after(async () => {
  clients.forEach((c) => c.close());
  turn?.stop();
  await Promise.all([srv?.stop(), plain?.stop()]);
});

/** Asserts an ice_servers list: the static entry, then TURN credentials for `peerId`. */
function assertTurnEntry(iceServers, peerId, joinedAtSecs) {
  assert.equal(iceServers.length, 2, JSON.stringify(iceServers));
  assert.deepEqual(iceServers[0], STUN);
  const entry = iceServers[1];
  assert.deepEqual(Object.keys(entry).sort(), ['credential', 'urls', 'username']);
  assert.deepEqual(entry.urls, [`turn:127.0.0.1:${turnPort}`, `turn:127.0.0.1:${turnPort}?transport=tcp`]);
  const [expiry, ...rest] = entry.username.split(':');
  assert.equal(rest.join(':'), peerId);
  assert.ok(Math.abs(Number(expiry) - (joinedAtSecs + TTL)) <= 2, `expiry ${expiry} is now + ttl`);
  assert.equal(entry.credential, hmacSha1(TURN_SECRET, entry.username), 'base64(HMAC-SHA1(secret, username))');
  assert.ok(!JSON.stringify(iceServers).includes(TURN_SECRET), 'the secret is never sent');
  return entry;
}

test('join_room_success carries TURN credentials for the joiner after the static ice servers', async () => {
  const c = await connect(srv.url);
  clients.push(c);
  const { success } = await c.join(uniq('turn'), 'peer:with:colons');
  assertTurnEntry(success.ice_servers, 'peer:with:colons', Math.floor(Date.now() / 1000));
});

test('a REST join answer carries ice_servers: TURN credentials when on, the static list when off', async () => {
  const res = await postJson(srv.url, `/api/webrtc/rooms/${uniq('turn-rest')}/join`, { peer_id: 'bot', username: 'Bot' });
  assert.equal(res.status, 200, res.text);
  assertTurnEntry(res.json.ice_servers, 'bot', Math.floor(Date.now() / 1000));
  const off = await postJson(plain.url, `/api/webrtc/rooms/${uniq('plain-rest')}/join`, { peer_id: 'bot', username: 'Bot' });
  assert.equal(off.status, 200, off.text);
  assert.deepEqual(off.json.ice_servers, [STUN]);
});

test('coturn allocates a relay with the minted credentials and refuses tampered ones', async () => {
  const c = await connect(srv.url);
  clients.push(c);
  const { success } = await c.join(uniq('coturn'), 'alice');
  const { username, credential } = success.ice_servers[1];
  const ok = allocate(username, credential);
  assert.equal(ok.status, 0, `uclient with minted credentials: ${ok.stdout}${ok.stderr}`);
  assert.match(ok.stdout + ok.stderr, /Total lost packets 0/);
  const tampered = [
    [username, `${credential[0] === 'A' ? 'B' : 'A'}${credential.slice(1)}`], // another credential
    [username.replace(/:alice$/, ':mallory'), credential], // another peer_id, same credential
    [`${Number(username.split(':')[0]) + 1}:alice`, credential], // a later expiry
  ];
  for (const [u, w] of tampered) {
    assert.ok(u !== username || w !== credential, 'tampered');
    const bad = allocate(u, w);
    assert.notEqual(bad.status, 0, `uclient with ${u} / ${w} (minted ${username}) must fail: ${bad.stdout}`);
    assert.match(bad.stdout + bad.stderr, /Cannot complete Allocation/);
  }
});

// --rest-rate-per-ip (docs/protocol.md "Abuse limits"): past the rate, /api/webrtc/* answers
// 429 rate_limited "Too many requests, slow down" with Retry-After in whole seconds; per
// client address (X-Forwarded-For from a trusted proxy). And a request refused with an error
// status is answered in full even while the client is still sending its body (413 above all):
// the server drains before it closes, so the client never sees a reset instead of the answer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer, request, uniq, withTimeout, metric } from '../lib/server.mjs';

let srv;
before(async () => { srv = await startServer(['--rest-rate-per-ip', '2', '--trusted-proxy', '127.0.0.1']); });
after(async () => { await srv?.stop(); });

const from = (ip) => ({ headers: { 'x-forwarded-for': ip } });

test('past the burst (twice the rate) /api/webrtc/* answers 429 with Retry-After', async () => {
  const answers = await Promise.all(Array.from({ length: 12 }, () => request(srv.url, '/api/webrtc/rooms', from('198.51.100.1'))));
  const ok = answers.filter((a) => a.status === 200).length;
  const limited = answers.filter((a) => a.status === 429);
  assert.ok(ok >= 4 && ok <= 6, `the burst of 4 (plus what refilled) passed: ${ok}`);
  assert.equal(ok + limited.length, 12);
  for (const a of limited) {
    assert.deepEqual(a.json, { error: 'Too many requests, slow down', code: 'rate_limited' });
    assert.match(a.headers['retry-after'], /^[1-9]\d*$/);
  }
  // Another client address has its own allowance; other paths are not limited.
  assert.equal((await request(srv.url, '/api/webrtc/rooms', from('198.51.100.2'))).status, 200);
  assert.equal((await request(srv.url, '/healthz', from('198.51.100.1'))).status, 200);
  assert.ok(await metric(srv.url, 'signalroom_limit_refusals_total{kind="rest_rate_limited"}') >= 1);
});

test('a POST join is rate limited too, and a refused one changes nothing', async () => {
  const room = uniq('rest-limited');
  const post = () => request(srv.url, `/api/webrtc/rooms/${room}/join`, {
    method: 'POST', body: JSON.stringify({ peer_id: 'p', username: 'u' }),
    headers: { 'content-type': 'application/json', 'x-forwarded-for': '198.51.100.3' },
  });
  const answers = await Promise.all(Array.from({ length: 10 }, post));
  assert.ok(answers.some((a) => a.status === 429));
  assert.ok(answers.filter((a) => a.status === 200).length >= 1);
});

/**
 * Sends a POST over a raw socket, writing `body` in `chunk`-sized pieces (chunked encoding
 * when `chunked`) without waiting for the answer, and resolves with the raw answer once the
 * server closes. A reset before the status line arrives rejects.
 */
function sendWhileAnswered(path, bodyBytes, { chunked, chunk = 8192, headers = {} }) {
  return withTimeout(new Promise((resolve, reject) => {
    const sock = net.connect(srv.port, '127.0.0.1');
    const got = [];
    let failed = null;
    sock.on('data', (d) => got.push(d));
    sock.on('error', (e) => { failed = e; });
    sock.on('close', () => {
      const text = Buffer.concat(got).toString('latin1');
      if (!text.startsWith('HTTP/1.1 ')) reject(new Error(`no answer (${failed?.code ?? 'closed'})`));
      else resolve(text);
    });
    sock.on('connect', async () => {
      const head = [`POST ${path} HTTP/1.1`, 'Host: x', 'Content-Type: application/json',
        ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
        chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${bodyBytes}`, '', ''].join('\r\n');
      sock.write(head);
      let sent = 0;
      while (sent < bodyBytes && !sock.destroyed && !failed) {
        const n = Math.min(chunk, bodyBytes - sent);
        const piece = Buffer.alloc(n, 0x20);
        const ok = chunked ? sock.write(`${n.toString(16)}\r\n`) && sock.write(piece) && sock.write('\r\n') : sock.write(piece);
        sent += n;
        if (!ok) await new Promise((r) => { sock.once('drain', r); sock.once('close', r); });
        else await new Promise((r) => setImmediate(r));
      }
      if (!sock.destroyed && !failed) {
        if (chunked) sock.write('0\r\n\r\n');
        sock.end();
      }
    });
  }), 20000, 'answer to an oversized body');
}

const cases = [
  ['chunked 64 KiB + 8 KiB', 72 * 1024, true],
  ['chunked 1 MiB', 1 << 20, true],
  ['Content-Length 1 MiB', 1 << 20, false],
];
for (const [what, size, chunked] of cases) {
  test(`413 is answered in full while the client is still sending (${what}), every time`, async () => {
    for (let run = 0; run < 12; run++) {
      // A fresh client address per run keeps the REST rate out of the way.
      const text = await sendWhileAnswered(`/api/webrtc/rooms/${uniq('big')}/join`, size,
        { chunked, headers: { 'X-Forwarded-For': `192.0.2.${(run % 250) + 1}` } });
      assert.match(text, /^HTTP\/1\.1 413 /, `run ${run}`);
      assert.match(text, /"code":"payload_too_large"/, `run ${run}: the body arrived in full`);
    }
  });
}

test('a 429 is answered in full while the client is still sending a large body', async () => {
  const ip = '192.0.2.254';
  // Use up this address's allowance first.
  await Promise.all(Array.from({ length: 8 }, () => request(srv.url, '/api/webrtc/rooms', from(ip))));
  const text = await sendWhileAnswered(`/api/webrtc/rooms/${uniq('big')}/join`, 1 << 20,
    { chunked: false, headers: { 'X-Forwarded-For': ip } });
  assert.match(text, /^HTTP\/1\.1 429 /);
  assert.match(text, /"code":"rate_limited"/);
});

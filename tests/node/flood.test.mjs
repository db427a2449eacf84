// Fault: one connection floods the server with events. With the default abuse limits the
// flooder is refused (rate_limited) and then cut off, while the other clients keep their
// round trips fast: their acknowledgement p99 stays under 50 ms throughout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { startServer, connect, uniq, REPO, withTimeout } from '../lib/server.mjs';

test('a flooding connection is cut off, and the others\' ack p99 stays under 50 ms meanwhile', async () => {
  const srv = await startServer([]);
  const calm = [];
  try {
    for (let i = 0; i < 8; i++) {
      const c = await connect(srv.url);
      calm.push(c);
      await c.join(uniq('calm'), `c${i}`);
    }
    const flooder = spawn('node', ['tests/faults/flood.mjs', srv.url], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    flooder.stdout.on('data', (d) => { out += d; });
    const exited = new Promise((resolve) => flooder.on('exit', resolve));
    let flooding = true;
    exited.then(() => { flooding = false; });
    // The flood starts when the flooder has joined and sends its first event; from then
    // on, each calm client makes round trips one after another (2 ms apart: well within
    // the event rate) while the flood lasts. The flooder is usually cut off within a few
    // hundred ms, so the eight calm clients sample it densely.
    const started = new Promise((resolve) => flooder.stdout.on('data', () => { if (out.includes('flooding')) resolve(); }));
    await withTimeout(Promise.race([started, exited]), 10_000, 'flood start');
    const latencies = [];
    await Promise.all(calm.map(async (c) => {
      while (flooding) {
        const t = process.hrtime.bigint();
        await c.ack('get_peers', {});
        if (flooding) latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
        await new Promise((r) => setTimeout(r, 2));
      }
    }));
    await withTimeout(exited, 30_000, 'flooder exit');
    const r = JSON.parse(out.trim().split('\n').at(-1));
    latencies.sort((a, b) => a - b);
    const p99 = latencies[Math.floor(latencies.length * 0.99)];
    console.log(`# flood: ${r.sent} events sent, cut off after ${r.cutOffMs} ms; calm clients: ${latencies.length} round trips, p50 ${latencies[latencies.length >> 1].toFixed(2)} ms, p99 ${p99.toFixed(2)} ms`);
    assert.notEqual(r.cutOffMs, null, 'the flooder was cut off');
    assert.ok(latencies.length >= 50, `only ${latencies.length} round trips during the flood`);
    assert.ok(p99 < 50, `calm clients' ack p99 ${p99.toFixed(1)} ms`);
  } finally {
    calm.forEach((c) => c.close());
    await srv.stop();
  }
});

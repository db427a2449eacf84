// Fault: a half-open client (its packets silently dropped by nftables in a private network
// namespace, as when a cable is pulled) is removed from its room by the heartbeat, and the
// others are told, within ping interval + ping timeout. Needs root (unshare -n) and nft,
// which `cargo xtask test` installs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { REPO, withTimeout } from '../lib/server.mjs';

/** Runs a tests/faults script in a fresh network namespace; resolves its JSON line. */
function inNamespace(script) {
  return withTimeout(new Promise((resolve, reject) => {
    const child = spawn('unshare', ['-n', 'sh', '-c', `ip link set lo up && exec node ${script}`], {
      cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (c) => { out += c; });
    child.on('error', reject);
    child.on('exit', (code) => {
      const line = out.trim().split('\n').at(-1);
      if (code !== 0) reject(new Error(`${script} exited ${code}: ${out}`));
      else resolve(JSON.parse(line));
    });
  }), 60_000, script);
}

test('a client whose packets are dropped is removed and the others are told within ping interval + ping timeout', async () => {
  const r = await inNamespace('tests/faults/half_open.mjs');
  assert.deepEqual(r.listed, ['a'], 'the half-open peer is no longer listed');
  assert.equal(r.version, 3, 'one change: b left');
  assert.equal(r.stillServed, 1, 'the other client is still served');
  // The heartbeat notices at the first ping after the cut plus the timeout; 1 s of slack
  // covers scheduling on a loaded machine.
  assert.ok(r.elapsedMs <= r.boundMs + 1000, `removed after ${r.elapsedMs} ms (bound ${r.boundMs} ms)`);
});

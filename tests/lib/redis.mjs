// Private Redis servers for the cluster tests: one `redis-server` process per call, on
// 127.0.0.1 and a free port, with no persistence (`--save '' --appendonly no`), in its own
// temporary directory. Never the system service: a test can stop, freeze or restart its
// instance (restarted, it comes back empty, as the contract's "Redis restarted empty" case
// needs) without touching anything else on the machine.
//
// The binary comes from env SIGNALROOM_REDIS_BIN (`cargo xtask test` installs Debian's
// redis-server and sets it), else `redis-server` on PATH.
//
// `command(...args)` speaks just enough RESP to check what a server stored; it is for test
// assertions, not a client library.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { withTimeout } from './server.mjs';

export const REDIS_BIN = process.env.SIGNALROOM_REDIS_BIN || 'redis-server';

// Killed however the test process ends, so no instance outlives its test.
const live = new Set();
process.on('exit', () => {
  for (const proc of live) proc.kill('SIGKILL');
});

/** A port that was free a moment ago (the kernel's pick for port 0). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Spawns redis-server on `port`; resolves the process once it accepts connections. */
async function spawnOn(port, dir) {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir, '--daemonize', 'no', '--loglevel', 'notice'];
  const proc = spawn(REDIS_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  const output = [];
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => {
    live.delete(proc);
    resolve({ code, signal });
  }));
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (c) => output.push(c));
  const lines = createInterface({ input: proc.stdout });
  const ready = await withTimeout(new Promise((resolve) => {
    lines.on('line', (line) => {
      output.push(line + '\n');
      if (/Ready to accept connections/.test(line)) resolve(true);
    });
    proc.once('error', (e) => { output.push(String(e)); resolve(false); });
    exited.then(() => resolve(false));
  }), 10000, `redis-server (${REDIS_BIN}) did not start on port ${port}`);
  return { proc, exited, ready, output };
}

/**
 * Starts a private Redis. Resolves {url, port, command, stop, kill, freeze, thaw, restart}:
 * - `url`: `redis://127.0.0.1:PORT` (what `--redis-url` takes);
 * - `command(...args)`: one command over a fresh connection, resolves its reply
 *   (strings, numbers, arrays, null; an error reply rejects); `commandWithin(ms, ...args)`
 *   fails after `ms` instead of the default 5 s;
 * - `stop()`: SIGTERM and wait; `kill()`: SIGKILL and wait (data gone either way);
 * - `freeze()` / `thaw()`: SIGSTOP / SIGCONT, so connections hang as in a network outage;
 * - `restart()`: a new, empty server on the same port.
 */
export async function startRedis() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'signalroom-redis-'));
  let current;
  let port;
  // The free port can be taken between the check and the bind: try a few.
  for (let attempt = 0; attempt < 5 && !current; attempt += 1) {
    port = await freePort();
    const started = await spawnOn(port, dir);
    if (started.ready) current = started;
    else if (!/Address already in use/.test(started.output.join(''))) {
      throw new Error(`redis-server did not start: ${started.output.join('')}`);
    }
  }
  if (!current) throw new Error('redis-server found no free port in 5 attempts');

  const end = async (signal) => {
    if (current.proc.exitCode === null && current.proc.signalCode === null) {
      current.proc.kill('SIGCONT'); // a frozen server must run to handle SIGTERM
      current.proc.kill(signal);
    }
    await withTimeout(current.exited, 10000, `redis-server to exit on ${signal}`);
  };
  const redis = {
    url: `redis://127.0.0.1:${port}`,
    port,
    command: (...args) => command(port, args),
    commandWithin: (ms, ...args) => command(port, args, ms),
    stop: async () => { await end('SIGTERM'); rmSync(dir, { recursive: true, force: true }); },
    kill: () => end('SIGKILL'),
    freeze: () => { current.proc.kill('SIGSTOP'); },
    thaw: () => { current.proc.kill('SIGCONT'); },
    restart: async () => {
      await end('SIGKILL');
      const again = await spawnOn(port, dir);
      if (!again.ready) throw new Error(`redis-server did not restart: ${again.output.join('')}`);
      current = again;
    },
  };
  return redis;
}

/** Sends one command as RESP and resolves the parsed reply. */
function command(port, args, ms = 5000) {
  const frame = [`*${args.length}\r\n`];
  for (const a of args) {
    const b = Buffer.from(String(a));
    frame.push(`$${b.length}\r\n`, b, '\r\n');
  }
  return withTimeout(new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      const parsed = parse(buf, 0);
      if (!parsed) return;
      sock.end();
      if (parsed.value instanceof Error) reject(parsed.value);
      else resolve(parsed.value);
    });
    sock.on('error', reject);
    for (const part of frame) sock.write(part);
  }), ms, `redis ${args[0]}`);
}

/** One RESP2 value from `buf` at `at`: {value, end}, or null when incomplete. */
function parse(buf, at) {
  const eol = buf.indexOf('\r\n', at);
  if (eol < 0) return null;
  const kind = String.fromCharCode(buf[at]);
  const head = buf.toString('utf8', at + 1, eol);
  const next = eol + 2;
  switch (kind) {
    case '+': return { value: head, end: next };
    case '-': return { value: new Error(head), end: next };
    case ':': return { value: Number(head), end: next };
    case '$': {
      const n = Number(head);
      if (n < 0) return { value: null, end: next };
      if (buf.length < next + n + 2) return null;
      return { value: buf.toString('utf8', next, next + n), end: next + n + 2 };
    }
    case '*': {
      const n = Number(head);
      if (n < 0) return { value: null, end: next };
      const items = [];
      let pos = next;
      for (let i = 0; i < n; i += 1) {
        const item = parse(buf, pos);
        if (!item) return null;
        items.push(item.value);
        pos = item.end;
      }
      return { value: items, end: pos };
    }
    default:
      return { value: new Error(`unexpected RESP type ${kind}`), end: buf.length };
  }
}

// The private Redis the cluster tests run against (tests/lib/redis.mjs): its own process on a
// free port with no persistence, so stopping or restarting it loses everything, as the
// contract's "Redis restarted empty" case needs, and the system service is never involved.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startRedis } from '../lib/redis.mjs';

test('a private redis answers on its own port and keeps nothing on disk', async () => {
  const redis = await startRedis();
  try {
    assert.match(redis.url, /^redis:\/\/127\.0\.0\.1:\d+$/);
    assert.notEqual(redis.port, 6379);
    assert.equal(await redis.command('PING'), 'PONG');
    assert.deepEqual(await redis.command('CONFIG', 'GET', 'save'), ['save', '']);
    assert.deepEqual(await redis.command('CONFIG', 'GET', 'appendonly'), ['appendonly', 'no']);
    assert.deepEqual(await redis.command('CONFIG', 'GET', 'bind'), ['bind', '127.0.0.1']);
    assert.equal(await redis.command('SET', 'k', 'v'), 'OK');
    assert.equal(await redis.command('GET', 'k'), 'v');
    await assert.rejects(redis.command('NO-SUCH-COMMAND'), /unknown command/);
  } finally {
    await redis.stop();
  }
});

test('two instances are independent', async () => {
  const [a, b] = await Promise.all([startRedis(), startRedis()]);
  try {
    assert.notEqual(a.port, b.port);
    await a.command('SET', 'k', 'a');
    assert.equal(await b.command('GET', 'k'), null);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

test('a restarted instance comes back empty on the same port', async () => {
  const redis = await startRedis();
  try {
    await redis.command('SET', 'k', 'v');
    const port = redis.port;
    await redis.restart();
    assert.equal(redis.port, port);
    assert.equal(await redis.command('GET', 'k'), null);
    assert.equal(await redis.command('DBSIZE'), 0);
  } finally {
    await redis.stop();
  }
});

test('a frozen instance hangs its clients until thawed', async () => {
  const redis = await startRedis();
  try {
    redis.freeze();
    await assert.rejects(redis.commandWithin(300, 'PING'), /timed out/);
    redis.thaw();
    assert.equal(await redis.command('PING'), 'PONG');
  } finally {
    await redis.stop();
  }
});

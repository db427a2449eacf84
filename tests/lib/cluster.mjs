// Several signalroom nodes on one private Redis (docs/cluster.md): the cluster tests'
// harness, and what `startServer` runs instead of one process when the whole suite runs in
// cluster mode (env SIGNALROOM_TEST_CLUSTER=N, tests/README.md).
//
// The nodes are the server binary given by env SIGNALROOM_CLUSTER_BIN (`cargo xtask test`
// sets it; in cluster mode SIGNALROOM_BIN when unset); the Redis is `tests/lib/redis.mjs`'s.

import { startServer, connect, BIN, TEST_CLUSTER } from './server.mjs';
import { startRedis } from './redis.mjs';

/** The server binary for the nodes: SIGNALROOM_CLUSTER_BIN, else (in cluster mode) SIGNALROOM_BIN. */
export const CLUSTER_BIN = process.env.SIGNALROOM_CLUSTER_BIN || (TEST_CLUSTER ? BIN : undefined);

/** `skip` for a cluster test: false, or why it cannot run. */
export const CLUSTER_SKIP = CLUSTER_BIN ? false : 'SIGNALROOM_CLUSTER_BIN (the server binary for the nodes) is not set';

/**
 * A private Redis and `n` nodes on it (`--node-id n1`, `n2`, ...), each with `flags` and the
 * startServer options `opts` (default binary: SIGNALROOM_CLUSTER_BIN). Resolves
 * {redis, nodes, on, cleanup}: `on(i)` is a client connected to node `i` (0-based) that
 * `cleanup()` closes before stopping every node (SIGTERM, at once) and then Redis.
 * If a node does not start, the others and Redis are stopped and the error is thrown.
 */
export async function startCluster(n, flags = [], opts = {}) {
  const bin = opts.bin || CLUSTER_BIN;
  if (!bin) throw new Error(CLUSTER_SKIP);
  const redis = await startRedis();
  const started = await Promise.allSettled([...Array(n).keys()].map((i) => startServer(
    [...flags, '--redis-url', redis.url, '--node-id', `n${i + 1}`],
    { ...opts, bin, single: true },
  )));
  const nodes = started.filter((s) => s.status === 'fulfilled').map((s) => s.value);
  if (nodes.length < n) {
    await Promise.all(nodes.map((x) => x.stop()));
    await redis.stop();
    throw started.find((s) => s.status === 'rejected').reason;
  }
  const clients = [];
  const on = async (i) => {
    const c = await connect(nodes[i].url);
    clients.push(c);
    return c;
  };
  const cleanup = async () => {
    for (const c of clients) c.close();
    await Promise.all(nodes.map((x) => x.stop()));
    await redis.stop();
  };
  return { redis, nodes, on, cleanup };
}
